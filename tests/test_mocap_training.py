"""CMU MoCap end to end through the real pipeline on the real run data (``../shared/data/mocap``).

The data reach the run through the real download code: ``data.base_url`` points at the shared
directory as a ``file://`` URL and ``prepare_data`` copies and verifies the files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ace.training.pipeline import train
from tests.conftest import compose_cfg, run_train_py, shared_path

EXPERIMENTS = {  # experiment: (constraint state keys, number of γ of the 2-layer test model)
    "mocap_egno": (set(), 0),
    "mocap_egno_ace": ({"lambda"}, 4),
    "mocap_egno_ace_resilient": ({"lambda", "u"}, 4),
    "mocap_egno_ace_onesided": ({"lambda"}, 4),
}
SMALL_VANILLA_PARAMS = 7_092  # EGNO(num_layers=2, hidden=16); full-size counts: test_egno.py


@pytest.fixture(scope="module")
def mocap_source() -> str:
    shared_path("data", "mocap", "motion_run.pkl")
    return shared_path("data", "mocap").resolve().as_uri() + "/"


def overrides(tmp_path: Path, source: str, experiment: str, *extra: str) -> list[str]:
    return [
        f"experiment={experiment}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"data.base_url={source}",
        "data.max_samples_eval=30",  # 10 starts per val/test trial: 30 samples each
        "trainer.max_epochs=2",
        "trainer.check_val_every_n_epoch=1",
        "+trainer.limit_train_batches=3",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
        "logger=csv",
        "callbacks=none",
        "model.eq_error_samples=1",
        "seed=1",
        "model.net.num_layers=2",  # the full-size model is tested in test_egno / test_configs
        "model.net.hidden=16",
        *extra,
    ]


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_each_mocap_experiment_trains_on_real_data_and_writes_results(experiment, tmp_path,
                                                                      mocap_source):
    cfg = compose_cfg(overrides(tmp_path, mocap_source, experiment), tmp_path)
    results = train(cfg)
    for name in ("motion_run.pkl", "split_run.pkl"):  # fetched through the downloader
        assert (tmp_path / "data" / "mocap" / name).stat().st_size > 0
    on_disk = json.loads((tmp_path / "results.json").read_text())
    state_keys, num_gammas = EXPERIMENTS[experiment]
    params = on_disk["parameters"]
    assert params["num_gammas"] == num_gammas and params["pruned"] == SMALL_VANILLA_PARAMS
    assert (params["train"] > params["pruned"]) == bool(num_gammas)
    assert on_disk["metric"] == "mse" and on_disk["task"] == {
        "eval_frame": "last", "equivariance_protocol": "so3_fixed_height"}
    assert set(on_disk["final"]) == ({"gamma"} | state_keys if num_gammas else {"gamma"})
    modes = {"eq", "relaxed", "relaxed_at_eq_selection"} if num_gammas else {"eq"}
    assert set(on_disk["modes"]) == modes
    for mode in modes:
        assert 0 < on_disk["modes"][mode]["test"] == pytest.approx(results["modes"][mode]["test"])
    # the initial model predicts far off; even 6 steps must beat the zero-motion floor (~90)
    assert on_disk["modes"]["eq" if not num_gammas else "relaxed"]["test"] < 1e4
    if experiment == "mocap_egno_ace_onesided":
        assert min(on_disk["final"]["lambda"]) >= 0.0  # projected, and no slack variable u
    if experiment == "mocap_egno_ace_resilient":
        assert min(on_disk["final"]["u"]) >= 0.0 and min(on_disk["final"]["lambda"]) >= 0.0
    assert (tmp_path / "feq_pruned.pt").exists() if num_gammas else True


@pytest.mark.slow
def test_mocap_cli_run_from_a_file_url(tmp_path, mocap_source):
    proc = run_train_py(*overrides(tmp_path, mocap_source, "mocap_egno_ace_onesided",
                                   f"paths.output_dir={tmp_path / 'out'}"),
                        "trainer.max_epochs=1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["name"] == "mocap_egno_ace_onesided" and len(results["final"]["gamma"]) == 4


def test_bad_base_url_is_one_clear_error(tmp_path):
    proc = run_train_py("experiment=mocap_egno", f"paths.data_dir={tmp_path / 'data'}",
                        f"data.base_url={(tmp_path / 'nowhere').as_uri()}/", "logger=none",
                        f"paths.output_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "motion_run.pkl" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any((tmp_path / "data" / "mocap").glob("*.pkl"))
