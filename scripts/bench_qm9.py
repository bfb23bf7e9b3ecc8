"""Benchmark SchNet × QM9 and SEGNN × QM9: training step and inference, vanilla vs ACE vs pruned.

For each model (``SchNetQM9``, ``SEGNNQM9``, default Table 3 settings, float32, torch's default
thread count) on one batch of QM9 molecules — real ones (``--molecules qm9pack``: a seeded random
draw from all 130,831, built from the optional qm9pack wheel, the default when it is installed) or
synthetic QM9-like ones (``--molecules synthetic``):

* train step = forward, L1 loss [+ Σ_i λ γ_i with λ = 0.1 for ACE, the Lagrangian term; the dual
  update itself is a handful of scalar operations and is not timed], backward, Adam step (fused),
  for the vanilla and the ACE model (relaxed mode, all γ trained), and the ratio ACE / vanilla;
* inference (eval, ``no_grad``) of the pruned ACE model (its f_eq) and of the vanilla model, their
  ratio, and the relaxed ACE model (f_eq + γ f_neq) for reference;
* seconds per 1,000 molecules for each.

Synthetic molecules: sizes uniform in 10..27 atoms (mean ≈ 18.5), self-avoiding random walks with
1.0–1.5 Å steps (atoms ≥ 0.9 Å apart), atom types H/C/N/O/F (PyG QM9 fields ``z``, ``x`` [N, 11],
``pos``). Medians over ``--reps`` repetitions after ``--warmup`` iterations, configurations timed
round-robin in alternating order; the raw samples and min-based ratios are stored too (this shared
2-core VM shows occasional multi-second stalls). Writes JSON to ``--out`` (default
``outputs/bench/bench_qm9.json``), with the paper's GPU training-time ratios (Table 3: SchNet
11.126 / 10.389 = 1.07, SEGNN-QM9 129.039 / 118.403 = 1.09) for comparison.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from torch_geometric.data import Batch, Data

from ace.core.homotopic import count_parameters, num_gammas, prune
from ace.models import SchNetQM9, SEGNNQM9
from bench_common import LAMBDA, make_infer, time_round_robin, write_result
from bench_common import make_train_step as _make_train_step


def qm9_l1(pred, batch):
    return torch.nn.functional.l1_loss(pred, batch.y)


def make_train_step(model):
    return _make_train_step(model, qm9_l1, lr=5e-4)

ATOMIC_NUMBERS = torch.tensor([1, 6, 7, 8, 9])  # H, C, N, O, F
PAPER_GPU = {  # Table 3, training time (units as in the paper), ACE / vanilla
    "schnet": {"vanilla": 10.389, "ace": 11.126, "ratio": 11.126 / 10.389},
    "segnn": {"vanilla": 118.403, "ace": 129.039, "ratio": 129.039 / 118.403},
}


def random_molecule(n: int, g: torch.Generator) -> Data:
    """Self-avoiding random walk of ``n`` atoms, 1.0–1.5 Å steps, random H/C/N/O/F types."""
    pos = torch.zeros(n, 3, dtype=torch.float64)
    k = 1
    while k < n:
        step = torch.randn(3, generator=g, dtype=torch.float64)
        step = step / step.norm() * (1.0 + 0.5 * torch.rand((), generator=g, dtype=torch.float64))
        p = pos[k - 1] + step
        if bool(((pos[:k] - p).norm(dim=-1) >= 0.9).all()):
            pos[k] = p
            k += 1
    types = torch.randint(0, 5, (n,), generator=g)
    x = torch.zeros(n, 11)
    x[torch.arange(n), types] = 1.0
    x[:, 5] = ATOMIC_NUMBERS[types].float()
    return Data(z=ATOMIC_NUMBERS[types], x=x, pos=pos.float(), y=torch.randn(1, 1, generator=g))


def make_batch(num_molecules: int, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(10, 28, (num_molecules,), generator=g).tolist()
    return Batch.from_data_list([random_molecule(n, g) for n in sizes])


def real_batch(num_molecules: int, seed: int, root: str) -> Batch:
    """``num_molecules`` real QM9 molecules (a seeded random draw), target c_v, from a qm9pack
    build at ``root`` (built from the installed wheel on first use)."""
    from ace.data.qm9.files import load_processed
    from ace.data.qm9.qm9pack import build_qm9pack

    dataset = load_processed(build_qm9pack(root, "pyg"))
    pick = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    batch = Batch.from_data_list([dataset[int(i)] for i in pick[:num_molecules]])
    batch.y = batch.y[:, 11:12]  # c_v: one scalar per molecule, as the models predict
    return batch


def ratio(timings: dict, a: str, b: str, stat: str = "median_s") -> float:
    return timings[a][stat] / timings[b][stat]


def per_1000(timings: dict, num_molecules: int) -> dict[str, float]:
    return {k: v["median_s"] / num_molecules * 1000 for k, v in timings.items()}


def bench_model(name: str, cls, batch_size: int, warmup: int, reps: int, seed: int,
                qm9_root: str | None = None) -> dict:
    batch = make_batch(batch_size, seed) if qm9_root is None else real_batch(batch_size, seed,
                                                                              qm9_root)
    torch.manual_seed(seed)
    vanilla = cls()
    ace = cls(ace_branches=True)
    pruned = prune(ace)
    num_nodes = batch.num_nodes
    if name == "segnn":
        num_edges = int(vanilla.graph_features(batch)["edge_index"].shape[1])
    else:
        num_edges = int(vanilla.schnet.interaction_graph(batch.pos, batch.batch)[0].shape[1])
    result: dict = {
        "model": cls.__name__,
        "batch_molecules": batch_size,
        "atoms": num_nodes,
        "mean_atoms_per_molecule": num_nodes / batch_size,
        "edges": num_edges,
        "mean_degree": num_edges / num_nodes,
        "params": {
            "vanilla": count_parameters(vanilla),
            "ace": count_parameters(ace),
            "pruned": count_parameters(pruned),
            "num_gammas": num_gammas(ace),
        },
    }
    t0 = time.perf_counter()
    train = time_round_robin(
        {"vanilla": make_train_step(vanilla), "ace": make_train_step(ace)}, batch, warmup, reps,
        keep_samples=True,
    )
    result["train_step"] = train
    result["train_ratio_ace_over_vanilla"] = ratio(train, "ace", "vanilla")
    result["train_ratio_ace_over_vanilla_min"] = ratio(train, "ace", "vanilla", "min_s")
    result["train_s_per_1000_molecules"] = per_1000(train, batch_size)

    for m in (vanilla, ace, pruned):
        m.eval()
    infer = time_round_robin(
        {"vanilla": make_infer(vanilla), "pruned_ace": make_infer(pruned),
         "ace_relaxed": make_infer(ace)},
        batch, warmup, reps, keep_samples=True,
    )
    result["inference"] = infer
    result["inference_ratio_pruned_over_vanilla"] = ratio(infer, "pruned_ace", "vanilla")
    result["inference_ratio_pruned_over_vanilla_min"] = ratio(
        infer, "pruned_ace", "vanilla", "min_s")
    result["inference_ratio_relaxed_over_vanilla"] = ratio(infer, "ace_relaxed", "vanilla")
    result["inference_s_per_1000_molecules"] = per_1000(infer, batch_size)
    result["paper_gpu_train_ratio"] = PAPER_GPU[name]["ratio"]
    result["paper_gpu_train_time"] = {k: PAPER_GPU[name][k] for k in ("vanilla", "ace")}
    result["bench_wall_s"] = time.perf_counter() - t0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["schnet", "segnn"],
                        choices=["schnet", "segnn"])
    parser.add_argument("--batch-schnet", type=int, default=256)
    parser.add_argument("--batch-segnn", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=None,
                        help="default: 10 for SchNet, 5 for SEGNN (2 / 2 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="small batches (32 molecules), 1 warm-up, 2 repetitions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--molecules", choices=["auto", "qm9pack", "synthetic"], default="auto",
                        help="auto: real molecules if the qm9pack wheel is installed")
    parser.add_argument("--qm9-root", default="data/qm9_qm9pack_pyg",
                        help="where the qm9pack build lives (built on first use)")
    parser.add_argument("--out", default="outputs/bench/bench_qm9.json")
    args = parser.parse_args()
    if args.molecules == "auto":
        import importlib.util

        args.molecules = "qm9pack" if importlib.util.find_spec("qm9pack") else "synthetic"
    qm9_root = args.qm9_root if args.molecules == "qm9pack" else None

    if args.quick:
        args.batch_schnet = args.batch_segnn = 32
        args.warmup = 1
    result: dict = {
        "script": "scripts/bench_qm9.py",
        "quick": args.quick,
        "dtype": "float32",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "warmup": args.warmup,
        "lambda": LAMBDA,
        "optimizer": "Adam(fused=True)",
        "loss": "L1 (+ lambda * sum(gamma) for ACE)",
        "molecules": ("real QM9 (qm9pack build, seeded random draw, target c_v)" if qm9_root else
                      "synthetic: sizes U{10..27}, self-avoiding random walk, 1.0-1.5 A steps, "
                      "types H/C/N/O/F"),
        "paper_gpu_train_ratio": {k: v["ratio"] for k, v in PAPER_GPU.items()},
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
        "loadavg_start": os.getloadavg(),
        "models": {},
    }
    specs = {
        "schnet": (SchNetQM9, args.batch_schnet, args.reps or (2 if args.quick else 10)),
        "segnn": (SEGNNQM9, args.batch_segnn, args.reps or (2 if args.quick else 5)),
    }
    for name in args.models:
        cls, bs, reps = specs[name]
        r = bench_model(name, cls, bs, args.warmup, reps, args.seed, qm9_root)
        r["reps"] = reps
        result["models"][name] = r
        print(f"{name}: train ACE/vanilla = {r['train_ratio_ace_over_vanilla']:.3f} "
              f"(paper GPU {r['paper_gpu_train_ratio']:.3f}); inference pruned/vanilla = "
              f"{r['inference_ratio_pruned_over_vanilla']:.3f}; train s/1000 mol = "
              f"{r['train_s_per_1000_molecules']}; infer s/1000 mol = "
              f"{r['inference_s_per_1000_molecules']}", flush=True)
    write_result(result, args.out)


if __name__ == "__main__":
    main()
