"""QM9 end to end through the real pipeline, on a tiny QM9 prepared through the real download path.

The tiny set is methane, ammonia and water (published QM9 geometries and properties) plus rigidly
moved copies (ace/data/qm9/tiny.py), served from a local ``file://`` archive.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from ace.core.homotopic import count_parameters
from ace.data.qm9.tiny import make_qm9_zip, tiny_qm9_records
from ace.training.pipeline import train
from tests.conftest import compose_cfg, run_train_py

PARAMETERS = {  # experiment: (train-time, pruned, number of γ)
    "qm9_schnet": (127_553, 127_553, 0),
    "qm9_schnet_ace": (153_543, 127_553, 6),
    "qm9_segnn": (1_033_525, 1_033_525, 0),
    "qm9_segnn_ace": (9_869_667, 1_033_525, 14),
}


@pytest.fixture(scope="module")
def qm9_data(tmp_path_factory) -> tuple[Path, str]:
    """(paths.data_dir, data.url): 30 molecules, downloaded once from a file:// archive."""
    archive = make_qm9_zip(tmp_path_factory.mktemp("src") / "qm9_v3.zip",
                           tiny_qm9_records(copies=9, seed=0))
    return tmp_path_factory.mktemp("data"), archive.as_uri()


def run(tmp_path: Path, qm9_data, experiment: str, *overrides: str) -> dict:
    data_dir, url = qm9_data
    cfg = compose_cfg(
        [
            f"experiment={experiment}",
            f"paths.data_dir={data_dir}",
            f"data.url={url}",
            "data.cormorant_num_train=20",  # 30 molecules: 20 / 7 / 3
            "data.batch_size=8",
            "trainer.max_epochs=2",
            "trainer.enable_progress_bar=false",
            "trainer.log_every_n_steps=1",
            "logger=csv",
            "callbacks=none",
            "model.eq_error_samples=2",
            "seed=0",
            *overrides,
        ],
        tmp_path,
    )
    return train(cfg)


@pytest.mark.parametrize("experiment", sorted(PARAMETERS))
def test_each_qm9_experiment_trains_and_writes_results(experiment, tmp_path, qm9_data):
    overrides = ["+trainer.limit_train_batches=2"]
    results = run(tmp_path, qm9_data, experiment, *overrides)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    train_params, pruned_params, num_gammas = PARAMETERS[experiment]
    assert on_disk["parameters"] == {"train": train_params, "pruned": pruned_params,
                                     "num_gammas": num_gammas}
    assert on_disk["metric"] == "mae"
    modes = {"eq", "relaxed", "relaxed_at_eq_selection"} if num_gammas else {"eq"}
    assert set(on_disk["modes"]) == modes
    for mode in modes:
        entry = on_disk["modes"][mode]
        assert entry["test"] == pytest.approx(results["modes"][mode]["test"])
        assert entry["val"] > 0 and entry["test"] > 0
    target_is_energy = experiment.startswith("qm9_segnn")  # zpve (eV) vs c_v (cal/mol/K)
    assert on_disk["metric_unit"] == ("eV" if target_is_energy else "cal/(mol K)")
    if target_is_energy:
        eq = on_disk["modes"]["eq"]
        assert eq["test_meV"] == pytest.approx(1000 * eq["test"])
    else:
        assert "test_meV" not in on_disk["modes"]["eq"]
    pruned = torch.load(tmp_path / "feq_pruned.pt", weights_only=False)
    assert count_parameters(pruned) == pruned_params
    frame = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    for key in ["val/mae/eq", "test/mae/eq", "equivariance/mean"] + (
        ["val/mae/relaxed", "ace/gamma/layer_0", "ace/lambda/layer_0"] if num_gammas else []
    ):
        assert frame[key].notna().any(), key


def test_schnet_ace_lowers_the_training_loss_and_moves_gamma(tmp_path, qm9_data):
    results = run(tmp_path, qm9_data, "qm9_schnet_ace", "trainer.max_epochs=15",
                  "model.optimizer.lr=5e-3", "data.target=U0", "data.standardize=true")
    frame = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    epoch_loss = frame["train/loss_epoch"].dropna().to_numpy()
    assert len(epoch_loss) == 15 and epoch_loss[-3:].mean() < 0.5 * epoch_loss[:2].mean()
    assert all(g < 1.0 for g in results["final"]["gamma"])  # the constraint pulls γ from 1
    assert results["metric_unit"] == "eV" and "test_meV" in results["modes"]["relaxed"]


def test_failed_download_is_one_clear_error_and_leaves_nothing(tmp_path):
    missing = (tmp_path / "nowhere" / "qm9_v3.zip").as_uri()
    proc = run_train_py("experiment=qm9_schnet", f"data.url={missing}", "logger=none",
                     f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'out'}",
                     cwd=tmp_path)
    assert proc.returncode == 1
    assert "error: Could not download" in proc.stderr and missing in proc.stderr
    assert "data.url=file:///" in proc.stderr  # says how to use a manually downloaded archive
    assert 'data.source=qm9pack' in proc.stderr and 'pip install -e ".[qm9pack]"' in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
