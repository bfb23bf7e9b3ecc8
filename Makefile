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

.PHONY: help install install-qm9pack train test test-full bench gpu-check reproduce-nbody reproduce-nbody-cpu clean

help:  ## show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-20s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv and install torch ($(TORCH_SPEC)) and ace with test extras

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(PIP_TORCH_ARGS)
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install-qm9pack: install  ## add the optional qm9pack wheel (~104 MB): QM9 offline with data.source=qm9pack
	$(PY) -m pip install -q -e ".[qm9pack]"

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
	$(PY) scripts/bench_vn_dgcnn.py

# On a CUDA machine, in under 5 minutes: `pytest -m cuda`, one debug=smoke epoch of every
# experiment on the GPU, N-body SEGNN vanilla / ACE s/epoch against Table 3 (RTX A5000).
# Without CUDA it says so and exits 0. The CPU dry run (what tests/test_gpu_check.py runs):
#   make gpu-check ARGS="--device cpu --epochs 2 --max-samples 200 --experiments nbody_segnn_ace"
gpu-check: install  ## on CUDA: cuda tests, a smoke epoch of each experiment, N-body s/epoch (outputs/bench/gpu.json)
	$(PY) scripts/gpu_check.py $(ARGS)

# Paper protocol for N-body (Table 2 left, Figs. 2 and 6): the Table 4 grids, 5 seeds, 2000 epochs.
# 75 ACE + 25 vanilla + 25 augmented + 25 SEGNN Rel. runs of about 1 GPU-hour each: use a cluster,
#   make reproduce-nbody LAUNCHER=slurm SWEEP_ARGS="trainer=gpu hydra.launcher.partition=gpu"
LAUNCHER ?= basic
SWEEP_ARGS ?=
NBODY_OUT ?= outputs/reproduce_nbody
reproduce-nbody: install  ## full N-body protocol (GPU-scale; LAUNCHER=slurm), then tables and figures
	$(PY) scripts/generate_nbody.py
	$(PY) train.py -m experiment=nbody_segnn_ace hparams_search=nbody_grid launcher=$(LAUNCHER) hydra.sweep.dir=$(NBODY_OUT)/ace $(SWEEP_ARGS)
	$(PY) train.py -m experiment=nbody_segnn hparams_search=nbody_grid_vanilla launcher=$(LAUNCHER) hydra.sweep.dir=$(NBODY_OUT)/vanilla $(SWEEP_ARGS)
	$(PY) train.py -m experiment=nbody_segnn_aug hparams_search=nbody_grid_vanilla launcher=$(LAUNCHER) hydra.sweep.dir=$(NBODY_OUT)/aug $(SWEEP_ARGS)
	$(PY) train.py -m experiment=nbody_segnn_rel hparams_search=nbody_grid_vanilla launcher=$(LAUNCHER) hydra.sweep.dir=$(NBODY_OUT)/rel $(SWEEP_ARGS)
	$(PY) scripts/aggregate.py $(NBODY_OUT)
	$(PY) scripts/plot.py $(NBODY_OUT)

# Reduced CPU version (docs/results.md): vanilla vs ACE equality at the official learning rates
# (no grid), 3 seeds, CPU_EPOCHS epochs, two single-thread jobs at a time. The baselines too:
#   make reproduce-nbody-cpu NBODY_CPU_EXPERIMENTS=nbody_segnn,nbody_segnn_ace,nbody_segnn_aug,nbody_segnn_rel
CPU_EPOCHS ?= 200
NBODY_CPU_OUT ?= outputs/reproduce_nbody_cpu
NBODY_CPU_EXPERIMENTS ?= nbody_segnn,nbody_segnn_ace
reproduce-nbody-cpu: install  ## reduced N-body comparison on a CPU (vanilla vs ACE, 3 seeds, CPU_EPOCHS epochs)
	$(PY) scripts/generate_nbody.py
	$(PY) train.py -m experiment=$(NBODY_CPU_EXPERIMENTS) seed=42,43,44 trainer.max_epochs=$(CPU_EPOCHS) launcher=local_parallel logger=csv hydra.sweep.dir=$(NBODY_CPU_OUT) $(SWEEP_ARGS)
	$(PY) scripts/aggregate.py $(NBODY_CPU_OUT)
	$(PY) scripts/plot.py $(NBODY_CPU_OUT)

clean:  ## remove outputs and caches (keeps data/ and .venv)
	rm -rf outputs/* .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
