"""How many solves should one cached SCIP model serve before it is rebuilt?

tamejax keeps one pywraplp model per structure in each worker and only updates changed
coefficients between solves. Creating a SCIP instance is expensive (its plugins are loaded
each time), so reuse pays; but SCIP modified in place through pywraplp slows down solve after
solve. ``tamejax.backends.ortools_linear._MAX_REUSE["SCIP"]`` bounds the reuse. This script
solves the same batch of random 0-1 knapsacks (see ``bench_bridge.py``) in-process with
``solve_host`` for several bounds, including 1 (a fresh model per solve: the baseline) and
unbounded reuse, and prints medians and the ratio to the baseline.

    python benchmarks/bench_model_reuse.py           # 256 problems, 5 repeats
    python benchmarks/bench_model_reuse.py --quick   # 64 problems, 3 repeats
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path
from time import perf_counter

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_bridge import host_knapsacks, make_knapsacks, write_record  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_model_reuse.json"))
    args = parser.parse_args()
    count, repeats = (64, 3) if args.quick else (256, 5)

    from tqdm import tqdm

    import tamejax.backends.ortools_linear as ol
    from tamejax.backends import SolveOptions, solve_host

    data = make_knapsacks(count, args.items, args.seed)
    n = args.items
    problems = host_knapsacks(data)
    bounds = [1, 2, 4, 8, 16, 32, 64, None]
    default = ol._MAX_REUSE["SCIP"]
    times: dict[str, list[float]] = {str(b): [] for b in bounds}
    objectives = {}
    try:
        for _ in tqdm(range(repeats), desc="repeats", file=sys.stderr):
            for b in bounds:  # interleaved, so machine noise hits every setting alike
                ol._MAX_REUSE["SCIP"] = float("inf") if b is None else b
                cache: dict = {}
                t0 = perf_counter()
                results = [solve_host("scip", p, SolveOptions(), cache) for p in problems]
                times[str(b)].append(perf_counter() - t0)
                objectives[str(b)] = np.array([r.objective for r in results])
    finally:
        ol._MAX_REUSE["SCIP"] = default
    ref = objectives["1"]
    for k, v in objectives.items():
        if not np.allclose(v, ref, atol=1e-6):
            raise RuntimeError(f"reuse bound {k}: objectives differ from fresh models")
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["1"]
    print(
        f"\n{count} knapsacks x {n} items, SCIP in-process, median of {repeats} runs "
        f"(current default bound: {default}):"
    )
    print(f"  {'solves per model':<17} {'median s':>9} {'ratio to fresh':>15}")
    for k, v in med.items():
        print(f"  {'unbounded' if k == 'None' else k:<17} {v:9.3f} {v / base:15.3f}")
    record = {
        "benchmark": "bench_model_reuse",
        "problems": count,
        "items": n,
        "repeats": repeats,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "default_bound": default,
        "times_s": times,
        "median_s": med,
        "ratio_vs_fresh_model": {k: v / base for k, v in med.items()},
    }
    write_record(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
