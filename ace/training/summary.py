"""The few lines a finished run prints: each mode's numbers at its own checkpoint, γ, the run dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LABELS = {"eq": "f_eq", "relaxed": "f_eq + γ f_neq",
          "relaxed_at_eq_selection": "f_eq + γ f_neq at f_eq's checkpoint"}


def run_summary(results: dict[str, Any], output_dir: str | Path) -> str:
    """A short multi-line summary of ``results.json`` (what ``train.py`` prints at the end)."""
    metric = results.get("metric", "metric")
    unit = f" {results['metric_unit']}" if results.get("metric_unit") else ""
    better = {"min": "lower is better", "max": "higher is better"}.get(
        results.get("metric_direction", ""), "")
    lines = [f"run {results.get('name')} (seed {results.get('seed')}) finished: "
             f"{results.get('epochs')} epochs, {results.get('fit_seconds', 0.0):.1f} s"]
    modes = results.get("modes") or {}
    if modes:
        lines.append(f"  {metric}{unit} ({better}), each mode at its own best-validation checkpoint:")
    for key, entry in modes.items():
        lines.append(f"    {LABELS.get(key, key):<38} epoch {entry['epoch']:>5}   "
                     f"val {entry['val']:.6g}   test {entry['test']:.6g}")
    gamma = (results.get("final") or {}).get("gamma") or []
    if gamma:
        lines.append(f"  final max |γ| = {max(abs(g) for g in gamma):.3g} over {len(gamma)} branches")
    lines.append(f"  run directory: {output_dir}")
    return "\n".join(lines)
