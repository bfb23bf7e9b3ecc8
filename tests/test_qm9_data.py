"""QM9 data (experiments.md §2.1 / §3.1): PyG processing, download, splits, task, group action.

Everything runs offline on a tiny QM9 written in PyG's raw format (ace/data/qm9/tiny.py) and
served through ``file://`` URLs.
"""

from __future__ import annotations

import hashlib
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data
from torchmetrics.regression import MeanSquaredError

from ace.core.equivariance import random_rotations
from ace.data.base import Task
from ace.data.download import download_file, extract_zip
from ace.data.errors import DataIntegrityError, DownloadError
from ace.data.metrics import MetricSpec
from ace.data.nbody import NBodyTask
from ace.data.qm9 import (
    PYG_QM9_URL,
    TARGET_NAMES,
    QM9DataModule,
    QM9Dataset,
    QM9Rotation,
    QM9Task,
    resolve_target,
    split_indices,
)
from ace.data.qm9.tiny import HAR2EV, KCALMOL2EV, make_qm9_zip, tiny_qm9_records, write_tiny_qm9
from tests.conftest import metric_value

N_TINY = 30  # 3 molecules x (1 + 9 copies)
TINY = dict(cormorant_num_train=20, batch_size=8)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


@pytest.fixture(scope="module")
def records():
    return tiny_qm9_records(copies=9, seed=0)


@pytest.fixture(scope="module")
def qm9_zip(tmp_path_factory, records) -> Path:
    return make_qm9_zip(tmp_path_factory.mktemp("src") / "qm9_v3.zip", records)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, qm9_zip) -> Path:
    """A dataset root made once through the real download path (file:// URL)."""
    root = tmp_path_factory.mktemp("data") / "qm9"
    QM9DataModule(data_dir=str(root), url=qm9_zip.as_uri()).prepare_data()
    return root


def make_dm(root, **kwargs) -> QM9DataModule:
    return QM9DataModule(data_dir=str(root), url="file:///nonexistent/qm9_v3.zip",
                         **{**TINY, **kwargs})


# ------------------------------------------------------------------------ PyG processing
def test_raw_file_processed_in_pyg_units(tmp_path):
    root = tmp_path / "qm9"
    recs = write_tiny_qm9(root, copies=0)
    ds = QM9Dataset(root, download=False)
    assert (root / "processed" / "data_v3.pt").is_file() and len(ds) == 3
    methane, ammonia, water = ds[0], ds[1], ds[2]
    assert methane.name == "gdb_1" and water.name == "gdb_3" and int(water.idx) == 2
    assert methane.y.shape == (1, 19) and methane.y.dtype == torch.float32
    close = dict(rtol=1e-6, atol=0)
    assert torch.isclose(methane.y[0, 7], torch.tensor(-40.47893 * HAR2EV), **close)  # U0, eV
    assert torch.isclose(methane.y[0, 11], torch.tensor(6.469), **close)  # cv
    assert torch.isclose(water.y[0, 2], torch.tensor(-0.2928 * HAR2EV), **close)  # homo, eV
    assert torch.isclose(ammonia.y[0, 0], torch.tensor(1.6256), **close)  # mu, D
    assert torch.isclose(methane.y[0, 12], torch.tensor(-395.999595 * KCALMOL2EV), **close)
    assert torch.isclose(water.y[0, 16], torch.tensor(799.58812), **close)  # A, GHz
    for data, rec in zip((methane, ammonia, water), recs):
        for key in ("x", "z", "pos", "edge_index", "edge_attr", "y"):
            assert torch.equal(getattr(data, key), rec[key]), key
    # PyG's featurisation: one-hot H/C/N/O/F, Z, ..., bonded hydrogens; bonds both directions
    assert methane.x[0, :6].tolist() == [0, 1, 0, 0, 0, 6] and methane.x[0, 10] == 4
    assert water.x[1].tolist() == [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert water.edge_index.tolist() == [[0, 0, 1, 2], [1, 2, 0, 0]]
    batch = Batch.from_data_list([methane, ammonia, water])
    assert batch.num_graphs == 3 and batch.y.shape == (3, 19) and batch.pos.shape == (12, 3)


def test_rdkit_free_path_even_with_rdkit(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rdkit", types.ModuleType("rdkit"))  # "installed"
    root = tmp_path / "qm9"
    write_tiny_qm9(root, copies=0)
    ds = QM9Dataset(root, download=False)
    assert ds.raw_file_names == ["qm9_v3.pt"] and len(ds) == 3


# ------------------------------------------------------------------------- download path
def test_prepare_data_from_file_url(prepared, records, qm9_zip):
    assert (prepared / "processed" / "data_v3.pt").is_file()
    assert (prepared / "raw" / "qm9_v3.pt").is_file()
    assert not (prepared / "raw" / "qm9_v3.zip").exists()  # the archive is removed
    assert leftovers(prepared.parent) == ["qm9"]  # no staging directory left
    dm = make_dm(prepared)  # a bad URL: the present dataset is used, nothing is downloaded
    dm.prepare_data()
    dm.setup()
    assert sum(len(d) for d in dm.datasets.values()) == len(records) == N_TINY
    ds = dm.dataset
    assert [d.name for d in ds[:3]] == ["gdb_1", "gdb_2", "gdb_3"]
    assert torch.equal(ds[17].pos, records[17]["pos"])


def test_bad_url_leaves_nothing(tmp_path):
    parent = tmp_path / "data"
    url = (tmp_path / "missing" / "qm9_v3.zip").as_uri()
    dm = QM9DataModule(data_dir=str(parent / "qm9"), url=url)
    with pytest.raises(DownloadError) as info:
        dm.prepare_data()
    msg = str(info.value)
    assert url in msg and "data.url=file://" in msg and "network" in msg
    assert leftovers(parent) == []


def _zip_with(path: Path, name: str, payload: bytes) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name, payload)
    return path


@pytest.mark.parametrize("kind", ["garbage", "truncated", "wrong_member", "bad_raw"])
def test_corrupt_archive_leaves_nothing(tmp_path, qm9_zip, kind):
    src = tmp_path / "qm9_v3.zip"
    if kind == "garbage":
        src.write_bytes(b"this is not a zip archive" * 10)
        expect = "not a valid zip"
    elif kind == "truncated":
        src.write_bytes(qm9_zip.read_bytes()[: qm9_zip.stat().st_size // 2])
        expect = "not a valid zip"
    elif kind == "wrong_member":
        _zip_with(src, "something_else.pt", b"x")
        expect = "no qm9_v3.pt"
    else:
        _zip_with(src, "qm9_v3.pt", b"not a torch file")
        expect = "qm9_v3.pt is not a readable torch file"
    parent = tmp_path / "data"
    with pytest.raises(DataIntegrityError, match=expect) as info:
        QM9DataModule(data_dir=str(parent / "qm9"), url=src.as_uri()).prepare_data()
    assert "Delete" in str(info.value) or "data.url" in str(info.value)
    assert leftovers(parent) == []


def test_interrupted_processing_leaves_nothing(tmp_path, qm9_zip, monkeypatch):
    def boom(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(QM9Dataset, "process", boom)
    parent = tmp_path / "data"
    with pytest.raises(KeyboardInterrupt):
        QM9DataModule(data_dir=str(parent / "qm9"), url=qm9_zip.as_uri()).prepare_data()
    assert leftovers(parent) == []


def test_incomplete_directory_is_reported(tmp_path, qm9_zip):
    root = tmp_path / "qm9"
    (root / "raw").mkdir(parents=True)
    with pytest.raises(DataIntegrityError, match="no processed/data_v3.pt"):
        QM9DataModule(data_dir=str(root), url=qm9_zip.as_uri()).prepare_data()
    root2 = tmp_path / "empty"  # an empty directory counts as absent
    root2.mkdir()
    QM9DataModule(data_dir=str(root2), url=qm9_zip.as_uri()).prepare_data()
    assert (root2 / "processed" / "data_v3.pt").is_file()


def test_setup_before_prepare(tmp_path):
    with pytest.raises(DataIntegrityError, match="prepare_data"):
        make_dm(tmp_path / "qm9").setup()


def test_corrupted_processed_file(prepared, tmp_path):
    import shutil

    root = tmp_path / "qm9"
    shutil.copytree(prepared, root)
    f = root / "processed" / "data_v3.pt"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(DataIntegrityError, match="data_v3.pt") as info:
        make_dm(root).setup()
    assert f"Delete the directory {root}" in str(info.value)
    f.write_bytes(b"\x00garbage")
    with pytest.raises(DataIntegrityError, match="corrupted or unreadable"):
        make_dm(root).setup()


# ---------------------------------------------------------------------------------- splits
def _ids(dataset) -> list[int]:
    return [int(d.idx) for d in dataset]


def test_cormorant_split_matches_recomputation(prepared):
    dm = make_dm(prepared)
    dm.setup()
    # SEGNN / Cormorant code: np.random.seed(0); perm = np.random.permutation(N); np.split
    state = np.random.get_state()
    np.random.seed(0)
    perm = np.random.permutation(N_TINY)
    np.random.set_state(state)
    n_train, n_test = 20, int(0.1 * N_TINY)
    n_valid = N_TINY - n_train - n_test
    train, valid, test, extra = np.split(perm, [n_train, n_train + n_valid, N_TINY])
    assert len(extra) == 0 and (n_valid, n_test) == (7, 3)
    assert _ids(dm.datasets["train"]) == train.tolist()
    assert _ids(dm.datasets["valid"]) == valid.tolist()
    assert _ids(dm.datasets["test"]) == test.tolist()
    assert dm.split_seed == 0 and make_dm(prepared, split_seed=5).split_seed == 5
    other = make_dm(prepared, split_seed=5)  # the seed does not change the Cormorant split
    other.setup()
    assert _ids(other.datasets["test"]) == test.tolist()


def test_cormorant_split_too_small(prepared):
    with pytest.raises(ValueError, match="data.cormorant_num_train=27"):
        make_dm(prepared, cormorant_num_train=27).setup()  # 30 - 27 - 3 = 0 validation


def test_random_split_per_seed(prepared):
    def split(seed):
        dm = make_dm(prepared, split="random", split_seed=seed)
        dm.setup()
        return {s: _ids(d) for s, d in dm.datasets.items()}

    a, b, a2 = split(0), split(1), split(0)
    assert a == a2 and a != b
    for s in (a, b):
        assert [len(s[k]) for k in ("train", "valid", "test")] == [24, 3, 3]
        assert sorted(s["train"] + s["valid"] + s["test"]) == list(range(N_TINY))
    perm = torch.randperm(N_TINY, generator=torch.Generator().manual_seed(1)).tolist()
    assert b["train"] == perm[:24] and b["valid"] == perm[24:27] and b["test"] == perm[27:]


@pytest.mark.parametrize("split,sizes", [("cormorant", (100_000, 17_748, 13_083)),
                                         ("random", (104_664, 13_083, 13_084))])
def test_full_size_split_arithmetic(split, sizes):
    n = 130_831
    idx = split_indices(n, split, seed=3)
    assert tuple(len(idx[s]) for s in ("train", "valid", "test")) == sizes
    both = torch.cat([idx["train"], idx["valid"], idx["test"]])
    assert torch.equal(both.sort().values, torch.arange(n))  # disjoint and complete
    if split == "cormorant":
        perm = np.random.RandomState(0).permutation(n)
        assert np.array_equal(idx["train"].numpy(), perm[:100_000])
        assert np.array_equal(idx["test"].numpy(), perm[-13_083:])
    with pytest.raises(ValueError, match="data.split"):
        split_indices(n, "scaffold")


# ------------------------------------------------------------------------- standardisation
def _hand_mean_mad(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, sum(abs(v - mean) for v in values) / len(values)


@pytest.mark.parametrize("max_train", [None, 5])
def test_standardisation_on_training_split(prepared, records, max_train):
    dm = make_dm(prepared, target="U0", max_train_samples=max_train)
    assert (dm.task.mean, dm.task.mad) == (0.0, 1.0)  # the task exists before setup
    dm.setup()
    train_ids = _ids(dm.datasets["train"])
    assert len(train_ids) == (max_train or 20)
    values = [float(records[i]["y"][0, 7]) for i in train_ids]
    mean, mad = _hand_mean_mad(values)
    assert dm.task.mean == pytest.approx(mean, rel=1e-12)
    assert dm.task.mad == pytest.approx(mad, rel=1e-9)
    everything = _hand_mean_mad([float(r["y"][0, 7]) for r in records])
    assert dm.task.mean != pytest.approx(everything[0], rel=1e-9)  # not the full data set
    off = make_dm(prepared, target="U0", standardize=False)
    off.setup()
    assert (off.task.mean, off.task.mad) == (0.0, 1.0)


def test_max_train_samples_too_large(prepared):
    with pytest.raises(ValueError, match="data.max_train_samples=21"):
        make_dm(prepared, max_train_samples=21).setup()


def test_train_loader_epoch_shuffle_no_drop_last(prepared):
    dm = make_dm(prepared)
    dm.setup()
    loader = dm.train_dataloader()

    def order(epoch):
        loader.sampler.set_epoch(epoch)
        batches = list(loader)
        assert [b.num_graphs for b in batches] == [8, 8, 4]  # drop_last=False
        return [int(i) for b in batches for i in b.idx]

    assert order(0) == order(0) and order(0) != order(1)
    assert sorted(order(2)) == sorted(_ids(dm.datasets["train"]))
    other = make_dm(prepared)  # a fresh module reproduces the order: exact resume
    other.setup()
    other_loader = other.train_dataloader()
    other_loader.sampler.set_epoch(1)
    assert [int(i) for b in other_loader for i in b.idx] == order(1)
    val = list(dm.val_dataloader())
    assert [int(i) for b in val for i in b.idx] == _ids(dm.datasets["valid"])  # unshuffled


def test_eval_batch_size_sets_the_evaluation_loaders_only(prepared):
    dm = make_dm(prepared, eval_batch_size=3)
    dm.setup()
    assert [b.num_graphs for b in dm.train_dataloader()] == [8, 8, 4]  # batch_size
    val = list(dm.val_dataloader())
    assert all(b.num_graphs <= 3 for b in val) and val[0].num_graphs == 3
    assert [int(i) for b in val for i in b.idx] == _ids(dm.datasets["valid"])  # same order
    assert [int(i) for b in dm.test_dataloader() for i in b.idx] == _ids(dm.datasets["test"])
    with pytest.raises(ValueError, match="data.eval_batch_size=0"):
        make_dm(prepared, eval_batch_size=0)


# -------------------------------------------------------------------------- task and action
def _fake_batch(column: int, values: list[float]) -> SimpleNamespace:
    y = torch.zeros(len(values), 19)
    y[:, column] = torch.tensor(values)
    return SimpleNamespace(y=y)


def test_task_loss_and_destandardised_mae():
    task = QM9Task("gap", mean=2.0, mad=0.5)
    assert (task.primary.name, task.primary.direction) == ("mae", "min") and task.target_index == 4
    assert task.primary.unit == "eV" and dict(task.primary.alternative_units) == {"meV": 1000.0}
    batch = _fake_batch(4, [2.0, 3.5, 0.0])  # standardised: 0, 3, -4
    pred = torch.tensor([[0.0], [2.0], [-2.0]])  # de-standardised: 2.0, 3.0, 1.0
    assert task.loss(pred, batch).item() == pytest.approx((0 + 1 + 2) / 3)
    assert metric_value(task, [(pred, batch)]) == pytest.approx((0.0 + 0.5 + 1.0) / 3)
    assert task.loss(pred.flatten(), batch).item() == pytest.approx(1.0)  # [B] is accepted
    with pytest.raises(ValueError, match="num_graphs, 1"):
        task.loss(torch.zeros(3, 2), batch)
    raw = QM9Task(11)  # standardisation off: plain L1 / MAE on the raw target (SchNet)
    batch = _fake_batch(11, [6.0, 7.0])
    pred = torch.tensor([[6.5], [9.0]])
    assert raw.loss(pred, batch).item() == pytest.approx(1.25)
    assert metric_value(raw, [(pred, batch)]) == pytest.approx(2.5 / 2)
    assert raw.primary.unit == "cal/(mol K)" and dict(raw.primary.alternative_units) == {}
    with pytest.raises(ValueError, match="MAD"):
        raw.set_standardization(0.0, 0.0)


def test_metric_spec_defaults_and_checks():
    spec = NBodyTask().primary
    assert spec.unit is None and dict(spec.alternative_units) == {}
    with pytest.raises(TypeError):
        spec.alternative_units["meV"] = 1000.0  # immutable shared default
    with pytest.raises(ValueError, match="'min' or 'max'"):
        MetricSpec("mse", "lower", MeanSquaredError)
    with pytest.raises(ValueError, match="declares no metrics"):
        Task().primary


def test_target_names():
    assert TARGET_NAMES == ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H",
                            "G", "cv")
    for i, name in enumerate(TARGET_NAMES):
        assert resolve_target(name).index == i
        assert resolve_target(name.upper()).index == i and resolve_target(name.lower()).index == i
        assert resolve_target(i).name == name
    assert resolve_target("u0").name == "U0" and resolve_target("Cv").name == "cv"
    units = {t: resolve_target(t).unit for t in TARGET_NAMES}
    assert [t for t, u in units.items() if u == "eV"] == [
        "homo", "lumo", "gap", "zpve", "U0", "U", "H", "G"]
    assert units["mu"] == "D" and units["alpha"] == "a0^3" and units["r2"] == "a0^2"
    for bad in ("U0_atom", "energy", 12, -1):
        with pytest.raises(ValueError) as info:
            resolve_target(bad)
        assert all(name in str(info.value) for name in TARGET_NAMES)
    with pytest.raises(ValueError, match="data.target='bogus'"):
        QM9DataModule(target="bogus")


def test_rotation_acts_per_molecule_and_copies(records):
    data = [Data(**{k: records[i][k] for k in ("x", "z", "pos", "y")}) for i in (0, 4, 8)]
    batch = Batch.from_data_list(data)
    before = batch.pos.clone()
    action = QM9Rotation()
    assert action.batch_size(batch) == 3 and action.reference_tensor(batch) is batch.pos
    g = random_rotations(3, torch.Generator().manual_seed(1))
    out = action.act_on_batch(batch, g)
    assert out is not batch and torch.equal(batch.pos, before)  # the input is untouched
    assert out.num_graphs == 3 and torch.equal(out.batch, batch.batch)
    for i, mol in enumerate(out.to_data_list()):
        expect = data[i].pos @ g[i].T
        assert torch.allclose(mol.pos, expect, atol=1e-6)
        assert torch.equal(mol.x, data[i].x) and torch.equal(mol.y, data[i].y)
    d_in, d_out = torch.cdist(before[:5], before[:5]), torch.cdist(out.pos[:5], out.pos[:5])
    assert torch.allclose(d_in, d_out, atol=1e-5)
    pred = torch.randn(3, 1)
    assert action.act_on_output(pred, g, batch) is pred  # invariant targets
    with pytest.raises(ValueError, match="one 3x3 matrix per molecule"):
        action.act_on_batch(batch, g[:2])
    assert QM9Task().group_action.act_on_batch(batch, g).pos.shape == batch.pos.shape


# ----------------------------------------------------------------------------- downloader
def test_download_file_url_and_hash(tmp_path):
    src = tmp_path / "src.bin"
    payload = bytes(range(256)) * 50
    src.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "out" / "file.bin"
    assert download_file(src.as_uri(), dest, expected_hash=digest.upper()) == dest
    assert dest.read_bytes() == payload and not (tmp_path / "out" / "file.bin.part").exists()
    md5 = hashlib.md5(payload).hexdigest()
    other = download_file(src.as_uri(), tmp_path / "md5.bin", expected_hash=md5,
                          hash_fn=lambda b: hashlib.md5(b).hexdigest())
    assert other.read_bytes() == payload


def test_download_wrong_hash_deletes_file(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello")
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError) as info:
        download_file(src.as_uri(), dest, expected_hash="0" * 64)
    msg = str(info.value)
    assert src.as_uri() in msg and str(dest) in msg and "0" * 64 in msg
    assert hashlib.sha256(b"hello").hexdigest() in msg
    assert not dest.exists() and not (tmp_path / "file.bin.part").exists()


def test_download_failure_keeps_existing_file(tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"old")
    url = (tmp_path / "missing.bin").as_uri()
    with pytest.raises(DownloadError) as info:
        download_file(url, dest)
    assert url in str(info.value) and str(dest) in str(info.value)
    assert dest.read_bytes() == b"old" and not (tmp_path / "file.bin.part").exists()
    with pytest.raises(DownloadError, match="unknown url type|ValueError"):
        download_file("not-a-url", tmp_path / "x.bin")
    assert issubclass(DownloadError, RuntimeError)


def test_extract_zip(tmp_path):
    archive = _zip_with(tmp_path / "a.zip", "inner/data.txt", b"abc")
    paths = extract_zip(archive, tmp_path / "out")
    assert paths == [tmp_path / "out" / "inner" / "data.txt"] and paths[0].read_bytes() == b"abc"
    with pytest.raises(DataIntegrityError, match="missing.zip not found"):
        extract_zip(tmp_path / "missing.zip", tmp_path / "out")


def test_module_exports():
    assert PYG_QM9_URL == "https://data.pyg.org/datasets/qm9_v3.zip"
    assert QM9DataModule().url == PYG_QM9_URL


def test_download_truncated_transfer(tmp_path, monkeypatch):
    import io
    import urllib.request

    class Response(io.BytesIO):
        headers = {"Content-Length": "100"}

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(b"x" * 60))
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="truncated: received 60 of 100 bytes"):
        download_file("https://example.invalid/file.bin", dest)
    assert leftovers(tmp_path) == []
