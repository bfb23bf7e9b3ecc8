"""Shared fixtures: composing the Hydra config the way train.py does, and a tiny N-body set."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
SHARED = ROOT.parent / "shared"
os.environ.setdefault("ACE_ROOT", str(ROOT))
os.environ.setdefault("WANDB_SILENT", "true")

# A tiny N-body set: generated in well under a second, shared by the tests of one session.
TINY_DATA = [
    "data.num_train=40",
    "data.num_valid=20",
    "data.num_test=20",
    "data.max_samples=40",
    "data.batch_size=10",
]


def compose_cfg(overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose configs/train.yaml with overrides; ``${hydra:...}`` resolves to ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """Parent directory for tiny generated N-body sets (generated once per session)."""
    return tmp_path_factory.mktemp("data")


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip: the reference fixtures exist only in the dev checkout."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: reference fixtures exist only beside the development checkout")
    return path


def run_train_py(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python train.py <args>`` in a subprocess (W&B disabled), output captured."""
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@contextmanager
def float64():
    """Build / run under a float64 default dtype (e3nn's Clebsch–Gordan buffers follow it, so a
    model built under float32 and cast with ``.double()`` is only equivariant to ~1e-9)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def metric_value(task, batches: list[tuple[torch.Tensor, object]], name: str | None = None) -> float:
    """A declared metric of ``task`` accumulated over ``[(pred, batch), ...]`` the way the
    LightningModule does it (fresh accumulator, ``metric_inputs``, ``update``, ``compute``)."""
    spec = task.primary if name is None else next(s for s in task.metrics if s.name == name)
    metric = spec.make()
    for pred, batch in batches:
        metric.update(*task.metric_inputs(pred, batch))
    return float(metric.compute())


# ---------------------------------------------------------------------------------------------
# Devices: a few fast tests run on "cpu" and "cuda" (issue 17). The cpu case is the original test;
# the cuda case is marked `cuda` (select them with `pytest -m cuda`, as scripts/gpu_check.py does)
# and skipped where CUDA is not available.
# ---------------------------------------------------------------------------------------------
CUDA_AVAILABLE = torch.cuda.is_available()
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
        not CUDA_AVAILABLE, reason="CUDA is not available (torch.cuda.is_available() is False)")]),
]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """The device a device-parametrised test runs on: ``cpu``, and ``cuda`` where available."""
    return torch.device(request.param)


def to_device(obj, device: torch.device | str):
    """``obj`` on ``device``: a tensor, a dict of tensors (other values kept), or a module (a deep
    copy unless it is already there, so module-scoped CPU fixtures stay on the CPU)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in obj.items()}
    if isinstance(obj, torch.nn.Module):
        first = next(obj.parameters(), None)
        if first is not None and first.device == torch.device(device):
            return obj
        return copy.deepcopy(obj).to(device)
    raise TypeError(f"to_device: unsupported {type(obj).__name__}")


def accelerator(device: torch.device | str) -> str:
    """The Lightning ``trainer.accelerator`` for ``device``."""
    return "gpu" if torch.device(device).type == "cuda" else "cpu"
