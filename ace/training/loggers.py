"""The project's two loggers: Lightning's, with two fixes.

:class:`QuietWandbLogger` — Lightning's ``WandbLogger`` always passes ``anonymous=None`` to
``wandb.init``, which W&B 0.31 answers with "The anonymous setting has no effect and will be
removed" at every run; the key is dropped unless set.

:class:`ResumableCSVLogger` — a CSV logger that keeps a run's metrics history when resumed.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts, so resuming a run
into its own directory (``ckpt_path=<run>/checkpoints/last.ckpt``) would lose every curve logged
before the checkpoint. With ``resume`` set (configs/logger/csv.yaml passes ``${ckpt_path}``) the
existing rows and header are kept and new rows are appended; rows of epochs that are trained
again after resuming from an earlier checkpoint appear twice, and readers keep the last one
(``ace.reproduction.plots``). Without ``resume`` it behaves exactly like ``CSVLogger``.
"""

from __future__ import annotations

import csv

from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])


class ResumableCSVLogger(CSVLogger):
    def __init__(self, *args, resume: str | bool | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.resume = bool(resume)

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None and self.resume:
            if rank_zero_only.rank == 0:
                self._fs.makedirs(self.root_dir, exist_ok=True)
                self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return super().experiment


class QuietWandbLogger(WandbLogger):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
