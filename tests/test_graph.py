"""The pure-torch radius / kNN graphs against brute force (``ace.models.graph``)."""

from __future__ import annotations

import itertools

import pytest
import torch

from ace.models.graph import intra_graph_pairs, knn_graph, radius_graph


def _random_batch(counts, scale=2.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    batch = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    pos = torch.randn(int(batch.shape[0]), 3, generator=g, dtype=dtype) * scale
    return pos, batch


def _brute_force_radius(pos, batch, r, cap, loop=False):
    """Per target: all same-graph sources within r, the ``cap`` nearest (ties: lower index)."""
    edges = set()
    n = pos.shape[0]
    for t in range(n):
        cands = []
        for s in range(n):
            if batch[s] != batch[t] or (s == t and not loop):
                continue
            d = float((pos[s] - pos[t]).norm())
            if d <= r:
                cands.append((d, s))
        cands.sort()
        for _, s in cands[: cap if cap is not None else len(cands)]:
            edges.add((s, t))
    return edges


def _as_set(edge_index):
    return set(map(tuple, edge_index.t().tolist()))


@pytest.mark.parametrize("cap", [None, 3, 32])
@pytest.mark.parametrize("loop", [False, True])
def test_radius_graph_matches_brute_force(cap, loop):
    pos, batch = _random_batch([3, 7, 1, 12, 5])
    edge_index = radius_graph(pos, 2.5, batch, max_num_neighbors=cap, loop=loop)
    assert _as_set(edge_index) == _brute_force_radius(pos, batch, 2.5, cap, loop)
    assert edge_index.shape[1] == len(_as_set(edge_index))  # no duplicate edges


def test_radius_graph_respects_batch_boundaries():
    # two copies of the same molecule on top of each other: no edge may cross graphs
    pos, _ = _random_batch([6])
    pos = torch.cat([pos, pos + 1e-3])
    batch = torch.tensor([0] * 6 + [1] * 6)
    src, dst = radius_graph(pos, 100.0, batch, max_num_neighbors=None)
    assert torch.equal(batch[src], batch[dst])
    assert src.numel() == 2 * 6 * 5  # complete graphs within each molecule, nothing across


def test_radius_graph_cap_keeps_the_nearest():
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0.5, 0, 0], [3.0, 0, 0], [2.0, 0, 0]])
    src, dst = radius_graph(pos, 10.0, None, max_num_neighbors=2)
    assert sorted(src[dst == 0].tolist()) == [1, 2]  # distances 1 and 0.5, not 2 or 3
    assert int(torch.bincount(dst).max()) == 2


def test_radius_graph_output_is_grouped_by_target():
    pos, batch = _random_batch([9, 4], seed=3)
    src, dst = radius_graph(pos, 3.0, batch, max_num_neighbors=4)
    assert bool((dst[1:] >= dst[:-1]).all())
    same_target = dst[1:] == dst[:-1]
    assert bool((src[1:][same_target] > src[:-1][same_target]).all())


@pytest.mark.parametrize("k", [1, 3, 8])
def test_knn_graph_matches_brute_force(k):
    pos, batch = _random_batch([5, 9, 2], seed=1)
    edge_index = knn_graph(pos, k, batch)
    expected = _brute_force_radius(pos, batch, float("inf"), k)
    assert _as_set(edge_index) == expected
    degree = torch.bincount(edge_index[1], minlength=pos.shape[0])
    sizes = torch.bincount(batch)[batch]
    assert torch.equal(degree, torch.clamp(sizes - 1, max=k))


def test_intra_graph_pairs_enumerates_each_graph_completely():
    batch = torch.tensor([0, 0, 1, 1, 1, 2])
    src, dst = intra_graph_pairs(batch)
    expected = {(s, t) for t in range(6) for s in range(6) if batch[s] == batch[t]}
    assert set(zip(src.tolist(), dst.tolist())) == expected
    assert src.numel() == 2 * 2 + 3 * 3 + 1


def test_unsorted_batch_and_bad_shapes_are_refused():
    pos = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="sorted"):
        radius_graph(pos, 1.0, torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="shape"):
        radius_graph(pos, 1.0, torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="k must be"):
        knn_graph(pos, 0)


def test_empty_and_isolated_inputs():
    assert radius_graph(torch.zeros(0, 3), 1.0).shape == (2, 0)
    far = torch.tensor([[0.0, 0, 0], [10.0, 0, 0]])
    assert radius_graph(far, 1.0).shape == (2, 0)
    for perm in itertools.permutations(range(3)):
        pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.5, 0, 0]])[list(perm)]
        assert radius_graph(pos, 1.2).shape[1] == 2  # only the 0–1 pair, both directions
