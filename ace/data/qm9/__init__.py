"""QM9 through PyTorch Geometric: dataset, splits, task, group action and the data module."""

from ace.data.qm9.datamodule import (
    PYG_QM9_URL,
    QM9DataModule,
    QM9Dataset,
    QM9Rotation,
    QM9Task,
    cormorant_split,
    load_processed,
    prepare_qm9,
    random_split,
    split_indices,
    standardization_stats,
)
from ace.data.qm9.targets import TARGET_NAMES, TARGETS, QM9Target, resolve_target

__all__ = [
    "PYG_QM9_URL", "QM9DataModule", "QM9Dataset", "QM9Rotation", "QM9Task", "cormorant_split",
    "load_processed", "prepare_qm9", "random_split", "split_indices", "standardization_stats",
    "TARGET_NAMES", "TARGETS", "QM9Target", "resolve_target",
]
