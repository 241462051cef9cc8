#!/usr/bin/env bash
# Deletes the e2e cluster, its Docker networks and any container of ours left on them.
set -euo pipefail
kind_dir=$(cd "$(dirname "$0")" && pwd)
source "$kind_dir/cluster.env"
kind=$(bash "$kind_dir/build-bins.sh" kind | tail -n 1)/kind
if docker info >/dev/null 2>&1; then
  "$kind" delete cluster --name "$CLUSTER" >&2
  for net in "$NET_A" "$NET_B"; do
    docker network inspect "$net" >/dev/null 2>&1 || continue
    for c in $(docker network inspect -f '{{range .Containers}}{{.Name}} {{end}}' "$net"); do
      docker rm -f -v "$c" >/dev/null
    done
    docker network rm "$net" >/dev/null
  done
fi
bash "$kind_dir/isolate.sh" down
rm -rf "$STATE"
echo "e2e-down: cluster $CLUSTER, networks $NET_A and $NET_B removed" >&2
