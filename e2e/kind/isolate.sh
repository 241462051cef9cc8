#!/usr/bin/env bash
# Keeps the node networks on this machine. Docker runs without iptables rules here, so the nodes'
# default route (Docker's gateway on each network) would let their traffic be forwarded beyond
# the host; this host table forwards only between the two node subnets.
#   isolate.sh up | down
set -euo pipefail
kind_dir=$(cd "$(dirname "$0")" && pwd)
source "$kind_dir/cluster.env"
table="weft-e2e-$CLUSTER"
case "${1:-up}" in
  up)
    nft -f - <<NFT
table ip $table
delete table ip $table
table ip $table {
  set nodes { type ipv4_addr; flags interval; elements = { $SUBNET_A, $SUBNET_B } }
  chain forward {
    type filter hook forward priority filter; policy accept;
    ip saddr @nodes ip daddr != @nodes drop
    ip daddr @nodes ip saddr != @nodes drop
  }
}
NFT
    ;;
  down) nft delete table ip "$table" 2>/dev/null || true ;;
  *) echo "isolate.sh: unknown command '$1' (allowed: up, down)" >&2; exit 2 ;;
esac
