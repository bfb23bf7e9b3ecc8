"""Feature layouts of irreps vectors.

e3nn stores a slot of ``mul`` copies of an irrep of dimension ``2l+1`` *multiplicity-major*:
``x[..., u·(2l+1) + m]``. Inside SEGNN we keep every slot *channels-last* (component-major):
``x[..., m·mul + u]``, i.e. a ``[..., 2l+1, mul]`` block. The two are a fixed column permutation
of each other (identical for scalars and for ``1x`` slots); channels-last makes every coupling of
the tensor products contiguous and lets each output slot come straight out of one matmul.
Public entry points (``SEGNN.forward``, the ACE MLP branches) see e3nn layout.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

__all__ = [
    "channels_last_index",
    "e3nn_index",
    "is_identity_layout",
    "to_channels_last",
    "to_e3nn",
    "InE3nnLayout",
]


def channels_last_index(irreps) -> torch.Tensor:
    """``idx`` with ``x_channels_last = x_e3nn[..., idx]``."""
    out, offset = [], 0
    for mul, ir in o3.Irreps(irreps):
        d = ir.dim
        out.append((offset + torch.arange(mul).unsqueeze(0) * d + torch.arange(d).unsqueeze(1)).reshape(-1))
        offset += mul * d
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def e3nn_index(irreps) -> torch.Tensor:
    """``idx`` with ``x_e3nn = x_channels_last[..., idx]``."""
    return torch.argsort(channels_last_index(irreps))


def is_identity_layout(irreps) -> bool:
    return all(mul == 1 or ir.l == 0 for mul, ir in o3.Irreps(irreps))


def to_channels_last(x: torch.Tensor, irreps) -> torch.Tensor:
    return x if is_identity_layout(irreps) else x[..., channels_last_index(irreps).to(x.device)]


def to_e3nn(x: torch.Tensor, irreps) -> torch.Tensor:
    return x if is_identity_layout(irreps) else x[..., e3nn_index(irreps).to(x.device)]


class InE3nnLayout(nn.Module):
    """Run ``module`` on e3nn-layout vectors inside a channels-last network.

    ``forward(x_cl) = to_channels_last(module(to_e3nn(x_cl)))``: the ACE MLP branches thus act
    on the flattened irreps vector exactly as in the reference code (``experiments.md`` §1.3).
    """

    def __init__(self, module: nn.Module, irreps_in, irreps_out) -> None:
        super().__init__()
        self.module = module
        self.permute_in = not is_identity_layout(irreps_in)
        self.permute_out = not is_identity_layout(irreps_out)
        self.register_buffer("in_index", e3nn_index(irreps_in), persistent=False)
        self.register_buffer("out_index", channels_last_index(irreps_out), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.permute_in:
            x = x.index_select(-1, self.in_index)
        y = self.module(x)
        if self.permute_out:
            y = y.index_select(-1, self.out_index)
        return y
