"""SchNet for QM9 with an optional ACE positional stream (``experiments.md`` §3.2, paper Eq. 3).

The base model is PyG's :class:`torch_geometric.nn.models.SchNet` (hidden 64, filters 64,
6 interactions, 50 Gaussians on [0, cutoff], cosine cutoff 10 Å, at most 32 neighbours,
shifted softplus, sum readout; no atomref, dipole or mean/std). PyG 2.8.1 routes its default
interaction graph to pyg-lib, which is not installable here (``ecosystem_notes.md`` §1.2), so the
model is given a pure-torch ``interaction_graph`` built on :func:`ace.models.graph.radius_graph`.

:class:`SchNetQM9` runs SchNet's modules in its own loop so that the ACE branches can be inserted
after each interaction block k (f^k = f^{eq,k} + γ_k f^{neq,k}, paper Eq. 3):

    h   ← h + Interaction_k(h, edges)                           (f_eq, E(3)-invariant)
    h   ← h + γ_k · h_pos^{k+1}                                   (ACE, relaxed mode only)

with a positional stream computed from the raw absolute coordinates, independent of h, with no
activation and no residual:

    h_pos^0 = Linear(3→64)(pos),   h_pos^{k+1} = Linear_k(64→64)(BatchNorm1d_k(h_pos^k)).

Each block's f_neq is one :class:`ace.core.homotopic.HomotopicBranch`: block 0 maps
``pos ↦ Linear(BN(Linear(pos)))``, block k ≥ 1 maps ``h_pos ↦ Linear(BN(h_pos))``; the branches
are chained with :meth:`HomotopicBranch.forward_stream`. 6 γ, initialised to 1. In equivariant
mode (or after :func:`ace.core.homotopic.prune`) the stream is not evaluated at all and the model
is exactly SchNet, hence E(3)-invariant.

Parameter counts with the defaults: 127,553 (vanilla, = PyG SchNet), 153,543 with
``ace_branches=True`` (f_neq: 256 + 6 × (128 + 4,160) + 6 γ = 25,990), 127,553 after pruning.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn.models import SchNet
from torch_geometric.utils import scatter

from ace.core.homotopic import HomotopicBranch
from ace.models.graph import radius_graph

__all__ = ["SchNetQM9", "RadiusInteractionGraph", "schnet_stream_branch"]

_READOUTS = {"add": "sum", "sum": "sum", "mean": "mean"}


class RadiusInteractionGraph(nn.Module):
    """Pure-torch replacement of PyG's ``RadiusInteractionGraph``: ``(pos, batch) ->
    (edge_index, edge_weight)`` with edges within ``cutoff`` (no self loops, at most
    ``max_num_neighbors`` nearest sources per target) and differentiable
    ``edge_weight = ‖pos[src] − pos[dst]‖``."""

    def __init__(self, cutoff: float = 10.0, max_num_neighbors: int = 32) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.max_num_neighbors = max_num_neighbors

    def forward(
        self, pos: torch.Tensor, batch: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        edge_index = radius_graph(pos, self.cutoff, batch, self.max_num_neighbors, loop=False)
        row, col = edge_index
        edge_weight = (pos.index_select(0, row) - pos.index_select(0, col)).norm(dim=-1)
        return edge_index, edge_weight

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, max_num_neighbors={self.max_num_neighbors}"


def schnet_stream_branch(hidden_channels: int, first: bool) -> HomotopicBranch:
    """Branch k of the positional stream: f_neq = [Linear(3→h)] → BatchNorm1d(h) → Linear(h→h)."""
    layers: list[nn.Module] = [nn.Linear(3, hidden_channels)] if first else []
    layers += [nn.BatchNorm1d(hidden_channels), nn.Linear(hidden_channels, hidden_channels)]
    return HomotopicBranch(nn.Sequential(*layers))


class SchNetQM9(nn.Module):
    """SchNet on a PyG ``Batch`` of molecules (``z``, ``pos``, ``batch``): ``[num_graphs, 1]``.

    Args:
        hidden_channels, num_filters, num_interactions, num_gaussians, cutoff,
        max_num_neighbors: PyG ``SchNet`` settings (``experiments.md`` §3.2).
        readout: ``"add"`` (sum, the default) or ``"mean"`` over each molecule's atoms.
        ace_branches: add the positional-stream ACE branches (one γ per interaction block).

    ``self.schnet`` is the PyG model itself (its own ``forward(z, pos, batch)`` works and, for a
    vanilla model, gives the same output as this module).
    """

    def __init__(
        self,
        hidden_channels: int = 64,
        num_filters: int = 64,
        num_interactions: int = 6,
        num_gaussians: int = 50,
        cutoff: float = 10.0,
        max_num_neighbors: int = 32,
        readout: str = "add",
        ace_branches: bool = False,
    ) -> None:
        super().__init__()
        if readout not in _READOUTS:
            raise ValueError(f"readout must be 'add' or 'mean', got {readout!r}")
        self.reduce = _READOUTS[readout]
        self.schnet = SchNet(
            hidden_channels=hidden_channels,
            num_filters=num_filters,
            num_interactions=num_interactions,
            num_gaussians=num_gaussians,
            cutoff=cutoff,
            interaction_graph=RadiusInteractionGraph(cutoff, max_num_neighbors),
            max_num_neighbors=max_num_neighbors,
            readout=readout,
            dipole=False,
            mean=None,
            std=None,
            atomref=None,
        )
        if ace_branches:
            self.branches = nn.ModuleList(
                schnet_stream_branch(hidden_channels, first=(k == 0))
                for k in range(num_interactions)
            )
        else:
            self.branches = None

    def forward(self, data) -> torch.Tensor:
        z, pos = data.z, data.pos
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = torch.zeros_like(z)
        num_graphs = getattr(data, "num_graphs", None)
        num_graphs = int(num_graphs) if num_graphs is not None else int(batch.max()) + 1
        net = self.schnet

        h = net.embedding(z)
        edge_index, edge_weight = net.interaction_graph(pos, batch)
        edge_attr = net.distance_expansion(edge_weight)
        stream: torch.Tensor | None = pos if self.branches is not None else None
        for k, interaction in enumerate(net.interactions):
            h = h + interaction(h, edge_index, edge_weight, edge_attr)
            if stream is not None:  # None: no branches, equivariant mode or pruned
                h, stream = self.branches[k].forward_stream(h, stream)
        h = net.lin1(h)
        h = net.act(h)
        h = net.lin2(h)
        return scatter(h, batch, dim=0, dim_size=num_graphs, reduce=self.reduce)
