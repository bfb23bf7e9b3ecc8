"""``train(cfg)``: everything ``python train.py`` does, from a composed Hydra config.

1. seed python, numpy and torch (``seed=0`` included);
2. build the DataModule (generating data on first use) and its Task;
3. build the constraint (or none), the ACE LightningModule, loggers, callbacks and Trainer;
4. fit (resuming exactly from ``ckpt_path`` if given);
5. test every mode at its own best-validation checkpoint, export the pruned f_eq model and write
   ``results.json`` into the run directory.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ace.core.homotopic import prune
from ace.training.results import load_weights, parameter_counts, test_best_checkpoints, write_json

log = logging.getLogger(__name__)


def _instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a named group (logger, callbacks)."""
    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def _constraint_factory(cfg: DictConfig):
    if not cfg.get("constraint") or "_target_" not in cfg.constraint:
        return None
    return instantiate(cfg.constraint)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, evaluate and write ``results.json``; returns the results dictionary."""
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if not isinstance(cfg.get("seed"), int):
        raise ValueError(f"seed must be an integer (seed=0 is valid), got {cfg.get('seed')!r}")
    L.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    module = instantiate(cfg.model, task=datamodule.task, constraint=_constraint_factory(cfg))
    loggers = _instantiate_group(cfg.get("logger"))
    callbacks = _instantiate_group(cfg.get("callbacks"))
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)

    counts = parameter_counts(module)
    hparams = OmegaConf.to_container(cfg, resolve=True)
    hparams["parameters"] = counts
    for logger in loggers:
        logger.log_hyperparams(hparams)
    log.info("parameters: %s; run directory: %s", counts, output_dir)

    started = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        fit_seconds = time.perf_counter() - started
        results: dict[str, Any] = {
            "name": cfg.get("name"),
            "seed": cfg.get("seed"),
            "metric": datamodule.task.metric_name,
            "metric_unit": datamodule.task.metric_unit,
            "task": datamodule.task.summary(),
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "fit_seconds": fit_seconds,
            "parameters": counts,
            "final": {k: v.cpu().tolist() for k, v in module.ace_state().items()},
        }
        if cfg.get("test", True) and not trainer.fast_dev_run:
            results["modes"] = test_best_checkpoints(module, datamodule, module.checkpoint_dir)
            export_pruned(module, Path(module.checkpoint_dir) / "best_eq.ckpt", output_dir)
        write_json(output_dir / "results.json", results)
        log.info("results written to %s", output_dir / "results.json")
        return results
    finally:
        _finish_wandb(loggers)


def export_pruned(module, checkpoint: Path, output_dir: Path) -> Path:
    """Save the pure f_eq network of the f_eq-selected checkpoint (f_neq and γ removed)."""
    load_weights(module, checkpoint)
    pruned = prune(module.net).cpu().eval()
    path = output_dir / "feq_pruned.pt"
    torch.save(pruned, path)
    return path


def _finish_wandb(loggers: list[Any]) -> None:
    """Close the W&B run even when a job fails, so the next job of a multirun gets its own."""
    from lightning.pytorch.loggers import WandbLogger

    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish()
