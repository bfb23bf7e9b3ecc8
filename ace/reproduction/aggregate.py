"""Collect runs' ``results.json``, select learning rates by validation, write the paper's tables.

Protocol (paper App. A.5, ace_algorithm.md §6): the runs of one experiment and variant (MoCap
case, QM9 target) are grouped into *candidates*, i.e. everything that was set differently
except the seed (the learning rates, plus any other non-bookkeeping override). Per mode (f_eq and
f_eq + γ f_neq, separately) the candidate with the best mean validation value of the primary
metric over its seeds — lowest or highest, as the run's ``metric_direction`` says — is selected
and its test metric is reported as mean ± std over those seeds (population std, ``ddof=0``, as
``numpy.std``). Candidates whose validation mean is not finite (a diverged seed) are never
selected and are listed. Each run's per-mode numbers are already those of that mode's
best-validation checkpoint (``results.json["modes"]``).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ace.reproduction.paper import TABLE3, TABLES, Table
from ace.utils.direction import best
from ace.utils.run_info import run_hparams

# Overrides that never change what a run computes (paths, logging, launchers, devices) and the
# keys that are the grid itself; the rest of a job's overrides distinguishes candidates.
BOOKKEEPING_PREFIXES = (
    "seed=", "paths.", "logger", "hydra.", "ckpt_path=", "launcher=", "num_threads=",
    "hparams_search=", "experiment=", "trainer.enable_progress_bar=", "trainer.devices=",
    "trainer.accelerator=", "trainer.strategy=", "trainer=", "data.base_url=", "data.url=",
    "data.num_workers=", "model.log_test_metric=", "callbacks=", "name=", "tags=",
)
GRID_KEYS = ("model.optimizer.lr=", "constraint.dual_lr=")
MODES = ("eq", "relaxed")
# The training-set size is never a candidate to select (a sample-efficiency sweep must not pick
# the size with the best validation value): where an experiment's runs use several sizes, each
# size is a variant of its own, like the QM9 target or the MoCap case.
SIZE_KEYS = ("max_samples", "max_samples_train", "max_train_samples")
# Data keys that make a variant (a column of its own), never a candidate.
VARIANT_KEYS = ("target", "case", "source", "point_dropout", *SIZE_KEYS)


@dataclass
class Run:
    path: Path
    record: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.record.get("name"))

    @property
    def seed(self) -> Any:
        return self.record.get("seed")

    @property
    def failed(self) -> bool:
        return self.record.get("status", "completed") != "completed"

    @property
    def direction(self) -> str:
        """``min`` or ``max``: how the primary metric improves (runs before it was recorded: min)."""
        return str(self.record.get("metric_direction", "min"))

    @property
    def variant(self) -> str:
        """QM9 target, MoCap case, "" (N-body, clean ModelNet40); ``synthetic`` for runs on a
        synthetic stand-in (never beside the paper's numbers) and ``dropout`` for ModelNet40's
        point-dropout variant, joined by a space."""
        task = self.record.get("task") or {}
        data = (self.record.get("hparams") or {}).get("data") or {}
        target = task.get("target", data.get("target"))
        base = str(target) if target is not None else str(data.get("case", ""))
        parts = [base, "synthetic" if data.get("source") == "synthetic" else "",
                 "dropout" if data.get("point_dropout") else ""]
        return " ".join(p for p in parts if p)

    @property
    def train_size(self) -> Any:
        """The training-set size setting (``max_samples`` and its QM9 / MoCap names), or None."""
        data = (self.record.get("hparams") or {}).get("data") or {}
        return next((data[k] for k in SIZE_KEYS if data.get(k) is not None), None)

    @property
    def candidate(self) -> str:
        """Everything set for this run except the seed and bookkeeping, as one readable string."""
        hparams = self.record.get("hparams") or {}
        parts = [f"lr={hparams.get('lr')}"]
        if hparams.get("dual_lr") is not None:
            parts.append(f"dual_lr={hparams['dual_lr']}")
        variant = tuple(f"data.{k}=" for k in VARIANT_KEYS)
        parts += sorted(o for o in self.record.get("overrides", [])
                        if not o.startswith(BOOKKEEPING_PREFIXES + GRID_KEYS + variant))
        return ", ".join(parts)


def find_runs(paths: list[str | Path]) -> list[Run]:
    """Every ``results.json`` under the given files or directories (recursively), by path."""
    found: dict[Path, Run] = {}
    for root in map(Path, paths):
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist: pass run or sweep directories "
                                    "(e.g. outputs/nbody_segnn_ace/multirun/<time>)")
        files = [root] if root.is_file() else sorted(root.rglob("results.json"))
        for file in files:
            found[file.resolve()] = Run(file.parent, load_results(file))
    return [found[k] for k in sorted(found)]


def load_results(file: Path) -> dict[str, Any]:
    """One run's ``results.json``. Runs written before it carried ``hparams``/``overrides`` get
    them from the run's ``.hydra/config.yaml`` and ``.hydra/overrides.yaml``."""
    try:
        record = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file} is not valid JSON ({err}); delete or re-run that job") from err
    hydra_dir = file.parent / ".hydra"
    if "overrides" not in record and (hydra_dir / "overrides.yaml").exists():
        record["overrides"] = list(OmegaConf.load(hydra_dir / "overrides.yaml"))
    if "hparams" not in record and (hydra_dir / "config.yaml").exists():
        record["hparams"] = run_hparams(OmegaConf.load(hydra_dir / "config.yaml"))
    return record


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (``ddof=0``), as every table and figure reports;
    NaN for both when a value is not finite (a diverged run)."""
    if not all(math.isfinite(v) for v in values):
        return math.nan, math.nan
    return statistics.fmean(values), statistics.pstdev(values)


@dataclass
class Selection:
    experiment: str
    variant: str
    mode: str
    candidate: str
    val_mean: float
    test_mean: float
    test_std: float
    seeds: list[Any]
    candidates: int  # how many candidates competed
    direction: str = "min"
    non_finite: list[str] = field(default_factory=list)  # skipped: validation mean NaN/inf
    #: test mean ± std of every declared metric at the selected checkpoints (selection is by the
    #: primary metric's validation value)
    test_metrics: dict[str, tuple[float, float]] = field(default_factory=dict)


def candidate_stats(runs: list[Run]) -> list[dict[str, Any]]:
    """One entry per (experiment, variant, mode, candidate): seeds, direction, val and test
    mean ± std."""
    runs = [run for run in runs if not run.failed]
    sizes: dict[str, set[str]] = {}
    for run in runs:
        sizes.setdefault(run.name, set()).add(str(run.train_size))
    groups: dict[tuple[str, str, str, str], list[Run]] = {}
    for run in runs:
        variant = run.variant
        if len(sizes[run.name]) > 1:
            variant = f"{variant} n={run.train_size}".strip()
        for mode in MODES:
            if mode in (run.record.get("modes") or {}):
                groups.setdefault((run.name, variant, mode, run.candidate), []).append(run)
    stats = []
    for (name, variant, mode, candidate), members in sorted(groups.items()):
        val = [r.record["modes"][mode]["val"] for r in members]
        test = [r.record["modes"][mode]["test"] for r in members]
        directions = {r.direction for r in members}
        if len(directions) > 1:
            raise ValueError(f"runs of {name} {variant} disagree on the metric direction "
                             f"{sorted(directions)}: {[str(r.path) for r in members]}")
        stats.append({
            "experiment": name, "variant": variant, "mode": mode, "candidate": candidate,
            "seeds": [r.seed for r in members], "direction": directions.pop(),
            "val": mean_std(val), "test": mean_std(test),
            "metrics": _metric_stats([r.record["modes"][mode] for r in members]),
        })
    return stats


def _metric_stats(entries: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Test mean ± std of every metric that all the entries (one mode of several seeds) carry."""
    names = set.intersection(*(set(e.get("metrics") or {}) for e in entries)) if entries else set()
    return {n: mean_std([e["metrics"][n]["test"] for e in entries]) for n in sorted(names)}


def select(runs: list[Run]) -> dict[tuple[str, str, str], Selection]:
    """Per (experiment, variant, mode): the candidate with the best finite mean validation
    metric in its direction; groups where no candidate is finite are left out."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for s in candidate_stats(runs):
        groups.setdefault((s["experiment"], s["variant"], s["mode"]), []).append(s)
    selections = {}
    for key, stats in groups.items():
        chosen = best(stats, key=lambda s: s["val"][0], direction=stats[0]["direction"])
        if chosen is None:
            continue
        selections[key] = Selection(
            *key, chosen["candidate"], chosen["val"][0], *chosen["test"], chosen["seeds"],
            len(stats), chosen["direction"],
            [s["candidate"] for s in stats if not math.isfinite(s["val"][0])],
            chosen["metrics"])
    return selections


# ---------------------------------------------------------------------------------- formatting
def _fmt(mean: float, std: float, scale: float, digits: int) -> str:
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def _digits(table: Table) -> int:
    return 4 if table.scale == 1.0 else 2


def paper_table(table: Table, selections: dict, latex: bool = False) -> str | None:
    """Markdown (or LaTeX) of one paper table: ours (n seeds) beside the paper's value; in each
    column our best test mean (in the metric's direction) is bold."""
    variants = [v for v in table.variants
                if any((r.experiment, v, r.mode) in selections for r in table.rows)]
    if not variants:
        return None
    # columns: (variant, metric); metric None = the primary metric
    columns = [(v, m) for v in variants for m in (table.metrics or (None,))]

    def value(sel: Selection, metric: str | None) -> tuple[float, float] | None:
        if metric is None:
            return sel.test_mean, sel.test_std
        return sel.test_metrics.get(metric)

    column_best = {}
    for v, m in columns:
        chosen = [selections[k] for k in ((r.experiment, v, r.mode) for r in table.rows)
                  if k in selections and value(selections[k], m) is not None]
        column_best[v, m] = best(chosen, key=lambda sel: value(sel, m)[0],
                                 direction=chosen[0].direction) if chosen else None
    header = ["Model"]
    for v, m in columns:
        col = " ".join(x for x in (table.variants[v], table.metric_labels.get(m, m)) if x)
        header += [f"{col} ours".strip(), f"{col} paper".strip()]
    lines = []
    for row in table.rows:
        cells = [row.label]
        for v, m in columns:
            sel = selections.get((row.experiment, v, row.mode))
            got = value(sel, m) if sel is not None else None
            ours = (f"{_fmt(*got, table.scale, _digits(table))} "
                    f"(n={len(sel.seeds)})") if got is not None else "—"
            if got is not None and sel is column_best[v, m]:
                ours = f"**{ours}**"
            cells += [ours, row.paper.get(v if m is None else f"{v}/{m}", "—")]
        if any(c != "—" for c in cells[1::2]):  # show rows we ran, or the paper printed
            lines.append(cells)
    if latex:
        return _latex(table.title, header, lines)
    out = [f"### {table.title}", "", "| " + " | ".join(header) + " |",
           "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    if table.note:
        out += ["", table.note]
    return "\n".join(out)


def _latex(title: str, header: list[str], lines: list[list[str]]) -> str:
    def tex(cell: str) -> str:
        if cell.startswith("**") and cell.endswith("**"):
            cell = r"\textbf{" + cell[2:-2] + "}"
        cell = cell.replace("±", r"$\pm$").replace("_", r"\_").replace("↑", r"$\uparrow$")
        return cell.replace("‡", r"$\ddagger$").replace("†", r"$\dagger$").replace("—", "--")

    out = [f"% {title}", r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule",
           " & ".join(tex(h) for h in header) + r" \\", r"\midrule"]
    out += [" & ".join(tex(c) for c in cells) + r" \\" for cells in lines]
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out)


def table3(runs: list[Run], latex: bool = False) -> str | None:
    """Parameters (train-time / pruned) and median train / validation seconds per epoch."""
    by_name: dict[str, list[Run]] = {}
    for run in runs:
        if not run.failed and "parameters" in run.record:
            by_name.setdefault(run.name, []).append(run)
    if not by_name:
        return None
    header = ["Experiment", "#Params ours (pruned)", "#Params paper", "Train s/epoch ours",
              "paper", "Val s/epoch ours", "paper"]
    lines = []
    for name, members in sorted(by_name.items()):
        params = members[0].record["parameters"]
        secs = {k: [r.record.get("seconds_per_epoch", {}).get(k) for r in members] for k in ("train", "val")}
        secs = {k: [x for x in v if x is not None] for k, v in secs.items()}
        ours = {k: statistics.median(v) if v else None for k, v in secs.items()}
        paper = TABLE3.get(name)
        lines.append([
            name, f"{params['train']:,} ({params['pruned']:,})",
            f"{paper[0]:,}" if paper else "—",
            f"{ours['train']:.3f}" if ours["train"] is not None else "—",
            f"{paper[1]:.3f}" if paper else "—",
            f"{ours['val']:.3f}" if ours["val"] is not None else "—",
            f"{paper[2]:.3f}" if paper else "—",
        ])
    title = "Table 3: parameters and seconds per epoch (ours: this machine; paper: RTX A5000)"
    if latex:
        return _latex(title, header, lines)
    return "\n".join([f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(c) + " |" for c in lines])


def selection_table(runs: list[Run], selections: dict[tuple[str, str, str], Selection]) -> str:
    """Every candidate with its validation and test mean ± std; the one in ``selections`` marked."""
    out = ["### All candidates (metric in the run's unit; * = selected by validation; "
           "! = never selected: non-finite validation mean)", "",
           "| experiment | variant | mode | candidate | seeds | val | test |",
           "|---|---|---|---|---|---|---|"]
    for s in candidate_stats(runs):
        sel = selections.get((s["experiment"], s["variant"], s["mode"]))
        mark = "*" if sel is not None and sel.candidate == s["candidate"] else ""
        mark = "!" if not math.isfinite(s["val"][0]) else mark
        arrow = "↓" if s["direction"] == "min" else "↑"
        out.append(f"| {s['experiment']} | {s['variant'] or '—'} | {s['mode']} | {s['candidate']}{mark} "
                   f"| {len(s['seeds'])} | {s['val'][0]:.4g} ± {s['val'][1]:.2g} {arrow} "
                   f"| {s['test'][0]:.4g} ± {s['test'][1]:.2g} |")
    return "\n".join(out)


def last_epoch_table(runs: list[Run]) -> str | None:
    """Test metrics at the last epoch (``results.json["last"]``, runs with ``test_last=true``)
    per experiment, variant and mode, every candidate: the numbers to hold against running
    maxima such as the paper's ModelNet40 values, which select nothing on validation."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for run in runs:
        for mode, entry in (run.record.get("last") or {}).items():
            if not run.failed:
                groups.setdefault((run.name, run.variant, mode, run.candidate), []).append(entry)
    if not groups:
        return None
    out = ["### At the last epoch (test, every candidate; no selection)", "",
           "| experiment | variant | mode | candidate | seeds | metrics |", "|---|---|---|---|---|---|"]
    for (name, variant, mode, candidate), entries in sorted(groups.items()):
        stats = _metric_stats(entries)
        cells = ", ".join(f"{m} {v[0]:.4g} ± {v[1]:.2g}" for m, v in stats.items())
        out.append(f"| {name} | {variant or '—'} | {mode} | {candidate} | {len(entries)} | {cells} |")
    return "\n".join(out)


def failed_table(runs: list[Run]) -> str | None:
    failed = [r for r in runs if r.failed]
    if not failed:
        return None
    out = [f"### Failed runs ({len(failed)})", "", "| run directory | experiment | seed | error |",
           "|---|---|---|---|"]
    for r in failed:
        error = str(r.record.get("error", "")).replace("|", "/").splitlines()[0][:200]
        out.append(f"| {r.path} | {r.name} | {r.seed} | {error} |")
    return "\n".join(out)


def report(runs: list[Run], latex: bool = False) -> str:
    """The whole report: paper tables, Table 3, then (Markdown only) candidates and failures."""
    selections = select(runs)
    parts = [paper_table(t, selections, latex) for t in TABLES]
    known = {(r.experiment, r.mode) for t in TABLES for r in t.rows}
    other = sorted(k for k in selections if (k[0], k[2]) not in known)
    if other and not latex:
        lines = ["### Other experiments (test metric, raw units)", "",
                 "| experiment | variant | mode | test | better | n |", "|---|---|---|---|---|---|"]
        for key in other:
            s = selections[key]
            better = "lower" if s.direction == "min" else "higher"
            lines.append(f"| {key[0]} | {key[1] or '—'} | {key[2]} | {s.test_mean:.4g} ± {s.test_std:.2g} "
                         f"| {better} | {len(s.seeds)} |")
        parts.append("\n".join(lines))
    parts.append(table3(runs, latex))
    if not latex:
        parts += [selection_table(runs, selections), last_epoch_table(runs), failed_table(runs)]
    completed = sum(not r.failed for r in runs)
    head = (f"% {completed} completed and {len(runs) - completed} failed runs" if latex else
            f"{completed} completed and {len(runs) - completed} failed runs.")
    return "\n\n".join([head] + [p for p in parts if p]) + "\n"

