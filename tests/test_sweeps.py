"""Sweeps through train.py: the basic launcher runs a tiny grid, failures do not stop a sweep,
aggregate.py and plot.py turn the real outputs into tables and figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ace.reproduction.aggregate import find_runs, report, select
from ace.reproduction.plots import plot_all
from tests.conftest import TINY_DATA
from tests.conftest import run_train_py as _train_py

FAST = [*TINY_DATA, "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=1",
        "trainer.enable_progress_bar=false", "model.eq_error_samples=1", "logger=csv",
        "trainer.log_every_n_steps=1"]


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    """2 primal × 2 dual × 2 seeds of tiny N-body ACE runs, one after another (basic launcher)."""
    tmp = tmp_path_factory.mktemp("grid")
    proc = _train_py(
        "-m", "experiment=nbody_segnn_ace", "model.optimizer.lr=1e-3,3e-3", "constraint.dual_lr=1e-4,1e-2",
        "seed=1,2", f"paths.data_dir={tmp / 'data'}", f"paths.log_dir={tmp / 'out'}", *FAST, cwd=tmp,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp / "out" / "nbody_segnn_ace" / "multirun").iterdir()
    return sweep


def test_grid_runs_every_job_and_aggregates_to_mean_and_std(grid):
    records = [json.loads(p.read_text()) for p in sorted(grid.glob("*/results.json"))]
    assert len(records) == 8 and all(r["status"] == "completed" for r in records)
    summary = json.loads((grid / "sweep_summary.json").read_text())
    assert (summary["jobs"], summary["completed"], summary["failed"]) == (8, 8, [])
    # independent computation of the paper protocol from the raw files
    for mode in ("eq", "relaxed"):
        by_candidate: dict[tuple, list[dict]] = {}
        for r in records:
            key = (r["hparams"]["lr"], r["hparams"]["dual_lr"])
            by_candidate.setdefault(key, []).append(r["modes"][mode])
        assert all(len(v) == 2 for v in by_candidate.values()) and len(by_candidate) == 4
        best = min(by_candidate.values(), key=lambda v: np.mean([m["val"] for m in v]))
        tests = [m["test"] for m in best]
        chosen = select(find_runs([grid]))[("nbody_segnn_ace", "", mode)]
        assert chosen.test_mean == pytest.approx(np.mean(tests), rel=1e-12)
        assert chosen.test_std == pytest.approx(np.std(tests), rel=1e-12, abs=1e-15)
        label = "SEGNN ACE† f_eq" if mode == "eq" else "SEGNN ACE† f_eq+f_neq"
        cell = f"{np.mean(tests) * 1e3:.2f} ± {np.std(tests) * 1e3:.2f} (n=2)"
        assert any(line.startswith((f"| {label} | {cell}", f"| {label} | **{cell}**"))
                   for line in report(find_runs([grid])).splitlines())


def test_plot_writes_the_figures_of_a_real_sweep(grid, tmp_path):
    written = {p.name: p for p in plot_all([grid], tmp_path)}
    for name in ("val_curves.png", "equivariance_error.png"):
        assert written[name].stat().st_size > 5_000, name
    traces = [p for n, p in written.items() if n.startswith("traces_nbody_segnn_ace") and n.endswith(".png")]
    assert len(traces) == 1 and traces[0].stat().st_size > 5_000


def test_a_failing_job_is_recorded_and_the_sweep_continues(tmp_path):
    proc = _train_py(
        "-m", "experiment=nbody_segnn_ace", "model.optimizer.lr=-1.0,1e-3", "seed=1",
        f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'out'}", *FAST, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "out" / "nbody_segnn_ace" / "multirun").iterdir()
    failed, ok = (json.loads((sweep / job / "results.json").read_text()) for job in ("0", "1"))
    assert failed["status"] == "failed" and "Invalid learning rate" in failed["error"]
    assert "Traceback" in failed["traceback"] and "model.optimizer.lr=-1.0" in failed["overrides"]
    assert ok["status"] == "completed" and "eq" in ok["modes"]
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert summary["completed"] == 1 and [j["job"] for j in summary["failed"]] == ["0"]
    markdown = report(find_runs([sweep]))
    assert "1 completed and 1 failed runs" in markdown and "Failed runs (1)" in markdown
