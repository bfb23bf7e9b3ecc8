# ace — make help lists the targets. Every target bootstraps its own virtual environment.
#
# TORCH_SPEC selects the PyTorch build installed *before* the package (which then keeps it):
#   make install                                  # CPU torch 2.13.0 (the default on these machines)
#   make install TORCH_SPEC="torch==2.13.0" PIP_TORCH_ARGS="--index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_TORCH_ARGS ?=
ARGS ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ace-installed

.PHONY: help install train test test-full bench clean

help:  ## show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv and install torch ($(TORCH_SPEC)) and ace with test extras

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(PIP_TORCH_ARGS)
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

train: install  ## train the default experiment (nbody_segnn_ace; N-body data generated on first use); ARGS="..." adds overrides
	$(PY) train.py experiment=nbody_segnn_ace $(ARGS)

test: install  ## run the fast test suite (no network, no GPU)
	$(PY) -m pytest -m "not slow" -q $(ARGS)

test-full: install  ## run every test, slow ones included
	$(PY) -m pytest -q $(ARGS)

bench: install  ## run the benchmarks; JSON under outputs/bench/
	$(PY) scripts/bench_nbody_generation.py
	$(PY) scripts/bench_segnn.py
	$(PY) scripts/bench_training.py
	$(PY) scripts/bench_qm9.py
	$(PY) scripts/bench_mocap.py

clean:  ## remove outputs and caches (keeps data/ and .venv)
	rm -rf outputs/* .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
