"""ModelNet40 point clouds on disk (``modelnet40_data.md``, ``experiments.md`` §5.1).

Two formats (:data:`FORMATS`), each an archive whose top-level folder is the dataset root:

* ``normal_resampled`` — the PointNet++ ``modelnet40_normal_resampled.zip`` (the official ACE
  default): ``modelnet40_shape_names.txt``, ``modelnet40_train.txt``, ``modelnet40_test.txt``
  and one ``<class>/<id>.txt`` per shape (10,000 lines ``x,y,z,nx,ny,nz``);
* ``ply_hdf5_2048`` — the DGCNN ``modelnet40_ply_hdf5_2048.zip``: ``shape_names.txt``,
  ``train_files.txt``, ``test_files.txt`` and HDF5 shards with ``data`` (n, 2048, 3) float32 and
  ``label`` (n, 1) uint8, verified by MD5 against :data:`PUBLISHED_MD5`.

Public functions:

* :func:`ensure_modelnet40` — the extracted dataset root, downloading (``https://`` or
  ``file://``) and extracting the archive into a staging directory that is renamed into place
  only once complete; or an already-extracted local directory, validated and used in place.

The readers of both formats are in :mod:`ace.data.modelnet40.readers`; tiny data sets in the real
formats, for tests, in :mod:`ace.data.modelnet40.fixtures`.

MD5 policy (``ply_hdf5_2048``): every shard whose file name is in the MD5 table is checked — the
table is ``expected_md5`` when given (it replaces :data:`PUBLISHED_MD5`, it is not merged), else
:data:`PUBLISHED_MD5`. A shard whose name is not in the table is read **without** a hash check
(a warning is logged; HDF5's own structure checks and the shape / dtype / label checks still
apply); ``expected_md5={}`` therefore disables hashing. The ``normal_resampled`` text files have
no published checksums; they are checked for structure (line count, numbers) when read.
"""

from __future__ import annotations

import logging
import os
import shutil
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path


from ace.data.download import download_file, extract_zip, file_hash
from ace.data.errors import DataIntegrityError

__all__ = [
    "DEFAULT_URLS", "DIRNAMES", "FORMATS", "NORMAL_RESAMPLED_URL", "PLY_HDF5_URL",
    "PUBLISHED_MD5", "REQUIRED_FILES", "ensure_modelnet40", "md5_file",
]

log = logging.getLogger(__name__)

FORMATS = ("normal_resampled", "ply_hdf5_2048")
NORMAL_RESAMPLED_URL = "https://shapenet.cs.stanford.edu/media/modelnet40_normal_resampled.zip"
PLY_HDF5_URL = "https://shapenet.cs.stanford.edu/media/modelnet40_ply_hdf5_2048.zip"
#: format -> default URL of its archive
DEFAULT_URLS = {"normal_resampled": NORMAL_RESAMPLED_URL, "ply_hdf5_2048": PLY_HDF5_URL}
#: format -> the archive's top-level folder (= the extracted dataset root's name)
DIRNAMES = {"normal_resampled": "modelnet40_normal_resampled",
            "ply_hdf5_2048": "modelnet40_ply_hdf5_2048"}
#: format -> the list files a complete dataset root holds
REQUIRED_FILES = {
    "normal_resampled": ("modelnet40_shape_names.txt", "modelnet40_train.txt",
                         "modelnet40_test.txt"),
    "ply_hdf5_2048": ("shape_names.txt", "train_files.txt", "test_files.txt"),
}
#: MD5 of the seven ``modelnet40_ply_hdf5_2048`` shards, as published (``modelnet40_data.md``)
PUBLISHED_MD5: dict[str, str] = {
    "ply_data_train0.h5": "3176385ffc31a7b6b5af22191fd920d1",
    "ply_data_train1.h5": "e3f613fb500559403b34925112754dc4",
    "ply_data_train2.h5": "0c56e233a090ff87c3049d4ce08e7d8b",
    "ply_data_train3.h5": "9d2af465adfa33a3285c369f3ca66c45",
    "ply_data_train4.h5": "dff38de489b2c41bfaeded86c2208984",
    "ply_data_test0.h5": "e9732e6d83b09e79e9a7617df058adee",
    "ply_data_test1.h5": "aba4b12a67c34391cc3c015a6f08ed4b",
}
#: bump when the cached arrays' meaning changes (invalidates every cache file)
_SPLITS = ("train", "test")
_NR_LISTS = {"train": "modelnet40_train.txt", "test": "modelnet40_test.txt"}
_H5_LISTS = {"train": "train_files.txt", "test": "test_files.txt"}


def _check_fmt(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"data.format={fmt!r} must be one of {FORMATS}")


def _check_num_points(num_points: int) -> int:
    if isinstance(num_points, bool) or int(num_points) != num_points or num_points < 1:
        raise ValueError(f"num_points={num_points!r} must be a positive integer")
    return int(num_points)


def md5_file(path: str | Path) -> str:
    """MD5 (lowercase hex) of a file: the published checksums of the h5 shards."""
    return file_hash(path, "md5")


# ---------------------------------------------------------------------------------------------
# Download, extraction, validation
# ---------------------------------------------------------------------------------------------
def _offline_hint(fmt: str, url: str) -> str:
    zipname = DIRNAMES[fmt] + ".zip"
    return (f"Check the network connection and data.url={url}, or download {zipname} by hand "
            f"(from {DEFAULT_URLS[fmt]}) and set data.url=file:///absolute/path/to/{zipname}, or "
            f"point data.url / data.data_dir at an already-extracted {DIRNAMES[fmt]} directory.")


def _local_path(url: str) -> Path | None:
    """The local path a ``file://`` URL or a plain path names; None for other URLs."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            return None
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):  # C:\ on Windows
        return Path(url).expanduser()
    return None


def _read_list(path: Path) -> list[str]:
    """Non-empty stripped lines of a list file."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise DataIntegrityError(
            f"ModelNet40 list file {path} is missing or unreadable ({err}).") from err
    return [line.strip() for line in text.splitlines() if line.strip()]


def _shard_paths(root: Path, split: str) -> list[Path]:
    """The HDF5 shards ``<split>_files.txt`` names, resolved by base name inside ``root``."""
    return [root / Path(line.replace("\\", "/")).name
            for line in _read_list(root / _H5_LISTS[split])]


def _missing_pieces(root: Path, fmt: str, shapes: bool) -> list[str]:
    """What a dataset root lacks: list files; shards (h5); shape files (``shapes=True``)."""
    missing = [name for name in REQUIRED_FILES[fmt] if not (root / name).is_file()]
    if missing:
        return missing
    if fmt == "ply_hdf5_2048":
        for split in _SPLITS:
            missing += [p.name for p in _shard_paths(root, split) if not p.is_file()]
    elif shapes:
        for split in _SPLITS:
            for shape_id in _read_list(root / _NR_LISTS[split]):
                path = _shape_path(root, shape_id)
                if not path.is_file():
                    missing.append(str(path.relative_to(root)))
    return missing


def _verify_shards(root: Path, md5_table: Mapping[str, str], where: str) -> None:
    for split in _SPLITS:
        for path in _shard_paths(root, split):
            _verify_md5(path, md5_table, f"{path.name} {where}")


def _verify_md5(path: Path, md5_table: Mapping[str, str], label: str | None = None) -> None:
    expected = md5_table.get(path.name)
    if expected is None:
        log.warning("ModelNet40 shard %s has no entry in the MD5 table: not hash-checked",
                    path)
        return
    actual = md5_file(path)
    if actual.lower() != expected.lower():
        raise DataIntegrityError(
            f"ModelNet40 shard {label or path}: MD5 {actual} does not match the expected "
            f"{expected} (truncated, corrupted or a different file; if it is not the published "
            f"data set, pass its shards' MD5s as expected_md5).")


def _find_root(base: Path, fmt: str) -> Path | None:
    """The dataset root at or just below ``base`` (the archive's top folder, normally)."""
    first = REQUIRED_FILES[fmt][0]
    for candidate in (base / DIRNAMES[fmt], base):
        if (candidate / first).is_file():
            return candidate
    subdirs = [p for p in base.iterdir() if p.is_dir() and (p / first).is_file()]
    return subdirs[0] if len(subdirs) == 1 else None


def _rmtree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _zip_is_readable(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def ensure_modelnet40(data_dir: str | Path, fmt: str, url: str | None = None,
                      expected_md5: Mapping[str, str] | None = None) -> Path:
    """Return the extracted dataset root of format ``fmt``, downloading it if needed.

    * ``url`` naming a local **directory** (``file:///path/to/modelnet40_normal_resampled``, a
      plain path, or its parent): nothing is copied; the directory is checked (list files, and
      the shards for ``ply_hdf5_2048``) and returned.
    * Otherwise, if ``data_dir/<dirname>`` exists and holds the list files (and shards), it is
      returned without downloading (the loaders check the contents; see the MD5 policy in the
      module docstring).
    * Otherwise the archive is downloaded from ``url`` (default :data:`DEFAULT_URLS`;
      ``file:///….zip`` or a plain path to a zip work) to ``data_dir/<dirname>.zip`` — an
      existing readable zip there is reused — and extracted into
      ``data_dir/.<dirname>.staging`` (a stale one is removed first). There it is checked: the
      list files, every listed shape file / shard, and each shard's MD5 (``expected_md5`` if
      given, else :data:`PUBLISHED_MD5`; names not in the table are not hashed). Only then is
      the root renamed into place with :func:`os.replace`. The zip is kept (delete it to save
      space: the extracted directory is all the loaders need).

    Not safe against two processes preparing the same ``data_dir`` at once (call it from one).

    Raises:
        DownloadError: the download failed (nothing is left behind).
        DataIntegrityError: the archive is damaged or incomplete, a shard fails its MD5, the
            existing directory is incomplete, or a directory ``url`` is not a dataset root. The
            staging directory is removed; a zip downloaded by this call is deleted when it is
            unusable. The message names the file and what to do.
    """
    _check_fmt(fmt)
    data_dir = Path(data_dir)
    dirname = DIRNAMES[fmt]
    md5_table = PUBLISHED_MD5 if expected_md5 is None else expected_md5
    source = DEFAULT_URLS[fmt] if url is None else str(url)

    local = _local_path(source)
    if local is not None and local.is_dir():
        root = _find_root(local, fmt)
        if root is None:
            raise DataIntegrityError(
                f"data.url={source} is a directory but not an extracted {dirname} (no "
                f"{REQUIRED_FILES[fmt][0]} in it or in {local / dirname}). Point it at the "
                f"extracted {dirname} directory, or at the {dirname}.zip archive.")
        missing = _missing_pieces(root, fmt, shapes=False)
        if missing:
            raise DataIntegrityError(
                f"The ModelNet40 directory {root} (data.url={source}) is incomplete: missing "
                f"{_names(missing)}. Re-extract {dirname}.zip there, or point data.url at a "
                f"complete copy or at the zip archive.")
        return root

    final = data_dir / dirname
    if final.exists():
        missing = _missing_pieces(final, fmt, shapes=False) if final.is_dir() else [dirname]
        if not missing:
            return final
        raise DataIntegrityError(
            f"The ModelNet40 directory {final} exists but is incomplete: missing "
            f"{_names(missing)}. Delete {final} and retry (it is extracted again from "
            f"{source}).")

    if local is not None:  # a plain path to a file: download_file needs a URL
        source = local.resolve().as_uri()
    zip_path = data_dir / f"{dirname}.zip"
    staging = data_dir / f".{dirname}.staging"
    hint = _offline_hint(fmt, source)
    downloaded = False
    if zip_path.is_file() and _zip_is_readable(zip_path):
        log.warning("Reusing the ModelNet40 archive %s", zip_path)
    else:
        log.warning("Downloading ModelNet40 (%s) from %s to %s", fmt, source, zip_path)
        download_file(source, zip_path, desc=f"ModelNet40 {zip_path.name}", hint=hint)
        downloaded = True
    _rmtree(staging)
    try:
        try:
            extract_zip(zip_path, staging)
        except DataIntegrityError as err:
            detail = err.__cause__ if err.__cause__ is not None else err
            raise DataIntegrityError(
                f"The ModelNet40 archive {zip_path} (from {source}) could not be extracted "
                f"({type(detail).__name__}: {detail}); it is probably truncated or "
                f"corrupted.") from err
        root = _find_root(staging, fmt)
        if root is None:
            raise DataIntegrityError(
                f"The archive {zip_path} (from {source}) holds no {REQUIRED_FILES[fmt][0]} (is "
                f"it {dirname}.zip, the data.format={fmt} archive?).")
        missing = _missing_pieces(root, fmt, shapes=True)
        if missing:
            raise DataIntegrityError(
                f"The archive {zip_path} (from {source}) is incomplete: it lacks "
                f"{_names(missing)}.")
        if fmt == "ply_hdf5_2048":
            _verify_shards(root, md5_table, f"in the archive {zip_path} (from {source})")
        os.replace(root, final)
    except BaseException as err:
        _rmtree(staging)
        if not isinstance(err, DataIntegrityError):
            raise
        if downloaded:
            zip_path.unlink(missing_ok=True)
            what = f"The downloaded archive was deleted. {hint}"
        else:
            what = f"Delete {zip_path} and retry (it is downloaded again). {hint}"
        raise DataIntegrityError(f"{err} {what}") from err
    _rmtree(staging)
    log.warning("ModelNet40 (%s) extracted to %s", fmt, final)
    return final


def _shape_path(root: Path, shape_id: str) -> Path:
    """``airplane_0001`` -> ``root/airplane/airplane_0001.txt`` (``night_stand_0001`` ->
    ``night_stand/…``: the class is the id without its trailing ``_NNNN``)."""
    return root / shape_id.rsplit("_", 1)[0] / f"{shape_id}.txt"


def _names(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
