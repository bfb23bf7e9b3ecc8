"""MoCap samples (``experiments.md`` §4.1): the split's arrays, the skeleton graph, the dataset.

* :func:`build_split` — the samples of one split, exactly as §4.1 (V = X[1:] − X[:−1], X drops its
  last frame; the first ⌊max_samples/#trials⌋ starts per trial in the split file's order; inputs
  at frame s, targets at frames s + Δ − T + 1 … s + Δ, i.e. s+26 … s+30 for Δ = 30, T = 5).
* :func:`skeleton_graph` — 31 nodes, 60 one-hop (type 1) + 70 two-hop (type 2) directed edges.
* :class:`MoCapDataset` — batches are dicts of stacked tensors:

  ========================  ================  =============================================
  key                       shape             meaning
  ========================  ================  =============================================
  ``loc``                   [B, 31, 3]        positions at frame s (raw units, y vertical)
  ``vel``                   [B, 31, 3]        V[s] = X[s+1] − X[s]
  ``target_loc``            [B, T, 31, 3]     positions at frames s+Δ−T+1 … s+Δ
  ``target_vel``            [B, T, 31, 3]     velocities V at the same frames
  ``edge_index``            [2, 130] long     the skeleton graph, *per sample* (node ids 0…30,
                                              the same for every sample — not offset/batched)
  ``edge_type``             [130] long        1 = one-hop, 2 = two-hop
  ========================  ================  =============================================

  The graph travels in every batch (the same two small tensors, not copied per sample) so that a
  model builds all its features from the batch inside ``forward`` and Lightning moves it to the
  device with the rest; it is also exposed as ``datamodule.graph``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ace.data.errors import DataIntegrityError
from ace.data.mocap.files import NUM_NODES

__all__ = ["TENSOR_KEYS", "target_frames", "build_split", "skeleton_graph", "MoCapDataset"]

Batch = dict[str, torch.Tensor]

TENSOR_KEYS = ("loc", "vel", "target_loc", "target_vel")


def target_frames(delta_frame: int, num_timesteps: int) -> np.ndarray:
    """Offsets of the target frames from the start frame: Δ − T + 1 … Δ (26 … 30 by default)."""
    return np.arange(delta_frame - num_timesteps + 1, delta_frame + 1)


def build_split(
    X: Sequence[np.ndarray],
    split: dict[int, np.ndarray],
    max_samples: int,
    delta_frame: int = 30,
    num_timesteps: int = 5,
) -> dict[str, np.ndarray]:
    """Arrays ``loc``, ``vel`` [S, 31, 3] and ``target_loc``, ``target_vel`` [S, T, 31, 3].

    V = X[1:] − X[:−1] and X drops its last frame (so V[f] = X[f+1] − X[f]); per trial, in the
    split's order, the first ⌊max_samples / #trials⌋ start frames s give loc = X[s], vel = V[s]
    and targets at frames s + Δ − T + 1 … s + Δ.
    """
    if not 1 <= num_timesteps <= delta_frame:
        raise ValueError(f"num_timesteps={num_timesteps} must be in [1, delta_frame={delta_frame}]")
    per_trial = max_samples // len(split)
    offsets = target_frames(delta_frame, num_timesteps)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in TENSOR_KEYS}
    for trial, starts in split.items():
        raw = X[trial]
        pos, vel = raw[:-1], raw[1:] - raw[:-1]
        s = np.asarray(starts[:per_trial], dtype=np.int64)
        frames = s[:, None] + offsets[None, :]
        if s.size and (s.min() < 0 or frames.max() >= pos.shape[0]):
            raise DataIntegrityError(
                f"trial {trial}: start frames up to {s.max()} with delta_frame={delta_frame} "
                f"need {frames.max() + 2} frames, the trial has {raw.shape[0]}.")
        parts["loc"].append(pos[s])
        parts["vel"].append(vel[s])
        parts["target_loc"].append(pos[frames])
        parts["target_vel"].append(vel[frames])
    return {k: np.concatenate(v, axis=0) for k, v in parts.items()}


def skeleton_graph(edges: Sequence[tuple[int, int]], num_nodes: int = NUM_NODES
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``edge_index`` [2, E] and ``edge_type`` [E]: every one-hop skeleton edge in both directions
    (type 1), then every pair at graph distance 2 in both directions (type 2); each group in
    row-major (source, destination) order. 60 + 70 = 130 edges for the 31-joint skeleton."""
    adj = np.zeros((num_nodes, num_nodes), dtype=bool)
    for a, b in edges:
        if a != b:
            adj[a, b] = adj[b, a] = True
    two = (adj.astype(np.int64) @ adj.astype(np.int64)) > 0
    two &= ~adj
    np.fill_diagonal(two, False)
    src1, dst1 = np.nonzero(adj)
    src2, dst2 = np.nonzero(two)
    edge_index = torch.from_numpy(np.stack([np.concatenate([src1, src2]),
                                            np.concatenate([dst1, dst2])]).astype(np.int64))
    edge_type = torch.cat([torch.ones(len(src1), dtype=torch.long),
                           torch.full((len(src2),), 2, dtype=torch.long)])
    return edge_index, edge_type


class MoCapDataset(Dataset):
    """One split as stacked tensors (see the module docstring for the keys).

    ``__getitems__`` returns a whole batch as a dict (use it with :func:`identity_collate`); the
    graph tensors ``edge_index``/``edge_type`` are added unchanged to every batch.
    ``__getitem__`` returns one sample's dict (with the graph too).
    """

    def __init__(self, tensors: Batch, edge_index: torch.Tensor, edge_type: torch.Tensor):
        n = tensors["loc"].shape[0]
        assert all(t.shape[0] == n for t in tensors.values())
        self.tensors = tensors
        self.edge_index, self.edge_type = edge_index, edge_type

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], edge_index: torch.Tensor,
                    edge_type: torch.Tensor, dtype: torch.dtype = torch.float32) -> MoCapDataset:
        tensors = {k: torch.from_numpy(np.ascontiguousarray(arrays[k])).to(dtype)
                   for k in TENSOR_KEYS}
        return cls(tensors, edge_index, edge_type)

    def __len__(self) -> int:
        return self.tensors["loc"].shape[0]

    def _with_graph(self, out: Batch) -> Batch:
        out["edge_index"], out["edge_type"] = self.edge_index, self.edge_type
        return out

    def __getitem__(self, index: int) -> Batch:
        return self._with_graph({k: t[index] for k, t in self.tensors.items()})

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self._with_graph({k: t[idx] for k, t in self.tensors.items()})
