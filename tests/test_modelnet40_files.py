"""ModelNet40 on disk (both formats, download / extraction, cache) and the synthetic stand-in,
on tiny files written here in the real formats. No network."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ace.data.errors import DataIntegrityError, DownloadError
from ace.data.modelnet40.files import DIRNAMES, PUBLISHED_MD5, ensure_modelnet40
from ace.data.modelnet40.fixtures import make_zip, write_tiny_normal_resampled, write_tiny_ply_hdf5
from ace.data.modelnet40.readers import (
    load_modelnet40,
    load_normal_resampled,
    load_ply_hdf5,
    normal_resampled_cache_path,
)
from ace.data.modelnet40.synthetic import SHAPES, make_synthetic_pointclouds

NAMES = ("airplane", "flower_pot", "night_stand")
NR, H5 = DIRNAMES["normal_resampled"], DIRNAMES["ply_hdf5_2048"]


@pytest.fixture
def nr_root(tmp_path):
    return write_tiny_normal_resampled(tmp_path / "src" / NR, NAMES, per_class_train=3,
                                       per_class_test=2, points_per_shape=40, seed=1)


@pytest.fixture
def h5_src(tmp_path):
    root = tmp_path / "src" / H5
    md5 = write_tiny_ply_hdf5(root, NAMES, num_train=10, num_test=4, points_per_shape=64,
                              seed=2)
    return root, md5


def leftovers(data_dir):
    return sorted(p.name for p in data_dir.iterdir()) if data_dir.exists() else []


# ---------------------------------------------------------------------------------------------
# normal_resampled
# ---------------------------------------------------------------------------------------------
def test_normal_resampled_reads_the_first_points_centred_on_the_unit_sphere(nr_root):
    data = load_normal_resampled(nr_root, 25)
    assert data["shape_names"] == list(NAMES)
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    assert xtr.shape == (9, 25, 3) and xte.shape == (6, 25, 3)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64 and yte.dtype == np.int64
    assert ytr.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and yte.tolist() == [0, 0, 1, 1, 2, 2]
    assert data["train_ids"][3] == "flower_pot_0001" and data["test_ids"][4] == "night_stand_0004"
    for x in (xtr, xte):
        np.testing.assert_allclose(x.mean(axis=1), 0, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(x, axis=-1).max(axis=1), 1, atol=1e-6)
    # the first 25 lines of the file, xyz only, normalised the PointNet++ way
    raw = np.loadtxt(nr_root / "night_stand" / "night_stand_0004.txt", delimiter=",")
    assert raw.shape == (40, 6)
    xyz = raw[:25, :3].astype(np.float32)
    xyz -= xyz.mean(axis=0)
    xyz /= np.linalg.norm(xyz, axis=1).max()
    np.testing.assert_allclose(xte[4], xyz, atol=1e-6)


def test_normal_resampled_bad_shape_files_are_named(nr_root):
    target = nr_root / "flower_pot" / "flower_pot_0002.txt"
    lines = target.read_text().splitlines()
    target.write_text("\n".join(lines[:10]) + "\n")
    with pytest.raises(DataIntegrityError, match=r"flower_pot_0002\.txt has 10 points"):
        load_normal_resampled(nr_root, 25)
    target.write_text("\n".join(lines[:5] + ["1.0,abc,2.0,0,0,1"] + lines[6:]) + "\n")
    with pytest.raises(DataIntegrityError, match=r"flower_pot_0002\.txt is not comma-separated"):
        load_normal_resampled(nr_root, 25)
    target.unlink()
    with pytest.raises(DataIntegrityError, match=r"flower_pot_0002\.txt not found"):
        load_normal_resampled(nr_root, 25)
    with pytest.raises(DataIntegrityError, match="modelnet40_train.txt"):
        (nr_root / "modelnet40_train.txt").unlink()
        load_normal_resampled(nr_root, 25)


def test_normal_resampled_cache_is_used_and_invalidated_by_the_lists(nr_root):
    first = load_normal_resampled(nr_root, 20)
    cache = normal_resampled_cache_path(nr_root, 20)
    assert cache == nr_root.parent / "cache" / "modelnet40_normal_resampled_20.npz"
    assert cache.is_file()
    gone = nr_root / "airplane" / "airplane_0002.txt"
    gone.unlink()
    second = load_normal_resampled(nr_root, 20)  # from the cache: the txt is not read
    for split in ("train", "test"):
        for a, b in zip(first[split], second[split]):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
        assert first[f"{split}_ids"] == second[f"{split}_ids"]
    assert second["shape_names"] == first["shape_names"]
    # another num_points is another cache file: the txt files are read
    with pytest.raises(DataIntegrityError, match="airplane_0002.txt"):
        load_normal_resampled(nr_root, 21)
    # a changed list file invalidates the cache (same ids, another order: re-read, fails)
    listing = nr_root / "modelnet40_train.txt"
    ids = listing.read_text().split()
    listing.write_text("\n".join(reversed(ids)) + "\n")
    with pytest.raises(DataIntegrityError, match="airplane_0002.txt"):
        load_normal_resampled(nr_root, 20)
    listing.write_text("\n".join(i for i in ids if i != "airplane_0002") + "\n")
    third = load_normal_resampled(nr_root, 20)
    assert len(third["train"][1]) == 8 and "airplane_0002" not in third["train_ids"]
    # a damaged cache is rebuilt, not trusted
    cache.write_bytes(b"not an npz")
    np.testing.assert_array_equal(load_normal_resampled(nr_root, 20)["train"][0],
                                  third["train"][0])


# ---------------------------------------------------------------------------------------------
# ply_hdf5_2048
# ---------------------------------------------------------------------------------------------
def test_ply_hdf5_reads_the_shards_as_they_are(h5_src):
    import h5py

    root, md5 = h5_src
    assert sorted(md5) == ["ply_data_test0.h5", "ply_data_train0.h5", "ply_data_train1.h5"]
    assert (root / "train_files.txt").read_text().splitlines()[1] == \
        "data/modelnet40_ply_hdf5_2048/ply_data_train1.h5"
    data = load_ply_hdf5(root, 32, expected_md5=md5)
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    assert data["shape_names"] == list(NAMES)
    assert xtr.shape == (10, 32, 3) and xte.shape == (4, 32, 3)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    assert ytr.tolist() == [i % 3 for i in range(10)] and yte.tolist() == [0, 1, 2, 0]
    with h5py.File(root / "ply_data_train1.h5", "r") as f:
        assert f["label"].shape == (5, 1) and f["label"].dtype == np.uint8
        np.testing.assert_array_equal(xtr[5:], f["data"][:, :32])  # first points, no rescaling
    assert data["train_ids"][5] == "ply_data_train1.h5:0"
    with pytest.raises(DataIntegrityError, match="num_points=65"):
        load_ply_hdf5(root, 65, expected_md5=md5)


def test_ply_hdf5_md5_and_truncation_errors_name_the_shard(h5_src):
    root, md5 = h5_src
    # the tiny shards carry real names, so the published table applies and rejects them
    assert "ply_data_train0.h5" in PUBLISHED_MD5
    with pytest.raises(DataIntegrityError, match=r"ply_data_train0\.h5: MD5 .* does not match"):
        load_ply_hdf5(root, 16)
    shard = root / "ply_data_train1.h5"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(DataIntegrityError, match=r"ply_data_train1\.h5: MD5"):
        load_ply_hdf5(root, 16, expected_md5=md5)
    # names missing from the table are not hashed: HDF5 itself reports the truncation
    with pytest.raises(DataIntegrityError, match=r"ply_data_train1\.h5 is not a readable HDF5.*"
                                                 r"truncated"):
        load_ply_hdf5(root, 16, expected_md5={})


# ---------------------------------------------------------------------------------------------
# ensure_modelnet40: download (file://), extraction, staging, directory URLs
# ---------------------------------------------------------------------------------------------
def test_download_extracts_once_and_reuses(nr_root, tmp_path):
    archive = make_zip(nr_root)
    assert archive == nr_root.parent / f"{NR}.zip"
    data_dir = tmp_path / "data"
    root = ensure_modelnet40(data_dir, "normal_resampled", url=archive.as_uri())
    assert root == data_dir / NR and (root / "night_stand" / "night_stand_0005.txt").is_file()
    assert leftovers(data_dir) == [NR, f"{NR}.zip"]  # no staging dir
    # no re-download: both zips gone, a dead URL, still fine
    archive.unlink()
    (data_dir / f"{NR}.zip").unlink()
    assert ensure_modelnet40(data_dir, "normal_resampled", url=archive.as_uri()) == root
    got = load_modelnet40(data_dir, "normal_resampled", 30, url="file:///nonexistent.zip")
    want = load_normal_resampled(nr_root, 30)
    np.testing.assert_array_equal(got["train"][0], want["train"][0])
    np.testing.assert_array_equal(got["test"][1], want["test"][1])
    assert (data_dir / "cache" / "modelnet40_normal_resampled_30.npz").is_file()


def test_an_existing_zip_in_data_dir_is_reused(nr_root, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    make_zip(nr_root, data_dir / f"{NR}.zip")
    root = ensure_modelnet40(data_dir, "normal_resampled", url="file:///nonexistent/x.zip")
    assert root == data_dir / NR and (root / "modelnet40_test.txt").is_file()


def test_a_plain_zip_path_and_h5_download_with_md5(h5_src, tmp_path):
    root, md5 = h5_src
    archive = make_zip(root)
    data_dir = tmp_path / "data"
    got = load_modelnet40(data_dir, "ply_hdf5_2048", 16, url=str(archive), expected_md5=md5)
    assert got["train"][0].shape == (10, 16, 3)
    assert leftovers(data_dir) == [H5, f"{H5}.zip"]


def test_an_extracted_directory_url_is_used_in_place(nr_root, h5_src, tmp_path):
    data_dir = tmp_path / "data"
    for url in (nr_root.as_uri(), str(nr_root), nr_root.parent.as_uri()):
        assert ensure_modelnet40(data_dir, "normal_resampled", url=url) == nr_root
    h5_root, md5 = h5_src
    assert ensure_modelnet40(data_dir, "ply_hdf5_2048", url=h5_root.as_uri(),
                             expected_md5=md5) == h5_root
    assert not data_dir.exists()  # nothing copied
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(DataIntegrityError, match="not an extracted modelnet40_ply_hdf5_2048"):
        ensure_modelnet40(data_dir, "ply_hdf5_2048", url=(tmp_path / "elsewhere").as_uri())
    (h5_root / "ply_data_test0.h5").unlink()
    with pytest.raises(DataIntegrityError, match=r"incomplete: missing ply_data_test0\.h5"):
        ensure_modelnet40(data_dir, "ply_hdf5_2048", url=h5_root.as_uri())


def test_md5_mismatch_in_the_archive_leaves_nothing_behind(h5_src, tmp_path):
    root, _ = h5_src
    archive = make_zip(root)
    data_dir = tmp_path / "data"
    with pytest.raises(DataIntegrityError,
                       match=r"(?s)ply_data_train0\.h5 in the archive .*: MD5 .*was deleted"):
        ensure_modelnet40(data_dir, "ply_hdf5_2048", url=archive.as_uri())  # published MD5s
    assert leftovers(data_dir) == []  # no staging, no final dir, no zip


def test_a_truncated_zip_leaves_nothing_behind(nr_root, tmp_path):
    archive = make_zip(nr_root)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    data_dir = tmp_path / "data"
    with pytest.raises(DataIntegrityError, match=rf"{NR}\.zip.*could not be extracted"):
        ensure_modelnet40(data_dir, "normal_resampled", url=archive.as_uri())
    assert leftovers(data_dir) == []


def test_an_archive_missing_a_shape_file_is_rejected(nr_root, tmp_path):
    (nr_root / "airplane" / "airplane_0003.txt").unlink()
    data_dir = tmp_path / "data"
    with pytest.raises(DataIntegrityError, match=r"lacks airplane/airplane_0003\.txt"):
        ensure_modelnet40(data_dir, "normal_resampled", url=make_zip(nr_root).as_uri())
    assert leftovers(data_dir) == []


def test_download_errors_and_incomplete_directories(nr_root, tmp_path):
    data_dir = tmp_path / "data"
    with pytest.raises(DownloadError, match="nothing-here.zip"):
        ensure_modelnet40(data_dir, "normal_resampled", url=(tmp_path / "nothing-here.zip").as_uri())
    assert not (data_dir / f"{NR}.zip").exists()
    shutil.copytree(nr_root, data_dir / NR)
    (data_dir / NR / "modelnet40_test.txt").unlink()
    with pytest.raises(DataIntegrityError, match=r"incomplete: missing modelnet40_test\.txt.*"
                                                 r"Delete"):
        ensure_modelnet40(data_dir, "normal_resampled")
    with pytest.raises(ValueError, match="data.format"):
        ensure_modelnet40(data_dir, "off")


# ---------------------------------------------------------------------------------------------
# synthetic (not ModelNet40)
# ---------------------------------------------------------------------------------------------
def test_synthetic_is_deterministic_balanced_and_normalised():
    a = make_synthetic_pointclouds(num_train=200, num_test=60, num_points=128, seed=3)
    b = make_synthetic_pointclouds(num_train=200, num_test=60, num_points=128, seed=3)
    c = make_synthetic_pointclouds(num_train=200, num_test=60, num_points=128, seed=4)
    assert len(SHAPES) >= 10 and len(a["shape_names"]) == 10
    assert a["shape_names"][0] == "synthetic_sphere"
    for split, n in (("train", 200), ("test", 60)):
        x, y = a[split]
        assert x.shape == (n, 128, 3) and x.dtype == np.float32 and y.dtype == np.int64
        assert np.bincount(y, minlength=10).tolist() == [n // 10] * 10
        np.testing.assert_array_equal(x, b[split][0])
        np.testing.assert_array_equal(y, b[split][1])
        assert not np.array_equal(x, c[split][0])
        np.testing.assert_allclose(x.mean(axis=1), 0, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(x, axis=-1).max(axis=1), 1, atol=1e-5)
        assert len(a[f"{split}_ids"]) == n
    assert not np.array_equal(a["train"][0][:60], a["test"][0])  # disjoint streams
    all14 = make_synthetic_pointclouds(num_train=14 * 3 + 5, num_test=0, num_points=8,
                                       num_classes=14)
    assert np.bincount(all14["train"][1]).tolist() == [4] * 5 + [3] * 9
    assert all14["test"][0].shape == (0, 8, 3)


def test_synthetic_is_learnable_but_not_trivial():
    data = make_synthetic_pointclouds(num_train=1000, num_test=500, num_points=300, seed=0)

    def features(x):  # rotation-invariant: histogram of distances to the centroid
        r = np.linalg.norm(x - x.mean(axis=1, keepdims=True), axis=-1)
        return np.stack([np.histogram(ri, bins=16, range=(0, 1))[0] for ri in r]) / x.shape[1]

    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    ftr, fte = features(xtr), features(xte)
    centroids = np.stack([ftr[ytr == k].mean(axis=0) for k in range(10)])
    pred = np.argmin(((fte[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = (pred == yte).mean()
    assert 0.3 < accuracy < 0.8, accuracy  # chance is 0.1; measured ~0.48 over seeds
