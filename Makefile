# AI From Scratch to Scale — every command a learner or maintainer needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON       ?= python3
POETRY_VERSION := 2.5.1
TOOLS        := .tools
# A pinned Poetry of the project's own, with tools/poetry-plugin-simple-index so that locking and
# installing also work against package mirrors that serve only the simple API (docs/toolchain.md).
# Override with `make POETRY=poetry ...` to use your own.
POETRY       ?= $(TOOLS)/poetry/bin/poetry
VENV         ?= .venv
PY           := $(VENV)/bin/python
MODULE_GROUPS := foundations cnn detection sequence generative modern
LEARNER_GROUPS := notebooks $(MODULE_GROUPS)
ALL_GROUPS   := $(LEARNER_GROUPS) tracking dev
comma := ,
space := $(empty) $(empty)
join = $(subst $(space),$(comma),$(strip $(1)))
NB           ?=
JOBS         ?= 2
PORT         ?= 8888
JUPYTER_ARGS ?=
THREADS      ?= 1


# (install-<group> is a pattern rule, so it is not listed as phony: make skips patterns for phony targets)
.PHONY: help poetry install install-all install-test jupyter test test-lib test-notebooks test-default readme-tables run lint format strip lock check-lock doctor bench bench-all contract clean

help: ## List every target with a one-line description
	@echo "AI From Scratch to Scale — make targets"
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'
	@echo "Variables: NB=<notebook> for run, P='-p SMOKE True' extra papermill parameters, JOBS=<n> for tests,"
	@echo "  THREADS=<n> per notebook for test-default (1), PORT=<port> and JUPYTER_ARGS='--ip=0.0.0.0' for jupyter"

$(POETRY):
	@echo ">> installing Poetry $(POETRY_VERSION) (+ simple-index plugin) into $(TOOLS)/poetry"
	$(PYTHON) -m venv $(TOOLS)/poetry
	$(TOOLS)/poetry/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/poetry/bin/python -m pip install --quiet "poetry==$(POETRY_VERSION)" ./tools/poetry-plugin-simple-index

poetry: $(POETRY) ## Install the project's pinned Poetry (with the simple-index plugin) into .tools/

# One stamp per set of groups; re-installs when pyproject.toml or poetry.lock change.
$(VENV)/.installed-%: pyproject.toml poetry.lock | $(POETRY)
	$(POETRY) install $(if $(filter main,$*),,--with $(subst +,$(comma),$*))
	@rm -f $(VENV)/.installed-* ; touch $@

install: $(VENV)/.installed-main ## Install scratchlib and its main dependencies into .venv
install-all: $(VENV)/.installed-$(subst $(space),+,$(ALL_GROUPS)) ## Install every dependency group
install-test: install-all ## Install what the test suite needs (every group)
install-%: | $(POETRY) ## Install one dependency group: install-foundations, -cnn, -detection, -sequence, -generative, -modern, -notebooks, -tracking, -dev
	$(POETRY) install --with $*

# JupyterLab refuses to start as root unless told --allow-root: pass it only when the user is root
# (containers, cloud GPU machines), and say so.
jupyter: $(VENV)/.installed-$(subst $(space),+,$(LEARNER_GROUPS)) ## Start JupyterLab on the curriculum (installs what it needs; as root it adds --allow-root and says so)
	@flags="$(JUPYTER_ARGS)"; \
	if [ "$$(id -u)" = 0 ]; then \
	  flags="--allow-root $$flags"; \
	  echo ">> you are root (a container or cloud machine?): starting JupyterLab with --allow-root"; \
	fi; \
	echo ">> $(VENV)/bin/jupyter lab --port=$(PORT) --notebook-dir=. $$flags"; \
	exec $(VENV)/bin/jupyter lab --port=$(PORT) --notebook-dir=. $$flags

test: install-test ## Run the whole test suite: library tests + every notebook in smoke mode
	$(PY) -m pytest -n $(JOBS) --dist loadgroup --durations=10

test-lib: install-test ## Library tests only (no notebooks)
	$(PY) -m pytest -n $(JOBS) -m "not notebook" --durations=10

test-notebooks: install-test ## Execute every notebook in smoke mode with papermill
	$(PY) -m pytest -n $(JOBS) -m notebook --durations=0

# Not in CI: about 5 minutes a notebook on a 2-core CPU. Each notebook runs on THREADS threads (1:
# the budget's measure) with the data in data/ (real MNIST, CIFAR-10, ... where cached).
test-default: install-all ## Run every notebook in default mode, collect claims and times: outputs/test-default.{md,json} (long, not in CI)
	$(PY) tools/run_notebook.py --all --mode default --threads $(THREADS) \
	  --json outputs/test-default.json --markdown outputs/test-default.md
	@echo ">> summary and claims tables: outputs/test-default.md; then: make readme-tables"

readme-tables: | $(PY) ## Write each module README's results table from outputs/claims and outputs/timings
	$(PY) tools/results_tables.py

run: install-all ## Execute one notebook headless with default parameters: make run NB=01-Foundations/01_perceptron.ipynb
	@test -n "$(NB)" || { echo "usage: make run NB=<module>/<notebook>.ipynb [P='-p SMOKE True']"; exit 2; }
	@test -f "$(NB)" || { echo "no notebook $(NB); see README.md for the curriculum map"; exit 2; }
	@mkdir -p outputs/executed
	$(VENV)/bin/papermill "$(NB)" "outputs/executed/$$(basename $(NB))" --cwd "$$(dirname $(NB))" -k python3 $(P)
	@echo ">> executed notebook: outputs/executed/$$(basename $(NB)); runs: outputs/runs/"

lint: install-all ## Ruff lint and format check (notebooks included)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install-all ## Format and auto-fix with ruff
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

strip: install-all ## Remove outputs from every notebook (nbstripout)
	$(VENV)/bin/nbstripout --keep-id [0-9][0-9]-*/*.ipynb

lock: | $(POETRY) ## Re-lock dependencies (works against simple-API-only mirrors too)
	$(POETRY) lock

check-lock: | $(POETRY) ## Check poetry.lock is consistent with pyproject.toml
	$(POETRY) check --lock

$(PY): | $(POETRY)
	$(POETRY) install

doctor: | $(PY) ## Check device, torch build, CUDA, installed groups, data cache, wandb mode (with hints)
	$(PY) -m scratchlib.cli doctor

bench: install-all ## Benchmarks: the Trainer over a bare PyTorch loop; our ResNet-18 and conv2d over torch's
	$(PY) benchmarks/bench_trainer.py
	$(PY) benchmarks/bench_cnn.py

bench-all: bench ## make bench, then detection (NMS, RoI align, Faster R-CNN images/s) and sequence (GPT, LSTM) benchmarks
	$(PY) benchmarks/bench_detection.py
	$(PY) benchmarks/bench_sequence.py

clean: ## Remove caches, executed notebooks and run outputs (keeps data/ and .venv)
	rm -rf outputs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

-include mk/*.mk
