#!/usr/bin/env bash
# Builds the pinned control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kwok) from published Go modules into target/k8s/<versions>/bin. Does nothing when that
# directory already holds a complete build of the same versions. Prints the bin directory.
set -euo pipefail
e2e_dir=$(cd "$(dirname "$0")/.." && pwd)
root_dir=$(cd "$e2e_dir/.." && pwd)
# shellcheck source=../versions.env
source "$e2e_dir/versions.env"

# shellcheck source=require-go.sh
source "$e2e_dir/scripts/require-go.sh"
require_go_126 build-control-plane

check_pin() { # module file, module path, version
  grep -qE "^(require )?[[:space:]]*$2 $3\$" "$1" || {
    echo "build-control-plane: $1 does not require $2 $3 (e2e/versions.env); update one of them" >&2; exit 1; }
}
check_pin "$e2e_dir/go/k8s/go.mod" k8s.io/kubernetes "$KUBERNETES_VERSION"
check_pin "$e2e_dir/go/etcd/go.mod" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
check_pin "$e2e_dir/go/kwok/go.mod" sigs.k8s.io/kwok "$KWOK_VERSION"

out="${CARGO_TARGET_DIR:-$root_dir/target}/k8s/${KUBERNETES_VERSION}-etcd${ETCD_VERSION}-kwok${KWOK_VERSION}"
bin="$out/bin"
stamp="$out/.complete"
if [ -f "$stamp" ]; then echo "$bin"; exit 0; fi
mkdir -p "$bin"

major=${KUBERNETES_VERSION#v}; major=${major%%.*}
minor=${KUBERNETES_VERSION#v*.}; minor=${minor%%.*}
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags="$k8s_ldflags -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done

build() { # module dir, output name, package, ldflags
  local started=$SECONDS
  echo "build-control-plane: building $2" >&2
  (cd "$e2e_dir/go/$1" && go build -trimpath -ldflags "$4" -o "$bin/$2" "$3")
  echo "build-control-plane: built $2 in $((SECONDS - started))s" >&2
}
build k8s kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build k8s kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
build k8s kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
build k8s kubectl k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
build etcd etcd go.etcd.io/etcd/server/v3 "-s -w"
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
touch "$stamp"
echo "$bin"
