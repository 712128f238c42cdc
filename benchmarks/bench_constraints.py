"""Learning hidden 0-1 constraints from observed solutions: CombOptNet's "static constraints" protocol.

Protocol (Paulus, Rolinek, Musil, Amos & Martius 2021, Sec. 5.1, ``binary_random``):
16 binary variables, ``m in {1, 2, 4, 8}`` hidden random constraints
(``tamejax.problems.static_constraints.static_constraints_data``: unit-norm rows from
``U[-0.5, 0.5]``, offsets in the cube, a random corner kept feasible), costs ``U[-1, 1]^16``
as inputs, the exact ILP solution as label, 1600 training and 1000 test examples, batch 8,
100 epochs, Adam. The learned program has the same number of constraints ``m`` as the
truth. Metric: fraction of test costs whose solution under the learned constraints equals
the true solution exactly, mean (and standard deviation) over the data-set seeds.

Methods (``tamejax.inverse``), all solving through ``tamejax.solve``/``tamejax.value``:

* ``hinge``: structured cut hinge (``cut_hinge_loss``, margin 0.01, lr 5e-3), enumeration backend;
* ``value_lp``: optimality gap to the LP relaxation value plus feasibility hinge
  (``value_gap_loss(relaxation="lp")``), ``tamejax.value``'s conservative gradient (LP duals, GLOP);
* ``value_ip``: the same gap with the integer value (enumeration): its gradient in ``(A, b)`` is
  exactly zero, so only the hinge acts (the honest outcome of the plain value-gradient route);
* ``perturbed``: gap to the Gaussian-smoothed integer value, score-function gradient
  (``perturbed_gap_loss``, sigma 0.1, 4 samples, feasibility weight 0.2, lr 2e-2), enumeration backend;
* ``hinge_const``: ``hinge`` with a constant step size (ablation of the schedule).

Adam's step size follows a cosine decay to 0 over the run (``fit_constraints(schedule="cosine")``)
except for ``hinge_const``. ``value_lp``/``value_ip`` use lr 1e-2 and feasibility weight 0.2.

Baseline measured in the same run: ``box`` = the solution ignoring every constraint
(``x_j = 1`` iff ``c_j < 0``), which is right whenever no hidden constraint is active.

Usage::

    python benchmarks/bench_constraints.py                   # the protocol, all methods
    python benchmarks/bench_constraints.py --methods hinge   # one method (records are merged)
    python benchmarks/bench_constraints.py --quick           # 1 seed, m in {1, 2}, 400/200 examples, 3 epochs

Records (one per method, m, seed; merged with the file's existing records) go to
``benchmarks/results/bench_constraints.json``; a markdown table is printed at the end.
Timings are wall-clock on whatever machine runs it (shared CPUs make them noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
from tqdm import tqdm

import tamejax
from tamejax.inverse import exact_accuracy, fit_constraints
from tamejax.problems.static_constraints import static_constraints_data

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bench_constraints.json")
METHOD_KW = {
    "hinge": {"learning_rate": 5e-3, "margin": 0.01},
    "value_lp": {"learning_rate": 1e-2, "margin": 0.01, "feasibility_weight": 0.2},
    "value_ip": {"learning_rate": 1e-2, "margin": 0.01, "feasibility_weight": 0.2},
    "perturbed": {"learning_rate": 2e-2, "margin": 0.01, "feasibility_weight": 0.2, "sigma": 0.1, "num_samples": 4},
    # the hinge with a constant Adam step size instead of the cosine decay (an ablation)
    "hinge_const": {"learning_rate": 5e-3, "margin": 0.01, "schedule": "constant", "fit_method": "hinge"},
}
TARGETS = {1: 0.95, 4: 0.80}


def load(path: str) -> dict:
    """Existing records (so that separate invocations accumulate)."""
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"records": []}


def save(path: str, data: dict) -> None:
    """Write the records atomically."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def table(records: list[dict]) -> str:
    """Markdown table: mean +- std test accuracy over seeds per method and m."""
    ms = sorted({r["m"] for r in records})
    methods = ["box"] + [m for m in METHOD_KW if any(r["method"] == m for r in records)]
    lines = [
        "| method | " + " | ".join(f"m = {m}" for m in ms) + " |",
        "|---|" + "---|" * len(ms),
    ]
    for meth in methods:
        cells = []
        for m in ms:
            if meth == "box":
                accs = list({r["seed"]: r["box_acc"] for r in records if r["m"] == m}.values())  # one per data set
                rs = []
            else:
                rs = [r for r in records if r["m"] == m and r["method"] == meth]
                accs = [r["test_acc"] for r in rs]
            if not accs:
                cells.append("-")
                continue
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            ep = f", {rs[0]['epochs']} ep" if rs else ""
            cells.append(f"{100 * statistics.mean(accs):.1f} ± {100 * sd:.1f} ({len(accs)} seeds{ep})")
        lines.append(f"| {meth} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=list(METHOD_KW), choices=list(METHOD_KW))
    ap.add_argument("--m", nargs="+", type=int, default=[1, 2, 4, 8])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--num-train", type=int, default=1600)
    ap.add_argument("--num-test", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="1 seed, m in {1, 2}, 400/200 examples, 3 epochs")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args(argv)
    if args.quick:
        args.m = [m for m in args.m if m <= 2] or [1]
        args.seeds = args.seeds[:1]
        args.epochs, args.num_train, args.num_test = 3, 400, 200
    tamejax.set_workers(0)  # cheap solves: in-process beats worker round trips
    data = load(args.out)
    jobs = [(meth, m, s) for m in args.m for s in args.seeds for meth in args.methods]
    bar = tqdm(jobs, desc="bench_constraints")
    for meth, m, seed in bar:
        bar.set_postfix(method=meth, m=m, seed=seed)
        d = static_constraints_data(m, seed, num_train=args.num_train, num_test=args.num_test)
        box = (d.c_test < 0).astype(float)
        box_acc = float(np.mean(np.all(box == d.x_test, axis=1)))
        kw = dict(METHOD_KW[meth])
        lr = kw.pop("learning_rate")
        fit_method = kw.pop("fit_method", meth)
        fit = fit_constraints(
            d.c_train,
            d.x_train,
            m,
            method=fit_method,
            epochs=args.epochs,
            batch_size=8,
            learning_rate=lr,
            seed=seed,
            c_test=d.c_test,
            x_test=d.x_test,
            eval_every=max(1, args.epochs // 10),
            progress=False,
            **kw,
        )
        rec = {
            "method": meth,
            "m": m,
            "seed": seed,
            "quick": args.quick,
            "epochs": args.epochs,
            "batch_size": 8,
            "num_train": args.num_train,
            "num_test": args.num_test,
            "learned_constraints": m,
            "hyperparameters": METHOD_KW[meth],
            "schedule": "adam, " + ("constant step size" if kw.get("schedule") == "constant" else "cosine decay to 0"),
            "test_acc": exact_accuracy(fit.params, d.c_test, d.x_test),
            "train_acc": exact_accuracy(fit.params, d.c_train, d.x_train),
            "box_acc": box_acc,
            "seconds": fit.seconds,
            "test_acc_curve": [
                (e, a) for e, a in zip(fit.history["epoch"], fit.history["test_acc"], strict=True) if a == a
            ],
            "loss_curve": fit.history["loss"],
        }
        tqdm.write(
            f"{meth:9s} m={m} seed={seed}: test {rec['test_acc']:.3f} train {rec['train_acc']:.3f} "
            f"(box {box_acc:.3f}) {fit.seconds:.0f} s"
        )
        # re-read before writing: several invocations (e.g. one per m) may share the file
        key = (meth, m, seed, args.quick)
        old = [r for r in load(args.out)["records"] if (r["method"], r["m"], r["seed"], r["quick"]) != key]
        data = {
            "benchmark": "bench_constraints",
            "protocol": "CombOptNet static constraints (binary_random), 16 binary variables",
            "machine": platform.platform(),
            "python": sys.version.split()[0],
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "records": old + [rec],
        }
        save(args.out, data)
    shown = [r for r in data["records"] if r["quick"] == args.quick]
    print()
    print(table(shown))
    print()
    for m, target in TARGETS.items():
        for meth in args.methods:
            accs = [r["test_acc"] for r in shown if r["m"] == m and r["method"] == meth]
            if accs:
                ok = "met" if statistics.mean(accs) >= target else "NOT met"
                print(f"target m={m} >= {target:.0%}: {meth} {statistics.mean(accs):.1%} -> {ok}")
    print(f"records written to {args.out}")


if __name__ == "__main__":
    main()
