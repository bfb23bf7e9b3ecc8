"""Benchmark SEGNN × N-body training-step and inference time: vanilla vs ACE vs pruned ACE.

For a batch of ``--batch`` random N-body-like systems (5 particles each; 100 systems = 500 nodes,
2000 edges), in float32, with torch's default thread count:

* train step = forward, MSE loss [+ Σ_i λ γ_i with λ = 0.1 for ACE], backward, Adam step, for the
  vanilla model and the ACE model (relaxed mode, 8 γ), and their ratio. Timed with Adam
  ``fused=True`` (primary numbers) and with torch's default CPU Adam (a per-tensor loop);
* inference (eval, ``no_grad``) of the pruned ACE model and of the vanilla model, and their ratio;
* with ``--compile``: the same with ``torch.compile``d models (first-call compile time included
  separately).

Medians over ``--reps`` repetitions after ``--warmup`` iterations; the configurations are timed
round-robin (alternating direction) so that load drifts hit them equally, and the load average is recorded (other
processes on a 2-core machine distort timings badly). Writes JSON to ``--out``
(default ``outputs/bench/segnn_step.json``).

Reference (``cpu_anchors.md``): the authors' code takes ≈ 0.33 s (vanilla) / 0.41 s (ACE) per
step on a 2-core CPU of this kind.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from ace.core.homotopic import count_parameters, prune
from ace.models.segnn import SEGNNNBody
from bench_common import LAMBDA, make_infer, time_round_robin, write_result
from bench_common import make_train_step as _make_train_step


def nbody_mse(pred, batch):
    return torch.nn.functional.mse_loss(pred, batch["target"])


def make_train_step(model, forward=None, adam: str = "fused"):
    return _make_train_step(model, nbody_mse, forward=forward, adam=adam, lr=1e-4)

def make_batch(B: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random N-body-like systems: positions ~ N(0, 2²), velocities ~ N(0, 0.5²), charges ±1."""
    loc = torch.randn(B, 5, 3, generator=generator) * 2.0
    vel = torch.randn(B, 5, 3, generator=generator) * 0.5
    charges = torch.randint(0, 2, (B, 5, 1), generator=generator).float() * 2 - 1
    target = loc + vel + 0.05 * torch.randn(B, 5, 3, generator=generator)
    return {"loc": loc, "vel": vel, "charges": charges, "target": target}


def ratio(timings: dict, a: str, b: str) -> float:
    return timings[a]["median_s"] / timings[b]["median_s"]


def build_models(seed: int):
    torch.manual_seed(seed)
    vanilla = SEGNNNBody()
    ace = SEGNNNBody(ace_branches=True)
    return vanilla, ace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--reps", type=int, default=25)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/bench/segnn_step.json")
    args = parser.parse_args()

    batch = make_batch(args.batch, torch.Generator().manual_seed(args.seed))
    result: dict = {
        "batch_systems": args.batch,
        "nodes": args.batch * 5,
        "edges": args.batch * 20,
        "dtype": "float32",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "warmup": args.warmup,
        "reps": args.reps,
        "lambda": LAMBDA,
        "loadavg_start": os.getloadavg(),
        "reference_authors_step_s": {"vanilla": 0.33, "ace": 0.41},
    }

    # ---------------------------------------------------------------- eager
    vanilla, ace = build_models(args.seed)
    vanilla_d, ace_d = build_models(args.seed)  # separate copies for the default-Adam runs
    pruned = prune(ace)
    result["params"] = {
        "vanilla": count_parameters(vanilla),
        "ace": count_parameters(ace),
        "pruned": count_parameters(pruned),
    }
    train = time_round_robin(
        {
            "vanilla": make_train_step(vanilla, adam="fused"),
            "ace": make_train_step(ace, adam="fused"),
            "vanilla_default_adam": make_train_step(vanilla_d, adam="default"),
            "ace_default_adam": make_train_step(ace_d, adam="default"),
        },
        batch, args.warmup, args.reps,
    )
    result["train_step"] = train
    result["train_ratio_ace_over_vanilla"] = ratio(train, "ace", "vanilla")
    result["train_ratio_ace_over_vanilla_default_adam"] = ratio(
        train, "ace_default_adam", "vanilla_default_adam")
    result["speedup_vs_authors"] = {
        "vanilla": 0.33 / train["vanilla"]["median_s"],
        "ace": 0.41 / train["ace"]["median_s"],
    }

    vanilla.eval(), pruned.eval()
    infer = time_round_robin(
        {"vanilla": make_infer(vanilla), "pruned_ace": make_infer(pruned)},
        batch, args.warmup, args.reps,
    )
    result["inference"] = infer
    result["inference_ratio_pruned_over_vanilla"] = ratio(infer, "pruned_ace", "vanilla")

    # ---------------------------------------------------------------- compiled
    if args.compile:
        cv, ca = build_models(args.seed)
        cp = prune(ca)
        cv_c, ca_c = torch.compile(cv), torch.compile(ca)
        steps = {
            "vanilla": make_train_step(cv, forward=cv_c, adam="fused"),
            "ace": make_train_step(ca, forward=ca_c, adam="fused"),
        }
        first = {}
        for k, fn in steps.items():
            t0 = time.perf_counter()
            fn(batch)
            first[f"train_{k}"] = time.perf_counter() - t0
        ctrain = time_round_robin(steps, batch, args.warmup, args.reps)

        cv.eval(), cp.eval()
        cv_ce, cp_c = torch.compile(cv), torch.compile(cp)
        infers = {"vanilla": make_infer(cv_ce), "pruned_ace": make_infer(cp_c)}
        for k, fn in infers.items():
            t0 = time.perf_counter()
            fn(batch)
            first[f"inference_{k}"] = time.perf_counter() - t0
        cinfer = time_round_robin(infers, batch, args.warmup, args.reps)
        result["compiled"] = {
            "first_call_s": first,
            "train_step": ctrain,
            "train_ratio_ace_over_vanilla": ratio(ctrain, "ace", "vanilla"),
            "inference": cinfer,
            "inference_ratio_pruned_over_vanilla": ratio(cinfer, "pruned_ace", "vanilla"),
        }

    write_result(result, args.out)


if __name__ == "__main__":
    main()
