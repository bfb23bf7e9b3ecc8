"""Scale-out: DDP sharding and replicated duals, and the submitit launcher on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ace.data.samplers import EpochShuffleSampler
from tests.conftest import TINY_DATA
from tests.conftest import run_train_py as _train_py

FAST = [*TINY_DATA, "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=1",
        "trainer.enable_progress_bar=false", "model.eq_error_samples=1", "logger=csv"]


def test_sampler_shards_one_permutation_across_ranks(monkeypatch):
    sampler = EpochShuffleSampler(10, seed=3)
    sampler.set_epoch(2)
    whole = list(sampler)
    shards = []
    for rank in range(3):
        monkeypatch.setattr(EpochShuffleSampler, "_rank_world", staticmethod(lambda r=rank: (r, 3)))
        assert len(sampler) == 3
        shards.append(list(sampler))
    assert shards == [whole[r::3][:3] for r in range(3)]  # disjoint, equal length, same epoch order
    assert len(set(sum(shards, []))) == 9
    sampler.set_epoch(3)
    assert list(sampler) != shards[-1]  # a new shard every epoch


@pytest.mark.slow
def test_two_process_cpu_ddp_keeps_gamma_and_lambda_identical(tmp_path):
    run_dir = tmp_path / "run"
    proc = _train_py(
        "experiment=nbody_segnn_ace", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        "constraint.dual_lr=1e-2", f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={run_dir}",
        *FAST, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((run_dir / "results.json").read_text())
    replicas = results["replicas"]
    assert replicas["world_size"] == 2 and replicas["max_abs_diff"] == 0.0
    assert replicas["gamma"][0] == replicas["gamma"][1] and replicas["lambda"][0] == replicas["lambda"][1]
    assert any(abs(v) > 1e-4 for v in replicas["lambda"][0])  # the duals moved, identically
    assert replicas["gamma"][0] == pytest.approx(results["final"]["gamma"])
    # 40 training samples sharded over 2 ranks, batch 10 per rank: 2 steps per epoch (not 4)
    assert results["global_step"] == 2 * 2 and "eq" in results["modes"]


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_two_job_sweep(tmp_path):
    proc = _train_py(
        "-m", "launcher=submitit_local", "experiment=nbody_segnn_ace", "seed=1,2",
        f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'out'}", *FAST, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (sweep,) = (tmp_path / "out" / "nbody_segnn_ace" / "multirun").iterdir()
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]
    assert [r["seed"] for r in records] == [1, 2] and all(r["status"] == "completed" for r in records)
    assert list((sweep / ".submitit").glob("*/*_log.out"))  # ran through submitit's executor


def test_ddp_inside_a_local_multirun_is_refused_with_the_way_out(tmp_path):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict

    from ace.training.pipeline import train
    from tests.conftest import compose_cfg

    cfg = compose_cfg(["trainer=ddp", "trainer.accelerator=cpu"], tmp_path)
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig.instance().set_config(cfg)
    with pytest.raises(ValueError, match="launcher=slurm"):
        train(cfg)
