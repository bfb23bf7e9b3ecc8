"""CMU MoCap files (``ecosystem_notes.md`` §8): download, verification and safe loading.

* :func:`git_blob_sha1` — the checksum the upstream repository publishes for each file.
* :func:`ensure_files` / :func:`load_case` — download missing files (verified by git blob SHA-1),
  verify present ones on every load (:func:`verify_file`), and unpickle them with
  :func:`~ace.data.mocap.safe_pickle.safe_load` (NumPy arrays only).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ace.data.download import download_file
from ace.data.errors import DataIntegrityError
from ace.data.mocap.safe_pickle import safe_load

__all__ = [
    "BASE_URL", "BLOB_SHA1", "CASE_FILES", "NUM_NODES", "git_blob_sha1", "ensure_files",
    "verify_file", "load_case",
]

log = logging.getLogger(__name__)

BASE_URL = "https://raw.githubusercontent.com/andreimano/ACE/main/EGNO/motion/dataset/"
#: git blob SHA-1 (``git hash-object``) of every file, as published upstream
BLOB_SHA1 = {
    "motion.pkl": "5a8e260677b4b0ca8673c759df519fe27e2c0a12",
    "motion_run.pkl": "496c7e06995f8f8a77b20b34429cadd96dce9997",
    "split.pkl": "effa8cbc2a27597834f3903329683edc7611c8be",
    "split_run.pkl": "d66156faec6b0db80cbb7dfa75e514f1f956c65e",
}
#: case -> (motion file, split file)
CASE_FILES = {"run": ("motion_run.pkl", "split_run.pkl"), "walk": ("motion.pkl", "split.pkl")}
NUM_NODES = 31


def git_blob_sha1(data: bytes) -> str:
    """SHA-1 of ``b"blob <len>\\0" + data``: the id git gives the file's content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Files: download, verification, loading
# ---------------------------------------------------------------------------------------------
def _delete_hint(path: Path) -> str:
    return f"Delete {path} to download it again."


def ensure_files(data_dir: str | Path, case: str = "run", base_url: str = BASE_URL) -> list[Path]:
    """Make sure the case's files are in ``data_dir``: download the missing ones and check the
    git blob SHA-1 of every file (present or downloaded). Returns their paths.

    Raises:
        DownloadError: a download failed or its hash did not match (the file is deleted).
        DataIntegrityError: a file already present has the wrong hash.
    """
    if case not in CASE_FILES:
        raise ValueError(f"data.case={case!r} must be one of {sorted(CASE_FILES)}")
    data_dir = Path(data_dir)
    if not base_url.endswith("/"):
        base_url += "/"
    paths = []
    for name in CASE_FILES[case]:
        path = data_dir / name
        if path.exists():
            verify_file(path)
        else:
            url = base_url + name
            log.warning("MoCap file %s not found: downloading %s", path, url)
            download_file(
                url, path, expected_hash=BLOB_SHA1[name], hash_fn=git_blob_sha1,
                desc=f"MoCap {name}",
                hint=(f"Check the network connection and data.base_url={base_url}, or download "
                      f"{name} by hand (e.g. from {BASE_URL}{name}) into {data_dir}, or point "
                      f"data.base_url at a directory holding it (file:///absolute/dir/)."))
        paths.append(path)
    return paths


def verify_file(path: Path, data: bytes | None = None,
                expected_sha1: Mapping[str, str] = BLOB_SHA1) -> bytes:
    """Check ``path``'s git blob SHA-1 against ``expected_sha1`` (default: the published
    :data:`BLOB_SHA1`; synthetic files pass their own, see :mod:`ace.data.mocap.synthetic`);
    return its bytes."""
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise DataIntegrityError(
                f"{path} is missing or unreadable ({err}). {_delete_hint(path)}") from err
    actual = git_blob_sha1(data)
    if actual != expected_sha1[path.name]:
        raise DataIntegrityError(
            f"{path}: git blob SHA-1 {actual} does not match the expected "
            f"{expected_sha1[path.name]} (corrupted, truncated or a different file). "
            f"{_delete_hint(path)}")
    return data


def load_case(data_dir: str | Path, case: str = "run",
              expected_sha1: Mapping[str, str] = BLOB_SHA1
              ) -> tuple[list[tuple[int, int]], list[np.ndarray], tuple[dict[int, np.ndarray], ...]]:
    """Verify (hash) and safely unpickle the case's files: ``(edges, X, (train, val, test))``.

    Never downloads (see :func:`ensure_files`). Checks the structure: ``edges`` are
    [child, parent] pairs of node ids, ``X`` a list of finite (T, 31, 3) arrays, the split a tuple
    of three {trial: start frames} dicts naming existing trials. ``expected_sha1``: see
    :func:`verify_file`.
    """
    if case not in CASE_FILES:
        raise ValueError(f"data.case={case!r} must be one of {sorted(CASE_FILES)}")
    data_dir = Path(data_dir)
    motion_path, split_path = (data_dir / n for n in CASE_FILES[case])
    for path in (motion_path, split_path):
        if not path.exists():
            raise DataIntegrityError(
                f"MoCap file {path} not found. Call prepare_data() (the trainer does), which "
                f"downloads it.")
    motion = safe_load(verify_file(motion_path, expected_sha1=expected_sha1), name=str(motion_path))
    splits = safe_load(verify_file(split_path, expected_sha1=expected_sha1), name=str(split_path))
    hint = _delete_hint(motion_path)
    try:
        edges, X = motion
        edges = [(int(c), int(p)) for c, p in edges]
        X = [np.asarray(x, dtype=np.float64) for x in X]
    except (TypeError, ValueError) as err:
        raise DataIntegrityError(f"{motion_path} is not an (edges, X) pair ({err}). {hint}") from err
    for i, x in enumerate(X):
        if x.ndim != 3 or x.shape[1:] != (NUM_NODES, 3) or not np.isfinite(x).all():
            raise DataIntegrityError(
                f"{motion_path}: trial {i} has shape {x.shape}, expected finite (T, 31, 3). {hint}")
    if any(not (0 <= a < NUM_NODES and 0 <= b < NUM_NODES) for a, b in edges):
        raise DataIntegrityError(f"{motion_path}: edge endpoint outside 0..30. {hint}")
    if not (isinstance(splits, tuple) and len(splits) == 3
            and all(isinstance(s, dict) for s in splits)):
        raise DataIntegrityError(
            f"{split_path} is not a tuple of 3 dicts. {_delete_hint(split_path)}")
    out = []
    for split in splits:
        d = {}
        for trial, starts in split.items():
            if not 0 <= int(trial) < len(X):
                raise DataIntegrityError(
                    f"{split_path}: trial {trial} not in {motion_path}. {_delete_hint(split_path)}")
            d[int(trial)] = np.asarray(starts, dtype=np.int64).reshape(-1)
        out.append(d)
    return edges, X, tuple(out)  # type: ignore[return-value]
