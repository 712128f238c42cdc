"""Certificates of optimality (tamejax.duality.certify) on random knapsack, set-cover and general ILPs.

For each family and size ``n`` (10, 20, 50 variables) and each random instance:

* the baseline: a direct in-process OR-Tools SCIP solve (``pywraplp``, one thread), model
  build from the NumPy data *included* in the timed part (certify builds its own models too),
  median of 3 (after a warm-up); the solve-only time and the time of ``tamejax.solve(problem,
  "scip")`` (which adds tamejax's bridge, about 30 ms here) are recorded alongside;
* ``certify(problem, method)`` for ``gomory`` (Chvátal function; Gomory's fractional cuts with
  the lexicographic dual simplex, float64 arithmetic above 600 tableau entries, SCIP incumbent:
  its time *includes* that SCIP solve),
  ``branch_and_bound`` (the branch-and-bound dual function over GLOP) and ``auto`` (Gomory,
  falling back to branch and bound when the cut loop does not close in half the time limit);
* certified: status ``OPTIMAL`` within the limits *and* ``verify`` passes (independent checks:
  dual feasibility, subadditivity for Chvátal functions, leaf coverage for branch and bound,
  ``F(b) == z(b)`` against SCIP);
* time ratio: the ratio of medians (median certificate seconds / median SCIP seconds over the
  instances of a family, size and method), and the largest per-instance ratio;
* tightness on neighbouring right-hand sides: mean of ``z(b') - F(b')`` over ``b' = b + delta``
  (``delta`` integer in [-2, 2] per row, 16 draws; ``z`` by SCIP, infeasible ``b'`` skipped).

Families: knapsack (``max v x, w x <= W/2, x binary``, weights 5..29), set cover (``min c x,
A x >= 1``, density 0.3, ``m = n/2`` rows, ``x`` binary), general ILP (``m = n/4`` rows,
coefficients in [-3, 7], ``0 <= x <= 4`` integer, feasible by construction).

Targets (issue 4): every n = 10 and n = 20 instance certified; certificate time within 20x of
SCIP at n = 20. The machine is shared with other jobs while this runs: timings are noisy.

Usage::

    python benchmarks/bench_duality.py            # 5 instances per family and size, 30 s limit
    python benchmarks/bench_duality.py --quick    # 2 instances, n = 10 and 20 only, 10 s limit

Records go to ``benchmarks/results/bench_duality.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_bridge import write_record  # noqa: E402

import tamejax as tj  # noqa: E402
from tamejax.duality import certify, verify  # noqa: E402

METHODS = ("gomory", "branch_and_bound", "auto")


def knapsack(n: int, rng: np.random.Generator) -> tj.MIP:
    w = rng.integers(5, 30, n).astype(float)
    v = np.clip(w + rng.integers(-4, 5, n), 1, None).astype(float)
    return tj.MIP(c=-v, A_ub=w[None], b_ub=[np.floor(w.sum() / 2)], ub=1, integrality=True)


def set_cover(n: int, rng: np.random.Generator) -> tj.MIP:
    m = max(3, n // 2)
    A = (rng.random((m, n)) < 0.3).astype(float)
    for i in range(m):
        if A[i].sum() == 0:
            A[i, rng.integers(n)] = 1.0
    return tj.MIP(c=rng.integers(1, 10, n).astype(float), A_ub=-A, b_ub=-np.ones(m), ub=1, integrality=True)


def general(n: int, rng: np.random.Generator) -> tj.MIP:
    m = max(2, n // 4)
    A = rng.integers(-3, 8, (m, n)).astype(float)
    x = rng.integers(0, 4, n)
    return tj.MIP(
        c=rng.integers(-9, 4, n).astype(float), A_ub=A, b_ub=A @ x + rng.integers(0, 3, m), ub=4, integrality=True
    )


FAMILIES = {"knapsack": knapsack, "set_cover": set_cover, "general": general}


def scip_seconds(p: tj.MIP, reps: int = 3) -> tuple[float, float]:
    """Median seconds of ``tamejax.solve(p, "scip")`` (bridge included) and the optimal value."""
    times, z = [], None
    for _ in range(reps):
        t = time.perf_counter()
        sol = tj.solve(p, "scip")
        z = float(sol.objective)
        times.append(time.perf_counter() - t)
    return statistics.median(times), z


def scip_direct_seconds(p: tj.MIP, reps: int = 3) -> tuple[float, float, float]:
    """Direct OR-Tools SCIP (``pywraplp``, 1 thread): median seconds with and without the model build, value."""
    from ortools.linear_solver import pywraplp

    d = p.to_numpy()
    total, solve_only, z = [], [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        s = pywraplp.Solver.CreateSolver("SCIP")
        s.SetNumThreads(1)
        inf = s.infinity()
        n = d["c"].shape[0]
        x = [
            s.IntVar(float(max(d["lb"][j], -inf)), float(min(d["ub"][j], inf)), f"x{j}")
            if d["integrality"][j]
            else s.NumVar(float(max(d["lb"][j], -inf)), float(min(d["ub"][j], inf)), f"x{j}")
            for j in range(n)
        ]
        for A, b, eq in ((d["A_ub"], d["b_ub"], False), (d["A_eq"], d["b_eq"], True)):
            for i in range(A.shape[0]):
                ct = s.Constraint(float(b[i]) if eq else -inf, float(b[i]))
                for j in np.flatnonzero(A[i]):
                    ct.SetCoefficient(x[j], float(A[i, j]))
        obj = s.Objective()
        for j in range(n):
            obj.SetCoefficient(x[j], float(d["c"][j]))
        obj.SetMinimization()
        t1 = time.perf_counter()
        st = s.Solve()
        t2 = time.perf_counter()
        total.append(t2 - t0)
        solve_only.append(t2 - t1)
        z = s.Objective().Value() if st == pywraplp.Solver.OPTIMAL else float("nan")
    return statistics.median(total), statistics.median(solve_only), z


def neighbours(p: tj.MIP, rng: np.random.Generator, k: int = 16) -> tuple[np.ndarray, np.ndarray]:
    data = p.to_numpy()
    b = np.concatenate([data["b_ub"], data["b_eq"]])
    bs = b + rng.integers(-2, 3, size=(k, b.shape[0]))
    m_ub = data["b_ub"].shape[0]
    batch = tj.MIP(
        c=np.broadcast_to(data["c"], (k,) + data["c"].shape),
        A_ub=np.broadcast_to(data["A_ub"], (k,) + data["A_ub"].shape),
        b_ub=bs[:, :m_ub],
        ub=np.broadcast_to(data["ub"], (k,) + data["ub"].shape),
        integrality=True,
    )
    sol = tj.solve(batch, "scip")
    z = np.where(np.asarray(sol.status) == int(tj.Status.OPTIMAL), np.asarray(sol.objective), np.nan)
    return bs, z


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 instances, n = 10 and 20, 10 s limit")
    ap.add_argument("--instances", type=int, default=None)
    ap.add_argument("--sizes", type=str, default=None, help="comma-separated n (default 10,20,50)")
    ap.add_argument("--time-limit", type=float, default=None)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bench_duality.json"))
    args = ap.parse_args(argv)
    count = args.instances or (2 if args.quick else 5)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([10, 20] if args.quick else [10, 20, 50])
    limit = args.time_limit or (10.0 if args.quick else 30.0)
    rng = np.random.default_rng(2026)
    tj.solve(knapsack(5, rng), "scip")  # warm-up: solver import and worker start
    scip_direct_seconds(knapsack(5, rng))
    rows = []
    jobs = [(fam, n, k) for n in sizes for fam in FAMILIES for k in range(count)]
    for fam, n, k in tqdm(jobs, desc="instances"):
        p = FAMILIES[fam](n, np.random.default_rng([n, k, list(FAMILIES).index(fam)]))
        t_tj, z_tj = scip_seconds(p)
        t_scip, t_scip_solve, z = scip_direct_seconds(p)
        if not np.isclose(z, z_tj, atol=1e-6):
            raise RuntimeError(f"direct SCIP {z} and tamejax.solve {z_tj} disagree on {fam} n={n} #{k}")
        bs, zs = neighbours(p, np.random.default_rng([n, k, 99]))
        for method in METHODS:
            t = time.perf_counter()
            cert = certify(p, method, time_limit=limit)
            t_cert = time.perf_counter() - t
            rep = verify(p, cert, samples=8)
            certified = bool(cert.closed and rep.passed)
            tight = None
            if cert.F is not None:
                Fv = np.asarray(cert.F(bs))
                ok = np.isfinite(zs)
                tight = float(np.mean(zs[ok] - Fv[ok])) if ok.any() else None
            rows.append(
                dict(
                    family=fam,
                    n=n,
                    instance=k,
                    method=method,
                    status=cert.status.name,
                    certified=certified,
                    verify_passed=bool(rep.passed),
                    z=z,
                    F_b=float(cert.bound),
                    seconds=t_cert,
                    scip_seconds=t_scip,
                    scip_solve_only_seconds=t_scip_solve,
                    tj_solve_scip_seconds=t_tj,
                    ratio=t_cert / t_scip,
                    tightness=tight,
                    stats={kk: (vv if not isinstance(vv, dict) else str(vv)) for kk, vv in cert.stats.items()},
                    used=cert.method,
                )
            )
    summary = []
    print(
        f"\n{'family':10s} {'n':>3s} {'method':17s} {'certified':>9s} {'cert ms':>8s} {'SCIP ms':>8s} "
        f"{'med/med':>8s} {'max x SCIP':>10s} {'mean z-F (nbrs)':>15s}"
    )
    for n in sizes:
        for fam in FAMILIES:
            for method in METHODS:
                sel = [r for r in rows if r["n"] == n and r["family"] == fam and r["method"] == method]
                cert_frac = sum(r["certified"] for r in sel) / len(sel)
                t_c = statistics.median(r["seconds"] for r in sel)
                t_s = statistics.median(r["scip_seconds"] for r in sel)
                med = t_c / t_s  # ratio of medians
                mx = max(r["ratio"] for r in sel)
                tights = [r["tightness"] for r in sel if r["tightness"] is not None]
                tt = statistics.mean(tights) if tights else float("nan")
                summary.append(
                    dict(
                        family=fam,
                        n=n,
                        method=method,
                        certified_fraction=cert_frac,
                        median_seconds=t_c,
                        median_scip_seconds=t_s,
                        ratio_of_medians_vs_scip=med,
                        max_time_ratio_vs_scip=mx,
                        mean_tightness=tt,
                    )
                )
                print(
                    f"{fam:10s} {n:3d} {method:17s} {cert_frac:9.2f} {1e3 * t_c:8.1f} {1e3 * t_s:8.1f} "
                    f"{med:8.2f} {mx:10.1f} {tt:15.3f}"
                )
    targets = {}
    for method in METHODS:
        small = [r for r in rows if r["method"] == method and r["n"] in (10, 20)]
        sel20 = [r for r in rows if r["method"] == method and r["n"] == 20]
        rom = (
            statistics.median(r["seconds"] for r in sel20) / statistics.median(r["scip_seconds"] for r in sel20)
            if sel20
            else None
        )
        targets[method] = dict(
            all_n10_n20_certified=all(r["certified"] for r in small) if small else None,
            ratio_of_medians_n20=rom,
            max_ratio_n20=max(r["ratio"] for r in sel20) if sel20 else None,
            within_20x_at_n20=(rom <= 20) if rom is not None else None,
        )
        print(f"targets [{method}]: {targets[method]}")
    write_record(
        args.out,
        dict(
            benchmark="bench_duality",
            quick=args.quick,
            instances=count,
            sizes=sizes,
            time_limit=limit,
            machine=dict(platform=platform.platform(), processor=platform.processor(), cpus=os.cpu_count()),
            note=(
                "shared machine: other jobs ran at the same time; timings are noisy. Baseline: direct "
                "in-process OR-Tools SCIP (pywraplp, 1 thread), model build included; ratios are ratios of "
                "medians; gomory/auto times include their SCIP incumbent solve"
            ),
            summary=summary,
            targets=targets,
            rows=rows,
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
