# nodelimits — developer entry points. `make help` lists them.
PYTHON ?= python3
PIP_STAMP := .cache/pip.stamp

.DEFAULT_GOAL := help
.PHONY: help install lint test test-fast demo check-examples bench soak docs testbin cluster clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

$(PIP_STAMP): pyproject.toml
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[dev,fast]'
	@mkdir -p $(dir $@) && touch $@

install: $(PIP_STAMP)  ## install nodelimits and the test tools (pip, editable)

lint: install  ## ruff (lint + format check) and mypy --strict
	$(PYTHON) -m ruff check webhook devtools tests bench tools
	$(PYTHON) -m ruff format --check webhook devtools tests bench tools
	$(PYTHON) -m mypy

test: lint  ## everything: lint, unit, integration and e2e (builds tools/testbin once, ~30 min cold)
	$(PYTHON) -m pytest

test-fast: install  ## unit and integration tests only (no testbin binaries needed)
	$(PYTHON) -m pytest -m "not testbin"

testbin:  ## build kube-apiserver, etcd, kubectl and helm into ~/.cache/nodelimits/testbin
	tools/testbin/build.sh

demo: install  ## the main job on a real node (root): the Pending pod nodelimits prevents, helm install, examples/
	$(PYTHON) -m tools.demo

check-examples: install  ## offline: `nodelimits check` over examples/ (no cluster)
	-nodelimits check -f examples/manifests --limits-file examples/limits.yaml

bench: install  ## benchmarks; figures go to docs/performance.md
	$(PYTHON) -m bench.bench_policy
	$(PYTHON) -m bench.bench_check
	$(PYTHON) -m bench.bench_webhook

docs: install  ## regenerate the measured tables of docs/reliability.md (fault matrix: a real run)
	$(PYTHON) -m pytest tests/e2e/test_fault_matrix.py --write-docs

SOAK_ARGS ?= --duration 600 --rate 200
soak: install  ## 10-min soak: mixed load, flapping platform, cert rotation (SOAK_ARGS='--duration 60')
	$(PYTHON) -m tools.soak $(SOAK_ARGS)

cluster: install  ## a control plane alone on loopback; prints KUBECONFIG; Ctrl-C stops it
	$(PYTHON) -m devtools.controlplane

.PHONY: cluster-node
cluster-node: install  ## `make cluster` with a real node (root; pods run); prints KUBECONFIG
	$(PYTHON) -m devtools.realnode

clean:  ## remove build and test caches (not the testbin)
	rm -rf .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info
