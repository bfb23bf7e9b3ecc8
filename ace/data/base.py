"""What a data set asks of a model: the loss, the declared metrics and the symmetry group action.

The LightningModule (:mod:`ace.training.module`) is data-agnostic: it gets a :class:`Task` from the
DataModule and calls ``task.loss`` for training, ``task.metric_inputs`` to update each declared
metric (:class:`~ace.data.metrics.MetricSpec`) during evaluation, and ``task.group_action`` for
the equivariance error. A task whose primary metric is maximised (an accuracy) needs nothing
beyond its own declaration: checkpoints, aggregation, figures and sweeps read the direction.

:class:`TaskDataModule` is the base of every data module: it carries the task and the batch
transforms chosen in the data config (``train_transform``, ``eval_transform``; see
:mod:`ace.data.transforms`).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from ace.core.equivariance import GroupAction
from ace.data.metrics import MetricSpec
from ace.data.transforms import BatchTransform, check_transform

__all__ = ["Task", "TaskDataModule"]


class Task:
    """Loss, metrics and group action of one data set.

    Subclasses set ``metrics`` (a tuple of :class:`MetricSpec`, class- or instance-level),
    ``group_action``, and implement :meth:`loss` and :meth:`metric_inputs`. The primary metric
    — the one that selects checkpoints and learning rates — is ``primary_metric`` if set, else
    the first declared metric.
    """

    metrics: tuple[MetricSpec, ...] = ()
    primary_metric: str | None = None
    group_action: GroupAction

    def loss(self, pred: torch.Tensor, batch: Any) -> torch.Tensor:
        """Training loss J_0 (a scalar, mean over the batch)."""
        raise NotImplementedError

    def metric_inputs(self, pred: torch.Tensor, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(preds, target)`` in the form every declared metric's ``update`` takes."""
        raise NotImplementedError

    @property
    def primary(self) -> MetricSpec:
        if not self.metrics:
            raise ValueError(f"{type(self).__name__} declares no metrics")
        name = self.primary_metric or self.metrics[0].name
        for spec in self.metrics:
            if spec.name == name:
                return spec
        raise ValueError(f"{type(self).__name__}.primary_metric={name!r} is not one of its "
                         f"metrics {[s.name for s in self.metrics]}")

    def batch_size(self, batch: Any) -> int:
        return self.group_action.batch_size(batch)

    def summary(self) -> dict[str, Any]:
        """Task-specific facts for results.json's ``task`` entry (e.g. QM9's target and
        standardisation); the metrics with their units and directions are recorded beside it."""
        return {}


class TaskDataModule(L.LightningDataModule):
    """A DataModule with a :class:`Task` (``self.task``, set by the subclass) and transforms.

    Args:
        train_transform: applied to every training batch after it reached the device, e.g.
            :class:`~ace.data.transforms.RandomGroupAction` (SO(3) augmentation).
        eval_transform: applied to every validation and test batch, with a generator seeded from
            the run seed and the epoch (the same transformed batch serves both modes).
    """

    task: Task

    def __init__(self, train_transform: BatchTransform | None = None,
                 eval_transform: BatchTransform | None = None) -> None:
        super().__init__()
        self.train_transform = check_transform(train_transform, "data.train_transform")
        self.eval_transform = check_transform(eval_transform, "data.eval_transform")

    def set_batch_sizes(self, batch_size: int, eval_batch_size: int | None) -> None:
        """``self.batch_size`` (training) and ``self.eval_batch_size`` (validation and test;
        None: ``batch_size``), both checked to be ≥ 1."""
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value is not None and value < 1:
                raise ValueError(f"data.{key}={value} must be >= 1")
        self.batch_size = batch_size
        self.eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
