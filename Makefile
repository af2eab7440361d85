# nodelimits — developer entry points. `make help` lists them.
PYTHON ?= python3
# Every install comes from the one lock (hashes, runtime + dev + build deps): see
# docs/development.md "Dependencies". One stamp per interpreter, so a CI venv and the
# system Python do not share one.
LOCK := requirements.lock
IMAGE_REQS := requirements.image.txt
PIP_STAMP := .cache/pip-$(subst /,_,$(PYTHON)).stamp
PIP := $(PYTHON) -m pip --disable-pip-version-check

.DEFAULT_GOAL := help
.PHONY: help install lock image release lint test test-fast demo check-examples bench soak docs chart-docs testbin promtool cluster clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

$(PIP_STAMP): pyproject.toml $(LOCK)
	$(PIP) install --quiet --require-hashes --no-deps -r $(LOCK)
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	@$(PIP) check >/dev/null || { $(PIP) check; \
	  echo "$(LOCK) does not satisfy pyproject.toml: run 'make lock'" >&2; exit 1; }
	@mkdir -p $(dir $@) && touch $@

install: $(PIP_STAMP)  ## install nodelimits and the test tools from requirements.lock (hashes)

# pip-compile over pyproject.toml: every extra (dev, fast) and the build backend, with the
# hashes of every file of each pinned version (all platforms, so arm64 images install too).
LOCK_ARGS ?= --upgrade
lock: install  ## upgrade requirements.lock on purpose (LOCK_ARGS='--upgrade-package click'); then `make test` decides
	CUSTOM_COMPILE_COMMAND="make lock" $(PYTHON) -m piptools compile --quiet $(LOCK_ARGS) \
	  --all-extras --all-build-deps --generate-hashes --allow-unsafe --strip-extras \
	  --no-emit-find-links --no-emit-index-url --output-file $(LOCK) pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" $(PYTHON) -m piptools compile --quiet -c $(LOCK) \
	  --extra fast --all-build-deps --generate-hashes --allow-unsafe --strip-extras \
	  --no-emit-find-links --no-emit-index-url --output-file $(IMAGE_REQS) pyproject.toml

IMAGE_ARGS ?=
image: install  ## build the image from the work tree with podman (no Docker engine; docs/install.md)
	$(PYTHON) -m tools.release image $(IMAGE_ARGS)

RELEASE_ARGS ?=
release: install  ## HEAD end to end: image, loopback OCI registry, chart push, helm install oci:// (RELEASE_ARGS='--registry HOST:PORT')
	@$(PYTHON) -m tools.release release $(RELEASE_ARGS)

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

promtool:  ## build promtool (the chart's alert tests) into ~/.cache/nodelimits/promtool
	tools/promtool/build.sh

demo: install  ## the main job on a real node (root): the Pending pod nodelimits prevents, helm install, examples/
	tools/node-deps.sh
	$(PYTHON) -m tools.demo

check-examples: install  ## offline: `nodelimits check` over examples/ (no cluster)
	-nodelimits check -f examples/manifests --limits-file examples/limits.yaml

bench: install  ## benchmarks; figures go to docs/performance.md
	$(PYTHON) -m bench.bench_policy
	$(PYTHON) -m bench.bench_check
	$(PYTHON) -m bench.bench_webhook
	$(PYTHON) -m bench.bench_handler  # add --instructions 300 where valgrind is installed
	$(PYTHON) -m bench.bench_apiserver --peers  # builds Gatekeeper/Kyverno once (tools/peers)
	$(PYTHON) -m bench.peer_verdicts
	$(PYTHON) -m bench.bench_replicas  # root: the real node, as tests/node runs it

docs: install chart-docs  ## regenerate the chart README and the measured tables of docs/reliability.md (fault matrix: a real run)
	$(PYTHON) -m pytest tests/e2e/test_fault_matrix.py --write-docs

chart-docs: install  ## regenerate charts/nodelimits/README.md from values.schema.json and values.yaml
	$(PYTHON) -m tools.chartdocs

SOAK_ARGS ?= --duration 600 --rate 200
soak: install  ## 10-min soak: mixed load, flapping platform, cert rotation (SOAK_ARGS='--duration 60')
	$(PYTHON) -m tools.soak $(SOAK_ARGS)

cluster: install  ## a control plane alone on loopback; prints KUBECONFIG; Ctrl-C stops it
	$(PYTHON) -m devtools.controlplane

.PHONY: cluster-node
cluster-node: install  ## `make cluster` with a real node (root; pods run); prints KUBECONFIG
	tools/node-deps.sh
	$(PYTHON) -m devtools.realnode

clean:  ## remove build and test caches (not the testbin)
	rm -rf .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info
