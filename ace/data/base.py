"""What a data set asks of a model: the loss, the reported metric and the symmetry group action.

The LightningModule (:mod:`ace.training.module`) is data-agnostic: it gets a :class:`Task` from the
DataModule and calls ``task.loss`` for training, ``task.metric_sums`` for evaluation and
``task.group_action`` for the equivariance error and for SO(3) augmentation.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch

from ace.core.equivariance import GroupAction


class Task:
    #: name of the reported metric, e.g. ``"mse"`` (logged as ``val/mse/eq``); lower is better
    metric_name: str = "loss"
    #: unit of the metric (e.g. ``"eV"``), or None when unitless / not applicable
    metric_unit: str | None = None
    #: other units to report the metric in, as {unit: scale}: e.g. ``{"meV": 1000.0}`` for eV
    alternative_units: Mapping[str, float] = MappingProxyType({})
    group_action: GroupAction

    def loss(self, pred: torch.Tensor, batch: Any) -> torch.Tensor:
        """Training loss J_0 (a scalar, mean over the batch)."""
        raise NotImplementedError

    def metric_sums(self, pred: torch.Tensor, batch: Any) -> tuple[torch.Tensor, int]:
        """(sum of per-sample metric values, number of samples), so epoch means are exact."""
        raise NotImplementedError

    def batch_size(self, batch: Any) -> int:
        return self.group_action.batch_size(batch)

    def summary(self) -> dict[str, Any]:
        """Task-specific facts for results.json's ``task`` entry (e.g. QM9's target and
        standardisation); the metric name and unit are recorded beside it."""
        return {}
