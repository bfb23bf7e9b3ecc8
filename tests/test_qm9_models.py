"""SchNet × QM9 and SEGNN × QM9 models (experiments.md §2.2, §3.2): parameter counts, γ
bookkeeping, E(3) invariance of f_eq, non-invariance of the relaxed ACE model, pruning, agreement
with PyG's SchNet, batching independence and the SEGNN graph features.

Molecules are small random self-avoiding walks (1.0–1.5 Å steps) so that a 2 Å radius graph has
edges; everything that checks invariance runs in float64.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Batch, Data

from ace.core.equivariance import random_rotations
from ace.core.homotopic import (
    count_parameters,
    equivariant_mode,
    gammas,
    homotopic_branches,
    num_gammas,
    prune,
    relaxed_mode,
)
from ace.models import SchNetQM9, SEGNNQM9
from ace.models.graph import radius_graph
from tests.conftest import float64

ATOMIC_NUMBERS = torch.tensor([1, 6, 7, 8, 9])  # H, C, N, O, F (one-hot columns 0–4 of x)
SIZES = (3, 5, 9, 7)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is fastest and immune to a busy 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def random_molecule(n: int, g: torch.Generator, dtype=torch.float64) -> Data:
    """A self-avoiding random walk of ``n`` atoms (steps 1.0–1.5 Å, atoms ≥ 0.9 Å apart)."""
    pos = [torch.zeros(3, dtype=torch.float64)]
    while len(pos) < n:
        step = torch.randn(3, generator=g, dtype=torch.float64)
        step = step / step.norm() * (1.0 + 0.5 * torch.rand((), generator=g, dtype=torch.float64))
        p = pos[-1] + step
        if min(float((p - q).norm()) for q in pos) >= 0.9:
            pos.append(p)
    types = torch.randint(0, 5, (n,), generator=g)
    x = torch.zeros(n, 11, dtype=dtype)
    x[torch.arange(n), types] = 1.0
    x[:, 5] = ATOMIC_NUMBERS[types].to(dtype)  # PyG QM9 column 5: atomic number
    offset = 3 * torch.randn(3, generator=g, dtype=torch.float64)  # molecules not at the origin
    return Data(z=ATOMIC_NUMBERS[types], x=x, pos=(torch.stack(pos) + offset).to(dtype))


def make_molecules(sizes=SIZES, seed: int = 0, dtype=torch.float64) -> list[Data]:
    g = torch.Generator().manual_seed(seed)
    return [random_molecule(n, g, dtype) for n in sizes]


def transform(batch: Batch, R: torch.Tensor, t: torch.Tensor) -> Batch:
    """Apply ``pos ↦ R_b pos + t_b`` to every molecule b (R: [B, 3, 3], t: [B, 3])."""
    out = batch.clone()
    Rn, tn = R[batch.batch], t[batch.batch]
    out.pos = torch.einsum("nij,nj->ni", Rn, batch.pos) + tn
    return out


def group_elements(B: int, seed: int = 1):
    """(name, R, t) for random rotations, a reflection (det −1) and translations."""
    g = torch.Generator().manual_seed(seed)
    R = random_rotations(B, generator=g, dtype=torch.float64)
    reflect = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    t = 5 * torch.randn(B, 3, generator=g, dtype=torch.float64)
    zeros = torch.zeros(B, 3, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64).expand(B, 3, 3)
    return [
        ("rotation", R, zeros),
        ("reflection", R @ reflect, zeros),
        ("translation", eye, t),
        ("rotation+reflection+translation", R @ reflect, t),
    ]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


@pytest.fixture(scope="module")
def batch() -> Batch:
    return Batch.from_data_list(make_molecules())


def _build(cls, seed: int = 0, **kwargs):
    """A float64 model with γ_i = 1 + 0.1 i.

    Built under a float64 default dtype: SEGNN's Clebsch–Gordan buffers are computed in the
    default dtype, and ``.double()`` on a float32-built SEGNN leaves ~1e-9 relative
    equivariance errors (float32-rounded coefficients).
    """
    torch.manual_seed(seed)
    with float64():
        model = cls(**kwargs).double()
    for i, b in enumerate(homotopic_branches(model)):  # distinct γ, away from 1
        with torch.no_grad():
            b.gamma.fill_(1.0 + 0.1 * i)
    return model.eval()


@pytest.fixture(scope="module")
def schnet_models():
    return _build(SchNetQM9), _build(SchNetQM9, ace_branches=True)


@pytest.fixture(scope="module")
def segnn_models():
    return _build(SEGNNQM9), _build(SEGNNQM9, ace_branches=True)


# ----------------------------------------------------------------------------- parameter counts


def test_schnet_parameter_counts(schnet_models):
    vanilla, ace = schnet_models
    assert count_parameters(vanilla) == 127_553
    assert count_parameters(ace) == 153_543
    assert count_parameters(prune(ace)) == 127_553
    assert num_gammas(vanilla) == 0 and num_gammas(ace) == 6
    expected = torch.tensor([1.0 + 0.1 * i for i in range(6)], dtype=torch.float64)
    assert torch.equal(gammas(ace), expected)
    # f_neq of block 0: Linear(3,64)-BN-Linear; later blocks: BN-Linear (no activation)
    f0, f1 = ace.branches[0].f_neq, ace.branches[1].f_neq
    assert [type(m).__name__ for m in f0] == ["Linear", "BatchNorm1d", "Linear"]
    assert [type(m).__name__ for m in f1] == ["BatchNorm1d", "Linear"]


def test_segnn_parameter_counts(segnn_models):
    vanilla, ace = segnn_models
    assert str(vanilla.hidden_irreps) == "36x0e+36x1o+36x2e"
    assert count_parameters(vanilla) == 1_033_525
    assert count_parameters(ace) == 9_869_667
    assert count_parameters(prune(ace)) == 1_033_525
    assert num_gammas(vanilla) == 0 and num_gammas(ace) == 14


# ----------------------------------------------------------------------------- SchNet


def test_vanilla_schnet_equals_pyg_forward(schnet_models, batch):
    vanilla, _ = schnet_models
    with torch.no_grad():
        ours = vanilla(batch)
        pyg = vanilla.schnet(batch.z, batch.pos, batch.batch)
    assert ours.shape == (batch.num_graphs, 1)
    torch.testing.assert_close(ours, pyg, rtol=0, atol=1e-12)


def test_schnet_interaction_graph(schnet_models, batch):
    vanilla, _ = schnet_models
    edge_index, edge_weight = vanilla.schnet.interaction_graph(batch.pos, batch.batch)
    src, dst = edge_index
    # cutoff 10 Å covers these small molecules: all ordered pairs within each molecule
    assert edge_index.shape[1] == sum(n * (n - 1) for n in SIZES)
    assert bool((batch.batch[src] == batch.batch[dst]).all()) and bool((src != dst).all())
    torch.testing.assert_close(edge_weight, (batch.pos[src] - batch.pos[dst]).norm(dim=-1))
    assert edge_weight.requires_grad is False  # pos does not require grad here
    pos = batch.pos.clone().requires_grad_(True)
    _, w = vanilla.schnet.interaction_graph(pos, batch.batch)
    assert w.requires_grad  # differentiable distances (forces)


@pytest.mark.parametrize("which", ["vanilla", "ace_feq"])
def test_schnet_feq_invariant(schnet_models, batch, which):
    vanilla, ace = schnet_models
    model = vanilla if which == "vanilla" else ace
    with torch.no_grad(), equivariant_mode(model):
        y = model(batch)
        for name, R, t in group_elements(batch.num_graphs):
            err = rel_err(model(transform(batch, R, t)), y)
            assert err < 1e-10, (name, err)


def test_schnet_relaxed_not_invariant(schnet_models, batch):
    _, ace = schnet_models
    with torch.no_grad(), relaxed_mode(ace):
        y = ace(batch)
        for name, R, t in group_elements(batch.num_graphs)[:3]:
            err = rel_err(ace(transform(batch, R, t)), y)
            assert err > 1e-2, (name, err)


def test_schnet_ace_equivariant_mode_equals_pruned(schnet_models, batch):
    _, ace = schnet_models
    pruned = prune(ace)
    with torch.no_grad():
        with equivariant_mode(ace):
            y_eq = ace(batch)
        y_pruned = pruned(batch)
        y_relaxed = ace(batch)
    torch.testing.assert_close(y_pruned, y_eq, rtol=0, atol=0)
    assert rel_err(y_relaxed, y_eq) > 1e-2  # the stream matters in relaxed mode
    # the f_eq of an ACE model is a PyG SchNet with the same weights
    torch.testing.assert_close(y_eq, ace.schnet(batch.z, batch.pos, batch.batch), rtol=0, atol=0)


def test_schnet_equivariant_mode_skips_stream(batch):
    """Equivariant mode evaluates no branch: BatchNorm statistics stay untouched in training."""
    model = _build(SchNetQM9, ace_branches=True).train()
    bn = model.branches[0].f_neq[1]
    before = bn.running_mean.clone()
    with equivariant_mode(model):
        model(batch)
    assert torch.equal(bn.running_mean, before) and int(bn.num_batches_tracked) == 0
    model(batch)  # relaxed: the stream runs
    assert int(bn.num_batches_tracked) == 1 and not torch.equal(bn.running_mean, before)


def test_schnet_ace_backward_float32():
    torch.manual_seed(0)
    model = SchNetQM9(ace_branches=True).train()
    b = Batch.from_data_list(make_molecules(dtype=torch.float32))
    loss = (model(b) - 1.0).abs().mean()
    loss.backward()
    assert all(br.gamma.grad is not None and torch.isfinite(br.gamma.grad)
               for br in model.branches)
    assert model.branches[0].f_neq[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("which", ["schnet", "segnn"])
def test_batching_independence(schnet_models, segnn_models, which):
    """In eval mode a molecule's f_eq prediction does not depend on the rest of the batch."""
    models = schnet_models if which == "schnet" else segnn_models
    molecules = make_molecules()
    for model in models:
        with torch.no_grad(), equivariant_mode(model):
            together = model(Batch.from_data_list(molecules))
            alone = torch.cat([model(Batch.from_data_list([m])) for m in molecules])
            shuffled = model(Batch.from_data_list(molecules[::-1])).flip(0)
        torch.testing.assert_close(alone, together, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(shuffled, together, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- SEGNN


def test_segnn_graph_features(segnn_models, batch):
    model, _ = segnn_models
    g = model.graph_features(batch)
    src, dst = g["edge_index"]
    rel = batch.pos[src] - batch.pos[dst]
    dist = rel.norm(dim=-1)
    assert src.numel() > 0 and bool((dist <= 2.0).all()) and bool((src != dst).all())
    assert bool((batch.batch[src] == batch.batch[dst]).all())
    # every pair within 2 Å is an edge (no molecule reaches 32 neighbours)
    n_pairs = sum(int(((m.pos[:, None] - m.pos[None]).norm(dim=-1) <= 2.0).sum()) - m.num_nodes
                  for m in batch.to_data_list())
    assert src.numel() == n_pairs
    # 'component' SH: entry 0 is exactly 1, each l block has squared norm 2l + 1
    ea = g["edge_attr"]
    assert ea.shape == (src.numel(), 16) and bool((ea[:, 0] == 1).all())
    for l in range(4):
        torch.testing.assert_close(ea[:, l * l:(l + 1) ** 2].pow(2).sum(-1),
                                   torch.full_like(dist, 2.0 * l + 1))
    # node attributes: mean of incoming edge SH, entry 0 := 1
    na = g["node_attr"]
    assert bool((na[:, 0] == 1).all())
    i = int(dst[0])
    torch.testing.assert_close(na[i, 1:], ea[dst == i, 1:].mean(0))
    # extra message scalar: the squared distance
    torch.testing.assert_close(g["additional_message_features"].squeeze(-1), dist.pow(2))


def test_segnn_isolated_atom_node_attr(segnn_models):
    model, _ = segnn_models
    pos = torch.tensor([[0.0, 0, 0], [1.2, 0, 0], [10.0, 0, 0]], dtype=torch.float64)
    x = torch.zeros(3, 11, dtype=torch.float64)
    x[:, 1] = 1
    b = Batch.from_data_list([Data(z=torch.full((3,), 6), x=x, pos=pos)])
    na = model.graph_features(b)["node_attr"]
    expected = torch.zeros(16, dtype=torch.float64)
    expected[0] = 1
    torch.testing.assert_close(na[2], expected, rtol=0, atol=0)
    with torch.no_grad():
        assert torch.isfinite(model(b)).all()


@pytest.mark.parametrize("which", ["vanilla", "ace_feq"])
def test_segnn_feq_invariant(segnn_models, batch, which):
    vanilla, ace = segnn_models
    model = vanilla if which == "vanilla" else ace
    with torch.no_grad(), equivariant_mode(model):
        y = model(batch)
        assert y.shape == (batch.num_graphs, 1)
        for name, R, t in group_elements(batch.num_graphs):
            err = rel_err(model(transform(batch, R, t)), y)
            assert err < 1e-10, (name, err)


def test_segnn_relaxed_not_invariant(segnn_models, batch):
    _, ace = segnn_models
    R = group_elements(batch.num_graphs)[0][1]
    with torch.no_grad(), relaxed_mode(ace):
        err = rel_err(ace(transform(batch, R, torch.zeros(batch.num_graphs, 3,
                                                          dtype=torch.float64))), ace(batch))
    assert err > 1e-2, err  # (translations stay invariant: x is one-hot only)


def test_segnn_ace_equivariant_mode_equals_pruned(segnn_models, batch):
    _, ace = segnn_models
    pruned = prune(ace)
    with torch.no_grad():
        with equivariant_mode(ace):
            y_eq = ace(batch)
        y_pruned = pruned(batch)
    torch.testing.assert_close(y_pruned, y_eq, rtol=0, atol=0)


def test_segnn_speed_hints_same_function(segnn_models, batch):
    """edge_attr_scalar0 = 1 ('component' SH_0) and node_attr_scalar0 = 1 hold: same outputs."""
    model, _ = segnn_models
    with float64():
        plain = SEGNNQM9(speed_hints=False).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(plain(batch), model(batch), rtol=1e-10, atol=1e-12)


def test_segnn_matches_e3nn_spherical_harmonics(segnn_models, batch):
    """The edge attributes are e3nn's SH, l ≤ 3, normalize=True, 'component' normalisation."""
    from e3nn import o3

    model, _ = segnn_models
    g = model.graph_features(batch)
    src, dst = g["edge_index"]
    rel = batch.pos[src] - batch.pos[dst]
    ref = o3.spherical_harmonics(list(range(4)), rel, normalize=True, normalization="component")
    torch.testing.assert_close(g["edge_attr"], ref)
    assert math.isclose(float(ref[:, 0].min()), 1.0)
    # radius_graph agrees with the features' graph
    assert torch.equal(radius_graph(batch.pos, 2.0, batch.batch, 32), g["edge_index"])
