"""The QM9 data module (``experiments.md`` §2.1 SEGNN and §3.1 SchNet).

:class:`QM9DataModule` downloads and processes QM9 once (:func:`~ace.data.qm9.files.prepare_qm9`),
loads and validates the processed file on every ``setup``
(:func:`~ace.data.qm9.files.load_processed`), splits it (:mod:`ace.data.qm9.splits`), sets the
task's standardisation, and serves deterministic, epoch-seeded shuffled training batches with
PyG's DataLoader.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch_geometric.loader import DataLoader

from ace.data.base import TaskDataModule
from ace.data.errors import DataIntegrityError
from ace.data.qm9.files import PYG_QM9_URL, QM9Dataset, load_processed, prepare_qm9
from ace.data.qm9.qm9pack import POSITIONS, build_qm9pack, check_manifest, qm9pack_root
from ace.data.qm9.splits import SPLITS, split_indices, standardization_stats
from ace.data.qm9.task import QM9Task
from ace.data.samplers import EpochShuffleSampler
from ace.data.transforms import BatchTransform

__all__ = ["QM9DataModule"]

log = logging.getLogger(__name__)


SOURCES = ("pyg", "qm9pack")


class QM9DataModule(TaskDataModule):
    """QM9 (PyG, 130,831 molecules) for one of the 12 targets.

    Args:
        data_dir: the dataset root (PyG layout: ``raw/qm9_v3.pt``, ``processed/data_v3.pt``).
        target: ``mu alpha homo lumo gap r2 zpve U0 U H G cv`` (case-insensitive) or index 0-11.
        split: ``"cormorant"`` (SEGNN's fixed split) or ``"random"`` (SchNet, per ``split_seed``).
        split_seed: seed of the random split (unused by the Cormorant split).
        cormorant_num_train: training size of the Cormorant split (100,000).
        standardize: train on ``(y − mean) / MAD`` of the (used) training molecules (SEGNN);
            false: raw target (SchNet). The metric is always in the target's raw unit.
        batch_size: for all loaders (``drop_last=False`` everywhere).
        num_workers: DataLoader workers.
        url: where ``qm9_v3.zip`` comes from; ``file:///path/qm9_v3.zip`` for offline machines.
        source: ``"pyg"`` (PyG's download, the default) or ``"qm9pack"`` (the same molecules
            built from the optional qm9pack wheel, offline; :mod:`ace.data.qm9.qm9pack`), kept
            in its own folder beside ``data_dir`` (``<data_dir>_qm9pack_<positions>``).
        positions: qm9pack only: ``"pyg"`` (xyz rounded to 4 decimals, as PyG) or ``"full"``.
        qm9pack_dir: qm9pack only: a folder with the CSVs instead of the installed wheel's.
        max_train_samples: use only the first n molecules of the training split (quick runs,
            sample-efficiency sweeps); None: all.
        max_eval_samples: use only the first n molecules of the validation and of the test split
            (reduced-budget runs on a CPU; the paper evaluates on all); None: all.
        shuffle_seed: the training order of epoch e is a permutation seeded by shuffle_seed + e
            (None: ``split_seed``, which the configs tie to the run seed).
        train_transform, eval_transform: batch transforms (:mod:`ace.data.transforms`).
        eval_batch_size: validation and test batch size (None: ``batch_size``); the metric is an
            exact sum over molecules and both models normalise per graph or with running
            statistics in evaluation, so it does not change the numbers (beyond float rounding).
    """

    def __init__(
        self,
        data_dir: str = "data/qm9",
        target: str | int = "cv",
        split: str = "cormorant",
        split_seed: int = 0,
        cormorant_num_train: int = 100_000,
        standardize: bool = True,
        batch_size: int = 128,
        num_workers: int = 0,
        url: str = PYG_QM9_URL,
        source: str = "pyg",
        positions: str = "pyg",
        qm9pack_dir: str | None = None,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
        shuffle_seed: int | None = None,
        train_transform: BatchTransform | None = None,
        eval_transform: BatchTransform | None = None,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__(train_transform, eval_transform)
        if split not in ("cormorant", "random"):
            raise ValueError(f"data.split={split!r} must be 'cormorant' (SEGNN) or 'random' "
                             f"(SchNet)")
        for key, value in (("max_train_samples", max_train_samples),
                           ("max_eval_samples", max_eval_samples)):
            if value is not None and value < 1:
                raise ValueError(f"data.{key}={value} must be >= 1 or null")
        self.set_batch_sizes(batch_size, eval_batch_size)
        self.data_dir = Path(data_dir)
        self.split = split
        self.split_seed = int(split_seed)
        self.cormorant_num_train = int(cormorant_num_train)
        self.standardize = bool(standardize)
        self.num_workers = num_workers
        self.url = url
        if source not in SOURCES:
            raise ValueError(f"data.source={source!r} must be one of {list(SOURCES)}")
        if positions not in POSITIONS:
            raise ValueError(f"data.positions={positions!r} must be one of {list(POSITIONS)}")
        self.source, self.positions, self.qm9pack_dir = source, positions, qm9pack_dir
        #: where the processed data live: data_dir (PyG) or its qm9pack sibling
        self.root = self.data_dir if source == "pyg" else qm9pack_root(self.data_dir, positions)
        self.max_train_samples = max_train_samples
        self.max_eval_samples = max_eval_samples
        self.shuffle_seed = self.split_seed if shuffle_seed is None else int(shuffle_seed)
        self.task = QM9Task(target)
        self.dataset: QM9Dataset | None = None
        self.split_idx: dict[str, torch.Tensor] = {}
        self.datasets: dict[str, QM9Dataset] = {}
        self.sampler: EpochShuffleSampler | None = None

    def prepare_data(self) -> None:
        """Download and process QM9 (``source=pyg``) or build it from the qm9pack wheel
        (``source=qm9pack``) if not done yet (rank 0 only)."""
        if self.source == "qm9pack":
            build_qm9pack(self.root, self.positions, self.qm9pack_dir)
        else:
            prepare_qm9(self.data_dir, self.url)

    def setup(self, stage: str | None = None) -> None:
        """Load and validate the processed data, split it, and set the task's mean / MAD."""
        if self.datasets:
            return
        started = time.perf_counter()
        if self.source == "qm9pack":
            check_manifest(self.root, self.positions)
        dataset = load_processed(self.root)
        idx = split_indices(len(dataset), self.split, seed=self.split_seed,
                            cormorant_num_train=self.cormorant_num_train)
        if self.max_train_samples is not None:
            if self.max_train_samples > len(idx["train"]):
                raise ValueError(
                    f"data.max_train_samples={self.max_train_samples} exceeds the "
                    f"{len(idx['train'])} molecules of the {self.split} training split")
            idx["train"] = idx["train"][: self.max_train_samples]
        if self.max_eval_samples is not None:
            idx["valid"] = idx["valid"][: self.max_eval_samples]
            idx["test"] = idx["test"][: self.max_eval_samples]
        if self.standardize:
            y_train = dataset._data.y[idx["train"], self.task.target_index]
            mean, mad = standardization_stats(y_train)
            if mad <= 0:
                raise DataIntegrityError(
                    f"QM9 target {self.task.target_name!r} is constant over the {len(y_train)} "
                    f"training molecules (MAD = 0): cannot standardise. Use more training "
                    f"molecules or data.standardize=false.")
            self.task.set_standardization(mean, mad)
        self.dataset, self.split_idx = dataset, idx
        self.datasets = {s: dataset.index_select(idx[s]) for s in SPLITS}
        self.sampler = EpochShuffleSampler(len(idx["train"]), self.shuffle_seed)
        log.info("QM9 loaded from %s in %.2f s: %s split %s, target %s (%s), mean %.6g, MAD %.6g",
                 self.root, time.perf_counter() - started, self.split,
                 "/".join(str(len(idx[s])) for s in SPLITS), self.task.target_name,
                 self.task.primary.unit, self.task.mean, self.task.mad)

    def _loader(self, split: str, batch_size: int, **kwargs: Any) -> DataLoader:
        if not self.datasets:
            self.setup()
        return DataLoader(self.datasets[split], batch_size=batch_size,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          drop_last=False, **kwargs)

    def train_dataloader(self) -> DataLoader:
        if not self.datasets:
            self.setup()
        return self._loader("train", self.batch_size, sampler=self.sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

