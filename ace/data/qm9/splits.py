"""QM9 splits and target standardisation (``experiments.md`` §2.1 SEGNN and §3.1 SchNet).

:func:`split_indices` — the Cormorant split (SEGNN: ``RandomState(0)`` permutation,
100,000 / 17,748 / 13,083) or a seeded random 80/10/10 split (SchNet: 104,664 / 13,083 / 13,084);
:func:`standardization_stats` — (mean, MAD) of the training targets.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["SPLITS", "cormorant_split", "random_split", "split_indices", "standardization_stats"]

SPLITS = ("train", "valid", "test")


def cormorant_split(n: int, num_train: int = 100_000) -> dict[str, torch.Tensor]:
    """SEGNN's / Cormorant's split: ``np.random.RandomState(0).permutation(n)`` cut into train
    (first ``num_train``), valid (N − train − test) and test (``int(0.1·N)``), in that order.

    N = 130,831 gives 100,000 / 17,748 / 13,083.
    """
    num_test = int(0.1 * n)
    num_valid = n - num_train - num_test
    if num_train < 1 or num_valid < 1 or num_test < 1:
        raise ValueError(
            f"data.cormorant_num_train={num_train} does not fit a QM9 of {n} molecules: the "
            f"Cormorant split takes test = int(0.1*N) = {num_test} and valid = N - train - test "
            f"= {num_valid}, and all three must be >= 1. Use 1 <= data.cormorant_num_train <= "
            f"{n - num_test - 1}, or data.split=random.")
    perm = torch.from_numpy(np.random.RandomState(0).permutation(n)).long()
    return {"train": perm[:num_train], "valid": perm[num_train:num_train + num_valid],
            "test": perm[num_train + num_valid:]}


def random_split(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded 80/10/10 split: ``randperm(n, Generator().manual_seed(seed))`` cut into
    ``int(0.8·N)`` / ``int(0.1·N)`` / rest (N = 130,831: 104,664 / 13,083 / 13,084)."""
    num_train, num_valid = int(0.8 * n), int(0.1 * n)
    if num_train < 1 or num_valid < 1 or n - num_train - num_valid < 1:
        raise ValueError(f"A random 80/10/10 split of {n} molecules leaves an empty split; "
                         f"QM9 has 130,831.")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return {"train": perm[:num_train], "valid": perm[num_train:num_train + num_valid],
            "test": perm[num_train + num_valid:]}


def split_indices(
    n: int, split: str = "cormorant", *, seed: int = 0, cormorant_num_train: int = 100_000
) -> dict[str, torch.Tensor]:
    """``{"train", "valid", "test"}`` → long index tensors into the dataset (disjoint, cover N)."""
    if split == "cormorant":
        return cormorant_split(n, cormorant_num_train)
    if split == "random":
        return random_split(n, seed)
    raise ValueError(f"data.split={split!r} must be 'cormorant' (SEGNN) or 'random' (SchNet)")


def standardization_stats(y: torch.Tensor) -> tuple[float, float]:
    """(mean, MAD) of a target vector, with MAD = mean |y − mean| (SEGNN / EGNN)."""
    y = y.detach().double().flatten()
    mean = y.mean()
    return float(mean), float((y - mean).abs().mean())
