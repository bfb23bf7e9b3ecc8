"""The ModelNet40 data module (``experiments.md`` §5.1, §5.5; ``modelnet40_data.md``).

:class:`ModelNet40DataModule` downloads and extracts the files in ``prepare_data``
(:func:`~ace.data.modelnet40.files.ensure_modelnet40`, rank 0 only), loads them in ``setup``
(:func:`~ace.data.modelnet40.readers.load_modelnet40`: the first ``num_points`` points), holds out
a class-stratified validation split from the training files
(:func:`~ace.data.modelnet40.splits.stratified_split`) and serves the three splits through the
shared loaders of :class:`~ace.data.in_memory.InMemoryDataModule`.

``source="synthetic"`` replaces the files by :mod:`ace.data.modelnet40.synthetic`, a procedurally
generated labelled point-cloud set (**not ModelNet40**), made in memory in seconds: tests, smoke
runs and the CPU demonstration use it.

Rotations and point dropout are batch transforms (:mod:`ace.data.transforms`): by default one
Haar-random rotation per training cloud, redrawn every epoch, and fresh rotations of every
validation and test cloud at every evaluation, seeded by (run seed, stage, epoch) and identical
for both modes. ``point_dropout=True`` appends :class:`~ace.data.modelnet40.transforms.
RandomPointDropout` to both.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ace.data.errors import DataIntegrityError
from ace.data.in_memory import InMemoryDataModule
from ace.data.modelnet40.dataset import PointCloudDataset
from ace.data.modelnet40.files import FORMATS, ensure_modelnet40
from ace.data.modelnet40.readers import load_modelnet40
from ace.data.modelnet40.splits import stratified_split
from ace.data.modelnet40.synthetic import make_synthetic_pointclouds
from ace.data.modelnet40.task import ModelNet40Task
from ace.data.modelnet40.transforms import RandomPointDropout
from ace.data.samplers import EpochShuffleSampler
from ace.data.transforms import BatchTransform, Compose

__all__ = ["ModelNet40DataModule", "SOURCES"]

log = logging.getLogger(__name__)

SOURCES = ("modelnet40", "synthetic")


def _with_dropout(transform: BatchTransform | None,
                  dropout: RandomPointDropout | None) -> BatchTransform | None:
    if dropout is None:
        return transform
    return dropout if transform is None else Compose([transform, dropout])


class ModelNet40DataModule(InMemoryDataModule):
    """ModelNet40 classification (or its synthetic stand-in).

    Args:
        data_dir: directory holding (or receiving) the extracted data set and its archive.
        source: ``"modelnet40"`` (the real files) or ``"synthetic"`` (generated, not ModelNet40).
        format: ``"normal_resampled"`` (PointNet++ text files, the ACE default) or
            ``"ply_hdf5_2048"`` (DGCNN's h5 shards, MD5-checked).
        url: where :meth:`prepare_data` gets the zip archive (null: the format's published URL);
            ``file:///abs/modelnet40_normal_resampled.zip`` or an extracted directory work too.
        expected_md5: ``{shard: md5}`` for ``ply_hdf5_2048`` (null: the published MD5s).
        num_points: the first ``num_points`` points of every cloud (ACE README: 300).
        num_classes: must equal the number of classes of the data (40; synthetic: its
            ``synthetic_classes``); the model reads it too.
        label_smoothing: ε of the task's loss (DGCNN: 0.2).
        val_fraction: share of each class's training clouds held out for validation.
        split_seed: seed of the validation split (the same for every run).
        point_dropout: the noisy variant (Fig. 7 right): dropout on training and test clouds.
        max_dropout_ratio: upper end of the per-cloud dropout ratio (0.875).
        synthetic_train, synthetic_test, synthetic_classes, synthetic_seed: size, classes and
            seed of the synthetic set (``source="synthetic"`` only).
        batch_size, num_workers, drop_last, shuffle_seed, dtype: see
            :class:`~ace.data.in_memory.InMemoryDataModule`.
        train_transform, eval_transform: batch transforms (default in the config: a random
            rotation of every cloud).
        eval_batch_size: validation and test batch size (None: ``batch_size``), see
            :class:`~ace.data.in_memory.InMemoryDataModule`.
    """

    def __init__(
        self,
        data_dir: str = "data/modelnet40",
        source: str = "modelnet40",
        format: str = "normal_resampled",
        url: str | None = None,
        expected_md5: dict[str, str] | None = None,
        num_points: int = 300,
        num_classes: int = 40,
        label_smoothing: float = 0.2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        point_dropout: bool = False,
        max_dropout_ratio: float = 0.875,
        synthetic_train: int = 2000,
        synthetic_test: int = 500,
        synthetic_classes: int = 10,
        synthetic_seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        drop_last: bool = True,
        shuffle_seed: int = 0,
        dtype: str = "float32",
        train_transform: BatchTransform | None = None,
        eval_transform: BatchTransform | None = None,
        eval_batch_size: int | None = None,
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f"data.source={source!r} must be one of {list(SOURCES)}")
        if format not in FORMATS:
            raise ValueError(f"data.format={format!r} must be one of {list(FORMATS)}")
        if num_points < 1:
            raise ValueError(f"data.num_points={num_points} must be positive")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"data.val_fraction={val_fraction} must be in (0, 1): model "
                             f"selection needs a validation split (never the test set)")
        super().__init__(batch_size, num_workers, drop_last, shuffle_seed, dtype,
                         train_transform, eval_transform, eval_batch_size)
        dropout = RandomPointDropout(max_dropout_ratio) if point_dropout else None
        self.train_transform = _with_dropout(self.train_transform, dropout)
        self.eval_transform = _with_dropout(self.eval_transform, dropout)
        self.data_dir = Path(data_dir)
        self.source, self.format, self.url = source, format, url
        self.expected_md5 = dict(expected_md5) if expected_md5 is not None else None
        self.num_points, self.num_classes = num_points, num_classes
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.point_dropout = point_dropout
        self.synthetic = {"num_train": synthetic_train, "num_test": synthetic_test,
                          "num_classes": synthetic_classes, "seed": synthetic_seed}
        self.task = ModelNet40Task(num_classes, label_smoothing)
        self.shape_names: list[str] = []
        #: shape ids of every split (file ids, h5 rows; synthetic: None)
        self.ids: dict[str, list[str] | None] = {}
        self.datasets: dict[str, PointCloudDataset] = {}

    def prepare_data(self) -> None:
        """Download and extract the files if missing (rank 0 only, under Lightning)."""
        if self.source == "modelnet40":
            ensure_modelnet40(self.data_dir, self.format, self.url, self.expected_md5)

    def _load(self) -> dict[str, Any]:
        if self.source == "synthetic":
            return make_synthetic_pointclouds(num_points=self.num_points, **self.synthetic)
        return load_modelnet40(self.data_dir, self.format, self.num_points, self.url,
                               self.expected_md5)

    def setup(self, stage: str | None = None) -> None:
        """Load, split and wrap the three splits; idempotent."""
        if self.datasets:
            return
        data = self._load()
        self.shape_names = list(data["shape_names"])
        if len(self.shape_names) != self.num_classes:
            where = "the synthetic set" if self.source == "synthetic" else str(self.data_dir)
            raise DataIntegrityError(
                f"data.num_classes={self.num_classes}, but {where} has "
                f"{len(self.shape_names)} classes; set data.num_classes={len(self.shape_names)}")
        points, labels = data["train"]
        if len(points) and points.shape[1] != self.num_points:
            raise DataIntegrityError(f"clouds in {self.data_dir} have {points.shape[1]} points, "
                                     f"data.num_points={self.num_points}")
        train_idx, val_idx = stratified_split(labels, self.val_fraction, self.split_seed)
        self.datasets = {
            "train": PointCloudDataset(points[train_idx], labels[train_idx], self.dtype),
            "val": PointCloudDataset(points[val_idx], labels[val_idx], self.dtype),
            "test": PointCloudDataset(*data["test"], self.dtype),
        }
        train_ids = data.get("train_ids")
        self.ids = {"train": None if train_ids is None else [train_ids[i] for i in train_idx],
                    "val": None if train_ids is None else [train_ids[i] for i in val_idx],
                    "test": data.get("test_ids")}
        self.sampler = EpochShuffleSampler(len(self.datasets["train"]), self.shuffle_seed)
        log.info("%s (%s points per cloud, %d classes): %s clouds",
                 "synthetic point clouds (not ModelNet40)" if self.source == "synthetic"
                 else f"ModelNet40 {self.format}", self.num_points, self.num_classes,
                 {k: len(v) for k, v in self.datasets.items()})
