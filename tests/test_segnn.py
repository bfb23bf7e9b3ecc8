"""SEGNN × N-body (experiments.md §1): parameter counts, exactness against an e3nn reference,
O(3) equivariance of f_eq, non-equivariance of the relaxed ACE model, pruning, γ bookkeeping.

Everything runs in float64 on tiny batches.
"""

from __future__ import annotations

import math

import pytest
import torch
from e3nn import o3
from e3nn.nn import Gate

from ace.core.equivariance import GroupAction, equivariance_error, random_rotations
from ace.core.homotopic import (
    count_parameters,
    equivariant_mode,
    gammas,
    homotopic_branches,
    num_gammas,
    prune,
    relaxed_mode,
)
from ace.models import SEGNN, SEGNNNBody
from ace.models.segnn import InstanceNorm, O3TensorProduct, O3TensorProductSwishGate
from ace.models.segnn.irreps import fc_weight_numel, weight_balanced_irreps
from ace.models.segnn.layout import (
    concat_channels,
    concat_channels_e3nn_index,
    to_channels_last,
    to_e3nn,
)
from ace.models.segnn.tensor_product import pair_layout
from tests.conftest import float64, to_device

try:  # the data module's action, when present
    from ace.data.nbody import NBodyRotation as _Action
except ImportError:  # pragma: no cover - fallback, same semantics
    _Action = None


def make_batch(B: int = 3, seed: int = 0, dtype=torch.float64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "loc": torch.randn(B, 5, 3, generator=g, dtype=dtype) * 2,
        "vel": torch.randn(B, 5, 3, generator=g, dtype=dtype),
        "charges": (torch.randint(0, 2, (B, 5, 1), generator=g) * 2 - 1).to(dtype),
        "target": torch.randn(B, 5, 3, generator=g, dtype=dtype),
    }


def transform(batch, R: torch.Tensor, t: torch.Tensor | None = None):
    out = dict(batch)
    for k in ("loc", "vel", "target"):
        out[k] = batch[k] @ R.T
    if t is not None:
        out["loc"] = out["loc"] + t
    return out


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is fastest and immune to a busy 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def models():
    with float64():
        torch.manual_seed(0)
        vanilla = SEGNNNBody()
        ace = SEGNNNBody(ace_branches=True)
        # move γ away from 1 a little so that each branch matters differently
        with torch.no_grad():
            for i, b in enumerate(homotopic_branches(ace)):
                b.gamma.fill_(1.0 + 0.1 * i)
        for m in (vanilla, ace):
            m.eval()
    return vanilla, ace


def test_hidden_irreps_and_parameter_counts():
    assert str(weight_balanced_irreps("64x0e", o3.Irreps.spherical_harmonics(1), True, 1)) == "32x0e+32x1o"
    assert fc_weight_numel("4x0e+2x1o", "0e+1o", "3x0e+1x1o") == o3.FullyConnectedTensorProduct(
        "4x0e+2x1o", "0e+1o", "3x0e+1x1o").weight_numel
    vanilla, ace = SEGNNNBody(), SEGNNNBody(ace_branches=True)
    assert count_parameters(vanilla) == 147_424
    assert count_parameters(ace) == 937_960
    pruned = prune(ace)
    assert count_parameters(pruned) == 147_424
    assert num_gammas(pruned) == 0


def test_gammas_eight_in_layer_order():
    model = SEGNNNBody(ace_branches=True)
    assert num_gammas(model) == 8
    assert torch.equal(gammas(model).detach(), torch.ones(8))
    expected = [b for layer in model.segnn.layers for b in (layer.update_branch_1, layer.update_branch_2)]
    assert homotopic_branches(model) == expected


# ------------------------------------------------------------------------------------------
# exactness against e3nn
# ------------------------------------------------------------------------------------------
_E3NN_TP: dict[tuple, o3.FullyConnectedTensorProduct] = {}


def reference_tp(layer: O3TensorProduct, x1: torch.Tensor, x2: torch.Tensor | None) -> torch.Tensor:
    """SEGNN's O3TensorProduct on e3nn layout: e3nn FCTP, slice · sqrt(fan_in), + 0e bias."""
    key = (str(layer.irreps_in1), str(layer.irreps_in2), str(layer.irreps_tp_out), x1.dtype)
    if key not in _E3NN_TP:
        _E3NN_TP[key] = o3.FullyConnectedTensorProduct(
            layer.irreps_in1, layer.irreps_in2, layer.irreps_tp_out, normalization="component"
        ).to(x1.dtype)  # keyed by irreps (ids of freed layers get reused)
    tp = _E3NN_TP[key]
    with torch.no_grad():
        tp.weight.copy_(layer.weight)
    out = tp(x1, torch.ones_like(x1[:, :1]) if x2 is None else x2)
    blocks, ib = [], 0
    for io, (sl, (mul, ir)) in enumerate(zip(layer.irreps_tp_out.slices(), layer.irreps_tp_out)):
        blk = out[:, sl] / (1 / math.sqrt(layer.fan_in[io]))
        if ir.l == 0 and ir.p == 1:
            blk = blk + layer.bias[ib : ib + mul]
            ib += mul
        blocks.append(blk)
    return torch.cat(blocks, -1)


_GATES: dict[str, Gate] = {}


def reference_gated(layer: O3TensorProductSwishGate, x1, x2):
    pre = reference_tp(layer, x1, x2)
    if not layer.gated_muls:
        return torch.nn.functional.silu(pre)
    key = str(layer.irreps_out)
    if key not in _GATES:
        scal = o3.Irreps([layer.irreps_out[0]])
        gated = o3.Irreps(list(layer.irreps_out[1:]))
        _GATES[key] = Gate(scal, [torch.nn.SiLU()], f"{gated.num_irreps}x0e", [torch.sigmoid], gated)
    return _GATES[key](pre)


@pytest.mark.parametrize(
    "irreps_in1, irreps_out, irreps_in2",
    [
        ("32x0e+32x1o+32x0e+32x1o+2x0e", "64x0e+32x1o", "0e+1o"),  # N-body message
        ("2x1o+1x0e", "32x0e+32x1o", "0e+1o"),  # N-body embedding
        ("8x0e+1x1o", "1x1o", "0e+1o"),  # head, no bias
        ("6x0e+4x1o+3x2e+1x0e", "5x0e+4x1o+2x2e", "0e+1o+2e+3o"),  # QM9-like, general CG paths
        ("5x0e+3x1o+2x1e", "5x0e+2x1o+3x1e+2x2o", "2x0e+1o+2x1e"),  # attribute multiplicities
        ("16x0e", "8x0e", None),  # no second input: a linear layer
    ],
)
def test_tensor_product_equals_e3nn(irreps_in1, irreps_out, irreps_in2):
    with float64():
        torch.manual_seed(1)
        layer = O3TensorProduct(irreps_in1, irreps_out, irreps_in2)
        assert layer.weight.numel() == o3.FullyConnectedTensorProduct(
            irreps_in1, irreps_in2 or "1x0e", irreps_out).weight_numel
        x1 = layer.irreps_in1.randn(11, -1)
        x2 = layer.irreps_in2.randn(11, -1) if irreps_in2 else None
        ref = reference_tp(layer, x1, x2)
        x2_cl = None if x2 is None else to_channels_last(x2, layer.irreps_in2)
        ours = to_e3nn(layer(to_channels_last(x1, layer.irreps_in1), x2_cl), layer.irreps_out)
        assert (ours - ref).abs().max().item() < 1e-12 * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("hidden", ["4x0e+4x1o", "3x0e+2x1o+1x2e"])  # equal / unequal muls
def test_merged_input_layout_equals_e3nn(hidden):
    """Message-style input: [x_i | x_j] merged slot by slot, plus separate extra scalars."""
    with float64():
        torch.manual_seed(2)
        h = o3.Irreps(hidden)
        parts = [h, h, o3.Irreps("2x0e")]
        irreps_in1 = (h + h + parts[2]).simplify()
        layer = O3TensorProductSwishGate(irreps_in1, h, "0e+1o+2e", in1_parts=parts,
                                         in1_layout=pair_layout(h, 2, 1))
        xi, xj, e = h.randn(6, -1), h.randn(6, -1), torch.randn(6, 2)
        y = o3.Irreps("0e+1o+2e").randn(6, -1)
        ref = reference_gated(layer, torch.cat((xi, xj, e), -1), y)
        xij = concat_channels((to_channels_last(xi, h), to_channels_last(xj, h)), h)
        ours = to_e3nn(layer((xij, e), y), h)
        assert (ours - ref).abs().max().item() < 1e-12
        # the index that gives the e3nn concatenation back (used by the ACE MLP branch)
        assert torch.equal(xij[:, concat_channels_e3nn_index(h, 2)], torch.cat((xi, xj), -1))


def test_init_matches_segnn_bounds_and_rng():
    torch.manual_seed(3)
    layer = O3TensorProduct("8x0e+8x1o", "4x0e+4x1o", "0e+1o")
    torch.manual_seed(3)
    w = torch.randn(layer.weight_numel)  # e3nn's own draw, then SEGNN's per-instruction uniform_
    fan = {0: 16, 1: 16}
    off = 0
    for (i1, i2, io) in [(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0)]:
        n = 8 * 4
        w[off : off + n].uniform_(-1 / math.sqrt(fan[io]), 1 / math.sqrt(fan[io]))
        off += n
    bias = torch.zeros(4).uniform_(-1 / math.sqrt(16), 1 / math.sqrt(16))
    assert torch.equal(layer.weight.detach(), w)
    assert torch.equal(layer.bias.detach(), bias)


def test_gated_tensor_product_equals_e3nn_gate():
    with float64():
        for irreps_out, in2 in [("8x0e+8x1o+8x2e", "0e+1o+2e+3o"), ("8x0e", "0e+1o"), ("6x0e", None)]:
            layer = O3TensorProductSwishGate("8x0e+8x1o+8x2e", irreps_out, in2)
            x1 = layer.irreps_in1.randn(9, -1)
            x2 = layer.irreps_in2.randn(9, -1) if in2 else None
            ref = reference_gated(layer, x1, x2)
            x2_cl = None if x2 is None else to_channels_last(x2, layer.irreps_in2)
            ours = to_e3nn(layer(to_channels_last(x1, layer.irreps_in1), x2_cl), layer.irreps_out)
            assert (ours - ref).abs().max().item() < 1e-12


def reference_nbody(model: SEGNNNBody, batch, relaxed: bool) -> torch.Tensor:
    """Straight port of SEGNN's N-body pipeline on e3nn layout (no channels-last, no fusions)."""
    loc, vel, charges = batch["loc"], batch["vel"], batch["charges"]
    B, n, _ = loc.shape
    pos, v, q = loc.reshape(-1, 3), vel.reshape(-1, 3), charges.reshape(-1, 1)
    # fully connected graph, enumerated in a different order than the model's
    pairs = [(b * n + i, b * n + j) for b in range(B) for i in range(n) for j in range(n) if i != j]
    src = torch.tensor([p[0] for p in pairs])
    dst = torch.tensor([p[1] for p in pairs])
    from torch_geometric.utils import scatter

    rel = pos[src] - pos[dst]
    edge_attr = o3.spherical_harmonics([0, 1], rel, normalize=True, normalization="integral")
    node_attr = scatter(edge_attr, dst, dim=0, dim_size=B * n, reduce="mean") + o3.spherical_harmonics(
        [0, 1], v, normalize=True, normalization="integral")
    node_attr[:, 0] = 1.0
    x = torch.cat((pos, v, v.norm(dim=1, keepdim=True)), 1)
    extra = torch.cat((rel.norm(dim=1, keepdim=True), q[src] * q[dst]), 1)

    net = model.segnn
    x = reference_tp(net.embedding_layer, x, node_attr)
    for layer in net.layers:
        m = reference_gated(layer.message_layer_1, torch.cat((x[dst], x[src], extra), 1), edge_attr)
        m = reference_gated(layer.message_layer_2, m, edge_attr)
        agg = scatter(m, dst, dim=0, dim_size=B * n, reduce="sum")
        u = torch.cat((x, agg), 1)
        vv = reference_gated(layer.update_layer_1, u, node_attr)
        if relaxed and layer.update_branch_1 is not None:
            vv = vv + layer.update_branch_1.gamma * layer.update_branch_1.f_neq.module(u)
        w = reference_tp(layer.update_layer_2, vv, node_attr)
        if relaxed and layer.update_branch_2 is not None:
            w = w + layer.update_branch_2.gamma * layer.update_branch_2.f_neq.module(vv)
        x = x + w
    x = reference_gated(net.pre_pool1, x, node_attr)
    x = reference_tp(net.pre_pool2, x, node_attr)
    return loc + x.view(B, n, 3)


def test_model_equals_e3nn_reference(models):
    _, ace = models
    with float64(), torch.no_grad():
        torch.manual_seed(9)
        vanilla = SEGNNNBody(num_layers=1).eval()  # same code path as f_eq, fewer e3nn builds
        batch = make_batch()
        for model, relaxed in ((vanilla, False), (ace, True), (ace, False)):
            ref = reference_nbody(model, batch, relaxed)
            with (relaxed_mode if relaxed else equivariant_mode)(model):
                ours = model(batch)
            assert rel_err(ours - batch["loc"], ref - batch["loc"]) < 1e-12


# ------------------------------------------------------------------------------------------
# equivariance
# ------------------------------------------------------------------------------------------
def _group_elements(device="cpu"):
    rots = list(random_rotations(3, torch.Generator().manual_seed(7), dtype=torch.float64))
    mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    return [g.to(device) for g in rots + [-torch.eye(3, dtype=torch.float64), mirror,
                                          mirror @ rots[0]]]


def _max_equivariance_error(model, batch) -> float:
    out = model(batch)
    return max(rel_err(model(transform(batch, R)), out @ R.T)
               for R in _group_elements(out.device))


def test_f_eq_is_o3_equivariant(models, device):
    vanilla, ace = (to_device(m, device) for m in models)
    with float64(), torch.no_grad():
        batch = to_device(make_batch(), device)
        assert _max_equivariance_error(vanilla, batch) < 1e-10
        with equivariant_mode(ace):
            assert _max_equivariance_error(ace, batch) < 1e-10


def test_relaxed_model_is_not_equivariant(models):
    _, ace = models
    with float64(), torch.no_grad(), relaxed_mode(ace):
        batch = make_batch()
        out = ace(batch)
        for R in _group_elements():
            assert rel_err(ace(transform(batch, R)), out @ R.T) > 1e-3


def test_pruned_equals_equivariant_mode(models):
    _, ace = models
    pruned = prune(ace)
    with float64(), torch.no_grad():
        batch = make_batch(seed=5)
        with equivariant_mode(ace):
            eq = ace(batch)
        with relaxed_mode(ace):
            rel = ace(batch)
        out = pruned(batch)
    assert torch.equal(out, eq)
    assert not torch.allclose(out, rel)


class _LocalNBodyRotation(GroupAction):
    def batch_size(self, batch):
        return batch["loc"].shape[0]

    def reference_tensor(self, batch):
        return batch["loc"]

    def act_on_batch(self, batch, g):
        out = dict(batch)
        for k in ("loc", "vel", "target"):
            out[k] = torch.einsum("bij,bnj->bni", g, batch[k])
        return out

    def act_on_output(self, output, g, batch):
        return torch.einsum("bij,bnj->bni", g, output)


def test_equivariance_error_metric(models, device):
    ace = to_device(models[1], device)  # CPU generators below: rotations drawn on the CPU
    action = _Action() if _Action is not None else _LocalNBodyRotation()
    with float64():
        batch = to_device(make_batch(B=4, seed=2), device)
        ace.train()
        with equivariant_mode(ace):
            eq = equivariance_error(ace, batch, action, num_samples=3,
                                    generator=torch.Generator().manual_seed(0))
        assert ace.training  # restored
        with relaxed_mode(ace):
            rel = equivariance_error(ace, batch, action, num_samples=3,
                                     generator=torch.Generator().manual_seed(0))
        ace.eval()
    assert eq["mean"].item() < 1e-11
    assert rel["mean"].item() > 1e-3


def test_centred_inputs_translation_equivariant():
    with float64(), torch.no_grad():
        torch.manual_seed(4)
        model = SEGNNNBody(centre_inputs=True, num_layers=2).eval()
        batch = make_batch()
        t = torch.tensor([3.0, -1.5, 0.7])
        out = model(batch)
        shifted = model(transform(batch, torch.eye(3, dtype=torch.float64), t))
        assert rel_err(shifted - t, out) < 1e-12
        R = _group_elements()[0]
        assert rel_err(model(transform(batch, R)), out @ R.T) < 1e-10
        # absolute positions (the default) are not translation invariant
        absolute = SEGNNNBody(num_layers=2).eval()
        assert rel_err(absolute(transform(batch, torch.eye(3, dtype=torch.float64), t)) - t,
                       absolute(batch)) > 1e-6


# ------------------------------------------------------------------------------------------
# graph task (reused by QM9) and instance norm
# ------------------------------------------------------------------------------------------
def test_instance_norm_layouts_agree():
    with float64():
        irreps = o3.Irreps("4x0e+3x1o+2x2e")
        x = irreps.randn(7, -1)
        batch = torch.tensor([0, 0, 0, 1, 1, 2, 2])
        a = InstanceNorm(irreps)
        b = InstanceNorm(irreps, layout="channels_last")
        with torch.no_grad():
            for n in (a, b):
                n.weight.uniform_(0.5, 1.5)
                n.bias.uniform_(-1, 1)
            b.load_state_dict(a.state_dict())
        ref = a(x, batch)
        ours = to_e3nn(b(to_channels_last(x, irreps), batch), irreps)
        assert (ref - ours).abs().max().item() < 1e-13


def test_graph_task_qm9_configuration_invariant():
    attr = o3.Irreps.spherical_harmonics(3)
    hidden = weight_balanced_irreps("128x0e", attr, True, 2)
    assert str(hidden) == "36x0e+36x1o+36x2e"
    with float64():
        torch.manual_seed(0)
        model = SEGNN("5x0e", hidden, "1x0e", attr, attr, num_layers=7, norm="instance",
                      pool="avg", task="graph", additional_message_irreps="1x0e").eval()
        assert count_parameters(model) == 1_033_525  # experiments.md §2.2
        # two small molecules, fully connected within each
        counts = [4, 3]
        batch = torch.repeat_interleave(torch.arange(2), torch.tensor(counts))
        pos = torch.randn(7, 3)
        x = torch.nn.functional.one_hot(torch.randint(0, 5, (7,)), 5).double()
        ei = [(i, j) for i in range(7) for j in range(7) if i != j and batch[i] == batch[j]]
        src, dst = torch.tensor(ei).T

        def run(p):
            rel = p[src] - p[dst]
            sh = o3.spherical_harmonics(attr, rel, normalize=True, normalization="component")
            node = torch.zeros(7, attr.dim).index_add_(0, dst, sh) / torch.bincount(dst, minlength=7)[:, None]
            node[:, 0] = 1.0
            d2 = rel.pow(2).sum(-1, keepdim=True)
            return model(x, torch.stack((src, dst)), sh, node, batch, d2, 2)

        with torch.no_grad():
            out = run(pos)
            assert out.shape == (2, 1)
            for R in _group_elements()[:2] + [-torch.eye(3, dtype=torch.float64)]:
                assert rel_err(run(pos @ R.T), out) < 1e-10


def test_dynamo_traces_without_graph_breaks():
    """torch.compile support: one graph, no breaks, in both homotopic modes (no inductor run)."""
    model = SEGNNNBody(ace_branches=True, num_layers=1)
    batch = make_batch(B=2, dtype=torch.float32)
    try:
        for mode in (relaxed_mode, equivariant_mode):
            torch._dynamo.reset()
            with mode(model):
                explanation = torch._dynamo.explain(model)(batch)
            assert explanation.graph_break_count == 0, explanation.break_reasons
            assert explanation.graph_count == 1
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("norm", ["batch", "instance", None])
def test_graph_task_norms_without_extra_features(norm):
    """Small graph-task SEGNN (sum pooling, vector output, no extra message scalars)."""
    attr = o3.Irreps.spherical_harmonics(2)
    with float64():
        torch.manual_seed(1)
        model = SEGNN("3x0e+2x1o", "4x0e+4x1o+4x2e", "2x0e+2x1o", attr, attr, num_layers=2,
                      norm=norm, pool="sum", task="graph").train()
        batch = torch.tensor([0, 0, 0, 1, 1, 1])
        ei = [(i, j) for i in range(6) for j in range(6) if i != j and batch[i] == batch[j]]
        src, dst = torch.tensor(ei).T
        pos, feats, vec = torch.randn(6, 3), torch.randn(6, 3), torch.randn(6, 2, 3)

        def run(R):
            p = pos @ R.T
            x = torch.cat((feats, (vec @ R.T).reshape(6, 6)), -1)  # e3nn layout: u-major
            sh = o3.spherical_harmonics(attr, p[src] - p[dst], normalize=True)
            node = torch.zeros(6, attr.dim).index_add_(0, dst, sh) / 2
            return model(x, torch.stack((src, dst)), sh, node, batch, None, 2)

        out = run(torch.eye(3, dtype=torch.float64))
        assert out.shape == (2, 8)
        for R in _group_elements()[:2] + [-torch.eye(3, dtype=torch.float64)]:
            expected = torch.cat((out[:, :2], (out[:, 2:].reshape(2, 2, 3) @ R.T).reshape(2, 6)), -1)
            assert rel_err(run(R), expected) < 1e-10
