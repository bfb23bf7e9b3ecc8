"""Benchmark VN-DGCNN × ModelNet40: seconds per training epoch, vanilla and ACE, at the paper's
settings (300 points, batch 32, k = 20, SGD lr 0.1, 308 steps per epoch).

One batch of random clouds (the timing does not depend on the values) is timed round-robin for

* ``ours_vanilla`` / ``ours_ace``: :class:`ace.models.VNDGCNN` (2,899,830 / 8,831,612
  parameters), a step = forward, DGCNN's label-smoothed cross-entropy [+ λ Σγ for ACE],
  backward, fused SGD;
* ``authors_vanilla`` / ``authors_ace`` (only with ``--authors-dir``): the authors' own
  ``vnn/models/vn_dgcnn_cls.py`` of andreimano/ACE, run from a checkout outside this repository
  (``git archive`` of the fetched repository; never copied here), with their step: their loss,
  + (1/14) Σ λγ, backward, SGD. Their kNN helper hard-codes ``torch.device('cuda')``; the bench
  hands that module a namespace whose ``device`` is the CPU, which changes no arithmetic.

``ratio_ace_over_vanilla`` and ``speedup_over_authors`` are measured in this run. Writes JSON to
``--out`` (default ``outputs/bench/bench_vn_dgcnn.json``).

    python scripts/bench_vn_dgcnn.py [--authors-dir /tmp/ace_authors/vnn] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import platform
import sys
import time
import types
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ace.core.homotopic import count_parameters  # noqa: E402
from ace.data.modelnet40.task import ModelNet40Task  # noqa: E402
from ace.models import VNDGCNN  # noqa: E402
from bench_common import LAMBDA, make_train_step, time_round_robin, write_result  # noqa: E402

STEPS_PER_EPOCH = 308  # ⌊9,843 / 32⌋ (experiments.md §5.5; ace trains on 90 % of it: 276)
PAPER_A5000_S_PER_EPOCH = {"vanilla": 57.826, "ace": 81.760}  # Table 3 (experiments.md §0)


def load_authors(authors_dir: Path, ace: bool, k: int):
    """The authors' ``get_model`` and ``get_loss`` (andreimano/ACE ``vnn/``), on the CPU."""
    sys.path.insert(0, str(authors_dir))
    util = importlib.import_module("models.utils.vn_dgcnn_util")
    if not isinstance(util.torch, types.SimpleNamespace):  # CPU in place of their 'cuda'
        shim = types.SimpleNamespace(**{n: getattr(torch, n) for n in dir(torch)
                                        if not n.startswith("__")})
        shim.device = lambda *a, **kw: torch.device("cpu")
        util.torch = shim
    cls = importlib.import_module("models.vn_dgcnn_cls")
    args = types.SimpleNamespace(n_knn=k, pooling="mean", disable_equivariance=int(ace),
                                 full_nonequi=1, gamma_init_val=1.0)
    with contextlib.redirect_stdout(io.StringIO()):  # they print the number of γ
        model = cls.get_model(args, num_class=40)
    return model, cls.get_loss()


def make_authors_step(model, criterion, ace: bool, lr: float = 0.1):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0, weight_decay=0.0)
    gam = model.get_gammas() if ace else []
    lambdas = [torch.tensor(LAMBDA) for _ in gam]

    def step(batch):
        points = batch["pos"].transpose(2, 1)
        opt.zero_grad()
        pred, trans = model(points, disable_equivariance=ace)
        loss = criterion(pred, batch["label"].long(), trans)
        if ace:
            loss = loss + sum(l * g for l, g in zip(lambdas, gam)) / len(gam)
        loss.backward()
        opt.step()
        return loss

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-points", type=int, default=300)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 warm-up, 2 repetitions")
    parser.add_argument("--authors-dir", type=Path, default=None,
                        help="the vnn/ folder of an andreimano/ACE checkout (outside this repo)")
    parser.add_argument("--out", default="outputs/bench/bench_vn_dgcnn.json")
    args = parser.parse_args()
    if args.quick:
        args.warmup, args.reps = 1, 2

    g = torch.Generator().manual_seed(0)
    pos = torch.randn(args.batch_size, args.num_points, 3, generator=g)
    batch = {"pos": pos / pos.norm(dim=-1).max(), "label": torch.randint(0, 40, (args.batch_size,),
                                                                        generator=g)}
    torch.manual_seed(0)
    models = {"vanilla": VNDGCNN(k=args.k), "ace": VNDGCNN(k=args.k, ace_branches=True)}
    task = ModelNet40Task(40, 0.2)
    sgd = partial(torch.optim.SGD, lr=0.1, momentum=0.0, fused=True)  # the paper's primal
    steps = {f"ours_{kind}": make_train_step(m, task.loss, optimizer=sgd)
             for kind, m in models.items()}
    params = {f"ours_{kind}": count_parameters(m) for kind, m in models.items()}
    if args.authors_dir is not None:
        for kind in models:
            model, criterion = load_authors(args.authors_dir, kind == "ace", args.k)
            steps[f"authors_{kind}"] = make_authors_step(model, criterion, kind == "ace")
            params[f"authors_{kind}"] = count_parameters(model)

    t0 = time.perf_counter()
    timings = time_round_robin(steps, batch, args.warmup, args.reps)
    med = {k: v["median_s"] for k, v in timings.items()}
    result = {
        "script": "scripts/bench_vn_dgcnn.py",
        "batch_size": args.batch_size, "num_points": args.num_points, "k": args.k,
        "steps_per_epoch": STEPS_PER_EPOCH,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "warmup": args.warmup, "reps": args.reps,
        "params": params,
        "train_step": timings,
        "s_per_epoch": {k: STEPS_PER_EPOCH * v for k, v in med.items()},
        "ratio_ace_over_vanilla": med["ours_ace"] / med["ours_vanilla"],
        "paper_a5000_s_per_epoch": PAPER_A5000_S_PER_EPOCH,
        "loadavg_start": os.getloadavg(),
        "bench_wall_s": time.perf_counter() - t0,
    }
    if args.authors_dir is not None:
        result["speedup_over_authors"] = {k: med[f"authors_{k}"] / med[f"ours_{k}"]
                                          for k in models}
    write_result(result, args.out)


if __name__ == "__main__":
    main()
