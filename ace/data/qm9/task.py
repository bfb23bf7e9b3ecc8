"""QM9 group action and task (``experiments.md`` §2.1, §3.1).

* :class:`QM9Rotation` — SO(3) acting on ``pos`` of every molecule; the targets are invariant.
* :class:`QM9Task` — L1 on the standardised target, MAE in the target's PyG unit.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torchmetrics.regression import MeanAbsoluteError

from ace.core.equivariance import GroupAction
from ace.data.base import Task
from ace.data.metrics import MetricSpec
from ace.data.qm9.targets import QM9Target, resolve_target

__all__ = ["QM9Rotation", "QM9Task"]


def _graph_index(batch: Any) -> torch.Tensor:
    index = getattr(batch, "batch", None)
    if index is None:  # a single Data object
        index = torch.zeros(batch.pos.shape[0], dtype=torch.long, device=batch.pos.device)
    return index


class QM9Rotation(GroupAction):
    """SO(3) on a PyG batch of molecules: ``pos`` of molecule b is rotated by ``g[b]``; the
    node features (atom types) and the targets are invariant, so the model output is too."""

    def batch_size(self, batch: Any) -> int:
        return int(getattr(batch, "num_graphs", 1))

    def reference_tensor(self, batch: Any) -> torch.Tensor:
        return batch.pos

    def act_on_batch(self, batch: Any, g: torch.Tensor) -> Any:
        if g.dim() != 3 or g.shape[1:] != (3, 3) or g.shape[0] != self.batch_size(batch):
            raise ValueError(f"QM9Rotation needs one 3x3 matrix per molecule "
                             f"[{self.batch_size(batch)}, 3, 3], got {tuple(g.shape)}")
        pos = batch.pos
        rot = g.to(dtype=pos.dtype, device=pos.device)[_graph_index(batch)]  # [N, 3, 3]
        out = copy.copy(batch)  # new storage, shared tensors; only pos is replaced
        out.pos = torch.einsum("nij,nj->ni", rot, pos)
        return out

    def act_on_output(self, output: torch.Tensor, g: torch.Tensor, batch: Any) -> torch.Tensor:
        return output


class QM9Task(Task):
    """Predict one scalar per molecule, ``[B, 1]``, in standardised units (``(y − mean) / mad``).

    * ``loss``: L1 between the prediction and the standardised target (with ``mean=0, mad=1``,
      i.e. standardisation off, plain L1 on the raw target: the SchNet protocol);
    * metric ``mae``: mean |pred·mad + mean − y| in the target's PyG unit (e.g. eV), with
      ``{"meV": 1000.0}`` as alternative unit for eV targets (torchmetrics' ``MeanAbsoluteError``).
    """

    def __init__(self, target: str | int | QM9Target = "cv", mean: float = 0.0,
                 mad: float = 1.0) -> None:
        self.target = resolve_target(target)
        self.target_index = self.target.index
        self.target_name = self.target.name
        self.metrics = (MetricSpec("mae", "min", MeanAbsoluteError, unit=self.target.unit,
                                   alternative_units=self.target.alternative_units),)
        self.group_action = QM9Rotation()
        self.mean, self.mad = 0.0, 1.0
        self.set_standardization(mean, mad)

    def summary(self) -> dict[str, Any]:
        """Target and standardisation: predictions of an exported model are (y − mean) / mad."""
        return {**super().summary(), "target": self.target_name, "target_index": self.target_index,
                "mean": self.mean, "mad": self.mad}

    def set_standardization(self, mean: float, mad: float) -> None:
        mean, mad = float(mean), float(mad)
        if not (np.isfinite(mean) and np.isfinite(mad) and mad > 0):
            raise ValueError(f"QM9 standardisation needs a finite mean and a positive MAD, got "
                             f"mean={mean}, mad={mad}")
        self.mean, self.mad = mean, mad

    def targets(self, batch: Any) -> torch.Tensor:
        """The raw target column, [B, 1], in PyG units."""
        return batch.y[:, self.target_index: self.target_index + 1]

    def _aligned(self, pred: torch.Tensor, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.targets(batch)
        if pred.shape != y.shape:
            if pred.dim() == 1 and pred.shape[0] == y.shape[0]:
                pred = pred.unsqueeze(-1)
            else:
                raise ValueError(f"QM9 predictions must be [num_graphs, 1] = {tuple(y.shape)}, "
                                 f"got {tuple(pred.shape)}")
        return pred, y.to(pred.dtype)

    def loss(self, pred: torch.Tensor, batch: Any) -> torch.Tensor:
        pred, y = self._aligned(pred, batch)
        return torch.nn.functional.l1_loss(pred, (y - self.mean) / self.mad)

    def metric_inputs(self, pred: torch.Tensor, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction in the target's raw unit, raw target), both [B, 1]."""
        pred, y = self._aligned(pred, batch)
        return pred * self.mad + self.mean, y
