"""Hydra callback that closes a multirun with a summary of completed and failed jobs.

``train.py`` records a failed job as ``results.json`` with ``status: failed`` and returns, so the
sweep goes on; at the end this callback lists those jobs, writes ``sweep_summary.json`` at the
sweep root and logs which overrides failed. ``scripts/aggregate.py`` reads the same files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ace.reproduction.aggregate import find_runs

log = logging.getLogger("ace.sweep")


def summarise_sweep(sweep_dir: str | Path) -> dict[str, Any]:
    """Count the jobs under ``sweep_dir`` (one ``<job>/results.json`` each) by status."""
    runs = sorted(find_runs([sweep_dir]), key=lambda r: (len(r.path.name), r.path.name))
    failed = [{"job": r.path.name, "overrides": r.record.get("overrides", []),
               "error": r.record.get("error")} for r in runs if r.failed]
    return {"sweep_dir": str(sweep_dir), "jobs": len(runs), "completed": len(runs) - len(failed),
            "failed": failed}


class SweepSummary(Callback):
    """``hydra.callbacks.sweep_summary`` (configs/hydra/default.yaml)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        summary = summarise_sweep(config.hydra.sweep.dir)
        path = Path(config.hydra.sweep.dir) / "sweep_summary.json"
        path.write_text(json.dumps(summary, indent=2) + "\n")
        log.info("sweep finished: %d jobs, %d completed, %d failed (%s)",
                 summary["jobs"], summary["completed"], len(summary["failed"]), path)
        for job in summary["failed"]:
            log.warning("job %s failed (%s): %s", job["job"], " ".join(job["overrides"]), job["error"])
