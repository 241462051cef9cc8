#!/usr/bin/env bash
# Builds the node image's Go binaries from published Go modules into target/kind/bin/<versions>/:
# containerd, containerd-shim-runc-v2, ctr (containerd module), crictl (cri-tools), the CNI plugins
# loopback/host-local/portmap/ptp/bridge (copied from e2e/scripts/build-cni-plugins.sh), coredns,
# kind, and kubelet/kubeadm/kubectl/kube-proxy (the e2e/go/node wrapper module, version ldflags
# and cgo as the control plane's build, whose cache they share; the node is a glibc system).
# Static (CGO_ENABLED=0) otherwise. Each binary is built once and cached. Prints the bin directory.
#   build-bins.sh [NAME...]   build only the named binaries (default: all)
set -euo pipefail
kind_dir=$(cd "$(dirname "$0")" && pwd)
e2e_dir=$(cd "$kind_dir/.." && pwd)
root_dir=$(cd "$e2e_dir/.." && pwd)
source "$e2e_dir/versions.env"
source "$kind_dir/versions.env"

bin="${CARGO_TARGET_DIR:-$root_dir/target}/kind/bin/k8s${KUBERNETES_VERSION}-containerd${CONTAINERD_VERSION}-kind${KIND_VERSION}"
mkdir -p "$bin"
export GOFLAGS=-mod=mod

log() { echo "build-bins: $*" >&2; }

module_dir() { # module@version -> directory in the module cache (downloaded when missing)
  go mod download -json "$1" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p'
}

built() { [ -x "$bin/$1" ]; }

go_build() { # dir, output name, package, tags, ldflags ($CGO: CGO_ENABLED, default 0)
  built "$2" && return 0
  local started=$SECONDS
  log "building $2"
  (cd "$1" && CGO_ENABLED=${CGO:-0} go build -trimpath -tags "$4" -ldflags "$5" -o "$bin/$2.tmp" "$3")
  mv "$bin/$2.tmp" "$bin/$2"
  log "built $2 in $((SECONDS - started))s"
}

k8s_ldflags() {
  local major minor flags="-s -w"
  major=${KUBERNETES_VERSION#v}; major=${major%%.*}
  minor=${KUBERNETES_VERSION#v*.}; minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags="$flags -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  echo "$flags"
}

build_one() {
  local dir
  case "$1" in
    containerd|ctr|containerd-shim-runc-v2)
      built "$1" && return 0
      dir=$(module_dir "github.com/containerd/containerd/v2@$CONTAINERD_VERSION")
      local tags="urfave_cli_no_docs osusergo netgo static_build no_btrfs no_devmapper no_zfs"
      local pkg=github.com/containerd/containerd/v2
      local ld="-s -w -X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Package=$pkg"
      [ "$1" = containerd-shim-runc-v2 ] && tags="$tags no_grpc"
      go_build "$dir" "$1" "./cmd/$1" "$tags" "$ld" ;;
    crictl)
      built crictl && return 0
      dir=$(module_dir "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION")
      go_build "$dir" crictl ./cmd/crictl "" "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" ;;
    loopback|bridge|ptp|host-local|portmap) built "$1" && return 0
      local plugins
      plugins=$(bash "$e2e_dir/scripts/build-cni-plugins.sh" "$1" | tail -n 1)
      cp "$plugins/$1" "$bin/$1" ;;
    coredns) built "$1" && return 0
      dir=$(module_dir "github.com/coredns/coredns@$COREDNS_VERSION")
      go_build "$dir" coredns . "" "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" ;;
    kind)
      go_build "$e2e_dir/go/kind" kind sigs.k8s.io/kind "" "-s -w" ;;
    # cgo as in the control plane's build, so these share its build cache (glibc, like the node)
    kubelet|kubeadm|kubectl|kube-proxy)
      CGO=1 go_build "$e2e_dir/go/node" "$1" "k8s.io/kubernetes/cmd/$1" "" "$(k8s_ldflags)" ;;
    agnhost)
      CGO=1 go_build "$e2e_dir/go/node" agnhost k8s.io/kubernetes/test/images/agnhost "" "-s -w" ;;
    ginkgo)
      go_build "$e2e_dir/go/node" ginkgo github.com/onsi/ginkgo/v2/ginkgo "" "-s -w" ;;
    e2e.test)
      built e2e.test && return 0
      local started=$SECONDS
      log "building e2e.test"
      (cd "$e2e_dir/go/node" && go test -c -trimpath -ldflags "$(k8s_ldflags)" -o "$bin/e2e.test.tmp" k8s.io/kubernetes/test/e2e)
      mv "$bin/e2e.test.tmp" "$bin/e2e.test"
      log "built e2e.test in $((SECONDS - started))s" ;;
    *) echo "build-bins: unknown binary '$1'" >&2; exit 2 ;;
  esac
}

all=(containerd containerd-shim-runc-v2 ctr crictl loopback host-local portmap ptp bridge kind coredns
  kubelet kubeadm kube-proxy)
for name in "${@:-${all[@]}}"; do build_one "$name"; done
echo "$bin"
