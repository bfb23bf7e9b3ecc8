"""Benchmark EGNO × CMU MoCap: seconds per training epoch, vanilla vs ACE, ours vs edge-list.

One batch of 12 samples (the paper's batch; 16 steps per epoch on Run) is timed round-robin for

* ``ours_vanilla`` / ``ours_ace``: :class:`ace.models.EGNO` (node-major layout, per-endpoint split
  of the first edge Linear, ``index_select``/``index_add`` gathers, in-place edge assembly);
* ``edgelist_vanilla`` / ``edgelist_ace``: ``scripts/egno_reference.py``, the same function
  evaluated as the EGNO code base does (time-major rows, per-edge concatenation, scatter means),
  on the *same* parameters — the speed-up at identical math, measured in this run.

A step is forward, loss (mean over the 5 frames of the per-frame MSE, + λ Σγ for ACE), backward,
gradient-norm clipping at 1.0 and Adam (fused). ``s_per_epoch`` = 16 × the median step. The
authors' code was timed on this CPU at 12.0–12.4 s per epoch vanilla and 13.2 s constrained
(``cpu_anchors.md``); the ratio to that anchor is across runs (this VM's speed drifts by up to 2×
over minutes), the edge-list ratio within one run. Uses the real Run data when
``--data-dir`` holds it, else a synthetic 31-joint skeleton (the timing does not depend on values).
Writes JSON to ``--out`` (default ``outputs/bench/bench_mocap.json``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ace.core.homotopic import count_parameters, gammas, num_gammas  # noqa: E402
from ace.data.mocap import MoCapDataModule, MoCapTask, skeleton_graph  # noqa: E402
from ace.models import EGNO  # noqa: E402
from bench_common import LAMBDA, time_round_robin, write_result  # noqa: E402
from egno_reference import reference_forward  # noqa: E402

STEPS_PER_EPOCH = 16
AUTHORS_CPU_S_PER_EPOCH = {"vanilla": 12.2, "ace": 13.2}  # cpu_anchors.md (12.0-12.4, 13.2)


def real_batch(data_dir: str, batch_size: int) -> dict | None:
    if not (Path(data_dir) / "motion_run.pkl").exists():
        return None
    dm = MoCapDataModule(data_dir=data_dir, batch_size=batch_size, base_url="file:///nonexistent/")
    dm.setup()
    return next(iter(dm.train_dataloader()))


def synthetic_batch(batch_size: int) -> dict:
    g = torch.Generator().manual_seed(0)
    tree = [(c, 0 if c % 6 == 1 else c - 1) for c in range(1, 31)]
    edge_index, edge_type = skeleton_graph(tree)
    loc = torch.randn(batch_size, 31, 3, generator=g) * 5
    loc[..., 1] = loc[..., 1].abs() + 1
    target = loc.unsqueeze(1).repeat(1, 5, 1, 1)
    return {"loc": loc, "vel": torch.randn(batch_size, 31, 3, generator=g) * 0.3,
            "target_loc": target, "target_vel": torch.zeros_like(target),
            "edge_index": edge_index, "edge_type": edge_type}


def make_step(model: EGNO, forward):
    task = MoCapTask()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-10, fused=True)
    is_ace = num_gammas(model) > 0

    def step(batch):
        opt.zero_grad(set_to_none=True)
        loss = task.loss(forward(batch), batch)
        if is_ace:
            loss = loss + LAMBDA * gammas(model).sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default="data/mocap")
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="1 warm-up, 2 repetitions")
    parser.add_argument("--out", default="outputs/bench/bench_mocap.json")
    args = parser.parse_args()
    if args.quick:
        args.warmup, args.reps = 1, 2

    batch = real_batch(args.data_dir, args.batch_size)
    data = "real Run training batch" if batch is not None else "synthetic 31-joint skeleton"
    batch = batch if batch is not None else synthetic_batch(args.batch_size)
    torch.manual_seed(0)
    models = {"vanilla": EGNO(), "ace": EGNO(ace_branches=True)}
    steps = {}
    for kind, model in models.items():
        steps[f"ours_{kind}"] = make_step(model, model)
        twin = EGNO(ace_branches=kind == "ace")
        twin.load_state_dict(model.state_dict())
        steps[f"edgelist_{kind}"] = make_step(twin, lambda b, m=twin: reference_forward(m, b))

    t0 = time.perf_counter()
    timings = time_round_robin(steps, batch, args.warmup, args.reps, keep_samples=True)
    med = {k: v["median_s"] for k, v in timings.items()}
    result = {
        "script": "scripts/bench_mocap.py",
        "data": data,
        "batch_size": args.batch_size,
        "steps_per_epoch": STEPS_PER_EPOCH,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "warmup": args.warmup,
        "reps": args.reps,
        "params": {k: count_parameters(m) for k, m in models.items()},
        "train_step": timings,
        "s_per_epoch": {k: STEPS_PER_EPOCH * v for k, v in med.items()},
        "ratio_ace_over_vanilla": med["ours_ace"] / med["ours_vanilla"],
        "speedup_over_edgelist": {k: med[f"edgelist_{k}"] / med[f"ours_{k}"] for k in models},
        "authors_cpu_s_per_epoch": AUTHORS_CPU_S_PER_EPOCH,
        "speedup_over_authors_anchor": {
            k: AUTHORS_CPU_S_PER_EPOCH[k] / (STEPS_PER_EPOCH * med[f"ours_{k}"]) for k in models},
        "loadavg_start": os.getloadavg(),
        "bench_wall_s": time.perf_counter() - t0,
    }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
