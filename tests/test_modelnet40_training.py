"""VN-DGCNN × ModelNet40 through the ACE machinery: Alg. 1 by hand on the real model, and a short
run on the synthetic clouds through the real pipeline (experiments.md §5.5)."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import torch

from ace.core.constraints import EqualityConstraint
from ace.core.homotopic import gammas, homotopic_branches
from ace.core.step import primal_dual_step
from ace.data.modelnet40.task import ModelNet40Task
from ace.models import VNDGCNN
from ace.training.pipeline import train
from tests.conftest import compose_cfg

ETA_P, ETA_D, LAMBDA0 = 0.1, 1e-3, 0.3


def test_the_ace_step_on_vn_dgcnn_moves_gamma_and_lambda_as_alg1():
    """γ ← γ − η_p (∂J_0/∂γ + λ), λ ← λ + η_d γ (pre-update γ), θ ← θ − η_p ∂J_0/∂θ, with the
    gradients of J_0 computed independently on a copy of the model."""
    torch.manual_seed(0)
    model = VNDGCNN(num_classes=5, k=6, ace_branches=True).double().eval()  # no dropout noise
    g = torch.Generator().manual_seed(1)
    batch = {"pos": torch.randn(4, 24, 3, generator=g, dtype=torch.float64),
             "label": torch.tensor([0, 1, 2, 3])}
    task = ModelNet40Task(num_classes=5)
    reference = copy.deepcopy(model)
    task.loss(reference(batch), batch).backward()
    grad_gamma = torch.stack([p.grad for p in (b.gamma for b in homotopic_branches(reference))])
    theta, theta_ref = model.linear1.weight, reference.linear1.weight

    constraint = EqualityConstraint(14, dual_lr=ETA_D).double()
    with torch.no_grad():
        constraint.dual.fill_(LAMBDA0)
    gamma0 = gammas(model).detach().clone()
    theta0 = theta.detach().clone()
    primal = torch.optim.SGD(list(model.parameters()), lr=ETA_P)
    out = primal_dual_step(task.loss(model(batch), batch), gammas(model), constraint, primal,
                           constraint.make_dual_optimizer())
    assert gamma0.shape == (14,) and torch.all(grad_gamma != 0)
    assert torch.allclose(gammas(model).detach(), gamma0 - ETA_P * (grad_gamma + LAMBDA0),
                          atol=1e-12, rtol=0)
    assert torch.allclose(constraint.dual.detach(), LAMBDA0 + ETA_D * gamma0, atol=1e-15, rtol=0)
    assert torch.allclose(theta.detach(), theta0 - ETA_P * theta_ref.grad, atol=1e-12, rtol=0)
    assert torch.equal(out.slack, gamma0)


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("modelnet40")
    cfg = compose_cfg(["experiment=modelnet40_vndgcnn_ace", "debug=smoke", "logger=csv",
                       "callbacks=none", "trainer.enable_progress_bar=false",
                       "trainer.log_every_n_steps=1",
                       "constraint.dual_lr=1e-2", "seed=0"], run_dir)
    return run_dir, train(cfg)


def test_a_short_synthetic_run_selects_each_mode_by_maximum_validation_instance_accuracy(
        synthetic_run):
    run_dir, results = synthetic_run
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["metric"] == "instance_acc" and on_disk["metric_direction"] == "max"
    # 10 synthetic classes: the last Linear has 30 × (256 + 1) parameters fewer than for 40
    assert on_disk["parameters"] == {"train": 8_831_612 - 30 * 257,
                                     "pruned": 2_899_830 - 30 * 257, "num_gammas": 14}
    frame = pd.read_csv(run_dir / "csv" / "metrics.csv")
    for mode in ("eq", "relaxed"):
        entry = on_disk["modes"][mode]
        assert set(entry["metrics"]) == {"instance_acc", "class_acc"}
        assert all(0.0 <= v <= 1.0 for m in entry["metrics"].values() for v in m.values())
        curve = frame[["epoch", f"val/instance_acc/{mode}"]].dropna()
        top = curve[f"val/instance_acc/{mode}"].max()
        first_top = int(curve.loc[curve[f"val/instance_acc/{mode}"] == top, "epoch"].iloc[0])
        assert entry["epoch"] == first_top and entry["val"] == pytest.approx(top, abs=1e-6)
        last = on_disk["last"][mode]
        assert last["epoch"] == 1 and set(last["metrics"]) == {"instance_acc", "class_acc"}
    assert {f"ace/gamma/layer_{i}" for i in range(14)} <= set(frame.columns)  # traces
    assert {f"ace/lambda/layer_{i}" for i in range(14)} <= set(frame.columns)
    assert (run_dir / "feq_pruned.pt").is_file()


def test_the_vn_dgcnn_benchmark_writes_same_run_ratios(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_vn_dgcnn.py"),
                           "--batch-size", "4", "--num-points", "24", "--k", "4", "--warmup", "0",
                           "--reps", "1", "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["params"] == {"ours_vanilla": 2_899_830, "ours_ace": 8_831_612}
    med = {k: v["median_s"] for k, v in result["train_step"].items()}
    assert result["ratio_ace_over_vanilla"] == pytest.approx(med["ours_ace"] / med["ours_vanilla"])
    assert result["s_per_epoch"]["ours_ace"] == pytest.approx(308 * med["ours_ace"])
