"""Samplers, collate and loaders shared by the data modules."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from typing import Any

from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["EpochShuffleSampler", "identity_collate", "stacked_loader"]


class EpochShuffleSampler(Sampler[int]):
    """A fresh permutation each epoch, from ``torch.Generator().manual_seed(seed + epoch)``.

    Lightning calls :meth:`set_epoch` at the start of every training epoch, so the order depends
    only on (seed, epoch): runs are reproducible and resume exactly at epoch boundaries.
    """

    def __init__(self, num_samples: int, seed: int = 0):
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=g).tolist())

    def __len__(self) -> int:
        return self.num_samples


def identity_collate(batch: Any) -> Any:
    """Collate for datasets whose ``__getitems__`` already returns a stacked batch dict."""
    return batch


def stacked_loader(
    dataset: Dataset, batch_size: int, num_workers: int = 0, **kwargs: Any
) -> DataLoader:
    """A DataLoader over a dataset with a batched ``__getitems__`` (N-body, MoCap)."""
    return DataLoader(dataset, batch_size=batch_size, collate_fn=identity_collate,
                      num_workers=num_workers, persistent_workers=num_workers > 0, **kwargs)
