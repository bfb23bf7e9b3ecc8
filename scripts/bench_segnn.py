"""Benchmark SEGNN × N-body step and inference time (vanilla vs ACE vs pruned ACE).

Measures, for a batch of ``--batch`` random N-body-like systems (5 particles, float32):

* train step (forward, MSE loss [+ Σ λγ with λ = 0.1 for ACE], backward, Adam step) of the
  vanilla model and of the ACE model (relaxed mode), and their ratio;
* inference (eval, no grad) of the pruned ACE model and of the vanilla model, and their ratio;
* optionally (``--compile``) the same with ``torch.compile``d models.

Timings are medians over ``--reps`` repetitions after ``--warmup`` iterations; the models are
timed interleaved (round robin) so that machine-load drifts hit them equally. The thread count is
torch's default. Writes JSON to ``--out`` (default ``outputs/bench/segnn_step.json``).

Reference (cpu_anchors.md): the authors' code takes ≈ 0.33 s (vanilla) / 0.41 s (ACE) per step
on a 2-core CPU of this kind.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from ace.core.homotopic import count_parameters, gammas, prune
from ace.models.segnn import SEGNNNBody


def make_batch(B: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    loc = torch.randn(B, 5, 3, generator=generator) * 2.0
    vel = torch.randn(B, 5, 3, generator=generator) * 0.5
    charges = torch.randint(0, 2, (B, 5, 1), generator=generator).float() * 2 - 1
    target = loc + vel + 0.05 * torch.randn(B, 5, 3, generator=generator)
    return {"loc": loc, "vel": vel, "charges": charges, "target": target}


def make_train_step(model, is_ace: bool, lam: float = 0.1):
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    step_model = model

    def step(batch):
        opt.zero_grad(set_to_none=True)
        pred = step_model(batch)
        loss = torch.nn.functional.mse_loss(pred, batch["target"])
        if is_ace:
            loss = loss + lam * gammas(model).sum()
        loss.backward()
        opt.step()
        return loss

    return step, opt


def make_infer(model):
    @torch.no_grad()
    def infer(batch):
        return model(batch)

    return infer


def time_interleaved(fns: dict, batch, warmup: int, reps: int) -> dict[str, dict[str, float]]:
    for _ in range(warmup):
        for fn in fns.values():
            fn(batch)
    samples = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn(batch)
            samples[k].append(time.perf_counter() - t0)
    return {
        k: {"median_s": statistics.median(v), "min_s": min(v), "mean_s": statistics.fmean(v)}
        for k, v in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--reps", type=int, default=25)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/bench/segnn_step.json")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    batch = make_batch(args.batch, gen)

    vanilla = SEGNNNBody()
    ace = SEGNNNBody(ace_branches=True)
    pruned = prune(ace)
    vanilla.train(), ace.train()
    result: dict = {
        "batch_systems": args.batch,
        "nodes": args.batch * 5,
        "edges": args.batch * 20,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "params": {
            "vanilla": count_parameters(vanilla),
            "ace": count_parameters(ace),
            "pruned": count_parameters(pruned),
        },
        "warmup": args.warmup,
        "reps": args.reps,
        "reference_authors_step_s": {"vanilla": 0.33, "ace": 0.41},
    }

    steps = {
        "vanilla": make_train_step(vanilla, False)[0],
        "ace": make_train_step(ace, True)[0],
    }
    train = time_interleaved(steps, batch, args.warmup, args.reps)
    result["train_step"] = train
    result["train_ratio_ace_over_vanilla"] = train["ace"]["median_s"] / train["vanilla"]["median_s"]

    vanilla.eval(), pruned.eval()
    infer = time_interleaved(
        {"vanilla": make_infer(vanilla), "pruned_ace": make_infer(pruned)},
        batch, args.warmup, args.reps,
    )
    result["inference"] = infer
    result["inference_ratio_pruned_over_vanilla"] = (
        infer["pruned_ace"]["median_s"] / infer["vanilla"]["median_s"]
    )
    vanilla.train()

    if args.compile:
        cv = SEGNNNBody()
        ca = SEGNNNBody(ace_branches=True)
        cp = prune(ca)
        cv_c, ca_c = torch.compile(cv), torch.compile(ca)
        t0 = time.perf_counter()
        sv, _ = make_train_step(cv, False)
        sa, _ = make_train_step(ca, True)
        # compile the forward inside the step (the optimizer step stays eager)
        sv_fn = make_train_step.__wrapped__ if hasattr(make_train_step, "__wrapped__") else None
        del sv_fn

        def wrap(model, compiled, is_ace):
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)

            def step(b):
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.mse_loss(compiled(b), b["target"])
                if is_ace:
                    loss = loss + 0.1 * gammas(model).sum()
                loss.backward()
                opt.step()
                return loss

            return step

        compiled_steps = {"vanilla": wrap(cv, cv_c, False), "ace": wrap(ca, ca_c, True)}
        first = {}
        for k, fn in compiled_steps.items():
            t1 = time.perf_counter()
            fn(batch)
            first[k] = time.perf_counter() - t1
        ctrain = time_interleaved(compiled_steps, batch, args.warmup, args.reps)
        cv.eval(), cp.eval()
        cp_c = torch.compile(cp)
        cv_c_eval = cv_c
        t1 = time.perf_counter()
        make_infer(cp_c)(batch)
        make_infer(cv_c_eval)(batch)
        first["inference_both"] = time.perf_counter() - t1
        cinfer = time_interleaved(
            {"vanilla": make_infer(cv_c_eval), "pruned_ace": make_infer(cp_c)},
            batch, args.warmup, args.reps,
        )
        result["compiled"] = {
            "first_call_s": first,
            "total_compile_wall_s": time.perf_counter() - t0,
            "train_step": ctrain,
            "train_ratio_ace_over_vanilla": ctrain["ace"]["median_s"] / ctrain["vanilla"]["median_s"],
            "inference": cinfer,
            "inference_ratio_pruned_over_vanilla": (
                cinfer["pruned_ace"]["median_s"] / cinfer["vanilla"]["median_s"]
            ),
        }

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
