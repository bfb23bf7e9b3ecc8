"""Draw the paper's figures from logged runs, as PNG and PDF.

    python scripts/plot.py outputs/nbody_segnn_ace/<time>                 # one run
    python scripts/plot.py outputs/nbody_segnn/multirun/<t> outputs/nbody_segnn_ace/multirun/<t>

Writes into ``--out`` (default: ``<first dir>/figures``): ``traces_<experiment>_seed<k>`` (γ_i, λ_i
and u_i per layer over training, Figs. 5, 6, 8–11), ``equivariance_error`` (Fig. 4),
``val_curves`` (Fig. 2 left) and ``sample_efficiency`` (Fig. 2 right), each where data exists.
Runs need ``logger=csv`` or the default logger (CSV + W&B) for curves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ace.reproduction.plots import plot_all  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", help="run or sweep directories (searched recursively)")
    parser.add_argument("--out", help="output directory (default: <first dir>/figures)")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.dirs[0]) / "figures"
    try:
        written = plot_all(args.dirs, out)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not written:
        print(f"error: no plottable runs under {' '.join(args.dirs)} (need csv/metrics.csv or "
              "results.json; train with logger=csv or the default logger)", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
