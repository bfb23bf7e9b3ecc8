"""CMU MoCap data: hashes, download, safe unpickling, samples, graph, floors, task, group action."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ace.data.errors import DataIntegrityError, DownloadError
from ace.data.mocap import (
    BLOB_SHA1,
    MoCapDataModule,
    MoCapFixedHeightRotation,
    MoCapRotation,
    MoCapTask,
    ensure_files,
    git_blob_sha1,
    safe_load,
    skeleton_graph,
)
from tests.conftest import metric_value, shared_path

RUN_FILES = ("motion_run.pkl", "split_run.pkl")


def _run_dir() -> Path:
    return shared_path("data", "mocap", "motion_run.pkl").parent


@pytest.fixture(scope="module")
def run_dm() -> MoCapDataModule:
    dm = MoCapDataModule(data_dir=str(_run_dir()), base_url="file:///nonexistent/", dtype="float64",
                         batch_size=1000)
    dm.setup()
    return dm


def _full(dm: MoCapDataModule, split: str) -> dict[str, torch.Tensor]:
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader,
              "test": dm.test_dataloader}[split]
    if split == "train":  # shuffled and drop_last: read the dataset in order instead
        ds = dm.datasets["train"]
        return ds.__getitems__(list(range(len(ds))))
    batches = list(loader())
    return {k: torch.cat([b[k] for b in batches]) for k in ("loc", "vel", "target_loc",
                                                            "target_vel")}


def test_git_blob_sha1_known_value():
    assert git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


@pytest.mark.parametrize("name", ["motion_run.pkl", "split_run.pkl", "split.pkl"])
def test_shared_files_match_blob_hashes(name):
    path = shared_path("data", "mocap", name)
    assert git_blob_sha1(path.read_bytes()) == BLOB_SHA1[name]


def test_run_sizes_shapes_and_batches(run_dm):
    assert {k: len(v) for k, v in run_dm.datasets.items()} == {"train": 200, "val": 240,
                                                               "test": 240}
    dm = MoCapDataModule(data_dir=str(_run_dir()), base_url="file:///nonexistent/")
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["loc"].shape == (12, 31, 3) and batch["vel"].shape == (12, 31, 3)
    assert batch["target_loc"].shape == (12, 5, 31, 3)
    assert batch["target_vel"].shape == (12, 5, 31, 3)
    assert batch["loc"].dtype == torch.float32
    assert batch["edge_index"].shape == (2, 130) and batch["edge_type"].shape == (130,)
    assert torch.equal(batch["edge_index"], dm.graph["edge_index"])
    assert len(dm.train_dataloader()) == 200 // 12  # drop_last
    assert sum(len(b["loc"]) for b in dm.test_dataloader()) == 240


def test_first_train_sample_matches_hand_computation(run_dm):
    edges, X = pickle.loads((_run_dir() / "motion_run.pkl").read_bytes())
    train, _, _ = pickle.loads((_run_dir() / "split_run.pkl").read_bytes())
    trial = next(iter(train))
    assert trial == 1
    s = int(train[trial][0])
    x = X[trial]
    sample = run_dm.datasets["train"][0]
    np.testing.assert_array_equal(sample["loc"].numpy(), x[s])
    np.testing.assert_array_equal(sample["vel"].numpy(), x[s + 1] - x[s])
    frames = [s + k for k in range(26, 31)]
    np.testing.assert_array_equal(sample["target_loc"].numpy(), x[frames])
    np.testing.assert_array_equal(sample["target_vel"].numpy(),
                                  x[[f + 1 for f in frames]] - x[frames])
    # the 41st sample (40 per trial) is the first start of the second train trial
    trial2 = list(train)[1]
    s2 = int(train[trial2][0])
    np.testing.assert_array_equal(run_dm.datasets["train"][40]["loc"].numpy(), X[trial2][s2])


def test_graph_edges(run_dm):
    ei, et = run_dm.graph["edge_index"], run_dm.graph["edge_type"]
    assert int((et == 1).sum()) == 60 and int((et == 2).sum()) == 70
    assert not bool((ei[0] == ei[1]).any())
    pairs = {(int(a), int(b), int(t)) for a, b, t in zip(ei[0], ei[1], et)}
    assert len(pairs) == 130
    assert all((b, a, t) in pairs for a, b, t in pairs)
    edges, _ = pickle.loads((_run_dir() / "motion_run.pkl").read_bytes())
    assert {(a, b) for a, b, t in pairs if t == 1} == (
        {(c, p) for c, p in edges} | {(p, c) for c, p in edges})


def test_two_hop_on_small_tree():
    ei, et = skeleton_graph([(1, 0), (2, 1), (3, 0)], num_nodes=4)
    two = {(int(a), int(b)) for a, b, t in zip(ei[0], ei[1], et) if t == 2}
    assert two == {(2, 0), (0, 2), (1, 3), (3, 1)}


@pytest.mark.parametrize("split, zero, const", [("train", 91.9, 21.6), ("val", 94.5, 20.8),
                                                ("test", 89.8, 19.8)])
def test_sanity_floors(run_dm, split, zero, const):
    b = _full(run_dm, split)
    last = b["target_loc"][:, -1]
    assert abs(float((b["loc"] - last).pow(2).mean()) - zero) < 0.1
    assert abs(float((b["loc"] + 30 * b["vel"] - last).pow(2).mean()) - const) < 0.1


def test_download_from_file_url(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in RUN_FILES:
        shutil.copy(shared_path("data", "mocap", name), src / name)
    dest = tmp_path / "data"
    dm = MoCapDataModule(data_dir=str(dest), base_url=src.as_uri() + "/")
    dm.prepare_data()
    dm.setup()
    assert len(dm.datasets["test"]) == 240
    assert sorted(p.name for p in dest.iterdir()) == sorted(RUN_FILES)


def test_wrong_download_rejected_and_deleted(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    data = shared_path("data", "mocap", "motion_run.pkl").read_bytes()
    (src / "motion_run.pkl").write_bytes(data[: len(data) // 2])
    dest = tmp_path / "data"
    with pytest.raises(DownloadError, match="Hash mismatch.*motion_run.pkl"):
        ensure_files(dest, "run", src.as_uri() + "/")
    assert not (dest / "motion_run.pkl").exists()
    assert not any(dest.iterdir())


def test_present_file_with_wrong_hash(tmp_path):
    data = shared_path("data", "mocap", "split_run.pkl").read_bytes()
    (tmp_path / "motion_run.pkl").write_bytes(
        shared_path("data", "mocap", "motion_run.pkl").read_bytes())
    (tmp_path / "split_run.pkl").write_bytes(data + b"\0")
    dm = MoCapDataModule(data_dir=str(tmp_path), base_url="file:///nonexistent/")
    with pytest.raises(DataIntegrityError, match=r"split_run\.pkl.*Delete"):
        dm.setup()


def test_walk_missing_unreachable(tmp_path):
    dm = MoCapDataModule(data_dir=str(tmp_path / "walk"), case="walk",
                         base_url=(tmp_path / "nowhere").as_uri() + "/")
    with pytest.raises(DownloadError, match=r"motion\.pkl"):
        dm.prepare_data()


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > " + str(_Evil.marker),))


class Custom:
    pass


def test_safe_load_refuses_code(tmp_path):
    _Evil.marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil())
    with pytest.raises(DataIntegrityError, match=r"(posix|os|nt)\.system"):
        safe_load(payload, name="evil.pkl")
    assert not _Evil.marker.exists()
    with pytest.raises(DataIntegrityError, match="builtins.eval"):
        safe_load(pickle.dumps(_Eval()))
    path = tmp_path / "custom.pkl"
    path.write_bytes(pickle.dumps([1, Custom()]))
    with pytest.raises(DataIntegrityError, match=r"custom\.pkl.*Custom"):
        safe_load(path)
    with pytest.raises(DataIntegrityError, match="object arrays"):
        safe_load(pickle.dumps(np.array([1, "a"], dtype=object)))


class _Eval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def test_safe_load_accepts_arrays_and_containers():
    obj = ([(1, 0)], {3: np.arange(4, dtype=np.int64)}, [np.zeros((2, 31, 3))], np.float64(2.5))
    out = safe_load(pickle.dumps(obj))
    assert out[0] == [(1, 0)] and np.array_equal(out[1][3], np.arange(4))
    assert out[2][0].shape == (2, 31, 3) and out[3] == 2.5
    edges, X = safe_load(shared_path("data", "mocap", "motion_run.pkl"))
    assert len(edges) == 30 and len(X) == 11 and X[0].shape == (141, 31, 3)


def test_task_loss_and_metric():
    task = MoCapTask()
    assert (task.primary.name, task.primary.direction, task.primary.unit) == ("mse", "min", None)
    target = torch.zeros(2, 5, 31, 3)
    pred = torch.zeros(2, 5, 31, 3)
    pred[0, 4] = 2.0  # sample 0, last frame: MSE 4
    pred[1, 0] = 1.0  # sample 1, first frame: MSE 1
    batch = {"target_loc": target}
    # per-frame MSE over (B, N, 3): frame 0 → 0.5, frame 4 → 2.0; mean over 5 frames → 0.5
    assert torch.isclose(task.loss(pred, batch), torch.tensor(0.5))
    # MSE of the last frame: sample 0 → 4, sample 1 → 0; mean over samples → 2
    assert metric_value(task, [(pred, batch)]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        task.loss(pred[:, -1], batch)


def test_rotation_about_y(run_dm):
    batch = run_dm.datasets["val"].__getitems__(list(range(8)))
    original = {k: v.clone() for k, v in batch.items()}
    for std in (0.0, 5.0):
        action = MoCapRotation(translation_std=std)
        g = action.sample(batch, torch.Generator().manual_seed(0))
        assert g.shape == (8, 4, 4)
        rot = g[:, :3, :3]
        assert torch.allclose(torch.linalg.det(rot), torch.ones(8, dtype=rot.dtype))
        assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3, dtype=rot.dtype).expand(8, 3, 3))
        out = action.act_on_batch(batch, g)
        for k, v in batch.items():
            assert torch.equal(v, original[k])  # input untouched
        for key in ("loc", "target_loc", "vel", "target_vel"):
            assert torch.allclose(out[key][..., 1], batch[key][..., 1])  # heights kept
        shift = g[:, :3, 3]
        assert torch.all(shift[:, 1] == 0)
        # positions: R x + t; velocities: R v; norms of velocities preserved
        exp = torch.einsum("bij,bnj->bni", rot, batch["loc"]) + shift[:, None]
        assert torch.allclose(out["loc"], exp)
        assert torch.allclose(out["vel"].norm(dim=-1), batch["vel"].norm(dim=-1))
        assert torch.allclose(action.act_on_output(batch["target_loc"], g, batch),
                              out["target_loc"])
        assert out["edge_index"] is batch["edge_index"]
    assert not torch.allclose(out["loc"][..., 0], batch["loc"][..., 0])


# ------------------------------------------ equivariance-error protocols (paper Fig. 4, §7)
def _protocol_batch(n: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(n, 31, 3, generator=g, dtype=torch.float64) * 5
    target = torch.randn(n, 5, 31, 3, generator=g, dtype=torch.float64)
    return {"loc": loc, "vel": torch.randn(n, 31, 3, generator=g, dtype=torch.float64),
            "target_loc": target, "target_vel": target.flip(1)}


def test_equivariance_protocol_selects_the_metric_action():
    task = MoCapTask()
    assert task.equivariance_protocol == "so3_fixed_height"  # the paper's, by default
    assert type(task.group_action) is MoCapFixedHeightRotation
    vertical = MoCapTask(translation_std=2.0, equivariance_protocol="vertical_axis").group_action
    assert type(vertical) is MoCapRotation and vertical.translation_std == 2.0
    with pytest.raises(ValueError, match="equivariance_protocol"):
        MoCapTask(equivariance_protocol="so2")
    with pytest.raises(ValueError, match="vertical_axis"):
        MoCapTask(translation_std=1.0)  # the SO(3) protocol tests rotations only
    assert type(MoCapDataModule().task.group_action) is MoCapFixedHeightRotation
    dm = MoCapDataModule(equivariance_protocol="vertical_axis", translation_std=3.0)
    assert type(dm.task.group_action) is MoCapRotation
    assert dm.task.group_action.translation_std == 3.0


def test_fixed_height_action_haar_rotations_unrotated_heights_last_frame():
    batch = _protocol_batch()
    action = MoCapFixedHeightRotation()
    g = action.sample(batch, torch.Generator().manual_seed(1))
    eye = torch.eye(3, dtype=torch.float64).expand(6, 3, 3)
    assert g.shape == (6, 3, 3) and g.dtype == torch.float64
    assert torch.allclose(g @ g.transpose(1, 2), eye)
    assert torch.allclose(torch.linalg.det(g), torch.ones(6, dtype=torch.float64))
    assert (g[:, 1, 1] - 1).abs().min() > 1e-3  # tilting rotations, not only about y
    out = action.act_on_batch(batch, g)
    assert "height" not in batch  # input untouched
    assert torch.equal(out["height"], batch["loc"][..., 1])  # Z's heights: the unrotated ones
    for key in ("loc", "vel", "target_loc", "target_vel"):
        assert torch.allclose(out[key], torch.einsum("bij,b...j->b...i", g, batch[key]))
    assert torch.equal(action.act_on_batch(out, g)["height"], out["height"])  # never recomputed
    assert torch.equal(action.compared(batch["target_loc"]), batch["target_loc"][:, -1])
    assert MoCapRotation().compared(batch["target_loc"]) is batch["target_loc"]  # default: all


def test_augmentation_action_still_rotates_about_y():
    """The y-axis action stays available for training-time augmentation
    (``RandomGroupAction(action=MoCapRotation())``); it is not the metric's action."""
    batch = _protocol_batch()
    g = MoCapRotation().sample(batch, torch.Generator().manual_seed(2))
    y_row = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    assert g.shape == (6, 4, 4) and torch.equal(g[:, 1, :3], y_row.expand(6, 3))
    assert "height" not in MoCapRotation().act_on_batch(batch, g)
