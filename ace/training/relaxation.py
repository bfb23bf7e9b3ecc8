"""The γ schedule of the "SEGNN Rel." baseline (``experiments.md`` §6.3), a Lightning callback.

At the start of every training epoch e of E = ``trainer.max_epochs`` it sets the one global γ of
every relaxed map (:class:`ace.models.relaxation.RelaxedLinear`):

* ``triangle``: γ = 2e/E for e ≤ E/2, else 1 − 2(e − E/2)/E (0 → 1 at mid-training → 2/E);
* ``constant``: γ = ``value`` (the reference code without schedule: 0.1).

γ is logged as ``relaxation/gamma``. It is a function of the epoch alone, so a run resumed from a
checkpoint gets the same values (with the same ``trainer.max_epochs``). Evaluation never uses γ:
the relaxed maps are off outside training.
"""

from __future__ import annotations

import lightning as L

from ace.models.relaxation import set_relaxation_gamma, triangle_schedule

SCHEDULES = ("triangle", "constant")


class RelaxationSchedule(L.Callback):
    def __init__(self, schedule: str = "triangle", value: float = 0.1) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"callbacks.relaxation.schedule must be one of {SCHEDULES}, "
                             f"got {schedule!r}")
        self.schedule = schedule
        self.value = float(value)

    def gamma(self, epoch: int, max_epochs: int | None) -> float:
        if self.schedule == "constant":
            return self.value
        if max_epochs is None or max_epochs < 1:
            raise ValueError("the triangle relaxation schedule needs trainer.max_epochs >= 1")
        return triangle_schedule(epoch, max_epochs)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        gamma = self.gamma(trainer.current_epoch, trainer.max_epochs)
        if set_relaxation_gamma(pl_module.net, gamma) == 0:
            raise ValueError(
                "callbacks.relaxation is set but the network has no relaxed maps; use a model "
                "with relaxation (e.g. model.net.relaxation=true) or remove the callback"
            )
        pl_module.log("relaxation/gamma", gamma, on_step=False, on_epoch=True)
