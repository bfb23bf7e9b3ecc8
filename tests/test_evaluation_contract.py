"""The evaluation contract: a task declares its metrics and directions, and everything that
selects (checkpoints per mode, aggregation, figures, the sweep objective) follows them.

The toy task (tests/toy_task.py) maximises accuracy and is trained through the real pipeline
with no edit to ace: only its own task / data module / network and config entries.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf, open_dict

from ace.reproduction.aggregate import find_runs, report, select
from ace.reproduction.plots import plot_all
from ace.training.pipeline import sweep_objective, train
from ace.utils.direction import best, is_better, objective
from tests.conftest import compose_cfg
from tests.toy_task import DATA_CFG, NET_CFG


def toy_cfg(tmp_path: Path, *overrides: str, data: dict | None = None, net: dict | None = None):
    cfg = compose_cfg(["experiment=nbody_segnn_ace", "logger=csv", "callbacks=none",
                       "trainer.max_epochs=8", "trainer.check_val_every_n_epoch=1",
                       "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
                       "model.eq_error_samples=2", "model.optimizer.lr=2e-2",
                       "constraint.dual_lr=1e-2", *overrides], tmp_path)
    with open_dict(cfg):
        cfg.data = OmegaConf.create({**DATA_CFG, **(data or {})})
        cfg.model.net = OmegaConf.create({**NET_CFG, **(net or {})})
    return cfg


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("toy")
    return run_dir, train(toy_cfg(run_dir, "seed=0"))


def test_a_maximised_metric_selects_each_modes_highest_validation_epoch(toy_run):
    run_dir, results = toy_run
    frame = pd.read_csv(run_dir / "csv" / "metrics.csv")
    for mode in ("eq", "relaxed"):
        curve = frame[["epoch", f"val/acc/{mode}"]].dropna()
        assert curve[f"val/acc/{mode}"].nunique() > 1  # a min-selection would pick another epoch
        top = curve.loc[curve[f"val/acc/{mode}"].idxmax()]
        assert results["modes"][mode]["epoch"] == int(top["epoch"])
        assert results["modes"][mode]["val"] == pytest.approx(top[f"val/acc/{mode}"], abs=1e-6)
        assert set(results["modes"][mode]["metrics"]) == {"acc", "class_acc"}
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["metric"] == "acc" and on_disk["metric_direction"] == "max"
    assert on_disk["metrics"]["primary"] == "acc"
    assert {k: v["direction"] for k, v in on_disk["metrics"]["declared"].items()} == {
        "acc": "max", "class_acc": "max"}
    # the sweep objective is oriented so that a minimising sweeper maximises accuracy
    assert sweep_objective(on_disk) == -on_disk["modes"]["eq"]["val"]


def test_mean_per_class_accuracy_is_a_confusion_matrix_metric(toy_run):
    _, results = toy_run
    eq = results["modes"]["eq"]["metrics"]
    # unbalanced shells: the macro (per-class) mean differs from the instance accuracy
    assert eq["class_acc"]["val"] != pytest.approx(eq["acc"]["val"], abs=1e-4)


def test_aggregation_and_figures_follow_the_recorded_direction(tmp_path):
    def write(job: str, lr: float, seed: int, val: float, test: float) -> None:
        d = tmp_path / job
        d.mkdir()
        (d / "results.json").write_text(json.dumps({
            "name": "toy_shells", "seed": seed, "status": "completed", "metric": "acc",
            "metric_direction": "max", "hparams": {"lr": lr, "data": {}},
            "overrides": [f"model.optimizer.lr={lr}", f"seed={seed}"],
            "modes": {"eq": {"epoch": 3, "val": val, "test": test}}}))
        (d / "csv").mkdir()
        pd.DataFrame({"step": [0, 1], "epoch": [0, 0], "ace/gamma/layer_0": [1.0, 0.5],
                      "val/acc/eq": [val, val]}).to_csv(d / "csv" / "metrics.csv", index=False)

    write("0", 0.1, 1, 0.60, 0.58)
    write("1", 0.1, 2, 0.62, 0.60)
    write("2", 0.2, 1, 0.80, 0.79)
    write("3", 0.2, 2, 0.78, 0.77)
    sel = select(find_runs([tmp_path]))[("toy_shells", "", "eq")]
    assert sel.candidate.startswith("lr=0.2") and sel.val_mean == pytest.approx(0.79)
    assert "higher" in report(find_runs([tmp_path]))
    written = plot_all([tmp_path], tmp_path / "figures")
    # the best run (highest f_eq validation accuracy) gives the trace figure: lr 0.2, seed 1
    assert any(p.name == "traces_toy_shells_seed1.png" for p in written)


def test_direction_helpers():
    assert is_better(0.9, 0.8, "max") and not is_better(0.9, 0.8, "min")
    assert not is_better(math.nan, 0.8, "max") and is_better(0.1, math.nan, "min")
    assert best([3.0, math.nan, 1.0], key=float, direction="min") == 1.0
    assert best([3.0, math.nan, 1.0], key=float, direction="max") == 3.0
    assert best([math.nan], key=float, direction="max") is None
    assert objective(0.8, "max") == -0.8 and objective(0.8, "min") == 0.8
    with pytest.raises(ValueError, match="'min' or 'max'"):
        is_better(1.0, 2.0, "lower")


class CountingRotation:
    """An eval transform that records the batches it sees and the rotations it draws."""

    def __init__(self) -> None:
        self.draws: list[torch.Tensor] = []

    def __call__(self, batch, action, generator=None):
        g = action.sample(batch, generator)
        self.draws.append(g)
        return action.act_on_batch(batch, g)


def test_eval_transform_is_seeded_by_epoch_and_shared_by_both_modes(tmp_path):
    from hydra.utils import instantiate

    import lightning as L

    cfg = toy_cfg(tmp_path, "seed=5")
    transform = CountingRotation()
    datamodule = instantiate(cfg.data)
    datamodule.eval_transform = transform
    module = instantiate(cfg.model, task=datamodule.task, constraint=None)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)
    batches = len(datamodule.val_dataloader())

    first = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    assert len(transform.draws) == batches  # once per batch, not once per mode
    draws = [g.clone() for g in transform.draws]
    second = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    assert all(torch.equal(a, b) for a, b in zip(draws, transform.draws[batches:]))
    assert first == second  # reproducible evaluation
    module.eval_epoch = 7  # another epoch: other rotations
    trainer.validate(module, datamodule=datamodule, verbose=False)
    assert not torch.equal(draws[0], transform.draws[2 * batches])
    # f_eq is invariant: its accuracy does not depend on the rotations, f_neq's does
    assert first["val/acc/eq"] == pytest.approx(trainer.validate(
        module, datamodule=datamodule, verbose=False)[0]["val/acc/eq"])


def test_a_bad_transform_is_one_clear_error():
    from tests.toy_task import ShellDataModule

    with pytest.raises(TypeError, match="data.train_transform must be a callable"):
        ShellDataModule(train_transform="rotate")
