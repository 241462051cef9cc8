# weft — the two commands that matter: `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
DEBIAN_PACKAGES := nftables conntrack iproute2 containernetworking-plugins ethtool iputils-ping
CONTROL_PLANE_BIN = $(shell bash e2e/scripts/build-control-plane.sh 2>/dev/null | tail -n 1)

.PHONY: all demo demo-kwok test unit lint fmt crds control-plane helm packages cluster-up cluster-down bench
.PHONY: docker images node-image e2e-up e2e-down e2e e2e-netpol check kind-test conformance

all: lint test

## demo: weft on the local control plane with a real dataplane (root): 3 nodes on 2 subnets as
## network namespaces, each with its own weft-agent, 5 pods attached by the weft plugin, the
## connectivity matrix before and after the blue policy. Without root: the kwok demo.
## DEMO_ARGS=--keep keeps it up until Ctrl-C; Ctrl-C at any time removes everything it made.
demo: control-plane
	@$(CARGO) build --quiet -p weft-agent -p weft-cni -p weftctl -p weft-e2e --bin weft-agent --bin weft --bin weft-ipam --bin weftctl --bin weft-demo
	@$(CARGO) run --quiet -p weft-e2e --bin weft-demo -- $(DEMO_ARGS)

## demo-kwok: the install path alone: 3 kwok nodes (simulated pods), weft's CRDs and operator,
## the sample Installation until Available, `kubectl get installation` and the component table.
demo-kwok: control-plane
	$(CARGO) run --quiet -p weft-e2e --bin weft-demo -- --kwok

## test: every test: unit and integration on the real control plane and real network namespaces,
## then the real-node suite on a kind cluster (kind-test).
test: packages control-plane helm
	$(CARGO) test --workspace --all-targets --no-fail-fast
	@$(MAKE) --no-print-directory kind-test

## control-plane: build the pinned Kubernetes binaries (once per version) into target/k8s/.
control-plane:
	@bash e2e/scripts/build-control-plane.sh

## helm: build the pinned Helm 3 and Helm 4 (once per version) into target/helm/ for the chart tests.
helm:
	@bash e2e/scripts/build-helm.sh >/dev/null

## packages: the Debian packages the dataplane tests need (installed when missing).
packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq $$missing; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## crds: regenerate crds/ (one file per CRD) from the Rust types, and the chart's copy of them.
crds:
	$(CARGO) run --quiet -p weftctl -- crds --out-dir crds
	cp crds/*.weft.dev.yaml charts/weft/crds/

## bench: the benchmarks recorded in BENCHMARKS.md (release builds; root for the CNI and nft ones).
## The operator bench measures the Tigera operator beside weft when TIGERA_OPERATOR names its binary.
bench: packages control-plane
	$(CARGO) bench -p weft-cni --bench cni_vs_reference
	$(CARGO) bench -p weft-policy --bench scale
	$(CARGO) bench -p weft-operator --bench versus_tigera
	$(CARGO) build --release -p weft-cni
	$(CARGO) bench -p weft-agent --bench node

cluster-up: control-plane
	$(CARGO) run --quiet -p weft-e2e --bin local-cluster -- up --nodes 3

cluster-down:
	$(CARGO) run --quiet -p weft-e2e --bin local-cluster -- down

## Real nodes (kind), built without a registry: see e2e/kind/README.md.
## kind-test: a fresh kind cluster with weft, `weftctl check`, the upstream NetworkPolicy and
## sig-network Conformance suites, the status diagnosis, untrusted-object and disruption checks, then the cluster is removed (part of `make test`).
kind-test: control-plane
	@bash e2e/kind/suite.sh

## docker: install Docker when missing and start dockerd (no masquerading; runc wrapper if needed).
docker:
	@bash e2e/kind/docker.sh up

## images: the weft-operator and weft-agent images from static musl binaries.
images:
	@bash images/build.sh

## node-image: the kind node image (Debian rootfs, containerd, kubelet, kubeadm, every image).
node-image: control-plane
	@bash e2e/kind/build-node-image.sh

## e2e-up / e2e-down: the kind cluster (1 control plane + 3 workers, two subnets) with weft installed.
e2e-up: control-plane
	@bash e2e/kind/up.sh

e2e-down:
	@bash e2e/kind/down.sh

## check: `weftctl check` against the e2e cluster (the outside container stands for the internet).
check:
	@source e2e/kind/cluster.env && KUBECONFIG=$$KUBECONFIG_FILE $(CARGO) run --quiet -p weftctl -- check --require-all --outside $$OUTSIDE_IP:$$OUTSIDE_PORT

## e2e: the upstream [Feature:NetworkPolicy] and [sig-network] [Conformance] suites on the e2e cluster.
e2e:
	@bash e2e/kind/conformance.sh all

e2e-netpol:
	@bash e2e/kind/conformance.sh netpol

## conformance: the upstream [sig-network] [Conformance] tests on the e2e cluster (make e2e-up first).
conformance:
	@bash e2e/kind/conformance.sh sig-network
