"""Post-training evaluation: each mode at its own best-validation checkpoint (ace_algorithm.md §6)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ace.core.homotopic import count_parameters, prune
from ace.training.module import ACEModule


def load_weights(module: ACEModule, path: Path) -> dict[str, Any]:
    """Load a Lightning checkpoint's module state (weights, γ, λ, u) into ``module``."""
    checkpoint = torch.load(path, map_location=module.device, weights_only=False)
    module.load_state_dict(checkpoint["state_dict"])
    return checkpoint


def test_best_checkpoints(module: ACEModule, datamodule, checkpoint_dir: str | Path) -> dict:
    """For each mode, reload ``best_<mode>.ckpt`` and evaluate validation and test in that mode.

    Also reports the secondary number of the official EGNO / SEGNN-QM9 code: f_eq + γ f_neq at
    the f_eq-selected checkpoint (``relaxed_at_eq_selection``).
    """
    checkpoint_dir = Path(checkpoint_dir)
    val_loader, test_loader = datamodule.val_dataloader(), datamodule.test_dataloader()
    modes: dict[str, Any] = {}
    for mode in module.modes:
        path = checkpoint_dir / f"best_{mode}.ckpt"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: no validation ran for mode {mode!r}")
        checkpoint = load_weights(module, path)
        modes[mode] = {
            "checkpoint": str(path),
            "epoch": int(checkpoint["epoch"]),
            "val": module.evaluate(val_loader, mode),
            "test": module.evaluate(test_loader, mode),
        }
        if mode == "eq" and "relaxed" in module.modes:
            modes["relaxed_at_eq_selection"] = {
                "checkpoint": str(path),
                "epoch": int(checkpoint["epoch"]),
                "val": module.evaluate(val_loader, "relaxed"),
                "test": module.evaluate(test_loader, "relaxed"),
            }
    return with_alternative_units(modes, module.task)


def with_alternative_units(modes: dict[str, Any], task) -> dict[str, Any]:
    """Add ``val_<unit>`` / ``test_<unit>`` beside each metric (QM9 energies: eV and meV)."""
    for unit, scale in (getattr(task, "alternative_units", None) or {}).items():
        for entry in modes.values():
            for key in ("val", "test"):
                entry[f"{key}_{unit}"] = entry[key] * scale
    return modes


def parameter_counts(module: ACEModule) -> dict[str, int]:
    """Train-time parameters (f_neq and γ included, Table 3) and after pruning f_neq."""
    return {
        "train": count_parameters(module.net),
        "pruned": count_parameters(prune(module.net)),
        "num_gammas": module.num_gammas,
    }


def write_json(path: str | Path, payload: dict) -> Path:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    tmp.replace(path)
    return path
