"""The charged N-body data module (``experiments.md`` §1.1): positions at frame 40 from the state
at frame 30.

:class:`NBodyDataModule` generates the data on first use (``simulator.generate_dataset``), verifies
it on every ``setup`` (:func:`~ace.data.nbody.files.load_verified`: manifest parameters, SHA-256,
shapes, finiteness), and serves deterministic, epoch-seeded shuffled training batches through the
shared loaders of :class:`~ace.data.in_memory.InMemoryDataModule`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ace.data.errors import DataIntegrityError
from ace.data.in_memory import InMemoryDataModule
from ace.data.nbody import simulator as sim
from ace.data.nbody.dataset import NBodyDataset
from ace.data.nbody.files import load_verified
from ace.data.nbody.task import NBodyTask
from ace.data.samplers import EpochShuffleSampler
from ace.data.transforms import BatchTransform

__all__ = ["NBodyDataModule"]

log = logging.getLogger(__name__)


class NBodyDataModule(InMemoryDataModule):
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
        train_transform, eval_transform: batch transforms (:mod:`ace.data.transforms`), e.g. the
            SO(3) augmentation of the ``nbody_segnn_aug`` baseline.
        eval_batch_size: validation and test batch size (None: ``batch_size``), see
            :class:`~ace.data.in_memory.InMemoryDataModule`.
    """

    splits = sim.SPLITS  # ("train", "valid", "test")

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
        train_transform: BatchTransform | None = None,
        eval_transform: BatchTransform | None = None,
        eval_batch_size: int | None = None,
    ) -> None:
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
        super().__init__(batch_size, num_workers, drop_last, shuffle_seed, dtype,
                         train_transform, eval_transform, eval_batch_size)
        self.data_dir = Path(data_dir)
        self.sizes = {"num_train": num_train, "num_valid": num_valid, "num_test": num_test}
        self.seed = seed
        self.max_samples = max_samples
        self.input_frame, self.target_frame = input_frame, target_frame
        self.generate_if_missing = generate_if_missing
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

    def num_train_samples(self) -> int:
        """``max_samples``, known before the data are loaded (the check needs no ``setup``)."""
        return self.max_samples

    def describe_train_size(self, n: int) -> str:
        return f"data.max_samples={n}"
