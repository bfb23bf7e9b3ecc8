"""What a user sees: no advertising or third-party deprecation noise, and a closing summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT, TINY_DATA


def test_a_run_prints_no_tips_or_deprecations_and_ends_with_a_summary(tmp_path, data_dir):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "WANDB_MODE")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "experiment=nbody_segnn_ace",
         f"paths.data_dir={data_dir}", *TINY_DATA, "trainer.max_epochs=1",
         "trainer.check_val_every_n_epoch=1", f"hydra.run.dir={tmp_path}", "logger=default",
         "trainer.enable_progress_bar=false", "model.eq_error_samples=1"],
        cwd=tmp_path, env={**env, "WANDB_SILENT": "false"}, capture_output=True, text=True,
        timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for noise in ("💡 Tip", "litlogger", "litmodels", "anonymous setting", "DeprecationWarning",
                  "FutureWarning", "is deprecated", "will override existing callbacks"):
        assert noise not in out, noise
    results = json.loads((tmp_path / "results.json").read_text())
    assert "mse (lower is better), each mode at its own best-validation checkpoint" in out
    for label in ("f_eq ", "f_eq + γ f_neq "):
        assert label in out
    assert f"test {results['modes']['eq']['test']:.6g}" in out
    gamma = max(abs(g) for g in results["final"]["gamma"])
    assert f"final max |γ| = {gamma:.3g} over 8 branches" in out
    assert f"run directory: {tmp_path}" in out
