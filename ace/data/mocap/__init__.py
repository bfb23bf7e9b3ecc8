"""CMU MoCap (EGNO run / walk): verified download and safe unpickling (``files``,
``safe_pickle``), samples and skeleton graph (``samples``), group action and task (``task``) and
the Lightning data module (``datamodule``)."""

from ace.data.mocap.datamodule import MoCapDataModule
from ace.data.mocap.files import (
    BASE_URL,
    BLOB_SHA1,
    CASE_FILES,
    ensure_files,
    git_blob_sha1,
    load_case,
)
from ace.data.mocap.safe_pickle import safe_load
from ace.data.mocap.samples import MoCapDataset, build_split, skeleton_graph
from ace.data.mocap.task import MoCapFixedHeightRotation, MoCapRotation, MoCapTask
from ace.data.samplers import identity_collate

__all__ = [
    "BASE_URL", "BLOB_SHA1", "CASE_FILES", "MoCapDataModule", "MoCapDataset", "MoCapRotation",
    "MoCapTask", "build_split", "ensure_files", "git_blob_sha1", "identity_collate", "load_case",
    "skeleton_graph", "safe_load", "MoCapFixedHeightRotation",
]
