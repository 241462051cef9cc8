#!/usr/bin/env bash
# Builds the kind node image without a registry (kind's `kind build node-image` pulls pause, etcd,
# coredns and kindnetd). Base: the debootstrapped Debian rootfs (rootfs.sh) with kind's
# images/base/files and what kind's base Dockerfile sets up, containerd/ctr/shim, crictl and the CNI
# plugins built here, Debian's runc behind runc-wrapper where the host needs it. Node: kubelet,
# kubeadm and kubectl in /usr/bin, /kind/version, and every image kubeadm needs imported into
# containerd (namespace k8s.io, pinned, not unpacked) under the names kubeadm prints.
# `--base-only` stops after the base image (weft-kind-base:...), for testing the boot.
# The image is tagged weft-kind-node:<k8s version>-<hash of its inputs> and reused while it exists.
# Prints the image name.
set -euo pipefail
kind_dir=$(cd "$(dirname "$0")" && pwd)
e2e_dir=$(cd "$kind_dir/.." && pwd)
root_dir=$(cd "$e2e_dir/.." && pwd)
source "$e2e_dir/versions.env"
source "$kind_dir/versions.env"
target="${CARGO_TARGET_DIR:-$root_dir/target}"
log() { echo "build-node-image: $*" >&2; }

key=$(cat "$e2e_dir/versions.env" "$kind_dir/versions.env" "$kind_dir"/build-*.sh "$kind_dir/rootfs.sh" \
  "$kind_dir/runc-wrapper" "$kind_dir/weft-runc-select.service" | sha256sum | cut -c1-12)
image="weft-kind-node:$KUBERNETES_VERSION-$key"
if docker image inspect "$image" >/dev/null 2>&1; then echo "$image"; exit 0; fi
started=$SECONDS

bash "$kind_dir/docker.sh" up
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
rootfs=$(bash "$kind_dir/rootfs.sh")
base_only=false
if [ "${1:-}" = --base-only ]; then
  base_only=true
  bin=$(bash "$kind_dir/build-bins.sh" containerd containerd-shim-runc-v2 ctr crictl loopback host-local portmap ptp bridge | tail -n 1)
  pause=${PAUSE_IMAGE:-registry.k8s.io/pause:3.10.2}
else
  bin=$(bash "$kind_dir/build-bins.sh" | tail -n 1)
  cp_bin=${WEFT_CONTROL_PLANE_BIN:-$(bash "$e2e_dir/scripts/build-control-plane.sh" | tail -n 1)}
  archives=$(bash "$kind_dir/build-images.sh" | tail -n 1)
  bash "$kind_dir/build-images.sh" tests >/dev/null
  pause=$("$bin/kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION" | grep /pause:)
fi
kind_mod=$(cd "$e2e_dir/go/kind" && go list -m -f '{{.Dir}}' sigs.k8s.io/kind)

# The base image.
ctx="$target/kind/node-ctx"
rm -rf "$ctx"; mkdir -p "$ctx/bin" "$ctx/cni"
cp -r "$kind_mod/images/base/files" "$ctx/files"
chmod -R u+w "$ctx/files"
cp "$bin"/{containerd,containerd-shim-runc-v2,ctr,crictl} "$ctx/bin/"
cp "$bin"/{loopback,host-local,portmap,ptp,bridge} "$ctx/cni/"
cp "$kind_dir/runc-wrapper" "$kind_dir/weft-runc-select.service" "$ctx/"
# containerd: the sandbox image kubeadm names
sed -i "s|^\(\s*sandbox_image = \).*|\1\"$pause\"|" "$ctx/files/etc/containerd/config.toml"
cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $rootfs
COPY files/usr/local/bin/ /usr/local/bin/
COPY files/kind/ /kind/
COPY files/etc/ /etc/
COPY bin/ /usr/local/bin/
COPY cni/ /opt/cni/bin/
COPY runc-wrapper /usr/local/libexec/weft/runc-wrapper
COPY weft-runc-select.service /etc/systemd/system/
RUN chmod 755 /kind /kind/bin /kind/bin/* /usr/local/bin/* /usr/local/libexec/weft/runc-wrapper \\
    && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \\
    && rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \\
       /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \\
       /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/* \\
    && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \\
    && ln -sf /usr/lib/systemd/systemd /sbin/init \\
    && systemctl enable kubelet.service containerd.service undo-mount-hacks.service weft-runc-select.service \\
    && systemctl mask systemd-binfmt.service \\
    && mkdir -p /etc/kubernetes/manifests /kind/manifests \\
    && ctr oci spec \\
       | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \\
       | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json \\
    && containerd --version && runc --version | head -n 1 && crictl --version
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
DOCKERFILE
base="weft-kind-base:$KUBERNETES_VERSION-$key"
log "building $base"
docker image inspect "$base" >/dev/null 2>&1 || docker build -q -t "$base" "$ctx" >/dev/null
if $base_only; then echo "$base"; exit 0; fi

# The node: binaries, version, manifests, images.
log "building $image"
container=$(docker run -d --privileged --entrypoint sleep "$base" infinity)
trap 'docker rm -f -v "$container" >/dev/null 2>&1 || true' EXIT
for b in "$bin/kubelet" "$bin/kubeadm" "$cp_bin/kubectl"; do docker cp "$b" "$container:/usr/bin/"; done
docker exec "$container" sh -c "echo $KUBERNETES_VERSION >/kind/version"
# No pod runs for storage (kind applies this file; its default would be local-path-provisioner).
docker exec -i "$container" sh -c 'cat >/kind/manifests/default-storage.yaml' <<'YAML'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/host-path
YAML
docker exec "$container" sh -c 'nohup containerd >/tmp/containerd.log 2>&1 &
  for i in $(seq 1 50); do ctr version >/dev/null 2>&1 && exit 0; sleep 0.2; done; cat /tmp/containerd.log; exit 1'
for archive in "$archives"/*.tar; do
  docker exec -i "$container" ctr -n k8s.io images import --label=io.cri-containerd.pinned=pinned \
    --all-platforms --no-unpack --digests - <"$archive" >/dev/null 2>&1
done
docker exec "$container" ctr -n k8s.io images list -q | grep -v '^sha256:\|^import-' >&2
# nothing reaps containerd in the build container (sleep is PID 1): a zombie counts as stopped
docker exec "$container" sh -c 'pkill containerd; for i in $(seq 1 100); do pgrep -r R,S,D containerd >/dev/null || exit 0; sleep 0.2; done; echo containerd did not stop >&2; exit 1'
docker exec "$container" rm -f /tmp/containerd.log
# kind gives every node an anonymous volume at /var, which Docker fills with a copy of the image's
# /var: with the imported images there, each node would copy all of them (1.2 GB). The content
# store lives in the image at /kind/containerd-content instead, /var keeps a symlink to it, and the
# nodes share the image's read-only layer (containerd writes new blobs to each node's own layer).
docker exec "$container" sh -c 'c=/var/lib/containerd/io.containerd.content.v1.content
  mv "$c" /kind/containerd-content && ln -s /kind/containerd-content "$c"'
docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
  --change "LABEL org.opencontainers.image.version=$KUBERNETES_VERSION" "$container" "$image" >/dev/null
# images of earlier inputs are stale
docker images --format '{{.Repository}}:{{.Tag}}' | grep -E '^weft-kind-(base|node):' |
  grep -v -e "^$image\$" -e "^$base\$" | xargs -r docker rmi >/dev/null 2>&1 || true
log "built $image in $((SECONDS - started))s"
echo "$image"
