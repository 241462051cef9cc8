#!/usr/bin/env bash
# Builds the pinned Helm 3 and Helm 4 commands from their published Go modules into
# target/helm/<version>/helm, which the chart tests run. Does nothing for a version whose directory
# already holds a complete build. Prints the two binaries' paths, one a line.
set -euo pipefail
e2e_dir=$(cd "$(dirname "$0")/.." && pwd)
root_dir=$(cd "$e2e_dir/.." && pwd)
# shellcheck source=../versions.env
source "$e2e_dir/versions.env"

# shellcheck source=require-go.sh
source "$e2e_dir/scripts/require-go.sh"
require_go_126 build-helm

build() { # wrapper module dir, module path, version
  local module_dir="$e2e_dir/go/$1" module=$2 version=$3
  grep -qE "^(require )?[[:space:]]*$module $version\$" "$module_dir/go.mod" || {
    echo "build-helm: $module_dir/go.mod does not require $module $version (e2e/versions.env); update one of them" >&2
    exit 1
  }
  local out="${CARGO_TARGET_DIR:-$root_dir/target}/helm/$version"
  if [ -f "$out/.complete" ]; then echo "$out/helm"; return; fi
  mkdir -p "$out"
  # Helm's own Makefile stamps its version and the Kubernetes version of its client-go (the
  # default capabilities `helm template` and `helm lint` check kubeVersion against).
  local client_go k8s_major k8s_minor
  client_go=$(cd "$module_dir" && go list -f '{{.Version}}' -m k8s.io/client-go)
  client_go=${client_go#v}
  k8s_major=$(( ${client_go%%.*} + 1 ))
  k8s_minor=${client_go#*.}; k8s_minor=${k8s_minor%%.*}
  local ldflags="-s -w -X $module/internal/version.version=$version -X $module/internal/version.gitTreeState=clean"
  case "$module" in
    helm.sh/helm/v3)
      ldflags="$ldflags -X $module/pkg/lint/rules.k8sVersionMajor=$k8s_major -X $module/pkg/lint/rules.k8sVersionMinor=$k8s_minor"
      ldflags="$ldflags -X $module/pkg/chartutil.k8sVersionMajor=$k8s_major -X $module/pkg/chartutil.k8sVersionMinor=$k8s_minor" ;;
  esac
  local started=$SECONDS
  echo "build-helm: building helm $version" >&2
  (cd "$module_dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/helm" "$module/cmd/helm")
  echo "build-helm: built helm $version in $((SECONDS - started))s" >&2
  touch "$out/.complete"
  echo "$out/helm"
}
build helm3 helm.sh/helm/v3 "$HELM3_VERSION"
build helm4 helm.sh/helm/v4 "$HELM4_VERSION"
