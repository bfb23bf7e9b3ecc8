"""The loaders shared by the data modules whose splits live in memory as stacked tensors.

N-body and MoCap hold each split as a dataset with a batched ``__getitems__`` (a whole batch is one
dict of stacked tensors, see :func:`~ace.data.samplers.stacked_loader`), so their loaders are the
same: the training loader draws a fresh permutation every epoch from
:class:`~ace.data.samplers.EpochShuffleSampler` (seeded by ``shuffle_seed + epoch``) and drops the
last partial batch if ``drop_last``; the validation and test loaders are unshuffled and keep every
sample. A subclass names its splits (:attr:`InMemoryDataModule.splits`), fills ``self.datasets``
and ``self.sampler`` in ``setup`` (or earlier) and may say how its training size is counted.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ace.data.base import TaskDataModule
from ace.data.samplers import EpochShuffleSampler, stacked_loader
from ace.data.transforms import BatchTransform

__all__ = ["InMemoryDataModule"]

DTYPES = ("float32", "float64")


class InMemoryDataModule(TaskDataModule):
    """Base of the in-memory data modules (N-body, MoCap): batch size, workers, ``drop_last``,
    the epoch-seeded training sampler, the dtype and the three loaders.

    Subclasses validate their own arguments first and then call ``super().__init__`` (so a bad
    ``dtype`` is reported after their own checks), set :attr:`splits`, and implement ``setup``
    filling ``self.datasets`` (keyed by those split names) and ``self.sampler``.

    Args:
        batch_size: for all loaders.
        num_workers: DataLoader workers (0 is fastest for in-memory tensors).
        drop_last: the training loader drops the last partial batch.
        shuffle_seed: the training order of epoch e is a permutation seeded by shuffle_seed + e.
        dtype: ``"float32"`` or ``"float64"``; stored as the torch dtype in ``self.dtype``.
        train_transform, eval_transform: batch transforms (:class:`~ace.data.base.TaskDataModule`).
        eval_batch_size: batch size of the validation and test loaders (None: ``batch_size``).
            Evaluation keeps no activations for a backward pass, so larger batches cost no
            more memory than training does and spend less time per sample in Python; the
            metrics are exact sums over samples, so the batch size does not change them
            (beyond float rounding).
    """

    #: the names of the (training, validation, test) splits, the keys of ``self.datasets``
    splits: tuple[str, str, str] = ("train", "val", "test")

    def __init__(self, batch_size: int, num_workers: int = 0, drop_last: bool = True,
                 shuffle_seed: int = 0, dtype: str = "float32",
                 train_transform: BatchTransform | None = None,
                 eval_transform: BatchTransform | None = None,
                 eval_batch_size: int | None = None) -> None:
        super().__init__(train_transform, eval_transform)
        if dtype not in DTYPES:
            raise ValueError(f"data.dtype={dtype!r} must be 'float32' or 'float64'")
        self.set_batch_sizes(batch_size, eval_batch_size)
        self.num_workers = num_workers
        self.drop_last = drop_last
        self.shuffle_seed = shuffle_seed
        self.dtype: torch.dtype = getattr(torch, dtype)
        self.datasets: dict[str, Dataset] = {}
        self.sampler: EpochShuffleSampler | None = None

    def num_train_samples(self) -> int:
        """Size of the training split (sets the data up if needed)."""
        if not self.datasets:
            self.setup()
        return len(self.datasets[self.splits[0]])

    def describe_train_size(self, n: int) -> str:
        """How the ``drop_last`` error names the training size ``n``."""
        return f"{n} training samples"

    def _loader(self, split: str, batch_size: int, **kwargs: Any) -> DataLoader:
        if not self.datasets:
            self.setup()
        return stacked_loader(self.datasets[split], batch_size, self.num_workers, **kwargs)

    def train_dataloader(self) -> DataLoader:
        n = self.num_train_samples()
        if self.drop_last and self.batch_size > n:
            raise ValueError(f"data.batch_size={self.batch_size} > {self.describe_train_size(n)} "
                             f"with drop_last: no training batch")
        return self._loader(self.splits[0], self.batch_size, sampler=self.sampler,
                            drop_last=self.drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits[1], self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.splits[2], self.eval_batch_size, shuffle=False)
