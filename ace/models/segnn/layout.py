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
    "concat_channels",
    "concat_channels_e3nn_index",
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


def concat_channels(tensors: tuple[torch.Tensor, ...], irreps) -> torch.Tensor:
    """Channels-last tensors with the same ``irreps``, concatenated *slot by slot* along the
    channel axis: slot k of the result is ``[Z, 2l+1, n·mul_k]`` = [t_0 | t_1 | …]."""
    irreps = o3.Irreps(irreps)
    Z = tensors[0].shape[0]
    muls = {mul for mul, _ in irreps}
    if len(muls) == 1:  # one cat over a [Z, Σ(2l+1), mul] view
        m = muls.pop()
        return torch.cat([t.view(Z, -1, m) for t in tensors], dim=2).view(Z, -1)
    pieces, offset = [], 0
    for mul, ir in irreps:
        size = mul * ir.dim
        pieces.append(torch.cat([t[:, offset : offset + size].view(Z, ir.dim, mul) for t in tensors], 2))
        offset += size
    return torch.cat([p.reshape(Z, -1) for p in pieces], dim=-1)


def concat_channels_e3nn_index(irreps, n: int) -> torch.Tensor:
    """``idx`` with ``cat(to_e3nn(t_0), …, to_e3nn(t_{n-1})) = concat_channels(ts)[..., idx]``."""
    irreps = o3.Irreps(irreps)
    D = irreps.dim
    idx = torch.empty(n * D, dtype=torch.long)
    offset = 0
    for mul, ir in irreps:
        d = ir.dim
        for p in range(n):
            u = torch.arange(mul).unsqueeze(1)
            c = torch.arange(d).unsqueeze(0)
            src = n * offset + c * n * mul + p * mul + u
            idx[p * D + offset + (u * d + c).reshape(-1)] = src.reshape(-1)
        offset += mul * d
    return idx


class InE3nnLayout(nn.Module):
    """Run ``module`` on e3nn-layout vectors inside a channels-last network.

    ``forward(x) = module(x[..., in_index])[..., out_index]`` where the indices map the
    network's layout to e3nn's and back (``None``: no permutation). The ACE MLP branches thus act
    on the flattened irreps vector exactly as in the reference code (``experiments.md`` §1.3).
    """

    def __init__(self, module: nn.Module, in_index: torch.Tensor | None,
                 out_index: torch.Tensor | None) -> None:
        super().__init__()
        self.module = module
        self.permute_in = in_index is not None
        self.permute_out = out_index is not None
        self.register_buffer("in_index", in_index, persistent=False)
        self.register_buffer("out_index", out_index, persistent=False)
        # For Linear … Linear stacks the permutations are folded into the outer weights
        # (fewer elements to move than permuting the activations; same function).
        mods = list(module) if isinstance(module, nn.Sequential) else []
        self._fold = bool(mods) and isinstance(mods[0], nn.Linear) and isinstance(mods[-1], nn.Linear)
        if self._fold and self.permute_in:
            # x_e3nn = x[:, in_index]  =>  W x_e3nn = W[:, argsort(in_index)] x
            self.register_buffer("in_inverse", torch.argsort(in_index), persistent=False)

    @classmethod
    def for_irreps(cls, module: nn.Module, irreps_in, irreps_out) -> "InE3nnLayout":
        return cls(
            module,
            None if is_identity_layout(irreps_in) else e3nn_index(irreps_in),
            None if is_identity_layout(irreps_out) else channels_last_index(irreps_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fold:
            if self.permute_in:
                x = x.index_select(-1, self.in_index)
            y = self.module(x)
            if self.permute_out:
                y = y.index_select(-1, self.out_index)
            return y
        mods = list(self.module)
        n = len(mods)
        for i, mod in enumerate(mods):
            if isinstance(mod, nn.Linear) and (i == 0 or i == n - 1):
                w, b = mod.weight, mod.bias
                if i == 0 and self.permute_in:
                    w = w.index_select(1, self.in_inverse)
                if i == n - 1 and self.permute_out:
                    w = w.index_select(0, self.out_index)
                    b = None if b is None else b.index_select(0, self.out_index)
                x = torch.nn.functional.linear(x, w, b)
            else:
                x = mod(x)
        return x
