"""Micro-benchmark of the batch rating kernel alone (no validation, sorting or allocation).

Rates pre-sorted CDRs from benchmarks/gen.py several times and prints the best rate as one
JSON line. Run: `.venv/bin/python benchmarks/kernel_profile.py [--cdrs N] [--repeat N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

from benchmarks import gen  # noqa: E402
from benchmarks.rating import _batch, _take  # noqa: E402
from rating import engine  # noqa: E402
from rating.catalog import parse_catalog  # noqa: E402
from rating.compiler import compile_catalog  # noqa: E402
from rating.engine import Accumulators, rating_order  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cdrs", type=int, default=4_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--prefixes", type=int, default=3000)
    args = ap.parse_args(argv)

    text, prefixes = gen.catalog_yaml(n_prefixes=args.prefixes)
    compiled = compile_catalog(parse_catalog(text))
    batch, plans = _batch(compiled, gen.cdr_arrays(args.cdrs, prefixes, n_accounts=args.accounts),
                          args.accounts)
    batch = _take(batch, rating_order(batch))
    engine.rate_batch(compiled, _take(batch, np.arange(1000)), plans,
                      Accumulators.zeros(compiled, args.accounts))  # compile / load the cache
    times = []
    for _ in range(args.repeat):
        acc = Accumulators.zeros(compiled, args.accounts)
        t0 = time.perf_counter()
        engine.rate_batch(compiled, batch, plans, acc)
        times.append(time.perf_counter() - t0)
    best = min(times)
    print(json.dumps({
        "bench": "kernel_profile", "cdrs": args.cdrs, "repeat": args.repeat,
        "best_cdrs_per_s": round(args.cdrs / best), "median_cdrs_per_s":
        round(args.cdrs / sorted(times)[len(times) // 2]), "load": os.getloadavg()[0],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
