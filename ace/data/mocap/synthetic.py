"""A small synthetic CMU-MoCap-like data set in the real file format, for ``debug=smoke`` and tests.

:func:`write_synthetic_case` writes the two pickles of a case exactly as the authors' files are
laid out (``ecosystem_notes.md`` §8.1), so they go through the real loader
(:func:`~ace.data.mocap.files.load_case`: safe unpickling and every structural check):

* ``motion_run.pkl`` (``motion.pkl`` for walk): ``(edges, X)``, ``edges`` the 30 [child, parent]
  pairs of the CMU 31-joint skeleton tree, ``X`` a list of float64 (T, 31, 3) arrays, y vertical;
* ``split_run.pkl`` (``split.pkl``): a tuple of 3 dicts (train, val, test) {trial: int64 start
  frames}.

The motion is made up: a rest skeleton (heights 0 … ~30 skeleton units, as the real data) that
runs along a straight line of random heading, with every joint swinging sinusoidally. It has the
real data's shapes, units and order of magnitude, not its statistics.

The real files are verified by git blob SHA-1 against the published
:data:`~ace.data.mocap.files.BLOB_SHA1`; synthetic files cannot match those. Instead
:func:`write_synthetic_case` records the git blob SHA-1 of what it wrote in ``synthetic.json``
beside them, and :func:`synthetic_sha1` hands those to the loader, which verifies them as strictly.
Only a data module built with ``source="synthetic"`` reads that manifest; the official source
always verifies against the published hashes, so a synthetic directory is never taken for the
real data (its files fail the official check), and the generator refuses to write into a
directory that holds files it did not write.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np

from ace.data.errors import DataIntegrityError
from ace.data.mocap.files import CASE_FILES, NUM_NODES, git_blob_sha1

__all__ = ["MANIFEST", "SKELETON_EDGES", "synthetic_case", "write_synthetic_case",
           "synthetic_sha1"]

MANIFEST = "synthetic.json"

#: The CMU 31-joint skeleton tree as [child, parent] pairs (the topology of motion_run.pkl,
#: ecosystem_notes.md §8.1): two leg chains and the spine from the root 0, two arm chains from 13.
SKELETON_EDGES: list[list[int]] = (
    [[i, i - 1] for i in range(1, 6)] + [[6, 0]] + [[i, i - 1] for i in range(7, 11)]
    + [[11, 0]] + [[i, i - 1] for i in range(12, 17)]
    + [[17, 13]] + [[i, i - 1] for i in range(18, 23)] + [[23, 20]]
    + [[24, 13]] + [[i, i - 1] for i in range(25, 30)] + [[30, 27]]
)

# every bone (child - parent) of the rest pose: (direction, length in skeleton units)
_HIP, _THIGH, _SHIN, _FOOT, _TOE = 2.0, 7.0, 7.0, 1.5, 1.0
_BONES: dict[int, tuple[tuple[float, float, float], float]] = {
    1: ((1, -0.2, 0), _HIP), 2: ((0.1, -1, 0), _THIGH), 3: ((0, -1, 0), _SHIN),
    4: ((0, -0.4, 1), _FOOT), 5: ((0, 0, 1), _TOE),                              # left leg
    6: ((-1, -0.2, 0), _HIP), 7: ((-0.1, -1, 0), _THIGH), 8: ((0, -1, 0), _SHIN),
    9: ((0, -0.4, 1), _FOOT), 10: ((0, 0, 1), _TOE),                             # right leg
    11: ((0, 1, 0), 2.0), 12: ((0, 1, 0), 2.0), 13: ((0, 1, 0), 2.0),           # spine
    14: ((0, 1, 0), 1.5), 15: ((0, 1, 0), 1.5), 16: ((0, 1, 0.2), 1.5),         # neck, head
    17: ((1, 0.2, 0), 1.5), 18: ((1, 0, 0), 2.0), 19: ((0, -1, 0), 3.5),        # left arm
    20: ((0, -1, 0.2), 3.0), 21: ((0, -1, 0), 0.5), 22: ((0, -1, 0), 0.5),
    23: ((0, -1, 0.5), 0.5),
    24: ((-1, 0.2, 0), 1.5), 25: ((-1, 0, 0), 2.0), 26: ((0, -1, 0), 3.5),      # right arm
    27: ((0, -1, 0.2), 3.0), 28: ((0, -1, 0), 0.5), 29: ((0, -1, 0), 0.5),
    30: ((0, -1, 0.5), 0.5),
}
_ROOT_HEIGHT = 15.0  # the feet end up near y = 0, the head near y = 25


def _rest_pose() -> np.ndarray:
    pose = np.zeros((NUM_NODES, 3))
    pose[0] = (0.0, _ROOT_HEIGHT, 0.0)
    for child, parent in SKELETON_EDGES:  # parents always come first in this list
        direction, length = _BONES[child]
        d = np.asarray(direction, dtype=np.float64)
        pose[child] = pose[parent] + length * d / np.linalg.norm(d)
    return pose


def synthetic_case(num_trials: int = 6, num_frames: int = 80, num_starts: int = 20,
                   start_range: int = 40, seed: int = 0
                   ) -> tuple[tuple[list[list[int]], list[np.ndarray]], tuple[dict, dict, dict]]:
    """``((edges, X), (train, val, test))`` as the files hold them.

    Trials are dealt round-robin to train, val and test; each gets ``num_starts`` distinct start
    frames drawn from ``range(start_range)`` (as the real split: 80 from range(90)). With the
    defaults every start s has its targets s + 30 inside the trial (Δ = 30 needs
    ``start_range + 31 <= num_frames``).
    """
    if num_trials < 3 or num_starts > start_range:
        raise ValueError("need at least 3 trials and num_starts <= start_range")
    rng = np.random.RandomState(seed)
    rest = _rest_pose()
    t = np.arange(num_frames, dtype=np.float64)
    X = []
    for _ in range(num_trials):
        heading = rng.uniform(0, 2 * np.pi)
        c, s = np.cos(heading), np.sin(heading)
        rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])  # about the vertical y axis
        speed = rng.uniform(0.2, 0.3)                        # units per frame (real: ~0.23)
        omega = rng.uniform(0.2, 0.3)                        # stride frequency, rad per frame
        amp = rng.uniform(0.3, 1.0, size=(NUM_NODES, 3))
        amp[0] = 0.0
        phase = rng.uniform(0, 2 * np.pi, size=(NUM_NODES, 3))
        swing = amp * np.sin(omega * t[:, None, None] + phase)       # (T, 31, 3)
        root = np.zeros((num_frames, 1, 3))
        root[:, 0, 2] = speed * t                                     # forward along z
        root[:, 0, 1] = 0.3 * np.abs(np.sin(omega * t))               # a little bounce
        X.append((rest + swing + root) @ rot.T + rng.uniform(-5, 5, size=3) * (1, 0, 1))
    splits: tuple[dict, dict, dict] = ({}, {}, {})
    for trial in range(num_trials):
        starts = rng.choice(start_range, num_starts, replace=False)
        splits[trial % 3][trial] = starts.astype(np.int64)
    edges = [list(e) for e in SKELETON_EDGES]
    return (edges, X), splits


def _manifest_path(data_dir: Path) -> Path:
    return data_dir / MANIFEST


def write_synthetic_case(data_dir: str | Path, case: str = "run", seed: int = 0,
                         **kwargs: int) -> list[Path]:
    """Write the case's two pickles of :func:`synthetic_case` into ``data_dir`` and record their
    git blob SHA-1 in ``data_dir/synthetic.json``; returns the pickles' paths.

    Idempotent (the content is a function of the arguments; files are replaced atomically, so
    concurrent writers are safe). Refuses a directory that already holds one of the case's files
    but no manifest (the real data, or anything else it did not write).
    """
    if case not in CASE_FILES:
        raise ValueError(f"data.case={case!r} must be one of {sorted(CASE_FILES)}")
    data_dir = Path(data_dir)
    names = CASE_FILES[case]
    manifest_path = _manifest_path(data_dir)
    if not manifest_path.exists() and any((data_dir / n).exists() for n in names):
        raise DataIntegrityError(
            f"{data_dir} holds MoCap files that were not written by the synthetic generator "
            f"(no {MANIFEST}); refusing to overwrite them. Point data.data_dir at another "
            f"directory for data.source=synthetic.")
    motion, splits = synthetic_case(seed=seed, **kwargs)
    payload = {names[0]: pickle.dumps(motion), names[1]: pickle.dumps(splits)}
    data_dir.mkdir(parents=True, exist_ok=True)
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.setdefault("sha1", {})
    manifest["generator"] = "ace.data.mocap.synthetic (made-up motion, NOT CMU MoCap)"
    for name, data in payload.items():
        _atomic_write(data_dir / name, data)
        manifest["sha1"][name] = git_blob_sha1(data)
    _atomic_write(manifest_path, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return [data_dir / n for n in names]


def synthetic_sha1(data_dir: str | Path) -> dict[str, str]:
    """The git blob SHA-1 of every synthetic file in ``data_dir``, as recorded when written."""
    path = _manifest_path(Path(data_dir))
    try:
        return dict(json.loads(path.read_text())["sha1"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataIntegrityError(
            f"{path} is missing or unreadable ({type(err).__name__}: {err}); data.source="
            f"synthetic needs the files written by prepare_data(). Delete {path.parent} and "
            f"re-run.") from err


def _atomic_write(path: Path, data: bytes) -> None:
    part = path.with_name(f"{path.name}.part-{os.getpid()}")
    part.write_bytes(data)
    os.replace(part, path)
