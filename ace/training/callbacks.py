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


class ReplicaConsistency(L.Callback):
    """Under DDP, check after every training epoch that γ, λ and u are identical on all ranks.

    Why they are (README "Multi-GPU"): DDP all-reduces the gradients of every primal parameter
    (network, γ and the slacks u), so each rank takes the same primal step; the dual step then
    uses s = γ (or |γ| − u), which are replicated values, so λ needs no communication of its own.
    A mismatch therefore means a bug (e.g. a rank-dependent dual update) and stops the run.
    ``pl_module.replicas`` holds every rank's γ/λ/u after the last epoch and the largest
    difference seen (``max_abs_diff``, 0.0 when consistent).
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size < 2 or not getattr(pl_module, "num_gammas", 0):
            return
        gathered = {k: pl_module.all_gather(v.detach()) for k, v in sorted(pl_module.ace_state().items())}
        diff = max(float((g - g[0]).abs().max()) for g in gathered.values())  # g: [world_size, n]
        previous = getattr(pl_module, "replicas", {}).get("max_abs_diff", 0.0)
        # every rank's values after this epoch: results.json["replicas"]
        pl_module.replicas = {"world_size": trainer.world_size, "max_abs_diff": max(previous, diff),
                              **{k: g.cpu().tolist() for k, g in gathered.items()}}
        if diff > 0.0:
            raise RuntimeError(
                f"γ/λ/u differ across DDP ranks by {diff:.3e} at epoch {trainer.current_epoch}: "
                "the dual variables must stay replicated (see ace.training.callbacks.ReplicaConsistency)"
            )
