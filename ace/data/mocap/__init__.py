"""CMU MoCap (EGNO run / walk): verified download, safe unpickling, Lightning data module."""

from ace.data.mocap.datamodule import (
    BASE_URL,
    BLOB_SHA1,
    CASE_FILES,
    MoCapDataModule,
    MoCapDataset,
    MoCapRotation,
    MoCapTask,
    build_split,
    ensure_files,
    git_blob_sha1,
    identity_collate,
    load_case,
    skeleton_graph,
)
from ace.data.mocap.safe_pickle import safe_load

__all__ = [
    "BASE_URL", "BLOB_SHA1", "CASE_FILES", "MoCapDataModule", "MoCapDataset", "MoCapRotation",
    "MoCapTask", "build_split", "ensure_files", "git_blob_sha1", "identity_collate", "load_case",
    "skeleton_graph", "safe_load",
]
