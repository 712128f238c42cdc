"""Few-shot training of ternary networks by MIP vs the straight-through gradient baseline, on scikit-learn's data.

Protocol (after Icarte et al. 2019, "Training binarized neural networks using MIP and CP", CP 2019):

* network: one hidden layer of 16 units, ``h = sign(W x + b)`` (``sign(0) = +1``), scores ``W_2 h + b_2``,
  prediction ``argmax`` (ties: lowest index), every weight and bias in {-1, 0, 1} (``weights="ternary"``);
* data (scikit-learn's bundled sets): digits 8x8 with ``k = 1, 2, 5, 10`` training examples per class;
  breast cancer with 100 training examples (drawn uniformly without replacement, so the class mix follows the
  data); iris and wine with ``k = 10`` examples per class. The test split is all the remaining data. Each
  configuration is repeated on 10 random training sets (set ``s`` drawn with ``numpy.random.default_rng(s)``);
* input scaling (``tamejax.bnn.load_data`` on the training set, the same map applied to the test set): digits
  and iris ``"exact"`` (pixel counts 0..16; iris times 10), breast cancer and wine quantized to 16 levels per
  feature between the training minimum and maximum (their exact decimal scaling gives integers up to 10^8);
* the baseline, in the same run and on the same training sets: the same architecture trained by gradient with
  straight-through quantizers (``tamejax.bnn.gradient.fit_ste``: Adam, learning rates {1e-3, 3e-3, 1e-2,
  3e-2} x 4 random initializations, up to 300 full-batch steps, learning rate, initialization and number of
  steps chosen on a stratified 20 % held-out part of the training set, then retrained on all of it; with one
  example per class nothing can be held out and the choice is made on the training set itself);
* MIP methods (``tamejax.bnn.fit_mip``, CP-SAT with ``threads=1``, a fixed wall-clock limit per run,
  default 10 s): ``max_margin`` (cold start, no hint), and, warm-started from the baseline's network (a
  CP-SAT solution hint: "+ste"), ``max_margin``, ``min_weight`` (Icarte et al.), ``max_correct``,
  ``min_hinge`` (Thorbjarnarson & Yorke-Smith) and Icarte's ``hybrid`` (CP-SAT feasibility, then
  max-margin with fixed activations). ``--methods`` selects others (``kmeans``, ``local_search``, ``batch``).

Runs execute in ``--workers`` processes (default 2, each CP-SAT run single-threaded); other programs sharing
the CPU make a time-limited solve find less, so the machine load is part of the result (it is recorded).
A run that returns no network (no incumbent within the limit, or proven infeasible) has no test accuracy:
the tables give, per method, the number of training sets with a network and the mean ± std test accuracy
over those; the comparison with the baseline uses only methods that returned a network on every set.

Usage::

    python benchmarks/bench_bnn_mip.py            # the protocol above (37 minutes on a loaded 2-core machine)
    python benchmarks/bench_bnn_mip.py --quick    # digits k in {1, 2}, 2 sets, 3 s, two methods

Records go to ``benchmarks/results/bench_bnn_mip.json`` (``bench_bnn_mip_quick.json`` with ``--quick``),
rewritten after every finished run, so an interrupted run keeps its results.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import json
import math
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

HIDDEN = (16,)
WEIGHTS = "ternary"
SETS = 10
TIME_LIMIT = 10.0

# name -> (formulation, method, warm start from the STE network)
METHODS: dict[str, tuple[str, str, bool]] = {
    "max_margin": ("max_margin", "exact", False),
    "max_margin+ste": ("max_margin", "exact", True),
    "min_weight+ste": ("min_weight", "exact", True),
    "max_correct+ste": ("max_correct", "exact", True),
    "min_hinge+ste": ("min_hinge", "exact", True),
    "hybrid+ste": ("max_margin", "hybrid", True),
    "min_weight": ("min_weight", "exact", False),
    "max_correct": ("max_correct", "exact", False),
    "min_hinge": ("min_hinge", "exact", False),
    "hybrid": ("max_margin", "hybrid", False),
    "kmeans+ste": ("max_margin", "kmeans", True),
    "local_search+ste": ("max_correct", "local_search", True),
    "batch+ste": ("max_correct", "batch", True),
    "decomposed": ("max_margin", "decomposed", False),
}
DEFAULT_METHODS = (
    "decomposed",
    "max_margin+ste",
    "min_weight+ste",
    "max_correct+ste",
    "min_hinge+ste",
    "hybrid+ste",
)
QUICK_METHODS = ("max_margin+ste", "max_correct+ste")

# name -> (per-class shots or None, total training examples or None, scaling)
CONFIGS: dict[str, list[tuple[str, int]]] = {
    "digits": [("k", 1), ("k", 2), ("k", 5), ("k", 10)],
    "breast_cancer": [("n", 100)],
    "iris": [("k", 10)],
    "wine": [("k", 10)],
}
SCALING: dict[str, Any] = {"digits": "exact", "iris": "exact", "breast_cancer": 16, "wine": 16}


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A scikit-learn bundled dataset: ``(X float64, y int64)``."""
    from sklearn import datasets

    loader = {
        "digits": datasets.load_digits,
        "breast_cancer": datasets.load_breast_cancer,
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
    }[name]
    data = loader()
    return np.asarray(data.data, np.float64), np.asarray(data.target, np.int64)


def draw(y: np.ndarray, kind: str, size: int, s: int) -> np.ndarray:
    """Indices of training set ``s``: ``size`` examples per class (``kind="k"``) or in all (``"n"``)."""
    rng = np.random.default_rng(s)
    if kind == "k":
        return np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), size, replace=False) for c in np.unique(y)]))
    return np.sort(rng.choice(y.size, size, replace=False))


def label(kind: str, size: int) -> str:
    """``k=5`` or ``n=100``."""
    return f"{kind}={size}"


# ---------------------------------------------------------------------------- one MIP run (worker process)
_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def run_mip(task: dict[str, Any]) -> dict[str, Any]:
    """Train one MIP network on one training set and measure it on the test split (runs in a worker)."""
    from tamejax.bnn import fit_mip, predict

    name = task["dataset"]
    if name not in _CACHE:
        _CACHE[name] = load(name)
    X, y = _CACHE[name]
    tr = np.asarray(task["train_idx"])
    te = np.setdiff1d(np.arange(y.size), tr)
    formulation, method, warm = METHODS[task["method"]]
    t0 = time.perf_counter()
    try:
        params, rep = fit_mip(
            X[tr],
            y[tr],
            HIDDEN,
            formulation=formulation,
            method=method,
            weights=WEIGHTS,
            time_limit=task["time_limit"],
            threads=task["threads"],
            seed=task["set"],
            progress=False,
            scaling=task["scaling"],
            n_classes=int(y.max()) + 1,
            warm_start=task["warm"] if warm else None,
        )
    except Exception as exc:  # a crash is a result too: recorded, never hidden
        print(f"\n{task['method']} on {task['dataset']} {task['config']} set {task['set']}: {exc!r}", file=sys.stderr)
        return {**_meta(task), "status": "EXCEPTION", "message": repr(exc)[:500], "wall": time.perf_counter() - t0}
    test_acc = float(np.mean(predict(params, X[te]) == y[te])) if params is not None else None
    return {
        **_meta(task),
        "status": rep.status.name,
        "has_network": params is not None,
        "test_accuracy": test_acc,
        "train_accuracy": _num(rep.train_accuracy),
        "objective": _num(rep.objective),
        "bound": _num(rep.bound),
        "gap": _num(rep.gap),
        "solve_time": _num(rep.solve_time),
        "wall": time.perf_counter() - t0,
        "n_variables": rep.n_variables,
        "n_constraints": rep.n_constraints,
        "model_size_bytes": rep.model_size_bytes,
        "message": rep.message[:300],
    }


def _meta(task: dict[str, Any]) -> dict[str, Any]:
    return {k: task[k] for k in ("dataset", "config", "set", "method")}


def _num(v: Any) -> float | None:
    """JSON-friendly float (``None`` for nan/inf)."""
    v = float(v)
    return v if math.isfinite(v) else None


# ---------------------------------------------------------------------------- the baseline (main process)
def run_ste(name: str, X: np.ndarray, y: np.ndarray, tr: np.ndarray, scaling: Any, s: int, meta: dict) -> tuple:
    """The straight-through baseline on one training set; returns its record and its network (raw-input scaling)."""
    from tamejax.bnn import load_data, predict
    from tamejax.bnn.gradient import fit_ste

    te = np.setdiff1d(np.arange(y.size), tr)
    data = load_data(X[tr], y[tr], scaling=scaling, n_classes=int(y.max()) + 1)
    t0 = time.perf_counter()
    params, rep = fit_ste(data.X, data.y, HIDDEN, WEIGHTS, n_classes=data.n_classes, seed=s)
    wall = time.perf_counter() - t0
    params = dataclasses.replace(params, scaling=data.scaling)
    record = {
        **meta,
        "method": "ste",
        "status": "TRAINED",
        "has_network": True,
        "test_accuracy": float(np.mean(predict(params, X[te]) == y[te])),
        "train_accuracy": rep.train_accuracy,
        "solve_time": wall,
        "wall": wall,
        "lr": rep.lr,
        "epochs": rep.epochs,
        "validation": rep.validation,
        "n_validation": rep.n_validation,
    }
    return record, params


# ---------------------------------------------------------------------------- summaries
def summarize(records: list[dict], methods: list[str], sets: int) -> list[dict]:
    """Per (dataset, config, method): counts, mean ± std test accuracy over runs with a network, times, gaps."""
    rows = []
    keys = []
    for r in records:
        key = (r["dataset"], r["config"])
        if key not in keys:
            keys.append(key)
    for dataset, config in keys:
        for m in ["ste", *methods]:
            rs = [r for r in records if (r["dataset"], r["config"], r["method"]) == (dataset, config, m)]
            if not rs:
                continue
            acc = [r["test_accuracy"] for r in rs if r.get("test_accuracy") is not None]
            tra = [r["train_accuracy"] for r in rs if r.get("train_accuracy") is not None]
            gaps = [r["gap"] for r in rs if r.get("gap") is not None]
            ste_by_set = {
                r["set"]: r["test_accuracy"]
                for r in records
                if (r["dataset"], r["config"], r["method"]) == (dataset, config, "ste")
            }
            paired = [
                r["test_accuracy"] - ste_by_set[r["set"]]
                for r in rs
                if r.get("test_accuracy") is not None and r["set"] in ste_by_set
            ]
            statuses: dict[str, int] = {}
            for r in rs:
                statuses[r["status"]] = statuses.get(r["status"], 0) + 1
            rows.append(
                {
                    "dataset": dataset,
                    "config": config,
                    "method": m,
                    "runs": len(rs),
                    "with_network": len(acc),
                    "complete": len(acc) == sets,
                    "test_mean": float(np.mean(acc)) if acc else None,
                    "test_std": float(np.std(acc)) if acc else None,
                    "paired_vs_ste": float(np.mean(paired)) if paired else None,
                    "train_mean": float(np.mean(tra)) if tra else None,
                    "time_mean": float(np.mean([r.get("solve_time") or r.get("wall") or 0.0 for r in rs])),
                    "gap_mean": float(np.mean(gaps)) if gaps else None,
                    "gap_known": len(gaps),
                    "statuses": statuses,
                }
            )
    return rows


def comparison(rows: list[dict]) -> list[dict]:
    """Best MIP method (highest mean test accuracy, among methods with a network on every set) vs STE."""
    out = []
    keys = []
    for r in rows:
        if (r["dataset"], r["config"]) not in keys:
            keys.append((r["dataset"], r["config"]))
    for key in keys:
        ste = next((r for r in rows if (r["dataset"], r["config"]) == key and r["method"] == "ste"), None)
        mips = [r for r in rows if (r["dataset"], r["config"]) == key and r["method"] != "ste" and r["complete"]]
        best = max(mips, key=lambda r: r["test_mean"], default=None)
        out.append(
            {
                "dataset": key[0],
                "config": key[1],
                "ste_mean": ste["test_mean"] if ste else None,
                "best_mip": best["method"] if best else None,
                "best_mip_mean": best["test_mean"] if best else None,
                "difference": (best["test_mean"] - ste["test_mean"]) if (best and ste) else None,
                "mip_beats_ste": bool(best and ste and best["test_mean"] > ste["test_mean"]),
            }
        )
    return out


def _fmt(mean: float | None, std: float | None = None, digits: int = 3) -> str:
    if mean is None:
        return "—"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(rows: list[dict], comp: list[dict], time_limit: float) -> str:
    """The two tables (per method; best MIP vs STE) in Markdown."""
    lines = [
        "| data | training set | method | test accuracy | sets with a network | − STE on those sets | train accuracy "
        "| time (s) | gap (sets with a bound) | statuses |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gap = "—" if r["gap_mean"] is None else f"{r['gap_mean']:.2f} ({r['gap_known']})"
        paired = "—" if r["method"] == "ste" or r["paired_vs_ste"] is None else f"{r['paired_vs_ste']:+.3f}"
        st = ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items()))
        lines.append(
            f"| {r['dataset']} | {r['config']} | {r['method']} | {_fmt(r['test_mean'], r['test_std'])} "
            f"| {r['with_network']}/{r['runs']} | {paired} | {_fmt(r['train_mean'])} | {r['time_mean']:.1f} | {gap} "
            f"| {st} |"
        )
    lines += [
        "",
        f"Best MIP method (by mean test accuracy, among those with a network on every set; {time_limit:g} s per run) "
        "vs the straight-through baseline:",
        "",
        "| data | training set | STE | best MIP | method | MIP − STE | MIP better |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comp:
        diff = "—" if c["difference"] is None else f"{c['difference']:+.3f}"
        lines.append(
            f"| {c['dataset']} | {c['config']} | {_fmt(c['ste_mean'])} | {_fmt(c['best_mip_mean'])} "
            f"| {c['best_mip'] or '—'} | {diff} | {'yes' if c['mip_beats_ste'] else 'no'} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="digits k in {1, 2}, 2 sets, 3 s, two methods")
    parser.add_argument("--time-limit", type=float, default=None, help=f"seconds per MIP run (default {TIME_LIMIT:g})")
    parser.add_argument("--sets", type=int, default=None, help=f"random training sets per configuration ({SETS})")
    parser.add_argument("--methods", default=None, help=f"comma-separated subset of {list(METHODS)}")
    parser.add_argument("--datasets", default=None, help=f"comma-separated subset of {list(CONFIGS)}")
    parser.add_argument("--workers", type=int, default=2, help="parallel MIP runs (processes; default 2)")
    parser.add_argument("--threads", type=int, default=1, help="CP-SAT threads per run (default 1)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_bnn_mip[_quick].json)")
    args = parser.parse_args(argv)
    time_limit = args.time_limit or (3.0 if args.quick else TIME_LIMIT)
    sets = args.sets or (2 if args.quick else SETS)
    methods = (
        [m.strip() for m in args.methods.split(",") if m.strip()]
        if args.methods
        else list(QUICK_METHODS if args.quick else DEFAULT_METHODS)
    )
    for m in methods:
        if m not in METHODS:
            parser.error(f"--methods: expected names from {list(METHODS)}, got {m!r}")
    configs = {"digits": [("k", 1), ("k", 2)]} if args.quick else dict(CONFIGS)
    if args.datasets:
        names = [d.strip() for d in args.datasets.split(",") if d.strip()]
        for d in names:
            if d not in CONFIGS:
                parser.error(f"--datasets: expected names from {list(CONFIGS)}, got {d!r}")
        configs = {d: configs.get(d, CONFIGS[d]) for d in names}
    if sets < 1 or args.workers < 1 or args.threads < 1 or not (math.isfinite(time_limit) and time_limit > 0):
        parser.error("--sets, --workers, --threads must be >= 1 and --time-limit positive")
    default_out = f"bench_bnn_mip{'_quick' if args.quick else ''}.json"
    out = Path(args.out or Path(__file__).parent / "results" / default_out)

    protocol = {
        "hidden": HIDDEN,
        "weights": WEIGHTS,
        "sets": sets,
        "time_limit_s": time_limit,
        "threads_per_run": args.threads,
        "workers": args.workers,
        "configs": {d: [label(*c) for c in cs] for d, cs in configs.items()},
        "scaling": {d: SCALING[d] for d in configs},
        "methods": {
            m: dict(zip(("formulation", "method", "ste_warm_start"), METHODS[m], strict=True)) for m in methods
        },
        "baseline": "tamejax.bnn.gradient.fit_ste: Adam, lrs (1e-3, 3e-3, 1e-2, 3e-2) x 4 inits, "
        "<= 300 full-batch steps, "
        "selection on a stratified 20% hold-out (training set when k=1), refit on the whole training set",
        "test_split": "all examples not in the training set",
    }
    machine = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    records: list[dict] = []
    t_start = time.perf_counter()

    def save(final: bool) -> tuple[list[dict], list[dict]]:
        rows = summarize(records, methods, sets)
        comp = comparison(rows)
        record = {
            "benchmark": "bench_bnn_mip",
            "quick": args.quick,
            "finished": final,
            "elapsed_s": time.perf_counter() - t_start,
            "protocol": protocol,
            "machine": {**machine, "load_average_end": os.getloadavg() if hasattr(os, "getloadavg") else None},
            "summary": rows,
            "comparison": comp,
            "runs": records,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(out)
        return rows, comp

    total = sum(len(cs) for cs in configs.values()) * sets * (len(methods) + 1)
    print(
        f"bench_bnn_mip: hidden {HIDDEN}, {WEIGHTS} weights, {sets} sets per configuration, {time_limit:g} s per MIP "
        f"run, CP-SAT threads={args.threads}, {args.workers} worker process(es); methods {methods} + ste baseline",
        flush=True,
    )
    ctx = multiprocessing.get_context("spawn")  # JAX in the parent: never fork it
    with (
        cf.ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool,
        tqdm(total=total, desc="bench_bnn_mip", unit="run") as bar,
    ):
        pending = set()
        for s in range(sets):  # set-major order: an interrupted run still covers every configuration
            for name, cs in configs.items():
                X, y = load(name)
                for kind, size in cs:
                    tr = draw(y, kind, size, s)
                    meta = {"dataset": name, "config": label(kind, size), "set": s}
                    rec, ste_params = run_ste(name, X, y, tr, SCALING[name], s, meta)
                    records.append(rec)
                    bar.update(1)
                    for m in methods:
                        task = {
                            **meta,
                            "method": m,
                            "train_idx": tr.tolist(),
                            "scaling": SCALING[name],
                            "time_limit": time_limit,
                            "threads": args.threads,
                            "warm": ste_params,
                        }
                        pending.add(pool.submit(run_mip, task))
                    # keep the queue short so that the baseline runs interleave with the MIP runs
                    while len(pending) > 2 * args.workers * len(methods):
                        done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                        for f in done:
                            records.append(f.result())
                            bar.set_postfix_str(f"{records[-1]['dataset']} {records[-1]['config']} set {s}")
                            bar.update(1)
                        save(False)
        for f in cf.as_completed(pending):
            records.append(f.result())
            bar.update(1)
            save(False)
    rows, comp = save(True)
    print()
    print(markdown(rows, comp, time_limit))
    digits = [c for c in comp if c["dataset"] == "digits"]
    bc = [c for c in comp if c["dataset"] == "breast_cancer"]
    if digits or bc:
        met = all(c["mip_beats_ste"] for c in digits + bc)
        print(
            f"\nissue target (best MIP mean > STE mean at every digits k <= 10 and on breast cancer n=100): "
            f"{'met' if met else 'NOT met'}"
        )
    print(f"records written to {out} ({time.perf_counter() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
