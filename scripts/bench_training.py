"""Seconds per training epoch of SEGNN × N-body through the real training loop (train.py's pipeline).

Protocol of ``../shared/reference/cpu_anchors.md``: 3000 samples, batch 100 (30 steps), 3 epochs,
median of the training epochs 1–2 (epoch 0 includes warm-up / compilation). Vanilla and ACE,
eager and ``model.compile=true``. Writes ``outputs/bench/training_epoch.json``.

    python scripts/bench_training.py [--epochs 3] [--no-compile]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ACE_ROOT", str(ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from ace.training.pipeline import train  # noqa: E402

# The authors' code on this kind of machine (cpu_anchors.md), seconds per training epoch.
ANCHORS = {"nbody_segnn": 8.6, "nbody_segnn_ace": 10.7}


def epoch_seconds(experiment: str, compile_model: bool, epochs: int, out: Path) -> list[float]:
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "configs")):
        cfg = compose(
            "train",
            overrides=[
                f"experiment={experiment}",
                f"trainer.max_epochs={epochs}",
                "trainer.check_val_every_n_epoch=1000",
                "trainer.enable_progress_bar=false",
                "callbacks=none",
                "logger=csv",
                "test=false",
                f"model.compile={str(compile_model).lower()}",
            ],
            return_hydra_config=True,
        )
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    train(cfg)
    frame = pd.read_csv(out / "csv" / "metrics.csv")
    return frame["time/train_epoch_s"].dropna().tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "outputs" / "bench" / "training_epoch.json"))
    args = parser.parse_args()

    report: dict = {
        "protocol": f"{args.epochs} epochs, median of epochs 1..{args.epochs - 1}, 3000 samples, batch 100",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "anchors_authors_s_per_epoch": ANCHORS,
        "runs": {},
    }
    variants = [(e, c) for e in ANCHORS for c in ([False] if args.no_compile else [False, True])]
    with tempfile.TemporaryDirectory() as tmp:
        for experiment, compile_model in variants:
            key = f"{experiment}{'_compiled' if compile_model else ''}"
            times = epoch_seconds(experiment, compile_model, args.epochs, Path(tmp) / key)
            median = statistics.median(times[1:]) if len(times) > 1 else times[0]
            report["runs"][key] = {
                "epoch_seconds": times,
                "median_s_per_epoch": median,
                "speedup_vs_authors": ANCHORS[experiment] / median,
            }
            print(f"{key:32s} {median:6.2f} s/epoch  (authors {ANCHORS[experiment]} s)", flush=True)
    runs = report["runs"]
    report["ratio_ace_over_vanilla_eager"] = (
        runs["nbody_segnn_ace"]["median_s_per_epoch"] / runs["nbody_segnn"]["median_s_per_epoch"]
    )
    if "nbody_segnn_ace_compiled" in runs:
        report["ratio_ace_over_vanilla_compiled"] = (
            runs["nbody_segnn_ace_compiled"]["median_s_per_epoch"]
            / runs["nbody_segnn_compiled"]["median_s_per_epoch"]
        )
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
