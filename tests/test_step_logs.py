"""Training-step logging without per-step host reads (ace/training/step_logs.py and its use)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from ace.training import ACEModule, NonFiniteLossError
from ace.training.pipeline import train
from ace.training.step_logs import StepScalars
from tests.test_evaluation_contract import toy_cfg
from tests.toy_task import ShellTask


def test_epoch_means_are_batch_weighted_and_the_first_bad_step_is_kept():
    acc = StepScalars()
    finite = torch.tensor(1.0)
    acc.add({"a": torch.tensor(1.0), "b": torch.tensor(10.0)}, weight=1, step=0, objective=finite)
    acc.add({"a": torch.tensor(4.0), "b": torch.tensor(20.0)}, weight=3, step=1, objective=finite)
    means = acc.epoch_means()
    assert means["a"].item() == pytest.approx((1 * 1 + 3 * 4) / 4)
    assert means["b"].item() == pytest.approx((1 * 10 + 3 * 20) / 4)
    assert acc.first_nonfinite() is None
    acc.add({"a": torch.tensor(0.0), "b": torch.tensor(0.0)}, 1, step=7, objective=torch.tensor(math.inf))
    acc.add({"a": torch.tensor(0.0), "b": torch.tensor(0.0)}, 1, step=8, objective=torch.tensor(math.nan))
    assert acc.first_nonfinite() == 7  # the first one, not the latest
    with pytest.raises(ValueError, match="changed within an epoch"):
        acc.add({"a": torch.tensor(0.0)}, 1, step=9, objective=finite)
    acc.reset()
    assert acc.epoch_means() == {} and acc.first_nonfinite() is None
    assert StepScalars.host({"x": torch.tensor(2.5), "y": torch.tensor(3, dtype=torch.int64)}) == {
        "x": 2.5, "y": 3.0}


def test_only_written_steps_call_log_and_the_epoch_mean_is_the_mean_of_the_step_losses(
        tmp_path, monkeypatch):
    losses: list[float] = []
    original_loss = ShellTask.loss
    monkeypatch.setattr(ShellTask, "loss", lambda self, pred, batch: (
        lambda v: (losses.append(v.item()), v)[1])(original_loss(self, pred, batch)))
    calls = {"in_step": 0, "steps": 0}
    original_step, original_log = ACEModule.training_step, ACEModule.log

    def training_step(self, batch, batch_idx):
        self._in_step = True
        try:
            return original_step(self, batch, batch_idx)
        finally:
            self._in_step = False
            calls["steps"] += 1

    def log(self, *args, **kwargs):
        calls["in_step"] += bool(getattr(self, "_in_step", False))
        return original_log(self, *args, **kwargs)

    monkeypatch.setattr(ACEModule, "training_step", training_step)
    monkeypatch.setattr(ACEModule, "log", log)
    # toy data: 256 samples, batch 32 -> 8 steps per epoch; steps 3, 7, 11, 15 are written
    train(toy_cfg(tmp_path, "trainer.max_epochs=2", "trainer.log_every_n_steps=4", "test=false"))
    assert calls["steps"] == 16
    assert calls["in_step"] == 4  # the progress-bar value of each written step, nothing else
    frame = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    step_rows = frame.dropna(subset=["train/loss_step"])
    assert step_rows["step"].tolist() == [3, 7, 11, 15]
    assert step_rows["train/loss_step"].to_numpy() == pytest.approx(
        [losses[3], losses[7], losses[11], losses[15]], rel=1e-6)
    assert step_rows["ace/gamma/layer_0"].notna().all()  # the traces ride on the same rows
    epoch_means = frame["train/loss_epoch"].dropna().to_numpy()
    assert epoch_means == pytest.approx([sum(losses[:8]) / 8, sum(losses[8:16]) / 8], rel=1e-6)


def test_a_non_finite_loss_is_reported_with_its_step_before_any_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    original_loss = ShellTask.loss

    def loss(self, pred, batch):
        calls["n"] += 1
        value = original_loss(self, pred, batch)
        return value * float("nan") if calls["n"] == 11 else value  # step 10: epoch 1, batch 2

    monkeypatch.setattr(ShellTask, "loss", loss)
    cfg = toy_cfg(tmp_path, "trainer.max_epochs=3", "trainer.log_every_n_steps=50", "test=false")
    with pytest.raises(NonFiniteLossError, match=r"NaN or inf at step 10 \(epoch 1\)"):
        train(cfg)
    # checked at the end of epoch 1, before that epoch's checkpoints: last.ckpt is epoch 0's
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_the_compiled_forward_trains_like_the_eager_one(tmp_path, device):
    """``model.compile=true`` (torch.compile of the forward, both homotopic modes) through the
    whole loop: the same epoch losses and validation metrics as eager, up to kernel rounding."""
    from tests.conftest import accelerator

    def run(name: str, *overrides: str) -> pd.DataFrame:
        train(toy_cfg(tmp_path / name, "trainer.max_epochs=2", "test=false", "seed=3",
                      f"trainer.accelerator={accelerator(device)}", *overrides))
        return pd.read_csv(tmp_path / name / "csv" / "metrics.csv")

    eager = run("eager")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = run("compiled", "model.compile=true")
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it was compiled
    for key in ("train/loss_epoch", "val/acc/eq", "val/acc/relaxed"):
        assert compiled[key].dropna().to_numpy() == pytest.approx(
            eager[key].dropna().to_numpy(), rel=1e-4, abs=1e-5), key
