"""A class-stratified validation split carved from the training files (``experiments.md`` §5.5).

The official code has no validation set and selects on the test set; ace holds out, from every
class, ``round(val_fraction · n_c)`` of its n_c training clouds (at least one when n_c ≥ 2),
chosen by a permutation seeded with ``seed`` (independent of the run seed, so every run of a
sweep uses the same split). ModelNet40 with the default ``val_fraction = 0.1``: about 985 of the
9,843 training clouds are held out (10 % of each class, rounded), about 8,858 train the model,
and the 2,468 test clouds are never looked at for selection.
"""

from __future__ import annotations

import numpy as np

__all__ = ["stratified_split"]


def stratified_split(labels: np.ndarray, val_fraction: float,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(train_indices, val_indices)``, sorted, disjoint, covering ``range(len(labels))``.

    Per class c with n_c samples, ``round(val_fraction · n_c)`` (at least 1 if n_c ≥ 2 and
    ``val_fraction`` > 0, never all n_c) go to validation.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"data.val_fraction={val_fraction} must be in [0, 1)")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = int(round(val_fraction * len(members)))
        if val_fraction > 0 and len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        else:
            k = 0
        val.append(rng.permutation(members)[:k])
    val_idx = np.sort(np.concatenate(val)) if val else np.empty(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx.astype(np.int64), val_idx.astype(np.int64)
