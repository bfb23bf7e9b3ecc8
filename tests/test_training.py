"""End-to-end training through the real pipeline on a tiny generated N-body set."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from ace.core.homotopic import count_parameters
from ace.data.errors import DataIntegrityError
from ace.training import NonFiniteLossError
from ace.training.pipeline import train
from tests.conftest import TINY_DATA, compose_cfg
from tests.conftest import run_train_py as _train_py


def run(tmp_path: Path, data_dir: Path, *overrides: str) -> dict:
    cfg = compose_cfg(
        [
            "experiment=nbody_segnn_ace",
            f"paths.data_dir={data_dir}",
            *TINY_DATA,
            "trainer.max_epochs=4",
            "trainer.check_val_every_n_epoch=2",
            "trainer.enable_progress_bar=false",
            "callbacks=none",
            "model.eq_error_samples=2",
            *overrides,
        ],
        tmp_path,
    )
    return train(cfg)


def metrics(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "csv" / "metrics.csv")


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def test_ace_run_lowers_loss_and_writes_everything(tmp_path, data_dir):
    results = run(tmp_path, data_dir, "logger=default", "trainer.max_epochs=6",
                  "model.optimizer.lr=3e-3", "seed=0")
    frame = metrics(tmp_path)
    epoch_loss = frame["train/loss_epoch"].dropna().to_numpy()
    assert len(epoch_loss) == 6 and epoch_loss[-1] < 0.7 * epoch_loss[0]
    for key in ("ace/gamma/layer_0", "ace/gamma/layer_7", "ace/lambda/layer_0", "ace/slack/layer_3",
                "val/mse/eq", "val/mse/relaxed", "test/mse/relaxed", "equivariance/mean", "time/train_epoch_s"):
        assert frame[key].notna().any(), key
    assert {"best_eq.ckpt", "best_relaxed.ckpt", "last.ckpt"} <= {
        p.name for p in (tmp_path / "checkpoints").iterdir()
    }
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["modes"]["eq"]["test"] == pytest.approx(results["modes"]["eq"]["test"])
    assert set(on_disk["modes"]) == {"eq", "relaxed", "relaxed_at_eq_selection"}
    assert on_disk["parameters"] == {"train": 937_960, "pruned": 147_424, "num_gammas": 8}
    assert len(on_disk["final"]["gamma"]) == 8 and len(on_disk["final"]["lambda"]) == 8
    # λ moved away from 0 and γ away from 1 under the constraint
    assert any(abs(v) > 0 for v in on_disk["final"]["lambda"])
    assert all(g < 1.0 for g in on_disk["final"]["gamma"])
    # convergence: max |γ| and max |s| (= max |γ| for equality) at the end and at each selection
    final_max = max(abs(g) for g in on_disk["final"]["gamma"])
    assert on_disk["hparams"]["dual"] == {"dual_optimizer": "adam", "dual_kp": 0.0, "dual_ki": 1.0,
                                          "dual_ema_nu": 0.0, "penalty": 0.0}
    assert on_disk["convergence"] == pytest.approx({"max_abs_gamma": final_max,
                                                    "max_violation": final_max})
    for mode in ("eq", "relaxed"):
        state = torch.load(on_disk["modes"][mode]["checkpoint"], weights_only=False)["state_dict"]
        selected = max(abs(float(v)) for k, v in state.items()
                       if k.startswith("net.") and k.endswith(".gamma"))
        assert on_disk["modes"][mode]["convergence"]["max_abs_gamma"] == pytest.approx(selected)
    assert list((tmp_path / "wandb").glob("offline-run-*"))  # offline W&B run directory
    pruned = torch.load(tmp_path / "feq_pruned.pt", weights_only=False)
    assert count_parameters(pruned) == 147_424


def test_test_metric_is_that_of_each_modes_best_validation_checkpoint(tmp_path, data_dir):
    results = run(tmp_path, data_dir, "logger=csv", "seed=1")
    frame = metrics(tmp_path)
    for mode in ("eq", "relaxed"):
        val = frame[["epoch", f"val/mse/{mode}"]].dropna()
        best = val.loc[val[f"val/mse/{mode}"].idxmin()]
        assert results["modes"][mode]["epoch"] == int(best["epoch"])
        assert results["modes"][mode]["val"] == pytest.approx(best[f"val/mse/{mode}"], rel=1e-5)


@pytest.mark.parametrize("experiment", ["nbody_segnn", "nbody_segnn_ace_resilient", "nbody_segnn_aug"])
def test_other_nbody_experiments_train(tmp_path, data_dir, experiment):
    results = run(tmp_path, data_dir, f"experiment={experiment}", "logger=csv", "trainer.max_epochs=2")
    assert (tmp_path / "results.json").exists()
    if experiment == "nbody_segnn":
        assert set(results["modes"]) == {"eq"} and results["parameters"]["num_gammas"] == 0
    if experiment == "nbody_segnn":
        assert results["convergence"] is None and "convergence" not in results["modes"]["eq"]
    if experiment == "nbody_segnn_ace_resilient":
        assert len(results["final"]["u"]) == 8 and min(results["final"]["u"]) >= 0.0
        assert min(results["final"]["lambda"]) >= 0.0
        # inequality: the violation is max(|γ| − u, 0)
        gamma, u = results["final"]["gamma"], results["final"]["u"]
        assert results["convergence"]["max_violation"] == pytest.approx(
            max(max(abs(g) - v, 0.0) for g, v in zip(gamma, u)), abs=1e-7)


NUPI = ("constraint.dual_optimizer=nupi", "constraint.dual_kp=3.0", "constraint.dual_ki=0.1",
        "constraint.dual_ema_nu=0.2", "constraint.penalty=0.5", "model.gamma_lr=2e-3")


@pytest.mark.parametrize("dual", [(), NUPI], ids=["adam", "nupi_penalty"])
def test_resume_from_mid_run_checkpoint_is_exact(tmp_path, data_dir, dual):
    full, first, resumed = tmp_path / "full", tmp_path / "first", tmp_path / "resumed"
    run(full, data_dir, "logger=none", "seed=3", *dual)
    run(first, data_dir, "logger=none", "seed=3", "trainer.max_epochs=2", *dual)
    run(resumed, data_dir, "logger=none", "seed=3",
        f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}", *dual)
    a, b = final_state(full), final_state(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert any("gamma" in k for k in a) and "constraint.dual" in a


def test_resuming_into_the_same_run_directory_keeps_the_metrics_history(tmp_path, data_dir):
    run(tmp_path, data_dir, "logger=csv", "seed=4", "trainer.max_epochs=2")
    assert metrics(tmp_path)["train/loss_epoch"].dropna().size == 2
    run(tmp_path, data_dir, "logger=csv", "seed=4", "trainer.max_epochs=4",
        f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}")
    frame = metrics(tmp_path)
    assert frame[["epoch", "train/loss_epoch"]].dropna()["epoch"].astype(int).tolist() == [0, 1, 2, 3]
    assert frame[["epoch", "val/mse/eq"]].dropna()["epoch"].astype(int).tolist() == [1, 3]


def test_nan_loss_stops_with_clear_error_and_keeps_last_checkpoint(tmp_path, data_dir, monkeypatch):
    from ace.data.nbody import NBodyTask

    calls = {"n": 0}
    original = NBodyTask.loss

    def loss_turning_nan(self, pred, batch):
        calls["n"] += 1
        value = original(self, pred, batch)
        return value * float("nan") if calls["n"] > 6 else value  # epoch 1 has 4 steps

    monkeypatch.setattr(NBodyTask, "loss", loss_turning_nan)
    with pytest.raises(NonFiniteLossError, match="last.ckpt"):
        run(tmp_path, data_dir, "logger=none")
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_unknown_experiment_names_the_available_ones(tmp_path):
    proc = _train_py("experiment=nbody_does_not_exist", cwd=tmp_path)
    assert proc.returncode != 0
    assert "nbody_does_not_exist" in proc.stderr and "nbody_segnn_ace" in proc.stderr


def test_corrupted_data_file_gives_one_clear_error(tmp_path, data_dir):
    args = [f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'out'}", "logger=none",
            *TINY_DATA, "trainer.max_epochs=1"]
    assert _train_py(*args, cwd=tmp_path).returncode == 0  # generates the tiny set, trains
    victim = next((tmp_path / "data").rglob("loc_train.npy"))
    victim.write_bytes(victim.read_bytes()[:-64] + b"\0" * 64)
    proc = _train_py(*args, cwd=tmp_path)
    assert proc.returncode == 1
    assert "loc_train.npy" in proc.stderr and "Traceback" not in proc.stderr


def test_multirun_grid_runs_every_job(tmp_path):
    proc = _train_py(
        "-m", "experiment=nbody_segnn_ace", "constraint.dual_lr=5e-5,1e-4", "seed=1,2",
        f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'out'}", "logger=csv",
        *TINY_DATA, "trainer.max_epochs=1", "trainer.enable_progress_bar=false", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted((tmp_path / "out" / "nbody_segnn_ace" / "multirun").glob("*/*/results.json"))
    assert len(jobs) == 4
    assert [p.parent.name for p in jobs] == ["0", "1", "2", "3"]
    overrides = (jobs[1].parent / ".hydra" / "overrides.yaml").read_text()
    assert "constraint.dual_lr=5e-05" in overrides and "seed=2" in overrides
