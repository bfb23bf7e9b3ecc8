#!/usr/bin/env python
"""Generate the charged 5-body data set (``shared/reference/nbody_simulator.md``).

Same code path as ``NBodyDataModule.prepare_data``: writes
``<data-dir>/charged5_seed<seed>_<train>_<valid>_<test>/`` with ``{loc,vel,charges}_{split}.npy``
(reference layout, float64) and ``manifest.json``, then verifies it. Defaults reproduce the
paper's data (10,000 / 2,000 / 2,000, seed 43; ~2-4 min on 2 CPU cores).

    python scripts/generate_nbody.py                 # -> data/nbody/charged5_seed43_10000_2000_2000
    python scripts/generate_nbody.py --num-train 500 --num-valid 100 --num-test 100
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ace.data.nbody import load_verified
from ace.data.nbody.simulator import dataset_name, generate_dataset

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=REPO / "data" / "nbody",
                   help="parent directory (default: %(default)s)")
    p.add_argument("--num-train", type=int, default=10000)
    p.add_argument("--num-valid", type=int, default=2000)
    p.add_argument("--num-test", type=int, default=2000)
    p.add_argument("--seed", type=int, default=43)
    p.add_argument("--force", action="store_true", help="regenerate if the directory exists")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    sizes = dict(num_train=args.num_train, num_valid=args.num_valid, num_test=args.num_test)
    target = args.data_dir / dataset_name(**sizes, seed=args.seed)
    if target.exists() and not args.force:
        print(f"{target} exists; verifying (use --force to regenerate)")
    else:
        started = time.perf_counter()
        target = generate_dataset(args.data_dir, **sizes, seed=args.seed,
                                  progress=not args.no_progress, overwrite=args.force)
        print(f"generated {target} in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    load_verified(target, **sizes, seed=args.seed)
    seconds = time.perf_counter() - started
    print(f"verified (manifest, SHA-256, shapes, finiteness) in {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
