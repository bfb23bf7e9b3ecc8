"""Benchmark EGNO × CMU MoCap: seconds per training epoch, vanilla vs ACE, ours vs edge-list vs
the authors' code, all measured in this run.

**Steps** (always). One batch of 12 samples (the paper's batch; 16 steps per epoch on Run) is
timed round-robin (alternating order each repetition) for

* ``ours_vanilla`` / ``ours_ace``: :class:`ace.models.EGNO` (``configs/model/egno_mocap.yaml``'s
  settings) with our training step: forward, loss (mean over the 5 frames of the per-frame MSE),
  for ACE the Lagrangian + Σ λγ of ``EqualityConstraint`` (``mocap_egno_ace``: dual Adam, lr 2e-4,
  eps 1e-4), backward, gradient-norm clipping at 1.0, fused Adam (lr 5e-4, weight decay 1e-10),
  dual step (``ace.core.step.primal_dual_step``, as ``ACEModule.training_step``; Lightning's
  per-step logging is not included);
* ``edgelist_vanilla`` / ``edgelist_ace``: ``scripts/egno_reference.py``, the same function
  evaluated as the EGNO code base does (time-major rows, per-edge concatenation, scatter means),
  on the *same* parameters, with the same step — the speed-up at identical math;
* ``authors_vanilla`` / ``authors_ace`` (only with ``--authors-dir``): the authors' own EGNO
  (andreimano/ACE ``EGNO/``, run from a checkout outside this repository, see
  ``scripts/authors_code.py``) with their training loop's step (their ``train_epoch`` on a
  one-batch loader: their input preparation, forward, loss, constraint term and λ gradient,
  backward, clipping, Adam, dual Adam) on the same 12 samples in their input format.

``s_per_epoch`` = 16 × the median step.

**Epochs** (with ``--authors-dir``, ``--epoch-reps`` > 0). Whole training epochs, round-robin:
their ``train_epoch`` over their own ``MotionDynamicsDataset`` + ``DataLoader`` (200 Run
samples, batch 12, shuffle, drop_last, 0 workers, as their ``run_once``) against ours over our
``MoCapDataModule`` training loader (the same 200 samples, 16 batches) with our step.

``speedup_over_authors`` (steps) and ``speedup_over_authors_epoch`` are authors / ours from this
run, with the spread of the per-repetition ratios. Uses the real Run data when ``--data-dir``
holds it (required with ``--authors-dir``), else a synthetic 31-joint skeleton (the timing does
not depend on values). Writes JSON to ``--out`` (default ``outputs/bench/bench_mocap.json``).

**Profile** (``--profile``, instead of the timing): ``torch.profiler`` over a few steps of each
configuration (ours; the authors' with ``--authors-dir``): self time of every ATen op, grouped
into GEMMs, gather/scatter, FFT, optimizer (clipping, Adam, dual step) and the rest
(elementwise), the forward / backward / optimizer share, the framework overhead (profiled wall
time − the ops' self time: Python, dispatcher, autograd engine) and the GEMM FLOPs per step
against the GEMM time. Writes ``--out`` (default ``outputs/bench/bench_mocap_profile.json``).

    python scripts/bench_mocap.py [--authors-dir /tmp/ace_authors] [--quick]
    python scripts/bench_mocap.py --profile [--authors-dir /tmp/ace_authors]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ace.core.constraints import EqualityConstraint  # noqa: E402
from ace.core.homotopic import count_parameters, gammas, num_gammas  # noqa: E402
from ace.core.step import primal_dual_step  # noqa: E402
from ace.data.mocap import MoCapDataModule, MoCapTask, skeleton_graph  # noqa: E402
from ace.models import EGNO  # noqa: E402
from bench_common import time_round_robin, write_result  # noqa: E402
from egno_reference import reference_forward  # noqa: E402

STEPS_PER_EPOCH = 16
#: the authors' code on this kind of CPU, from cpu_anchors.md: *another* run (context only; the
#: ratios of this script are measured in its own run)
CPU_ANCHORS_OTHER_RUN_S_PER_EPOCH = {"vanilla": 12.2, "ace": 13.2}


def datamodule(data_dir: str, batch_size: int) -> MoCapDataModule | None:
    if not (Path(data_dir) / "motion_run.pkl").exists():
        return None
    dm = MoCapDataModule(data_dir=data_dir, batch_size=batch_size, base_url="file:///nonexistent/")
    dm.setup()
    return dm


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
    """Our training step (``ACEModule.training_step`` without Lightning's logging): task loss,
    for ACE the equality-constraint Lagrangian, backward, clip 1.0, fused Adam, dual Adam."""
    task = MoCapTask()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-10, fused=True)
    constraint = dual = None
    if num_gammas(model) > 0:  # configs/experiment/mocap_egno_ace.yaml
        constraint = EqualityConstraint(num_gammas(model), dual_lr=2e-4, dual_optimizer="adam",
                                        dual_adam_eps=1e-4)
        dual = constraint.make_dual_optimizer()
    params = list(model.parameters())

    def clip() -> None:
        torch.nn.utils.clip_grad_norm_(params, 1.0)

    def step(batch):
        loss = task.loss(forward(batch), batch)
        gamma = gammas(model) if constraint is not None else None
        return primal_dual_step(loss, gamma, constraint, opt, dual,
                                before_primal_step=clip).lagrangian

    return step


def ratio_spread(num: list[float], den: list[float]) -> dict[str, float]:
    """Per-repetition ratios num/den (the repetitions are paired by the round-robin)."""
    r = [a / b for a, b in zip(num, den)]
    return {"median": statistics.median(r), "min": min(r), "max": max(r)}


GEMM_OPS = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::mv", "aten::addmv",
            "aten::dot", "aten::addbmm"}
GATHER_SCATTER = ("index_select", "index_add", "scatter", "gather", "aten::index", "index_put",
                  "embedding")


def _op_category(name: str) -> str:
    if name in GEMM_OPS:
        return "gemm"
    if any(k in name for k in GATHER_SCATTER):
        return "gather/scatter"
    if "_fft_" in name:
        return "fft"
    return "elementwise/other"


def _phase(event) -> str:
    while event is not None:
        if event.name == "PHASE_backward":
            return "backward"
        if event.name.startswith(("Optimizer.", "PHASE_clip")):
            return "optimizer"
        event = event.cpu_parent
    return "forward"


def profile_step(fn, batch, warmup: int, reps: int, prof_reps: int) -> dict:
    """Wall time of ``fn(batch)`` (median of ``reps``), then a ``torch.profiler`` breakdown of one
    call: self time per category and phase, top ops, GEMM FLOPs per step. ``prof_reps`` calls are
    profiled one by one and the fastest is kept (a step slowed by another process on this
    shared machine would distort the shares).

    ``Tensor.backward`` and ``torch.nn.utils.clip_grad_norm_`` are wrapped in labels while this
    runs (ours and the authors' steps call both), so that backward and clipping can be told
    apart; the wrappers add one profiler range each and change nothing else."""
    import collections

    from torch.profiler import ProfilerActivity, profile, record_function

    for _ in range(warmup):
        fn(batch)
    walls = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(batch)
        walls.append(time.perf_counter() - t0)
    backward, clip = torch.Tensor.backward, torch.nn.utils.clip_grad_norm_

    def labelled_backward(self, *a, **k):
        with record_function("PHASE_backward"):
            return backward(self, *a, **k)

    def labelled_clip(*a, **k):
        with record_function("PHASE_clip"):
            return clip(*a, **k)

    torch.Tensor.backward, torch.nn.utils.clip_grad_norm_ = labelled_backward, labelled_clip
    best = None
    try:
        for _ in range(prof_reps):
            with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
                t0 = time.perf_counter()
                fn(batch)
                wall = time.perf_counter() - t0
            if best is None or wall < best[0]:
                best = (wall, prof.events())
    finally:
        torch.Tensor.backward, torch.nn.utils.clip_grad_norm_ = backward, clip
    wall_prof, events = best
    cat, phase, ops = collections.Counter(), collections.Counter(), collections.Counter()
    flops = 0.0
    for e in events:
        if not e.name.startswith("aten::"):
            continue
        t = e.self_cpu_time_total / 1e6
        ph = _phase(e)
        cat["optimizer" if ph == "optimizer" else _op_category(e.name)] += t
        phase[ph] += t
        ops[e.name] += t
        flops += e.flops or 0
    ops_s = sum(cat.values())
    share = lambda v: round(100 * v / wall_prof, 1)  # noqa: E731
    return {
        "step_s_median": statistics.median(walls),
        "step_s_profiled": wall_prof,
        "self_s_by_category": {k: v for k, v in cat.most_common()},
        "percent_of_profiled_step": {**{k: share(v) for k, v in cat.most_common()},
                                     "framework overhead": share(wall_prof - ops_s)},
        "percent_by_phase": {k: round(100 * v / ops_s, 1) for k, v in phase.most_common()},
        "top_ops_self_ms": {k: round(1e3 * v, 2) for k, v in ops.most_common(15)},
        "gemm_gflop_per_step": flops / 1e9,
        "gemm_gflop_per_s": flops / 1e9 / cat["gemm"] if cat["gemm"] else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default="data/mocap")
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--authors-dir", type=Path, default=None,
                        help="an andreimano/ACE checkout outside this repository (or its EGNO/)")
    parser.add_argument("--epoch-reps", type=int, default=3,
                        help="with --authors-dir: whole epochs per configuration (0: none)")
    parser.add_argument("--no-edgelist", action="store_true", help="skip the edge-list steps")
    parser.add_argument("--quick", action="store_true", help="1 warm-up, 2 repetitions, 1 epoch")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's, 2 on the project's CPU)")
    parser.add_argument("--profile", action="store_true",
                        help="profile the steps instead of timing them round-robin")
    parser.add_argument("--out", default=None, help="default outputs/bench/bench_mocap.json "
                        "(bench_mocap_profile.json with --profile)")
    args = parser.parse_args()
    if args.quick:
        args.warmup, args.reps, args.epoch_reps = 1, 2, min(args.epoch_reps, 1)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.out is None:
        args.out = f"outputs/bench/bench_mocap{'_profile' if args.profile else ''}.json"

    dm = datamodule(args.data_dir, args.batch_size)
    if dm is None and args.authors_dir is not None:
        raise SystemExit(f"--authors-dir needs the real Run files in {args.data_dir}")
    batch = (next(iter(dm.train_dataloader())) if dm is not None
             else synthetic_batch(args.batch_size))
    data = "real Run training batch" if dm is not None else "synthetic 31-joint skeleton"
    torch.manual_seed(0)
    models = {"vanilla": EGNO(), "ace": EGNO(ace_branches=True)}
    steps, params = {}, {}
    for kind, model in models.items():
        steps[f"ours_{kind}"] = make_step(model, model)
        params[f"ours_{kind}"] = count_parameters(model)
        if not args.no_edgelist:
            twin = EGNO(ace_branches=kind == "ace")
            twin.load_state_dict(model.state_dict())
            steps[f"edgelist_{kind}"] = make_step(twin, lambda b, m=twin: reference_forward(m, b))

    authors = {}
    if args.authors_dir is not None:
        from authors_code import authors_egno, egno_batch_from_ours
        their_batch = egno_batch_from_ours(batch)
        for kind in models:
            run = authors_egno(args.authors_dir, ace=kind == "ace", data_dir=args.data_dir)
            authors[kind] = run
            steps[f"authors_{kind}"] = lambda _b, r=run: r.step(their_batch)
            params[f"authors_{kind}"] = run.num_parameters

    if args.profile:
        result = {"script": "scripts/bench_mocap.py --profile", "data": data,
                  "batch_size": args.batch_size, "threads": torch.get_num_threads(),
                  "torch": torch.__version__, "cpu_count": os.cpu_count(), "params": params,
                  "loadavg_start": os.getloadavg(), "profile": {}}
        for name, fn in steps.items():
            if name.startswith("edgelist"):
                continue
            result["profile"][name] = profile_step(fn, batch, args.warmup, args.reps, 5)
            print(name, result["profile"][name], flush=True)
        write_result(result, args.out)
        return

    loadavg_start = os.getloadavg()  # the machine is shared: say how busy it was
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
        "params": params,
        "train_step": timings,
        "s_per_epoch": {k: STEPS_PER_EPOCH * v for k, v in med.items()},
        "ratio_ace_over_vanilla": med["ours_ace"] / med["ours_vanilla"],
        "cpu_anchors_md_other_run_authors_s_per_epoch": CPU_ANCHORS_OTHER_RUN_S_PER_EPOCH,
        "loadavg_start": loadavg_start,
    }
    if not args.no_edgelist:
        result["speedup_over_edgelist"] = {k: med[f"edgelist_{k}"] / med[f"ours_{k}"]
                                           for k in models}
    if authors:
        samples = {k: v["samples_s"] for k, v in timings.items()}
        result["authors_settings"] = {
            k: {key: getattr(r.args, key) for key in (
                "case", "batch_size", "max_training_samples", "lr", "weight_decay", "nf",
                "n_layers", "num_modes", "num_timesteps", "disable_equi", "use_constrained",
                "lr_dual", "resilience", "log_transform_variance")}
            for k, r in authors.items()}
        result["speedup_over_authors"] = {k: med[f"authors_{k}"] / med[f"ours_{k}"]
                                          for k in models}
        result["speedup_over_authors_per_rep"] = {
            k: ratio_spread(samples[f"authors_{k}"], samples[f"ours_{k}"]) for k in models}
        result["ratio_ace_over_vanilla_authors"] = med["authors_ace"] / med["authors_vanilla"]
    if authors and args.epoch_reps > 0:
        loader = dm.train_dataloader()
        ours_epoch_steps = {k: make_step(m, m) for k, m in models.items()}

        def our_epoch(step):
            for b in loader:
                step(b)

        epochs = {}
        for kind in models:
            epochs[f"ours_{kind}"] = lambda _b, s=ours_epoch_steps[kind]: our_epoch(s)
            epochs[f"authors_{kind}"] = lambda _b, r=authors[kind]: r.epoch()
        ep = time_round_robin(epochs, None, warmup=1, reps=args.epoch_reps, keep_samples=True)
        emed = {k: v["median_s"] for k, v in ep.items()}
        result["epoch_reps"] = args.epoch_reps
        result["train_epoch"] = ep
        result["train_epoch_batches"] = {"ours": len(loader),
                                         "authors": len(authors["vanilla"].loader)}
        result["speedup_over_authors_epoch"] = {k: emed[f"authors_{k}"] / emed[f"ours_{k}"]
                                                for k in models}
        result["speedup_over_authors_epoch_per_rep"] = {
            k: ratio_spread(ep[f"authors_{k}"]["samples_s"], ep[f"ours_{k}"]["samples_s"])
            for k in models}
    result["bench_wall_s"] = time.perf_counter() - t0
    write_result(result, args.out)


if __name__ == "__main__":
    main()
