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

    Under DDP (an initialised process group, ``trainer=ddp`` with ``use_distributed_sampler:
    false``) every rank draws the same permutation and takes ``perm[rank::world_size]``, cut to
    ``num_samples // world_size`` so all ranks run the same number of steps: the ranks see
    disjoint shards that change every epoch. Validation and test loaders stay unsharded, so each
    rank computes the full-set metric that selects checkpoints.
    """

    def __init__(self, num_samples: int, seed: int = 0):
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @staticmethod
    def _rank_world() -> tuple[int, int]:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.num_samples, generator=g)
        rank, world = self._rank_world()
        if world > 1:
            perm = perm[rank::world][: self.num_samples // world]
        return iter(perm.tolist())

    def __len__(self) -> int:
        return self.num_samples // self._rank_world()[1]


def identity_collate(batch: Any) -> Any:
    """Collate for datasets whose ``__getitems__`` already returns a stacked batch dict."""
    return batch


def stacked_loader(
    dataset: Dataset, batch_size: int, num_workers: int = 0, **kwargs: Any
) -> DataLoader:
    """A DataLoader over a dataset with a batched ``__getitems__`` (N-body, MoCap)."""
    return DataLoader(dataset, batch_size=batch_size, collate_fn=identity_collate,
                      num_workers=num_workers, persistent_workers=num_workers > 0, **kwargs)
