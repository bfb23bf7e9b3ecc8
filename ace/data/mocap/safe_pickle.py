"""A restricted unpickler for the MoCap ``.pkl`` files (``ecosystem_notes.md`` §8).

The files are plain pickles of tuples / lists / dicts of ints and NumPy arrays. Loading a pickle
with :func:`pickle.load` runs whatever callables it names, so a tampered or wrong file could
execute code. :func:`safe_load` resolves only the globals that NumPy arrays need and refuses every
other one with :class:`~ace.data.errors.DataIntegrityError` *before* anything is called.

Globals used by the shipped files (checked with :mod:`pickletools`): ``numpy.core.multiarray.
_reconstruct``, ``numpy.ndarray`` and ``numpy.dtype``. Admitted: those, their ``numpy._core``
spellings (pickles written by NumPy ≥ 2), and ``multiarray.scalar`` (a NumPy scalar, e.g. an
``np.int64`` inside a list, as a re-pickled ``motion.pkl`` might hold). Object arrays are refused
after loading (their elements would be arbitrary Python objects).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ace.data.errors import DataIntegrityError

__all__ = ["safe_load", "ALLOWED_GLOBALS"]

try:  # NumPy >= 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]

_RECONSTRUCT = _multiarray._reconstruct
_SCALAR = _multiarray.scalar

#: (module, name) -> object; resolved from this table only, never by importing ``module``
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataIntegrityError(
                f"{self.source}: refusing to unpickle global {module}.{name} (only NumPy arrays "
                f"and builtin containers are allowed). The file is not a genuine MoCap data file: "
                f"delete it and download it again.") from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataIntegrityError(
            f"{self.source}: refusing to unpickle a persistent id. Delete the file and download "
            f"it again.")


def _check_no_objects(obj: Any, source: str, depth: int = 0) -> None:
    if depth > 20:
        raise DataIntegrityError(f"{source}: pickled data nested too deeply.")
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise DataIntegrityError(f"{source}: object arrays are not allowed.")
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _check_no_objects(item, source, depth + 1)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _check_no_objects(key, source, depth + 1)
            _check_no_objects(value, source, depth + 1)


def safe_load(source: str | Path | bytes, name: str | None = None) -> Any:
    """Unpickle a file path or raw bytes, admitting only NumPy array globals.

    Args:
        source: a path, or the file's bytes.
        name: how to name the source in error messages (default: the path, or ``"<bytes>"``).

    Raises:
        DataIntegrityError: a refused global or persistent id, an object array, or a damaged
            pickle. Nothing named by a refused global is imported or called.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, label = bytes(source), name or "<bytes>"
    else:
        label = name or str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as err:
            raise DataIntegrityError(f"{label} is missing or unreadable ({err}).") from err
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), label).load()
    except DataIntegrityError:
        raise
    except Exception as err:  # damaged pickles raise many types (UnpicklingError, EOFError, ...)
        raise DataIntegrityError(
            f"{label} is not a valid pickle ({type(err).__name__}: {err}). Delete it and download "
            f"it again.") from err
    _check_no_objects(obj, label)
    return obj
