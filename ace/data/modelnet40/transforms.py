"""Point dropout, the noisy variant of Fig. 7 right (``experiments.md`` §5.1).

PointNet++'s ``random_point_dropout``, used by the ACE code with ``--dataset_dropout 1`` on
training *and* test clouds: per cloud a ratio r ~ U[0, ``max_ratio``) is drawn, and each point
is dropped with probability r, i.e. replaced by the cloud's first point (the shape stays
[B, N, 3]). It follows the transform protocol of :mod:`ace.data.transforms`, so it is redrawn
every epoch from the stage's seeded stream.
"""

from __future__ import annotations

from typing import Any

import torch

from ace.core.equivariance import GroupAction, draw_device
from ace.data.modelnet40.task import POSITION_KEY

__all__ = ["RandomPointDropout"]


class RandomPointDropout:
    """x_{b,n} ↦ x_{b,0} with probability r_b, r_b ~ U[0, max_ratio), independently per point.

    Args:
        max_ratio: the upper end of the per-cloud dropout ratio (PointNet++: 0.875; the paper
            says 0–85 %).
    """

    def __init__(self, max_ratio: float = 0.875) -> None:
        if not 0.0 <= max_ratio <= 1.0:
            raise ValueError(f"data.max_dropout_ratio={max_ratio} must be in [0, 1]")
        self.max_ratio = float(max_ratio)

    def __call__(self, batch: dict[str, torch.Tensor], action: GroupAction | None = None,
                 generator: torch.Generator | None = None) -> dict[str, Any]:
        pos = batch[POSITION_KEY]
        b, n = pos.shape[:2]
        on = draw_device(generator)  # drawn on the generator's device: the same on every device
        ratio = torch.rand(b, 1, generator=generator, device=on) * self.max_ratio
        drop = (torch.rand(b, n, generator=generator, device=on) < ratio).to(pos.device)
        out = dict(batch)
        out[POSITION_KEY] = torch.where(drop.unsqueeze(-1), pos[:, :1], pos)
        return out

    def __repr__(self) -> str:
        return f"RandomPointDropout(max_ratio={self.max_ratio})"
