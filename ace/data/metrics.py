"""The metrics a task declares: name, unit, direction and a stateful accumulator.

A :class:`MetricSpec` makes a fresh ``torchmetrics.Metric`` (reset / update on a batch /
compute), so an epoch value is exact whatever the batch sizes — a mean (MSE, MAE) as well as a
confusion-matrix metric such as the mean per-class accuracy. Accumulator states are float64
(sums of float32 batches would otherwise lose digits over a large split), and are never reduced
across DDP ranks: every rank evaluates the whole, unsharded validation and test sets.

    MetricSpec("mse", "min", MeanSquaredError)                          # N-body, MoCap
    MetricSpec("mae", "min", MeanAbsoluteError, unit="eV")              # QM9
    MetricSpec("class_acc", "max", partial(MulticlassAccuracy, num_classes=40, average="macro"))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torchmetrics import Metric

from ace.utils.direction import check_direction

__all__ = ["MetricSpec"]


@dataclass(frozen=True)
class MetricSpec:
    """One evaluation metric of a task.

    Args:
        name: key in logs and results (``val/<name>/<mode>``), e.g. ``"mse"``.
        direction: ``"min"`` (lower is better) or ``"max"`` (higher is better).
        factory: builds a fresh accumulator, updated with the task's ``metric_inputs``.
        unit: unit of the value (e.g. ``"eV"``), None when unitless.
        alternative_units: other units to report it in, as ``{unit: scale}`` (eV → meV: 1000).
    """

    name: str
    direction: str
    factory: Callable[[], Metric]
    unit: str | None = None
    alternative_units: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        check_direction(self.direction)
        if not self.name or "/" in self.name:
            raise ValueError(f"a metric name must be non-empty and contain no '/', got {self.name!r}")

    def make(self) -> Metric:
        """A fresh float64 accumulator that does not synchronise across processes."""
        metric = self.factory().set_dtype(torch.float64)
        metric.sync_on_compute = False
        return metric

    def describe(self) -> dict[str, Any]:
        """What ``results.json`` records beside the values."""
        return {"unit": self.unit, "direction": self.direction,
                "alternative_units": dict(self.alternative_units)}
