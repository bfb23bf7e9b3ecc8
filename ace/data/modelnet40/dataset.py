"""One split of point clouds as stacked tensors, served a batch at a time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ace.data.modelnet40.task import LABEL_KEY, POSITION_KEY

__all__ = ["PointCloudDataset"]


class PointCloudDataset(Dataset):
    """Clouds ``pos`` [n, N, 3] and labels ``label`` [n] (int64).

    ``__getitems__`` returns a whole batch as one dict (use it with
    :func:`~ace.data.samplers.identity_collate`); ``__getitem__`` one cloud's dict.
    """

    def __init__(self, points: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                 dtype: torch.dtype = torch.float32) -> None:
        pos = torch.as_tensor(np.ascontiguousarray(points)).to(dtype)
        label = torch.as_tensor(np.asarray(labels)).long().view(-1)
        if pos.dim() != 3 or pos.shape[-1] != 3 or pos.shape[0] != label.shape[0]:
            raise ValueError(f"point clouds must be [n, N, 3] with n labels, got points "
                             f"{tuple(pos.shape)} and labels {tuple(label.shape)}")
        self.tensors = {POSITION_KEY: pos, LABEL_KEY: label}

    def __len__(self) -> int:
        return self.tensors[LABEL_KEY].shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: t[index] for k, t in self.tensors.items()}

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {k: t[idx] for k, t in self.tensors.items()}
