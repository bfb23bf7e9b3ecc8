"""CMU MoCap (EGNO) task (``experiments.md`` §4.1, ``ecosystem_notes.md`` §8).

* :func:`git_blob_sha1` — the checksum the upstream repository publishes for each file.
* :func:`ensure_files` / :func:`load_case` — download missing files (verified by git blob SHA-1),
  verify present ones on every load, and unpickle them with :func:`~ace.data.mocap.safe_pickle.
  safe_load` (NumPy arrays only).
* :func:`build_split` — the samples of one split, exactly as §4.1 (V = X[1:] − X[:−1], X drops its
  last frame; the first ⌊max_samples/#trials⌋ starts per trial in the split file's order; inputs
  at frame s, targets at frames s + Δ − T + 1 … s + Δ, i.e. s+26 … s+30 for Δ = 30, T = 5).
* :func:`skeleton_graph` — 31 nodes, 60 one-hop (type 1) + 70 two-hop (type 2) directed edges.
* :class:`MoCapDataset`, :class:`MoCapDataModule` — batches are dicts of stacked tensors:

  ========================  ================  =============================================
  key                       shape             meaning
  ========================  ================  =============================================
  ``loc``                   [B, 31, 3]        positions at frame s (raw units, y vertical)
  ``vel``                   [B, 31, 3]        V[s] = X[s+1] − X[s]
  ``target_loc``            [B, T, 31, 3]     positions at frames s+Δ−T+1 … s+Δ
  ``target_vel``            [B, T, 31, 3]     velocities V at the same frames
  ``edge_index``            [2, 130] long     the skeleton graph, *per sample* (node ids 0…30,
                                              the same for every sample — not offset/batched)
  ``edge_type``             [130] long        1 = one-hop, 2 = two-hop
  ========================  ================  =============================================

  The graph travels in every batch (the same two small tensors, not copied per sample) so that a
  model builds all its features from the batch inside ``forward`` and Lightning moves it to the
  device with the rest; it is also exposed as ``datamodule.graph``.
* :class:`MoCapTask` — training loss: mean over the T frames of the per-frame MSE; metric: MSE of
  the last frame (raw units).
* :class:`MoCapRotation` — rotations about the vertical (y) axis, optionally composed with a
  horizontal (x, z) translation.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ace.core.equivariance import GroupAction
from ace.data.base import Task
from ace.data.download import download_file
from ace.data.errors import DataIntegrityError
from ace.data.mocap.safe_pickle import safe_load
from ace.data.samplers import EpochShuffleSampler, identity_collate, stacked_loader

__all__ = [
    "BASE_URL", "BLOB_SHA1", "CASE_FILES", "NUM_NODES", "git_blob_sha1", "ensure_files",
    "load_case", "build_split", "skeleton_graph", "MoCapDataset", "MoCapRotation", "MoCapTask",
    "MoCapDataModule", "identity_collate",
]

log = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]

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
SPLITS = ("train", "val", "test")
TENSOR_KEYS = ("loc", "vel", "target_loc", "target_vel")


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


def verify_file(path: Path, data: bytes | None = None) -> bytes:
    """Check ``path``'s git blob SHA-1 against :data:`BLOB_SHA1`; return its bytes."""
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise DataIntegrityError(
                f"{path} is missing or unreadable ({err}). {_delete_hint(path)}") from err
    actual = git_blob_sha1(data)
    if actual != BLOB_SHA1[path.name]:
        raise DataIntegrityError(
            f"{path}: git blob SHA-1 {actual} does not match the expected "
            f"{BLOB_SHA1[path.name]} (corrupted, truncated or a different file). "
            f"{_delete_hint(path)}")
    return data


def load_case(data_dir: str | Path, case: str = "run"
              ) -> tuple[list[tuple[int, int]], list[np.ndarray], tuple[dict[int, np.ndarray], ...]]:
    """Verify (hash) and safely unpickle the case's files: ``(edges, X, (train, val, test))``.

    Never downloads (see :func:`ensure_files`). Checks the structure: ``edges`` are
    [child, parent] pairs of node ids, ``X`` a list of finite (T, 31, 3) arrays, the split a tuple
    of three {trial: start frames} dicts naming existing trials.
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
    motion = safe_load(verify_file(motion_path), name=str(motion_path))
    splits = safe_load(verify_file(split_path), name=str(split_path))
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


# ---------------------------------------------------------------------------------------------
# Samples and graph
# ---------------------------------------------------------------------------------------------
def target_frames(delta_frame: int, num_timesteps: int) -> np.ndarray:
    """Offsets of the target frames from the start frame: Δ − T + 1 … Δ (26 … 30 by default)."""
    return np.arange(delta_frame - num_timesteps + 1, delta_frame + 1)


def build_split(
    X: Sequence[np.ndarray],
    split: dict[int, np.ndarray],
    max_samples: int,
    delta_frame: int = 30,
    num_timesteps: int = 5,
) -> dict[str, np.ndarray]:
    """Arrays ``loc``, ``vel`` [S, 31, 3] and ``target_loc``, ``target_vel`` [S, T, 31, 3].

    V = X[1:] − X[:−1] and X drops its last frame (so V[f] = X[f+1] − X[f]); per trial, in the
    split's order, the first ⌊max_samples / #trials⌋ start frames s give loc = X[s], vel = V[s]
    and targets at frames s + Δ − T + 1 … s + Δ.
    """
    if not 1 <= num_timesteps <= delta_frame:
        raise ValueError(f"num_timesteps={num_timesteps} must be in [1, delta_frame={delta_frame}]")
    per_trial = max_samples // len(split)
    offsets = target_frames(delta_frame, num_timesteps)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in TENSOR_KEYS}
    for trial, starts in split.items():
        raw = X[trial]
        pos, vel = raw[:-1], raw[1:] - raw[:-1]
        s = np.asarray(starts[:per_trial], dtype=np.int64)
        frames = s[:, None] + offsets[None, :]
        if s.size and (s.min() < 0 or frames.max() >= pos.shape[0]):
            raise DataIntegrityError(
                f"trial {trial}: start frames up to {s.max()} with delta_frame={delta_frame} "
                f"need {frames.max() + 2} frames, the trial has {raw.shape[0]}.")
        parts["loc"].append(pos[s])
        parts["vel"].append(vel[s])
        parts["target_loc"].append(pos[frames])
        parts["target_vel"].append(vel[frames])
    return {k: np.concatenate(v, axis=0) for k, v in parts.items()}


def skeleton_graph(edges: Sequence[tuple[int, int]], num_nodes: int = NUM_NODES
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``edge_index`` [2, E] and ``edge_type`` [E]: every one-hop skeleton edge in both directions
    (type 1), then every pair at graph distance 2 in both directions (type 2); each group in
    row-major (source, destination) order. 60 + 70 = 130 edges for the 31-joint skeleton."""
    adj = np.zeros((num_nodes, num_nodes), dtype=bool)
    for a, b in edges:
        if a != b:
            adj[a, b] = adj[b, a] = True
    two = (adj.astype(np.int64) @ adj.astype(np.int64)) > 0
    two &= ~adj
    np.fill_diagonal(two, False)
    src1, dst1 = np.nonzero(adj)
    src2, dst2 = np.nonzero(two)
    edge_index = torch.from_numpy(np.stack([np.concatenate([src1, src2]),
                                            np.concatenate([dst1, dst2])]).astype(np.int64))
    edge_type = torch.cat([torch.ones(len(src1), dtype=torch.long),
                           torch.full((len(src2),), 2, dtype=torch.long)])
    return edge_index, edge_type


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------
class MoCapDataset(Dataset):
    """One split as stacked tensors (see the module docstring for the keys).

    ``__getitems__`` returns a whole batch as a dict (use it with :func:`identity_collate`); the
    graph tensors ``edge_index``/``edge_type`` are added unchanged to every batch.
    ``__getitem__`` returns one sample's dict (with the graph too).
    """

    def __init__(self, tensors: Batch, edge_index: torch.Tensor, edge_type: torch.Tensor):
        n = tensors["loc"].shape[0]
        assert all(t.shape[0] == n for t in tensors.values())
        self.tensors = tensors
        self.edge_index, self.edge_type = edge_index, edge_type

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], edge_index: torch.Tensor,
                    edge_type: torch.Tensor, dtype: torch.dtype = torch.float32) -> MoCapDataset:
        tensors = {k: torch.from_numpy(np.ascontiguousarray(arrays[k])).to(dtype)
                   for k in TENSOR_KEYS}
        return cls(tensors, edge_index, edge_type)

    def __len__(self) -> int:
        return self.tensors["loc"].shape[0]

    def _with_graph(self, out: Batch) -> Batch:
        out["edge_index"], out["edge_type"] = self.edge_index, self.edge_type
        return out

    def __getitem__(self, index: int) -> Batch:
        return self._with_graph({k: t[index] for k, t in self.tensors.items()})

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self._with_graph({k: t[idx] for k, t in self.tensors.items()})


# ---------------------------------------------------------------------------------------------
# Group action and task
# ---------------------------------------------------------------------------------------------
def _y_rotations(angles: torch.Tensor) -> torch.Tensor:
    """[B] angles ↦ [B, 3, 3] rotations about the y axis (det +1)."""
    c, s = torch.cos(angles), torch.sin(angles)
    zero, one = torch.zeros_like(angles), torch.ones_like(angles)
    return torch.stack([c, zero, s, zero, one, zero, -s, zero, c], dim=-1).view(-1, 3, 3)


class MoCapRotation(GroupAction):
    """Rotations about the vertical (y) axis, optionally with a horizontal (x, z) translation.

    Only this subgroup of E(3): the EGNO node feature Z/Z_max (height) is invariant to it but not
    to tilting rotations or vertical shifts, so even the equivariant model is only equivariant
    to rotations about y (and translations in x, z).

    A group element is a homogeneous matrix [B, 4, 4]: ``g[:, :3, :3]`` the rotation,
    ``g[:, :3, 3]`` the translation (y component 0). A plain [B, 3, 3] rotation is accepted too.
    Positions (``loc``, ``target_loc``, and the model output) are rotated and translated;
    velocities (``vel``, ``target_vel``) only rotated; the graph is left as it is.

    Args:
        translation_std: standard deviation of the random horizontal translation drawn by
            :meth:`sample` (per sample, N(0, std²) in x and z); 0 (default) = rotation only.
    """

    POSITION_KEYS = ("loc", "target_loc")
    VELOCITY_KEYS = ("vel", "target_vel")

    def __init__(self, translation_std: float = 0.0):
        self.translation_std = float(translation_std)

    def batch_size(self, batch: Batch) -> int:
        return batch["loc"].shape[0]

    def reference_tensor(self, batch: Batch) -> torch.Tensor:
        return batch["loc"]

    def sample(self, batch: Batch, generator: torch.Generator | None = None) -> torch.Tensor:
        ref = self.reference_tensor(batch)
        n = self.batch_size(batch)
        angles = torch.rand(n, generator=generator, dtype=torch.float64) * (2 * math.pi)
        g = torch.zeros(n, 4, 4, dtype=torch.float64)
        g[:, :3, :3] = _y_rotations(angles)
        g[:, 3, 3] = 1.0
        if self.translation_std > 0:
            shift = torch.randn(n, 2, generator=generator, dtype=torch.float64)
            g[:, 0, 3] = shift[:, 0] * self.translation_std
            g[:, 2, 3] = shift[:, 1] * self.translation_std
        return g.to(dtype=ref.dtype, device=ref.device)

    @staticmethod
    def _split(g: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        g = g.to(dtype=x.dtype, device=x.device)
        if g.shape[-2:] == (3, 3):
            return g, None
        if g.shape[-2:] != (4, 4):
            raise ValueError(f"group elements must be [B, 3, 3] or [B, 4, 4], got {tuple(g.shape)}")
        return g[:, :3, :3], g[:, :3, 3]

    @classmethod
    def _act(cls, x: torch.Tensor, g: torch.Tensor, translate: bool) -> torch.Tensor:
        """x [B, ..., 3] ↦ R x (+ t), per sample."""
        rot, shift = cls._split(g, x)
        out = torch.einsum("bij,b...j->b...i", rot, x)
        if translate and shift is not None:
            out = out + shift.view(x.shape[0], *(1,) * (x.dim() - 2), 3)
        return out

    def act_on_batch(self, batch: Batch, g: torch.Tensor) -> Batch:
        out = dict(batch)
        for key in self.POSITION_KEYS:
            if key in out:
                out[key] = self._act(out[key], g, translate=True)
        for key in self.VELOCITY_KEYS:
            if key in out:
                out[key] = self._act(out[key], g, translate=False)
        return out

    def act_on_output(self, output: torch.Tensor, g: torch.Tensor, batch: Any) -> torch.Tensor:
        return self._act(output, g, translate=True)


class MoCapTask(Task):
    """Predict positions [B, T, 31, 3] at the target frames (§4.1).

    * ``loss``: per-frame MSE over nodes and coordinates, averaged over the T frames and the batch.
    * ``metric_sums``: per-sample MSE of the **last** frame (s + Δ), raw units; Table 1 reports it
      ×10⁻² (23.8 means 0.238).
    """

    metric_name = "mse"
    metric_unit = None

    def __init__(self, translation_std: float = 0.0) -> None:
        self.group_action = MoCapRotation(translation_std)

    @staticmethod
    def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"MoCap predictions must be [B, T, 31, 3] = {tuple(target.shape)}, "
                             f"got {tuple(pred.shape)}")

    def loss(self, pred: torch.Tensor, batch: Batch) -> torch.Tensor:
        target = batch["target_loc"]
        self._check(pred, target)
        per_frame = (pred - target).pow(2).mean(dim=(0, 2, 3))  # [T]
        return per_frame.mean()

    def metric_sums(self, pred: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, int]:
        target = batch["target_loc"]
        self._check(pred, target)
        per_sample = (pred[:, -1] - target[:, -1]).pow(2).mean(dim=(-2, -1))
        return per_sample.sum(), per_sample.shape[0]

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "eval_frame": "last"}


# ---------------------------------------------------------------------------------------------
# DataModule
# ---------------------------------------------------------------------------------------------
class MoCapDataModule(L.LightningDataModule):
    """CMU MoCap run / walk (``experiments.md`` §4.1).

    Args:
        data_dir: directory holding (or receiving) the case's two pickles.
        case: ``"run"`` (motion_run.pkl + split_run.pkl) or ``"walk"`` (motion.pkl + split.pkl).
        delta_frame, num_timesteps: Δ and T; targets at frames s+Δ−T+1 … s+Δ.
        max_samples_train, max_samples_eval: per split, the first ⌊max_samples/#trials⌋ starts of
            each trial are used (run: 200 / 240 / 240 samples; walk: 198 / 600 / 600).
        batch_size: for all loaders; the training loader drops the last partial batch if
            ``drop_last``.
        num_workers: DataLoader workers (0 is fastest for in-memory tensors).
        base_url: where :meth:`prepare_data` downloads missing files from (``file:///dir/`` works).
        shuffle_seed: the training order of epoch e is a permutation seeded by shuffle_seed + e.
        dtype: ``"float32"`` or ``"float64"``.
        translation_std: horizontal translation of the task's group action (0 = rotations only).
    """

    def __init__(
        self,
        data_dir: str = "data/mocap",
        case: str = "run",
        delta_frame: int = 30,
        num_timesteps: int = 5,
        max_samples_train: int = 200,
        max_samples_eval: int = 600,
        batch_size: int = 12,
        num_workers: int = 0,
        base_url: str = BASE_URL,
        shuffle_seed: int = 0,
        drop_last: bool = True,
        dtype: str = "float32",
        translation_std: float = 0.0,
    ) -> None:
        super().__init__()
        if case not in CASE_FILES:
            raise ValueError(f"data.case={case!r} must be one of {sorted(CASE_FILES)}")
        if not 1 <= num_timesteps <= delta_frame:
            raise ValueError(f"data.num_timesteps={num_timesteps} must be in "
                             f"[1, data.delta_frame={delta_frame}]")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"data.dtype={dtype!r} must be 'float32' or 'float64'")
        self.data_dir = Path(data_dir)
        self.case = case
        self.delta_frame, self.num_timesteps = delta_frame, num_timesteps
        self.max_samples = {"train": max_samples_train, "val": max_samples_eval,
                            "test": max_samples_eval}
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.base_url = base_url
        self.shuffle_seed = shuffle_seed
        self.drop_last = drop_last
        self.dtype = getattr(torch, dtype)
        self.task = MoCapTask(translation_std)
        self.datasets: dict[str, MoCapDataset] = {}
        self.graph: dict[str, torch.Tensor] = {}
        self.sampler: EpochShuffleSampler | None = None

    def prepare_data(self) -> None:
        """Download missing files and verify all of them (rank 0 only, under Lightning)."""
        ensure_files(self.data_dir, self.case, self.base_url)

    def setup(self, stage: str | None = None) -> None:
        """Verify (hash), load and build all three splits; idempotent. Never downloads: that is
        :meth:`prepare_data`'s job (rank 0 only), so every file is read and hashed once here."""
        if self.datasets:
            return
        edges, X, splits = load_case(self.data_dir, self.case)
        edge_index, edge_type = skeleton_graph(edges)
        self.graph = {"edge_index": edge_index, "edge_type": edge_type}
        for name, split in zip(SPLITS, splits):
            arrays = build_split(X, split, self.max_samples[name], self.delta_frame,
                                 self.num_timesteps)
            self.datasets[name] = MoCapDataset.from_arrays(arrays, edge_index, edge_type,
                                                           self.dtype)
        self.sampler = EpochShuffleSampler(len(self.datasets["train"]), self.shuffle_seed)
        log.info("MoCap %s loaded from %s: %s samples", self.case, self.data_dir,
                 {k: len(v) for k, v in self.datasets.items()})

    def _loader(self, split: str, **kwargs: Any) -> DataLoader:
        if not self.datasets:
            self.setup()
        return stacked_loader(self.datasets[split], self.batch_size, self.num_workers, **kwargs)

    def train_dataloader(self) -> DataLoader:
        if not self.datasets:
            self.setup()
        n = len(self.datasets["train"])
        if self.drop_last and self.batch_size > n:
            raise ValueError(f"data.batch_size={self.batch_size} > {n} training samples with "
                             f"drop_last: no training batch")
        return self._loader("train", sampler=self.sampler, drop_last=self.drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
