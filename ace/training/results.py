"""Post-training evaluation: each mode at its own best-validation checkpoint (ace_algorithm.md §6).

Both numbers come from Lightning on the checkpoint file: ``trainer.validate`` (which reproduces
the validation value that selected it) and ``trainer.test``. Evaluation transforms are seeded as
during training for validation (the checkpoint's epoch) and with a fixed stream for the test set
(epoch −1), so f_eq and f_eq + γ f_neq are tested on the same transformed data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ace.core.homotopic import count_parameters, gammas
from ace.models.relaxation import prune_all
from ace.training.module import ACEModule

FINAL_TEST_EPOCH = -1


def load_weights(module: ACEModule, path: Path) -> dict[str, Any]:
    """Load a Lightning checkpoint's module state (weights, γ, λ, u) into ``module``."""
    # on the CPU: only the weights are used, and load_state_dict copies them to the module's device
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    module.load_state_dict(checkpoint["state_dict"])
    return checkpoint


def convergence(module: ACEModule) -> dict[str, float] | None:
    """How far the module's current γ are from the constraint: ``max_abs_gamma`` and, with a
    constraint, ``max_violation`` (max |s| for equality, max(s, 0) for inequality constraints).
    ``None`` for a model without homotopic branches."""
    if not module.num_gammas:
        return None
    gamma = gammas(module.net).detach()
    out = {"max_abs_gamma": float(gamma.abs().max())}
    if module.constraint is not None:
        slack = module.constraint.slack(gamma).detach()
        violation = slack.clamp(min=0) if module.constraint.nonnegative_dual else slack.abs()
        out["max_violation"] = float(violation.max())
    return out


def evaluate_checkpoint(trainer: L.Trainer, module: ACEModule, datamodule, path: Path,
                        modes: tuple[str, ...]) -> tuple[int, dict[str, dict[str, dict[str, float]]]]:
    """The checkpoint's epoch and ``{mode: {"val": {metric: v}, "test": {metric: v}}}``; with
    homotopic branches also ``{mode: {"convergence": ...}}`` (:func:`convergence` of the
    checkpoint's γ)."""
    epoch = int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])
    out: dict[str, dict[str, dict[str, float]]] = {mode: {} for mode in modes}
    module.eval_modes = modes
    loggers, trainer.loggers = trainer.loggers, []  # re-evaluations are not new curve points
    try:
        for stage, run, seed_epoch in (("val", trainer.validate, epoch),
                                       ("test", trainer.test, FINAL_TEST_EPOCH)):
            module.eval_epoch = seed_epoch
            logged = run(module, datamodule=datamodule, ckpt_path=str(path), verbose=False)[0]
            for mode in modes:
                out[mode][stage] = {spec.name: float(logged[f"{stage}/{spec.name}/{mode}"])
                                    for spec in module.task.metrics}
        state = convergence(module)  # the module now holds the checkpoint's weights
        if state is not None:
            for mode in modes:
                out[mode]["convergence"] = state
    finally:
        trainer.loggers = loggers
        module.eval_modes, module.eval_epoch = module.modes, None
    return epoch, out


def test_best_checkpoints(trainer: L.Trainer, module: ACEModule, datamodule,
                          checkpoint_dir: str | Path) -> dict:
    """For each mode, validate and test ``best_<mode>.ckpt`` in that mode (every rank runs it
    under DDP; the values are the same on all ranks).

    Also reports the secondary number of the official EGNO / SEGNN-QM9 code: f_eq + γ f_neq at
    the f_eq-selected checkpoint (``relaxed_at_eq_selection``). Each entry holds the primary
    metric as ``val`` / ``test`` and every declared metric under ``metrics``.
    """
    checkpoint_dir = Path(checkpoint_dir)
    primary = module.task.primary.name
    modes: dict[str, Any] = {}
    for mode in module.modes:
        path = checkpoint_dir / f"best_{mode}.ckpt"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: no validation ran for mode {mode!r}")
        also = ("relaxed",) if mode == "eq" and "relaxed" in module.modes else ()
        epoch, values = evaluate_checkpoint(trainer, module, datamodule, path, (mode, *also))
        names = {mode: mode, "relaxed": "relaxed_at_eq_selection"} if also else {mode: mode}
        for evaluated, key in names.items():
            modes[key] = _entry(path, epoch, values[evaluated], primary)
    return with_alternative_units(modes, module.task)


def _entry(path: Path, epoch: int, stages: dict[str, dict[str, float]], primary: str) -> dict:
    """One mode's results entry: the primary metric as ``val`` / ``test``, all under ``metrics``."""
    entry = {"checkpoint": str(path), "epoch": epoch,
             "val": stages["val"][primary], "test": stages["test"][primary],
             "metrics": {name: {"val": stages["val"][name], "test": stages["test"][name]}
                         for name in stages["val"]}}
    if "convergence" in stages:
        entry["convergence"] = stages["convergence"]
    return entry


def test_last_checkpoint(trainer: L.Trainer, module: ACEModule, datamodule,
                         checkpoint_dir: str | Path) -> dict:
    """Every mode validated and tested at ``last.ckpt`` (the last epoch), in the layout of
    :func:`test_best_checkpoints`: for comparison with numbers that are not selected on
    validation (the official ModelNet40 code reports running maxima over test epochs)."""
    path = Path(checkpoint_dir) / "last.ckpt"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: no training epoch finished")
    primary = module.task.primary.name
    epoch, values = evaluate_checkpoint(trainer, module, datamodule, path, module.modes)
    modes = {mode: _entry(path, epoch, stages, primary) for mode, stages in values.items()}
    return with_alternative_units(modes, module.task)


def with_alternative_units(modes: dict[str, Any], task) -> dict[str, Any]:
    """Add ``val_<unit>`` / ``test_<unit>`` beside the primary metric (QM9 energies: eV and meV)."""
    for unit, scale in task.primary.alternative_units.items():
        for entry in modes.values():
            for key in ("val", "test"):
                entry[f"{key}_{unit}"] = entry[key] * scale
    return modes


def metric_declarations(task) -> dict[str, Any]:
    """results.json's ``metrics``: every declared metric with unit and direction, and which one
    is primary (selects checkpoints and learning rates)."""
    return {"primary": task.primary.name,
            "declared": {spec.name: spec.describe() for spec in task.metrics}}


def parameter_counts(module: ACEModule) -> dict[str, int]:
    """Train-time parameters (f_neq and γ included, Table 3) and after pruning f_neq."""
    return {
        "train": count_parameters(module.net),
        "pruned": count_parameters(prune_all(module.net)),
        "num_gammas": module.num_gammas,
    }


def write_json(path: str | Path, payload: dict) -> Path:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    tmp.replace(path)
    return path


__all__ = ["convergence", "evaluate_checkpoint", "test_best_checkpoints", "with_alternative_units",
           "metric_declarations", "parameter_counts", "write_json", "load_weights"]
