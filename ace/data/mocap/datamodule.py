"""The CMU MoCap data module (``experiments.md`` §4.1, ``ecosystem_notes.md`` §8).

:class:`MoCapDataModule` downloads missing files in ``prepare_data``
(:func:`~ace.data.mocap.files.ensure_files`), verifies and loads them on every ``setup``
(:func:`~ace.data.mocap.files.load_case`), builds the three splits
(:func:`~ace.data.mocap.samples.build_split`, batch keys in :mod:`ace.data.mocap.samples`) and
serves them through the shared loaders of :class:`~ace.data.in_memory.InMemoryDataModule`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ace.data.in_memory import InMemoryDataModule
from ace.data.mocap.files import BASE_URL, BLOB_SHA1, CASE_FILES, ensure_files, load_case
from ace.data.mocap.samples import MoCapDataset, build_split, skeleton_graph
from ace.data.mocap.synthetic import synthetic_sha1, write_synthetic_case
from ace.data.mocap.task import MoCapTask
from ace.data.samplers import EpochShuffleSampler
from ace.data.transforms import BatchTransform

__all__ = ["MoCapDataModule"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class MoCapDataModule(InMemoryDataModule):
    """CMU MoCap run / walk (``experiments.md`` §4.1).

    Args:
        data_dir: directory holding (or receiving) the case's two pickles.
        case: ``"run"`` (motion_run.pkl + split_run.pkl) or ``"walk"`` (motion.pkl + split.pkl).
        delta_frame, num_timesteps: Δ and T; targets at frames s+Δ−T+1 … s+Δ.
        max_samples_train, max_samples_eval: per split, the first ⌊max_samples/#trials⌋ starts of
            each trial are used (run: 200 / 240 / 240 samples; walk: 198 / 600 / 600).
        batch_size: for all loaders; the training loader drops the last partial batch if
            ``drop_last``.
        num_workers: DataLoader workers (0 is fastest for in-memory tensors).
        base_url: where :meth:`prepare_data` downloads missing files from (``file:///dir/`` works).
        shuffle_seed: the training order of epoch e is a permutation seeded by shuffle_seed + e.
        dtype: ``"float32"`` or ``"float64"``.
        translation_std: horizontal translation of the task's group action (0 = rotations only;
            only with ``equivariance_protocol="vertical_axis"``).
        equivariance_protocol: the group action of the equivariance-error metric
            (:class:`~ace.data.mocap.task.MoCapTask`): ``"so3_fixed_height"`` (default, the
            paper's Fig. 4: Haar-random SO(3) rotations, EGNO's height feature kept fixed, last
            frame) or ``"vertical_axis"`` (rotations about y, plus ``translation_std``).
        source: ``"official"`` (the authors' files, downloaded if missing and verified against
            the published hashes) or ``"synthetic"`` (:mod:`ace.data.mocap.synthetic`: made-up
            motion in the same format, written into ``data_dir`` by :meth:`prepare_data` and
            verified against the hashes recorded there; for smoke runs and tests).
        train_transform, eval_transform: batch transforms (:mod:`ace.data.transforms`); MoCap's
            augmentation rotates about the vertical axis: ``RandomGroupAction(action=MoCapRotation())``.
        eval_batch_size: validation and test batch size (None: ``batch_size``), see
            :class:`~ace.data.in_memory.InMemoryDataModule`.
    """

    splits = SPLITS

    def __init__(
        self,
        data_dir: str = "data/mocap",
        case: str = "run",
        delta_frame: int = 30,
        num_timesteps: int = 5,
        max_samples_train: int = 200,
        max_samples_eval: int = 600,
        batch_size: int = 12,
        num_workers: int = 0,
        base_url: str = BASE_URL,
        shuffle_seed: int = 0,
        drop_last: bool = True,
        dtype: str = "float32",
        translation_std: float = 0.0,
        equivariance_protocol: str = "so3_fixed_height",
        source: str = "official",
        train_transform: BatchTransform | None = None,
        eval_transform: BatchTransform | None = None,
        eval_batch_size: int | None = None,
    ) -> None:
        if case not in CASE_FILES:
            raise ValueError(f"data.case={case!r} must be one of {sorted(CASE_FILES)}")
        if not 1 <= num_timesteps <= delta_frame:
            raise ValueError(f"data.num_timesteps={num_timesteps} must be in "
                             f"[1, data.delta_frame={delta_frame}]")
        if source not in ("official", "synthetic"):
            raise ValueError(f"data.source={source!r} must be 'official' or 'synthetic'")
        super().__init__(batch_size, num_workers, drop_last, shuffle_seed, dtype,
                         train_transform, eval_transform, eval_batch_size)
        self.source = source
        self.data_dir = Path(data_dir)
        self.case = case
        self.delta_frame, self.num_timesteps = delta_frame, num_timesteps
        self.max_samples = {"train": max_samples_train, "val": max_samples_eval,
                            "test": max_samples_eval}
        self.base_url = base_url
        self.task = MoCapTask(translation_std, equivariance_protocol)
        self.datasets: dict[str, MoCapDataset] = {}
        self.graph: dict[str, torch.Tensor] = {}

    def prepare_data(self) -> None:
        """Download missing files and verify all of them (rank 0 only, under Lightning)."""
        if self.source == "synthetic":
            write_synthetic_case(self.data_dir, self.case)
        else:
            ensure_files(self.data_dir, self.case, self.base_url)

    def setup(self, stage: str | None = None) -> None:
        """Verify (hash), load and build all three splits; idempotent. Never downloads: that is
        :meth:`prepare_data`'s job (rank 0 only), so every file is read and hashed once here."""
        if self.datasets:
            return
        expected = synthetic_sha1(self.data_dir) if self.source == "synthetic" else BLOB_SHA1
        edges, X, splits = load_case(self.data_dir, self.case, expected_sha1=expected)
        edge_index, edge_type = skeleton_graph(edges)
        self.graph = {"edge_index": edge_index, "edge_type": edge_type}
        for name, split in zip(SPLITS, splits):
            arrays = build_split(X, split, self.max_samples[name], self.delta_frame,
                                 self.num_timesteps)
            self.datasets[name] = MoCapDataset.from_arrays(arrays, edge_index, edge_type,
                                                           self.dtype)
        self.sampler = EpochShuffleSampler(len(self.datasets["train"]), self.shuffle_seed)
        log.info("MoCap %s loaded from %s: %s samples", self.case, self.data_dir,
                 {k: len(v) for k, v in self.datasets.items()})
