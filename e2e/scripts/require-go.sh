# Sourced by the build scripts: fails unless Go 1.26 builds (Go 1.27's default JSONv2 breaks the
# apiserver's OpenAPI, and every Go build here shares one build cache). $1 names the caller.
require_go_126() {
  local go_version
  go_version=$(go env GOVERSION)
  case "$go_version" in
    go1.26|go1.26.*) ;;
    *) echo "$1: Go 1.26 is required (found $go_version); Go 1.27 breaks the apiserver's OpenAPI" >&2; exit 1 ;;
  esac
}
