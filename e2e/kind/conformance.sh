#!/usr/bin/env bash
# Runs the upstream suites against the e2e cluster (make e2e-up first): e2e.test and ginkgo built
# from the Kubernetes module, the test images already in the nodes under their upstream names
# (KUBE_TEST_REPO_LIST maps every registry to the names built here). Fails when a node's
# containerd logged an image pull. Reports in target/kind/cluster-*/report-<suite>/.
#   conformance.sh [netpol|sig-network|all]   (default: all)
set -euo pipefail
kind_dir=$(cd "$(dirname "$0")" && pwd)
source "$kind_dir/cluster.env"
suite=${1:-all}
# Each suite: its focus, the number of specs it runs (a run of fewer fails: a renamed tag or an
# empty focus must not pass by running nothing) and a ginkgo timeout with margin over its run.
case "$suite" in
  netpol) focus='\[Feature:NetworkPolicy\]' specs=45 timeout=40m ;;
  sig-network) focus='\[sig-network\].*\[Conformance\]' specs=47 timeout=30m ;;
  all) focus='\[Feature:NetworkPolicy\]|\[sig-network\].*\[Conformance\]' specs=92 timeout=60m ;;
  *) echo "conformance.sh: unknown suite '$suite' (allowed: netpol, sig-network, all)" >&2; exit 2 ;;
esac
# E2E_FOCUS replaces the suite's focus (a regular expression on test names), to run a few tests;
# then at least one spec must run (E2E_MIN_SPECS changes that).
if [ -n "${E2E_FOCUS:-}" ]; then focus=$E2E_FOCUS specs=1; fi
specs=${E2E_MIN_SPECS:-$specs}
# Skipped: what upstream CNI jobs skip, features weft does not claim, and tests that need the
# internet (traffic stays on this machine).
skip=(
  '\[Slow\]' '\[Serial\]' '\[Disruptive\]' '\[Flaky\]'
  '\[Feature:SCTPConnectivity\]' '\[Feature:Networking-IPv6\]' '\[Feature:IPv6DualStack\]'
  'should provide Internet connection for containers'
)
skip_re=$(IFS='|'; echo "${skip[*]}")
[ -f "$KUBECONFIG_FILE" ] || { echo "conformance.sh: no cluster ($KUBECONFIG_FILE); run make e2e-up" >&2; exit 1; }
bin=$(bash "$kind_dir/build-bins.sh" e2e.test ginkgo | tail -n 1)
report="$STATE/report-$suite"
rm -rf "$report"; mkdir -p "$report"
cat >"$STATE/repo-list.yaml" <<'YAML'
gcAuthenticatedRegistry: registry.k8s.io
gcEtcdRegistry: registry.k8s.io
promoterE2eRegistry: registry.k8s.io/e2e-test-images
buildImageRegistry: registry.k8s.io/build-image
invalidRegistry: invalid.registry.k8s.io/invalid
gcRegistry: registry.k8s.io
sigStorageRegistry: registry.k8s.io/sig-storage
privateRegistry: registry.k8s.io/e2e-test-images
dockerLibraryRegistry: docker.io/library
YAML
export KUBECONFIG=$KUBECONFIG_FILE KUBE_TEST_REPO_LIST=$STATE/repo-list.yaml
echo "conformance: focus $focus" >&2
echo "conformance: skip $skip_re" >&2
started=$SECONDS
status=0
"$bin/ginkgo" --procs="${E2E_PROCS:-4}" --timeout="$timeout" --no-color --focus="$focus" --skip="$skip_re" \
  "$bin/e2e.test" -- --provider=skeleton --kubeconfig="$KUBECONFIG_FILE" --report-dir="$report" \
  --dump-logs-on-failure=false --e2e-verify-service-account=false >"$report/e2e.log" 2>&1 || status=$?
echo "conformance: $suite ran in $((SECONDS - started))s (exit $status), log $report/e2e.log" >&2
grep -E '^(Ran [0-9]+ of|FAIL!|SUCCESS!|PASS|FAIL)' "$report/e2e.log" | tail -n 3 >&2 || true
grep -E '^\s*\[FAIL\]' "$report/e2e.log" | sort -u >&2 || true
ran=$(sed -nE 's/^Ran ([0-9]+) of [0-9]+ Specs.*/\1/p' "$report/e2e.log" | tail -n 1)
if [ "${ran:-0}" -lt "$specs" ]; then
  echo "conformance: FAILED: $suite ran ${ran:-no} specs; it must run at least $specs" \
    "(a renamed tag or a focus that matches nothing; E2E_MIN_SPECS changes the floor)" >&2
  status=1
fi

# On failure, what went wrong and what the cluster saw meanwhile, short enough to read at the
# end of a CI log: the failed checks' reasons, the wrong probes (BLOCKED: connectivity expected;
# ALLOWED: policy not enforced), containers that restarted, and each weft pod's warnings.
if [ "$status" -ne 0 ]; then
  kubectl=${WEFT_CONTROL_PLANE_BIN:-$(bash "$kind_dir/../scripts/build-control-plane.sh" | tail -n 1)}/kubectl
  k() { "$kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
  log=$report/e2e.log
  echo "conformance: reasons (count, first 160 characters):" >&2
  grep -hE '^\s*\[FAILED\]' "$log" | grep -v -F '[FAILED] in [' | sed -E 's/^\s*\[FAILED\] *//' | cut -c1-160 |
    sort | uniq -c | sort -rn | head -n 5 >&2 || true
  echo "conformance: wrong probes: $(grep -c 'instead BLOCKED' "$log") expected allowed but blocked," \
    "$(grep -c 'instead ALLOWED' "$log") expected blocked but allowed; first ones:" >&2
  grep -hoE 'Validation of .* FAILED' "$log" | head -n 3 >&2 || true
  echo "conformance: containers that restarted:" >&2
  k get pods -A --no-headers -o custom-columns='NS:.metadata.namespace,POD:.metadata.name,NODE:.spec.nodeName,RESTARTS:.status.containerStatuses[*].restartCount' |
    awk '{ n = split($4, r, ","); for (i = 1; i <= n; i++) if (r[i] > 0) { print "  " $0; break } }' >&2 || true
  for pod in $(k -n weft-system get pods -o name); do
    echo "conformance: ${pod#pod/} on $(k -n weft-system get "$pod" -o jsonpath='{.spec.nodeName}'), warnings:" >&2
    k -n weft-system logs "$pod" 2>/dev/null | grep -E ' (WARN|ERROR) ' |
      sed -E 's/^[^ ]+ +//; s/(resource version: )[0-9]+ \([0-9]+\)/\1N/' | cut -c1-160 |
      sort | uniq -c | sort -rn | head -n 3 >&2 || true
  done
fi

# Image pulls containerd logged, except those from the unserved registry address of ours that
# kind-suite's diagnosis uses on purpose (they never leave the machine).
pulled="journalctl -u containerd --no-pager | grep 'level=info msg=.PullImage ' | grep -v -F '$OUTSIDE_IP:'"
pulls=0
for node in $(docker ps --filter "label=io.x-k8s.kind.cluster=$CLUSTER" --format '{{.Names}}'); do
  n=$(docker exec "$node" sh -c "$pulled | grep -c ." || true)
  if [ "${n:-0}" -gt 0 ]; then
    echo "conformance: $node's containerd logged $n image pulls:" >&2
    docker exec "$node" sh -c "$pulled | head -n 5" >&2
    pulls=$((pulls + n))
  fi
done
[ "$pulls" -eq 0 ] || status=1
exit "$status"
