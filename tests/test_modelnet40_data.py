"""ModelNet40 task, transforms, validation split and data module (experiments.md §5.1, §5.5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ace.core.equivariance import random_rotations
from ace.core.homotopic import HomotopicBranch
from ace.data.modelnet40.datamodule import ModelNet40DataModule
from ace.data.modelnet40.fixtures import make_zip, write_tiny_normal_resampled
from ace.data.modelnet40.splits import stratified_split
from ace.data.modelnet40.task import ModelNet40Task, PointCloudRotation
from ace.data.modelnet40.transforms import RandomPointDropout
from ace.data.transforms import RandomGroupAction
from ace.training.module import ACEModule


def test_loss_is_dgcnn_label_smoothed_cross_entropy():
    """q = (1 − ε) onehot + ε/(C − 1) (1 − onehot), loss = −Σ q log softmax, by hand."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 40, generator=g, dtype=torch.float64)
    label = torch.randint(0, 40, (6,), generator=g)
    onehot = F.one_hot(label, 40).double()
    q = onehot * 0.8 + (1 - onehot) * 0.2 / 39
    expected = -(q * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    task = ModelNet40Task(40, 0.2)
    assert torch.allclose(task.loss(logits, {"label": label}), expected, atol=1e-12)
    with pytest.raises(ValueError, match="num_classes"):
        task.loss(logits[:, :10], {"label": label})


def test_accuracies_are_instance_and_true_mean_per_class_and_maximised():
    task = ModelNet40Task(num_classes=3)
    assert task.primary.name == "instance_acc" and task.primary.direction == "max"
    assert {s.name: s.direction for s in task.metrics} == {"instance_acc": "max",
                                                           "class_acc": "max"}
    label = torch.tensor([0, 0, 0, 0, 1, 2])
    pred = F.one_hot(torch.tensor([0, 0, 0, 0, 2, 2]), 3).double()  # class 1 always wrong
    values = {}
    for spec in task.metrics:
        metric = spec.make()
        metric.update(*task.metric_inputs(pred, {"label": label}))
        values[spec.name] = float(metric.compute())
    assert values["instance_acc"] == pytest.approx(5 / 6)
    assert values["class_acc"] == pytest.approx((1 + 0 + 1) / 3)


def test_rotation_acts_on_every_point_and_leaves_logits_alone():
    g = torch.Generator().manual_seed(1)
    pos = torch.randn(4, 7, 3, generator=g, dtype=torch.float64)
    rot = random_rotations(4, g, torch.float64)
    action = PointCloudRotation()
    out = action.act_on_batch({"pos": pos, "label": torch.zeros(4)}, rot)
    for b in range(4):
        assert torch.allclose(out["pos"][b], pos[b] @ rot[b].T, atol=1e-12)
    logits = torch.randn(4, 40, dtype=torch.float64)
    assert action.act_on_output(logits, rot, out) is logits


def test_point_dropout_keeps_the_shape_and_drops_the_expected_fraction():
    g = torch.Generator().manual_seed(2)
    pos = torch.randn(4000, 100, 3, generator=g)
    out = RandomPointDropout(0.875)({"pos": pos}, None, torch.Generator().manual_seed(3))["pos"]
    assert out.shape == pos.shape == (4000, 100, 3)
    replaced = (out != pos).any(-1)  # a dropped point becomes the first point
    assert torch.equal(out[replaced], pos[:, :1].expand_as(pos)[replaced])
    # E[fraction] = E[r] = 0.875 / 2 (the first point "replaced by itself" is not counted)
    assert replaced.float().mean().item() == pytest.approx(0.875 / 2, abs=0.01)
    per_cloud = replaced.float().mean(1)
    assert per_cloud.max() < 0.875 + 0.1 and per_cloud.min() < 0.05  # r ~ U[0, 0.875)
    again = RandomPointDropout(0.875)({"pos": pos}, None, torch.Generator().manual_seed(3))["pos"]
    assert torch.equal(out, again)
    assert torch.equal(RandomPointDropout(0.0)({"pos": pos}, None, g)["pos"], pos)


def test_validation_split_is_stratified_disjoint_and_fixed():
    labels = np.repeat(np.arange(5), [10, 20, 30, 3, 1])
    train, val = stratified_split(labels, 0.1, seed=0)
    assert set(train).isdisjoint(val) and sorted([*train, *val]) == list(range(len(labels)))
    counts = np.bincount(labels[val], minlength=5)
    assert counts.tolist() == [1, 2, 3, 1, 0]  # round(10 %), at least one, never a whole class
    again_train, again_val = stratified_split(labels, 0.1, seed=0)
    assert np.array_equal(val, again_val) and np.array_equal(train, again_train)
    assert not np.array_equal(val, stratified_split(labels, 0.1, seed=1)[1])


def synthetic_module(**kwargs) -> ModelNet40DataModule:
    defaults = dict(source="synthetic", num_classes=10, synthetic_train=200, synthetic_test=50,
                    num_points=32, batch_size=16)
    return ModelNet40DataModule(**{**defaults, **kwargs})


def test_synthetic_data_module_serves_rotated_stratified_splits():
    dm = synthetic_module(train_transform=RandomGroupAction(), eval_transform=RandomGroupAction())
    dm.prepare_data()  # nothing to download
    dm.setup()
    sizes = {k: len(v) for k, v in dm.datasets.items()}
    assert sizes == {"train": 180, "val": 20, "test": 50}
    val_labels = dm.datasets["val"].tensors["label"]
    assert torch.bincount(val_labels, minlength=10).tolist() == [2] * 10
    batch = next(iter(dm.train_dataloader()))
    assert batch["pos"].shape == (16, 32, 3) and batch["label"].dtype == torch.int64
    with pytest.raises(Exception, match="data.num_classes=40"):
        synthetic_module(num_classes=40).setup()


class Recorder(nn.Module):
    """A classifier that records the clouds it is given, with one homotopic branch."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.head = nn.Linear(3, num_classes)
        self.branch = HomotopicBranch(nn.Linear(3, num_classes))
        self.seen: list[tuple[bool, torch.Tensor]] = []

    def forward(self, batch):
        pos = batch["pos"]
        self.seen.append((self.branch.relaxed, pos.clone()))
        feat = pos.norm(dim=-1, keepdim=True).mean(1).expand(-1, 3)
        return self.branch(self.head(feat), pos.mean(1))


def _evaluate(module: ACEModule, batch, epoch: int) -> list[tuple[bool, torch.Tensor]]:
    module.net.seen.clear()
    module.eval_epoch = epoch
    module._start_evaluation("val")
    module.evaluation_step(batch, "val", module.modes)
    return list(module.net.seen)


def test_evaluation_rotations_are_reproducible_fresh_per_epoch_and_shared_by_both_modes():
    dm = synthetic_module()
    dm.setup()
    module = ACEModule(Recorder(), dm.task, optimizer=torch.optim.SGD)
    module.eval_transform = RandomGroupAction()
    batch = next(iter(dm.val_dataloader()))
    first = _evaluate(module, batch, epoch=3)
    assert [relaxed for relaxed, _ in first] == [False, True]  # f_eq, then f_eq + γ f_neq
    eq_pos, relaxed_pos = first[0][1], first[1][1]
    assert torch.equal(eq_pos, relaxed_pos)  # one rotation per cloud, the same for both modes
    assert not torch.allclose(eq_pos, batch["pos"])  # rotated ...
    assert torch.allclose(eq_pos.norm(dim=-1), batch["pos"].norm(dim=-1), atol=1e-5)  # ... rigidly
    again = _evaluate(module, batch, epoch=3)
    assert torch.equal(again[0][1], eq_pos)  # reproducible from (seed, stage, epoch)
    assert not torch.allclose(_evaluate(module, batch, epoch=4)[0][1], eq_pos)  # fresh next epoch


def test_real_format_through_a_file_url_validation_is_stratified_and_disjoint_from_test(tmp_path):
    """The data module on tiny files in the real normal_resampled format, downloaded from a
    file:// URL: the validation split comes from the training files only."""
    names = ("airplane", "flower_pot", "night_stand")
    archive = make_zip(write_tiny_normal_resampled(tmp_path / "src" / "modelnet40_normal_resampled",
                                                   names, per_class_train=10, per_class_test=4,
                                                   points_per_shape=30))
    dm = ModelNet40DataModule(data_dir=str(tmp_path / "data"), url=archive.as_uri(),
                              num_classes=3, num_points=20, batch_size=4)
    dm.prepare_data()
    dm.setup()
    assert (tmp_path / "data" / "modelnet40_normal_resampled").is_dir()
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 27, "val": 3, "test": 12}
    assert set(dm.ids["val"]).isdisjoint(dm.ids["test"])
    assert set(dm.ids["val"]).isdisjoint(dm.ids["train"])
    assert sorted(i.rsplit("_", 1)[0] for i in dm.ids["val"]) == sorted(names)  # one per class
    pos = dm.datasets["test"].tensors["pos"]
    assert pos.shape == (12, 20, 3)
    assert torch.allclose(pos.mean(1), torch.zeros(12, 3), atol=1e-5)  # centred, unit sphere
    assert torch.allclose(pos.norm(dim=-1).amax(1), torch.ones(12), atol=1e-5)
