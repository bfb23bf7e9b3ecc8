"""Batch transforms chosen in the data config, in the spirit of PyG's transforms.

A transform is a callable ``transform(batch, action, generator) -> batch`` that returns a new
batch: ``action`` is the task's :class:`~ace.core.equivariance.GroupAction`, ``generator`` the
random stream to draw from (None: torch's global stream). The LightningModule applies the data
module's ``train_transform`` to every training batch and its ``eval_transform`` to every
validation and test batch, after the batch reached the device::

    # configs/data/*.yaml (or an experiment)
    train_transform:
      _target_: ace.data.transforms.RandomGroupAction     # one Haar-random g per sample
    eval_transform: null

Both draw from generators seeded by the run seed, the stage and the epoch (never from torch's
global stream, which DataLoaders also draw from): augmentation does not depend on how often the
model was evaluated, a run resumed at an epoch boundary is exact, an evaluation is reproducible,
and both modes (f_eq and f_eq + γ f_neq) see the same transformed batches. Those generators are
CPU generators, also when the batch is on a GPU: a transform draws on the generator's device
(:func:`ace.core.equivariance.draw_device`) and moves what it drew to the batch's device, so a
run transforms its batches identically on every device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from ace.core.equivariance import GroupAction

__all__ = ["BatchTransform", "RandomGroupAction", "Compose", "check_transform"]


class BatchTransform(Protocol):
    def __call__(self, batch: Any, action: GroupAction,
                 generator: torch.Generator | None = None) -> Any: ...


class RandomGroupAction:
    """x ↦ ρ_X(g_b) x_b with an independent random group element g_b per sample.

    ρ_X acts on every vector-valued field, inputs and targets alike (the "SO(3) augmentation"
    baseline of Table 2 rotates input positions, velocities and target positions). The elements
    come from ``action.sample`` — Haar-uniform rotations for N-body and QM9, rotations about the
    vertical axis for MoCap's augmentation.

    Args:
        action: the group action to sample and apply; None (default) uses the task's.
    """

    def __init__(self, action: GroupAction | None = None) -> None:
        self.action = action

    def __call__(self, batch: Any, action: GroupAction,
                 generator: torch.Generator | None = None) -> Any:
        action = self.action or action
        return action.act_on_batch(batch, action.sample(batch, generator))

    def __repr__(self) -> str:
        return f"RandomGroupAction({self.action!r})" if self.action else "RandomGroupAction()"


class Compose:
    """Apply several transforms in order (all draw from the same generator)."""

    def __init__(self, transforms: Sequence[BatchTransform]) -> None:
        self.transforms = [check_transform(t, f"Compose[{i}]") for i, t in enumerate(transforms)]

    def __call__(self, batch: Any, action: GroupAction,
                 generator: torch.Generator | None = None) -> Any:
        for transform in self.transforms:
            batch = transform(batch, action, generator)
        return batch

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def check_transform(transform: Any, key: str) -> BatchTransform | None:
    """``transform`` if it is None or callable, else one clear error naming the config key."""
    if transform is not None and not callable(transform):
        raise TypeError(f"{key} must be a callable transform(batch, action, generator) or null "
                        f"(e.g. _target_: ace.data.transforms.RandomGroupAction), got "
                        f"{type(transform).__name__}: {transform!r}")
    return transform
