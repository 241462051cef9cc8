#!/usr/bin/env bash
# Builds weft's images from static musl binaries: ghcr.io/weft/weft-operator:VERSION and
# ghcr.io/weft/weft-agent:VERSION (VERSION: the workspace version), then prints their sizes.
#   images/build.sh [operator] [agent]   (default: both)
#   images/build.sh --available          both, or only the operator while weft-agent has no binary
# The agent image needs the weft-agent binary; it is an error when the agent crate has none.
set -euo pipefail
root_dir=$(cd "$(dirname "$0")/.." && pwd)
cd "$root_dir"
registry=${WEFT_IMAGE_REGISTRY:-ghcr.io/weft}
musl=x86_64-unknown-linux-musl
target_dir=${CARGO_TARGET_DIR:-target}
available=false no_agent=""
if [ "${1:-}" = --available ]; then available=true; shift; fi
wanted=("${@:-operator agent}")
read -r -a wanted <<<"${wanted[*]}"
for w in "${wanted[@]}"; do
  case "$w" in operator|agent) ;; *) echo "images: unknown image '$w' (allowed: operator, agent)" >&2; exit 2 ;; esac
done

bash e2e/kind/docker.sh up
rustup target list --installed | grep -qx "$musl" || rustup target add "$musl"
command -v musl-gcc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null

metadata=$(cargo metadata --no-deps --format-version 1)
version=$(jq -r '.packages[] | select(.name == "weft-operator") | .version' <<<"$metadata")
has_bin() { jq -e --arg p "$1" --arg b "$2" \
  '.packages[] | select(.name == $p) | .targets[] | select(.kind | index("bin")) | select(.name == $b)' \
  <<<"$metadata" >/dev/null; }

# One package set whatever is wanted, so every run reuses the same compiled dependencies.
packages=(-p weft-operator -p weft-cni)
if has_bin weft-agent weft-agent; then
  packages+=(-p weft-agent)
elif [[ " ${wanted[*]} " == *" agent "* ]]; then
  no_agent="images: the weft-agent crate has no weft-agent binary yet; the agent image cannot be built"
  echo "$no_agent" >&2
  read -r -a wanted <<<"${wanted[*]/agent/}"
fi
started=$SECONDS
cargo build --release --target "$musl" --bins "${packages[@]}"
echo "images: static binaries built in $((SECONDS - started))s" >&2

# The Docker CLI may lack buildx; the classic builder handles this Dockerfile.
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
build_args=(--build-arg "VERSION=$version" --build-arg "TARGET_DIR=$target_dir/$musl/release")
if [[ " ${wanted[*]} " == *" agent "* ]]; then
  # portmap (hostPorts) from the CNI plugins' Go module, staged where .dockerignore lets it in.
  mkdir -p "$target_dir/cni-plugins"
  cp "$(bash e2e/scripts/build-cni-plugins.sh portmap | tail -n 1)/portmap" "$target_dir/cni-plugins/portmap"
  build_args+=(--build-arg "CNI_PLUGINS_DIR=$target_dir/cni-plugins")
fi
for w in "${wanted[@]}"; do
  image="$registry/weft-$w:$version"
  # the nft stage's base: the local Debian rootfs (the default would be pulled)
  extra=(--build-arg "NFT_BASE=$(bash e2e/kind/rootfs.sh)")
  docker build -q -f images/Dockerfile --target "$w" "${build_args[@]}" "${extra[@]}" -t "$image" . >/dev/null
  size=$(docker image inspect --format '{{.Size}}' "$image")
  echo "images: $image $((size / 1024)) KiB"
done
if [ -n "${no_agent:-}" ] && ! $available; then echo "$no_agent" >&2; exit 1; fi
