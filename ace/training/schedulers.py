"""Primal learning-rate schedules (the dual step size stays constant, ``ace_algorithm.md`` §4)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["multistep_at_fractions"]


def multistep_at_fractions(
    optimizer: torch.optim.Optimizer,
    max_epochs: int,
    fractions: Sequence[float] = (0.8, 0.9),
    gamma: float = 0.1,
) -> torch.optim.lr_scheduler.MultiStepLR:
    """``MultiStepLR`` with milestones at fractions of the run (SEGNN QM9: ×0.1 at 80 % and 90 %).

    Milestones are ``int(f · max_epochs)``, as in the original SEGNN code; the scheduler is
    stepped once per epoch by the LightningModule.
    """
    if max_epochs is None or max_epochs < 1:
        raise ValueError(f"max_epochs must be a positive integer (trainer.max_epochs), got {max_epochs}")
    if not all(0.0 < f <= 1.0 for f in fractions):
        raise ValueError(f"fractions must lie in (0, 1], got {list(fractions)}")
    milestones = sorted({int(f * max_epochs) for f in fractions})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)
