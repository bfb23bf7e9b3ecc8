"""QM9 on disk through PyTorch Geometric (``experiments.md`` §2.1, §3.1).

* :class:`QM9Dataset` — PyG's :class:`~torch_geometric.datasets.QM9`, always on the rdkit-free
  path (``raw/qm9_v3.pt`` from ``qm9_v3.zip``, processed to ``processed/data_v3.pt``; the
  on-disk layout is PyG's own), downloaded with :func:`ace.data.download.download_file` from a
  configurable URL (``file://`` works, for offline machines).
* :func:`prepare_qm9` — downloads and processes once into a staging directory that is renamed
  into place only on success.
* :func:`load_processed` — loads the processed file (never downloads) and validates it.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data
from torch_geometric.data.dataset import files_exist
from torch_geometric.datasets import QM9
from torch_geometric.io import fs
from tqdm import tqdm

from ace.data.download import download_file, extract_zip
from ace.data.errors import DataIntegrityError, DownloadError
from ace.data.qm9.targets import NUM_Y_COLUMNS

__all__ = ["PYG_QM9_URL", "QM9Dataset", "load_processed", "prepare_qm9"]

log = logging.getLogger(__name__)

PYG_QM9_URL = "https://data.pyg.org/datasets/qm9_v3.zip"
ZIP_NAME = "qm9_v3.zip"
RAW_NAME = "qm9_v3.pt"
PROCESSED_NAME = "data_v3.pt"
REQUIRED_KEYS = ("x", "z", "pos", "edge_index", "y")


def _offline_hint(url: str) -> str:
    return (f"Check the network connection and data.url={url}, or download {ZIP_NAME} by hand "
            f"(from {PYG_QM9_URL}) and set data.url=file:///absolute/path/to/{ZIP_NAME}. "
            f"Without a network: data.source=qm9pack builds the same molecules from the qm9pack "
            f"wheel (pip install -e \".[qm9pack]\", or make install-qm9pack).")


def _delete_hint(root: Path) -> str:
    return f"Delete the directory {root} and re-run (prepare_data() downloads it again)."


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
