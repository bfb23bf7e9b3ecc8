"""Per-graph instance normalisation of steerable features (SEGNN's ``InstanceNorm``).

For each irrep slot (``mul`` copies of an irrep of dimension ``2l+1``) and each graph:

* scalars (l = 0) are centred by their per-graph mean;
* every copy is divided by ``sqrt(mean_graph(‖·‖²/(2l+1)) + eps)`` ('component' normalisation,
  'mean' reduction over the graph's nodes);
* affine: each copy is multiplied by a learnable weight and scalars (dimension 1) get a bias.

This is O(3)-equivariant (norms are invariant) and is used by SEGNN on QM9 (``experiments.md``
§2.2, "instance norm after each layer"); N-body uses no normalisation.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

__all__ = ["InstanceNorm", "segment_mean"]


def segment_mean(x: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Mean of the rows of ``x`` per segment ``index`` (empty segments give 0)."""
    total = x.new_zeros((num_segments,) + x.shape[1:]).index_add_(0, index, x)
    count = torch.bincount(index, minlength=num_segments).clamp_(min=1).to(x.dtype)
    return total / count.view((-1,) + (1,) * (x.dim() - 1))


class InstanceNorm(nn.Module):
    def __init__(self, irreps, eps: float = 1e-5, affine: bool = True, reduce: str = "mean",
                 normalization: str = "component", layout: str = "e3nn") -> None:
        super().__init__()
        if layout not in ("e3nn", "channels_last"):
            raise ValueError(f"layout must be 'e3nn' or 'channels_last', got {layout!r}")
        self.channels_last = layout == "channels_last"
        self.irreps = o3.Irreps(irreps)
        self.eps = eps
        self.affine = affine
        if reduce not in ("mean", "max"):
            raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
        if normalization not in ("norm", "component"):
            raise ValueError(f"normalization must be 'norm' or 'component', got {normalization!r}")
        self.reduce, self.normalization = reduce, normalization
        num_scalar = sum(mul for mul, ir in self.irreps if ir.l == 0 and ir.p == 1)
        if affine:
            self.weight = nn.Parameter(torch.ones(self.irreps.num_irreps))
            self.bias = nn.Parameter(torch.zeros(num_scalar))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor, batch: torch.Tensor, num_graphs: int | None = None) -> torch.Tensor:
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1
        fields, ix, iw, ib = [], 0, 0, 0
        for mul, ir in self.irreps:
            d = ir.dim
            # [N, mul, d] view of the slot, whatever the layout
            field = x[:, ix : ix + mul * d]
            if self.channels_last:
                field = field.reshape(-1, d, mul).transpose(1, 2)
            else:
                field = field.reshape(-1, mul, d)
            ix += mul * d
            if ir.l == 0:
                field = field - segment_mean(field, batch, num_graphs)[batch]
            sq = field.pow(2)
            norm = sq.sum(-1) if self.normalization == "norm" else sq.mean(-1)  # [N, mul]
            if self.reduce == "mean":
                norm = segment_mean(norm, batch, num_graphs)
            else:
                norm = norm.new_full((num_graphs, mul), float("-inf")).scatter_reduce(
                    0, batch.unsqueeze(1).expand_as(norm), norm, reduce="amax", include_self=True
                )
            norm = (norm + self.eps).pow(-0.5)
            if self.affine:
                norm = norm * self.weight[None, iw : iw + mul]
                iw += mul
            field = field * norm[batch].unsqueeze(-1)
            if self.affine and d == 1 and ir.p == 1:
                field = field + self.bias[ib : ib + mul].view(mul, 1)
                ib += mul
            fields.append(field.transpose(1, 2).reshape(-1, mul * d) if self.channels_last
                          else field.reshape(-1, mul * d))
        return torch.cat(fields, dim=-1)

    def extra_repr(self) -> str:
        return f"{self.irreps}, eps={self.eps}, affine={self.affine}"
