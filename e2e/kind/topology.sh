#!/usr/bin/env bash
# Gives the kind cluster its two subnets: moves MOVED_WORKERS from NET_A to NET_B (kubelet's
# --node-ip follows, the control plane's name goes into /etc/hosts since Docker's DNS only answers
# within a network), routes each subnet to the other through this host (Docker's gateway on each
# network), and points the kubeconfig at the control plane's address when the published port is
# unusable (Docker publishes no ports for containers only on internal networks).
set -euo pipefail
kind_dir=$(cd "$(dirname "$0")" && pwd)
source "$kind_dir/cluster.env"
log() { echo "e2e-topology: $*" >&2; }

ip_on() { docker inspect -f "{{(index .NetworkSettings.Networks \"$2\").IPAddress}}" "$1"; }
gw_a=$GATEWAY_A
gw_b=$GATEWAY_B
cp_node=$CLUSTER-control-plane
cp_ip=$(ip_on "$cp_node" "$NET_A")

for node in $MOVED_WORKERS; do
  docker network connect "$NET_B" "$node"
  ip_b=$(ip_on "$node" "$NET_B")
  log "$node -> $NET_B ($ip_b)"
  docker exec "$node" sh -euc "
    sed -i 's/--node-ip=[^ \"]*/--node-ip=$ip_b/' /var/lib/kubelet/kubeadm-flags.env
    grep -q ' $cp_node\$' /etc/hosts || echo '$cp_ip $cp_node' >>/etc/hosts
    ip route replace $SUBNET_A via $gw_b"
  docker network disconnect "$NET_A" "$node"
  docker exec "$node" systemctl restart kubelet
done
for node in $(docker ps --filter "label=io.x-k8s.kind.cluster=$CLUSTER" --format '{{.Names}}'); do
  case " $MOVED_WORKERS " in *" $node "*) continue ;; esac
  docker exec "$node" ip route replace "$SUBNET_B" via "$gw_a"
done

server=$(kubectl --kubeconfig "$KUBECONFIG_FILE" config view --minify -o jsonpath='{.clusters[0].cluster.server}')
if ! kubectl --kubeconfig "$KUBECONFIG_FILE" --request-timeout=5s get --raw /readyz >/dev/null 2>&1; then
  log "$server unreachable; using https://$cp_ip:6443"
  kubectl --kubeconfig "$KUBECONFIG_FILE" config set-cluster "kind-$CLUSTER" --server "https://$cp_ip:6443" >/dev/null
fi
# kube-proxy reads the node address at start: restart it on the moved nodes.
for node in $MOVED_WORKERS; do
  kubectl --kubeconfig "$KUBECONFIG_FILE" -n kube-system delete pod -l k8s-app=kube-proxy \
    --field-selector "spec.nodeName=$node" --wait=false >/dev/null
done
