"""Steerable E(3)-equivariant GNN (SEGNN), optionally with ACE homotopic branches.

``experiments.md`` §1.2 (N-body) and §2 (QM9); ``ace_algorithm.md`` §1 (homotopic layers).

    h ← TP(x, a)                                               (embedding, a: node attributes)
    per layer, for each edge j → i (sum aggregation at the target i):
        m_ij = TPg(TPg(cat(h_i, h_j, e_ij), Y_ij), Y_ij)          (Y_ij: edge attributes)
        u_i  = cat(h_i, Σ_j m_ij)
        v_i  = TPg₁(u_i, a_i)          [+ γ₀ · MLP₁(u_i)]
        w_i  = TP₂(v_i, a_i)           [+ γ₁ · MLP₂(v_i)]
        h_i ← h_i + w_i                (then optional instance/batch norm)
    node head : TP(TPg(h, a), a) → output irreps per node
    graph head: TP(TPg(h, a), a) → pool (mean/sum) → TP(TPg(·)) → output irreps per graph

TPg is a gated tensor product (SiLU on scalars, sigmoid gates), TP a plain one
(:mod:`ace.models.segnn.tensor_product`). The bracketed terms are the ACE branches, present with
``ace_branches=True``: f^i = f^{eq,i} + γ_i f^{neq,i} (paper Eq. 3) with γ_i = 1 at init, each
implemented by :class:`ace.core.homotopic.HomotopicBranch`. The MLPs act on the flattened irreps
vector (d = hidden dim): MLP₁ = Linear(2d→2d)–GELU–Linear(2d→d)–GELU–Linear(d→d),
MLP₂ = Linear(d→2d)–GELU–Linear(2d→d)–GELU–Linear(d→d), default torch init. The model knows
nothing about dual variables.

With ``relaxation=True`` the same two places instead get the "SEGNN Rel." baseline's relaxed maps
(:class:`ace.models.relaxation.RelaxedLinear`, ``experiments.md`` §6.3): v_i += γ W₁ u_i and
w_i += γ W₂ v_i in training, with bias-free W₁: 2d→d, W₂: d→d and one scheduled global γ; nothing
in evaluation.

Message passing is plain gather / ``index_add_`` (no PyG ``MessagePassing`` overhead). Hidden
features are stored channels-last per irrep slot (:mod:`ace.models.segnn.layout`); inputs,
outputs and the MLP branches use e3nn layout, so the function is exactly SEGNN's.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from ace.core.homotopic import HomotopicBranch
from ace.models.relaxation import RelaxedLinear
from ace.models.segnn.layout import (
    InE3nnLayout,
    channels_last_index,
    concat_channels,
    concat_channels_e3nn_index,
    e3nn_index,
    is_identity_layout,
)
from ace.models.segnn.norm import InstanceNorm, segment_mean
from ace.models.segnn.tensor_product import O3TensorProduct, O3TensorProductSwishGate, pair_layout

__all__ = ["SEGNN", "SEGNNLayer", "ace_update_mlp"]


def ace_update_mlp(d_in: int, d: int) -> nn.Sequential:
    """f_neq of a SEGNN node update: Linear(d_in→2d)–GELU–Linear(2d→d)–GELU–Linear(d→d)."""
    return nn.Sequential(
        nn.Linear(d_in, 2 * d), nn.GELU(), nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, d)
    )


def _flat(blocks: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Per-slot blocks ``[Z, 2l+1, mul]`` as flat ``[Z, (2l+1)·mul]`` views."""
    return tuple(b.reshape(b.shape[0], -1) for b in blocks)


def _active(branch: nn.Module | None) -> bool:
    """A HomotopicBranch in relaxed mode (PrunedBranch / equivariant mode: identity)."""
    return branch is not None and bool(getattr(branch, "relaxed", False))


class SEGNNLayer(nn.Module):
    """One SEGNN message-passing layer (messages, sum aggregation, node update, residual)."""

    def __init__(
        self,
        input_irreps,
        hidden_irreps,
        output_irreps,
        edge_attr_irreps,
        node_attr_irreps,
        norm: str | None = None,
        additional_message_irreps=None,
        ace_branches: bool = False,
        edge_attr_scalar0: float | None = None,
        node_attr_scalar0: float | None = None,
        relaxation: bool = False,
    ) -> None:
        super().__init__()
        if ace_branches and relaxation:
            raise ValueError("SEGNN: ace_branches and relaxation are alternatives; set one of them")
        input_irreps, hidden_irreps = o3.Irreps(input_irreps), o3.Irreps(hidden_irreps)
        output_irreps = o3.Irreps(output_irreps)
        ec, nc = edge_attr_scalar0, node_attr_scalar0
        if not (output_irreps == input_irreps == hidden_irreps):
            raise ValueError("SEGNNLayer needs input_irreps == hidden_irreps == output_irreps")
        self.hidden_irreps = hidden_irreps
        parts = [input_irreps, input_irreps]
        if additional_message_irreps is not None:
            parts.append(o3.Irreps(additional_message_irreps))
        message_input_irreps = sum(parts, o3.Irreps("")).simplify()
        update_input_irreps = (input_irreps + hidden_irreps).simplify()

        # messages see [x_i | x_j] concatenated slot by slot (+ extra scalars), update [x | Σm]
        self.message_layer_1 = O3TensorProductSwishGate(
            message_input_irreps, hidden_irreps, edge_attr_irreps, in1_parts=parts,
            in1_layout=pair_layout(hidden_irreps, 2, len(parts) - 2), in2_scalar0=ec,
        )
        # layers fed by a gated layer take its output slot by slot (no concatenation)
        slots = [o3.Irreps([s]) for s in hidden_irreps]
        self._slot_dims = [s.dim for s in slots]
        self.message_layer_2 = O3TensorProductSwishGate(
            hidden_irreps, hidden_irreps, edge_attr_irreps, in1_parts=slots, in2_scalar0=ec
        )
        self.update_layer_1 = O3TensorProductSwishGate(
            update_input_irreps, hidden_irreps, node_attr_irreps,
            in1_parts=[input_irreps, hidden_irreps], in1_layout=pair_layout(hidden_irreps),
            in2_scalar0=nc,
        )
        self.update_layer_2 = O3TensorProduct(
            hidden_irreps, output_irreps, node_attr_irreps, in1_parts=slots, in2_scalar0=nc
        )

        if ace_branches:
            d_u, d_h = update_input_irreps.dim, hidden_irreps.dim
            mlp1 = ace_update_mlp(d_u, d_h)
            mlp2 = ace_update_mlp(d_h, output_irreps.dim)
            # the MLPs see (and return) e3nn-layout vectors, as in the reference code
            to_cl = None if is_identity_layout(hidden_irreps) else channels_last_index(hidden_irreps)
            self.update_branch_1 = HomotopicBranch(
                InE3nnLayout(mlp1, concat_channels_e3nn_index(hidden_irreps, 2), to_cl))
            self.update_branch_2 = HomotopicBranch(
                InE3nnLayout.for_irreps(mlp2, hidden_irreps, output_irreps))
        elif relaxation:
            # u = cat(x, Σm) slot by slot (layout of concat_channels), v and w channels-last
            u_index = torch.argsort(concat_channels_e3nn_index(hidden_irreps, 2))
            self.update_branch_1 = RelaxedLinear(
                input_irreps + hidden_irreps, hidden_irreps, u_index,
                channels_last_index(hidden_irreps))
            self.update_branch_2 = RelaxedLinear(
                hidden_irreps, output_irreps, channels_last_index(hidden_irreps),
                channels_last_index(output_irreps))
        else:
            self.update_branch_1 = self.update_branch_2 = None

        self.norm = norm
        self.feature_norm = self.message_norm = None
        if norm == "batch":
            from e3nn.nn import BatchNorm

            h = hidden_irreps
            self.feature_norm = InE3nnLayout.for_irreps(BatchNorm(h), h, h)
            self.message_norm = InE3nnLayout.for_irreps(BatchNorm(h), h, h)
        elif norm == "instance":
            self.feature_norm = InstanceNorm(hidden_irreps, layout="channels_last")
        elif norm is not None:
            raise ValueError(f"norm must be None, 'batch' or 'instance', got {norm!r}")

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        node_attr: torch.Tensor,
        batch: torch.Tensor | None = None,
        additional_message_features: torch.Tensor | None = None,
        num_graphs: int | None = None,
    ) -> torch.Tensor:
        src, dst = edge_index[0], edge_index[1]
        h = self.hidden_irreps
        x_ij = concat_channels((x.index_select(0, dst), x.index_select(0, src)), h)
        inputs = (x_ij,) if additional_message_features is None else (
            x_ij, additional_message_features)
        m = _flat(self.message_layer_1.gate_blocks(inputs, edge_attr))
        m = self.message_layer_2(m, edge_attr)
        if self.message_norm is not None:
            m = self.message_norm(m)
        agg = m.new_zeros((x.shape[0], m.shape[1])).index_add_(0, dst, m)

        u = concat_channels((x, agg), h)  # u = cat(x, Σm), slot by slot
        v = _flat(self.update_layer_1.gate_blocks(u, node_attr))
        if _active(self.update_branch_1):  # skipped in equivariant mode / after pruning
            v = self.update_branch_1(torch.cat(v, dim=-1), u)
        if isinstance(v, torch.Tensor):
            w = self.update_layer_2(v.split(self._slot_dims, dim=-1), node_attr)
        else:
            w = self.update_layer_2(v, node_attr)
        if _active(self.update_branch_2):
            w = self.update_branch_2(w, v if isinstance(v, torch.Tensor) else torch.cat(v, dim=-1))
        x = x + w

        if self.feature_norm is not None:
            if self.norm == "batch":
                x = self.feature_norm(x)
            else:
                if batch is None:
                    batch = x.new_zeros(x.shape[0], dtype=torch.long)
                x = self.feature_norm(x, batch, num_graphs)
        return x


class SEGNN(nn.Module):
    """Generic SEGNN (node or graph task). ``forward`` takes precomputed graph tensors.

    Args:
        input_irreps, hidden_irreps, output_irreps, edge_attr_irreps, node_attr_irreps: irreps.
        num_layers: message-passing layers.
        norm: ``None``, ``"instance"`` (per-graph) or ``"batch"`` (e3nn BatchNorm).
        pool: ``"avg"`` or ``"sum"`` (graph task).
        task: ``"node"`` (per-node output) or ``"graph"`` (pooled output).
        additional_message_irreps: irreps of extra per-edge scalars fed to the messages.
        ace_branches: add the two ACE homotopic branches to every layer's node update
            (``experiments.md`` §1.3; 2 γ per layer).
        relaxation: add the two relaxed maps of "SEGNN Rel." there instead (``experiments.md``
            §6.3; one scheduled γ, no constraint).
        edge_attr_scalar0, node_attr_scalar0: optional promise that entry 0 of the edge / node
            attributes is always this constant (see ``O3TensorProduct(in2_scalar0=...)``); a
            pure speed hint, used by the N-body wrapper.
    """

    def __init__(
        self,
        input_irreps,
        hidden_irreps,
        output_irreps,
        edge_attr_irreps,
        node_attr_irreps,
        num_layers: int,
        norm: str | None = None,
        pool: str = "avg",
        task: str = "graph",
        additional_message_irreps=None,
        ace_branches: bool = False,
        edge_attr_scalar0: float | None = None,
        node_attr_scalar0: float | None = None,
        relaxation: bool = False,
    ) -> None:
        super().__init__()
        nc = node_attr_scalar0
        if task not in ("node", "graph"):
            raise ValueError(f"task must be 'node' or 'graph', got {task!r}")
        if pool not in ("avg", "sum"):
            raise ValueError(f"pool must be 'avg' or 'sum', got {pool!r}")
        self.task, self.pool = task, pool
        input_irreps, hidden_irreps = o3.Irreps(input_irreps), o3.Irreps(hidden_irreps)
        output_irreps = o3.Irreps(output_irreps)
        self.input_irreps, self.hidden_irreps, self.output_irreps = (
            input_irreps, hidden_irreps, output_irreps)

        self.embedding_layer = O3TensorProduct(input_irreps, hidden_irreps, node_attr_irreps,
                                               in2_scalar0=nc)
        self.layers = nn.ModuleList(
            SEGNNLayer(
                hidden_irreps, hidden_irreps, hidden_irreps, edge_attr_irreps, node_attr_irreps,
                norm=norm, additional_message_irreps=additional_message_irreps,
                ace_branches=ace_branches, edge_attr_scalar0=edge_attr_scalar0,
                node_attr_scalar0=node_attr_scalar0, relaxation=relaxation,
            )
            for _ in range(num_layers)
        )
        if task == "graph":
            pooled_irreps = (output_irreps * hidden_irreps.num_irreps).simplify().sort().irreps.simplify()
            self.pre_pool1 = O3TensorProductSwishGate(hidden_irreps, hidden_irreps, node_attr_irreps,
                                                      in2_scalar0=nc)
            self.pre_pool2 = O3TensorProduct(hidden_irreps, pooled_irreps, node_attr_irreps,
                                             in2_scalar0=nc)
            self.post_pool1 = O3TensorProductSwishGate(pooled_irreps, pooled_irreps)
            self.post_pool2 = O3TensorProduct(pooled_irreps, output_irreps)
        else:
            self.pre_pool1 = O3TensorProductSwishGate(hidden_irreps, hidden_irreps, node_attr_irreps,
                                                      in2_scalar0=nc)
            self.pre_pool2 = O3TensorProduct(hidden_irreps, output_irreps, node_attr_irreps,
                                             in2_scalar0=nc)
        # inputs/outputs are e3nn layout; internal features are channels-last (layout.py)
        self._to_cl: dict[str, bool] = {}
        for name, irreps in (("x", input_irreps), ("edge_attr", edge_attr_irreps),
                             ("node_attr", node_attr_irreps), ("extra", additional_message_irreps)):
            self._to_cl[name] = irreps is not None and not is_identity_layout(irreps)
            if self._to_cl[name]:
                self.register_buffer(f"_cl_index_{name}", channels_last_index(irreps), persistent=False)
        self._permute_out = not is_identity_layout(output_irreps)
        self.register_buffer("_out_index", e3nn_index(output_irreps), persistent=False)

    def _channels_last(self, name: str, t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None or not self._to_cl[name]:
            return t
        return t.index_select(-1, getattr(self, f"_cl_index_{name}"))

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        node_attr: torch.Tensor,
        batch: torch.Tensor | None = None,
        additional_message_features: torch.Tensor | None = None,
        num_graphs: int | None = None,
    ) -> torch.Tensor:
        """Node task: ``[N, output_dim]``; graph task: ``[num_graphs, output_dim]``.

        All inputs and the output are in e3nn layout (converted to channels-last inside).
        """
        x = self._channels_last("x", x)
        edge_attr = self._channels_last("edge_attr", edge_attr)
        node_attr = self._channels_last("node_attr", node_attr)
        additional_message_features = self._channels_last("extra", additional_message_features)
        x = self.embedding_layer(x, node_attr)
        for layer in self.layers:
            x = layer(x, edge_index, edge_attr, node_attr, batch, additional_message_features,
                      num_graphs)
        x = self.pre_pool1(x, node_attr)
        x = self.pre_pool2(x, node_attr)
        if self.task == "graph":
            if batch is None:
                batch = x.new_zeros(x.shape[0], dtype=torch.long)
            if num_graphs is None:
                num_graphs = int(batch.max()) + 1
            if self.pool == "avg":
                x = segment_mean(x, batch, num_graphs)
            else:
                x = x.new_zeros((num_graphs, x.shape[1])).index_add_(0, batch, x)
            x = self.post_pool1(x)
            x = self.post_pool2(x)
        if self._permute_out:
            x = x.index_select(-1, self._out_index)
        return x
