"""The paper's figures from logged runs (CSV metrics + results.json), as PNG and PDF.

* :func:`plot_traces` — γ_i and λ_i per layer over training (Figs. 6, 8–11), slacks u_i (Fig. 5);
* :func:`plot_equivariance` — equivariance error of f_eq + γ f_neq over epochs (Fig. 4);
* :func:`plot_val_curves` — validation metric over epochs, vanilla vs ACE (Fig. 2 left);
* :func:`plot_sample_efficiency` — test metric versus training-set size (Fig. 2 right);
* :func:`plot_gamma_by_dual` — max_i |γ_i| over training, one colour per dual update (nuPI gains,
  Adam, penalty), for experiments run with several.

Runs are directories holding ``csv/metrics.csv`` (``logger=csv`` or the default logger) and/or
``results.json``. Curves of several seeds of one experiment are drawn as mean with a min–max band.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ace.reproduction.aggregate import load_results, mean_std  # noqa: E402
from ace.utils.direction import best  # noqa: E402

LAYER = re.compile(r"^ace/(gamma|lambda|u)/layer_(\d+)$")


class RunLog:
    """One run directory: its metrics frame (may be empty) and results.json (may be empty)."""

    def __init__(self, path: Path):
        self.path = path
        csv = path / "csv" / "metrics.csv"
        self.metrics = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
        results = path / "results.json"
        self.results: dict[str, Any] = load_results(results) if results.exists() else {}
        if self.results.get("name"):
            self.name = str(self.results["name"])
        else:
            self.name = path.parent.name if path.name.startswith("seed") else path.name

    @property
    def metric(self) -> str | None:
        """The primary metric (results.json), else the first ``val/<metric>/eq`` column."""
        if self.results.get("metric"):
            return str(self.results["metric"])
        cols = [c for c in self.metrics.columns if c.startswith("val/") and c.endswith("/eq")]
        return cols[0].split("/")[1] if cols else None

    @property
    def direction(self) -> str:
        return str(self.results.get("metric_direction", "min"))

    @property
    def eq_val(self) -> float:
        """f_eq's validation value at its best checkpoint (NaN when unknown)."""
        return float(((self.results.get("modes") or {}).get("eq") or {}).get("val", np.nan))

    def series(self, column: str, x: str = "step") -> pd.DataFrame:
        if column not in self.metrics.columns:
            return pd.DataFrame(columns=[x, column])
        return self.metrics[[x, column]].dropna().groupby(x, as_index=False).last()


def find_run_dirs(paths: list[str | Path]) -> list[RunLog]:
    dirs: set[Path] = set()
    for root in map(Path, paths):
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist: pass a run or sweep directory")
        for marker in list(root.rglob("metrics.csv")) + list(root.rglob("results.json")):
            dirs.add(marker.parent.parent if marker.name == "metrics.csv" else marker.parent)
    return [RunLog(d) for d in sorted(dirs)]


def _save(fig, out: Path, stem: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.tight_layout()
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths


def plot_traces(run: RunLog, out: Path, stem: str) -> list[Path]:
    """γ_i and λ_i per layer against the training step; u_i too for resilient runs."""
    layers: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for col in run.metrics.columns:
        m = LAYER.match(col)
        if m:
            layers[m.group(1)].append((int(m.group(2)), col))
    if not layers:
        return []
    kinds = [k for k in ("gamma", "lambda", "u") if k in layers]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.4), squeeze=False)
    symbol = {"gamma": "γ", "lambda": "λ", "u": "u"}
    cmap = plt.get_cmap("viridis")
    for ax, kind in zip(axes[0], kinds):
        cols = sorted(layers[kind])
        for i, col in cols:
            s = run.series(col)
            ax.plot(s["step"], s[col], color=cmap(i / max(len(cols) - 1, 1)), lw=1.0, label=f"{symbol[kind]}_{i}")
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_xlabel("training step")
        ax.set_title(f"{symbol[kind]} per layer")
    if len(layers["gamma"]) <= 12:
        axes[0][0].legend(fontsize=6, ncol=2)
    seed = f", seed {run.results['seed']}" if "seed" in run.results else ""
    fig.suptitle(f"{run.name}{seed} (run {run.path.name})", fontsize=9)
    return _save(fig, out, stem)


def _grouped(runs: list[RunLog], column: str) -> dict[str, pd.DataFrame]:
    """Per experiment: columns = runs, index = epoch (one value per epoch)."""
    groups: dict[str, list[pd.Series]] = defaultdict(list)
    for run in runs:
        s = run.series(column, x="epoch")
        if len(s):
            groups[run.name].append(s.set_index("epoch")[column])
    return {name: pd.concat(series, axis=1) for name, series in groups.items()}


def _band(ax, frame: pd.DataFrame, label: str, **kw) -> None:
    x = frame.index.to_numpy()
    ax.plot(x, frame.mean(axis=1), label=f"{label} (n={frame.shape[1]})", **kw)
    if frame.shape[1] > 1:
        ax.fill_between(x, frame.min(axis=1), frame.max(axis=1), alpha=0.2, color=kw.get("color"))


def declared_metrics(runs: list[RunLog]) -> dict[str, str]:
    """``{metric: direction}`` of every metric the runs declare (results.json), primary first."""
    found: dict[str, str] = {}
    for run in runs:
        if run.metric:
            found.setdefault(run.metric, run.direction)
    for run in runs:
        declared = (run.results.get("metrics") or {}).get("declared") or {}
        for name, info in declared.items():
            found.setdefault(name, str(info.get("direction", "min")))
    return found


def plot_val_curves(runs: list[RunLog], out: Path, metric: str | None = None,
                    direction: str | None = None) -> list[Path]:
    """Validation curves of one metric (default: the primary one, into ``val_curves``; another
    into ``val_curves_<metric>``), both modes; log scale for errors (min)."""
    labelled = next((r for r in runs if r.metric), None)
    if labelled is None:
        return []
    stem = "val_curves" if metric is None or metric == labelled.metric else f"val_curves_{metric}"
    metric = metric or labelled.metric
    direction = direction or labelled.direction
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    colors = iter(plt.get_cmap("tab10").colors)
    drawn = False
    for mode, style in (("eq", "-"), ("relaxed", "--")):
        for name, frame in sorted(_grouped(runs, f"val/{metric}/{mode}").items()):
            if mode == "relaxed" and frame.isna().all().all():
                continue
            label = f"{name} f_eq" if mode == "eq" else f"{name} f_eq+γf_neq"
            _band(ax, frame, label, color=next(colors), ls=style)
            drawn = True
    if not drawn:
        plt.close(fig)
        return []
    if direction == "min":
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric} ({'lower' if direction == 'min' else 'higher'} is better)")
    ax.legend(fontsize=7)
    return _save(fig, out, stem)


def plot_equivariance(runs: list[RunLog], out: Path) -> list[Path]:
    groups = _grouped(runs, "equivariance/mean")
    groups = {k: v for k, v in groups.items() if v.abs().max().max() > 0}
    if not groups:
        return []
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    colors = iter(plt.get_cmap("tab10").colors)
    for name, frame in sorted(groups.items()):
        _band(ax, frame, name, color=next(colors))
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("equivariance error of f_eq + γ f_neq")
    ax.legend(fontsize=7)
    return _save(fig, out, "equivariance_error")


def plot_sample_efficiency(runs: list[RunLog], out: Path) -> list[Path]:
    """Test metric (f_eq, each run at its best-validation checkpoint) vs data.max_samples."""
    points: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        data = (run.results.get("hparams") or {}).get("data") or {}
        eq = (run.results.get("modes") or {}).get("eq")
        size = data.get("max_samples", data.get("max_samples_train"))
        if eq is not None and size is not None:
            points[run.name][int(size)].append(eq["test"])
    points = {k: v for k, v in points.items() if len(v) >= 2}
    if not points:
        return []
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, by_size in sorted(points.items()):
        sizes = sorted(by_size)
        mean, std = np.array([mean_std(by_size[s]) for s in sizes]).T
        ax.errorbar(sizes, mean, yerr=std, marker="o", capsize=3, label=f"{name} f_eq")
    metric = next((r.results.get("metric") for r in runs if r.results.get("metric")), "metric")
    ax.set_xlabel("training samples")
    ax.set_ylabel(f"test {metric}")
    ax.legend(fontsize=7)
    return _save(fig, out, "sample_efficiency")


def dual_label(run: RunLog) -> str:
    """The run's dual update as a legend label, from results.json's ``hparams``."""
    hparams = run.results.get("hparams") or {}
    dual = hparams.get("dual") or {}
    name = dual.get("dual_optimizer", "?")
    label = f"{name}, η_d={hparams.get('dual_lr')}"
    if name == "nupi":
        label += f", κ_P={dual.get('dual_kp')}, κ_I={dual.get('dual_ki')}, ν={dual.get('dual_ema_nu')}"
    if dual.get("penalty"):
        label += f", c={dual['penalty']}"
    if hparams.get("gamma_lr") is not None:
        label += f", γ lr={hparams['gamma_lr']}"
    return label


def experiment_of(run: RunLog) -> str:
    """The experiment config a run was launched with (its ``experiment=`` override), else its
    name: runs renamed with ``name=...`` for a study still share their experiment's figure."""
    for override in run.results.get("overrides") or []:
        if override.startswith("experiment="):
            return override.split("=", 1)[1]
    return run.name


def plot_gamma_by_dual(runs: list[RunLog], out: Path) -> list[Path]:
    """Per experiment (:func:`experiment_of`) run with at least two dual updates: max_i |γ_i|
    against the training step, every run drawn, one colour per dual update
    (``gamma_max_by_dual_<experiment>``)."""
    by_name: dict[str, dict[str, list[RunLog]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if "ace/gamma_max" in run.metrics.columns and run.results.get("hparams"):
            by_name[experiment_of(run)][dual_label(run)].append(run)
    written: list[Path] = []
    for name, groups in sorted(by_name.items()):
        if len(groups) < 2:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        for i, (label, members) in enumerate(sorted(groups.items())):
            for j, run in enumerate(members):
                s = run.series("ace/gamma_max")
                ax.plot(s["step"], s["ace/gamma_max"], color=f"C{i}", lw=1.0, alpha=0.8,
                        label=f"{label} (n={len(members)})" if j == 0 else None)
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_xlabel("training step")
        ax.set_ylabel("max_i |γ_i|")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=6)
        written += _save(fig, out, f"gamma_max_by_dual_{name}")
    return written


def plot_all(paths: list[str | Path], out: Path) -> list[Path]:
    """Every figure the runs under ``paths`` have data for; per experiment, the trace figures
    of its best run (best f_eq validation value in the metric's direction; the first run when
    none has a finite one)."""
    runs = find_run_dirs(paths)
    written: list[Path] = []
    by_name: dict[str, list[RunLog]] = defaultdict(list)
    for run in runs:
        by_name[run.name].append(run)
    chosen = {name: best(members, key=lambda r: r.eq_val, direction=members[0].direction)
              or members[0] for name, members in by_name.items()}
    for name, run in sorted(chosen.items()):
        stem = f"traces_{name}" + (f"_seed{run.results['seed']}" if "seed" in run.results else "")
        written += plot_traces(run, out, stem)
    written += plot_equivariance(runs, out)
    for metric, direction in declared_metrics(runs).items():
        written += plot_val_curves(runs, out, metric, direction)
    written += plot_sample_efficiency(runs, out)
    written += plot_gamma_by_dual(runs, out)
    return written
