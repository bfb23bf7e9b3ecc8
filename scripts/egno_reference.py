"""A literal edge-list evaluation of :class:`ace.models.egno.EGNO`, as the EGNO code base computes it.

Written from the published description of EGNO/EGNN (``experiments.md`` §4.2), not from
:mod:`ace.models.egno`: time-major ``[T·B·N, C]`` node rows with the graph copied to every sample
and time slot, per-edge concatenation ``[‖x_i − x_j‖², h_i, h_j, e_ij]`` fed to the whole first
edge Linear, ``scatter_add`` aggregation with a count of ones for the mean, and ``nn.Linear`` /
``nn.Sequential`` calls. It reads the parameters of an ``EGNO`` instance, so

* ``tests/test_egno.py`` checks that the optimised model computes the same function (float64),
  and
* ``scripts/bench_mocap.py`` times it against the optimised model in one run (the speed-up at
  identical math).

It lives under ``scripts/`` so that the benchmark does not import from ``tests/``; the tests load it
from here (``sys.path``), as the scripts load ``bench_common``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ace.models.egno import EGNO


def _aggregate(message: torch.Tensor, row: torch.Tensor, num_nodes: int, mean: bool) -> torch.Tensor:
    index = row.unsqueeze(-1).expand(-1, message.shape[1])
    out = message.new_zeros(num_nodes, message.shape[1]).scatter_add_(0, index, message)
    if mean:
        count = message.new_zeros(num_nodes, message.shape[1]).scatter_add_(
            0, index, torch.ones_like(message))
        out = out / count.clamp(min=1)
    return out


def _seq(seq: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    for layer in seq:
        x = F.linear(x, layer.weight, layer.bias) if isinstance(layer, torch.nn.Linear) else layer(x)
    return x


def _spectral(conv, x: torch.Tensor) -> torch.Tensor:
    """x [T, M, ..., C] → conv along dim 0 (EGNO's ``SpectralConv1d``)."""
    steps = x.shape[0]
    ft = torch.fft.rfftn(x, dim=[0])[: conv.num_modes]
    w = torch.view_as_complex(conv.weight)
    out = torch.fft.irfftn(torch.einsum("m...i,iom->m...o", ft, w), s=[steps], dim=[0])
    if conv.activation is not None:
        out = conv.activation(out)
    return x + out


def _egnn_layer(layer, x, h, v, rows, cols, edge_attr):
    n = x.shape[0]
    rij = x[rows] - x[cols]
    scalars = torch.cat([(rij * rij).sum(-1, keepdim=True), h[rows], h[cols], edge_attr], dim=-1)
    message = _seq(layer.edge_mlp, scalars)
    force = _aggregate(rij * _seq(layer.coord_mlp, message), rows, n, mean=True)
    force = torch.clamp(force, min=-layer.coord_clamp, max=layer.coord_clamp)
    x = x + _seq(layer.vel_mlp, h) * v + force
    h = _seq(layer.node_mlp, torch.cat([h, _aggregate(message, rows, n, mean=False)], dim=-1))
    return x, h


def reference_forward(model: EGNO, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The same function as ``model(batch)`` → [B, T, N, 3], computed edge by edge."""
    loc, vel = batch["loc"], batch["vel"]
    B, N, _ = loc.shape
    T = model.num_timesteps
    BN = B * N
    edges = batch["edge_index"]
    offset = (torch.arange(B) * N).view(B, 1, 1)
    edges_b = torch.cat(list(edges.unsqueeze(0) + offset), dim=-1)  # [2, B·E]
    etype = batch["edge_type"].to(loc.dtype).repeat(B).unsqueeze(-1)
    loc_f, vel_f = loc.reshape(BN, 3), vel.reshape(BN, 3)
    # the heights of Z: batch["height"] (EGNO's HEIGHT_KEY) when given, else the input's y
    height = batch["height"].reshape(BN, 1) if "height" in batch else loc_f[:, 1:2]
    z = height / 10
    nodes = torch.cat([vel_f.norm(dim=-1, keepdim=True), z / z.max()], dim=-1)
    r0, c0 = edges_b
    edge_attr = torch.cat([etype, ((loc_f[r0] - loc_f[c0]) ** 2).sum(1, keepdim=True)], dim=1)

    temb = model.time_embedding.to(loc.dtype)
    h = torch.cat([nodes.unsqueeze(0).repeat(T, 1, 1), temb.unsqueeze(1).repeat(1, BN, 1)], -1)
    h = h.view(T * BN, -1)
    h_in = h
    h = F.linear(h, model.embedding.weight, model.embedding.bias)
    x, v = loc_f.repeat(T, 1), vel_f.repeat(T, 1)
    centroid = loc.mean(dim=1, keepdim=True).repeat(1, N, 1).view(BN, 3).repeat(T, 1)
    shift = (torch.arange(T) * BN).repeat_interleave(edges_b.shape[1])
    rows, cols = edges_b[0].repeat(T) + shift, edges_b[1].repeat(T) + shift
    edge_attr = edge_attr.repeat(T, 1)

    relaxed = model.h_branches is not None and model.h_branches[0].relaxed
    h_pos = h_in
    for k, layer in enumerate(model.layers):
        hidden = h.shape[-1]
        h = _spectral(model.time_conv_h[k], h.view(T, BN, hidden)).reshape(T * BN, hidden)
        xv = torch.stack([x - centroid, v], dim=-1).view(T, BN, 3, 2)
        xv = _spectral(model.time_conv_x[k], xv)
        x, v = xv[..., 0].reshape(T * BN, 3) + centroid, xv[..., 1].reshape(T * BN, 3)
        x_new, h_new = _egnn_layer(layer, x, h, v, rows, cols, edge_attr)
        if relaxed:
            hb, xb = model.h_branches[k], model.x_branches[k]
            h_pos = hb.f_neq(h_pos)
            x_new = x_new + xb.gamma * xb.f_neq(x)
            h_new = h_new + hb.gamma * h_pos
        x, h = x_new, h_new
    return x.view(T, B, N, 3).permute(1, 0, 2, 3)
