"""Every experiment config composes and instantiates (lightning-hydra-template style)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ace.core.homotopic import count_parameters
from ace.training.pipeline import _constraint_factory
from tests.conftest import CONFIG_DIR, TINY_DATA, compose_cfg, run_train_py

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
EXPECTED = {  # experiment: (constraint class or None, train-time params, augment)
    "nbody_segnn": (None, 147_424, False),
    "nbody_segnn_ace": ("EqualityConstraint", 937_960, False),
    "nbody_segnn_ace_resilient": ("ResilientConstraint", 937_960, False),
    "nbody_segnn_ace_nupi": ("EqualityConstraint", 937_960, False),
    "nbody_segnn_aug": (None, 937_960, True),
    "nbody_segnn_rel": (None, 344_032, True),
    "mocap_egno": (None, 1_192_684, False),
    "mocap_egno_ace": ("EqualityConstraint", 1_304_762, False),
    "mocap_egno_ace_resilient": ("ResilientConstraint", 1_304_762, False),
    "mocap_egno_ace_onesided": ("OneSidedConstraint", 1_304_762, False),
    "mocap_egno_ace_nupi": ("EqualityConstraint", 1_304_762, False),
    "qm9_schnet": (None, 127_553, False),
    "qm9_schnet_ace": ("EqualityConstraint", 153_543, False),
    "qm9_segnn": (None, 1_033_525, False),
    "qm9_segnn_ace": ("EqualityConstraint", 9_869_667, False),
    # ModelNet40 rotates every training cloud (experiments.md §5.1): a training transform
    "modelnet40_vndgcnn": (None, 2_899_830, True),
    "modelnet40_vndgcnn_ace": ("EqualityConstraint", 8_831_612, True),
    "modelnet40_vndgcnn_ace_resilient": ("ResilientConstraint", 8_831_612, True),
}
# data overrides that make each family's data module cheap (instantiation touches no files)
FAMILY_DATA = {"nbody": TINY_DATA, "qm9": [], "mocap": [], "modelnet40": []}


def test_every_experiment_is_known():
    assert set(EXPECTED) == set(EXPERIMENTS)
    assert {e.split("_")[0] for e in EXPERIMENTS} <= set(FAMILY_DATA)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_instantiates(experiment, tmp_path, data_dir):
    family_data = FAMILY_DATA[experiment.split("_")[0]]
    cfg = compose_cfg(
        [f"experiment={experiment}", "seed=0", f"paths.data_dir={data_dir}", *family_data], tmp_path
    )
    assert cfg.seed == 0 and cfg.name == experiment
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.model, task=datamodule.task, constraint=_constraint_factory(cfg))
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    assert trainer.max_epochs == cfg.trainer.max_epochs
    if experiment in EXPECTED:
        constraint, params, augment = EXPECTED[experiment]
        assert count_parameters(module.net) == params
        assert type(module.constraint).__name__ == (constraint or "NoneType")
        assert (getattr(datamodule, "train_transform", None) is not None) is augment


def test_paper_hyperparameters_of_the_ace_run(tmp_path):
    cfg = compose_cfg(["experiment=nbody_segnn_ace"], tmp_path)
    assert cfg.model.optimizer.lr == 9e-4 and cfg.constraint.dual_lr == 8e-4
    assert cfg.constraint.dual_optimizer == "adam"  # what the authors ran (Table 4 tuned under it)
    assert cfg.data.batch_size == 100 and cfg.data.max_samples == 3000
    assert cfg.trainer.max_epochs == 2000 and cfg.trainer.check_val_every_n_epoch == 5


def test_settings_of_the_segnn_rel_baseline(tmp_path):
    """experiments.md §6.3: penalty weight 0.01, triangle schedule, SEGNN recipe, training
    rotations only."""
    cfg = compose_cfg(["experiment=nbody_segnn_rel", "callbacks=none"], tmp_path)
    assert cfg.model.net.relaxation and not cfg.model.net.ace_branches
    assert cfg.model.regularizer.weight == 0.01 and cfg.callbacks.relaxation.schedule == "triangle"
    assert cfg.model.optimizer.lr == 5e-4 and cfg.model.optimizer.weight_decay == 1e-12
    assert cfg.trainer.max_epochs == 2000 and _constraint_factory(cfg) is None
    assert cfg.data.train_transform is not None and cfg.data.eval_transform is None


def test_paper_settings_of_the_qm9_experiments(tmp_path):
    schnet = compose_cfg(["experiment=qm9_schnet_ace", "seed=7"], tmp_path)
    assert schnet.data.split == "random" and schnet.data.split_seed == 7  # one split per seed
    assert not schnet.data.standardize and schnet.data.batch_size == 256
    assert schnet.model.scheduler is None and schnet.constraint.dual_optimizer == "adam"
    segnn = compose_cfg(["experiment=qm9_segnn_ace", "trainer.max_epochs=50"], tmp_path)
    assert segnn.data.split == "cormorant" and segnn.data.standardize
    assert segnn.data.batch_size == 128 and segnn.model.optimizer.weight_decay == 1e-8
    scheduler = instantiate(segnn.model.scheduler)(torch.optim.SGD([torch.zeros(1)], lr=1.0))
    assert sorted(scheduler.milestones) == [40, 45] and scheduler.gamma == 0.1


def test_paper_settings_of_the_mocap_experiments(tmp_path):
    """Official config_mocap_no.json and README command (experiments.md §4.3)."""
    for experiment in ("mocap_egno", "mocap_egno_ace", "mocap_egno_ace_resilient",
                       "mocap_egno_ace_onesided"):
        cfg = compose_cfg([f"experiment={experiment}"], tmp_path)
        assert cfg.data.batch_size == 12 and cfg.data.case == "run" and cfg.data.drop_last
        assert cfg.data.delta_frame == 30 and cfg.model.net.num_timesteps == 5
        assert cfg.trainer.max_epochs == 3000 and cfg.trainer.check_val_every_n_epoch == 5
        assert cfg.model.optimizer.lr == 5e-4 and cfg.model.optimizer.weight_decay == 1e-10
        assert cfg.model.grad_clip_norm == 1.0
        if experiment != "mocap_egno":
            assert cfg.constraint.dual_optimizer == "adam" and cfg.constraint.dual_adam_eps == 1e-4
            assert cfg.constraint.dual_lr == 2e-4
    walk = compose_cfg(["experiment=mocap_egno", "data.case=walk"], tmp_path)
    assert instantiate(walk.data).case == "walk"


def test_paper_settings_of_the_modelnet40_experiments(tmp_path):
    """ACE README run (experiments.md §5.5): 300 points, batch 32, 250 epochs, SGD lr 0.1 with
    momentum 0 and no weight decay, no scheduler, SGD dual lr 1e-4, label smoothing 0.2, k = 20;
    and the noisy variant through data.point_dropout=true on training and evaluation clouds."""
    from ace.data.modelnet40.transforms import RandomPointDropout
    from ace.data.transforms import Compose, RandomGroupAction

    for experiment in ("modelnet40_vndgcnn", "modelnet40_vndgcnn_ace",
                       "modelnet40_vndgcnn_ace_resilient"):
        cfg = compose_cfg([f"experiment={experiment}"], tmp_path)
        assert cfg.data.num_points == 300 and cfg.data.batch_size == 32
        assert cfg.data.label_smoothing == 0.2 and cfg.model.net.k == 20
        assert cfg.trainer.max_epochs == 250 and cfg.model.scheduler is None
        assert cfg.model.optimizer._target_ == "torch.optim.SGD"
        assert cfg.model.optimizer.lr == 0.1 and cfg.model.optimizer.momentum == 0.0
        assert cfg.model.optimizer.weight_decay == 0.0 and cfg.test_last
        if experiment != "modelnet40_vndgcnn":
            assert cfg.constraint.dual_optimizer == "sgd" and cfg.constraint.dual_lr == 1e-4
        dm = instantiate(cfg.data)
        assert isinstance(dm.train_transform, RandomGroupAction)
        assert isinstance(dm.eval_transform, RandomGroupAction)
    noisy = instantiate(compose_cfg(["experiment=modelnet40_vndgcnn_ace", "data.point_dropout=true"],
                                    tmp_path).data)
    for transform in (noisy.train_transform, noisy.eval_transform):
        assert isinstance(transform, Compose)
        assert [type(t) for t in transform.transforms] == [RandomGroupAction, RandomPointDropout]


@pytest.mark.parametrize("target", ["mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U",
                                    "H", "G", "cv"])
def test_every_qm9_target_is_selectable_by_name(target, tmp_path):
    cfg = compose_cfg(["experiment=qm9_schnet", f"data.target={target}"], tmp_path)
    datamodule = instantiate(cfg.data)
    order = ["mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "cv"]
    assert datamodule.task.target_index == order.index(target)


GRIDS = {  # Table 4 rows: primal lr, dual lr (ACE only)
    "qm9": ("5e-5,5e-4,5e-3,1e-2", "5e-4,1e-2,1e-1"),
    "mocap": ("5e-4,1e-3", "5e-5,2e-4,1e-2"),
    "nbody": ("5e-4,8e-4,9e-4,1e-3,5e-3", "5e-5,1e-4,8e-4"),
}


@pytest.mark.parametrize(
    "search, experiment, sizes",
    [("qm9_grid", "qm9_schnet_ace", (4, 3, 5)), ("qm9_grid_vanilla", "qm9_segnn", (4, 5)),
     ("mocap_grid", "mocap_egno_ace_resilient", (2, 3, 3)),
     ("mocap_grid_vanilla", "mocap_egno", (2, 3)),
     ("nbody_grid", "nbody_segnn_ace", (5, 3, 5)), ("nbody_grid_vanilla", "nbody_segnn", (5, 5)),
     ("nbody_grid_vanilla", "nbody_segnn_rel", (5, 5))],
)
def test_sweep_configs_hold_the_table4_grid(search, experiment, sizes, tmp_path):
    cfg = compose_cfg([f"experiment={experiment}", f"hparams_search={search}"], tmp_path)
    params = cfg.hydra.sweeper.params
    assert tuple(len(str(v).split(",")) for v in params.values()) == sizes
    primal, dual = GRIDS[search.split("_")[0]]
    assert params["model.optimizer.lr"] == primal
    if "constraint.dual_lr" in params:
        assert params["constraint.dual_lr"] == dual
    for key in params:  # every swept key exists in the composed config
        assert OmegaConf.select(cfg, key) is not None, key


def test_default_experiment_is_nbody_segnn_ace(tmp_path):
    assert compose_cfg([], tmp_path).name == "nbody_segnn_ace"


def test_overrides_reach_the_objects(tmp_path, data_dir):
    cfg = compose_cfg(
        ["experiment=nbody_segnn_ace", "constraint.dual_lr=5e-5", "constraint.dual_optimizer=sgd",
         "trainer.max_epochs=7", "data.max_samples=30", f"paths.data_dir={data_dir}", *TINY_DATA[:3]],
        tmp_path,
    )
    constraint = _constraint_factory(cfg)(num_constraints=8)
    assert constraint.dual_lr == 5e-5 and constraint.dual_optimizer_name == "sgd"
    assert instantiate(cfg.data).max_samples == 30


def test_unknown_experiment_is_a_composition_error(tmp_path):
    with pytest.raises(ConfigCompositionException, match="does_not_exist"):
        compose_cfg(["experiment=does_not_exist"], tmp_path)


@pytest.mark.parametrize("debug", sorted(p.stem for p in (CONFIG_DIR / "debug").glob("*.yaml")))
def test_debug_configs_compose(debug, tmp_path):
    assert compose_cfg([f"debug={debug}"], tmp_path).trainer.max_epochs >= 1


def test_outputs_go_under_outputs_experiment(tmp_path):
    cfg = compose_cfg(["experiment=nbody_segnn"], tmp_path)
    assert Path(cfg.hydra.run.dir).parts[-3:-1] == ("outputs", "nbody_segnn")
    assert Path(cfg.hydra.sweep.dir).parts[-4:-1] == ("outputs", "nbody_segnn", "multirun")


def test_seed_must_be_an_integer(tmp_path):
    from ace.training.pipeline import train

    with pytest.raises(ValueError, match="seed must be an integer"):
        train(compose_cfg(["seed=null", "logger=none"], tmp_path))


def test_nbody_grid_is_the_default_experiments_sweep(tmp_path):
    cfg = compose_cfg(["hparams_search=nbody_grid"], tmp_path)
    assert cfg.name == "nbody_segnn_ace" and cfg.hydra.sweeper.params["seed"] == "42,43,44,45,46"


def test_sample_efficiency_sweep_composes_for_both_experiments(tmp_path):
    cfg = compose_cfg(["hparams_search=nbody_sample_efficiency"], tmp_path)
    params = cfg.hydra.sweeper.params
    assert params["experiment"] == "nbody_segnn,nbody_segnn_ace"
    assert [int(v) for v in params["data.max_samples"].split(",")] == [1000, 3000, 5000, 7000, 9000]
    assert "sample_efficiency" in cfg.hydra.sweep.dir
    for experiment in params["experiment"].split(","):  # each job keeps its experiment's name
        job = compose_cfg(["hparams_search=nbody_sample_efficiency", f"experiment={experiment}",
                           "data.max_samples=5000"], tmp_path)
        assert job.name == experiment and job.data.max_samples == 5000


def test_slurm_launcher_composes_with_all_its_settings(tmp_path):
    cfg = compose_cfg(["launcher=slurm", "hparams_search=nbody_grid", "trainer=gpu",
                       "hydra.launcher.partition=gpu", "hydra.launcher.account=proj",
                       "hydra.launcher.qos=high", "hydra.launcher.gpus_per_node=4",
                       "hydra.launcher.tasks_per_node=4", "hydra.launcher.timeout_min=120",
                       "hydra.launcher.mem_gb=64", "hydra.launcher.cpus_per_task=6",
                       "+hydra.launcher.additional_parameters.mail-type=END"], tmp_path)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.account, launcher.qos) == ("gpu", "proj", "high")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.timeout_min) == (4, 4, 120)
    assert (launcher.mem_gb, launcher.cpus_per_task) == (64, 6)
    assert launcher.additional_parameters["mail-type"] == "END"
    assert launcher.submitit_folder.endswith(".submitit/%j")
    assert cfg.trainer.accelerator == "gpu"


@pytest.mark.parametrize("launcher, target", [
    ("basic", "BasicLauncher"), ("local_parallel", "JoblibLauncher"),
    ("submitit_local", "submitit_launcher.LocalLauncher"),
])
def test_local_launchers_compose(launcher, target, tmp_path):
    cfg = compose_cfg([f"launcher={launcher}"], tmp_path)
    assert cfg.hydra.launcher._target_.endswith(target)
    if launcher == "local_parallel":
        assert cfg.hydra.launcher.n_jobs == 2 and cfg.num_threads == 1


def test_ddp_trainer_composes_and_instantiates_on_cpu(tmp_path):
    cfg = compose_cfg(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"], tmp_path)
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.sync_batchnorm is True  # BatchNorm over the global batch
    assert cfg.trainer.use_distributed_sampler is False  # EpochShuffleSampler shards by rank
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.world_size == 2 and type(trainer.strategy).__name__ == "DDPStrategy"


# ---------------------------------------------------------------------------------------------
# debug=smoke: every experiment, offline, through train.py
# ---------------------------------------------------------------------------------------------
# Each smoke run is a fresh process: ~7-12 s on 2 idle cores, most of it imports and the test
# phase. The default suite runs one per model, covering every data set, the vanilla, equality,
# resilient and augmented code paths; the rest (same data and models, other settings) are slow.
SMOKE_FAST = {"nbody_segnn_ace", "nbody_segnn_aug", "qm9_schnet", "qm9_segnn_ace",
              "mocap_egno_ace_resilient"}


@pytest.mark.parametrize(
    "experiment",
    [e if e in SMOKE_FAST else pytest.param(e, marks=pytest.mark.slow) for e in EXPERIMENTS],
)
def test_every_experiment_runs_offline_under_debug_smoke(experiment, tmp_path, monkeypatch):
    """``python train.py experiment=<e> debug=smoke`` end to end, with any network access made to
    fail (a dead proxy): N-body generates its tiny set, QM9 serves its tiny archive through the
    real download path from the run directory, MoCap writes its synthetic skeleton there."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proc = run_train_py(f"experiment={experiment}", "debug=smoke",
                        f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'out'}",
                        "trainer.enable_progress_bar=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run_dir,) = (tmp_path / "out" / experiment).iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["name"] == experiment
    assert results["epochs"] == 2 and "eq" in results["modes"]
    family = experiment.split("_")[0]
    if family == "nbody":
        assert (tmp_path / "data" / "nbody").is_dir()
    elif family == "modelnet40":  # synthetic clouds, made in memory: no files at all
        assert not (tmp_path / "data").exists()
        modes = ("eq", "relaxed") if "_ace" in experiment else ("eq",)  # vanilla: f_eq only
        assert ("relaxed" in results["modes"]) == ("_ace" in experiment)
        for mode in modes:
            assert set(results["modes"][mode]["metrics"]) == {"instance_acc", "class_acc"}
    else:  # QM9 and MoCap smoke data live in the run directory, never in paths.data_dir
        assert (run_dir / "smoke_data" / family).is_dir() and not (tmp_path / "data").exists()


def test_synthetic_mocap_goes_through_the_real_loader_with_its_own_hashes(tmp_path):
    from ace.data.errors import DataIntegrityError
    from ace.data.mocap import MoCapDataModule, load_case
    from ace.data.mocap.synthetic import MANIFEST, synthetic_sha1, write_synthetic_case

    paths = write_synthetic_case(tmp_path / "mocap")
    assert [p.name for p in paths] == ["motion_run.pkl", "split_run.pkl"]
    assert (tmp_path / "mocap" / MANIFEST).is_file()
    with pytest.raises(DataIntegrityError, match="SHA-1"):  # never taken for the real files
        load_case(tmp_path / "mocap", "run")
    edges, X, splits = load_case(tmp_path / "mocap", "run",
                                 expected_sha1=synthetic_sha1(tmp_path / "mocap"))
    assert len(edges) == 30 and all(x.shape[1:] == (31, 3) for x in X) and len(splits) == 3
    dm = MoCapDataModule(data_dir=str(tmp_path / "mocap"), source="synthetic",
                         max_samples_train=24, max_samples_eval=24)
    dm.prepare_data()
    dm.setup()
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 24, "val": 24, "test": 24}
    assert dm.graph["edge_index"].shape == (2, 130)  # 60 one-hop + 70 two-hop, as the real skeleton
    batch = next(iter(dm.train_dataloader()))
    assert batch["loc"].shape == (12, 31, 3) and batch["target_loc"].shape == (12, 5, 31, 3)
    (tmp_path / "mocap" / "motion_run.pkl").write_bytes(b"tampered")
    with pytest.raises(DataIntegrityError, match="SHA-1"):  # its own hashes are checked as strictly
        MoCapDataModule(data_dir=str(tmp_path / "mocap"), source="synthetic").setup()


def test_synthetic_mocap_never_overwrites_other_files(tmp_path):
    from ace.data.errors import DataIntegrityError
    from ace.data.mocap.synthetic import write_synthetic_case

    (tmp_path / "motion_run.pkl").write_bytes(b"the real data")
    with pytest.raises(DataIntegrityError, match="refusing to overwrite"):
        write_synthetic_case(tmp_path)
    assert (tmp_path / "motion_run.pkl").read_bytes() == b"the real data"


def test_gamma_lr_is_recorded_in_the_run_hparams(tmp_path):
    from ace.utils.run_info import run_hparams

    plain = run_hparams(compose_cfg(["experiment=nbody_segnn_ace"], tmp_path))
    own = run_hparams(compose_cfg(["experiment=nbody_segnn_ace", "model.gamma_lr=2e-3"], tmp_path))
    assert "gamma_lr" not in plain and own["gamma_lr"] == 2e-3


@pytest.mark.parametrize("experiment", ["nbody_segnn_ace_nupi", "mocap_egno_ace_nupi"])
def test_recommended_nupi_configs_change_only_the_dual_update(experiment, tmp_path):
    """The issue-16 configs are their paper row with a nuPI dual (and, on MoCap, γ's own lr)."""
    base = compose_cfg([f"experiment={experiment.removesuffix('_nupi')}"], tmp_path)
    ours = compose_cfg([f"experiment={experiment}"], tmp_path)
    assert OmegaConf.to_container(ours.constraint) == {
        **OmegaConf.to_container(base.constraint), "dual_optimizer": "nupi", "dual_lr": 1.0,
        "dual_kp": 30.0, "dual_ki": 1e-3, "dual_ema_nu": 0.0}
    assert ours.model.gamma_lr == 2e-3 and base.model.gamma_lr is None
    for key in ("data", "trainer"):
        assert OmegaConf.to_container(ours[key]) == OmegaConf.to_container(base[key])
    assert OmegaConf.to_container(ours.model.optimizer) == OmegaConf.to_container(base.model.optimizer)
