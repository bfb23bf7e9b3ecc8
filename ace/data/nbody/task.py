"""N-body group action and task (``experiments.md`` §1.1).

* :class:`NBodyRotation` — O(3) acting on loc, vel and target (charges are scalars).
* :class:`NBodyTask` — MSE over nodes and coordinates.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics.regression import MeanSquaredError

from ace.core.equivariance import GroupAction
from ace.data.base import Task
from ace.data.metrics import MetricSpec

__all__ = ["NBodyRotation", "NBodyTask"]

Batch = dict[str, torch.Tensor]
VECTOR_KEYS = ("loc", "vel", "target")


def _rotate(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """x [B, N, 3] ↦ x @ g[b]ᵀ, i.e. g acting on column vectors, per sample."""
    g = g.to(dtype=x.dtype, device=x.device)
    return torch.matmul(x, g.transpose(-1, -2))


class NBodyRotation(GroupAction):
    """O(3) on the N-body batch: loc, vel and target are vectors, charges scalars."""

    def batch_size(self, batch: Batch) -> int:
        return batch["loc"].shape[0]

    def reference_tensor(self, batch: Batch) -> torch.Tensor:
        return batch["loc"]

    def act_on_batch(self, batch: Batch, g: torch.Tensor) -> Batch:
        out = dict(batch)
        for key in VECTOR_KEYS:
            if key in out:
                out[key] = _rotate(out[key], g)
        return out

    def act_on_output(self, output: torch.Tensor, g: torch.Tensor, batch: Any) -> torch.Tensor:
        return _rotate(output, g)


class NBodyTask(Task):
    """Predict positions [B, 5, 3] at the target frame; MSE over nodes and coordinates (§1.1).

    The metric is torchmetrics' ``MeanSquaredError`` over every coordinate of every particle of
    every sample: with the same 5 × 3 values per sample, that is the mean of the per-sample MSEs.
    """

    metrics = (MetricSpec("mse", "min", MeanSquaredError),)

    def __init__(self) -> None:
        self.group_action = NBodyRotation()

    def loss(self, pred: torch.Tensor, batch: Batch) -> torch.Tensor:
        return torch.nn.functional.mse_loss(pred, batch["target"])

    def metric_inputs(self, pred: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return pred, batch["target"]
