# nlbench — run `make help` for the list of targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NLBENCH := $(VENV)/bin/nlbench
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

.PHONY: install
install: $(STAMP) ## Create .venv and install nlbench with dev extras (pinned by constraints.txt)

.PHONY: test
test: $(STAMP) ## Run the default test suite (excludes tests marked slow)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-slow
test-slow: $(STAMP) ## Run only the slow tests
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

.PHONY: demo
demo: $(STAMP) ## Run the main job on the CIFAR-10 sample embedded in the package (CPU, ~1 min)
	$(NLBENCH) fit --config experiments/demo.yaml

.PHONY: bench
bench: $(STAMP) ## Benchmark the NL block variants (time and peak memory per feature-map size)
	$(NLBENCH) bench block

.PHONY: clean
clean: ## Remove caches and build artefacts (keeps .venv, data and runs)
	rm -rf .pytest_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
