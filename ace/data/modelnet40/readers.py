"""Readers of the two ModelNet40 formats (never download; see :mod:`ace.data.modelnet40.files`).

* :func:`load_normal_resampled` — the PointNet++ text files: the first ``num_points`` lines of each
  shape, centred and scaled to the unit sphere, cached as ``.npz`` beside the data set;
* :func:`load_ply_hdf5` — DGCNN's HDF5 shards, MD5-checked, the first ``num_points`` points (the
  shards are already normalised: not re-normalised);
* :func:`load_modelnet40` — :func:`~ace.data.modelnet40.files.ensure_modelnet40`, then the reader.

Each returns ``{"train": (points float32 [n, N, 3], labels int64 [n]), "test": (…),
"shape_names": [...], "train_ids": [...], "test_ids": [...]}``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ace.data.errors import DataIntegrityError
from ace.data.modelnet40.files import (
    PUBLISHED_MD5,
    REQUIRED_FILES,
    _NR_LISTS,
    _SPLITS,
    _check_fmt,
    _check_num_points,
    _missing_pieces,
    _names,
    _shape_path,
    _read_list,
    _shard_paths,
    _verify_md5,
    ensure_modelnet40,
)

__all__ = ["CACHE_VERSION", "load_modelnet40", "load_normal_resampled", "load_ply_hdf5",
           "normal_resampled_cache_path"]

log = logging.getLogger(__name__)

CACHE_VERSION = 1


# ---------------------------------------------------------------------------------------------
# normal_resampled: text files, cached
# ---------------------------------------------------------------------------------------------
def _read_shape(path: Path, num_points: int) -> np.ndarray:
    """The first ``num_points`` xyz of a shape file, centred and scaled to the unit sphere as the
    PointNet++ / ACE loader does (float32)."""
    hint = (f"The data set is damaged: delete the directory {path.parent.parent} (and the zip "
            f"next to it) and prepare the data again.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": caught below
            xyz = np.loadtxt(path, delimiter=",", usecols=(0, 1, 2), max_rows=num_points,
                             dtype=np.float64, ndmin=2)
    except FileNotFoundError as err:
        raise DataIntegrityError(
            f"ModelNet40 shape file {path} not found (listed in the split files). {hint}"
        ) from err
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DataIntegrityError(
            f"ModelNet40 shape file {path} is not comma-separated numbers x,y,z,nx,ny,nz "
            f"({type(err).__name__}: {err}). {hint}") from err
    if xyz.shape[0] < num_points:
        raise DataIntegrityError(
            f"ModelNet40 shape file {path} has {xyz.shape[0]} points, fewer than "
            f"num_points={num_points}. {hint}")
    pts = xyz.astype(np.float32)
    if not np.isfinite(pts).all():
        raise DataIntegrityError(f"ModelNet40 shape file {path} holds non-finite values. {hint}")
    pts = pts - pts.mean(axis=0)
    scale = np.sqrt((pts**2).sum(axis=1)).max()
    if not scale > 0:
        raise DataIntegrityError(
            f"ModelNet40 shape file {path}: its first {num_points} points coincide. {hint}")
    return pts / scale


def normal_resampled_cache_path(root: str | Path, num_points: int) -> Path:
    """Where :func:`load_normal_resampled` caches ``num_points`` points per shape:
    ``<root>/../cache/modelnet40_normal_resampled_<num_points>.npz``."""
    return Path(root).parent / "cache" / f"modelnet40_normal_resampled_{int(num_points)}.npz"


def _nr_signature(root: Path, num_points: int) -> str:
    """SHA-256 over the cache version, ``num_points``, the root's name and the three list files'
    contents: a changed list invalidates the cache (edited shape files do not)."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{num_points}|{root.name}".encode())
    for name in REQUIRED_FILES["normal_resampled"]:
        data = (root / name).read_bytes()
        h.update(f"|{name}|{len(data)}|".encode())
        h.update(data)
    return h.hexdigest()


def _load_cache(path: Path, signature: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["signature"]) != signature:
                log.warning("ModelNet40 cache %s is stale (the list files changed): rebuilding",
                            path)
                return None
            out: dict[str, Any] = {"shape_names": [str(s) for s in z["shape_names"]]}
            for split in _SPLITS:
                pts, labels = z[f"{split}_points"], z[f"{split}_labels"]
                ids = [str(s) for s in z[f"{split}_ids"]]
                if pts.ndim != 3 or len(pts) != len(labels) or len(ids) != len(labels):
                    raise ValueError(f"inconsistent {split} arrays")
                out[split] = (pts.astype(np.float32, copy=False),
                              labels.astype(np.int64, copy=False))
                out[f"{split}_ids"] = ids
        return out
    except Exception as err:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
        log.warning("ModelNet40 cache %s is unreadable (%s): rebuilding", path, err)
        return None


def _save_cache(path: Path, signature: str, data: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    arrays = {"signature": np.array(signature),
              "shape_names": np.array(data["shape_names"], dtype=str)}
    for split in _SPLITS:
        arrays[f"{split}_points"], arrays[f"{split}_labels"] = data[split]
        arrays[f"{split}_ids"] = np.array(data[f"{split}_ids"], dtype=str)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError as err:  # a read-only location only costs the speed-up
        tmp.unlink(missing_ok=True)
        log.warning("Could not write the ModelNet40 cache %s (%s); continuing without it",
                    path, err)


def load_normal_resampled(root: str | Path, num_points: int) -> dict[str, Any]:
    """Read ``modelnet40_normal_resampled`` at ``root`` (never downloads).

    Each shape keeps its **first** ``num_points`` lines (no farthest-point sampling), xyz only,
    centred (mean subtracted) and scaled by its largest norm onto the unit sphere, as the
    PointNet++ / ACE loader does. Only those lines are parsed; the result is cached at
    :func:`normal_resampled_cache_path` (an ``.npz`` written atomically), keyed by
    ``num_points`` and a signature of the three list files (a changed list rebuilds it; the
    shape files themselves are not re-checked once cached — delete the cache after editing them).

    Returns:
        ``{"train": (points float32 [n, num_points, 3], labels int64 [n]), "test": (…),
        "shape_names": [40 names], "train_ids": ["airplane_0001", …], "test_ids": […]}``.

    Raises:
        DataIntegrityError: a list file is missing, an id names an unknown class, or a shape file
            is missing, too short or not numbers (the message names the file).
    """
    num_points = _check_num_points(num_points)
    root = Path(root)
    missing = _missing_pieces(root, "normal_resampled", shapes=False)
    if missing:
        raise DataIntegrityError(
            f"{root} is not a modelnet40_normal_resampled directory: missing {_names(missing)}. "
            f"Point data.data_dir / data.url at the extracted directory, or delete {root} and "
            f"prepare the data again.")
    signature = _nr_signature(root, num_points)
    cache = normal_resampled_cache_path(root, num_points)
    cached = _load_cache(cache, signature)
    if cached is not None:
        return cached

    shape_names = _read_list(root / "modelnet40_shape_names.txt")
    index = {name: i for i, name in enumerate(shape_names)}
    out: dict[str, Any] = {"shape_names": shape_names}
    ids = {split: _read_list(root / _NR_LISTS[split]) for split in _SPLITS}
    total = sum(len(v) for v in ids.values())
    with tqdm(total=total, desc=f"ModelNet40 shapes ({num_points} points)", unit="shape",
              disable=None, leave=False) as bar:
        for split in _SPLITS:
            n = len(ids[split])
            points = np.empty((n, num_points, 3), dtype=np.float32)
            labels = np.empty(n, dtype=np.int64)
            for i, shape_id in enumerate(ids[split]):
                cls = shape_id.rsplit("_", 1)[0]
                if cls not in index:
                    raise DataIntegrityError(
                        f"{root / _NR_LISTS[split]}: shape id {shape_id!r} names class {cls!r}, "
                        f"which is not in {root / 'modelnet40_shape_names.txt'}. Delete {root} "
                        f"and prepare the data again.")
                labels[i] = index[cls]
                points[i] = _read_shape(_shape_path(root, shape_id), num_points)
                bar.update()
            out[split] = (points, labels)
            out[f"{split}_ids"] = ids[split]
    _save_cache(cache, signature, out)
    return out


# ---------------------------------------------------------------------------------------------
# ply_hdf5_2048: HDF5 shards, MD5-checked
# ---------------------------------------------------------------------------------------------
def load_ply_hdf5(root: str | Path, num_points: int,
                  expected_md5: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read ``modelnet40_ply_hdf5_2048`` at ``root`` (never downloads).

    The shards listed in ``train_files.txt`` / ``test_files.txt`` (lines like
    ``data/modelnet40_ply_hdf5_2048/ply_data_train0.h5``, resolved by base name inside ``root``)
    are MD5-checked (``expected_md5`` if given, else :data:`PUBLISHED_MD5`; see the module
    docstring for names not in the table) and concatenated in list order. Each shape keeps its
    first ``num_points`` points. The points are **not** re-normalised: DGCNN's files are already
    centred and scaled, and DGCNN / VN-DGCNN use them as they are.

    Returns:
        the structure of :func:`load_normal_resampled`; ids are ``"<shard>:<row>"`` strings.

    Raises:
        DataIntegrityError: a list file or shard is missing, fails its MD5, is not a readable
            HDF5 file (truncated), or has the wrong datasets / shapes / labels.
    """
    import h5py  # only this format needs it

    num_points = _check_num_points(num_points)
    root = Path(root)
    md5_table = PUBLISHED_MD5 if expected_md5 is None else expected_md5
    missing = _missing_pieces(root, "ply_hdf5_2048", shapes=False)
    if missing:
        raise DataIntegrityError(
            f"{root} is not a complete modelnet40_ply_hdf5_2048 directory: missing "
            f"{_names(missing)}. Point data.data_dir / data.url at the extracted directory, or "
            f"delete {root} and prepare the data again.")
    shape_names = _read_list(root / "shape_names.txt")
    out: dict[str, Any] = {"shape_names": shape_names}
    for split in _SPLITS:
        points, labels, ids = [], [], []
        for path in _shard_paths(root, split):
            hint = f"Delete {root} (and its zip) and prepare the data again."
            try:
                _verify_md5(path, md5_table)
            except DataIntegrityError as err:
                raise DataIntegrityError(f"{err} {hint}") from err
            try:
                with h5py.File(path, "r") as f:
                    full, label_shape = f["data"].shape, f["label"].shape
                    if len(full) != 3 or full[2] != 3 or full[1] < num_points:
                        raise DataIntegrityError(
                            f"ModelNet40 shard {path}: 'data' has shape {full}, expected "
                            f"(n, P, 3) with P >= num_points={num_points}. {hint}")
                    n = full[0]
                    if label_shape not in ((n, 1), (n,)):
                        raise DataIntegrityError(
                            f"ModelNet40 shard {path}: 'label' has shape {label_shape}, "
                            f"expected ({n}, 1). {hint}")
                    data = np.asarray(f["data"][:, :num_points], dtype=np.float32)
                    label = np.asarray(f["label"][:]).reshape(n)
            except (OSError, KeyError, ValueError, TypeError) as err:
                raise DataIntegrityError(
                    f"ModelNet40 shard {path} is not a readable HDF5 file with 'data' and "
                    f"'label' ({type(err).__name__}: {err}); it is probably truncated or "
                    f"corrupted. {hint}") from err
            if not np.issubdtype(label.dtype, np.integer):
                raise DataIntegrityError(
                    f"ModelNet40 shard {path}: 'label' has dtype {label.dtype}, expected "
                    f"integers (uint8). {hint}")
            if n and (label.min() < 0 or label.max() >= len(shape_names)):
                raise DataIntegrityError(
                    f"ModelNet40 shard {path}: labels outside 0..{len(shape_names) - 1} (the "
                    f"classes of {root / 'shape_names.txt'}). {hint}")
            if not np.isfinite(data).all():
                raise DataIntegrityError(f"ModelNet40 shard {path} holds non-finite points. {hint}")
            points.append(data)
            labels.append(label.astype(np.int64))
            ids += [f"{path.name}:{i}" for i in range(n)]
        out[split] = (np.concatenate(points) if points else np.empty((0, num_points, 3),
                                                                     np.float32),
                      np.concatenate(labels) if labels else np.empty(0, np.int64))
        out[f"{split}_ids"] = ids
    return out


def load_modelnet40(data_dir: str | Path, fmt: str, num_points: int, url: str | None = None,
                    expected_md5: Mapping[str, str] | None = None) -> dict[str, Any]:
    """:func:`ensure_modelnet40`, then :func:`load_normal_resampled` or :func:`load_ply_hdf5`."""
    _check_fmt(fmt)
    num_points = _check_num_points(num_points)
    root = ensure_modelnet40(data_dir, fmt, url=url, expected_md5=expected_md5)
    if fmt == "normal_resampled":
        return load_normal_resampled(root, num_points)
    return load_ply_hdf5(root, num_points, expected_md5=expected_md5)
