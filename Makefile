# smallfleet — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export SMALLFLEET_CACHE ?= $(HOME)/.cache/smallfleet
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help
help: ## List the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.stamp: pyproject.toml
	@echo "==> Python environment ($(VENV))"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip
	@$(BIN)/pip install -q -e '.[dev]'
	@touch $@

.PHONY: venv
venv: $(VENV)/.stamp ## Create the Python environment (idempotent)

.PHONY: bins
bins: ## Build the cluster binaries from Go modules into $SMALLFLEET_CACHE (cold: ~10 min)
	@hack/build-bins.sh all >/dev/null

.PHONY: triton-env
triton-env: venv ## Unpack Triton from the nvidia-pytriton wheel and package the test models
	@$(BIN)/python hack/triton_env.py

.PHONY: image
image: venv ## The operator image, built with podman from Debian packages (installs podman when missing; cold ~5 min)
	@hack/image.sh build

.PHONY: lint
lint: venv ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

.PHONY: fmt
fmt: venv ## Format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: typecheck
typecheck: venv ## mypy --strict on the package
	$(BIN)/mypy --strict operator/smallfleet

.PHONY: layers
layers: venv ## import-linter: only the kube layer imports the client; the pure core never imports kopf
	$(BIN)/lint-imports

.PHONY: chart-check
chart-check: venv bins ## CRDs in the chart equal crds/; helm lint; helm template
	@$(BIN)/python hack/check_chart.py

.PHONY: openapi
openapi: venv bins ## Refresh tests/data/openapi from a throwaway API server; dry-run the golden manifests
	$(BIN)/python hack/dump_openapi.py --check-render

.PHONY: docs
docs: venv ## Regenerate the field reference from the CRD descriptions
	$(BIN)/python hack/gen_reference.py

.PHONY: unit
unit: venv ## Unit tests of the pure core (no cluster)
	$(BIN)/pytest tests/unit -q

.PHONY: triton
triton: triton-env ## Tests against a real Triton Inference Server (CPU)
	$(BIN)/pytest tests/triton -q

.PHONY: e2e
e2e: venv bins triton-env image ## End-to-end tests against a real local control plane (and a real-Triton node)
	$(BIN)/pytest tests/e2e -q --durations=15

# The unit tests of the layers that call the dependencies (the pure core imports none of
# them, as the import-linter contract proves): telemetry, the Kubernetes and Triton
# adapters, providers, fetch, the control layer.
FLOOR_TESTS := $(addprefix tests/unit/,test_telemetry.py test_kube_yaml_body.py \
	test_metricsource.py test_providers.py test_fleet_loop_stress.py test_scaling_runtime.py \
	test_placement_runtime.py test_triton_readiness.py test_permissions.py test_fetch_auth.py \
	test_workqueue.py test_kopf_toggles.py test_kopf_storage.py test_kopf_streams.py test_projections.py \
	test_kopf_gate.py)

.PHONY: floors
floors: venv bins triton-env ## Unit, Triton and operator tests on the lowest dependency versions pyproject allows
	@bash hack/floors.sh
	.venv-floors/bin/pytest $(FLOOR_TESTS) tests/triton/test_pool_server.py -q -p no:cacheprovider
	.venv-floors/bin/pytest "tests/e2e/test_operator.py::test_every_example_reaches_ready" -q -p no:cacheprovider

.PHONY: check
check: lint typecheck layers chart-check ## Static checks

.PHONY: test
test: check unit triton e2e floors ## Everything CI runs

.PHONY: bench
bench: venv triton-env bins ## Benchmarks (print tables)
	$(BIN)/python bench/run.py

.PHONY: bench-throughput-quick
bench-throughput-quick: venv bins ## Operator throughput bench with 100 objects per side (~2 min)
	SMALLFLEET_BENCH_OBJECTS=100 $(BIN)/python bench/run.py operator_throughput

.PHONY: bench-fleet
bench-fleet: venv bins ## Fleet bench vs plain kopf: create, quiet, update, unrelated load, delete (SMALLFLEET_FLEET_*; hours)
	$(BIN)/python bench/run.py fleet

.PHONY: bench-density
bench-density: venv triton-env bins ## Models per pool vs one Triton each at N=10,50,200: servers, RSS, p50/p99, load and failure times (SMALLFLEET_DENSITY_*; <25 min)
	$(BIN)/python bench/run.py density

.PHONY: bench-fuzz
bench-fuzz: venv bins ## Fuzz the API server and the offline validator with 10,000 near-valid manifests, then the operator with a live sample (SMALLFLEET_FUZZ_*; ~10 min)
	$(BIN)/python bench/run.py fuzz

.PHONY: cluster
cluster: venv bins ## Start the local multi-region KWOK cluster (writes ./kubeconfig)
	$(BIN)/python -m hack.cluster up

.PHONY: cluster-down
cluster-down: venv ## Stop the local cluster
	$(BIN)/python -m hack.cluster down

.PHONY: demo
demo: venv triton-env ## The main job: a fleet on a local (or your) cluster, printed as a table
	$(BIN)/python -m hack.demo

.PHONY: demo-down
demo-down: venv ## Stop the demo operator and delete the local demo cluster
	$(BIN)/python -m hack.demo down

.PHONY: clean
clean: ## Remove local build outputs (keeps the binary cache)
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info .venv-floors
