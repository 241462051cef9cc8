#!/usr/bin/env bash
# The image the Helm chart's hooks run (`hooks.image`, registry.k8s.io/kubectl:<version>): the
# control plane's kubectl at /bin/kubectl on the local Debian rootfs (its glibc). Prints its name.
set -euo pipefail
kind_dir=$(cd "$(dirname "$0")" && pwd)
e2e_dir=$(cd "$kind_dir/.." && pwd)
root_dir=$(cd "$e2e_dir/.." && pwd)
source "$e2e_dir/versions.env"
name=registry.k8s.io/kubectl:$KUBERNETES_VERSION
if ! docker image inspect "$name" >/dev/null 2>&1; then
  cp_bin=${WEFT_CONTROL_PLANE_BIN:-$(bash "$e2e_dir/scripts/build-control-plane.sh" | tail -n 1)}
  ctx="${CARGO_TARGET_DIR:-$root_dir/target}/kind/images/ctx/kubectl"
  rm -rf "$ctx"; mkdir -p "$ctx"; cp "$cp_bin/kubectl" "$ctx/"
  printf 'FROM %s\nCOPY kubectl /bin/kubectl\nUSER 65532:65532\nENTRYPOINT ["/bin/kubectl"]\n' \
    "$(bash "$kind_dir/rootfs.sh")" >"$ctx/Dockerfile"
  docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
  docker build -q -t "$name" "$ctx" >/dev/null
fi
echo "$name"
