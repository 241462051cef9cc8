#!/usr/bin/env bash
# Builds the reference CNI plugins (github.com/containernetworking/plugins at CNI_PLUGINS_VERSION
# of e2e/versions.env, from the Go module proxy) into target/cni-plugins/<version>/: static
# binaries, each built once per version. Used by the CNI benchmark and by the kind node image
# (e2e/kind/build-bins.sh). Prints the directory.
#   build-cni-plugins.sh [NAME...]   loopback, bridge, ptp, host-local, portmap (default: all)
set -euo pipefail
e2e_dir=$(cd "$(dirname "$0")/.." && pwd)
root_dir=$(cd "$e2e_dir/.." && pwd)
# shellcheck source=../versions.env
source "$e2e_dir/versions.env"

out="${CARGO_TARGET_DIR:-$root_dir/target}/cni-plugins/$CNI_PLUGINS_VERSION"
mkdir -p "$out"
module="github.com/containernetworking/plugins@$CNI_PLUGINS_VERSION"
dir=""

package() {
  case "$1" in
    loopback|bridge|ptp) echo "./plugins/main/$1" ;;
    host-local) echo ./plugins/ipam/host-local ;;
    portmap) echo ./plugins/meta/portmap ;;
    *) echo "build-cni-plugins: unknown plugin '$1' (loopback, bridge, ptp, host-local, portmap)" >&2
       exit 2 ;;
  esac
}

# The module cache holds no vendor directory: resolve dependencies as modules.
export GOFLAGS=-mod=mod
plugins=("$@")
[ $# -gt 0 ] || plugins=(loopback bridge ptp host-local portmap)
for plugin in "${plugins[@]}"; do
  pkg=$(package "$plugin")
  [ -x "$out/$plugin" ] && continue
  if [ -z "$dir" ]; then
    dir=$(go mod download -json "$module" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
    [ -n "$dir" ] || { echo "build-cni-plugins: go mod download $module failed" >&2; exit 1; }
  fi
  started=$SECONDS
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/$plugin.tmp" "$pkg")
  mv "$out/$plugin.tmp" "$out/$plugin"
  echo "build-cni-plugins: built $plugin $CNI_PLUGINS_VERSION in $((SECONDS - started))s" >&2
done
echo "$out"
