"""VN-DGCNN classifier for ModelNet40 with optional ACE branches (``experiments.md`` §5.2–5.4).

Vector Neurons (Deng et al., 2021) make every feature a list of 3-vectors: a tensor
``x ∈ R^{B × C × 3 × N}`` (or ``B × C × 3 × N × k`` on the edges of each point's neighbourhood)
holds C vector channels per point. Linear maps act on the channel axis only, ``x ↦ W x``, so they
commute with every rotation ``x ↦ x Rᵀ`` of the xyz axis; norms and inner products of vectors are
invariant.

The network (``vnn/models/vn_dgcnn_cls.py`` of andreimano/ACE, widths of §5.2)::

    idx   = kNN_k(x)                                (dense top-k of −‖x_i − x_j‖², self included)
    e_ij  = [x_j − x_i ; x_i]                        (edge feature, 2C channels)
    x¹ = mean_j VNLinearLeakyReLU(2 → 21)(e_ij)      kNN on the coordinates (C = 1)
    x² = mean_j VNLinearLeakyReLU(42 → 21)(e_ij)     kNN on x¹, flattened to [B, 3C, N]
    x³ = mean_j VNLinearLeakyReLU(42 → 42)(e_ij)     kNN on x²
    x⁴ = mean_j VNLinearLeakyReLU(84 → 85)(e_ij)     kNN on x³
    x⁵ = VNLinearLeakyReLU(169 → 341, shared direction)([x¹; x²; x³; x⁴])
    y  = [x⁵ ; mean_points x⁵]                        (682 channels)
    s  = VNStdFeature(682)(y)                         (682·3 = 2,046 invariants per point)
    logits = head([max_points s ; mean_points s])    4,092 → 512 → 256 → num_classes

with the head ``Linear → BatchNorm1d → LeakyReLU(0.2) → Dropout(0.5)`` twice, then ``Linear``.
Every head Linear has a bias, as in the official code; with them the vanilla model has exactly
**2,899,830** parameters (§5.2).

**ACE** (``ace_branches=True``, §5.3): each of the 7 :class:`VNLinearLeakyReLU` layers (conv1…conv5,
std.vn1, std.vn2, in this order) gets two :class:`~ace.core.homotopic.HomotopicBranch` (γ init 1),
feature branch first::

    p = VN-BatchNorm(W_feat x + γ₀ F_feat(x)),   d = W_dir x + γ₁ F_dir(x),
    out = VN-LeakyReLU(p; d)

where ``F`` is one dense ``Linear(3 C_in → 3 C_out)`` with bias on each point's (and neighbour's)
flattened vectors (:class:`VNFlatLinear`). The perturbation sits inside the layer, before the
BatchNorm and the nonlinearity. Unlike the official code, conv5 and the std-feature layers flatten
per point too (the official reshape there mixes points and channels, ``ace_algorithm.md`` §5); the
parameter count is the same: f_neq 5,931,768 + 14 γ, **8,831,612** in all (§5.4); 2,899,830 after
:func:`~ace.core.homotopic.prune`. In equivariant mode no branch runs and the model is exactly
VN-DGCNN: invariant to rotations of the input cloud and to permutations of its points.

**Edge layers without edge features.** conv1–conv4 never build the edge tensor
``[x_j − x_i ; x_i]``. Every map that reads it is linear (or affine), so with ``W = [W_a | W_b]``
(the columns acting on x_j − x_i and on x_i)::

    W e_ij = (W_a x)_j + ((W_b − W_a) x)_i

The two parts ``[W_a x ; (W_b − W_a) x]`` are computed at the N points ("edge parts", [B, 2C_out,
3, N]), the ACE branches are added to them there, and one gather per path assembles the N·k edge
values (:func:`assemble_edges`).

**Fused nonlinearity.** In every layer, VN-BatchNorm, VN-LeakyReLU and (conv1–conv4) the mean over
the neighbours run as one autograd function with a hand-written backward
(:func:`vn_batchnorm_leaky_relu`), which keeps the number of full-size passes and buffers small:
on CPU these layers are bound by memory traffic, not by their matmuls. Both rewrites compute the
same function as the literal evaluation (edge features from :func:`edge_features`, then
:class:`VNBatchNorm` and :func:`vn_leaky_relu`); ``tests/test_vn_dgcnn.py`` compares outputs,
gradients and BatchNorm statistics with the official formulas in float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from ace.core.homotopic import HomotopicBranch

__all__ = [
    "VNDGCNN",
    "VNLinear",
    "VNFlatLinear",
    "VNBatchNorm",
    "VNLinearLeakyReLU",
    "VNMaxPool",
    "VNStdFeature",
    "vn_leaky_relu",
    "vn_batchnorm_leaky_relu",
    "knn",
    "gather_neighbours",
    "assemble_edges",
    "edge_features",
    "EPS",
]

#: added to vector norms (VN-BatchNorm) and squared direction norms (VN-LeakyReLU), as in vnn.
EPS = 1e-6


def knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [B, N, k] of the k nearest points of each point (itself included) of x [B, D, N].

    ``topk_j(−‖x_i − x_j‖²)`` with ``‖x_i − x_j‖² = ‖x_i‖² − 2 x_i·x_j + ‖x_j‖²`` from one batched
    Gram matrix (memory O(B N²)), as DGCNN. Not differentiable (indices only).
    """
    if k > x.shape[-1]:
        raise ValueError(f"k={k} neighbours requested but the clouds have {x.shape[-1]} points")
    with torch.no_grad():
        sq = x.pow(2).sum(dim=1)  # [B, N]
        neg_dist = torch.matmul(x.transpose(1, 2), x).mul_(2)  # 2 x_i·x_j, [B, N, N]
        neg_dist.sub_(sq.unsqueeze(2)).sub_(sq.unsqueeze(1))
        return neg_dist.topk(k, dim=-1).indices


def gather_neighbours(y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``out[b, c, a, i, j] = y[b, c, a, idx[b, i, j]]``: y [B, C, 3, N] → [B, C, 3, N, k]."""
    B, C, A, N = y.shape
    k = idx.shape[-1]
    index = idx.reshape(B, 1, N * k).expand(B, C * A, N * k)
    return torch.gather(y.reshape(B, C * A, N), 2, index).view(B, C, A, N, k)


def assemble_edges(parts: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Edge values from edge parts: ``out_ij = u_j + v_i`` for parts ``[u ; v]`` [B, 2C, 3, N]
    (neighbour part first) → [B, C, 3, N, k]."""
    C = parts.shape[1] // 2
    # out of place: an in-place add on the gathered view would cost autograd three full copies
    return gather_neighbours(parts[:, :C], idx) + parts[:, C:].unsqueeze(-1)


def edge_features(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """The DGCNN edge feature ``e_ij = [x_j − x_i ; x_i]``: x [B, C, 3, N] → [B, 2C, 3, N, k].

    The model evaluates its edge layers without building it (module docstring); this literal form
    is the reference they are tested against.
    """
    x_i = x.unsqueeze(-1).expand(*x.shape, idx.shape[-1])
    return torch.cat([gather_neighbours(x, idx) - x_i, x_i], dim=1)


def _split_edge_weight(weight: torch.Tensor, in_columns: int) -> torch.Tensor:
    """``[W_a | W_b] ↦ [W_a ; W_b − W_a]``: the weights on x_j and on x_i of
    ``W [x_j − x_i ; x_i]``."""
    w_a, w_b = weight[:, :in_columns], weight[:, in_columns:]
    return torch.cat([w_a, w_b - w_a], dim=0)


def _dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """⟨u, v⟩ over the xyz axis (dim 2, size 3) → the broadcast shape without dim 2.

    Three strided products rather than ``(u * v).sum(2)``: no full-size temporary, and CPU
    reductions over a short middle axis (``linalg.vector_norm`` above all) are far slower."""
    u0, u1, u2 = u.unbind(2)
    v0, v1, v2 = v.unbind(2)
    return torch.addcmul(torch.addcmul(u0 * v0, u1, v1), u2, v2)


def _channel_matmul(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``weight @ x[b]`` for every b: [O, C] × [B, C, M] → [B, O, M]. A bmm on the broadcast
    weight: ``torch.matmul`` would fold the batch by transposing x, one copy of x each way."""
    return torch.bmm(weight.expand(x.shape[0], *weight.shape), x)


class VNLinear(nn.Module):
    """Bias-free linear map over the vector channels, the same on x, y and z::

        (W x)[b, o, a, …] = Σ_c W[o, c] x[b, c, a, …],   W ∈ R^{C_out × C_in}

    Rotation-equivariant: ``W (x Rᵀ) = (W x) Rᵀ``. One batched matmul on the channel axis of
    ``x.view(B, C, −1)`` (no copy of x). Initialised like ``nn.Linear``.

    ``edge_parts=True``: x [B, C_in/2, 3, N] are point features and the map is applied to their
    edge features ``[x_j − x_i ; x_i]``; returns the edge parts ``[W_a x ; (W_b − W_a) x]``
    [B, 2C_out, 3, N] (:func:`assemble_edges`).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor, edge_parts: bool = False) -> torch.Tensor:
        B, C = x.shape[:2]
        weight = _split_edge_weight(self.weight, C) if edge_parts else self.weight
        out = _channel_matmul(weight, x.reshape(B, C, -1))
        return out.view(B, weight.shape[0], *x.shape[2:])

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"


class VNFlatLinear(nn.Module):
    """ACE f_neq (§5.3): a dense affine map of each point's flattened vectors::

        F(x)_{·, ·, n} = unflatten(A flatten(x_{·, ·, n}) + b),   A ∈ R^{3C_out × 3C_in}

    with ``flatten`` the C-major (channel, xyz) → ``3c + a`` order, applied per point (and per
    neighbour); not equivariant, A mixes x, y and z freely. The parameters are one
    ``nn.Linear(3C_in, 3C_out)``. The product runs on ``x.view(B, 3C_in, −1)``, whose rows are
    already in flattened order: the same function as moving the point axes aside, flattening,
    applying the Linear and moving them back, without the copies.

    ``edge_parts=True``: as :class:`VNLinear`, the edge parts ``[A_a x ; (A_b − A_a) x + b]``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.linear = nn.Linear(3 * in_channels, 3 * out_channels)

    def forward(self, x: torch.Tensor, edge_parts: bool = False) -> torch.Tensor:
        B, C = x.shape[:2]
        weight, bias = self.linear.weight, self.linear.bias
        if edge_parts:
            weight = _split_edge_weight(weight, 3 * C)
            bias = torch.cat([torch.zeros_like(bias), bias])  # the bias belongs to the centre part
        out = _channel_matmul(weight, x.reshape(B, 3 * C, -1))
        out += bias.unsqueeze(-1)
        return out.view(B, weight.shape[0] // 3, *x.shape[2:])

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"


class VNBatchNorm(nn.Module):
    """BatchNorm of the vector norms, directions kept::

        x_c ↦ x_c / ‖x_c‖ · BN(‖x_c‖),   ‖x_c‖ := ‖x_c‖₂ + EPS

    ``BN`` is ``BatchNorm1d`` on [B, C, N] (``dim=4``) or ``BatchNorm2d`` on [B, C, N, k]
    (``dim=5``), statistics per channel. Rotation-equivariant (norms are invariant).
    """

    def __init__(self, num_features: int, dim: int) -> None:
        super().__init__()
        if dim == 4:
            self.bn = nn.BatchNorm1d(num_features)
        elif dim == 5:
            self.bn = nn.BatchNorm2d(num_features)
        else:
            raise ValueError(f"VNBatchNorm supports dim 4 ([B, C, 3, N]) or 5 ([B, C, 3, N, k]), "
                             f"got {dim}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = _dot(x, x).sqrt() + EPS
        return x * (self.bn(norm) / norm).unsqueeze(2)


def vn_leaky_relu(p: torch.Tensor, d: torch.Tensor, negative_slope: float = 0.2) -> torch.Tensor:
    """VN-LeakyReLU of p along the learned directions d (vector axis 2; d may have 1 channel)::

        out = s p + (1 − s) (p                        if ⟨p, d⟩ ≥ 0
                             p − ⟨p, d⟩/(‖d‖² + EPS) d  otherwise)
            = p − (1 − s) min(⟨p, d⟩, 0)/(‖d‖² + EPS) d,          s = negative_slope

    i.e. the component of p against d is scaled by s. Rotation-equivariant.
    """
    coef = _dot(p, d).clamp(max=0) / (_dot(d, d) + EPS) * (1.0 - negative_slope)
    return p - coef.unsqueeze(2) * d


class _VNBatchNormLeakyReLU(torch.autograd.Function):
    """``VN-LeakyReLU(VN-BatchNorm(p); d)``, optionally averaged over the last axis, with a
    hand-written backward (few full-size passes and buffers).

    With n = ‖p‖, σ = BN(n + EPS)/(n + EPS), r = ⟨p, d⟩, t = σ r, δ = ‖d‖² + EPS,
    c = (1 − s) min(t, 0)/δ: out = σ p − c d. For the incoming gradient g of out (of the mean:
    g/k for every neighbour), h = ⟨g, d⟩, c_t = (1 − s)[t < 0]/δ and α = h c_t σ::

        ∂L/∂σ = ⟨g, p⟩ − h c_t r      → ∂L/∂n through σ = BN(n + EPS)/(n + EPS) (BN recomputed)
        ∂L/∂p = σ g − α d + (∂L/∂n / n) p
        ∂L/∂d = −c g − α p + 2 h c/δ d          (summed over the channels if d is shared)
    """

    @staticmethod
    def forward(ctx, p, d, weight, bias, bn: nn.modules.batchnorm._BatchNorm,
                negative_slope: float, mean_pool: bool):
        n = _dot(p, p).sqrt_()
        ne = n + EPS
        y = bn(ne)  # updates the running statistics in training mode, as VNBatchNorm does
        scale = y / ne
        r = _dot(p, d)
        delta = _dot(d, d).add_(EPS)
        t = scale * r
        c = t.clamp(max=0).div_(delta).mul_(1.0 - negative_slope)
        out = p * scale.unsqueeze(2)
        out.addcmul_(c.unsqueeze(2), d, value=-1)
        ctx.negative_slope, ctx.mean_pool = negative_slope, mean_pool
        ctx.bn_training = bn.training or (bn.running_mean is None and bn.running_var is None)
        ctx.bn_eps = bn.eps
        running = () if ctx.bn_training else (bn.running_mean.clone(), bn.running_var.clone())
        ctx.save_for_backward(p, d, weight, bias, n, y, scale, r, delta, c, t, *running)
        return out.mean(dim=-1) if mean_pool else out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        p, d, weight, bias, n, y, scale, r, delta, c, t, *running = ctx.saved_tensors
        s = ctx.negative_slope
        g = (grad / p.shape[-1]).unsqueeze(-1) if ctx.mean_pool else grad  # ∂L/∂out
        h = _dot(g, d)
        hct = (t < 0).to(p.dtype).mul_(1.0 - s).div_(delta).mul_(h)  # h c_t = −∂L/∂t
        g_scale = _dot(g, p).sub_(hct * r)
        alpha = hct.mul_(scale)
        ne = n + EPS
        with torch.enable_grad():
            ne_ = ne.detach().requires_grad_()
            w_, b_ = weight.detach().requires_grad_(), bias.detach().requires_grad_()
            rm, rv = running if running else (None, None)
            y_ = F.batch_norm(ne_, rm, rv, w_, b_, training=ctx.bn_training, momentum=0.0,
                              eps=ctx.bn_eps)
            g_ne, g_w, g_b = torch.autograd.grad(y_, (ne_, w_, b_), g_scale / ne)
        g_ne = g_ne - g_scale * scale / ne
        g_n_over_n = torch.where(n > 0, g_ne / n, torch.zeros_like(n))
        grad_p = p * g_n_over_n.unsqueeze(2)
        grad_p.addcmul_(g, scale.unsqueeze(2))
        grad_p.addcmul_(d, alpha.unsqueeze(2), value=-1)
        coef_d = 2.0 * h * c / delta
        if d.shape[1] == p.shape[1]:
            grad_d = d * coef_d.unsqueeze(2)
            grad_d.addcmul_(p, alpha.unsqueeze(2), value=-1)
            grad_d.addcmul_(g, c.unsqueeze(2), value=-1)
        else:  # one direction shared by every channel
            per_channel = p * alpha.unsqueeze(2)
            per_channel.addcmul_(g, c.unsqueeze(2))
            grad_d = d * coef_d.sum(dim=1, keepdim=True).unsqueeze(2)
            grad_d -= per_channel.sum(dim=1, keepdim=True)
        return grad_p, grad_d, g_w, g_b, None, None, None


def vn_batchnorm_leaky_relu(p: torch.Tensor, d: torch.Tensor, batchnorm: VNBatchNorm,
                            negative_slope: float = 0.2, mean_pool: bool = False) -> torch.Tensor:
    """``vn_leaky_relu(batchnorm(p), d, negative_slope)``, averaged over the last axis if
    ``mean_pool``: the same function as the composition, with a fused backward. p [B, C, 3, …];
    d of the same shape, or with 1 channel (a shared direction)."""
    if d.shape[1] not in (1, p.shape[1]) or d.shape[2:] != p.shape[2:]:
        raise ValueError(f"d {tuple(d.shape)} does not match p {tuple(p.shape)}")
    bn = batchnorm.bn
    return _VNBatchNormLeakyReLU.apply(p, d, bn.weight, bn.bias, bn, negative_slope, mean_pool)


class VNLinearLeakyReLU(nn.Module):
    """One VN layer: ``out = VN-LeakyReLU(VN-BatchNorm(W_feat x); W_dir x)``.

    ``W_dir`` has C_out output channels, or 1 with ``share_nonlinearity``. With ``ace_branches``::

        p = VN-BatchNorm(W_feat x + γ₀ F_feat(x)),   d = W_dir x + γ₁ F_dir(x)

    with :class:`VNFlatLinear` branches (``feat_branch`` registered before ``dir_branch``). The
    BatchNorm and the nonlinearity run as :func:`vn_batchnorm_leaky_relu`.

    ``forward(x)``: x [B, C_in, 3, N] (``dim=4``) or edge features [B, C_in, 3, N, k] (``dim=5``).
    ``forward(x, idx)``: point features x [B, C_in/2, 3, N]; the layer is evaluated on the edge
    features ``[x_j − x_i ; x_i]`` of ``idx`` without building them (module docstring) and returns
    [B, C_out, 3, N, k]. ``mean_pool=True`` averages the output over its last axis (neighbours).
    """

    def __init__(self, in_channels: int, out_channels: int, dim: int = 5,
                 share_nonlinearity: bool = False, negative_slope: float = 0.2,
                 ace_branches: bool = False) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        dir_channels = 1 if share_nonlinearity else out_channels
        self.map_to_feat = VNLinear(in_channels, out_channels)
        self.feat_branch = (HomotopicBranch(VNFlatLinear(in_channels, out_channels))
                            if ace_branches else None)
        self.batchnorm = VNBatchNorm(out_channels, dim=dim)
        self.map_to_dir = VNLinear(in_channels, dir_channels)
        self.dir_branch = (HomotopicBranch(VNFlatLinear(in_channels, dir_channels))
                           if ace_branches else None)

    def forward(self, x: torch.Tensor, idx: torch.Tensor | None = None,
                mean_pool: bool = False) -> torch.Tensor:
        inputs = (x,) if idx is None else (x, True)  # True: edge parts at the points
        p = self.map_to_feat(*inputs)
        if self.feat_branch is not None:
            p = self.feat_branch(p, *inputs)
        d = self.map_to_dir(*inputs)
        if self.dir_branch is not None:
            d = self.dir_branch(d, *inputs)
        if idx is not None:
            p, d = assemble_edges(p, idx), assemble_edges(d, idx)
        return vn_batchnorm_leaky_relu(p, d, self.batchnorm, self.negative_slope, mean_pool)


class VNMaxPool(nn.Module):
    """VN max-pooling over the last axis (neighbours): keep, per channel, the vector with the
    largest component along a learned direction::

        out_c = x_{c, j*},   j* = argmax_j ⟨x_{c, j}, (W x)_{c, j}⟩,   W ∈ R^{C × C}
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.map_to_dir = VNLinear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, 3, N, k] → [B, C, 3, N]."""
        best = _dot(x, self.map_to_dir(x)).argmax(dim=-1, keepdim=True)  # [B, C, N, 1]
        best = best.unsqueeze(2).expand(*x.shape[:-1], 1)
        return torch.gather(x, -1, best).squeeze(-1)


class VNStdFeature(nn.Module):
    """Rotation-invariant coordinates of x in a learned per-point frame::

        z = W_lin VN2(VN1(x)),   s[b, c, f, n] = ⟨x_{b,c,·,n}, z_{b,f,·,n}⟩,   f = 1, 2, 3

    VN1 = :class:`VNLinearLeakyReLU` (C → C/2), VN2 (C/2 → C/4), ``W_lin`` a bias-free
    :class:`VNLinear` (C/4 → 3) giving three frame vectors per point (not normalised). Input x
    [B, C, 3, N]; returns s [B, C, 3, N] and the frame xyz-major, [B, 3 (xyz), 3 (f), N], so that
    ``s = einsum('bijm,bjkm->bikm', x, frame)`` as in the official ``VNStdFeature``
    (``normalize_frame=False``).
    """

    def __init__(self, in_channels: int, negative_slope: float = 0.2,
                 ace_branches: bool = False) -> None:
        super().__init__()
        self.vn1 = VNLinearLeakyReLU(in_channels, in_channels // 2, dim=4,
                                     negative_slope=negative_slope, ace_branches=ace_branches)
        self.vn2 = VNLinearLeakyReLU(in_channels // 2, in_channels // 4, dim=4,
                                     negative_slope=negative_slope, ace_branches=ace_branches)
        self.vn_lin = VNLinear(in_channels // 4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frame = self.vn_lin(self.vn2(self.vn1(x))).transpose(1, 2)  # [B, 3 (xyz), 3 (f), N]
        return torch.einsum("bijm,bjkm->bikm", x, frame), frame


class VNDGCNN(nn.Module):
    """VN-DGCNN classifier (module docstring): ``batch["pos"]`` [B, N, 3] → logits [B, num_classes].

    Args:
        num_classes: 40 for ModelNet40.
        k: neighbours of the dynamic kNN graph (self included), 20 in §5.5.
        ace_branches: add the 14 ACE branches (γ init 1) of §5.3.
        dropout: dropout of the two hidden head layers.
        negative_slope: of every VN-LeakyReLU and of the head's LeakyReLU (0.2).
        pooling: over the neighbours of conv1–conv4: ``"mean"`` (the ACE setting) or ``"max"``
            (:class:`VNMaxPool`, learned directions; adds 21² + 21² + 42² + 85² parameters).
    """

    def __init__(self, num_classes: int = 40, k: int = 20, ace_branches: bool = False,
                 dropout: float = 0.5, negative_slope: float = 0.2, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in ("mean", "max"):
            raise ValueError(f"pooling must be 'mean' or 'max', got {pooling!r}")
        self.k = k
        self.negative_slope = negative_slope
        c1, c2, c3, c4, c5 = 64 // 3, 64 // 3, 128 // 3, 256 // 3, 1024 // 3  # 21 21 42 85 341
        vn = dict(negative_slope=negative_slope, ace_branches=ace_branches)
        self.conv1 = VNLinearLeakyReLU(2, c1, **vn)
        self.conv2 = VNLinearLeakyReLU(2 * c1, c2, **vn)
        self.conv3 = VNLinearLeakyReLU(2 * c2, c3, **vn)
        self.conv4 = VNLinearLeakyReLU(2 * c3, c4, **vn)
        self.conv5 = VNLinearLeakyReLU(c1 + c2 + c3 + c4, c5, dim=4, share_nonlinearity=True, **vn)
        self.std_feature = VNStdFeature(2 * c5, **vn)
        self.pools = (nn.ModuleList(VNMaxPool(c) for c in (c1, c2, c3, c4))
                      if pooling == "max" else None)
        self.linear1 = nn.Linear(2 * c5 * 3 * 2, 512)  # 2,046 invariants, max ‖ mean over points
        self.bn1 = nn.BatchNorm1d(512)
        self.dp1 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(512, 256)
        self.bn2 = nn.BatchNorm1d(256)
        self.dp2 = nn.Dropout(dropout)
        self.linear3 = nn.Linear(256, num_classes)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pos = batch["pos"].to(self.linear1.weight.dtype)
        B, N, _ = pos.shape
        x = pos.transpose(1, 2).unsqueeze(1)  # [B, 1, 3, N]
        pooled = []
        for layer, conv in enumerate((self.conv1, self.conv2, self.conv3, self.conv4)):
            idx = knn(x.reshape(B, -1, N), self.k)  # on the coordinates, then on the features
            if self.pools is None:
                x = conv(x, idx, mean_pool=True)
            else:
                x = self.pools[layer](conv(x, idx))
            pooled.append(x)
        x = self.conv5(torch.cat(pooled, dim=1))  # [B, 341, 3, N]
        x = torch.cat([x, x.mean(dim=-1, keepdim=True).expand_as(x)], dim=1)
        s, _ = self.std_feature(x)
        s = s.reshape(B, -1, N)  # [B, 2046, N]
        h = torch.cat([s.amax(dim=-1), s.mean(dim=-1)], dim=1)
        h = self.dp1(F.leaky_relu(self.bn1(self.linear1(h)), self.negative_slope))
        h = self.dp2(F.leaky_relu(self.bn2(self.linear2(h)), self.negative_slope))
        return self.linear3(h)
