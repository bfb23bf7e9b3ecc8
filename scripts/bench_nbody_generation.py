#!/usr/bin/env python
"""Time N-body generation: the batched generator vs the one-simulation-at-a-time loop.

Runs the batched generator on the full data set (10,000 / 2,000 / 2,000 sims, in memory, nothing
written) and the per-simulation loop (``simulate_loop``, the reference algorithm) on a sample of
simulations, extrapolates the loop to the full count and writes
``outputs/bench/nbody_generation.json``. ``--quick`` uses 500 / 100 / 100 sims and 5 loop sims.
Compare with ``nbody_simulator.md`` §8: reference ~0.45 s/sim, batched ~2.6-3.7 min in total.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from ace.data.nbody.simulator import CHUNK_SIZE, generate, simulate_loop

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="500/100/100 sims, 5 loop sims")
    p.add_argument("--num-train", type=int)
    p.add_argument("--num-valid", type=int)
    p.add_argument("--num-test", type=int)
    p.add_argument("--loop-sims", type=int)
    p.add_argument("--chunk-size", type=int, default=CHUNK_SIZE)
    p.add_argument("--seed", type=int, default=43)
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "bench" / "nbody_generation.json")
    args = p.parse_args(argv)
    defaults = (500, 100, 100, 5) if args.quick else (10000, 2000, 2000, 20)
    n_train, n_valid, n_test, n_loop = (
        v if v is not None else d
        for v, d in zip((args.num_train, args.num_valid, args.num_test, args.loop_sims), defaults))
    total = n_train + n_valid + n_test

    started = time.perf_counter()
    generate(n_train, n_valid, n_test, args.seed, progress=True, chunk_size=args.chunk_size)
    vec_s = time.perf_counter() - started
    print(f"batched: {total} sims in {vec_s:.1f} s ({total / vec_s:.1f} sims/s)")

    started = time.perf_counter()
    simulate_loop(np.random.RandomState(args.seed), n_loop)
    loop_sample_s = time.perf_counter() - started
    per_sim = loop_sample_s / n_loop
    loop_full_s = per_sim * total
    print(f"loop: {n_loop} sims in {loop_sample_s:.1f} s ({per_sim:.3f} s/sim) -> "
          f"{loop_full_s / 60:.1f} min extrapolated for {total}; ratio {loop_full_s / vec_s:.1f}x")

    result = {
        "num_sims": {"train": n_train, "valid": n_valid, "test": n_test, "total": total},
        "chunk_size": args.chunk_size,
        "batched": {"seconds": round(vec_s, 2), "sims_per_s": round(total / vec_s, 2),
                    "ms_per_sim": round(1e3 * vec_s / total, 3)},
        "loop": {"sample_sims": n_loop, "sample_seconds": round(loop_sample_s, 2),
                 "seconds_per_sim": round(per_sim, 4), "sims_per_s": round(1 / per_sim, 3),
                 "extrapolated_seconds": round(loop_full_s, 1)},
        "ratio_loop_over_batched": round(loop_full_s / vec_s, 2),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "date_unix": int(time.time()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
