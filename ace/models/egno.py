"""EGNO for CMU MoCap with optional ACE streams (``experiments.md`` §4.2, paper Eq. 3).

EGNO (Xu et al., 2024) predicts T future frames at once: the input state is copied to T time
slots with a sinusoidal time embedding, and every layer first mixes the slots with a Fourier
convolution along time, then applies an EGNN layer to every slot::

    h ← h + LeakyReLU(SpectralConv_t(h))                        (invariant features)
    [x − c, v] ← [x − c, v] + SpectralConv_t([x − c, v]),  c = input centroid   (vectors)
    x, h ← EGNN_k(x, h, v)                                       (f_eq: E(3)-equivariant)

``SpectralConv_t`` keeps the ``num_modes`` lowest temporal frequencies and mixes channels with
complex weights; on vectors it mixes the two channels (x − c, v) per coordinate, so it commutes
with rotations and translations. The EGNN layer (``EGNN_Layer`` of the EGNO code base) is::

    m_ij = φ_e(‖x_i − x_j‖², h_i, h_j, e_ij)                  e_ij = [edge type, ‖x⁰_i − x⁰_j‖²]
    x_i ← x_i + φ_v(h_i) v_i + clamp(mean_j (x_i − x_j) φ_x(m_ij), ±100)
    h_i ← φ_h(h_i, Σ_j m_ij)

with messages aggregated at ``edge_index[0]`` (the skeleton graph is symmetric).

**ACE** (``ace_branches=True``, 2 γ per layer, 12 in total, γ_h first as in the official code):

* h-stream, chained from layer to layer (:meth:`HomotopicBranch.forward_stream`):
  h_pos⁰ = Linear(34→H)(raw node input with its time embedding),
  h_pos^k = SN-Linear(H→H)(BatchNorm(H)(h_pos^{k−1})),  h ← h_new + γ_h,k · h_pos^k.
  Its input is invariant, so it does not break rotation equivariance (it does break the
  equivariance that the height feature already breaks, nothing more).
* x-stream from the raw coordinates after the time convolution: x_pos = Linear(3→3)(x) (one
  Linear **shared** by all layers), then BatchNorm(3) → SN-Linear(3→H) → SiLU → BatchNorm(H) →
  SN-Linear(H→3); x ← x_new + γ_x,k · x_pos. It breaks rotation and translation equivariance.
* SN = spectral normalisation (PyTorch parametrisation, 5 power iterations) on every f_neq
  Linear except the two entry layers.

In equivariant mode (or after :func:`ace.core.homotopic.prune`) no branch runs and the model is
exactly EGNO: equivariant to rotations about the vertical axis and horizontal translations (the
height feature Z/Z_max is invariant to those only). With the heights passed in the batch
(``batch["height"]``, :data:`HEIGHT_KEY`) and kept fixed, as official EGNO leaves Z unrotated, it
is equivariant to every rotation: the paper's equivariance-error protocol (Fig. 4).

**Parameter counts** (defaults): 1,192,684 vanilla and after pruning; 1,304,762 with ACE
(h-chain 6 × 16,768 = 100,608; x-chain 6 × 1,161 = 6,966; entry layers 4,480 + 12; 12 γ). The
complex Fourier weights are stored as real pairs, so each counts twice, as in the official model.
Table 3's vanilla figure, 1,197,176, is the official model with the ACE entry layers built but
unused (1,192,684 + 4,492).

**Layout and speed.** Every tensor is node-major, ``[nodes or edges, T, B, C]``: the MoCap graph is
the same for every sample and time slot, so a gather over its 130 edges is one ``index_select`` of
whole contiguous rows and an aggregation one ``index_add``. The first edge-MLP layer is split per
endpoint (W [r; h_i; h_j; e] = w_r r + (W_i h)_i + (W_j h)_j + W_e e), so that its big products
run on 31 nodes instead of 130 edges, and the edge batch is assembled in place. The Fourier time
convolution runs in real arithmetic (:func:`_real_dft_bases`: the DFT matrices of the kept modes
and real block products) instead of FFTs on complex tensors, which also spares the transposed
copies an FFT along dim 1 needs (about 1.1× per training step on the 2-core CPU). These are
exact rewrites of the same function: ``tests/test_egno.py`` checks outputs and gradients against
a literal edge-list evaluation with FFTs (``scripts/egno_reference.py``) in float64, and
``scripts/bench_mocap.py`` times both (and, with ``--profile``, says where the time goes).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ace.core.homotopic import HomotopicBranch
from ace.models.caches import DeviceCaches

__all__ = ["EGNO", "EGNNLayer", "SpectralTimeConv", "timestep_embedding", "SkeletonGraphOps",
           "Linear", "HEIGHT_KEY"]

#: optional batch key: the heights [B, N] (y of the input positions, raw units) from which EGNO's
#: node feature Z/Z_max is computed. Absent: ``loc[..., 1]``. MoCap's equivariance protocol
#: (:class:`ace.data.mocap.MoCapFixedHeightRotation`) passes the unrotated heights, so that Z stays
#: fixed under rotations as in the paper (official EGNO does not rotate Z).
HEIGHT_KEY = "height"


def timestep_embedding(t: torch.Tensor, dim: int, max_positions: int = 10_000) -> torch.Tensor:
    """Sinusoidal embedding [len(t), dim]: [sin(t ω_k), cos(t ω_k)], ω_k = max_positions^(−k/(d/2−1))."""
    half = dim // 2
    scale = math.log(max_positions) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float64) * -scale)
    angles = t.to(torch.float64)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _real_dft_bases(steps: int, num_modes: int
                    ) -> tuple[torch.Tensor, torch.Tensor, int, list[int]]:
    """``rfft`` (modes 0 … M−1) and ``irfft`` (n = ``steps``, other modes zero) as real matrices.

    Modes are *real* (DC, and Nyquist for even T: X_m is real and a real inverse transform ignores
    the imaginary part of Y_m) or *complex* (0 < m < T/2). With the R real modes first, then the K
    complex ones, φ_m = 2πm/T (float64):

    * ``forward`` [M + K, T]: rows cos(φ_m t) for all M modes, then −sin(φ_m t) for the complex
      ones: Re X_m and Im X_m of X_m = Σ_t x_t e^{−iφ_m t};
    * ``inverse`` [T, M + K]: y_t = Σ_m (c_m/T)(Re Y_m cos φ_m t − Im Y_m sin φ_m t), c_m = 1 for
      real and 2 for complex modes (a mode and its conjugate), which is ``irfft``.

    Returns them, R and the mode order.
    """
    modes = [m for m in range(num_modes) if m == 0 or 2 * m == steps]  # real: DC, Nyquist
    real = len(modes)
    complex_modes = [m for m in range(num_modes) if 0 < 2 * m < steps]
    modes += complex_modes
    t = torch.arange(steps, dtype=torch.float64)
    phase = 2 * math.pi * torch.tensor(modes, dtype=torch.float64)[:, None] * t / steps
    mult = torch.tensor([1.0] * real + [2.0] * len(complex_modes), dtype=torch.float64)
    forward = torch.cat([torch.cos(phase), -torch.sin(phase[real:])])
    inverse = torch.cat([torch.cos(phase) * mult[:, None],
                         -2.0 * torch.sin(phase[real:])]).t() / steps
    return forward, inverse, real, modes


class SpectralTimeConv(DeviceCaches):
    """Fourier convolution along time (dim 1 of ``[N, T, ...,  C_in]``) on the lowest modes.

    ``rfft`` over T, keep modes 0 … ``num_modes``−1, multiply by complex weights
    ``W[c_in, c_out, mode]`` (stored as real pairs), ``irfft`` back to T points (the other modes
    are zero). ``residual``: return ``x + act(conv(x))``.

    Computed in real arithmetic, the same linear map (:func:`_real_dft_bases`): one small product
    reduces the T time slots to the mode coefficients, real block matrices mix the channels —
    [Re X | Im X] [[W_r, W_i], [−W_i, W_r]] for a complex mode, Re X W_r for DC, whose imaginary
    parts are zero or ignored — and one product expands the modes back to T slots. No FFT, no
    complex tensors, no transposed copies of the [N, T, …] tensor, and the DC mode costs a
    quarter of a complex one.
    """

    _device_caches = ("_bases",)  # see DeviceCaches

    def __init__(self, in_channels: int, out_channels: int, num_modes: int, init_scale: float,
                 activation: nn.Module | None = None) -> None:
        super().__init__()
        self.num_modes = num_modes
        self.weight = nn.Parameter(init_scale * torch.rand(in_channels, out_channels, num_modes, 2))
        self.activation = activation
        self._bases: dict = {}

    def bases(self, steps: int, like: torch.Tensor):
        key = (steps, like.dtype, like.device)
        if key not in self._bases:
            fwd, inv, real, modes = _real_dft_bases(steps, self.num_modes)
            self._bases[key] = (fwd.to(like), inv.to(like), real, modes)
        return self._bases[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.shape[1]
        if self.num_modes > steps // 2 + 1:
            raise ValueError(f"num_modes={self.num_modes} > {steps // 2 + 1} frequencies of "
                             f"{steps} time steps")
        fwd, inv, real, modes = self.bases(steps, x)
        n, c_in = x.shape[0], x.shape[-1]
        M = len(modes)  # = num_modes
        K = fwd.shape[0] - M  # complex modes
        # mode coefficients, mode-major: [M + K, rows = N·(the middle dims), C_in]
        coeff = torch.matmul(fwd, x.reshape(n, steps, -1)).transpose(0, 1).reshape(M + K, -1, c_in)
        w = self.weight.to(x.dtype)
        if modes != list(range(M)):
            w = w[:, :, modes]
        wr, wi = w[..., 0].permute(2, 0, 1), w[..., 1].permute(2, 0, 1)  # [M, C_in, C_out]
        mixed = []
        if real:  # Re Y = Re X W_r
            mixed.append(torch.bmm(coeff[:real], wr[:real]))
        if K:  # [Re Y | Im Y] = [Re X | Im X] [[W_r, W_i], [−W_i, W_r]]
            pair = torch.cat([coeff[real:M], coeff[M:]], dim=-1)
            block = torch.cat([torch.cat([wr[real:], wi[real:]], dim=2),
                               torch.cat([-wi[real:], wr[real:]], dim=2)], dim=1)
            re_im = torch.bmm(pair, block)
            mixed.extend(re_im.chunk(2, dim=-1))
        mixed = torch.cat(mixed) if len(mixed) > 1 else mixed[0]  # [M + K, rows, C_out]
        c_out = mixed.shape[-1]
        out = torch.matmul(inv, mixed.view(M + K, n, -1).transpose(0, 1))  # [N, T, R_out]
        out = out.view(*x.shape[:-1], c_out)
        if self.activation is not None:
            out = self.activation(out)
        return x + out


class SkeletonGraphOps:
    """Gathers and aggregations over one sample's graph, shared by all samples and time slots.

    Node tensors are ``[N, ...]`` and edge tensors ``[E, ...]`` (node-/edge-major), so a gather is
    one ``index_select`` of whole contiguous rows and an aggregation one ``index_add``.
    """

    def __init__(self, edge_index: torch.Tensor, num_nodes: int, dtype: torch.dtype) -> None:
        if edge_index.dim() != 2 or edge_index.shape[0] != 2 or edge_index.numel() == 0:
            raise ValueError(f"batch['edge_index'] must be one sample's graph [2, E], got shape "
                             f"{tuple(edge_index.shape)}")
        # checked where it costs nothing (the loaders' CPU tensors, tests); on a GPU the check
        # would read two values back to the host every forward (an out-of-range id still fails
        # there, in index_select)
        if edge_index.device.type == "cpu" and (
                int(edge_index.max()) >= num_nodes or int(edge_index.min()) < 0):
            raise ValueError(
                f"batch['edge_index'] holds node ids up to {int(edge_index.max())} but samples have "
                f"{num_nodes} nodes: EGNO expects the per-sample graph (ids 0…{num_nodes - 1}, the "
                f"same for every sample), not a batched one")
        self.i, self.j = edge_index[0], edge_index[1]
        self.num_nodes = num_nodes
        degree = torch.bincount(self.i, minlength=num_nodes).clamp(min=1).to(dtype)
        self.inv_degree = 1.0 / degree

    def at_i(self, y: torch.Tensor) -> torch.Tensor:
        return y.index_select(0, self.i)

    def at_j(self, y: torch.Tensor) -> torch.Tensor:
        return y.index_select(0, self.j)

    def diff(self, x: torch.Tensor) -> torch.Tensor:
        """x_i − x_j for every edge."""
        return self.at_i(x) - self.at_j(x)

    def sum_at_i(self, m: torch.Tensor) -> torch.Tensor:
        """Σ over the edges (i, j) of m_ij, at node i."""
        out = m.new_zeros(self.num_nodes, *m.shape[1:])
        return out.index_add(0, self.i, m)

    def mean_at_i(self, m: torch.Tensor) -> torch.Tensor:
        """Mean over the edges (i, j) of m_ij, at node i (0 at isolated nodes)."""
        return self.sum_at_i(m) * self.inv_degree.view(-1, *(1,) * (m.dim() - 1))


class Linear(nn.Linear):
    """``nn.Linear`` computed as ``x @ Wᵀ + b``: the same function and parameters, but on CPU
    PyTorch's fused ``addmm`` runs about 2× slower than the plain product plus a broadcast add
    for the [7800, 128] edge batches of this model (measured with torch 2.13, MKL)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.matmul(x, self.weight.t())
        if self.bias is not None:
            out += self.bias  # in place on a fresh product: one [E, T, B, H] buffer less
        return out


def _mlp(sizes: list[int], last_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(Linear(a, b))
        if k < len(sizes) - 2 or last_activation:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class EGNNLayer(nn.Module):
    """One EGNN layer with velocity (EGNO's ``EGNN_Layer``, ``with_v``); see the module docstring.

    ``edge_mlp``'s first Linear reads ``[‖x_i − x_j‖², h_i, h_j, e_ij]`` in that column order.
    """

    def __init__(self, hidden: int, in_edge_features: int = 2, coord_clamp: float = 100.0) -> None:
        super().__init__()
        self.hidden = hidden
        self.coord_clamp = coord_clamp
        self.edge_mlp = _mlp([1 + 2 * hidden + in_edge_features, hidden, hidden],
                             last_activation=True)
        self.coord_mlp = _mlp([hidden, hidden, 1])
        self.vel_mlp = _mlp([hidden, hidden, 1])
        self.node_mlp = _mlp([2 * hidden, hidden, hidden])

    def forward(self, x: torch.Tensor, h: torch.Tensor, v: torch.Tensor, edge_features: torch.Tensor,
                graph: SkeletonGraphOps) -> tuple[torch.Tensor, torch.Tensor]:
        """x, v [N, T, B, 3]; h [N, T, B, H]; edge_features [E, 1, B, F] → (x', h')."""
        H = self.hidden
        first = self.edge_mlp[0]
        w = first.weight
        rij = graph.diff(x)  # [E, T, B, 3]
        radial = rij.pow(2).sum(-1, keepdim=True)
        hw_i = torch.matmul(h, w[:, 1 : 1 + H].t())
        hw_j = torch.matmul(h, w[:, 1 + H : 1 + 2 * H].t())
        edge_term = F.linear(edge_features, w[:, 1 + 2 * H :], first.bias)  # [E, 1, B, H]
        # In place on the fresh gather: the edge batch is allocated twice, not six times.
        pre = graph.at_i(hw_i).add_(graph.at_j(hw_j)).addcmul_(radial, w[:, 0]).add_(edge_term)
        message = self.edge_mlp[2:](F.silu(pre))  # [E, T, B, H] (edge_mlp[1] is that SiLU)
        force = graph.mean_at_i(rij * self.coord_mlp(message))
        force = force.clamp(-self.coord_clamp, self.coord_clamp)
        x = x + self.vel_mlp(h) * v + force
        h = self.node_mlp(torch.cat([h, graph.sum_at_i(message)], dim=-1))
        return x, h


class Pointwise(nn.Module):
    """Apply a per-row module (Linear/BatchNorm1d chain) to ``[..., C]`` by flattening the leading
    dims: BatchNorm statistics run over all nodes, time slots and samples, as the official model."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x.reshape(-1, x.shape[-1]))
        return out.view(*x.shape[:-1], out.shape[-1])


def _sn_linear(a: int, b: int, iterations: int) -> nn.Module:
    return spectral_norm(nn.Linear(a, b), n_power_iterations=iterations)


class EGNO(nn.Module):
    """EGNO on a MoCap batch (``loc``, ``vel`` [B, N, 3], ``edge_index`` [2, E], ``edge_type`` [E])
    → predicted positions [B, T, N, 3] at the T target frames.

    Args:
        num_layers, hidden, num_modes, num_timesteps, time_emb_dim: EGNO settings (§4.2: 6, 128,
            2, 5, 32).
        in_node_features: 2 ([‖v⁰‖, Z/Z_max], Z = height/10, max over the batch; the height is
            ``loc[..., 1]``, or ``batch[HEIGHT_KEY]`` when given).
        in_edge_features: 2 ([edge type, squared input distance]).
        ace_branches: add the ACE h- and x-streams (12 γ, init 1).
        spectral_norm_iterations: power iterations of the spectral norm on the f_neq Linears.
    """

    def __init__(
        self,
        num_layers: int = 6,
        hidden: int = 128,
        num_modes: int = 2,
        num_timesteps: int = 5,
        time_emb_dim: int = 32,
        in_node_features: int = 2,
        in_edge_features: int = 2,
        ace_branches: bool = False,
        spectral_norm_iterations: int = 5,
    ) -> None:
        super().__init__()
        if num_modes > num_timesteps // 2 + 1:
            raise ValueError(f"model.net.num_modes={num_modes} exceeds the "
                             f"{num_timesteps // 2 + 1} frequencies of {num_timesteps} time steps")
        self.num_timesteps = num_timesteps
        self.time_emb_dim = time_emb_dim
        node_in = in_node_features + time_emb_dim
        self.embedding = nn.Linear(node_in, hidden)
        self.layers = nn.ModuleList(EGNNLayer(hidden, in_edge_features) for _ in range(num_layers))
        self.time_conv_h = nn.ModuleList(
            SpectralTimeConv(hidden, hidden, num_modes, 1.0 / (hidden * hidden), nn.LeakyReLU())
            for _ in range(num_layers))
        self.time_conv_x = nn.ModuleList(
            SpectralTimeConv(2, 2, num_modes, 0.1) for _ in range(num_layers))
        self.register_buffer(
            "time_embedding",
            timestep_embedding(torch.arange(num_timesteps), time_emb_dim).to(torch.get_default_dtype()),
            persistent=False)
        if ace_branches:
            it = spectral_norm_iterations
            h_entry = [nn.Linear(node_in, hidden)]
            self.h_branches = nn.ModuleList(
                HomotopicBranch(Pointwise(*(h_entry if k == 0 else []), nn.BatchNorm1d(hidden),
                                          _sn_linear(hidden, hidden, it)))
                for k in range(num_layers))
            x_entry = nn.Linear(3, 3)  # one module, shared by every x branch
            self.x_branches = nn.ModuleList(
                HomotopicBranch(Pointwise(x_entry, nn.BatchNorm1d(3), _sn_linear(3, hidden, it),
                                          nn.SiLU(), nn.BatchNorm1d(hidden),
                                          _sn_linear(hidden, 3, it)))
                for _ in range(num_layers))
        else:
            self.h_branches = self.x_branches = None

    def node_features(self, loc: torch.Tensor, vel: torch.Tensor,
                      height: torch.Tensor | None = None) -> torch.Tensor:
        """[B, N, 2]: ‖v⁰‖ and Z/Z_max with Z = height/10 and the max over the whole batch; the
        height is ``loc``'s y coordinate unless given (``batch[HEIGHT_KEY]``, kept fixed by the
        equivariance protocol)."""
        if height is None:
            height = loc[..., 1]
        elif height.shape != loc.shape[:-1]:
            raise ValueError(f"batch[{HEIGHT_KEY!r}] must be the heights [B, N] = "
                             f"{tuple(loc.shape[:-1])}, got {tuple(height.shape)}")
        height = height / 10
        return torch.stack([vel.norm(dim=-1), height / height.max()], dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, T, N, 3] from ``loc``, ``vel``, ``edge_index``, ``edge_type`` and, if present,
        ``batch[HEIGHT_KEY]`` (the heights of the height feature; default ``loc[..., 1]``)."""
        loc, vel = batch["loc"], batch["vel"]
        edge_index, edge_type = batch["edge_index"], batch["edge_type"]
        B, N, _ = loc.shape
        T = self.num_timesteps
        graph = SkeletonGraphOps(edge_index, N, loc.dtype)

        # Inputs, node-major [N, T, B, C]: every time slot starts from the input state.
        nodes = self.node_features(loc, vel, batch.get(HEIGHT_KEY)).transpose(0, 1)  # [N, B, 2]
        temb = self.time_embedding.to(loc.dtype)
        h_in = torch.cat([nodes.unsqueeze(1).expand(N, T, B, nodes.shape[-1]),
                          temb.view(1, T, 1, -1).expand(N, T, B, temb.shape[-1])], dim=-1)
        x = loc.transpose(0, 1).unsqueeze(1).expand(N, T, B, 3)
        v = vel.transpose(0, 1).unsqueeze(1).expand(N, T, B, 3)
        centroid = loc.mean(dim=1).view(1, 1, B, 3)
        d2 = graph.diff(loc.transpose(0, 1)).pow(2).sum(-1)  # [E, B]
        edge_features = torch.stack(
            [edge_type.to(loc.dtype).view(-1, 1).expand_as(d2), d2], dim=-1).unsqueeze(1)

        h = self.embedding(h_in)
        h_stream = h_in if self.h_branches is not None else None
        for k, layer in enumerate(self.layers):
            h = self.time_conv_h[k](h)
            xv = self.time_conv_x[k](torch.stack([x - centroid, v], dim=-1))
            x, v = xv[..., 0] + centroid, xv[..., 1]
            x_new, h_new = layer(x, h, v, edge_features, graph)
            if self.x_branches is not None:
                x_new = self.x_branches[k](x_new, x)
            if h_stream is not None:  # None: no branches, equivariant mode or pruned
                h_new, h_stream = self.h_branches[k].forward_stream(h_new, h_stream)
            x, h = x_new, h_new
        return x.permute(2, 1, 0, 3)  # [B, T, N, 3]
