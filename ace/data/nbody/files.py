"""Loading a generated N-body data set with verification (``nbody_simulator.md`` §7).

:func:`load_verified` checks ``manifest.json`` against the requested generator settings and every
``.npy`` file's SHA-256, shape, dtype and finiteness before returning the arrays.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from ace.data.errors import DataIntegrityError
from ace.data.nbody import simulator as sim

__all__ = ["load_verified"]


def _regen_hint(path: Path) -> str:
    return (f"Delete {path} and re-run training (the data module regenerates it), or run "
            f"`python scripts/generate_nbody.py --force` with the same settings.")


def load_verified(
    path: str | Path, num_train: int, num_valid: int, num_test: int, seed: int
) -> dict[str, dict[str, np.ndarray]]:
    """Load ``{split: {loc, vel, charges}}`` (reference layout) from a generated directory.

    Raises :class:`DataIntegrityError` unless ``manifest.json`` exists, its parameters equal
    :func:`simulator.dataset_params` for the requested settings, and every file is present, has
    the recorded SHA-256, the expected shape and dtype, and finite values.
    """
    path = Path(path)
    hint = _regen_hint(path)
    if not path.is_dir():
        raise DataIntegrityError(
            f"N-body dataset not found at {path}. Call prepare_data() (the trainer does) or run "
            f"`python scripts/generate_nbody.py` with the same settings.")
    manifest_path = path / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        recorded, files = manifest["params"], manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataIntegrityError(
            f"{manifest_path} is missing or unreadable ({err}). {hint}") from err
    expected = sim.dataset_params(num_train, num_valid, num_test, seed)
    for key in sorted(set(expected) | set(recorded)):
        if recorded.get(key) != expected.get(key):
            raise DataIntegrityError(
                f"{manifest_path}: parameter {key!r} is {recorded.get(key)!r}, expected "
                f"{expected.get(key)!r} (made with other settings or an older generator). {hint}")
    sizes = dict(zip(sim.SPLITS, (num_train, num_valid, num_test)))
    out: dict[str, dict[str, np.ndarray]] = {}
    for split, n in sizes.items():
        out[split] = {}
        for key in sim.ARRAYS:
            fname = f"{key}_{split}.npy"
            if not isinstance(files.get(fname), dict):
                raise DataIntegrityError(f"{manifest_path} has no entry for {fname}. {hint}")
            shape = (n, sim.N_PARTICLES, 1) if key == "charges" else (
                n, sim.T_SAVE, sim.DIM, sim.N_PARTICLES)
            out[split][key] = _load_array(path / fname, files[fname].get("sha256"), shape, hint)
    return out


def _load_array(fpath: Path, sha256: str | None, shape: tuple[int, ...], hint: str) -> np.ndarray:
    """Read one .npy file once, check its hash, then its shape, dtype and finiteness."""
    try:
        raw = fpath.read_bytes()
    except OSError as err:
        raise DataIntegrityError(f"{fpath} is missing or unreadable ({err}). {hint}") from err
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise DataIntegrityError(
            f"{fpath}: SHA-256 does not match manifest.json (corrupted or modified). {hint}")
    try:
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as err:
        raise DataIntegrityError(f"{fpath} is not a valid .npy file ({err}). {hint}") from err
    if arr.shape != shape or arr.dtype != np.float64:
        raise DataIntegrityError(
            f"{fpath}: shape {arr.shape} dtype {arr.dtype}, expected {shape} float64. {hint}")
    if not np.isfinite(arr).all():
        raise DataIntegrityError(f"{fpath} contains NaN or inf values. {hint}")
    return arr
