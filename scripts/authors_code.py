"""Run the authors' own code (andreimano/ACE) beside ours, for speed comparisons in one run.

Nothing of theirs lives in this repository: every function takes the folder of a checkout made
outside it, e.g.::

    mkdir -p /tmp/ace_authors && git --git-dir=<mirror of andreimano/ACE> archive HEAD \\
        EGNO Steerable-E3-GNN ':(exclude)EGNO/motion/dataset' | tar -x -C /tmp/ace_authors

and imports their modules from there at run time (``authors_dir`` may be the checkout root or its
``EGNO/`` / ``Steerable-E3-GNN/`` folder). What runs is their code; this module only builds what
their ``main`` scripts build (model, optimizers, λ, data loaders) with their README settings and
calls their training functions:

* **EGNO × CMU MoCap Run** — their ``main_mocap_no.train_epoch`` (forward, their loss, their
  constraint term and λ gradient, backward, ``clip_grad_norm_(…, 1.0)``, Adam, dual Adam) on
  their ``MotionDynamicsDataset`` + ``DataLoader`` (batch 12, shuffle, drop_last, 0 workers, as
  their ``run_once``) built over our ``data/mocap`` files (the same published pickles; their hash
  is checked first). Settings: ``configs/config_mocap_no.json`` (6 layers, 128 hidden, 2 modes,
  T = 5, lr 5e-4, weight decay 1e-10, 200 samples), case ``run``; constrained = their README
  command (``--disable_equi 1 --use_constrained 1 --lr_dual 2e-4``) with ``--resilience 0``
  (equality, our ``mocap_egno_ace``) unless ``resilience=1`` is asked for, and without
  ``--log_transform_variance`` (a diagnostic that runs 4 more forward passes per step).
* **SEGNN × N-body** — their ``nbody.train_nbody.run_epoch`` (their ``prepare_graph`` /
  ``O3Transform``, forward, MSE, slacks, Lagrangian, backward, Adam, dual Adam) on their
  ``NBodyDataset`` (its ``preprocess`` and ``__getitem__``: frames 30 → 40, ``nbody_small``)
  filled from our generated ``data/nbody`` arrays, in a ``DataLoader`` with batch 100, shuffle,
  drop_last and **0 workers** (their ``train`` hard-codes 8; ``cpu_anchors.md`` times 0).
  Settings: their N-body ACE README command (``--max_samples 3000 --norm none --lr 9e-4
  --dual_lr 8e-4 --disable_equivariance 1 --use_constrained 1 --resilience 0``, with main.py's
  defaults: 4 layers, 64 hidden features, l_max 1, weight-balanced irreps, batch 100); vanilla =
  the same command with ``--disable_equivariance 0 --use_constrained 0`` (their README's
  baseline instruction).

Shims (no arithmetic changes): ``pytorch3d.transforms`` (``Rotate``, ``random_rotations``) is
imported by their training scripts but used only by diagnostics that stay off here; where it is
not installed a stub that raises is put in its place. ``torch_scatter`` (one ``scatter(…,
reduce="mean")`` in their ``O3Transform``) is replaced, when not installed, by PyG's
``torch_geometric.utils.scatter``, the same reduction. ``wandb`` is imported but never called.

API
---
* :func:`authors_egno` → :class:`AuthorsEGNO` (``.step(batch)``, ``.epoch()``, ``.loader``,
  ``.model``, ``.num_parameters``); :func:`egno_batch_from_ours` converts one of our MoCap batches
  into their input list.
* :func:`authors_segnn` → :class:`AuthorsSEGNN` (``.step(batch)``, ``.epoch()``, ``.loader``);
  :func:`authors_nbody_epoch_seconds` is the one-call wrapper for ``bench_training.py``.

Every ``epoch()`` / ``step()`` returns their training loss (the value their loop reports) and is
what a round-robin timer calls. ``python scripts/authors_code.py --authors-dir /tmp/ace_authors``
runs a sanity check: the loss of a few of their steps on one batch decreases.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import io
import shutil
import sys
import tempfile
import time
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

#: top-level module names of the authors' two code bases, kept out of ``sys.modules`` except
#: while their code runs (:class:`_CodeBase`)
_THEIR_TOP_LEVEL = ("model", "models", "motion", "utils", "nbody", "main_mocap_no", "qm9",
                    "md17", "mdanalysis", "simulation")

EGNO_SETTINGS = {  # configs/config_mocap_no.json, case "run" (the paper's MoCap Run)
    "case": "run", "batch_size": 12, "max_training_samples": 200, "delta_frame": 30,
    "num_timesteps": 5, "lr": 5e-4, "weight_decay": 1e-10, "nf": 128, "n_layers": 6,
    "time_emb_dim": 32, "num_modes": 2,
}
#: their ACE README command: --disable_equi 1 --use_constrained 1 --lr_dual 0.0002 (resilience: see
#: :func:`authors_egno`); --log_transform_variance and wandb off (diagnostics / logging)
EGNO_ACE_SETTINGS = {"disable_equi": 1, "use_constrained": 1, "lr_dual": 2e-4,
                     "log_transform_variance": 0, "use_wandb": 0}
EGNO_VANILLA_SETTINGS = {"disable_equi": 0, "use_constrained": 0, "log_transform_variance": 0,
                         "use_wandb": 0}

#: Steerable-E3-GNN/README.md, N-body ACE command, on main.py's defaults
SEGNN_SETTINGS = {
    "dataset": "nbody", "nbody_name": "nbody_small", "max_samples": 3000, "batch_size": 100,
    "norm": "none", "optimizer": "adam", "lr": 9e-4, "dual_lr": 8e-4, "weight_decay": 0.0,
    "auglag_const": 0.0, "resilience": 0, "rho": 1, "epsilon": 0.0, "log_equivariance_metric": 0,
    "train_augments": 0, "time_exp": False, "model": "segnn", "hidden_features": 64, "lmax_h": 1,
    "lmax_attr": 1, "subspace_type": "weightbalanced", "layers": 4, "pool": "avg",
    "target": "pos", "log": False, "wandb_log": False, "gpus": 0,
}


# ----------------------------------------------------------------------------- importing theirs
def _code_dir(authors_dir: str | Path, sub: str, marker: str) -> Path:
    """``authors_dir`` itself or its ``sub`` folder, whichever holds ``marker``."""
    base = Path(authors_dir).expanduser().resolve()
    for cand in (base / sub, base):
        if (cand / marker).exists():
            if ROOT in cand.parents or cand == ROOT:
                raise ValueError(f"{cand} lies inside this repository; the authors' code must be "
                                 f"run from a checkout outside it")
            return cand
    raise FileNotFoundError(f"no {sub}/{marker} under {base}: pass the folder of an "
                            f"andreimano/ACE checkout (or its {sub}/ folder)")


def _stub_module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    mod.__file__ = f"<stub of {name} made by scripts/authors_code.py>"
    return mod


def _missing(module: str) -> bool:
    try:
        importlib.import_module(module)
        return False
    except ImportError:
        return True


def _shims() -> dict[str, types.ModuleType]:
    """Stand-ins for imports of theirs that are absent here (see the module docstring)."""
    shims: dict[str, types.ModuleType] = {}
    if _missing("pytorch3d.transforms"):
        def unavailable(*_a, **_k):
            raise RuntimeError("pytorch3d is not installed: only their rotation diagnostics use "
                               "it (log_transform_variance / train_augments / "
                               "log_equivariance_metric), which the benchmarks leave off")
        transforms = _stub_module("pytorch3d.transforms", Rotate=unavailable,
                                  random_rotations=unavailable)
        shims["pytorch3d"] = _stub_module("pytorch3d", transforms=transforms)
        shims["pytorch3d.transforms"] = transforms
    if _missing("torch_scatter"):
        from torch_geometric.utils import scatter
        shims["torch_scatter"] = _stub_module("torch_scatter", scatter=scatter)
    if _missing("wandb"):
        noop = lambda *_a, **_k: None  # noqa: E731
        shims["wandb"] = _stub_module("wandb", init=noop, log=noop, finish=noop)
    return shims


class _CodeBase:
    """One of their code bases (a folder of top-level modules), importable in isolation.

    :meth:`active` puts the folder first on ``sys.path`` and *its* modules (and the shims) into
    ``sys.modules`` — PyG's ``MessagePassing`` looks its subclass's module up there when it is
    built — and afterwards takes them out again and restores what was there, so that EGNO's
    ``utils``/``model`` and SEGNN's ``utils``/``models`` never shadow each other or anything of
    ours. Their modules stay alive through the objects we keep.
    """

    def __init__(self, code_dir: Path) -> None:
        self.code_dir = code_dir
        self.modules: dict[str, types.ModuleType] = {}
        self.shims = _shims()

    @staticmethod
    def _owned(name: str) -> bool:
        return name.split(".")[0] in _THEIR_TOP_LEVEL

    @contextlib.contextmanager
    def active(self, argv: list[str] | None = None, quiet: bool = True) -> Iterator[None]:
        saved = {n: m for n, m in sys.modules.items() if self._owned(n)}
        for n in saved:
            del sys.modules[n]
        shims = {n: m for n, m in self.shims.items() if n not in sys.modules}
        sys.modules.update(shims)
        sys.modules.update(self.modules)
        old_argv = sys.argv
        sys.path.insert(0, str(self.code_dir))
        if argv is not None:
            sys.argv = argv
        try:
            with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
                yield
        finally:
            sys.argv = old_argv
            sys.path.remove(str(self.code_dir))
            for n in [n for n in sys.modules if self._owned(n)]:
                self.modules[n] = sys.modules.pop(n)
            for n in shims:
                sys.modules.pop(n, None)
            sys.modules.update(saved)

    def import_module(self, name: str, argv: list[str] | None = None) -> types.ModuleType:
        with self.active(argv):
            return importlib.import_module(name)


class _OneBatch:
    """A loader of one batch: their epoch functions then run exactly one training step."""

    def __init__(self, batch, dataset=None) -> None:
        self.batch, self.dataset = batch, dataset

    def __iter__(self):
        yield self.batch

    def __len__(self) -> int:
        return 1


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- EGNO × MoCap
@dataclass
class AuthorsEGNO:
    """The authors' EGNO MoCap training state: model, their optimizers and λ, their loader."""

    ace: bool
    code: _CodeBase
    main: types.ModuleType  # their main_mocap_no (train_epoch, device, loss_mse)
    args: argparse.Namespace  # their args: config_mocap_no.json + the variant's flags
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    optimizer_dual: torch.optim.Optimizer | None
    lambdas: list[torch.Tensor] | None
    loader: torch.utils.data.DataLoader
    epochs_run: int = field(default=0)

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.model)

    def _train_epoch(self, loader: Iterable) -> float:
        with self.code.active():  # their modules in place; their per-epoch print discarded
            loss, _lp, _eq = self.main.train_epoch(
                self.model, self.optimizer, self.optimizer_dual, self.lambdas, self.epochs_run,
                loader, self.args, constrained=self.args.use_constrained,
                disable_equivariance=self.args.disable_equi, current_step=self.epochs_run)
        self.epochs_run += 1
        return loss

    def epoch(self) -> float:
        """One training epoch of their loop over their DataLoader (16 steps on Run); returns
        their reported training loss (last-frame MSE, averaged over the epoch)."""
        return self._train_epoch(self.loader)

    def step(self, batch: list[torch.Tensor]) -> float:
        """One training step exactly as their loop does it, on ``batch`` (their input list,
        e.g. :func:`egno_batch_from_ours` or one item of ``self.loader``)."""
        return self._train_epoch(_OneBatch(batch))

    def first_batch(self) -> list[torch.Tensor]:
        return next(iter(self.loader))


def _import_egno(code: _CodeBase) -> types.ModuleType:
    """Their ``main_mocap_no`` (it parses ``sys.argv`` and makes its output folder on import)."""
    outf = tempfile.mkdtemp(prefix="ace_authors_egno_")
    try:
        argv = ["main_mocap_no.py", "--no-cuda", "--outf", outf, "--config_by_file",
                str(code.code_dir / "configs" / "config_mocap_no.json"), "--use_wandb", "0"]
        return code.import_module("main_mocap_no", argv)
    finally:
        shutil.rmtree(outf, ignore_errors=True)


def _check_mocap_files(data_dir: Path, case: str) -> None:
    """Their dataset unpickles the files with plain ``pickle``: check the published hashes first."""
    sys.path.insert(0, str(ROOT))
    from ace.data.mocap.files import CASE_FILES, verify_file
    for name in CASE_FILES[case]:
        verify_file(data_dir / name)


def authors_egno(authors_dir: str | Path, ace: bool, data_dir: str | Path = ROOT / "data/mocap",
                 seed: int = 1, resilience: int = 0) -> AuthorsEGNO:
    """Their EGNO, optimizers, λ and training loader, as their ``run_once`` builds them.

    ``ace``: their constrained model (``--disable_equi 1 --use_constrained 1 --lr_dual 2e-4``);
    ``resilience``: their ``--resilience`` flag (0: equality constraint γ = 0, like our
    ``mocap_egno_ace``; 1: their README example, a one-sided constraint with λ ≥ 0).
    """
    code_dir = _code_dir(authors_dir, "EGNO", "main_mocap_no.py")
    data_dir = Path(data_dir).resolve()
    _check_mocap_files(data_dir, EGNO_SETTINGS["case"])
    code = _CodeBase(code_dir)
    main = _import_egno(code)
    args = copy.deepcopy(main.args)
    for key, value in {**EGNO_SETTINGS, **(EGNO_ACE_SETTINGS if ace else EGNO_VANILLA_SETTINGS),
                       "resilience": resilience, "data_dir": str(data_dir), "seed": seed}.items():
        setattr(args, key, value)
    EGNO, dataset_cls = main.EGNO, main.MotionDataset  # noqa: N806  (bound in their main)

    # what their run_once builds, in its order (seed, data, model, optimizers, λ)
    torch.manual_seed(seed)
    np.random.seed(seed)
    with code.active():
        dataset = dataset_cls(partition="train", max_samples=args.max_training_samples,
                              data_dir=args.data_dir, delta_frame=args.delta_frame,
                              case=args.case, num_timesteps=args.num_timesteps)
        model = EGNO(n_layers=args.n_layers, in_node_nf=2, in_edge_nf=2, hidden_nf=args.nf,
                     device=main.device, with_v=True, flat=args.flat,
                     activation=torch.nn.SiLU(), use_time_conv=True, num_modes=args.num_modes,
                     num_timesteps=args.num_timesteps, time_emb_dim=args.time_emb_dim)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                                         drop_last=True, num_workers=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    optimizer_dual, lambdas = None, None
    if args.disable_equi:
        lambdas = [torch.zeros(1, dtype=torch.float, requires_grad=False).squeeze()
                   for _ in model.get_gammas()]
        if args.use_constrained:
            optimizer_dual = torch.optim.Adam(params=lambdas, lr=args.lr_dual, weight_decay=0,
                                              eps=1e-4)
    return AuthorsEGNO(ace, code, main, args, model, optimizer, optimizer_dual, lambdas, loader)


def egno_batch_from_ours(batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """One of our MoCap batches (``ace.data.mocap``: ``loc``, ``vel`` [B, 31, 3], ``target_loc``,
    ``target_vel`` [B, T, 31, 3], ``edge_index`` [2, E], ``edge_type`` [E]) as the list their
    DataLoader yields: ``loc, vel, edges [B, 2, E], edge_attr [B, E, 1], local_edges,
    local_edge_attr, Z [B, 31, 1] (= y / 10), loc_end, vel_end [B, 31, T, 3]``.

    Same samples, same edges (our edge list orders them by type first, theirs row-major; a
    permutation of the same set, which changes no sum)."""
    loc, vel = batch["loc"], batch["vel"]
    B = loc.shape[0]
    edges = batch["edge_index"].unsqueeze(0).expand(B, -1, -1).contiguous()
    edge_attr = batch["edge_type"].to(loc.dtype).view(1, -1, 1).expand(B, -1, -1).contiguous()
    local = batch["edge_type"] == 1
    local_edges = batch["edge_index"][:, local].unsqueeze(0).expand(B, -1, -1).contiguous()
    local_attr = edge_attr[:, local]
    z = loc[..., 1:2] / 10
    loc_end = batch["target_loc"].transpose(1, 2).contiguous()  # [B, N, T, 3]
    vel_end = batch["target_vel"].transpose(1, 2).contiguous()
    return [loc, vel, edges, edge_attr, local_edges, local_attr, z, loc_end, vel_end]


# ----------------------------------------------------------------------------- SEGNN × N-body
@dataclass
class AuthorsSEGNN:
    """The authors' SEGNN N-body training state, as their ``main.py`` + ``train`` build it."""

    ace: bool
    code: _CodeBase
    train_module: types.ModuleType  # their nbody.train_nbody (run_epoch, O3Transform)
    args: argparse.Namespace
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    optimizer_dual: torch.optim.Optimizer | None
    gammas: list
    lambdas: list
    us: list
    transform: object
    loader: torch.utils.data.DataLoader
    epochs_run: int = field(default=0)

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.model)

    def _run_epoch(self, loader) -> float:
        with self.code.active():  # their modules in place; their per-epoch prints discarded
            loss, _total = self.train_module.run_epoch(
                self.model, self.optimizer, self.optimizer_dual, torch.nn.MSELoss(),
                self.epochs_run, loader, self.transform, torch.device("cpu"), self.args,
                backprop=True, disable_equivariance=self.args.disable_equivariance,
                gammas=self.gammas, lambdas=self.lambdas, us=self.us, global_epoch=0,
                log_metrics_fn=None)
        self.epochs_run += 1
        return loss

    def epoch(self) -> float:
        """One training epoch of their ``run_epoch`` over the loader (30 steps for 3000
        samples); returns their reported training MSE."""
        return self._run_epoch(self.loader)

    def step(self, batch: list[torch.Tensor]) -> float:
        """One training step exactly as their ``run_epoch`` does it (including the per-epoch
        ``get_edges`` it does first), on one batch of their loader's format."""
        return self._run_epoch(_OneBatch(batch, self.loader.dataset))

    def first_batch(self) -> list[torch.Tensor]:
        return next(iter(self.loader))


def _nbody_arrays(data_dir: Path, max_samples: int) -> dict[str, np.ndarray]:
    """Our generated training arrays (layout (sim, frame, xyz, particle), the same as the EGNN
    generator that their NBodyDataset reads), first ``max_samples`` simulations."""
    cands = [data_dir] + sorted(p for p in data_dir.glob("*") if p.is_dir())
    for d in cands:
        if (d / "loc_train.npy").exists():
            out = {k: np.load(d / f"{k}_train.npy", mmap_mode="r")[:max_samples]
                   for k in ("loc", "vel", "charges")}
            charges = np.asarray(out["charges"])
            # the generator's 'edges' array: charge products q q^T (their preprocess copies its
            # off-diagonal entries into edge_attr, which SEGNN does not read)
            out["edges"] = charges @ np.swapaxes(charges, 1, 2)
            return {k: np.asarray(v) for k, v in out.items()}
    raise FileNotFoundError(f"no loc_train.npy under {data_dir}: run "
                            f"`python scripts/generate_nbody.py` first")


def authors_segnn(authors_dir: str | Path, ace: bool, data_dir: str | Path = ROOT / "data/nbody",
                  seed: int = 42, num_workers: int = 0) -> AuthorsSEGNN:
    """Their SEGNN, optimizers, λ and training loader, as their ``main.py`` and ``train`` build
    them (README N-body settings; module docstring), over our generated training data."""
    code_dir = _code_dir(authors_dir, "Steerable-E3-GNN", "nbody/train_nbody.py")
    args = argparse.Namespace(**SEGNN_SETTINGS, disable_equivariance=int(ace),
                              use_constrained=int(ace), seed=seed, num_workers=num_workers)
    code = _CodeBase(code_dir)
    train_module = code.import_module("nbody.train_nbody")
    nbody_dataset = code.import_module("nbody.dataset_nbody").NBodyDataset
    balanced = code.import_module("models.balanced_irreps")
    SEGNN = code.import_module("models.segnn.segnn").SEGNN  # noqa: N806
    from e3nn.o3 import Irreps

    # main.py, dataset "nbody"
    torch.manual_seed(seed)
    np.random.seed(seed)
    input_irreps = Irreps("2x1o + 1x0e")
    output_irreps = Irreps("1x1o")
    edge_attr_irreps = Irreps.spherical_harmonics(args.lmax_attr)
    node_attr_irreps = Irreps.spherical_harmonics(args.lmax_attr)
    additional_message_irreps = Irreps("2x0e")
    with code.active():  # (WeightBalancedIrreps prints the irreps it picks)
        hidden_irreps = balanced.WeightBalancedIrreps(
            Irreps(f"{args.hidden_features}x0e"), node_attr_irreps, sh=True, lmax=args.lmax_h)
        model = SEGNN(input_irreps, hidden_irreps, output_irreps, edge_attr_irreps,
                      node_attr_irreps, num_layers=args.layers, norm=args.norm, pool=args.pool,
                      task="node", additional_message_irreps=additional_message_irreps, args=args)

    # their NBodyDataset, filled by its own preprocess() from our arrays instead of its load()
    arrays = _nbody_arrays(Path(data_dir), args.max_samples)
    dataset = nbody_dataset.__new__(nbody_dataset)
    dataset.partition, dataset.suffix = "train", "train_charged5_initvel1small"
    dataset.dataset_name, dataset.max_samples = args.nbody_name, args.max_samples
    import warnings
    with warnings.catch_warnings():  # torch.Tensor(list of ndarrays) in their preprocess
        warnings.simplefilter("ignore", UserWarning)
        loc, vel, edge_attr, edges, charges = dataset.preprocess(
            arrays["loc"], arrays["vel"], arrays["edges"], arrays["charges"])
    dataset.data, dataset.edges = (loc, vel, edge_attr, charges), edges
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                                         drop_last=True, num_workers=num_workers)

    # their train(): optimizers and λ (resilience 0: no slack variables u)
    gammas = model.get_gammas()
    optimizer = torch.optim.Adam(list(model.parameters()), lr=args.lr,
                                 weight_decay=args.weight_decay)
    lambdas, optimizer_dual = [], None
    if args.use_constrained:
        lambdas = [torch.zeros(1, dtype=torch.float, requires_grad=False).squeeze()
                   for _ in range(len(gammas))]
        optimizer_dual = torch.optim.Adam(lambdas, lr=args.dual_lr, weight_decay=0)
    transform = train_module.O3Transform(args.lmax_attr)
    return AuthorsSEGNN(ace, code, train_module, args, model, optimizer, optimizer_dual, gammas,
                        lambdas, [], transform, loader)


def authors_nbody_epoch_seconds(authors_dir: str | Path, ace: bool,
                                data_dir: str | Path = ROOT / "data/nbody",
                                epochs: int = 3) -> list[float]:
    """Seconds of each of ``epochs`` consecutive training epochs of their SEGNN N-body loop
    (``time.perf_counter`` around their ``run_epoch``, as their ``train`` times an epoch; 0
    loader workers). Median of ``[1:]`` is the ``cpu_anchors.md`` protocol. For alternating
    with our epochs in one run, build :func:`authors_segnn` once and time ``.epoch()`` calls."""
    run = authors_segnn(authors_dir, ace, data_dir)
    seconds = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        run.epoch()
        seconds.append(time.perf_counter() - t0)
    return seconds


# ----------------------------------------------------------------------------- sanity check
def _sanity(authors_dir: Path, steps: int) -> None:
    torch.set_num_threads(torch.get_num_threads())
    for name, build in (("EGNO MoCap", authors_egno), ("SEGNN N-body", authors_segnn)):
        for ace in (False, True):
            t0 = time.perf_counter()
            run = build(authors_dir, ace)
            batch = run.first_batch()
            built = time.perf_counter() - t0
            losses, times = [], []
            for _ in range(steps):
                t0 = time.perf_counter()
                losses.append(run.step(batch))
                times.append(time.perf_counter() - t0)
            gam = ""
            if ace:
                g = (run.model.get_gammas() if hasattr(run.model, "get_gammas") else run.gammas)
                gam = f"  gamma[0] {float(g[0].detach()):.5f}"
            print(f"{name:13s} {'ACE' if ace else 'vanilla':8s} {run.num_parameters:>9,} params "
                  f"(built in {built:.1f} s)  losses "
                  + " ".join(f"{x:.4f}" for x in losses)
                  + f"  step {np.median(times[1:]):.3f} s{gam}"
                  + ("  DECREASES" if losses[-1] < losses[0] else "  DOES NOT DECREASE"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--authors-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    _sanity(args.authors_dir, args.steps)


if __name__ == "__main__":
    main()
