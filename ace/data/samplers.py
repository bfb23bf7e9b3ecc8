"""Samplers shared by the data modules."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["EpochShuffleSampler"]


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
