"""One N-body split in memory (``experiments.md`` §1.1): the input state at frame 30 and the
positions at frame 40, as stacked tensors served a whole batch at a time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["NBodyDataset"]

Batch = dict[str, torch.Tensor]


class NBodyDataset(Dataset):
    """One split: ``loc``, ``vel`` [S, 5, 3] and ``charges`` [S, 5, 1] at the input frame and
    ``target`` [S, 5, 3] = positions at the target frame.

    ``__getitems__`` returns a whole batch as a dict of stacked tensors (use it with
    :func:`identity_collate`); ``__getitem__`` returns one sample's dict.
    """

    def __init__(self, loc: torch.Tensor, vel: torch.Tensor, charges: torch.Tensor,
                 target: torch.Tensor):
        n = loc.shape[0]
        assert vel.shape[0] == charges.shape[0] == target.shape[0] == n
        self.tensors: Batch = {"loc": loc, "vel": vel, "charges": charges, "target": target}

    @classmethod
    def from_reference(
        cls,
        loc: np.ndarray,
        vel: np.ndarray,
        charges: np.ndarray,
        input_frame: int = 30,
        target_frame: int = 40,
        dtype: torch.dtype = torch.float32,
    ) -> NBodyDataset:
        """From arrays in the reference layout (§7): loc/vel [S, 49, 3, 5], charges [S, 5, 1]."""

        def frame(a: np.ndarray, f: int) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a[:, f].transpose(0, 2, 1))).to(dtype)

        return cls(frame(loc, input_frame), frame(vel, input_frame),
                   torch.from_numpy(np.ascontiguousarray(charges)).to(dtype),
                   frame(loc, target_frame))

    def __len__(self) -> int:
        return self.tensors["loc"].shape[0]

    def __getitem__(self, index: int) -> Batch:
        return {k: t[index] for k, t in self.tensors.items()}

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {k: t[idx] for k, t in self.tensors.items()}
