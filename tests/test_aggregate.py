"""scripts/aggregate.py and plot.py on hand-written results.json files (the real on-disk format)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ace.reproduction.aggregate import find_runs, report, select
from ace.reproduction.paper import TABLES
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
    # the best of our column (lowest test MSE) is bold
    assert "| **3.00 ± 1.41 (n=3)** | 3.8 ± 0.16 |" in rows["SEGNN ACE† f_eq+f_neq"]
    assert "| 5.70 ± 0.08 (n=3) | 5.6 ± 0.25 |" in rows["SEGNN"]
    assert "9 completed and 1 failed runs" in markdown
    assert "Failed runs (1)" in markdown and "Invalid learning rate" in markdown
    assert "| nbody_segnn_ace | 937,960 (147,424) | 937,960 | 4.000 | 1.512 |" in markdown  # Table 3
    latex = report(find_runs([sweep]), latex=True)
    assert r"3.50 $\pm$ 0.41 (n=3)" in latex and r"\begin{tabular}" in latex
    assert r"\textbf{3.00 $\pm$ 1.41 (n=3)}" in latex


def test_a_candidate_with_a_non_finite_validation_mean_is_never_selected(tmp_path):
    # lr=0.0001 sorts first and its mean is NaN (one seed diverged): it must not be kept
    for seed, diverged in ((1, float("nan")), (2, 0.5)):
        write_run(tmp_path, f"a{seed}", "nbody_segnn", seed, 1e-4, None, {"eq": (diverged, 1.0)})
        write_run(tmp_path, f"b{seed}", "nbody_segnn", seed, 5e-4, None, {"eq": (0.9, 2.0)})
    sel = select(find_runs([tmp_path]))[("nbody_segnn", "", "eq")]
    assert sel.candidate.startswith("lr=0.0005") and sel.test_mean == pytest.approx(2.0)
    assert len(sel.non_finite) == 1 and sel.non_finite[0].startswith("lr=0.0001")
    assert "lr=0.0001, trainer.max_epochs=5! " in report(find_runs([tmp_path]))


def test_training_set_size_is_a_variant_never_a_candidate(tmp_path):
    for size, val in ((500, 0.1), (3000, 0.9)):  # a smaller set must not "win" on validation
        for seed in (1, 2):
            run = write_run(tmp_path, f"{size}_{seed}", "nbody_segnn", seed, 5e-4, None,
                            {"eq": (val, val)})
            record = json.loads((run / "results.json").read_text())
            record["hparams"]["data"]["max_samples"] = size
            record["overrides"].append(f"data.max_samples={size}")
            (run / "results.json").write_text(json.dumps(record))
    chosen = select(find_runs([tmp_path]))
    assert set(chosen) == {("nbody_segnn", "n=500", "eq"), ("nbody_segnn", "n=3000", "eq")}
    assert all("max_samples" not in s.candidate for s in chosen.values())
    assert chosen[("nbody_segnn", "n=3000", "eq")].test_mean == pytest.approx(0.9)


def test_one_training_set_size_stays_the_plain_variant(sweep):
    # every run of the sweep fixture has max_samples 3000: no size split, the paper rows apply
    assert {key[1] for key in select(find_runs([sweep]))} == {""}


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


def test_table1_ace_double_dagger_is_beside_the_one_sided_row_not_the_corrected_alg2(tmp_path):
    """The paper's ACE‡ (Run 23.8 ± 1.5, Walk 7.4 ± 0.2; f_eq+f_neq only, experiments.md §4.4)
    belongs to the authors' code path, mocap_egno_ace_onesided (official-code γ ≤ 0); the
    corrected Alg. 2 (mocap_egno_ace_resilient) is not in the paper and has no paper value."""
    table = next(t for t in TABLES if t.key == "table1_mocap")
    rows = {(r.experiment, r.mode): r for r in table.rows}
    onesided = rows[("mocap_egno_ace_onesided", "relaxed")]
    assert onesided.paper == {"run": "23.8 ± 1.5", "walk": "7.4 ± 0.2"}
    assert "ACE‡" in onesided.label and "one-sided" in onesided.label
    assert rows[("mocap_egno_ace_onesided", "eq")].paper == {}  # no ACE‡ f_eq in the paper
    assert "ACE‡" in rows[("mocap_egno_ace_onesided", "eq")].label
    for mode in ("eq", "relaxed"):
        resilient = rows[("mocap_egno_ace_resilient", mode)]
        assert resilient.paper == {} and "ACE‡" not in resilient.label
        assert "corrected Alg. 2" in resilient.label
    # ... and in the report aggregate.py writes
    for job, name in enumerate(("mocap_egno_ace_resilient", "mocap_egno_ace_onesided")):
        run = write_run(tmp_path, str(job), name, 1, 5e-4, 2e-4,
                        {"eq": (0.5, 0.30), "relaxed": (0.4, 0.25)})
        record = json.loads((run / "results.json").read_text())
        record["hparams"]["data"]["case"] = "run"
        (run / "results.json").write_text(json.dumps(record))
    markdown = report(find_runs([tmp_path]))
    lines = {line.split(" | ")[0].lstrip("| "): line for line in markdown.splitlines()
             if line.startswith("| ")}
    assert lines[onesided.label].endswith("| 23.8 ± 1.5 |")
    for mode in ("eq", "relaxed"):
        line = lines[rows[("mocap_egno_ace_resilient", mode)].label]
        assert line.endswith("| — |") and "23.8" not in line


def write_modelnet40_run(root: Path, job: str, name: str, seed: int, lr: float,
                         values: dict[str, tuple[float, float, float]], data: dict) -> Path:
    """values: mode -> (val instance acc, test instance acc, test class acc)."""
    run = root / job
    run.mkdir(parents=True)
    overrides = [f"model.optimizer.lr={lr}", f"seed={seed}"] + [f"data.{k}={v}" for k, v in data.items()]

    def entry(val, inst, cls):
        return {"val": val, "test": inst, "epoch": 3,
                "metrics": {"instance_acc": {"val": val, "test": inst},
                            "class_acc": {"val": val - 0.05, "test": cls}}}

    record = {"name": name, "seed": seed, "status": "completed", "metric": "instance_acc",
              "metric_direction": "max",
              "metrics": {"primary": "instance_acc", "declared": {
                  "instance_acc": {"direction": "max"}, "class_acc": {"direction": "max"}}},
              "hparams": {"lr": lr, "data": data}, "overrides": overrides,
              "modes": {m: entry(*v) for m, v in values.items()},
              "last": {m: entry(v[0] - 0.01, v[1] - 0.02, v[2] - 0.02) for m, v in values.items()}}
    (run / "results.json").write_text(json.dumps(record))
    return run


def test_fig7_reports_class_and_instance_accuracy_per_variant_beside_the_paper(tmp_path):
    job = iter(range(100))
    for seed in (1, 2):
        for data, shift in (({}, 0.0), ({"point_dropout": True}, -0.3),
                            ({"source": "synthetic"}, 0.1)):
            # lr 0.2 has the higher validation accuracy and must be selected (max)
            for lr, val in ((0.1, 0.70), (0.2, 0.80)):
                write_modelnet40_run(tmp_path, str(next(job)), "modelnet40_vndgcnn_ace", seed, lr,
                                     {"eq": (val + shift, 0.84 + shift + seed * 0.01, 0.80 + shift),
                                      "relaxed": (val + shift - 0.1, 0.83 + shift, 0.79 + shift)},
                                     data)
    runs = find_runs([tmp_path])
    chosen = select(runs)
    assert {k[1] for k in chosen} == {"", "dropout", "synthetic"}
    clean = chosen[("modelnet40_vndgcnn_ace", "", "eq")]
    assert clean.candidate == "lr=0.2" and clean.direction == "max"  # no data.* in candidates
    assert clean.test_metrics["instance_acc"] == pytest.approx((0.855, 0.005))
    assert clean.test_metrics["class_acc"] == pytest.approx((0.80, 0.0))
    text = report(runs)
    fig7 = text[text.index("### Fig. 7"):].split("\n\n### ")[0]
    header = fig7.splitlines()[2]
    for column in ("ModelNet40 class acc. ours", "ModelNet40 instance acc. paper",
                   "ModelNet40 + point dropout instance acc. ours",
                   "synthetic (not ModelNet40) class acc. ours"):
        assert column in header
    ace_eq = next(line for line in fig7.splitlines() if line.startswith("| VN-DGCNN ACE† f_eq |"))
    cells = [c.strip() for c in ace_eq.strip("|").split("|")]
    # clean: class ours, class paper, instance ours, instance paper; then dropout, synthetic
    assert cells[1].startswith("**0.8000 ± 0.0000") and cells[2] == "0.7985 ± 0.0232"
    assert cells[3].startswith("**0.8550 ± 0.0050") and cells[4] == "0.8400 ± 0.0123"
    assert cells[6] == "—" and cells[10] == "—"  # no paper value for dropout or synthetic
    assert "### At the last epoch" in text and "instance_acc 0.835 ± 0.005" in text


def test_gamma_traces_of_several_dual_updates_share_one_figure(tmp_path):
    """plot.py overlays max |γ| of the runs of one experiment, one colour per dual update
    (issue 16), and draws nothing for an experiment with a single dual update."""
    import pandas as pd

    from ace.reproduction.plots import RunLog, dual_label, plot_all

    duals = {"adam": {"dual_optimizer": "adam"},
             "nupi": {"dual_optimizer": "nupi", "dual_kp": 3.0, "dual_ki": 1e-4, "dual_ema_nu": 0.0}}
    # the last nbody run is renamed for a study (name=...): its experiment= override still counts
    for i, (name, dual) in enumerate([("nbody_segnn_ace", "adam"), ("nbody_segnn_ace", "nupi"),
                                      ("nbody_segnn_ace", "nupi"), ("mocap_egno_ace", "adam"),
                                      ("nbody_study", "nupi")]):
        run = write_run(tmp_path / "runs", str(i), name, i, 9e-4, 8e-4, {"eq": (0.1, 0.1)})
        record = json.loads((run / "results.json").read_text())
        record["hparams"]["dual"] = duals[dual]
        if name == "nbody_study":
            record["overrides"] = ["experiment=nbody_segnn_ace", "name=nbody_study"]
            record["hparams"]["gamma_lr"] = 2e-3
        (run / "results.json").write_text(json.dumps(record))
        (run / "csv").mkdir()
        steps = list(range(0, 100, 10))
        pd.DataFrame({"step": steps, "ace/gamma_max": [1.0 / (1 + s * (i + 1)) for s in steps]}
                     ).to_csv(run / "csv" / "metrics.csv", index=False)
    written = {p.name for p in plot_all([tmp_path / "runs"], tmp_path / "figures")}
    assert "gamma_max_by_dual_nbody_segnn_ace.png" in written
    assert not any("mocap_egno_ace" in n and n.startswith("gamma_max") for n in written)
    assert not any("nbody_study" in n and n.startswith("gamma_max") for n in written)
    labels = {dual_label(RunLog(tmp_path / "runs" / str(i))) for i in range(5) if i != 3}
    assert labels == {"adam, η_d=0.0008", "nupi, η_d=0.0008, κ_P=3.0, κ_I=0.0001, ν=0.0",
                      "nupi, η_d=0.0008, κ_P=3.0, κ_I=0.0001, ν=0.0, γ lr=0.002"}
