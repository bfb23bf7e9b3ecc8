"""SEGNN for the charged N-body task (``experiments.md`` §1.1–§1.3).

Per system of n particles (fully connected graph, n(n−1) directed edges, no self loops):

* node input ``2x1o+1x0e`` = [position, velocity, ‖velocity‖]; positions are absolute (the
  model is then rotation/reflection-equivariant about the origin). ``centre_inputs=True`` instead
  subtracts each system's centroid (making the predicted displacement translation invariant);
* edge attributes: SH_{l≤lmax_attr}(x_src − x_dst), ``normalize=True``, 'integral' normalisation;
* node attributes: mean over incoming edges of the edge SH, plus SH(velocity); entry 0 set to 1;
* extra message scalars ``2x0e`` = [‖x_i − x_j‖, q_i q_j];
* output ``1x1o`` per node, a displacement; the prediction is ``loc + output``.

Hidden irreps are weight balanced (``hidden_features=64``, lmax 1 → ``32x0e+32x1o``). With the
defaults the model has 147,424 parameters, 937,960 with ``ace_branches=True`` (8 γ), and 344,032
with ``relaxation=True`` (the "SEGNN Rel." baseline, ``experiments.md`` §6.3).
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import nn

from ace.models.caches import DeviceCaches
from ace.models.segnn.irreps import balanced_irreps, weight_balanced_irreps
from ace.models.segnn.segnn import SEGNN

__all__ = ["SEGNNNBody", "fully_connected_edge_index"]


def fully_connected_edge_index(
    num_graphs: int, nodes_per_graph: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """``[2, B·n·(n−1)]`` (source, target) edges, grouped by target node, no self loops."""
    n = nodes_per_graph
    dst = torch.arange(n, device=device).repeat_interleave(n - 1)
    k = torch.arange(n - 1, device=device).repeat(n)
    src = torch.where(k < dst, k, k + 1)  # row i: all j != i, ascending
    offset = (torch.arange(num_graphs, device=device) * n).repeat_interleave(n * (n - 1))
    return torch.stack((src.repeat(num_graphs) + offset, dst.repeat(num_graphs) + offset))


class SEGNNNBody(DeviceCaches):
    """SEGNN N-body model: ``forward(batch) -> predicted positions [B, n, 3]``.

    ``batch`` is a dict with ``loc [B,n,3]``, ``vel [B,n,3]``, ``charges [B,n,1]`` (other keys,
    e.g. ``target``, are ignored).
    """

    _device_caches = ("_graph_cache",)  # see DeviceCaches

    def __init__(
        self,
        hidden_features: int = 64,
        lmax_h: int = 1,
        lmax_attr: int = 1,
        num_layers: int = 4,
        norm: str | None = None,
        ace_branches: bool = False,
        centre_inputs: bool = False,
        subspace_type: str = "weightbalanced",
        relaxation: bool = False,
    ) -> None:
        super().__init__()
        self.centre_inputs = centre_inputs
        attr_irreps = o3.Irreps.spherical_harmonics(lmax_attr)
        if subspace_type == "weightbalanced":
            hidden_irreps = weight_balanced_irreps(
                o3.Irreps(f"{hidden_features}x0e"), attr_irreps, sh=True, lmax=lmax_h
            )
        elif subspace_type == "balanced":
            hidden_irreps = balanced_irreps(lmax_h, hidden_features, True)
        else:
            raise ValueError(f"unknown subspace_type {subspace_type!r}")
        self.hidden_irreps = hidden_irreps
        self.segnn = SEGNN(
            input_irreps=o3.Irreps("2x1o+1x0e"),
            hidden_irreps=hidden_irreps,
            output_irreps=o3.Irreps("1x1o"),
            edge_attr_irreps=attr_irreps,
            node_attr_irreps=attr_irreps,
            num_layers=num_layers,
            norm=norm,
            task="node",
            additional_message_irreps=o3.Irreps("2x0e"),
            ace_branches=ace_branches,
            relaxation=relaxation,
            # structural facts of the inputs built below (speed hints, same function):
            # SH_0 of any vector is 1/sqrt(4π) ('integral'), and node attribute 0 is set to 1.
            edge_attr_scalar0=1.0 / math.sqrt(4 * math.pi),
            node_attr_scalar0=1.0,
        )
        self.spherical_harmonics = o3.SphericalHarmonics(
            attr_irreps, normalize=True, normalization="integral"
        )
        self._graph_cache: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.compiler.disable
    def _graph(self, B: int, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (B, n, str(device))
        if key not in self._graph_cache:
            edge_index = fully_connected_edge_index(B, n, device)
            node_graph = torch.arange(B, device=device).repeat_interleave(n)
            self._graph_cache[key] = (edge_index, node_graph)
        return self._graph_cache[key]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loc, vel, charges = batch["loc"], batch["vel"], batch["charges"]
        B, n, _ = loc.shape
        edge_index, node_graph = self._graph(B, n, loc.device)
        src, dst = edge_index[0], edge_index[1]
        pos, v, q = loc.reshape(B * n, 3), vel.reshape(B * n, 3), charges.reshape(B * n, 1)

        rel = pos.index_select(0, src) - pos.index_select(0, dst)
        edge_attr = self.spherical_harmonics(rel)
        edge_dist = rel.pow(2).sum(-1, keepdim=True).sqrt()
        extra = torch.cat((edge_dist, q.index_select(0, src) * q.index_select(0, dst)), dim=-1)

        # mean of incoming edge SH (every node has n − 1 incoming edges) + SH(v); entry 0 := 1
        incoming = edge_attr.new_zeros((B * n, edge_attr.shape[1])).index_add_(0, dst, edge_attr)
        node_attr = incoming / max(n - 1, 1) + self.spherical_harmonics(v)
        node_attr = torch.cat((torch.ones_like(node_attr[:, :1]), node_attr[:, 1:]), dim=-1)

        x_pos = loc - loc.mean(dim=1, keepdim=True) if self.centre_inputs else loc
        x = torch.cat(
            (x_pos.reshape(B * n, 3), v, v.pow(2).sum(-1, keepdim=True).sqrt()), dim=-1
        )
        out = self.segnn(x, edge_index, edge_attr, node_attr, node_graph, extra, B)
        return loc + out.view(B, n, 3)
