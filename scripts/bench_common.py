"""Timing helpers shared by the benchmarks (``bench_segnn.py``, ``bench_qm9.py``,
``bench_training.py``, ``gpu_check.py``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ace.core.homotopic import gammas, num_gammas

#: λ held constant in the timed ACE steps: loss + λ Σ γ_i (ace_algorithm.md §2)
LAMBDA = 0.1


def make_train_step(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor, object], torch.Tensor],
    forward: Callable | None = None,
    adam: str = "fused",
    lr: float = 1e-4,
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
):
    """One optimisation step: forward, ``loss_fn(pred, batch)`` [+ λ Σγ for ACE], backward, Adam
    (or ``optimizer(params)``, e.g. a partial of fused SGD).

    ``forward`` (e.g. a compiled model) defaults to ``model``; ``adam`` is ``"fused"``,
    ``"foreach"`` or ``"default"`` (torch's per-tensor loop on CPU).
    """
    kwargs = {"fused": True} if adam == "fused" else {"foreach": True} if adam == "foreach" else {}
    opt = (optimizer(model.parameters()) if optimizer is not None
           else torch.optim.Adam(model.parameters(), lr=lr, **kwargs))
    forward = model if forward is None else forward
    is_ace = num_gammas(model) > 0

    def step(batch):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(forward(batch), batch)
        if is_ace:
            loss = loss + LAMBDA * gammas(model).sum()
        loss.backward()
        opt.step()
        return loss

    return step


def make_infer(forward: Callable):
    @torch.no_grad()
    def infer(batch):
        return forward(batch)

    return infer


def time_round_robin(fns: dict, batch, warmup: int, reps: int,
                     keep_samples: bool = False) -> dict[str, dict]:
    """Median / min / quartiles of each function's time on ``batch``.

    The functions are timed round-robin, alternating direction each repetition, so that load
    drifts on a shared machine hit them equally.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn(batch)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns.items())
    for rep in range(reps):
        for k, fn in order if rep % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            fn(batch)
            samples[k].append(time.perf_counter() - t0)
    out = {}
    for k, v in samples.items():
        q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
        out[k] = {"median_s": statistics.median(v), "min_s": min(v), "q1_s": q[0], "q3_s": q[2]}
        if keep_samples:
            out[k]["samples_s"] = v
    return out


def write_result(result: dict, out: str) -> None:
    """Record the load average at the end, write ``result`` as JSON to ``out`` and print it."""
    import json
    import os
    from pathlib import Path

    result["loadavg_end"] = os.getloadavg()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def train_in_process(overrides: list[str], out: Path, callbacks: dict | None = None):
    """Run ``train.py``'s pipeline in this process on ``configs/train.yaml`` + ``overrides``
    (output under ``out``; ``logger=csv`` must be among them) and return its ``metrics.csv`` as a
    DataFrame. ``callbacks`` replaces ``cfg.callbacks`` (Hydra ``_target_`` entries)."""
    import pandas as pd
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from ace.training.pipeline import train

    root = Path(__file__).resolve().parents[1]
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(root / "configs")):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.job.num = 0
        if callbacks is not None:
            cfg.callbacks = callbacks
    HydraConfig.instance().set_config(cfg)
    train(cfg)
    return pd.read_csv(Path(out) / "csv" / "metrics.csv")
