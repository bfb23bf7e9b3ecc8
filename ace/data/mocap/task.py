"""MoCap group action and task (``experiments.md`` §4.1).

* :class:`MoCapRotation` — rotations about the vertical (y) axis, optionally composed with a
  horizontal (x, z) translation (``equivariance_protocol="vertical_axis"``; also the action of
  MoCap's training-time augmentation).
* :class:`MoCapFixedHeightRotation` — the paper's equivariance-error protocol (Fig. 4,
  ``ace_algorithm.md`` §7; ``equivariance_protocol="so3_fixed_height"``, the default): Haar-random
  SO(3) rotations, the EGNO height feature Z kept fixed, the last predicted frame compared.
* :class:`MoCapTask` — training loss: mean over the T frames of the per-frame MSE; metric: MSE of
  the last frame (raw units).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torchmetrics.regression import MeanSquaredError

from ace.core.equivariance import GroupAction, draw_device, random_rotations
from ace.data.base import Task
from ace.data.metrics import MetricSpec

__all__ = ["MoCapRotation", "MoCapFixedHeightRotation", "MoCapTask", "EQUIVARIANCE_PROTOCOLS",
           "HEIGHT_KEY"]

Batch = dict[str, torch.Tensor]

#: batch key of the heights [B, N] that EGNO's height feature Z is computed from (the same key as
#: :data:`ace.models.egno.HEIGHT_KEY`; absent, the model takes the y coordinate of ``loc``)
HEIGHT_KEY = "height"
#: ``MoCapTask(equivariance_protocol=...)``: the group action of the equivariance-error metric
EQUIVARIANCE_PROTOCOLS = ("so3_fixed_height", "vertical_axis")


def _y_rotations(angles: torch.Tensor) -> torch.Tensor:
    """[B] angles ↦ [B, 3, 3] rotations about the y axis (det +1)."""
    c, s = torch.cos(angles), torch.sin(angles)
    zero, one = torch.zeros_like(angles), torch.ones_like(angles)
    return torch.stack([c, zero, s, zero, one, zero, -s, zero, c], dim=-1).view(-1, 3, 3)


class MoCapRotation(GroupAction):
    """Rotations about the vertical (y) axis, optionally with a horizontal (x, z) translation.

    Only this subgroup of E(3): the EGNO node feature Z/Z_max (height) is invariant to it but not
    to tilting rotations or vertical shifts, so even the equivariant model is only equivariant
    to rotations about y (and translations in x, z).

    A group element is a homogeneous matrix [B, 4, 4]: ``g[:, :3, :3]`` the rotation,
    ``g[:, :3, 3]`` the translation (y component 0). A plain [B, 3, 3] rotation is accepted too.
    Positions (``loc``, ``target_loc``, and the model output) are rotated and translated;
    velocities (``vel``, ``target_vel``) only rotated; the graph is left as it is.

    Args:
        translation_std: standard deviation of the random horizontal translation drawn by
            :meth:`sample` (per sample, N(0, std²) in x and z); 0 (default) = rotation only.
    """

    POSITION_KEYS = ("loc", "target_loc")
    VELOCITY_KEYS = ("vel", "target_vel")

    def __init__(self, translation_std: float = 0.0):
        self.translation_std = float(translation_std)

    def batch_size(self, batch: Batch) -> int:
        return batch["loc"].shape[0]

    def reference_tensor(self, batch: Batch) -> torch.Tensor:
        return batch["loc"]

    def sample(self, batch: Batch, generator: torch.Generator | None = None) -> torch.Tensor:
        ref = self.reference_tensor(batch)
        n = self.batch_size(batch)
        # drawn on the generator's device (CPU), then moved: the same elements on every device
        on = {"dtype": torch.float64, "device": draw_device(generator)}
        angles = torch.rand(n, generator=generator, **on) * (2 * math.pi)
        g = torch.zeros(n, 4, 4, **on)
        g[:, :3, :3] = _y_rotations(angles)
        g[:, 3, 3] = 1.0
        if self.translation_std > 0:
            shift = torch.randn(n, 2, generator=generator, **on)
            g[:, 0, 3] = shift[:, 0] * self.translation_std
            g[:, 2, 3] = shift[:, 1] * self.translation_std
        return g.to(dtype=ref.dtype, device=ref.device)

    @staticmethod
    def _split(g: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        g = g.to(dtype=x.dtype, device=x.device)
        if g.shape[-2:] == (3, 3):
            return g, None
        if g.shape[-2:] != (4, 4):
            raise ValueError(f"group elements must be [B, 3, 3] or [B, 4, 4], got {tuple(g.shape)}")
        return g[:, :3, :3], g[:, :3, 3]

    @classmethod
    def _act(cls, x: torch.Tensor, g: torch.Tensor, translate: bool) -> torch.Tensor:
        """x [B, ..., 3] ↦ R x (+ t), per sample."""
        rot, shift = cls._split(g, x)
        out = torch.einsum("bij,b...j->b...i", rot, x)
        if translate and shift is not None:
            out = out + shift.view(x.shape[0], *(1,) * (x.dim() - 2), 3)
        return out

    def act_on_batch(self, batch: Batch, g: torch.Tensor) -> Batch:
        out = dict(batch)
        for key in self.POSITION_KEYS:
            if key in out:
                out[key] = self._act(out[key], g, translate=True)
        for key in self.VELOCITY_KEYS:
            if key in out:
                out[key] = self._act(out[key], g, translate=False)
        return out

    def act_on_output(self, output: torch.Tensor, g: torch.Tensor, batch: Any) -> torch.Tensor:
        return self._act(output, g, translate=True)


class MoCapFixedHeightRotation(MoCapRotation):
    """The paper's MoCap equivariance-error protocol (Fig. 4, ``ace_algorithm.md`` §7).

    * :meth:`sample` draws an independent Haar-random SO(3) rotation [B, 3, 3] per sample
      (:func:`~ace.core.equivariance.random_rotations`), tilting rotations included;
    * :meth:`act_on_batch` first stores the *unrotated* input heights ``loc[..., 1]`` under
      :data:`HEIGHT_KEY` (unless the batch has them already), then rotates positions and
      velocities as :class:`MoCapRotation`: the EGNO height feature Z is an invariant scalar that
      official EGNO does not rotate, so f_eq is equivariant to every rotation;
    * :meth:`compared` keeps the last predicted frame ([B, T, N, 3] → [B, N, 3]), the one the
      paper compares (and the one the metric scores).

    Rotations only (translations are not tested, §7). For augmentation use :class:`MoCapRotation`
    (rotations about the vertical axis): tilting a skeleton is not a symmetry of the data.
    """

    def __init__(self) -> None:
        super().__init__(translation_std=0.0)

    def sample(self, batch: Batch, generator: torch.Generator | None = None) -> torch.Tensor:
        ref = self.reference_tensor(batch)
        return random_rotations(self.batch_size(batch), generator, ref.dtype, ref.device)

    def act_on_batch(self, batch: Batch, g: torch.Tensor) -> Batch:
        out = super().act_on_batch(batch, g)
        if HEIGHT_KEY not in batch:
            out[HEIGHT_KEY] = batch["loc"][..., 1]
        return out

    def compared(self, output: torch.Tensor) -> torch.Tensor:
        return output[:, -1]


class MoCapTask(Task):
    """Predict positions [B, T, 31, 3] at the target frames (§4.1).

    * ``loss``: per-frame MSE over nodes and coordinates, averaged over the T frames and the batch.
    * metric ``mse``: MSE of the **last** frame (s + Δ) over nodes and coordinates, raw units
      (torchmetrics' ``MeanSquaredError``; every sample has 31 × 3 values, so it is the mean of
      the per-sample MSEs); Table 1 reports it ×10⁻² (23.8 means 0.238).
    """

    metrics = (MetricSpec("mse", "min", MeanSquaredError),)

    def __init__(self, translation_std: float = 0.0,
                 equivariance_protocol: str = "so3_fixed_height") -> None:
        if equivariance_protocol not in EQUIVARIANCE_PROTOCOLS:
            raise ValueError(f"data.equivariance_protocol={equivariance_protocol!r} must be one of "
                             f"{list(EQUIVARIANCE_PROTOCOLS)}")
        if equivariance_protocol == "so3_fixed_height" and translation_std != 0:
            raise ValueError(f"data.translation_std={translation_std} needs "
                             f"data.equivariance_protocol=vertical_axis: the paper's SO(3) "
                             f"protocol tests rotations only")
        self.equivariance_protocol = equivariance_protocol
        self.group_action: MoCapRotation = (
            MoCapFixedHeightRotation() if equivariance_protocol == "so3_fixed_height"
            else MoCapRotation(translation_std))

    @staticmethod
    def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"MoCap predictions must be [B, T, 31, 3] = {tuple(target.shape)}, "
                             f"got {tuple(pred.shape)}")

    def loss(self, pred: torch.Tensor, batch: Batch) -> torch.Tensor:
        target = batch["target_loc"]
        self._check(pred, target)
        per_frame = (pred - target).pow(2).mean(dim=(0, 2, 3))  # [T]
        return per_frame.mean()

    def metric_inputs(self, pred: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        target = batch["target_loc"]
        self._check(pred, target)
        return pred[:, -1].contiguous(), target[:, -1].contiguous()

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "eval_frame": "last",
                "equivariance_protocol": self.equivariance_protocol}
