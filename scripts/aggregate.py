"""Collect every run's results.json and write the paper's tables (Markdown and LaTeX).

    python scripts/aggregate.py outputs/nbody_segnn_ace/multirun/<time> outputs/nbody_segnn/multirun/<time>

Learning rates are selected per mode by the best mean validation value over seeds (lowest for an
error, highest for an accuracy: the direction each results.json records); test is reported as
mean ± std over the selected candidate's seeds (see ace/reproduction/aggregate.py). Writes
``tables.md`` and ``tables.tex`` into ``--out`` (default: the first directory) and prints the
Markdown. Failed jobs (results.json with status: failed) are listed, not averaged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ace.reproduction.aggregate import find_runs, report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", help="run or sweep directories (searched recursively)")
    parser.add_argument("--out", help="directory for tables.md / tables.tex (default: first dir)")
    args = parser.parse_args(argv)
    try:
        runs = find_runs(args.dirs)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not runs:
        print(f"error: no results.json under {' '.join(args.dirs)}", file=sys.stderr)
        return 1
    out = Path(args.out or args.dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    markdown = report(runs)
    (out / "tables.md").write_text(markdown)
    (out / "tables.tex").write_text(report(runs, latex=True))
    print(markdown)
    print(f"written: {out / 'tables.md'}, {out / 'tables.tex'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
