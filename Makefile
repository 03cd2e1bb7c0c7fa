# nlbench — run `make help` for the list of targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NLBENCH := $(VENV)/bin/nlbench
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# setuptools' editable-install banner ("Editable installation ... be careful with folders ...") is a Python warning
# of the build backend, which pip prints even with -q; this filter drops only that message.
QUIET_EDITABLE := PYTHONWARNINGS="ignore:Editable installation"

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(QUIET_EDITABLE) $(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

.PHONY: install
install: $(STAMP) ## Create .venv and install nlbench with dev extras (pinned by constraints.txt)

.PHONY: constraints
constraints: $(STAMP) ## Regenerate constraints.txt from pyproject.toml's dependency tree (installed versions)
	$(PY) tools/constraints.py > constraints.txt.new && mv constraints.txt.new constraints.txt

.PHONY: fit-help
fit-help: $(STAMP) ## Record `nlbench fit --help` (nlbench/fit_help.txt) after changing an option or a docstring it shows
	$(PY) -m nlbench.fit_help

.PHONY: test
test: $(STAMP) ## Run the default test suite (excludes tests marked slow)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff format --check, ruff check (imports sorted, pyupgrade, bugbear), lint-imports (layers, no cycles)
	$(VENV)/bin/ruff format --check nlbench tests tools
	$(VENV)/bin/ruff check nlbench tests tools
	$(VENV)/bin/lint-imports --no-cache

.PHONY: format
format: $(STAMP) ## Format the tree and apply ruff's safe fixes (what `make lint` checks)
	$(VENV)/bin/ruff format nlbench tests tools
	$(VENV)/bin/ruff check --fix nlbench tests tools

.PHONY: test-slow
test-slow: $(STAMP) ## Run only the slow tests
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

OLDEST ?= .venv-oldest
BUNDLE := dist/gpu-bundle

.PHONY: gpu-bundle
gpu-bundle: $(STAMP) ## dist/gpu-bundle/ (< 64 MiB): nlbench + the wheels a CUDA PyTorch image lacks + run.sh OUT [--smoke], for nodes without network
	$(PY) tools/gpu_bundle.py --out $(BUNDLE)

$(OLDEST)/.installed: tools/gpu-image.txt
	rm -rf $(OLDEST)
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install -q --disable-pip-version-check -r tools/gpu-image.txt
	touch $@

.PHONY: test-oldest
test-oldest: gpu-bundle $(OLDEST)/.installed ## nlbench on its lowest tested versions (the GPU image's, tools/gpu-image.txt), no index: bundle run.sh --smoke, a fit, a packed sweep
	bash tools/test_oldest.sh $(OLDEST) $(BUNDLE)

.PHONY: demo
demo: $(STAMP) ## The main job: softmax vs scale sweep on the CIFAR-10 sample shipped in the package, then its report
	$(NLBENCH) sweep --config experiments/sweeps/demo.yaml
	$(NLBENCH) report sweeps/demo

.PHONY: fit-demo
fit-demo: $(STAMP) ## One training run on the embedded CIFAR-10 sample (CPU, about a minute)
	$(NLBENCH) fit --config experiments/demo.yaml

.PHONY: sweep-demo
sweep-demo: $(STAMP) ## A tiny softmax-vs-scale grid on the embedded sample (a few minutes on CPU)
	$(NLBENCH) sweep --config experiments/sweeps/demo.yaml

.PHONY: sweep-cifar10
sweep-cifar10: $(STAMP) ## The paper's CIFAR-10 grid: normalization x reduction x init x 3 seeds (downloads the data)
	$(NLBENCH) sweep --config experiments/sweeps/cifar10.yaml

.PHONY: sweep-cifar100
sweep-cifar100: $(STAMP) ## The paper's CIFAR-100 grid (downloads the data)
	$(NLBENCH) sweep --config experiments/sweeps/cifar100.yaml

.PHONY: sweep-tiny-imagenet
sweep-tiny-imagenet: $(STAMP) ## The paper's Tiny-ImageNet grid (downloads the data, about 237 MB)
	$(NLBENCH) sweep --config experiments/sweeps/tiny_imagenet.yaml

.PHONY: report
report: $(STAMP) ## Report of a sweep directory: make report SWEEP=sweeps/cifar10
	$(NLBENCH) report $(or $(SWEEP),sweeps/demo)

.PHONY: bench
bench: $(STAMP) ## Benchmarks: NL block variants, data loaders, training step vs a plain loop
	$(NLBENCH) bench block
	$(NLBENCH) bench loader
	$(NLBENCH) bench train
	$(NLBENCH) bench sweep

.PHONY: device-check
device-check: ## One GPU, 8 min, phases with deadlines -> OUT=device-check/ (SMOKE=1: the CPU, tiny sizes); no install: .venv's or any Python with torch + Lightning
	PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" $(or $(wildcard $(PY)),$(PYTHON)) -m nlbench.bench.device_check $(if $(SMOKE),--smoke) --out $(or $(OUT),device-check)

.PHONY: clean
clean: ## Remove caches and build artefacts (keeps .venv, data and runs)
	rm -rf .pytest_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
