"""Tiny ModelNet40 data sets in the real on-disk formats (real layout and file names, made-up
points), for tests and the offline download path: :func:`write_tiny_normal_resampled`,
:func:`write_tiny_ply_hdf5`, :func:`make_zip`."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ace.data.modelnet40.files import _H5_LISTS, _NR_LISTS, _SPLITS, md5_file

__all__ = ["make_zip", "write_tiny_normal_resampled", "write_tiny_ply_hdf5"]


# ---------------------------------------------------------------------------------------------
# Tiny data sets in the real formats (tests)
# ---------------------------------------------------------------------------------------------
def _tiny_cloud(rng: np.random.Generator, n: int, label: int) -> np.ndarray:
    """Made-up points: an anisotropic blob, off-centre and not unit-scaled, so the loaders'
    normalisation is visible."""
    scale = np.array([1.0 + label, 0.5, 0.25]) * rng.uniform(0.5, 2.0)
    return rng.normal(size=(n, 3)) * scale + rng.uniform(-3, 3, size=3)


def write_tiny_normal_resampled(root: str | Path, shape_names: Sequence[str] = ("airplane",
                                "flower_pot", "night_stand"), per_class_train: int = 3,
                                per_class_test: int = 2, points_per_shape: int = 40,
                                seed: int = 0) -> Path:
    """Write a tiny ``modelnet40_normal_resampled`` directory at ``root`` in the real format.

    ``modelnet40_shape_names.txt``, ``modelnet40_train.txt``, ``modelnet40_test.txt`` and
    ``<class>/<class>_<NNNN>.txt`` files of ``points_per_shape`` lines ``x,y,z,nx,ny,nz`` (six
    decimals, unit normals), numbered from 0001 with the train shapes first, as in the real
    archive. The points are made up (random blobs). Returns ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    ids: dict[str, list[str]] = {"train": [], "test": []}
    for label, name in enumerate(shape_names):
        (root / name).mkdir(exist_ok=True)
        counts = (("train", per_class_train), ("test", per_class_test))
        k = 0
        for split, count in counts:
            for _ in range(count):
                k += 1
                shape_id = f"{name}_{k:04d}"
                xyz = _tiny_cloud(rng, points_per_shape, label)
                normals = rng.normal(size=(points_per_shape, 3))
                normals /= np.linalg.norm(normals, axis=1, keepdims=True)
                np.savetxt(root / name / f"{shape_id}.txt", np.hstack([xyz, normals]),
                           fmt="%.6f", delimiter=",")
                ids[split].append(shape_id)
    (root / "modelnet40_shape_names.txt").write_text("".join(f"{n}\n" for n in shape_names))
    for split in _SPLITS:
        (root / _NR_LISTS[split]).write_text("".join(f"{i}\n" for i in ids[split]))
    return root


def write_tiny_ply_hdf5(root: str | Path, shape_names: Sequence[str] = ("airplane",
                        "flower_pot", "night_stand"), num_train: int = 10, num_test: int = 4,
                        points_per_shape: int = 64, train_shards: int = 2,
                        test_shards: int = 1, seed: int = 0) -> dict[str, str]:
    """Write a tiny ``modelnet40_ply_hdf5_2048`` directory at ``root`` in the real format.

    ``shape_names.txt``; ``train_files.txt`` / ``test_files.txt`` listing
    ``data/modelnet40_ply_hdf5_2048/ply_data_<split><k>.h5`` as the real ones do; shards with
    ``data`` (n, points_per_shape, 3) float32, ``label`` (n, 1) uint8 and ``normal`` (n, P, 3)
    float32. Shapes are split as evenly as possible over the shards; labels cycle over the
    classes. Returns ``{shard file name: MD5}`` of what was written (pass it as
    ``expected_md5``: the shards cannot match :data:`PUBLISHED_MD5`).
    """
    import h5py

    root = Path(root)
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "shape_names.txt").write_text("".join(f"{n}\n" for n in shape_names))
    md5s: dict[str, str] = {}
    for split, total, shards in (("train", num_train, train_shards),
                                 ("test", num_test, test_shards)):
        lines = []
        for k, rows in enumerate(np.array_split(np.arange(total), shards)):
            name = f"ply_data_{split}{k}.h5"
            labels = (rows % len(shape_names)).astype(np.uint8)
            data = np.stack([_tiny_cloud(rng, points_per_shape, int(c)) for c in labels]
                            ).astype(np.float32).reshape(len(rows), points_per_shape, 3)
            normal = rng.normal(size=data.shape).astype(np.float32)
            with h5py.File(root / name, "w") as f:
                f.create_dataset("data", data=data)
                f.create_dataset("label", data=labels[:, None])
                f.create_dataset("normal", data=normal)
            md5s[name] = md5_file(root / name)
            lines.append(f"data/modelnet40_ply_hdf5_2048/{name}\n")
        (root / _H5_LISTS[split]).write_text("".join(lines))
    return md5s


def make_zip(root: str | Path, dest: str | Path | None = None) -> Path:
    """Zip the directory ``root`` with ``root.name`` as the archive's top-level folder (as the
    published archives are laid out); ``dest`` defaults to ``<root>.zip`` beside it."""
    root = Path(root)
    dest = root.with_name(root.name + ".zip") if dest is None else Path(dest)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{root.name}/", "")
        for path in sorted(root.rglob("*")):
            arcname = f"{root.name}/{path.relative_to(root).as_posix()}"
            if path.is_dir():
                archive.writestr(arcname + "/", "")
            else:
                archive.write(path, arcname)
    dest.write_bytes(buffer.getvalue())
    return dest
