"""Charged N-body task (``experiments.md`` §1.1): positions at frame 40 from the state at frame 30.

* :class:`NBodyDataset` — one split as tensors ``loc``/``vel`` [S, 5, 3], ``charges`` [S, 5, 1],
  ``target`` [S, 5, 3] (frames transposed from the reference (xyz, particle) layout).
* :class:`NBodyRotation` — O(3) acting on loc, vel and target (charges are scalars).
* :class:`NBodyTask` — MSE over nodes and coordinates.
* :class:`NBodyDataModule` — generates the data on first use (``simulator.generate_dataset``),
  verifies it on every ``setup`` (manifest parameters, SHA-256, shapes, finiteness), and serves
  deterministic, epoch-seeded shuffled training batches.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ace.core.equivariance import GroupAction
from ace.data.base import Task
from ace.data.errors import DataIntegrityError
from ace.data.samplers import EpochShuffleSampler, identity_collate, stacked_loader
from ace.data.nbody import simulator as sim

__all__ = [
    "NBodyDataset", "NBodyRotation", "NBodyTask", "NBodyDataModule", "EpochShuffleSampler",
    "identity_collate", "load_verified",
]

log = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]
VECTOR_KEYS = ("loc", "vel", "target")


# ---------------------------------------------------------------------------------------------
# Dataset, sampler, collate
# ---------------------------------------------------------------------------------------------
class NBodyDataset(Dataset):
    """One split: ``loc``, ``vel`` [S, 5, 3] and ``charges`` [S, 5, 1] at the input frame and
    ``target`` [S, 5, 3] = positions at the target frame.

    ``__getitems__`` returns a whole batch as a dict of stacked tensors (use it with
    :func:`identity_collate`); ``__getitem__`` returns one sample's dict.
    """

    def __init__(self, loc: torch.Tensor, vel: torch.Tensor, charges: torch.Tensor,
                 target: torch.Tensor):
        n = loc.shape[0]
        assert vel.shape[0] == charges.shape[0] == target.shape[0] == n
        self.tensors: Batch = {"loc": loc, "vel": vel, "charges": charges, "target": target}

    @classmethod
    def from_reference(
        cls,
        loc: np.ndarray,
        vel: np.ndarray,
        charges: np.ndarray,
        input_frame: int = 30,
        target_frame: int = 40,
        dtype: torch.dtype = torch.float32,
    ) -> NBodyDataset:
        """From arrays in the reference layout (§7): loc/vel [S, 49, 3, 5], charges [S, 5, 1]."""

        def frame(a: np.ndarray, f: int) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a[:, f].transpose(0, 2, 1))).to(dtype)

        return cls(frame(loc, input_frame), frame(vel, input_frame),
                   torch.from_numpy(np.ascontiguousarray(charges)).to(dtype),
                   frame(loc, target_frame))

    def __len__(self) -> int:
        return self.tensors["loc"].shape[0]

    def __getitem__(self, index: int) -> Batch:
        return {k: t[index] for k, t in self.tensors.items()}

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {k: t[idx] for k, t in self.tensors.items()}


# ---------------------------------------------------------------------------------------------
# Group action and task
# ---------------------------------------------------------------------------------------------
def _rotate(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """x [B, N, 3] ↦ x @ g[b]ᵀ, i.e. g acting on column vectors, per sample."""
    g = g.to(dtype=x.dtype, device=x.device)
    return torch.matmul(x, g.transpose(-1, -2))


class NBodyRotation(GroupAction):
    """O(3) on the N-body batch: loc, vel and target are vectors, charges scalars."""

    def batch_size(self, batch: Batch) -> int:
        return batch["loc"].shape[0]

    def reference_tensor(self, batch: Batch) -> torch.Tensor:
        return batch["loc"]

    def act_on_batch(self, batch: Batch, g: torch.Tensor) -> Batch:
        out = dict(batch)
        for key in VECTOR_KEYS:
            if key in out:
                out[key] = _rotate(out[key], g)
        return out

    def act_on_output(self, output: torch.Tensor, g: torch.Tensor, batch: Any) -> torch.Tensor:
        return _rotate(output, g)


class NBodyTask(Task):
    """Predict positions [B, 5, 3] at the target frame; MSE over nodes and coordinates (§1.1)."""

    metric_name = "mse"

    def __init__(self) -> None:
        self.group_action = NBodyRotation()

    def loss(self, pred: torch.Tensor, batch: Batch) -> torch.Tensor:
        return torch.nn.functional.mse_loss(pred, batch["target"])

    def metric_sums(self, pred: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, int]:
        per_sample = (pred - batch["target"]).pow(2).mean(dim=(-2, -1))
        return per_sample.sum(), per_sample.shape[0]


# ---------------------------------------------------------------------------------------------
# Loading with verification
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# DataModule
# ---------------------------------------------------------------------------------------------
class NBodyDataModule(L.LightningDataModule):
    """Charged 5-body data (``experiments.md`` §1.1, ``nbody_simulator.md``).

    Args:
        data_dir: parent directory; the data live in ``data_dir/<dataset_name>``, a name that
            encodes the generator settings (e.g. ``charged5_seed43_10000_2000_2000``).
        max_samples: number of training simulations used (the first ones; paper 3,000).
        batch_size: for all loaders; the training loader drops the last partial batch
            (``drop_last``; 3,000 / 100 → 30 steps per epoch).
        num_train, num_valid, num_test, seed: generator settings (reference: 10,000 / 2,000 /
            2,000, seed 43).
        input_frame, target_frame: frames of the input state and the target positions (30, 40).
        num_workers: DataLoader workers (0 is fastest for in-memory tensors).
        dtype: ``"float32"`` or ``"float64"``.
        generate_if_missing: let :meth:`prepare_data` generate absent data (~2–4 min on 2 cores).
        shuffle_seed: the training order of epoch e is a permutation seeded by shuffle_seed + e.
    """

    def __init__(
        self,
        data_dir: str = "data/nbody",
        max_samples: int | None = 3000,
        batch_size: int = 100,
        num_train: int = 10000,
        num_valid: int = 2000,
        num_test: int = 2000,
        seed: int = 43,
        input_frame: int = 30,
        target_frame: int = 40,
        num_workers: int = 0,
        drop_last: bool = True,
        dtype: str = "float32",
        generate_if_missing: bool = True,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__()
        if max_samples is None:
            max_samples = num_train
        if not 0 < max_samples <= num_train:
            raise ValueError(
                f"data.max_samples={max_samples} must be in [1, data.num_train={num_train}]: the "
                f"training split has {num_train} simulations. Lower data.max_samples, or raise "
                f"data.num_train (which generates a different, larger dataset).")
        for name, frame in (("input_frame", input_frame), ("target_frame", target_frame)):
            if not 0 <= frame < sim.T_SAVE:
                raise ValueError(f"data.{name}={frame} must be in [0, {sim.T_SAVE - 1}]")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"data.dtype={dtype!r} must be 'float32' or 'float64'")
        self.data_dir = Path(data_dir)
        self.sizes = {"num_train": num_train, "num_valid": num_valid, "num_test": num_test}
        self.seed = seed
        self.max_samples = max_samples
        self.batch_size = batch_size
        self.input_frame, self.target_frame = input_frame, target_frame
        self.num_workers = num_workers
        self.drop_last = drop_last
        self.dtype = getattr(torch, dtype)
        self.generate_if_missing = generate_if_missing
        self.shuffle_seed = shuffle_seed
        self.dataset_dir = self.data_dir / sim.dataset_name(num_train, num_valid, num_test, seed)
        self.task = NBodyTask()
        self.datasets: dict[str, NBodyDataset] = {}
        self.sampler = EpochShuffleSampler(max_samples, shuffle_seed)

    def prepare_data(self) -> None:
        """Generate the data set if its directory is absent (rank 0 only, under Lightning)."""
        if self.dataset_dir.exists():
            return
        if not self.generate_if_missing:
            raise DataIntegrityError(
                f"N-body dataset not found at {self.dataset_dir} and data.generate_if_missing is "
                f"false. Run `python scripts/generate_nbody.py` with the same settings.")
        log.warning("N-body dataset not found at %s: generating %d simulations (seed %d); this "
                    "takes ~2-4 min on 2 CPU cores and happens once.", self.dataset_dir,
                    sum(self.sizes.values()), self.seed)
        started = time.perf_counter()
        sim.generate_dataset(self.data_dir, **self.sizes, seed=self.seed)
        log.warning("N-body dataset generated in %.1f s: %s", time.perf_counter() - started,
                    self.dataset_dir)

    def setup(self, stage: str | None = None) -> None:
        """Load all three splits after verifying them (:func:`load_verified`); idempotent."""
        if self.datasets:
            return
        started = time.perf_counter()
        arrays = load_verified(self.dataset_dir, **self.sizes, seed=self.seed)
        arrays["train"] = {k: v[: self.max_samples] for k, v in arrays["train"].items()}
        self.datasets = {
            split: NBodyDataset.from_reference(**a, input_frame=self.input_frame,
                                               target_frame=self.target_frame, dtype=self.dtype)
            for split, a in arrays.items()
        }
        log.info("N-body data loaded and verified in %.2f s from %s", time.perf_counter() - started,
                 self.dataset_dir)

    def _loader(self, split: str, **kwargs: Any) -> DataLoader:
        if not self.datasets:
            self.setup()
        return stacked_loader(self.datasets[split], self.batch_size, self.num_workers, **kwargs)

    def train_dataloader(self) -> DataLoader:
        if self.drop_last and self.batch_size > self.max_samples:
            raise ValueError(f"data.batch_size={self.batch_size} > data.max_samples="
                             f"{self.max_samples} with drop_last: no training batch")
        return self._loader("train", sampler=self.sampler, drop_last=self.drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
