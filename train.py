"""The one entry point: ``python train.py experiment=<name> [key=value ...]`` (``-m`` for sweeps).

See README.md for the experiments, overrides, outputs and W&B.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("ACE_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

log = logging.getLogger("train")


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ace.utils.console import quiet_third_party

    quiet_third_party()  # before Lightning and PyG are imported: their import-time warnings too

    from ace.data.errors import DataIntegrityError, DownloadError
    from ace.training import NonFiniteLossError
    from ace.training.pipeline import record_failure, sweep_objective, train

    # Lightning installs its own console handler; Hydra's root handlers (console + <run>/train.log)
    # already receive its records, so drop Lightning's to avoid every line printed twice.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        results = train(cfg)
    except Exception as err:
        if in_sweep:
            # One failed job must not stop the sweep: record it where aggregate.py looks.
            log.exception("job failed; recorded in results.json, the sweep continues")
            record_failure(cfg, err)
            return None
        if isinstance(err, DataIntegrityError | DownloadError | NonFiniteLossError):
            log.error("%s: %s", type(err).__name__, err)
            print(f"\nerror: {err}", file=sys.stderr)
            sys.exit(1)
        raise
    # What a Hydra sweeper optimises: f_eq's validation value of the primary metric at its best
    # checkpoint, oriented so that lower is always better (an accuracy is returned negated).
    return sweep_objective(results)


if __name__ == "__main__":
    main()
