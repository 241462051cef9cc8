#!/usr/bin/env bash
# The real-node suite `make test` runs: a fresh e2e cluster (up.sh), `weftctl check`, the upstream
# [Feature:NetworkPolicy] and [sig-network] [Conformance] suites (one ginkgo run), kind-suite's
# diagnosis, untrusted-object and disruption checks, then down.sh (always; WEFT_E2E_KEEP=1 keeps
# the cluster for inspection). Prints each step's time and fails on the first failing step.
set -euo pipefail
kind_dir=$(cd "$(dirname "$0")" && pwd)
root_dir=$(cd "$kind_dir/../.." && pwd)
source "$kind_dir/cluster.env"
log() { echo "kind-suite: $*" >&2; }
cd "$root_dir"
started=$SECONDS
summary=()
step() {
  local name=$1; shift
  local at=$SECONDS
  log "== $name"
  if "$@"; then
    summary+=("PASS $name ($((SECONDS - at))s)")
  else
    summary+=("FAIL $name ($((SECONDS - at))s)")
    return 1
  fi
}
finish() {
  local status=$?
  if [ "${WEFT_E2E_KEEP:-0}" != 1 ]; then bash "$kind_dir/down.sh" || status=1; fi
  printf 'kind-suite: %s\n' "${summary[@]}" >&2
  log "$([ $status -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - started))s"
  exit $status
}

if [ -f "$KUBECONFIG_FILE" ]; then bash "$kind_dir/down.sh"; fi
# The cluster's nodes take about 9 GiB of Docker's disk; without it, containers fail to start
# half-way through the suites with errors that hide the cause.
# Docker must be installed and running to say where its disk is (a fresh machine has neither).
need_gib=${WEFT_E2E_DISK_GIB:-12}
bash "$kind_dir/docker.sh" up
docker_root=$(docker info --format '{{.DockerRootDir}}')
if [ ! -d "$docker_root" ]; then
  log "FAILED: docker info names '$docker_root' as Docker's root directory, which does not exist"
  exit 1
fi
free_gib=$(df -P -BG "$docker_root" | awk 'NR == 2 { sub("G", "", $4); print $4 }')
log "disk: ${free_gib} GiB free for $docker_root"
if [ "$free_gib" -lt "$need_gib" ]; then
  log "FAILED: the kind cluster needs about $need_gib GiB free on $docker_root's disk and has" \
    "$free_gib GiB (free some: cargo clean, docker system prune; WEFT_E2E_DISK_GIB changes the need)"
  exit 1
fi
trap finish EXIT
cargo build --quiet -p weftctl -p weft-e2e --bin weftctl --bin kind-suite
step "e2e-up" bash "$kind_dir/up.sh" >/dev/null
export KUBECONFIG=$KUBECONFIG_FILE
cp_bin=${WEFT_CONTROL_PLANE_BIN:-$(bash "$root_dir/e2e/scripts/build-control-plane.sh" | tail -n 1)}
export PATH="$cp_bin:$PATH"
target=${CARGO_TARGET_DIR:-$root_dir/target}/debug
agnhost=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep -m1 '^registry.k8s.io/e2e-test-images/agnhost:')

step "weftctl check" "$target/weftctl" check --require-all --outside "$OUTSIDE_IP:$OUTSIDE_PORT"
step "upstream NetworkPolicy and sig-network Conformance suites" bash "$kind_dir/conformance.sh" all
step "status diagnosis" "$target/kind-suite" --agnhost "$agnhost" diagnosis \
  --unserved-registry "$OUTSIDE_IP:5000/unserved"
step "untrusted objects" "$target/kind-suite" --agnhost "$agnhost" untrusted

# The rollout target: the same images under a second registry name, loaded into every node.
kind=$(bash "$kind_dir/build-bins.sh" kind | tail -n 1)/kind
rollout_registry=localhost/weft-rollout
for image in $(docker images --format '{{.Repository}}:{{.Tag}}' | grep '^ghcr.io/weft/weft-agent:'); do
  renamed=$rollout_registry/${image#ghcr.io/weft/}
  docker tag "$image" "$renamed"
  "$kind" load docker-image --name "$CLUSTER" "$renamed" >/dev/null
done
step "disruption" "$target/kind-suite" --agnhost "$agnhost" disruption \
  --rollout-registry "$rollout_registry"
