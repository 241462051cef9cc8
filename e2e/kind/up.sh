#!/usr/bin/env bash
# Creates the e2e cluster and installs weft the way a user does. kind (built from its Go module)
# creates 1 control plane + 3 workers from weft's node image (or $KIND_NODE_IMAGE) on the internal
# Docker network weft-e2e-a; the last two workers are then moved to weft-e2e-b (a second subnet,
# routed through this host), the weft images are loaded, and `kubectl apply --server-side -k
# config/default` plus config/samples/installation-minimal.yaml install weft. Prints
# `export KUBECONFIG=...`. Nothing reaches beyond this machine: the networks are --internal, dockerd
# does no masquerading, CoreDNS gets no upstream forwarder.
set -euo pipefail
kind_dir=$(cd "$(dirname "$0")" && pwd)
e2e_dir=$(cd "$kind_dir/.." && pwd)
root_dir=$(cd "$e2e_dir/.." && pwd)
source "$kind_dir/cluster.env"
log() { echo "e2e-up: $*" >&2; }
started=$SECONDS
case "${WEFT_E2E_INSTALL:-kustomize}" in
  kustomize|helm) ;;
  *) log "WEFT_E2E_INSTALL=${WEFT_E2E_INSTALL}: allowed are kustomize (default) and helm"; exit 2 ;;
esac

bash "$kind_dir/docker.sh" up
bin=$(bash "$kind_dir/build-bins.sh" kind | tail -n 1)
kind=$bin/kind
cp_bin=${WEFT_CONTROL_PLANE_BIN:-$(bash "$e2e_dir/scripts/build-control-plane.sh" | tail -n 1)}
export PATH="$cp_bin:$PATH"
node_image=${KIND_NODE_IMAGE:-$(bash "$kind_dir/build-node-image.sh" | tail -n 1)}
log "node image $node_image"

images=$(bash "$root_dir/images/build.sh" --available | sed -n 's/^images: \([^ ]*\) .*/\1/p')

if "$kind" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  echo "e2e-up: cluster $CLUSTER exists; run make e2e-down first" >&2; exit 1
fi
for net in "$NET_A $SUBNET_A $GATEWAY_A" "$NET_B $SUBNET_B $GATEWAY_B"; do
  read -r name subnet gateway <<<"$net"
  docker network inspect "$name" >/dev/null 2>&1 ||
    docker network create --internal --subnet "$subnet" --gateway "$gateway" "$name" >/dev/null
done
bash "$kind_dir/isolate.sh" up
agnhost=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep -m1 '^registry.k8s.io/e2e-test-images/agnhost:' || true)
docker rm -f "$OUTSIDE" >/dev/null 2>&1 || true
if [ -n "$agnhost" ]; then
  docker run -d --name "$OUTSIDE" --network "$NET_A" --ip "$OUTSIDE_IP" "$agnhost" \
    netexec --http-port="$OUTSIDE_PORT" --udp-port=-1 >/dev/null
else
  log "no local agnhost image (e2e/kind/build-images.sh tests builds it): no outside container"
fi

mkdir -p "$STATE"
log "kind create cluster --name $CLUSTER"
# Docker publishes no ports for containers only on internal networks, so kind's last step (the
# kubeconfig with the published API server port) fails; the cluster is complete by then, and the
# kubeconfig is written from admin.conf with the control plane's address on the network instead.
create_log="$STATE/kind-create.log"
KIND_EXPERIMENTAL_DOCKER_NETWORK=$NET_A "$kind" create cluster --name "$CLUSTER" --image "$node_image" \
  --config "$kind_dir/cluster.yaml" --kubeconfig "$KUBECONFIG_FILE" --retain >"$create_log" 2>&1 || true
cat "$create_log" >&2
if grep -q '^ERROR' "$create_log"; then
  if ! grep -q 'failed to get api server port' "$create_log"; then
    log "kind create cluster failed (the nodes are kept for inspection; make e2e-down removes them)"
    exit 1
  fi
  cp_ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$NET_A\").IPAddress}}" "$CLUSTER-control-plane")
  docker exec "$CLUSTER-control-plane" cat /etc/kubernetes/admin.conf |
    sed -e "s|server: https://.*|server: https://$cp_ip:6443|" \
      -e "s|kubernetes-admin@kubernetes|kind-$CLUSTER|g" -e "s|name: kubernetes$|name: kind-$CLUSTER|" \
      -e "s|cluster: kubernetes$|cluster: kind-$CLUSTER|" >"$KUBECONFIG_FILE"
  log "kubeconfig for https://$cp_ip:6443 written to $KUBECONFIG_FILE"
fi

bash "$kind_dir/topology.sh"

# CoreDNS answers for the cluster only: its `forward` block (to the node's resolver) is removed.
corefile=$(kubectl --kubeconfig "$KUBECONFIG_FILE" -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}' |
  awk '/^[[:space:]]*forward / { skip = /\{[[:space:]]*$/; next }
       skip { if (/^[[:space:]]*\}[[:space:]]*$/) skip = 0; next }
       { print }')
kubectl --kubeconfig "$KUBECONFIG_FILE" -n kube-system get configmap coredns -o json |
  jq --arg corefile "$corefile" '.data.Corefile = $corefile' |
  kubectl --kubeconfig "$KUBECONFIG_FILE" replace -f - >/dev/null

for image in $images; do
  log "loading $image"
  "$kind" load docker-image --name "$CLUSTER" "$image" >/dev/null
done

case "${WEFT_E2E_INSTALL:-kustomize}" in
  kustomize)
    log "installing weft: kubectl apply --server-side -k config/default, then the minimal Installation"
    kubectl --kubeconfig "$KUBECONFIG_FILE" apply --server-side -k "$root_dir/config/default" >/dev/null
    kubectl --kubeconfig "$KUBECONFIG_FILE" wait --for condition=established --timeout=60s \
      crd/installations.operator.weft.dev >/dev/null
    kubectl --kubeconfig "$KUBECONFIG_FILE" apply --server-side -f "$root_dir/config/samples/installation-minimal.yaml" >/dev/null
    ;;
  helm)
    # The chart's hooks (uninstall, `helm test`) run a kubectl image: built here and loaded.
    hook_image=$(bash "$kind_dir/hook-image.sh" | tail -n 1)
    "$kind" load docker-image --name "$CLUSTER" "$hook_image" >/dev/null
    helm=$(bash "$e2e_dir/scripts/build-helm.sh" | grep '/v3' | tail -n 1)
    log "installing weft: helm install weft charts/weft (Helm $("$helm" version --short))"
    "$helm" install weft "$root_dir/charts/weft" --kubeconfig "$KUBECONFIG_FILE" \
      --namespace weft-operator --create-namespace >/dev/null
    ;;
esac

log "waiting up to ${WAIT_SECONDS}s for the nodes to be Ready and the Installation Available"
deadline=$((SECONDS + WAIT_SECONDS))
until kubectl --kubeconfig "$KUBECONFIG_FILE" wait --for condition=Ready nodes --all --timeout=5s >/dev/null 2>&1 &&
  kubectl --kubeconfig "$KUBECONFIG_FILE" wait --for condition=Available installation/default --timeout=5s >/dev/null 2>&1; do
  if [ $SECONDS -ge $deadline ]; then
    log "not ready after ${WAIT_SECONDS}s:"
    kubectl --kubeconfig "$KUBECONFIG_FILE" get nodes -o wide >&2 || true
    kubectl --kubeconfig "$KUBECONFIG_FILE" get installation default >&2 || true
    kubectl --kubeconfig "$KUBECONFIG_FILE" get pods -A -o wide >&2 || true
    exit 1
  fi
  sleep 5
done
kubectl --kubeconfig "$KUBECONFIG_FILE" get nodes -o wide >&2
kubectl --kubeconfig "$KUBECONFIG_FILE" get installation >&2
log "up in $((SECONDS - started))s"
log "outside the cluster: $OUTSIDE at $OUTSIDE_IP:$OUTSIDE_PORT (weftctl check --outside $OUTSIDE_IP:$OUTSIDE_PORT)"
echo "export KUBECONFIG=$KUBECONFIG_FILE"
