"""SEGNN × N-body through the real training loop: epoch, validation pass, loop overhead, authors.

Everything is measured in one run, on the same data (``data/nbody``, generated if missing), at the
paper's settings (3,000 training samples, batch 100 → 30 steps; 2,000 validation samples):

* ``pipeline``: ``train.py``'s pipeline (``ace.training.pipeline.train``) for ``--epochs`` epochs
  with a validation pass after every epoch (``model.log_test_metric=false``); the training epoch
  is ``time/train_epoch_s`` (first batch to last batch, data loading included) and the
  validation pass (both modes for ACE) ``time/val_epoch_s``; medians over epochs 1.. and repeats;
* ``model_step``: the model alone on a real training batch (forward, MSE [+ λ·γ for ACE],
  backward, fused Adam: ``bench_common.make_train_step``), timed round-robin; × 30 it is the
  epoch the loop would take with no overhead of its own;
* ``authors`` (only with ``--authors-dir``, a checkout of andreimano/ACE *outside* this
  repository): the authors' SEGNN N-body training epoch, vanilla and ACE, on the same data,
  timed in this run (``scripts/authors_code.py``).

Repeats alternate the order of the configurations so that load drifts hit them equally.
Derived, all from this run: the ACE/vanilla ratios per epoch and per model step, the loop
overhead (epoch / (30 × model step)), validation / training epoch, and the speed-ups over the
authors' code. Writes ``outputs/bench/training_epoch.json``.

    python scripts/bench_training.py [--epochs 3] [--repeats 2] [--compile] [--authors-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("ACE_ROOT", str(ROOT))

import torch  # noqa: E402

from ace.data.nbody import NBodyDataModule  # noqa: E402
from ace.models.segnn import SEGNNNBody  # noqa: E402
from bench_common import (  # noqa: E402
    make_train_step,
    time_round_robin,
    train_in_process,
    write_result,
)

EXPERIMENTS = {"vanilla": "nbody_segnn", "ace": "nbody_segnn_ace"}
STEPS_PER_EPOCH = 30  # 3,000 samples / batch 100 (drop_last)


def pipeline_seconds(experiment: str, epochs: int, out: Path, extra: list[str]) -> dict[str, list[float]]:
    """Seconds per training epoch and per validation pass of one run of the real pipeline."""
    frame = train_in_process([
        f"experiment={experiment}",
        f"trainer.max_epochs={epochs}",
        "trainer.check_val_every_n_epoch=1",
        "trainer.enable_progress_bar=false",
        "callbacks=none",
        "logger=csv",
        "test=false",
        "model.log_test_metric=false",
        *extra,
    ], out)
    return {"train": frame["time/train_epoch_s"].dropna().tolist(),
            "val": frame["time/val_epoch_s"].dropna().tolist()}


def model_steps(data_dir: str, reps: int) -> dict[str, dict]:
    """The model alone (``bench_common.make_train_step``) on a real batch, vanilla and ACE."""
    dm = NBodyDataModule(data_dir=data_dir, generate_if_missing=True)
    dm.prepare_data()
    dm.setup()
    batch = next(iter(dm.train_dataloader()))

    def mse(pred, b):
        return torch.nn.functional.mse_loss(pred, b["target"])

    torch.manual_seed(0)
    steps = {name: make_train_step(SEGNNNBody(ace_branches=name == "ace"), mse, lr=5e-4)
             for name in EXPERIMENTS}
    return time_round_robin(steps, batch, warmup=3, reps=reps)


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per pipeline run (≥ 2)")
    parser.add_argument("--repeats", type=int, default=2, help="pipeline runs per configuration")
    parser.add_argument("--step-reps", type=int, default=10, help="model steps timed per repeat")
    parser.add_argument("--compile", action="store_true",
                        help="also time model.compile=true (about 60 s of compilation per run)")
    parser.add_argument("--authors-dir", default=None,
                        help="checkout of andreimano/ACE outside this repository: time its epochs too")
    parser.add_argument("--data-dir", default=str(ROOT / "data" / "nbody"))
    parser.add_argument("--output", default=str(ROOT / "outputs" / "bench" / "training_epoch.json"))
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (epoch 0 holds the warm-up and is not counted)")

    authors = None
    if args.authors_dir:
        from authors_code import authors_nbody_epoch_seconds  # noqa: PLC0415

        authors = authors_nbody_epoch_seconds

    variants = {name: (exp, [f"paths.data_dir={Path(args.data_dir).parent}"])
                for name, exp in EXPERIMENTS.items()}
    if args.compile:
        variants.update({f"{name}_compiled": (exp, [*extra, "model.compile=true"])
                         for name, (exp, extra) in list(variants.items())})
    train_s: dict[str, list[float]] = {k: [] for k in variants}
    val_s: dict[str, list[float]] = {k: [] for k in variants}
    step_s: dict[str, list[float]] = {k: [] for k in EXPERIMENTS}
    authors_s: dict[str, list[float]] = {k: [] for k in EXPERIMENTS} if authors else {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            order = list(variants.items())
            for key, (exp, extra) in order if rep % 2 == 0 else order[::-1]:
                times = pipeline_seconds(exp, args.epochs, Path(tmp) / f"{key}_{rep}", extra)
                train_s[key] += times["train"][1:]
                val_s[key] += times["val"][1:]
                print(f"[{rep}] {key:18s} train {median(times['train'][1:]):6.2f} s/epoch, "
                      f"val {median(times['val'][1:]):5.2f} s", flush=True)
            for key, timing in model_steps(args.data_dir, args.step_reps).items():
                step_s[key].append(timing["median_s"])
            print(f"[{rep}] model step       " + ", ".join(
                f"{k} {v[-1] * 1e3:.1f} ms" for k, v in step_s.items()), flush=True)
            for key in authors_s if authors else ():
                epochs = authors(args.authors_dir, ace=key == "ace", data_dir=args.data_dir,
                                 epochs=args.epochs)
                authors_s[key] += epochs[1:]
                print(f"[{rep}] authors {key:10s} {median(epochs[1:]):6.2f} s/epoch", flush=True)

    epoch = {k: median(v) for k, v in train_s.items()}
    val = {k: median(v) for k, v in val_s.items()}
    step = {k: median(v) for k, v in step_s.items()}
    report: dict = {
        "protocol": (f"{args.repeats} pipeline runs of {args.epochs} epochs per configuration "
                     f"(medians over epochs 1..{args.epochs - 1}), 3000 samples, batch 100, "
                     "validation (2000 samples) after every epoch; model steps round-robin"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "train_epoch_s": train_s, "val_pass_s": val_s, "model_step_s": step_s,
        "median_s_per_epoch": epoch,
        "median_val_pass_s": val,
        "median_model_step_s": step,
        "ratio_ace_over_vanilla": {
            "epoch": epoch["ace"] / epoch["vanilla"],
            "model_step": step["ace"] / step["vanilla"],
        },
        "loop_overhead": {k: epoch[k] / (STEPS_PER_EPOCH * step[k]) for k in EXPERIMENTS},
        "val_over_train_epoch": {k: val[k] / epoch[k] for k in variants},
    }
    ratios = report["ratio_ace_over_vanilla"]
    ratios["epoch_over_step"] = ratios["epoch"] / ratios["model_step"]
    if args.compile:
        ratios["epoch_compiled"] = epoch["ace_compiled"] / epoch["vanilla_compiled"]
    if authors:
        authors_epoch = {k: median(v) for k, v in authors_s.items()}
        report["authors_epoch_s"] = authors_s
        report["authors_median_s_per_epoch"] = authors_epoch
        report["speedup_over_authors"] = {
            k: authors_epoch[k.removesuffix("_compiled")] / epoch[k] for k in variants}
    write_result(report, args.output)


if __name__ == "__main__":
    main()
