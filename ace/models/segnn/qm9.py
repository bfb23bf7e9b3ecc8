"""SEGNN for QM9 (``experiments.md`` §2.1–§2.2; ACE branches as in §1.3, paper Eq. 3).

Per molecule, all derived features are rebuilt from the raw batch inside ``forward``:

* node input ``5x0e`` = one-hot of H, C, N, O, F (``x[:, :5]`` of PyG's QM9);
* edges: radius graph at ``radius`` = 2 Å, no self loops, at most 32 nearest sources per target
  (:func:`ace.models.graph.radius_graph`, ``edge_index = [source, target]``);
* edge attributes: SH_{l≤lmax_attr}(pos_src − pos_dst), ``normalize=True``, 'component'
  normalisation (so SH_0 ≡ 1);
* node attributes: mean over each node's incoming edges (target = ``edge_index[1]``) of the edge
  SH, then entry 0 set to 1 (a node without edges gets ``[1, 0, …, 0]``);
* extra message scalar ``1x0e``: the **squared** distance ‖pos_src − pos_dst‖² (SEGNN's code
  calls it ``edge_dist``);
* hidden irreps weight balanced against ``hidden_features`` scalars with SH-type irreps up to
  ``lmax_h`` (128, lmax 2, attributes l ≤ 3: 13 paths, 13·36² ≥ 128², ``36x0e+36x1o+36x2e``);
* ``num_layers`` = 7 message-passing layers, instance norm after each, mean pooling, output
  ``1x0e`` per molecule.

The model is E(3)-invariant (inputs enter only through relative positions). With
``ace_branches=True`` every layer's node update gets the two MLP branches of §1.3 (14 γ), which
see the flattened irreps vectors and break the invariance. Parameter counts with the defaults:
1,033,525 vanilla, 9,869,667 with ACE branches, 1,033,525 after pruning.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn
from torch_geometric.utils import scatter

from ace.models.graph import radius_graph
from ace.models.segnn.irreps import weight_balanced_irreps
from ace.models.segnn.segnn import SEGNN

__all__ = ["SEGNNQM9"]

NUM_ATOM_TYPES = 5  # one-hot H, C, N, O, F: the first five columns of PyG's QM9 ``x``


class SEGNNQM9(nn.Module):
    """SEGNN QM9 model: ``forward(batch) -> [num_graphs, 1]``.

    ``batch`` is a PyG ``Batch`` of molecules with ``x [N, ≥5]`` (columns 0–4 one-hot H/C/N/O/F),
    ``pos [N, 3]``, ``batch [N]`` (sorted) and ``num_graphs``. Targets are never standardised
    here.

    ``speed_hints`` passes SEGNN the structural facts SH_0 ≡ 1 ('component' normalisation) and
    node attribute 0 ≡ 1 (``edge_attr_scalar0`` / ``node_attr_scalar0``); the function is the
    same with or without them (tested).
    """

    def __init__(
        self,
        hidden_features: int = 128,
        lmax_h: int = 2,
        lmax_attr: int = 3,
        num_layers: int = 7,
        norm: str | None = "instance",
        pool: str = "avg",
        radius: float = 2.0,
        max_num_neighbors: int = 32,
        ace_branches: bool = False,
        speed_hints: bool = True,
    ) -> None:
        super().__init__()
        self.radius = radius
        self.max_num_neighbors = max_num_neighbors
        attr_irreps = o3.Irreps.spherical_harmonics(lmax_attr)
        self.hidden_irreps = weight_balanced_irreps(
            o3.Irreps(f"{hidden_features}x0e"), attr_irreps, sh=True, lmax=lmax_h
        )
        self.segnn = SEGNN(
            input_irreps=o3.Irreps(f"{NUM_ATOM_TYPES}x0e"),
            hidden_irreps=self.hidden_irreps,
            output_irreps=o3.Irreps("1x0e"),
            edge_attr_irreps=attr_irreps,
            node_attr_irreps=attr_irreps,
            num_layers=num_layers,
            norm=norm,
            pool=pool,
            task="graph",
            additional_message_irreps=o3.Irreps("1x0e"),
            ace_branches=ace_branches,
            # 'component' SH: Y_0 ≡ 1 exactly (e3nn computes it as ones); node attribute 0 := 1
            edge_attr_scalar0=1.0 if speed_hints else None,
            node_attr_scalar0=1.0 if speed_hints else None,
        )
        self.spherical_harmonics = o3.SphericalHarmonics(
            attr_irreps, normalize=True, normalization="component"
        )

    def graph_features(self, data) -> dict[str, torch.Tensor]:
        """Edges, edge/node attributes and the extra message scalar built from ``data``."""
        pos = data.pos
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
        edge_index = radius_graph(pos, self.radius, batch, self.max_num_neighbors, loop=False)
        src, dst = edge_index[0], edge_index[1]
        rel = pos.index_select(0, src) - pos.index_select(0, dst)
        edge_attr = self.spherical_harmonics(rel)
        dist2 = rel.pow(2).sum(-1, keepdim=True)  # squared distance, as in SEGNN's QM9 code
        node_attr = scatter(edge_attr, dst, dim=0, dim_size=pos.shape[0], reduce="mean")
        node_attr = torch.cat((torch.ones_like(node_attr[:, :1]), node_attr[:, 1:]), dim=-1)
        return {
            "edge_index": edge_index,
            "edge_attr": edge_attr,
            "node_attr": node_attr,
            "additional_message_features": dist2,
            "batch": batch,
        }

    def forward(self, data) -> torch.Tensor:
        g = self.graph_features(data)
        batch = g["batch"]
        num_graphs = getattr(data, "num_graphs", None)
        num_graphs = int(num_graphs) if num_graphs is not None else int(batch.max()) + 1
        x = data.x[:, :NUM_ATOM_TYPES].to(data.pos.dtype)
        return self.segnn(
            x, g["edge_index"], g["edge_attr"], g["node_attr"], batch,
            g["additional_message_features"], num_graphs,
        )
