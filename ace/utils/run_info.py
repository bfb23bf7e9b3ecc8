"""What a run was: its resolved settings and command-line overrides, as ``results.json`` records
them. Plain OmegaConf/Hydra, no Lightning, so ``ace.reproduction`` can read old runs cheaply."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


#: the constraint keys that define its dual update (results.json ``hparams["dual"]``)
DUAL_KEYS = ("dual_optimizer", "dual_kp", "dual_ki", "dual_ema_nu", "penalty")


def run_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The resolved settings a results table needs beside the overrides: learning rates, epochs
    and every scalar of the data config (QM9 target, MoCap case, N-body max_samples, ...)."""
    constraint = cfg.get("constraint") or {}
    data = OmegaConf.to_container(cfg.data, resolve=True)
    hparams = {
        "lr": OmegaConf.select(cfg, "model.optimizer.lr"),
        "dual_lr": constraint.get("dual_lr"),
        "constraint": constraint.get("_target_", "none").rsplit(".", 1)[-1],
        "max_epochs": OmegaConf.select(cfg, "trainer.max_epochs"),
        "data": {k: v for k, v in data.items()
                 if isinstance(v, str | int | float | bool) and not k.startswith("_")
                 and k not in ("data_dir", "base_url", "url")},
    }
    if "_target_" in constraint and "dual_optimizer" in constraint:  # the dual update (issue 16)
        hparams["dual"] = {k: constraint.get(k) for k in DUAL_KEYS if k in constraint}
    if OmegaConf.select(cfg, "model.gamma_lr") is not None:  # γ's own learning rate (issue 16)
        hparams["gamma_lr"] = OmegaConf.select(cfg, "model.gamma_lr")
    return hparams


def job_overrides() -> list[str]:
    """The command-line overrides of this job (``[]`` outside a Hydra run, e.g. in tests)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)
