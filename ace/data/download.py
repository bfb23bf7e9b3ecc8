"""Downloading and unpacking data files, safely.

* :func:`download_file` streams a URL (``https://``, ``http://`` or ``file://``, anything
  :func:`urllib.request.urlopen` opens) to ``<dest>.part`` with a progress bar, checks the length
  and (optionally) a hash, then renames the file into place. On any failure the ``.part`` file is
  removed and a :class:`~ace.data.errors.DownloadError` names the URL, the file and what to do.
* :func:`extract_zip` unpacks an archive, refusing members that would land outside the target
  directory; a damaged archive raises :class:`~ace.data.errors.DataIntegrityError`.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from ace.data.errors import DataIntegrityError, DownloadError

__all__ = ["download_file", "extract_zip", "file_hash", "sha256_hex", "sha256_file"]

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20


def sha256_hex(data: bytes) -> str:
    """The default hash: SHA-256 as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def file_hash(path: str | Path, algorithm: str = "sha256") -> str:
    """The ``algorithm`` digest (lowercase hex) of a file, streamed (``hashlib.file_digest``)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def sha256_file(path: str | Path) -> str:
    """SHA-256 (lowercase hex) of a file (data manifests: N-body, qm9pack)."""
    return file_hash(path, "sha256")


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def download_file(
    url: str,
    dest: str | Path,
    *,
    expected_hash: str | None = None,
    hash_fn: Callable[[bytes], str] | None = None,
    desc: str | None = None,
    hint: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` atomically and return ``dest``.

    Args:
        url: any URL :func:`urllib.request.urlopen` accepts; ``file:///abs/path`` for local files.
        dest: the final path. Its parent is created. An existing file is replaced on success.
        expected_hash: if given, the hash of the downloaded bytes must equal it (compared
            case-insensitively) or the file is deleted and :class:`DownloadError` raised.
        hash_fn: ``bytes -> str`` (hex digest) used with ``expected_hash``; default SHA-256
            (computed while streaming; a custom ``hash_fn`` reads the finished file once).
        desc: label of the progress bar (default: the file name).
        hint: what the user should do on failure; appended to error messages (default: check
            the network and the URL, or download by hand and use a ``file://`` URL).
        timeout: socket timeout in seconds.

    Raises:
        DownloadError: network / HTTP / I/O error, truncated transfer or hash mismatch. The
            ``.part`` file is removed and ``dest`` is left as it was.
    """
    dest = Path(dest)
    part = _part_path(dest)
    if hint is None:
        hint = (f"Check the network connection and the URL, or download the file by hand and "
                f"pass its location as a file:// URL (file:///absolute/path/{dest.name}).")
    streaming_hash = hashlib.sha256() if expected_hash is not None and hash_fn is None else None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length") if response.headers else None
            total = int(length) if length and length.isdigit() else None
            received = 0
            with open(part, "wb") as out, tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024,
                desc=desc or dest.name, disable=None, leave=False,
            ) as bar:
                while chunk := response.read(CHUNK_SIZE):
                    out.write(chunk)
                    if streaming_hash is not None:
                        streaming_hash.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise DownloadError(
                f"Download of {url} to {dest} was truncated: received {received} of {total} "
                f"bytes. {hint}")
        if expected_hash is not None:
            actual = (streaming_hash.hexdigest() if streaming_hash is not None
                      else hash_fn(part.read_bytes()))  # type: ignore[misc]
            if actual.lower() != expected_hash.lower():
                raise DownloadError(
                    f"Hash mismatch for {url} (downloaded to {dest}): expected {expected_hash}, "
                    f"got {actual}. The file was deleted. The download may be corrupted or the "
                    f"file changed upstream: retry, or check the URL and the expected hash.")
        os.replace(part, dest)
    except DownloadError:
        _unlink(part)
        raise
    except (OSError, ValueError, http.client.HTTPException) as err:
        # URLError/HTTPError/timeouts are OSError; an unknown URL scheme is a ValueError
        _unlink(part)
        raise DownloadError(
            f"Could not download {url} to {dest}: {_describe(err)}. {hint}") from err
    except BaseException:  # KeyboardInterrupt etc.: never leave a partial file
        _unlink(part)
        raise
    log.info("Downloaded %s to %s (%d bytes)", url, dest, received)
    return dest


def _describe(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"{type(err).__name__}: {err.reason}"
    return f"{type(err).__name__}: {err}"


def extract_zip(path: str | Path, dest_dir: str | Path) -> list[Path]:
    """Extract every member of the zip archive ``path`` into ``dest_dir``; return their paths.

    Raises:
        DataIntegrityError: the archive is unreadable or damaged (bad CRC, truncated), or a
            member would be written outside ``dest_dir``.
    """
    path, dest_dir = Path(path), Path(dest_dir)
    hint = f"Delete {path} and download it again (it is probably truncated or corrupted)."
    dest_dir.mkdir(parents=True, exist_ok=True)
    root = dest_dir.resolve()
    if not path.is_file():
        raise DataIntegrityError(f"Zip archive {path} not found.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            for name in names:
                target = (root / name).resolve()
                if target != root and root not in target.parents:
                    raise DataIntegrityError(
                        f"{path}: archive member {name!r} would be extracted outside "
                        f"{dest_dir}; refusing to extract. {hint}")
            archive.extractall(dest_dir)
    except DataIntegrityError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as err:
        raise DataIntegrityError(
            f"{path} is not a valid zip archive ({type(err).__name__}: {err}). {hint}") from err
    return [dest_dir / name for name in names]
