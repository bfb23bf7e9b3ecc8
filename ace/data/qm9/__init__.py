"""QM9 through PyTorch Geometric: the on-disk dataset (``files``), splits and standardisation
(``splits``), task and group action (``task``), targets (``targets``) and the data module
(``datamodule``)."""

from ace.data.qm9.datamodule import QM9DataModule
from ace.data.qm9.files import PYG_QM9_URL, QM9Dataset, load_processed, prepare_qm9
from ace.data.qm9.splits import (
    cormorant_split,
    random_split,
    split_indices,
    standardization_stats,
)
from ace.data.qm9.targets import TARGET_NAMES, TARGETS, QM9Target, resolve_target
from ace.data.qm9.task import QM9Rotation, QM9Task

__all__ = [
    "PYG_QM9_URL", "QM9DataModule", "QM9Dataset", "QM9Rotation", "QM9Task", "cormorant_split",
    "load_processed", "prepare_qm9", "random_split", "split_indices", "standardization_stats",
    "TARGET_NAMES", "TARGETS", "QM9Target", "resolve_target",
]
