"""Group actions on data and the equivariance-error metric (``ace_algorithm.md`` §7).

    E_eq(x) = E_{g ~ Haar(SO(3))} ‖ρ_Y(g) f(x) − f(ρ_X(g) x)‖      (per-node L2 norm, not squared)

A :class:`GroupAction` says how one group element per sample acts on a data batch (ρ_X: every
vector-valued field — inputs *and* targets, so the same action serves SO(3) augmentation) and on
model outputs (ρ_Y). Models rebuild derived features (edge harmonics, distances, norms) from the
raw inputs inside ``forward``, so acting on the raw fields is enough.

Devices: group elements are drawn on the *generator's* device (the CPU for the CPU generators the
LightningModule seeds, and for ``generator=None``), whatever torch's default device, and only then
moved to the batch's device and dtype (:func:`draw_device`). A run therefore draws the same
rotations on a CPU and on a GPU, and a CPU generator never meets a CUDA tensor.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["GroupAction", "draw_device", "random_rotations", "equivariance_error"]


def draw_device(generator: torch.Generator | None) -> torch.device:
    """Where random draws from ``generator`` are made: its own device, the CPU for None (torch's
    global CPU stream, never the default device's)."""
    return torch.device("cpu") if generator is None else generator.device


def random_rotations(
    n: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n`` Haar-uniform rotation matrices [n, 3, 3] from normalised Gaussian quaternions,
    drawn on :func:`draw_device` (``generator``'s) in float64, returned on ``device``."""
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64, device=draw_device(generator))
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    rot = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=1,
    ).view(n, 3, 3)
    return rot.to(dtype=dtype, device=device)


class GroupAction:
    """How one group element per sample acts on a batch and on the model's output."""

    def batch_size(self, batch: Any) -> int:
        raise NotImplementedError

    def sample(self, batch: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        """One group element per sample (default: Haar-uniform rotations [B, 3, 3])."""
        ref = self.reference_tensor(batch)
        return random_rotations(self.batch_size(batch), generator, ref.dtype, ref.device)

    def reference_tensor(self, batch: Any) -> torch.Tensor:
        """A floating tensor of the batch, for dtype and device."""
        raise NotImplementedError

    def act_on_batch(self, batch: Any, g: torch.Tensor) -> Any:
        """ρ_X(g): a *new* batch with every vector-valued field (inputs and targets) transformed."""
        raise NotImplementedError

    def act_on_output(self, output: torch.Tensor, g: torch.Tensor, batch: Any) -> torch.Tensor:
        """ρ_Y(g) applied to the model output for ``batch``."""
        raise NotImplementedError

    def compared(self, output: torch.Tensor) -> torch.Tensor:
        """The part of a (transformed) model output that :func:`equivariance_error` compares:
        all of it by default; e.g. MoCap's paper protocol compares the last predicted frame."""
        return output


@torch.no_grad()
def equivariance_error(
    model: nn.Module,
    batch: Any,
    action: GroupAction,
    num_samples: int = 5,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Mean per-node ‖ρ_Y(g) f(x) − f(ρ_X(g) x)‖ over nodes, samples and ``num_samples`` draws
    (of the part of the output that ``action.compared`` keeps: by default all of it).

    The model is evaluated in eval mode in whatever homotopic mode it is in (wrap the call in
    :func:`ace.core.homotopic.relaxed_mode` or ``equivariant_mode``); train mode is restored.
    Also returns the min and max absolute componentwise difference (as the official N-body code).
    """
    was_training = model.training
    model.eval()
    try:
        out = model(batch)
        norms, abs_min, abs_max = [], [], []
        for _ in range(num_samples):
            g = action.sample(batch, generator)
            diff = (action.compared(action.act_on_output(out, g, batch))
                    - action.compared(model(action.act_on_batch(batch, g))))
            norms.append(diff.norm(dim=-1).flatten())
            abs_min.append(diff.abs().min())
            abs_max.append(diff.abs().max())
    finally:
        model.train(was_training)
    return {
        "mean": torch.cat(norms).mean(),
        "min": torch.stack(abs_min).min(),
        "max": torch.stack(abs_max).max(),
    }
