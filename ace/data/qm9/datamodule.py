"""QM9 through PyTorch Geometric (``experiments.md`` §2.1 SEGNN and §3.1 SchNet).

* :class:`QM9Dataset` — PyG's :class:`~torch_geometric.datasets.QM9`, always on the rdkit-free
  path (``raw/qm9_v3.pt`` from ``qm9_v3.zip``, processed to ``processed/data_v3.pt``; the
  on-disk layout is PyG's own), downloaded with :func:`ace.data.download.download_file` from a
  configurable URL (``file://`` works, for offline machines).
* :class:`QM9Rotation` — SO(3) acting on ``pos`` of every molecule; the targets are invariant.
* :class:`QM9Task` — L1 on the standardised target, MAE in the target's PyG unit.
* :func:`split_indices` — the Cormorant split (SEGNN: ``RandomState(0)`` permutation,
  100,000 / 17,748 / 13,083) or a seeded random 80/10/10 split (SchNet: 104,664 / 13,083 / 13,084).
* :class:`QM9DataModule` — downloads and processes once into a staging directory that is renamed
  into place only on success, loads and validates the processed file on every ``setup``, and
  serves deterministic, epoch-seeded shuffled training batches.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.data.dataset import files_exist
from torch_geometric.datasets import QM9
from torch_geometric.io import fs
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from ace.core.equivariance import GroupAction
from ace.data.base import Task
from ace.data.download import download_file, extract_zip
from ace.data.errors import DataIntegrityError, DownloadError
from ace.data.samplers import EpochShuffleSampler
from ace.data.qm9.targets import NUM_Y_COLUMNS, QM9Target, resolve_target

__all__ = [
    "PYG_QM9_URL", "QM9Dataset", "QM9Rotation", "QM9Task", "QM9DataModule", "cormorant_split",
    "random_split", "split_indices", "standardization_stats", "load_processed", "prepare_qm9",
]

log = logging.getLogger(__name__)

PYG_QM9_URL = "https://data.pyg.org/datasets/qm9_v3.zip"
ZIP_NAME = "qm9_v3.zip"
RAW_NAME = "qm9_v3.pt"
PROCESSED_NAME = "data_v3.pt"
REQUIRED_KEYS = ("x", "z", "pos", "edge_index", "y")
SPLITS = ("train", "valid", "test")


def _offline_hint(url: str) -> str:
    return (f"Check the network connection and data.url={url}, or download {ZIP_NAME} by hand "
            f"(from {PYG_QM9_URL}) and set data.url=file:///absolute/path/to/{ZIP_NAME}.")


def _delete_hint(root: Path) -> str:
    return f"Delete the directory {root} and re-run (prepare_data() downloads it again)."


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------
class QM9Dataset(QM9):
    """PyG's QM9 on the rdkit-free path, whether or not rdkit is installed.

    ``download()`` fetches ``url`` (default PyG's ``qm9_v3.zip``) with :func:`download_file` and
    extracts ``qm9_v3.pt`` into ``raw_dir``; ``process()`` turns its list of dicts into
    ``processed/data_v3.pt`` exactly as PyG does without rdkit. With ``download=False`` a missing
    raw file raises :class:`DataIntegrityError` instead of touching the network. Once the
    processed file exists the raw file is not needed (no re-download if it was deleted).
    """

    def __init__(
        self,
        root: str | Path,
        url: str = PYG_QM9_URL,
        transform: Any = None,
        pre_transform: Any = None,
        pre_filter: Any = None,
        force_reload: bool = False,
        download: bool = True,
    ) -> None:
        self.source_url = url
        self.allow_download = download
        super().__init__(str(root), transform, pre_transform, pre_filter,
                         force_reload=force_reload)

    @property
    def raw_file_names(self) -> list[str]:
        return [RAW_NAME]

    @property
    def processed_file_names(self) -> str:
        return PROCESSED_NAME

    def _download(self) -> None:
        if not self.force_reload and files_exist(self.processed_paths):
            return
        super()._download()

    def download(self) -> None:
        raw_dir = Path(self.raw_dir)
        if not self.allow_download:
            raise DataIntegrityError(
                f"QM9 raw file {raw_dir / RAW_NAME} not found and downloading is disabled. "
                f"{_delete_hint(Path(self.root))}")
        zip_path = raw_dir / ZIP_NAME
        log.warning("Downloading QM9 from %s to %s", self.source_url, zip_path)
        download_file(self.source_url, zip_path, desc=f"QM9 {ZIP_NAME}",
                      hint=_offline_hint(self.source_url))
        try:
            extract_zip(zip_path, raw_dir)
        except DataIntegrityError as err:
            detail = err.__cause__ if err.__cause__ is not None else err
            raise DataIntegrityError(
                f"The QM9 archive downloaded from {self.source_url} is not a valid zip archive "
                f"({type(detail).__name__}: {detail}); it was discarded. "
                f"{_offline_hint(self.source_url)}") from err
        finally:
            zip_path.unlink(missing_ok=True)
        if not (raw_dir / RAW_NAME).is_file():
            raise DataIntegrityError(
                f"The archive from {self.source_url} has no {RAW_NAME} at its top level (is it "
                f"PyG's {ZIP_NAME}?). {_offline_hint(self.source_url)}")

    def process(self) -> None:
        raw = Path(self.raw_paths[0])
        hint = _delete_hint(Path(self.root))
        started = time.perf_counter()
        log.warning("Reading %s", raw)
        try:
            records = fs.torch_load(str(raw))
        except Exception as err:  # noqa: BLE001 - any unreadable file is a data problem
            raise DataIntegrityError(f"{raw} is not a readable torch file ({err}). {hint}") from err
        if not isinstance(records, (list, tuple)) or not records:
            raise DataIntegrityError(
                f"{raw} should hold a non-empty list of per-molecule dicts (PyG's qm9_v3.pt), "
                f"found {type(records).__name__}. {hint}")
        log.warning("Processing %d QM9 molecules (130,831: about a minute or two, once)",
                    len(records))
        data_list = []
        for i, rec in enumerate(tqdm(records, desc="QM9 molecules", disable=None, leave=False)):
            if not isinstance(rec, Mapping) or any(k not in rec for k in REQUIRED_KEYS):
                keys = sorted(rec) if isinstance(rec, Mapping) else type(rec).__name__
                raise DataIntegrityError(
                    f"{raw}: record {i} is not a molecule dict with keys {REQUIRED_KEYS} "
                    f"(found {keys}). {hint}")
            data_list.append(Data(**rec))
        if self.pre_filter is not None:
            data_list = [d for d in data_list if self.pre_filter(d)]
        if self.pre_transform is not None:
            data_list = [self.pre_transform(d) for d in data_list]
        log.warning("Collating and saving %d molecules to %s", len(data_list),
                    self.processed_paths[0])
        self.save(data_list, self.processed_paths[0])
        log.warning("QM9 processed in %.1f s", time.perf_counter() - started)


def load_processed(root: str | Path) -> QM9Dataset:
    """Load ``root/processed/data_v3.pt`` (never downloads) and validate it.

    Raises:
        DataIntegrityError: the file is absent, unreadable, or ``y`` is not [N, 19] and finite.
    """
    root = Path(root)
    processed = root / "processed" / PROCESSED_NAME
    if not processed.is_file():
        raise DataIntegrityError(
            f"QM9 not found: {processed} does not exist. Call prepare_data() first (the trainer "
            f"does), which downloads and processes it.")
    try:
        dataset = QM9Dataset(root, download=False)
    except DataIntegrityError:
        raise
    except Exception as err:  # noqa: BLE001 - torch.load raises many types on a damaged file
        raise DataIntegrityError(
            f"{processed} is corrupted or unreadable ({type(err).__name__}: {err}). "
            f"{_delete_hint(root)}") from err
    store = dataset._data
    y = getattr(store, "y", None)
    n = len(dataset)
    if not isinstance(y, torch.Tensor) or y.dim() != 2 or tuple(y.shape) != (n, NUM_Y_COLUMNS):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise DataIntegrityError(
            f"{processed}: y should be [{n}, {NUM_Y_COLUMNS}] (PyG's QM9 targets), found {shape}. "
            f"{_delete_hint(root)}")
    if not torch.isfinite(y[:, :12]).all():
        raise DataIntegrityError(f"{processed}: y contains NaN or inf. {_delete_hint(root)}")
    for key in ("pos", "z"):
        if not isinstance(getattr(store, key, None), torch.Tensor):
            raise DataIntegrityError(f"{processed} has no '{key}' field. {_delete_hint(root)}")
    return dataset


def prepare_qm9(root: str | Path, url: str = PYG_QM9_URL) -> Path:
    """Make sure ``root/processed/data_v3.pt`` exists: download and process it if absent.

    The work happens in ``<root>.partial-<pid>`` next to ``root``, which is renamed to ``root``
    only when processing succeeded; on any failure it is removed, so a half-written dataset is
    never left behind.

    Raises:
        DownloadError: the download failed (the message names the URL and what to do).
        DataIntegrityError: ``root`` exists but is incomplete, or the archive / raw file is bad.
    """
    root = Path(root)
    processed = root / "processed" / PROCESSED_NAME
    if processed.is_file():
        return root
    if root.exists():
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        else:
            raise DataIntegrityError(
                f"{root} exists but has no processed/{PROCESSED_NAME} (an interrupted run, or "
                f"another dataset?). {_delete_hint(root)}")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.parent / f"{root.name}.partial-{os.getpid()}"
    if staging.exists():  # left over by a killed run that had our pid
        shutil.rmtree(staging)
    log.warning("QM9 not found at %s: downloading %s and processing it (once) in %s", root, url,
                staging)
    started = time.perf_counter()
    try:
        QM9Dataset(staging, url=url)
        if not (staging / "processed" / PROCESSED_NAME).is_file():
            raise DataIntegrityError(f"Processing QM9 from {url} produced no {PROCESSED_NAME}.")
        try:
            os.rename(staging, root)
        except OSError:
            if not processed.is_file():  # not a concurrent run that finished first
                raise
            log.warning("%s was created concurrently; discarding %s", root, staging)
            shutil.rmtree(staging, ignore_errors=True)
    except (DownloadError, DataIntegrityError):
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except Exception as err:  # noqa: BLE001
        shutil.rmtree(staging, ignore_errors=True)
        raise DataIntegrityError(
            f"Preparing QM9 from {url} in {staging} failed ({type(err).__name__}: {err}); "
            f"nothing was kept. {_offline_hint(url)}") from err
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.warning("QM9 ready at %s (%.1f s)", root, time.perf_counter() - started)
    return root


# ---------------------------------------------------------------------------------------------
# Splits and standardisation
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Group action and task
# ---------------------------------------------------------------------------------------------
def _graph_index(batch: Any) -> torch.Tensor:
    index = getattr(batch, "batch", None)
    if index is None:  # a single Data object
        index = torch.zeros(batch.pos.shape[0], dtype=torch.long, device=batch.pos.device)
    return index


class QM9Rotation(GroupAction):
    """SO(3) on a PyG batch of molecules: ``pos`` of molecule b is rotated by ``g[b]``; the
    node features (atom types) and the targets are invariant, so the model output is too."""

    def batch_size(self, batch: Any) -> int:
        return int(getattr(batch, "num_graphs", 1))

    def reference_tensor(self, batch: Any) -> torch.Tensor:
        return batch.pos

    def act_on_batch(self, batch: Any, g: torch.Tensor) -> Any:
        if g.dim() != 3 or g.shape[1:] != (3, 3) or g.shape[0] != self.batch_size(batch):
            raise ValueError(f"QM9Rotation needs one 3x3 matrix per molecule "
                             f"[{self.batch_size(batch)}, 3, 3], got {tuple(g.shape)}")
        pos = batch.pos
        rot = g.to(dtype=pos.dtype, device=pos.device)[_graph_index(batch)]  # [N, 3, 3]
        out = copy.copy(batch)  # new storage, shared tensors; only pos is replaced
        out.pos = torch.einsum("nij,nj->ni", rot, pos)
        return out

    def act_on_output(self, output: torch.Tensor, g: torch.Tensor, batch: Any) -> torch.Tensor:
        return output


class QM9Task(Task):
    """Predict one scalar per molecule, ``[B, 1]``, in standardised units (``(y − mean) / mad``).

    * ``loss``: L1 between the prediction and the standardised target (with ``mean=0, mad=1``,
      i.e. standardisation off, plain L1 on the raw target: the SchNet protocol);
    * ``metric_sums``: sum of |pred·mad + mean − y| in the target's PyG unit (``metric_unit``),
      e.g. eV; ``alternative_units`` is ``{"meV": 1000.0}`` for eV targets.
    """

    metric_name = "mae"

    def __init__(self, target: str | int | QM9Target = "cv", mean: float = 0.0,
                 mad: float = 1.0) -> None:
        self.target = resolve_target(target)
        self.target_index = self.target.index
        self.target_name = self.target.name
        self.metric_unit = self.target.unit
        self.alternative_units = self.target.alternative_units
        self.group_action = QM9Rotation()
        self.mean, self.mad = 0.0, 1.0
        self.set_standardization(mean, mad)

    def summary(self) -> dict[str, Any]:
        """Target and standardisation: predictions of an exported model are (y − mean) / mad."""
        return {**super().summary(), "target": self.target_name, "target_index": self.target_index,
                "mean": self.mean, "mad": self.mad}

    def set_standardization(self, mean: float, mad: float) -> None:
        mean, mad = float(mean), float(mad)
        if not (np.isfinite(mean) and np.isfinite(mad) and mad > 0):
            raise ValueError(f"QM9 standardisation needs a finite mean and a positive MAD, got "
                             f"mean={mean}, mad={mad}")
        self.mean, self.mad = mean, mad

    def targets(self, batch: Any) -> torch.Tensor:
        """The raw target column, [B, 1], in PyG units."""
        return batch.y[:, self.target_index: self.target_index + 1]

    def _aligned(self, pred: torch.Tensor, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.targets(batch)
        if pred.shape != y.shape:
            if pred.dim() == 1 and pred.shape[0] == y.shape[0]:
                pred = pred.unsqueeze(-1)
            else:
                raise ValueError(f"QM9 predictions must be [num_graphs, 1] = {tuple(y.shape)}, "
                                 f"got {tuple(pred.shape)}")
        return pred, y.to(pred.dtype)

    def loss(self, pred: torch.Tensor, batch: Any) -> torch.Tensor:
        pred, y = self._aligned(pred, batch)
        return torch.nn.functional.l1_loss(pred, (y - self.mean) / self.mad)

    def metric_sums(self, pred: torch.Tensor, batch: Any) -> tuple[torch.Tensor, int]:
        pred, y = self._aligned(pred, batch)
        err = (pred * self.mad + self.mean - y).abs()
        return err.sum(), err.shape[0]


# ---------------------------------------------------------------------------------------------
# DataModule
# ---------------------------------------------------------------------------------------------
class QM9DataModule(L.LightningDataModule):
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
        max_train_samples: use only the first n molecules of the training split (quick runs,
            sample-efficiency sweeps); None: all.
        shuffle_seed: the training order of epoch e is a permutation seeded by shuffle_seed + e
            (None: ``split_seed``, which the configs tie to the run seed).
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
        max_train_samples: int | None = None,
        shuffle_seed: int | None = None,
    ) -> None:
        super().__init__()
        if split not in ("cormorant", "random"):
            raise ValueError(f"data.split={split!r} must be 'cormorant' (SEGNN) or 'random' "
                             f"(SchNet)")
        if max_train_samples is not None and max_train_samples < 1:
            raise ValueError(f"data.max_train_samples={max_train_samples} must be >= 1 or null")
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size} must be >= 1")
        self.data_dir = Path(data_dir)
        self.split = split
        self.split_seed = int(split_seed)
        self.cormorant_num_train = int(cormorant_num_train)
        self.standardize = bool(standardize)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.url = url
        self.max_train_samples = max_train_samples
        self.shuffle_seed = self.split_seed if shuffle_seed is None else int(shuffle_seed)
        self.task = QM9Task(target)
        self.dataset: QM9Dataset | None = None
        self.split_idx: dict[str, torch.Tensor] = {}
        self.datasets: dict[str, QM9Dataset] = {}
        self.sampler: EpochShuffleSampler | None = None

    def prepare_data(self) -> None:
        """Download and process QM9 if ``data_dir`` has no processed file (rank 0 only)."""
        prepare_qm9(self.data_dir, self.url)

    def setup(self, stage: str | None = None) -> None:
        """Load and validate the processed data, split it, and set the task's mean / MAD."""
        if self.datasets:
            return
        started = time.perf_counter()
        dataset = load_processed(self.data_dir)
        idx = split_indices(len(dataset), self.split, seed=self.split_seed,
                            cormorant_num_train=self.cormorant_num_train)
        if self.max_train_samples is not None:
            if self.max_train_samples > len(idx["train"]):
                raise ValueError(
                    f"data.max_train_samples={self.max_train_samples} exceeds the "
                    f"{len(idx['train'])} molecules of the {self.split} training split")
            idx["train"] = idx["train"][: self.max_train_samples]
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
                 self.data_dir, time.perf_counter() - started, self.split,
                 "/".join(str(len(idx[s])) for s in SPLITS), self.task.target_name,
                 self.task.metric_unit, self.task.mean, self.task.mad)

    def _loader(self, split: str, **kwargs: Any) -> DataLoader:
        if not self.datasets:
            self.setup()
        return DataLoader(self.datasets[split], batch_size=self.batch_size,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          drop_last=False, **kwargs)

    def train_dataloader(self) -> DataLoader:
        if not self.datasets:
            self.setup()
        return self._loader("train", sampler=self.sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

