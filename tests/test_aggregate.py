"""scripts/aggregate.py and plot.py on hand-written results.json files (the real on-disk format)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ace.reproduction.aggregate import find_runs, report, select
from tests.conftest import ROOT


def write_run(root: Path, job: str, name: str, seed: int, lr: float, dual_lr: float | None,
              modes: dict[str, tuple[float, float]], status: str = "completed", **extra) -> Path:
    run = root / job
    run.mkdir(parents=True)
    record = {
        "name": name, "seed": seed, "status": status, "metric": "mse",
        "hparams": {"lr": lr, "dual_lr": dual_lr, "data": {"max_samples": 3000}},
        "overrides": [f"model.optimizer.lr={lr}", f"seed={seed}", "trainer.max_epochs=5",
                      f"paths.output_dir={run}"] + ([f"constraint.dual_lr={dual_lr}"] if dual_lr else []),
        "parameters": {"train": 937_960, "pruned": 147_424, "num_gammas": 8},
        "seconds_per_epoch": {"train": 2.0 + seed, "val": 0.5},
        "modes": {m: {"val": v, "test": t, "epoch": 4} for m, (v, t) in modes.items()},
        **extra,
    }
    if status != "completed":
        record = {k: record[k] for k in ("name", "seed", "status", "hparams", "overrides")}
        record["error"] = "ValueError: Invalid learning rate: -1.0"
    (run / "results.json").write_text(json.dumps(record))
    return run


@pytest.fixture
def sweep(tmp_path) -> Path:
    """ACE: candidate A (lr 1e-3) wins relaxed, B (lr 5e-4) wins f_eq; vanilla: one candidate."""
    job = iter(range(100))
    for seed, (a_eq, a_rel, b_eq, b_rel) in zip((1, 2, 3), [
        ((1.0, 4e-3), (0.1, 2e-3), (0.5, 3.0e-3), (0.9, 9e-3)),
        ((2.0, 5e-3), (0.1, 2e-3), (0.5, 3.5e-3), (0.9, 9e-3)),
        ((3.0, 6e-3), (0.1, 5e-3), (0.5, 4.0e-3), (0.9, 9e-3)),
    ]):
        write_run(tmp_path, str(next(job)), "nbody_segnn_ace", seed, 1e-3, 1e-4, {"eq": a_eq, "relaxed": a_rel})
        write_run(tmp_path, str(next(job)), "nbody_segnn_ace", seed, 5e-4, 1e-4, {"eq": b_eq, "relaxed": b_rel})
        write_run(tmp_path, str(next(job)), "nbody_segnn", seed, 5e-4, None, {"eq": (0.7, 5.5e-3 + seed * 1e-4)})
    write_run(tmp_path, str(next(job)), "nbody_segnn_ace", 4, -1.0, 1e-4, {}, status="failed")
    return tmp_path


def test_selection_is_per_mode_by_mean_validation(sweep):
    runs = find_runs([sweep])
    assert len(runs) == 10 and sum(r.failed for r in runs) == 1
    chosen = select(runs)
    eq, relaxed = chosen[("nbody_segnn_ace", "", "eq")], chosen[("nbody_segnn_ace", "", "relaxed")]
    assert eq.candidate.startswith("lr=0.0005") and relaxed.candidate.startswith("lr=0.001")
    assert eq.candidates == 2 and sorted(eq.seeds) == [1, 2, 3]
    assert eq.test_mean == pytest.approx(3.5e-3)
    assert eq.test_std == pytest.approx(math.sqrt((0.5e-3 ** 2 * 2) / 3))  # population std
    assert relaxed.test_mean == pytest.approx(3e-3)
    # the bookkeeping override (paths.output_dir) does not split seeds into candidates
    assert "paths" not in eq.candidate and "trainer.max_epochs=5" in eq.candidate


def test_report_puts_ours_beside_the_paper_and_lists_failures(sweep):
    markdown = report(find_runs([sweep]))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in markdown.splitlines() if line.startswith("| ")}
    assert "| 3.50 ± 0.41 (n=3) | 3.8 ± 0.17 |" in rows["SEGNN ACE† f_eq"]
    assert "| 3.00 ± 1.41 (n=3) | 3.8 ± 0.16 |" in rows["SEGNN ACE† f_eq+f_neq"]
    assert "| 5.70 ± 0.08 (n=3) | 5.6 ± 0.25 |" in rows["SEGNN"]
    assert "9 completed and 1 failed runs" in markdown
    assert "Failed runs (1)" in markdown and "Invalid learning rate" in markdown
    assert "| nbody_segnn_ace | 937,960 (147,424) | 937,960 | 4.000 | 1.512 |" in markdown  # Table 3
    latex = report(find_runs([sweep]), latex=True)
    assert r"3.50 $\pm$ 0.41 (n=3)" in latex and r"\begin{tabular}" in latex


def test_aggregate_cli_writes_markdown_and_latex(sweep, tmp_path):
    out = tmp_path / "tables"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "aggregate.py"), str(sweep), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "SEGNN ACE† f_eq" in (out / "tables.md").read_text()
    assert r"\toprule" in (out / "tables.tex").read_text()
    missing = subprocess.run([sys.executable, str(ROOT / "scripts" / "aggregate.py"), str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_sample_efficiency_figure_from_results(tmp_path):
    from ace.reproduction.plots import plot_all

    for i, (name, size, seed, test) in enumerate(
        [(n, s, seed, 1e-3 * (10 - s / 1000) + seed * 1e-4) for n in ("nbody_segnn", "nbody_segnn_ace")
         for s in (1000, 3000, 5000) for seed in (1, 2)]
    ):
        run = write_run(tmp_path / "sweep", str(i), name, seed, 5e-4, None, {"eq": (test, test)})
        record = json.loads((run / "results.json").read_text())
        record["hparams"]["data"]["max_samples"] = size
        (run / "results.json").write_text(json.dumps(record))
    written = plot_all([tmp_path / "sweep"], tmp_path / "figures")
    assert {p.name for p in written} >= {"sample_efficiency.png", "sample_efficiency.pdf"}
    assert (tmp_path / "figures" / "sample_efficiency.png").stat().st_size > 5_000


def test_results_without_hparams_are_read_from_the_runs_hydra_files(tmp_path):
    """Runs written before results.json carried hparams/overrides: load_results takes them from
    <run>/.hydra/config.yaml and overrides.yaml, so old sweeps still group into candidates."""
    from omegaconf import OmegaConf

    from ace.reproduction.aggregate import load_results

    run = tmp_path / "0"
    (run / ".hydra").mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"name": "nbody_segnn_ace", "seed": 1}))
    OmegaConf.save(OmegaConf.create({
        "model": {"optimizer": {"lr": 9e-4}}, "trainer": {"max_epochs": 7},
        "constraint": {"_target_": "ace.core.constraints.EqualityConstraint", "dual_lr": 8e-4},
        "data": {"max_samples": 3000, "data_dir": "/somewhere", "nested": {"x": 1}},
    }), run / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(["seed=1", "trainer.max_epochs=7"]), run / ".hydra" / "overrides.yaml")

    record = load_results(run / "results.json")
    assert record["overrides"] == ["seed=1", "trainer.max_epochs=7"]
    assert record["hparams"] == {"lr": 9e-4, "dual_lr": 8e-4, "constraint": "EqualityConstraint",
                                 "max_epochs": 7, "data": {"max_samples": 3000}}
    [found] = find_runs([tmp_path])
    assert found.candidate == "lr=0.0009, dual_lr=0.0008, trainer.max_epochs=7"
