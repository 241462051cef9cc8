#!/usr/bin/env bash
# Builds a Debian rootfs image by debootstrap of DEBIAN_SUITE. The tarball is cached under
# target/kind/, the Docker image (imported from it) in the local store. Prints the image name.
#   rootfs.sh [node]   what the node image (and the agent image's nft) start from: the packages
#                      kind v0.33.0's base image installs, plus Debian's runc
#   rootfs.sh tests    what the upstream test images are made of (agnhost's tools, busybox,
#                      dnsutils, nginx)
set -euo pipefail
kind_dir=$(cd "$(dirname "$0")" && pwd)
root_dir=$(cd "$kind_dir/../.." && pwd)
source "$kind_dir/versions.env"

# kind's images/base/Dockerfile package list, plus runc (Debian's, wrapped), dbus (systemd's
# machine bus) and ipset.
case "${1:-node}" in
  node)
    packages=(systemd systemd-sysv dbus conntrack iptables nftables iproute2 ethtool util-linux mount
      kmod libseccomp2 pigz fuse-overlayfs nfs-common open-iscsi e2fsprogs bash ca-certificates curl
      jq procps runc ipset)
    flavour=rootfs ;;
  tests)
    packages=(bash curl netcat-openbsd iproute2 iputils-ping bind9-dnsutils busybox nginx-light
      procps util-linux ca-certificates iperf)
    flavour=testfs ;;
  *) echo "rootfs.sh: unknown flavour '$1' (allowed: node, tests)" >&2; exit 2 ;;
esac
key=$(printf '%s\n' "$DEBIAN_SUITE" "${packages[@]}" | sha256sum | cut -c1-12)
image="weft-kind-$flavour:$DEBIAN_SUITE-$key"
out="${CARGO_TARGET_DIR:-$root_dir/target}/kind"
tarball="$out/$flavour-$DEBIAN_SUITE-$key.tar"

if docker image inspect "$image" >/dev/null 2>&1; then echo "$image"; exit 0; fi
mkdir -p "$out"
if [ ! -f "$tarball" ]; then
  command -v debootstrap >/dev/null || {
    echo "rootfs: installing debootstrap" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  dir="$out/$flavour-$DEBIAN_SUITE-$key.tmp"
  rm -rf "$dir"
  started=$SECONDS
  echo "rootfs: debootstrap $DEBIAN_SUITE into $dir" >&2
  include=$(IFS=,; echo "${packages[*]}")
  debootstrap --variant=minbase --include="$include" "$DEBIAN_SUITE" "$dir" "$DEBIAN_MIRROR" >"$dir.log" 2>&1 || {
    echo "rootfs: debootstrap failed; last lines of $dir.log:" >&2; tail -n 20 "$dir.log" >&2; exit 1; }
  # apt caches are not part of an image
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf "$dir" "$dir.log"
  echo "rootfs: debootstrap done in $((SECONDS - started))s" >&2
fi
docker import "$tarball" "$image" >/dev/null
echo "$image"
