"""ModelNet40 classification: group action and task (``experiments.md`` §5.1, §5.2, §5.5).

* :class:`PointCloudRotation` — one SO(3) rotation per cloud acting on the points ``pos``
  [B, N, 3] (x ↦ R x per point); the class logits are invariant (ρ_Y = identity), so the
  equivariance error of this task is ‖f(x) − f(R x)‖ over the logits.
* :class:`ModelNet40Task` — DGCNN's label-smoothed cross-entropy; metrics: instance accuracy
  (primary, maximised) and the true mean per-class accuracy.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from ace.core.equivariance import GroupAction
from ace.data.base import Task
from ace.data.metrics import MetricSpec

__all__ = ["PointCloudRotation", "ModelNet40Task", "POSITION_KEY", "LABEL_KEY"]

Batch = dict[str, torch.Tensor]

#: batch key of the points [B, N, 3]
POSITION_KEY = "pos"
#: batch key of the class labels [B] (int64)
LABEL_KEY = "label"


class PointCloudRotation(GroupAction):
    """SO(3) acting on point clouds: ``pos[b] ↦ pos[b] R_bᵀ`` (each point rotated by R_b).

    Group elements are Haar-uniform rotations [B, 3, 3] (the default :meth:`sample`). The
    output of a classifier (logits [B, C]) is invariant: :meth:`act_on_output` returns it as is.
    """

    def batch_size(self, batch: Batch) -> int:
        return batch[POSITION_KEY].shape[0]

    def reference_tensor(self, batch: Batch) -> torch.Tensor:
        return batch[POSITION_KEY]

    def act_on_batch(self, batch: Batch, g: torch.Tensor) -> Batch:
        pos = batch[POSITION_KEY]
        out = dict(batch)
        out[POSITION_KEY] = torch.einsum("bij,bnj->bni", g.to(dtype=pos.dtype, device=pos.device),
                                         pos)
        return out

    def act_on_output(self, output: torch.Tensor, g: torch.Tensor, batch: Any) -> torch.Tensor:
        return output


class ModelNet40Task(Task):
    """Classify a cloud [B, N, 3] into ``num_classes`` shape classes.

    * ``loss``: DGCNN's ``cal_loss`` (used by the VN-DGCNN and ACE code): cross-entropy against
      the smoothed target q = (1 − ε)·onehot + ε/(C − 1)·(1 − onehot), ε = ``label_smoothing``
      (0.2). That is torch's ``label_smoothing`` = ε·C/(C − 1) (torch spreads ε over all C
      classes, the true one included).
    * metric ``instance_acc`` (primary, ``max``): the fraction of clouds classified correctly.
    * metric ``class_acc`` (``max``): the mean over classes of the per-class accuracy, from the
      epoch's confusion counts (the vnn lineage averages per-batch class accuracies instead,
      ``experiments.md`` §5.5; ace reports the true mean).
    """

    primary_metric = "instance_acc"

    def __init__(self, num_classes: int = 40, label_smoothing: float = 0.2) -> None:
        if num_classes < 2:
            raise ValueError(f"data.num_classes={num_classes} must be at least 2")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"data.label_smoothing={label_smoothing} must be in [0, 1)")
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.metrics = (
            MetricSpec("instance_acc", "max",
                       partial(MulticlassAccuracy, num_classes=num_classes, average="micro")),
            MetricSpec("class_acc", "max",
                       partial(MulticlassAccuracy, num_classes=num_classes, average="macro")),
        )
        self.group_action = PointCloudRotation()

    def _check(self, pred: torch.Tensor, batch: Batch) -> torch.Tensor:
        label = batch[LABEL_KEY]
        if pred.dim() != 2 or pred.shape != (label.shape[0], self.num_classes):
            raise ValueError(f"ModelNet40 logits must be [B, num_classes] = "
                             f"[{label.shape[0]}, {self.num_classes}], got {tuple(pred.shape)}")
        return label

    def loss(self, pred: torch.Tensor, batch: Batch) -> torch.Tensor:
        label = self._check(pred, batch)
        smoothing = self.label_smoothing * self.num_classes / (self.num_classes - 1)
        return F.cross_entropy(pred, label, label_smoothing=smoothing)

    def metric_inputs(self, pred: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        label = self._check(pred, batch)
        return pred, label

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "num_classes": self.num_classes,
                "label_smoothing": self.label_smoothing}
