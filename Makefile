# experiment-operator — the README's two commands are `make demo` and `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCAL := .local
export PYTHONUNBUFFERED := 1

.PHONY: help venv controlplane lab-binaries binaries manifests check-manifests image lint typecheck \
        unit integration node test reliability demo bench bench-decompose cluster-up cluster-down clean lab-packages \
        lab-images lab

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(BIN)/experiment-operator: pyproject.toml lab/pyproject.toml
	@echo "[venv] creating $(VENV) and installing the project with its dev tools"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e lab
	@touch $@

venv: $(BIN)/experiment-operator ## Create the virtual environment

controlplane: ## Build (once) the control-plane binaries from their Go modules (or take KUBEBUILDER_ASSETS)
	@bash hack/controlplane/build.sh controlplane >/dev/null

lab-binaries: ## Build (once) the node tier's binaries from their Go modules (kubelet, kube-proxy, ...)
	@bash hack/controlplane/build.sh lab >/dev/null

binaries: ## Both sets in one run, so the next module's downloads overlap the current compile
	@bash hack/controlplane/build.sh controlplane lab >/dev/null

manifests: venv ## Regenerate every generated file (CRD, RBAC, config/, chart CRDs, reference docs)
	$(BIN)/python -m experiment_operator.manifests write

check-manifests: venv ## Fail when a generated file is stale
	$(BIN)/python -m experiment_operator.manifests check

image: ## Build the container image with buildah (no Docker daemon; see docs/image.md)
	@bash hack/image/build.sh

lab-packages: ## Install the Debian packages of the lab's node tier (root; containerd, buildah, chromium, ...)
	@bash lab/packages.sh

lab-images: venv lab-packages ## Build the node tier's images (pause, MLflow, seed contract, operator) into ~/.cache/experiment-operator/images
	$(BIN)/python -m experiment_lab.images build

lab: venv lab-packages ## Everything the node tier needs: Go binaries and images, built side by side (cold: see docs/lab.md)
	@$(MAKE) --no-print-directory -j2 binaries lab-images

lint: venv ## ruff (lint + format check)
	$(BIN)/ruff check src lab tests bench
	$(BIN)/ruff format --check src lab tests bench

typecheck: venv ## mypy --strict
	$(BIN)/mypy

unit: venv ## Tests that need no API server
	$(BIN)/pytest -m "not integration" tests

integration: venv binaries ## Tests against a real API server (local, or KUBECONFIG with USE_EXISTING_CLUSTER=true)
	$(BIN)/pytest -m "integration and not node" tests

node: lab ## The node tier's tests only: a real kubelet, Traefik, S3, PostgreSQL, Chromium (see docs/lab.md)
	$(BIN)/pytest -m node tests

test: lab lint typecheck ## Everything: lint, types, unit, integration, e2e; the node tier's session runs beside the rest
	@mkdir -p $(LOCAL); set +e; \
	echo "[test] the node tier runs beside the rest; its output: $(LOCAL)/node-tests.log (printed at the end)"; \
	$(BIN)/pytest -m node tests > $(LOCAL)/node-tests.log 2>&1 & node=$$!; \
	$(BIN)/pytest -m "not node" tests; fast=$$?; \
	wait $$node; slow=$$?; \
	sed 's/^/[node] /' $(LOCAL)/node-tests.log; \
	echo "[test] exit codes: unit, integration and e2e $$fast; node tier $$slow"; \
	exit $$(( fast != 0 || slow != 0 ))

reliability: venv controlplane ## Only the reliability tests (kills, API server faults, throttling, partition; part of test), figures in .local/reliability.jsonl (RELIABILITY_LEASE_TIMINGS=15,10,2: production Lease timings)
	@mkdir -p $(LOCAL)
	RELIABILITY_FIGURES=$(abspath $(LOCAL))/reliability.jsonl $(BIN)/pytest -s tests/integration/reliability

N ?= 100
SCENARIOS ?= all
bench: venv controlplane ## Benchmarks on a fresh control plane with N TrackingServers (N=1000, SCENARIOS=idle,restart,spec,latency,unrelated, BENCH_ARGS=...); never part of test
	$(BIN)/python -m bench --n $(N) --scenarios $(SCENARIOS) $(BENCH_ARGS)

bench-decompose: venv controlplane ## Where the operator's run costs more than the floor: its habits one by one, no operator (N=1000)
	$(BIN)/python -m bench.decompose --n $(N)

TIER ?= node
cluster-up: venv lab ## Start the lab in the background (.local/kubeconfig, .local/lab.env; TIER=kwok: fake nodes only)
	@mkdir -p $(LOCAL)
	@if [[ -f $(LOCAL)/cluster.pid ]] && kill -0 $$(cat $(LOCAL)/cluster.pid) 2>/dev/null; then \
	  echo "already running: KUBECONFIG=$(LOCAL)/kubeconfig"; exit 0; fi
	@rm -f $(LOCAL)/ready
	@setsid $(BIN)/python -m experiment_lab serve $(LOCAL) --tier $(TIER) > $(LOCAL)/cluster.log 2>&1 & \
	  echo $$! > $(LOCAL)/cluster.pid
	@for i in $$(seq 1 600); do \
	  [[ -f $(LOCAL)/ready ]] && { echo "cluster up: export KUBECONFIG=$$PWD/$(LOCAL)/kubeconfig"; exit 0; }; \
	  kill -0 $$(cat $(LOCAL)/cluster.pid) 2>/dev/null || { cat $(LOCAL)/cluster.log; exit 1; }; \
	  sleep 0.5; done; cat $(LOCAL)/cluster.log; exit 1

cluster-down: ## Stop the lab and every process it started
	@if [[ -f $(LOCAL)/cluster.pid ]]; then \
	  pid=$$(cat $(LOCAL)/cluster.pid); kill -TERM -- -$$pid 2>/dev/null || true; \
	  for i in $$(seq 1 60); do kill -0 -- -$$pid 2>/dev/null || break; sleep 0.5; done; \
	  kill -KILL -- -$$pid 2>/dev/null || true; rm -f $(LOCAL)/cluster.pid $(LOCAL)/ready; \
	  echo "cluster down"; else echo "no cluster running"; fi

demo: lab ## The node tier, the operator (as its ServiceAccount), the seed's sample and a tenant at http://localhost:8080/demo; Ctrl-C stops
	$(BIN)/python -m experiment_lab.demo

clean: cluster-down ## Remove the venv and local state (the binary cache stays)
	rm -rf $(VENV) $(LOCAL)
