"""Small Lightning callbacks used by :class:`ace.training.module.ACEModule`."""

from __future__ import annotations

import lightning as L


class ValidateOnLastEpoch(L.Callback):
    """Evaluate every ``check_val_every_n_epoch`` epochs *and* at the last epoch (paper protocol:
    "every 5 epochs and at the last epoch"), so a run whose length is not a multiple of the
    validation interval still selects and checkpoints its final model."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        last = trainer.max_epochs is not None and trainer.current_epoch == trainer.max_epochs - 1
        if last and trainer.check_val_every_n_epoch is not None:
            self._interval = trainer.check_val_every_n_epoch
            trainer.check_val_every_n_epoch = 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if hasattr(self, "_interval"):
            trainer.check_val_every_n_epoch = self._interval
            del self._interval
