"""VN-DGCNN (ace.models.vn_dgcnn): parameter counts of experiments.md §5.2–5.4, the kNN graph, the
fused edge and nonlinearity evaluation against the official formulas (float64), invariance of f_eq
to rotations and permutations, the equivariant mode / pruning contract, and a training step."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

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
from ace.models import VNDGCNN
from ace.models.vn_dgcnn import (
    EPS,
    VNBatchNorm,
    VNFlatLinear,
    VNLinearLeakyReLU,
    assemble_edges,
    edge_features,
    knn,
    vn_batchnorm_leaky_relu,
    vn_leaky_relu,
)

VANILLA_PARAMS = 2_899_830  # experiments.md §5.2
ACE_PARAMS = 8_831_612  # Table 3 (experiments.md §5.4)
# f_neq per layer, feature + direction Linear (experiments.md §5.4)
F_NEQ_PER_LAYER = [882, 16_002, 32_004, 129_030, 521_208, 4_188_162, 1_044_480]
SMALL = dict(k=8)  # with clouds of 32 points


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: one thread is faster, and immune to a busy machine's scheduling."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def cloud(batch_size: int = 4, num_points: int = 32, seed: int = 0,
          dtype: torch.dtype = torch.float64) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"pos": torch.randn(batch_size, num_points, 3, generator=g, dtype=dtype)}


def rotate(batch: dict, rot: torch.Tensor) -> dict:
    """pos @ Rᵀ, one rotation per sample."""
    return {**batch, "pos": batch["pos"] @ rot.transpose(1, 2)}


def float64_model(ace: bool, seed: int = 0, **kwargs) -> VNDGCNN:
    """A float64 model whose BatchNorm statistics are set by one training-mode forward (relaxed)."""
    torch.manual_seed(seed)
    model = VNDGCNN(ace_branches=ace, **SMALL, **kwargs).double()
    with torch.no_grad():
        model.train()(cloud(8, seed=100 + seed))
    return model.eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max())


# ---------------------------------------------------------------------------------------------
# Parameter counts


def test_parameter_counts_match_experiments_md():
    vanilla, ace = VNDGCNN(), VNDGCNN(ace_branches=True)
    assert count_parameters(vanilla) == VANILLA_PARAMS
    assert num_gammas(vanilla) == 0
    # the official head: every Linear with a bias (4092→512, 512→256, 256→40)
    assert all(lin.bias is not None for lin in (vanilla.linear1, vanilla.linear2, vanilla.linear3))
    assert count_parameters(ace) == ACE_PARAMS
    assert num_gammas(ace) == 14 and torch.equal(gammas(ace), torch.ones(14))
    assert count_parameters(prune(ace)) == VANILLA_PARAMS
    f_neq = [count_parameters(b.f_neq) for b in homotopic_branches(ace)]
    assert f_neq[:2] == [441, 441] and f_neq[8:10] == [519_684, 1_524]  # conv1; conv5 (shared)
    assert [f_neq[i] + f_neq[i + 1] for i in range(0, 14, 2)] == F_NEQ_PER_LAYER


def test_branches_are_registered_conv1_to_std_feature_feature_first():
    ace = VNDGCNN(ace_branches=True)
    layers = [ace.conv1, ace.conv2, ace.conv3, ace.conv4, ace.conv5, ace.std_feature.vn1,
              ace.std_feature.vn2]
    expected = [b for layer in layers for b in (layer.feat_branch, layer.dir_branch)]
    assert homotopic_branches(ace) == expected


# ---------------------------------------------------------------------------------------------
# kNN graph and edge evaluation


def test_knn_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 6, 25, generator=g, dtype=torch.float64)  # [B, D, N]
    idx = knn(x, 7)
    assert idx.shape == (3, 25, 7)
    dist = ((x.unsqueeze(3) - x.unsqueeze(2)) ** 2).sum(1)  # [B, N, N], brute force
    ref = dist.argsort(dim=-1)[..., :7]
    assert torch.equal(idx.sort(-1).values, ref.sort(-1).values)
    assert bool((idx == torch.arange(25).view(1, 25, 1)).any(-1).all())  # self included
    with pytest.raises(ValueError):
        knn(x, 26)


def official_layer(layer: VNLinearLeakyReLU, x: torch.Tensor) -> torch.Tensor:
    """The official ``VNLinearLeakyReLU.forward`` (andreimano/ACE ``vn_layers.py``) on x (points or
    built edge features), written with the literal formulas: torch.norm, the mask blend."""
    p = layer.map_to_feat(x)
    if layer.feat_branch is not None:
        p = layer.feat_branch(p, x)
    norm = torch.norm(p, dim=2) + EPS
    p = p / norm.unsqueeze(2) * layer.batchnorm.bn(norm).unsqueeze(2)
    d = layer.map_to_dir(x)
    if layer.dir_branch is not None:
        d = layer.dir_branch(d, x)
    dot = (p * d).sum(2, keepdim=True)
    mask = (dot >= 0).to(p.dtype)
    d_norm_sq = (d * d).sum(2, keepdim=True)
    s = layer.negative_slope
    return s * p + (1 - s) * (mask * p + (1 - mask) * (p - dot / (d_norm_sq + EPS) * d))


@pytest.mark.parametrize("case", ["edges_mean", "edges", "points", "points_shared"])
@pytest.mark.parametrize("training", [True, False])
def test_layer_matches_the_official_formulas(case, training):
    """Edge parts + gather + fused BN/LeakyReLU(/mean) = the literal evaluation: outputs, gradients
    (input, weights, γ, BN affine) and BN running statistics, in float64, with γ ≠ 0."""
    torch.manual_seed(0)
    B, C, N, k = 3, 4, 16, 5
    edges = case.startswith("edges")
    layer = VNLinearLeakyReLU(2 * C if edges else C, 6, dim=5 if edges else 4,
                              share_nonlinearity=case == "points_shared", ace_branches=True)
    layer = layer.double().train(training)
    with torch.no_grad():
        for b in homotopic_branches(layer):
            b.gamma.uniform_(0.3, 1.0)
        bn = layer.batchnorm.bn
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(0.0, 1.0), bn.running_var.uniform_(0.5, 2.0)
    ref = copy.deepcopy(layer)
    x = torch.randn(B, C, 3, N, dtype=torch.float64, requires_grad=True)
    if edges:
        idx = knn(x.detach().reshape(B, -1, N), k)
        out = layer(x, idx, mean_pool=case == "edges_mean")
        out_ref = official_layer(ref, edge_features(x, idx))
        if case == "edges_mean":
            out_ref = out_ref.mean(-1)
    else:
        out, out_ref = layer(x), official_layer(ref, x)
    assert out.shape == out_ref.shape
    assert max_diff(out, out_ref) < 1e-12
    weight = torch.randn_like(out)
    grads = torch.autograd.grad((out * weight).sum(), [x, *layer.parameters()])
    grads_ref = torch.autograd.grad((out_ref * weight).sum(), [x, *ref.parameters()])
    for g, g_ref in zip(grads, grads_ref):
        assert max_diff(g, g_ref) < 1e-10
    for name in ("running_mean", "running_var"):
        assert max_diff(getattr(layer.batchnorm.bn, name), getattr(ref.batchnorm.bn, name)) < 1e-12


@pytest.mark.parametrize("shared", [False, True])
def test_fused_nonlinearity_is_the_composition(shared):
    """vn_batchnorm_leaky_relu(p, d) = vn_leaky_relu(VNBatchNorm(p), d), forward and backward."""
    torch.manual_seed(0)
    bn = VNBatchNorm(5, dim=5).double()
    with torch.no_grad():
        bn.bn.weight.uniform_(0.5, 1.5), bn.bn.bias.uniform_(-0.5, 0.5)
    ref_bn = copy.deepcopy(bn)
    p = torch.randn(3, 5, 3, 7, 4, dtype=torch.float64, requires_grad=True)
    d = torch.randn(3, 1 if shared else 5, 3, 7, 4, dtype=torch.float64, requires_grad=True)
    out = vn_batchnorm_leaky_relu(p, d, bn, 0.2, mean_pool=True)
    ref = vn_leaky_relu(ref_bn(p), d, 0.2).mean(-1)
    assert max_diff(out, ref) < 1e-12
    weight = torch.randn_like(out)
    grads = torch.autograd.grad((out * weight).sum(), (p, d, bn.bn.weight, bn.bn.bias))
    grads_ref = torch.autograd.grad((ref * weight).sum(), (p, d, ref_bn.bn.weight, ref_bn.bn.bias))
    for g, g_ref in zip(grads, grads_ref):
        assert max_diff(g, g_ref) < 1e-10


def test_flat_linear_is_the_per_point_flatten():
    """F = move the point (and neighbour) axes aside, flatten (C, 3) C-major, Linear, unflatten,
    restore (experiments.md §5.3); edge parts + gather = F on the built edge features."""
    torch.manual_seed(0)
    f = VNFlatLinear(4, 5).double()
    x4 = torch.randn(2, 4, 3, 7, dtype=torch.float64)
    ref4 = f.linear(x4.permute(0, 3, 1, 2).reshape(2, 7, 12)).view(2, 7, 5, 3).permute(0, 2, 3, 1)
    assert max_diff(f(x4), ref4) < 1e-13
    x5 = torch.randn(2, 4, 3, 7, 3, dtype=torch.float64)
    ref5 = f.linear(x5.permute(0, 3, 4, 1, 2).reshape(2, 7, 3, 12)).view(2, 7, 3, 5, 3)
    assert max_diff(f(x5), ref5.permute(0, 3, 4, 1, 2)) < 1e-13
    g = VNFlatLinear(4, 5).double()  # on the edge features of 2-channel points
    x = torch.randn(2, 2, 3, 7, dtype=torch.float64)
    idx = knn(x.reshape(2, 6, 7), 3)
    assert max_diff(assemble_edges(g(x, True), idx), g(edge_features(x, idx))) < 1e-13


# ---------------------------------------------------------------------------------------------
# Invariance of f_eq


@pytest.mark.parametrize("ace", [False, True])
def test_f_eq_is_rotation_and_permutation_invariant(ace):
    model = float64_model(ace)
    batch = cloud()
    rot = random_rotations(4, torch.Generator().manual_seed(5), dtype=torch.float64)
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad(), equivariant_mode(model):
        out = model(batch)
        assert max_diff(model(rotate(batch, rot)), out) < 1e-9
        assert max_diff(model({"pos": batch["pos"][:, perm]}), out) < 1e-9
    if ace:  # γ = 1: f_eq + γ f_neq is far from invariant
        with torch.no_grad(), relaxed_mode(model):
            assert max_diff(model(rotate(batch, rot)), model(batch)) > 1e-4


def test_max_pooling_variant_is_rotation_invariant():
    model = float64_model(False, pooling="max")
    batch = cloud(seed=2)
    rot = random_rotations(4, torch.Generator().manual_seed(7), dtype=torch.float64)
    with torch.no_grad():
        assert max_diff(model(rotate(batch, rot)), model(batch)) < 1e-9


# ---------------------------------------------------------------------------------------------
# Equivariant mode, pruning, training


def test_equivariant_mode_skips_f_neq_and_equals_the_pruned_model():
    model = float64_model(True)
    pruned = prune(model)
    calls = []
    for branch in homotopic_branches(model):
        branch.f_neq.register_forward_hook(lambda *_: calls.append(1))
    batch = cloud(seed=3)
    with torch.no_grad():
        with equivariant_mode(model):
            assert torch.equal(model(batch), pruned(batch))
        assert calls == []
        model(batch)  # relaxed (the default): every f_neq runs once
        assert len(calls) == 14
        calls.clear()
        model.train(), pruned.train()
        torch.manual_seed(0)  # same dropout masks
        with equivariant_mode(model):
            out = model(batch)
        torch.manual_seed(0)
        assert torch.equal(out, pruned(batch)) and calls == []
    for a, b in zip(model.buffers(), pruned.buffers()):  # same BatchNorm statistics
        assert torch.equal(a, b)


@pytest.mark.parametrize("ace", [False, True])
def test_training_step_reaches_every_parameter(ace):
    torch.manual_seed(0)
    model = VNDGCNN(num_classes=10, ace_branches=ace, **SMALL).train()
    batch = cloud(dtype=torch.float32)
    with relaxed_mode(model):
        logits = model(batch)
        assert logits.shape == (4, 10) and logits.dtype == torch.float32
        F.cross_entropy(logits, torch.tensor([0, 3, 5, 9]), label_smoothing=0.2).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    if ace:
        assert all(float(b.gamma.grad.abs()) > 0 for b in homotopic_branches(model))


def test_float32_clouds_run_on_a_float64_model():
    model = float64_model(False)
    batch = cloud(seed=4)
    with torch.no_grad():
        out32 = model({"pos": batch["pos"].float()})
    assert out32.dtype == torch.float64
    assert max_diff(out32, model({"pos": batch["pos"].float().double()})) == 0.0
