#!/usr/bin/env bash
# Keeps the node networks on this machine. Docker runs without iptables rules here, so the nodes'
# default route (Docker's gateway on each network) would let their traffic be forwarded beyond
# the host; this host table forwards only between the two node subnets.
#   isolate.sh up | down
set -euo pipefail
kind_dir=$(cd "$(dirname "$0")" && pwd)
source "$kind_dir/cluster.env"
#
# With br_netfilter (bridge-nf-call-iptables=1) this hook also sees frames bridged within one
# Docker network, with the bridge as both input and output device: a node talking straight to a
# pod on another node of its subnet (kubelet probes, the API server's pod proxy, node -> pod) has a
# pod address as destination and must pass. So what stays between the two networks' bridges is
# accepted, whatever its addresses; what would leave through any other device is filtered.
table="weft-e2e-$CLUSTER"
bridge_of() {
  local name
  name=$(docker network inspect -f '{{index .Options "com.docker.network.bridge.name"}}' "$1")
  if [ -z "$name" ] || [ "$name" = "<no value>" ]; then
    name=br-$(docker network inspect -f '{{.Id}}' "$1" | cut -c1-12)
  fi
  echo "$name"
}
case "${1:-up}" in
  up)
    bridge_a=$(bridge_of "$NET_A") bridge_b=$(bridge_of "$NET_B")
    nft -f - <<NFT
table ip $table
delete table ip $table
table ip $table {
  set nodes { type ipv4_addr; flags interval; elements = { $SUBNET_A, $SUBNET_B } }
  set bridges { type ifname; elements = { "$bridge_a", "$bridge_b" } }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname @bridges oifname @bridges accept
    ip saddr @nodes ip daddr != @nodes drop
    ip daddr @nodes ip saddr != @nodes drop
  }
}
NFT
    ;;
  down) nft delete table ip "$table" 2>/dev/null || true ;;
  *) echo "isolate.sh: unknown command '$1' (allowed: up, down)" >&2; exit 2 ;;
esac
