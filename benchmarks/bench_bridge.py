"""Cost of the bridge: ``jax.jit(jax.vmap(tamejax.solve))`` versus a plain OR-Tools loop.

Workload: random 0-1 knapsack MIPs with integer data (``--items`` items, weights and values
uniform in 1..100, capacity half the total weight), written as ``min -v.x s.t. w.x <= cap``.

* baseline: a plain Python loop that builds each problem with ``pywraplp`` and solves it with
  SCIP in this process (what a user would write without tamejax);
* bridge: ``jax.jit(jax.vmap(solve))`` over the same batch, with 1 and with 2 worker
  processes (``tamejax.set_workers``);
* host_cached_loop (informative): tamejax's host side alone, ``solve_host`` in a loop in
  this process with a model cache, no JAX and no worker processes. Comparing it with the
  plain loop isolates the gain of reusing SCIP models (a new SCIP instance costs
  milliseconds to create); comparing it with the bridge isolates the bridge's own cost.

Each configuration runs once untimed (JIT compilation, worker start-up: reported separately
as ``cold_s``), then ``--repeats`` timed runs, alternating configurations so that machine
noise hits all of them alike; we report medians and the ratio bridge / baseline. Both must
return the same optimal objectives (checked). Records go to
``benchmarks/results/bench_bridge.json``.

    python benchmarks/bench_bridge.py            # 256 problems, 7 repeats
    python benchmarks/bench_bridge.py --quick    # 64 problems, 3 repeats
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def make_knapsacks(count: int, items: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.integers(1, 101, size=(count, items)).astype(np.float64)
    v = rng.integers(1, 101, size=(count, items)).astype(np.float64)
    cap = np.floor(w.sum(axis=1) / 2)
    return {"c": -v, "A_ub": w[:, None, :], "b_ub": cap[:, None]}


def write_record(path: str, record: dict) -> None:
    """Write a benchmark's records as JSON (``benchmarks/results/<script>.json``) and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(f"records written to {out}")


def host_knapsacks(data: dict[str, np.ndarray]) -> list:
    """The same knapsacks as tamejax host problems (``tamejax.backends.HostProblem``), x in {0, 1}."""
    from tamejax.backends import HostProblem

    count, n = data["c"].shape
    z = np.zeros
    return [
        HostProblem(data["c"][k], data["A_ub"][k], data["b_ub"][k], z((0, n)), z(0), z(n), np.ones(n), np.ones(n, bool))
        for k in range(count)
    ]


def plain_loop(data: dict[str, np.ndarray]) -> np.ndarray:
    """The baseline: build and solve each knapsack with OR-Tools SCIP directly."""
    from ortools.linear_solver import pywraplp

    out = np.empty(data["c"].shape[0])
    for k in range(data["c"].shape[0]):
        solver = pywraplp.Solver.CreateSolver("SCIP")
        solver.SuppressOutput()
        n = data["c"].shape[1]
        x = [solver.BoolVar(f"x{j}") for j in range(n)]
        row = solver.Constraint(-solver.infinity(), float(data["b_ub"][k, 0]))
        for j in range(n):
            row.SetCoefficient(x[j], float(data["A_ub"][k, 0, j]))
        obj = solver.Objective()
        for j in range(n):
            obj.SetCoefficient(x[j], float(data["c"][k, j]))
        obj.SetMinimization()
        status = solver.Solve()
        if status != pywraplp.Solver.OPTIMAL:
            raise RuntimeError(f"baseline: problem {k} not solved to optimality (status {status})")
        out[k] = obj.Value()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 problems, 3 repeats")
    parser.add_argument("--count", type=int, default=None, help="number of problems (default 256)")
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_bridge.json"))
    args = parser.parse_args()
    count = args.count or (64 if args.quick else 256)
    repeats = args.repeats or (3 if args.quick else 7)

    import jax
    import jax.numpy as jnp
    from tqdm import tqdm

    import tamejax as tj

    jax.config.update("jax_enable_x64", True)
    data = make_knapsacks(count, args.items, args.seed)
    integrality = [True] * args.items

    def solve_one(c, A_ub, b_ub):
        p = tj.MIP(c=c, A_ub=A_ub, b_ub=b_ub, lb=0.0, ub=1.0, integrality=integrality)
        return tj.solve(p, backend="scip")

    bridge = jax.jit(jax.vmap(solve_one))
    args_j = tuple(jnp.asarray(data[k]) for k in ("c", "A_ub", "b_ub"))

    def run_bridge(workers: int):
        def run() -> np.ndarray:
            tj.set_workers(workers)
            sol = bridge(*args_j)
            obj = np.asarray(jax.block_until_ready(sol.objective))
            bad = np.asarray(sol.status) != int(tj.Status.OPTIMAL)
            if bad.any():
                raise RuntimeError(f"bridge: {int(bad.sum())} problems not optimal")
            return obj

        return run

    from tamejax.backends import SolveOptions, solve_host

    host_problems = host_knapsacks(data)
    host_cache: dict = {}

    def host_loop() -> np.ndarray:
        # Informative row: tamejax's host side alone (cached models, no JAX, no processes).
        return np.array([solve_host("scip", p, SolveOptions(), host_cache).objective for p in host_problems])

    configs = {
        "plain_loop": lambda: plain_loop(data),
        "host_cached_loop": host_loop,
        "bridge_1_worker": run_bridge(1),
        "bridge_2_workers": run_bridge(2),
    }
    times: dict[str, list[float]] = {k: [] for k in configs}
    cold: dict[str, float] = {}
    reference = None
    for name, fn in configs.items():  # untimed first run: compile, start workers, check answers
        t0 = time.perf_counter()
        obj = fn()
        cold[name] = time.perf_counter() - t0
        if reference is None:
            reference = obj
        elif not np.allclose(obj, reference, rtol=0, atol=1e-6):
            raise RuntimeError(f"{name}: objectives differ from the plain loop by {np.max(np.abs(obj - reference))}")
    for _ in tqdm(range(repeats), desc="repeats", file=sys.stderr):
        for name, fn in configs.items():
            if name.startswith("bridge"):
                fn_workers = 1 if name == "bridge_1_worker" else 2
                tj.set_workers(fn_workers)  # (re)start the pool outside the timed region
                tj.backends.pool.get_pool().pids()
                fn()  # warm: the pool's model cache (restarted pools start cold)
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)

    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["plain_loop"]
    record = {
        "benchmark": "bench_bridge",
        "problems": count,
        "items": args.items,
        "repeats": repeats,
        "seed": args.seed,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "jax": jax.__version__,
        },
        "times_s": times,
        "median_s": med,
        "cold_s": cold,
        "ratio_vs_plain_loop": {k: v / base for k, v in med.items()},
        "targets": {"bridge_1_worker_ratio_max": 1.15, "bridge_2_workers_speedup_min": 1.6},
    }
    print(f"\n{count} knapsacks x {args.items} items, SCIP, median of {repeats} runs:")
    print(f"  {'configuration':<18} {'median s':>9} {'ratio':>7} {'speed-up':>9}")
    for k, v in med.items():
        print(f"  {k:<18} {v:9.3f} {v / base:7.3f} {base / v:9.2f}x")
    print("  (cold first runs: " + ", ".join(f"{k} {v:.2f}s" for k, v in cold.items()) + ")")
    r1 = med["bridge_1_worker"] / base
    s2 = base / med["bridge_2_workers"]
    print(f"target 1 worker <= 1.15x plain loop: {r1:.3f}x -> {'met' if r1 <= 1.15 else 'NOT met'}")
    print(f"target 2 workers >= 1.6x faster:     {s2:.2f}x -> {'met' if s2 >= 1.6 else 'NOT met'}")
    write_record(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
