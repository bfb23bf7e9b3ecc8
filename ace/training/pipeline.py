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
import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ace.models.relaxation import prune_all
from ace.training.results import (
    convergence,
    load_weights,
    metric_declarations,
    parameter_counts,
    test_best_checkpoints,
    test_last_checkpoint,
    write_json,
)
from ace.training.summary import run_summary
from ace.utils.direction import objective
from ace.utils.run_info import job_overrides, run_hparams

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
    """Train, evaluate and write ``results.json``; returns the results dictionary.

    Under DDP every rank runs this function (training and the final validate/test, which are
    collective); only global rank 0 writes files, with
    every rank's final γ/λ/u (gathered by ``ReplicaConsistency``) in ``results.json["replicas"]``.
    """
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if not isinstance(cfg.get("seed"), int):
        raise ValueError(f"seed must be an integer (seed=0 is valid), got {cfg.get('seed')!r}")
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    _check_ddp_launch(cfg)
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
        task = datamodule.task
        results: dict[str, Any] = {
            "name": cfg.get("name"),
            "seed": cfg.get("seed"),
            "status": "completed",
            "metric": task.primary.name,
            "metric_unit": task.primary.unit,
            "metric_direction": task.primary.direction,
            "metrics": metric_declarations(task),
            "task": task.summary(),
            "hparams": run_hparams(cfg),
            "overrides": job_overrides(),
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "fit_seconds": fit_seconds,
            "seconds_per_epoch": {k: _median_or_none(v) for k, v in module.epoch_seconds.items()},
            "parameters": counts,
            "final": {k: v.cpu().tolist() for k, v in module.ace_state().items()},
            "convergence": convergence(module),  # of the final γ; per mode under "modes"
        }
        if trainer.world_size > 1:
            results["replicas"] = getattr(module, "replicas", None)  # ReplicaConsistency
        if cfg.get("test", True) and not trainer.fast_dev_run:
            # every rank runs Lightning's validate/test (collective under DDP); rank 0 writes
            results["modes"] = test_best_checkpoints(trainer, module, datamodule,
                                                     module.checkpoint_dir)
            if cfg.get("test_last", False):
                results["last"] = test_last_checkpoint(trainer, module, datamodule,
                                                       module.checkpoint_dir)
            if trainer.is_global_zero:
                export_pruned(module, Path(module.checkpoint_dir) / "best_eq.ckpt", output_dir)
        if not trainer.is_global_zero:
            return results
        write_json(output_dir / "results.json", results)
        log.info("%s", run_summary(results, output_dir))
        return results
    finally:
        _finish_wandb(loggers)


def _check_ddp_launch(cfg: DictConfig) -> None:
    """Lightning's DDP launcher re-runs ``sys.argv`` for ranks > 0, which in a local ``-m``
    sweep would start the whole sweep again in every child: refuse with the way out."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    strategy = str(OmegaConf.select(cfg, "trainer.strategy", default="auto"))
    if "ddp" not in strategy or not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    launcher = str(OmegaConf.select(hydra_cfg, "launcher._target_", default=""))
    if hydra_cfg.mode == RunMode.MULTIRUN and "SlurmLauncher" not in launcher:
        raise ValueError(
            "trainer=ddp cannot run inside a local multirun (Lightning would re-launch the whole "
            "sweep on every rank). Run DDP jobs one at a time, or sweep with launcher=slurm and "
            "hydra.launcher.tasks_per_node=<trainer.devices> (one SLURM task per GPU)."
        )


def export_pruned(module, checkpoint: Path, output_dir: Path) -> Path:
    """Save the pure f_eq network of the f_eq-selected checkpoint (f_neq and γ removed)."""
    load_weights(module, checkpoint)
    pruned = prune_all(module.net).cpu().eval()
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


def record_failure(cfg: DictConfig, err: BaseException) -> Path:
    """Write ``results.json`` with ``status: failed`` (error and traceback) for a failed job."""
    import traceback

    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    try:  # the failure may come from the config itself: never mask it with a second error
        hparams = run_hparams(cfg)
    except Exception:  # noqa: BLE001
        hparams = {}
    return write_json(output_dir / "results.json", {
        "name": cfg.get("name"),
        "seed": cfg.get("seed"),
        "status": "failed",
        "error": f"{type(err).__name__}: {err}",
        "traceback": "".join(traceback.format_exception(err)),
        "hparams": hparams,
        "overrides": job_overrides(),
    })


def sweep_objective(results: dict[str, Any]) -> float | None:
    """f_eq's validation value of the primary metric, negated when the metric is maximised, so
    that a sweeper that minimises the value ``train.py`` returns picks the best run."""
    value = (results.get("modes") or {}).get("eq", {}).get("val")
    if value is None:
        return None
    return objective(value, results.get("metric_direction", "min"))


def _median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
