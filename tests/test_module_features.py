"""LightningModule features, each checked on its observable effect (toy task: fast)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from ace.core.homotopic import count_parameters
from ace.training.callbacks import ReplicaConsistency
from ace.training.pipeline import _constraint_factory, export_pruned, train
from ace.training.results import load_weights
from tests.conftest import accelerator
from tests.test_evaluation_contract import toy_cfg


def build(cfg):
    datamodule = instantiate(cfg.data)
    return datamodule, instantiate(cfg.model, task=datamodule.task,
                                   constraint=_constraint_factory(cfg))


class SpyTransform:
    def __init__(self) -> None:
        self.outputs: list[dict] = []

    def __call__(self, batch, action, generator=None):
        out = action.act_on_batch(batch, action.sample(batch, generator))
        self.outputs.append(out)
        return out


def test_training_transform_is_applied_to_every_training_batch(tmp_path, monkeypatch):
    cfg = toy_cfg(tmp_path, "trainer.max_epochs=2", "test=false")
    spy = SpyTransform()
    seen: list[dict] = []
    from tests.toy_task import ShellDataModule, ShellTask

    original_init = ShellDataModule.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.train_transform = spy

    monkeypatch.setattr(ShellDataModule, "__init__", init)
    original_loss = ShellTask.loss
    monkeypatch.setattr(ShellTask, "loss", lambda self, pred, batch: (seen.append(batch),
                                                                      original_loss(self, pred, batch))[1])
    train(cfg)
    assert len(spy.outputs) == 2 * (256 // 32)  # every step of both epochs
    assert all(a is b for a, b in zip(spy.outputs, seen))  # the loss saw the transformed batch
    # and it is a rotation of the data: same norms, other coordinates
    assert not torch.allclose(spy.outputs[0]["x"].abs().sum(), torch.tensor(0.0))


def test_gradient_clipping_bounds_every_primal_step(tmp_path):
    lr, clip = 1.0, 1e-3
    cfg = toy_cfg(tmp_path, "constraint=none", "model.optimizer._target_=torch.optim.SGD",
                  f"model.optimizer.lr={lr}", "~model.optimizer.fused", f"model.grad_clip_norm={clip}",
                  "trainer.max_epochs=1", "test=false", "model.log_test_metric=false")
    datamodule, module = build(cfg)
    before = torch.cat([p.detach().flatten().clone() for p in module.net.parameters()])
    import lightning as L

    L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False,
              limit_val_batches=0).fit(module, datamodule=datamodule)
    after = torch.cat([p.detach().flatten() for p in module.net.parameters()])
    steps = 256 // 32
    assert 0 < (after - before).norm() <= steps * lr * clip * (1 + 1e-5)


def test_primal_lr_scheduler_steps_once_per_epoch(tmp_path):
    cfg = toy_cfg(tmp_path, "trainer.max_epochs=3", "test=false",
                  "+model.scheduler._target_=torch.optim.lr_scheduler.StepLR",
                  "+model.scheduler._partial_=true", "+model.scheduler.step_size=1",
                  "+model.scheduler.gamma=0.5")
    frame_dir = tmp_path
    train(cfg)
    checkpoint = torch.load(frame_dir / "checkpoints" / "last.ckpt", weights_only=False)
    primal, dual = checkpoint["optimizer_states"]
    assert primal["param_groups"][0]["lr"] == pytest.approx(2e-2 * 0.5 ** 3)
    assert dual["param_groups"][0]["lr"] == pytest.approx(1e-2)  # the dual step size is constant


def test_equivariance_error_is_measured_on_the_relaxed_model(tmp_path, device):
    def error(*overrides: str, net: dict | None = None) -> float:
        run_dir = tmp_path / str(len(list(tmp_path.iterdir())))
        train(toy_cfg(run_dir, "trainer.max_epochs=1", "test=false",
                      f"trainer.accelerator={accelerator(device)}", *overrides, net=net))
        return pd.read_csv(run_dir / "csv" / "metrics.csv")["equivariance/mean"].dropna().iloc[-1]

    assert error() > 1e-3  # f_neq reads raw x: the relaxed model is not invariant
    assert error("constraint=none", net={"ace_branches": False}) < 1e-6  # f_eq alone is


def test_short_runs_write_the_traces_at_every_epoch_end(tmp_path):
    # 8 steps per epoch, log_every_n_steps=50: no step is written, the epoch-end traces are
    train(toy_cfg(tmp_path, "trainer.max_epochs=2", "trainer.log_every_n_steps=50", "test=false"))
    frame = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    for key in ("ace/gamma/layer_0_epoch", "ace/lambda/layer_0_epoch", "ace/slack/layer_0_epoch"):
        assert frame[key].notna().sum() == 2, key


def test_test_numbers_come_from_the_test_set_at_the_selected_checkpoint(tmp_path):
    results = train(toy_cfg(tmp_path, "seed=1", data={"test_label_shift": 1}))
    datamodule, module = build(toy_cfg(tmp_path, "seed=1", data={"test_label_shift": 1}))
    for mode in ("eq", "relaxed"):
        load_weights(module, tmp_path / "checkpoints" / f"best_{mode}.ckpt")
        module.eval()
        data = datamodule.datasets["test"].tensors
        with torch.no_grad():
            acc = (module.model_step(data, mode).argmax(-1) == data["label"]).double().mean()
        entry = results["modes"][mode]
        assert entry["test"] == pytest.approx(float(acc), abs=1e-6)
        assert entry["test"] != pytest.approx(entry["val"], abs=1e-3)  # relabelled test split


def test_exported_pruned_model_is_the_best_eq_checkpoints_f_eq(tmp_path):
    train(toy_cfg(tmp_path, "seed=2", "trainer.max_epochs=3"))
    _, module = build(toy_cfg(tmp_path, "seed=2"))
    with torch.no_grad():
        for p in module.net.parameters():
            p.add_(1.0)  # whatever the module holds must not leak into the export
    path = export_pruned(module, tmp_path / "checkpoints" / "best_eq.ckpt", tmp_path)
    pruned = torch.load(path, weights_only=False)
    state = torch.load(tmp_path / "checkpoints" / "best_eq.ckpt", weights_only=False)["state_dict"]
    for name, value in pruned.state_dict().items():
        assert torch.equal(value, state[f"net.{name}"]), name
    assert count_parameters(pruned) == count_parameters(module.net) - (3 * 3 + 3) - 1


class FakeTrainer:
    world_size = 2
    current_epoch = 4


class FakeModule:
    num_gammas = 2

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def ace_state(self):
        return {"gamma": torch.tensor([0.5, -0.25]), "lambda": torch.tensor([0.1, 0.2])}

    def all_gather(self, value):
        return torch.stack([value, value + self.offset])  # what rank 1 holds


def test_replica_consistency_records_agreement_and_stops_on_a_mismatch():
    module = FakeModule(0.0)
    ReplicaConsistency().on_train_epoch_end(FakeTrainer(), module)
    assert module.replicas["max_abs_diff"] == 0.0 and module.replicas["world_size"] == 2
    assert module.replicas["gamma"] == [[0.5, -0.25], [0.5, -0.25]]
    with pytest.raises(RuntimeError, match="differ across DDP ranks by 1.000e-03 at epoch 4"):
        ReplicaConsistency().on_train_epoch_end(FakeTrainer(), FakeModule(1e-3))


def test_augmentation_does_not_depend_on_how_often_the_model_is_evaluated(tmp_path):
    """The training transform draws from its own (seed, epoch) stream: DataLoader iterators of
    extra evaluations (test curves) draw from torch's global stream and must not shift it."""
    rotate = {"train_transform": {"_target_": "ace.data.transforms.RandomGroupAction"}}

    def losses(name: str, *overrides: str) -> list[float]:
        train(toy_cfg(tmp_path / name, "trainer.max_epochs=3", "test=false", *overrides,
                      data=rotate))
        frame = pd.read_csv(tmp_path / name / "csv" / "metrics.csv")
        return frame["train/loss_epoch"].dropna().tolist()

    curves = losses("curves", "model.log_test_metric=true")
    assert curves == losses("no_curves", "model.log_test_metric=false",
                            "trainer.check_val_every_n_epoch=2")


def test_gamma_lr_gives_gamma_a_parameter_group_of_its_own(tmp_path):
    """One SGD step from the same start: θ moves alike, γ moves in proportion to its own lr."""
    import lightning as L

    from ace.core.homotopic import gammas, homotopic_branches

    lr = 0.1

    def one_step(*overrides: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, object]:
        cfg = toy_cfg(tmp_path, "model.optimizer._target_=torch.optim.SGD", f"model.optimizer.lr={lr}",
                      "~model.optimizer.fused", "test=false", "model.log_test_metric=false", *overrides)
        L.seed_everything(0)
        datamodule, module = build(cfg)
        start = gammas(module.net).detach().clone()
        theta0 = torch.cat([p.detach().flatten().clone() for n, p in module.net.named_parameters()
                            if not n.endswith("gamma")])
        L.Trainer(max_epochs=1, limit_train_batches=1, logger=False, enable_progress_bar=False,
                  enable_checkpointing=False, limit_val_batches=0).fit(module, datamodule=datamodule)
        theta = torch.cat([p.detach().flatten() for n, p in module.net.named_parameters()
                           if not n.endswith("gamma")])
        return start, gammas(module.net).detach() - start, theta - theta0, module

    start, shared_gamma, shared_theta, _ = one_step()
    same_start, own_gamma, own_theta, module = one_step("model.gamma_lr=0.3")
    torch.testing.assert_close(same_start, start, rtol=0, atol=0)
    assert shared_gamma.abs().min() > 0
    torch.testing.assert_close(own_theta, shared_theta, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(own_gamma, shared_gamma * (0.3 / lr), rtol=1e-5, atol=1e-9)
    others, own = module.optimizers()[0].optimizer.param_groups
    assert own["lr"] == 0.3 and own["weight_decay"] == 0.0
    assert {id(p) for p in own["params"]} == {id(b.gamma) for b in homotopic_branches(module.net)}
    assert len(others["params"]) + len(own["params"]) == len(list(module.net.parameters()))


def test_gamma_lr_is_refused_when_not_positive(tmp_path):
    cfg = toy_cfg(tmp_path, "model.gamma_lr=0.0")
    with pytest.raises(Exception, match="model.gamma_lr must be a positive learning rate"):
        build(cfg)
