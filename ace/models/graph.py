"""Radius and kNN graphs in plain PyTorch (no torch-cluster / pyg-lib; ``ecosystem_notes.md`` §1.2).

PyG 2.8.1 routes ``radius_graph`` / ``knn_graph`` to pyg-lib, which is not on PyPI. These
replacements enumerate, for every node, all nodes *of the same graph* (Σ_g n_g² pairs, not N²: a
batch of 128 QM9 molecules has ~40k pairs), keep the pairs within the radius and cap each target's
neighbours at the nearest ``max_num_neighbors`` (ties: lower source index first).

Edges are returned as ``edge_index = [source, target]`` (PyG's ``source_to_target`` flow: messages
go from ``edge_index[0]`` to ``edge_index[1]``), grouped by target, sources ascending. The selection
is not differentiable; callers compute differentiable distances from ``pos`` themselves.
"""

from __future__ import annotations

import torch

__all__ = ["intra_graph_pairs", "radius_graph", "knn_graph", "keep_nearest"]


def _check_batch(batch: torch.Tensor | None, num_nodes: int, device) -> torch.Tensor:
    if batch is None:
        return torch.zeros(num_nodes, dtype=torch.long, device=device)
    if batch.shape != (num_nodes,):
        raise ValueError(f"batch must have shape [{num_nodes}], got {tuple(batch.shape)}")
    if num_nodes > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("batch must be sorted (nodes of each graph contiguous), as in PyG batches")
    return batch


def intra_graph_pairs(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs (source, target) of nodes in the same graph, self pairs included.

    Grouped by target node, sources ascending. ``batch`` must be sorted.
    """
    num_nodes = batch.shape[0]
    device = batch.device
    if num_nodes == 0:
        empty = torch.empty(0, dtype=torch.long, device=device)
        return empty, empty
    counts = torch.bincount(batch)
    first = torch.cumsum(counts, 0) - counts  # first node of each graph
    size = counts[batch]  # per target node: the number of candidate sources
    dst = torch.repeat_interleave(torch.arange(num_nodes, device=device), size)
    offsets = torch.cumsum(size, 0) - size
    within = torch.arange(dst.shape[0], device=device) - torch.repeat_interleave(offsets, size)
    src = first[batch][dst] + within
    return src, dst


def keep_nearest(dist: torch.Tensor, dst: torch.Tensor, k: int, num_nodes: int) -> torch.Tensor:
    """Indices of the edges that are among the ``k`` nearest of their target, in input order.

    ``dist`` and ``dst`` describe candidate edges grouped by target with ascending sources (as
    produced by :func:`intra_graph_pairs`); ties in distance keep the lower source index.
    """
    by_dist = torch.argsort(dist, stable=True)
    order = by_dist[torch.argsort(dst[by_dist], stable=True)]  # by target, then distance
    counts = torch.bincount(dst, minlength=num_nodes)
    group_start = (torch.cumsum(counts, 0) - counts)[dst[order]]
    rank = torch.arange(order.shape[0], device=dist.device) - group_start
    return order[rank < k].sort().values


@torch.no_grad()
def radius_graph(
    pos: torch.Tensor,
    r: float,
    batch: torch.Tensor | None = None,
    max_num_neighbors: int | None = 32,
    loop: bool = False,
) -> torch.Tensor:
    """Edges ``[2, E]`` (source, target) between nodes of the same graph with ‖x_s − x_t‖ ≤ r.

    Each target keeps at most ``max_num_neighbors`` sources, the nearest ones (``None``: no cap).
    ``loop=True`` also keeps self edges (distance 0).
    """
    if pos.dim() != 2:
        raise ValueError(f"pos must be [N, D], got {tuple(pos.shape)}")
    batch = _check_batch(batch, pos.shape[0], pos.device)
    src, dst = intra_graph_pairs(batch)
    dist = (pos.index_select(0, src) - pos.index_select(0, dst)).norm(dim=-1)
    mask = dist <= r
    if not loop:
        mask &= src != dst
    src, dst, dist = src[mask], dst[mask], dist[mask]
    if max_num_neighbors is not None and dst.numel():
        degree = torch.bincount(dst, minlength=pos.shape[0])
        if int(degree.max()) > max_num_neighbors:
            keep = keep_nearest(dist, dst, max_num_neighbors, pos.shape[0])
            src, dst = src[keep], dst[keep]
    return torch.stack((src, dst))


@torch.no_grad()
def knn_graph(
    x: torch.Tensor, k: int, batch: torch.Tensor | None = None, loop: bool = False
) -> torch.Tensor:
    """Edges ``[2, E]`` (source, target): each target's ``k`` nearest nodes of its own graph.

    Graphs with fewer than ``k + 1`` nodes give every other node (fewer than ``k`` edges).
    """
    if x.dim() != 2:
        raise ValueError(f"x must be [N, D], got {tuple(x.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    batch = _check_batch(batch, x.shape[0], x.device)
    src, dst = intra_graph_pairs(batch)
    if not loop:
        mask = src != dst
        src, dst = src[mask], dst[mask]
    dist = (x.index_select(0, src) - x.index_select(0, dst)).pow(2).sum(-1)
    keep = keep_nearest(dist, dst, k, x.shape[0])
    return torch.stack((src[keep], dst[keep]))
