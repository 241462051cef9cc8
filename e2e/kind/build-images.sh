#!/usr/bin/env bash
# Builds, from binaries built here, every image a kubeadm cluster of KUBERNETES_VERSION runs, under
# the exact names `kubeadm config images list` prints: kube-apiserver, kube-controller-manager,
# kube-scheduler, kube-proxy, etcd, coredns and pause (with `tests`: the upstream test images
# agnhost, busybox, glibc-dns-testing and nginx). Images land in
# the local Docker store and as `docker save` archives in target/kind/images/<versions>/ (which the
# node image imports). Existing images are kept. Prints the archive directory.
#   build-images.sh [tests]
set -euo pipefail
kind_dir=$(cd "$(dirname "$0")" && pwd)
e2e_dir=$(cd "$kind_dir/.." && pwd)
root_dir=$(cd "$e2e_dir/.." && pwd)
source "$e2e_dir/versions.env"
source "$kind_dir/versions.env"
target="${CARGO_TARGET_DIR:-$root_dir/target}"
out="$target/kind/images/${KUBERNETES_VERSION}"
mkdir -p "$out"
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
k8s_mod=$(cd "$e2e_dir/go/node" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)

log() { echo "build-images: $*" >&2; }

# build NAME CONTEXT: docker build CONTEXT as NAME and save it, unless the archive exists.
build() {
  local name=$1 ctx=$2 archive
  archive="$out/$(echo "$name" | tr '/:' '__').tar"
  if [ -f "$archive" ] && docker image inspect "$name" >/dev/null 2>&1; then return 0; fi
  log "building $name"
  docker build -q -t "$name" "$ctx" >/dev/null
  docker save -o "$archive.tmp" "$name"
  mv "$archive.tmp" "$archive"
}

# A scratch image holding one dynamically linked binary in /usr/local/bin and the libraries ldd
# lists for it (taken from the Debian rootfs, the same glibc the node runs).
binary_image() { # name, binary path, entrypoint (JSON array), user
  local ctx="$target/kind/images/ctx/$(basename "$2")"
  rm -rf "$ctx"; mkdir -p "$ctx"
  cp "$2" "$ctx/"
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $rootfs AS libs
COPY $(basename "$2") /out/usr/local/bin/
RUN set -eu; for lib in \$(ldd /out/usr/local/bin/$(basename "$2") 2>/dev/null | grep -o '/[^ ]*'); do \\
      mkdir -p "/out\$(dirname "\$lib")"; cp -L "\$lib" "/out\$lib"; done; \\
    mkdir -p /out/etc /out/tmp; chmod 1777 /out/tmp; \\
    echo 'root:x:0:0:root:/root:/sbin/nologin' >/out/etc/passwd; \\
    echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >>/out/etc/passwd; \\
    printf 'root:x:0:\nnonroot:x:65532:\n' >/out/etc/group; \\
    cp -a /etc/ssl /out/etc/ssl
FROM scratch
COPY --from=libs /out/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin
USER $4
ENTRYPOINT $3
DOCKERFILE
  build "$1" "$ctx"
}

# The upstream test images the check and the suites run, under their upstream names, on the Debian
# test rootfs (the upstream ones are alpine/Debian with these tools; tests exec sh, curl, nc, ip,
# dig, wget and nslookup in them).
if [ "${1:-}" = tests ]; then
  testfs=$(bash "$kind_dir/rootfs.sh" tests)
  abin=$(bash "$kind_dir/build-bins.sh" agnhost | tail -n 1)/agnhost
  repo=registry.k8s.io/e2e-test-images
  ctx="$target/kind/images/ctx/agnhost"; rm -rf "$ctx"; mkdir -p "$ctx"; cp "$abin" "$ctx/"
  cp "$k8s_mod/test/images/agnhost/porter/localhost.crt" "$k8s_mod/test/images/agnhost/porter/localhost.key" "$ctx/"
  chmod u+w "$ctx"/*
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $testfs
COPY agnhost localhost.crt localhost.key /
RUN ln -s agnhost /agnhost-2 && mkdir /uploads && \\
    groupadd -g 50000 group-defined-in-image && useradd -u 1000 -M -G group-defined-in-image user-defined-in-image
ENTRYPOINT ["/agnhost"]
CMD ["pause"]
DOCKERFILE
  build "$repo/agnhost:$(cat "$k8s_mod/test/images/agnhost/VERSION")" "$ctx"
  ctx="$target/kind/images/ctx/busybox"; rm -rf "$ctx"; mkdir -p "$ctx"
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $testfs
RUN for applet in \$(busybox --list); do command -v "\$applet" >/dev/null || ln -s /bin/busybox "/usr/local/bin/\$applet"; done
CMD ["sh"]
DOCKERFILE
  build "$repo/busybox:1.37.0-1" "$ctx"
  ctx="$target/kind/images/ctx/glibc-dns-testing"; rm -rf "$ctx"; mkdir -p "$ctx"
  printf 'FROM %s\nCMD ["sh"]\n' "$testfs" >"$ctx/Dockerfile"
  build "$repo/glibc-dns-testing:2.0.0" "$ctx"
  ctx="$target/kind/images/ctx/nginx"; rm -rf "$ctx"; mkdir -p "$ctx"
  printf 'FROM %s\nEXPOSE 80\nCMD ["nginx", "-g", "daemon off;"]\n' "$testfs" >"$ctx/Dockerfile"
  build "$repo/nginx:1.15-4" "$ctx"
  echo "$out"; exit 0
fi

cp_bin=${WEFT_CONTROL_PLANE_BIN:-$(bash "$e2e_dir/scripts/build-control-plane.sh" | tail -n 1)}
bin=$(bash "$kind_dir/build-bins.sh" kubeadm kube-proxy coredns | tail -n 1)
rootfs=$(bash "$kind_dir/rootfs.sh")
images=$("$bin/kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION")
name_of() { grep -E "/$1:" <<<"$images"; }
for component in kube-apiserver kube-controller-manager kube-scheduler; do
  binary_image "$(name_of "$component")" "$cp_bin/$component" "[\"/usr/local/bin/$component\"]" 0
done
binary_image "$(name_of etcd)" "$cp_bin/etcd" '["/usr/local/bin/etcd"]' 0

# kube-proxy runs iptables/nft, conntrack and ipset: the Debian rootfs holds them.
ctx="$target/kind/images/ctx/kube-proxy"; rm -rf "$ctx"; mkdir -p "$ctx"; cp "$bin/kube-proxy" "$ctx/"
printf 'FROM %s\nCOPY kube-proxy /usr/local/bin/kube-proxy\nENTRYPOINT ["/usr/local/bin/kube-proxy"]\n' "$rootfs" >"$ctx/Dockerfile"
build "$(name_of kube-proxy)" "$ctx"

# coredns: static, like the upstream image; it runs as root with only NET_BIND_SERVICE (the
# kubeadm Deployment drops every other capability); upstream runs it as nonroot with a file capability.
ctx="$target/kind/images/ctx/coredns"; rm -rf "$ctx"; mkdir -p "$ctx"; cp "$bin/coredns" "$ctx/"
printf 'FROM scratch\nLABEL org.opencontainers.image.version=%s\nCOPY coredns /coredns\nEXPOSE 53 53/udp\nENTRYPOINT ["/coredns"]\n' \
  "$COREDNS_VERSION" >"$ctx/Dockerfile"
build "$(name_of coredns)" "$ctx"

# pause: pause.c from the Kubernetes module, static.
pause_name=$(name_of pause)
ctx="$target/kind/images/ctx/pause"; rm -rf "$ctx"; mkdir -p "$ctx"
gcc -Os -Wall -Werror -static -DVERSION="v${pause_name##*:}" -o "$ctx/pause" "$k8s_mod/build/pause/linux/pause.c"
printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$ctx/Dockerfile"
build "$pause_name" "$ctx"
echo "$out"
