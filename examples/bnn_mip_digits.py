"""Train a ternary network on a few digits by mixed-integer programming, then run it bit-packed.

The network of :mod:`tamejax.bnn`: the 64 pixel counts of an 8x8 digit (integers 0..16, used as they
are: ``load_data``'s exact scaling is the identity here), one hidden layer ``h = sign(W x + b)``
(``sign(0) = +1``), scores ``W_2 h + b_2`` and the prediction ``argmax`` (ties: lowest index); every
weight and bias in {-1, 0, 1}. Few-shot training set (Icarte et al. 2019's protocol): ``--k`` images
per class drawn at random, the rest of the 1797 images is the test set.

1. the straight-through baseline (:func:`tamejax.bnn.gradient.fit_ste`: Adam, a learning-rate grid,
   best on a held-out part of the training set);
2. the MIP (:func:`tamejax.bnn.fit_mip`, CP-SAT, formulation ``--formulation``, default Icarte et al.'s
   ``max_margin``: fit every training example with the largest hidden-layer margins), warm-started from
   the baseline's network (a solution hint), within ``--time-limit`` seconds; a tqdm bar shows the
   incumbent, the bound and the gap;
3. export to bit-packed inference (:func:`tamejax.bnn.to_packed`: the hidden activations and the
   output layer's ternary weights are packed 32 per ``uint32`` word, two bit planes for ternary values,
   XNOR-popcount products), check that the packed network predicts exactly what the MIP network
   predicts on every test image, and compare sizes: 2 bits per ternary weight vs float32.

    python examples/bnn_mip_digits.py               # k = 5 images per class, 60 s of CP-SAT
    python examples/bnn_mip_digits.py --k 10 --time-limit 120 --formulation min_weight
    python examples/bnn_mip_digits.py --quick       # smoke run: k = 2, 5 s, max_correct

Prints the accuracies, the agreement of packed and MIP predictions, the sizes, and writes
``examples/out/bnn_mip_digits.png`` (the 16 hidden units' ternary 8x8 weight maps and the solver's
incumbent / bound over time) and ``examples/out/bnn_mip_digits.json``.

References:
  Icarte, R. T., Illanes, L., Castro, M. P., Cire, A. A., McIlraith, S. A. & Beck, J. C. (2019).
  Training binarized neural networks using MIP and CP. CP 2019.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tamejax.bnn import fit_mip, load_data, model_size_bytes, predict, scores, to_packed
from tamejax.bnn.gradient import fit_ste

DEFAULT_OUT = Path(__file__).parent / "out" / "bnn_mip_digits.png"
FORMULATIONS = ("max_margin", "min_weight", "max_correct", "min_hinge", "sat_margin")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=None, help="training images per class (default 5; 2 with --quick)")
    parser.add_argument("--hidden", type=int, default=16, help="hidden units (default 16)")
    parser.add_argument("--time-limit", type=float, default=None, help="CP-SAT seconds (default 60; 5 with --quick)")
    parser.add_argument(
        "--formulation",
        default=None,
        help=f"one of {FORMULATIONS} (default max_margin; max_correct with --quick)",
    )
    parser.add_argument("--threads", type=int, default=2, help="CP-SAT threads (default 2)")
    parser.add_argument("--no-warm-start", action="store_true", help="solve without the straight-through hint")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training set, the baseline and CP-SAT")
    parser.add_argument("--quick", action="store_true", help="smoke run: k = 2, 5 s, max_correct")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"plot file (default {DEFAULT_OUT}); JSON beside it")
    args = parser.parse_args(argv)
    if args.k is None:
        args.k = 2 if args.quick else 5
    if args.time_limit is None:
        args.time_limit = 5.0 if args.quick else 60.0
    if args.formulation is None:
        args.formulation = "max_correct" if args.quick else "max_margin"
    if args.formulation not in FORMULATIONS:
        parser.error(f"--formulation: expected one of {FORMULATIONS}, got {args.formulation!r}")
    if not 1 <= args.k <= 100:
        parser.error(f"--k: expected 1..100 images per class, got {args.k}")
    if args.hidden < 1 or args.threads < 1:
        parser.error("--hidden and --threads: expected >= 1")
    if not (math.isfinite(args.time_limit) and args.time_limit > 0):
        parser.error(f"--time-limit: expected a positive number of seconds, got {args.time_limit}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Few-shot digits: STE baseline, MIP, packed export; print, plot, save."""
    args = parse_args(argv)
    from sklearn.datasets import load_digits

    digits = load_digits()
    X, y = digits.data, digits.target.astype(np.int64)
    rng = np.random.default_rng(args.seed)
    tr = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), args.k, replace=False) for c in range(10)]))
    te = np.setdiff1d(np.arange(y.size), tr)
    data = load_data(X[tr], y[tr], n_classes=10)
    print(
        f"digits: {tr.size} training images ({args.k} per class), {te.size} test images; network 64 -> "
        f"{args.hidden} -> 10, ternary weights; input scaling x_int = rint(x * {data.scaling.scale[0]:g})"
    )

    with tqdm(total=3, desc="bnn_mip_digits", unit="stage", file=sys.stderr) as stages:
        stages.set_postfix_str("straight-through baseline")
        t0 = time.perf_counter()
        ste, ste_rep = fit_ste(data.X, data.y, (args.hidden,), "ternary", n_classes=10, seed=args.seed)
        ste = dataclasses.replace(ste, scaling=data.scaling)
        ste_time = time.perf_counter() - t0
        stages.update(1)

        stages.set_postfix_str(f"MIP {args.formulation}")
        params, rep = fit_mip(
            X[tr],
            y[tr],
            (args.hidden,),
            formulation=args.formulation,
            weights="ternary",
            time_limit=args.time_limit,
            threads=args.threads,
            seed=args.seed,
            n_classes=10,
            warm_start=None if args.no_warm_start else ste,
            progress=True,
        )
        stages.update(1)

        ste_acc = float(np.mean(predict(ste, X[te]) == y[te]))
        print(
            f"straight-through baseline: train {ste_rep.train_accuracy:.3f}, test {ste_acc:.3f} "
            f"(lr {ste_rep.lr:g}, {ste_rep.epochs} steps, validation: {ste_rep.validation}; {ste_time:.1f} s)"
        )
        gap = "n/a" if not math.isfinite(rep.gap) else f"{rep.gap:.3f}"
        print(
            f"MIP {args.formulation}: status {rep.status.name}, objective {rep.objective:g}, bound {rep.bound:g}, "
            f"gap {gap}, {rep.solve_time:.1f} s, {rep.n_variables} variables, {rep.n_constraints} constraints"
        )
        if params is None:
            stages.close()
            print(f"no network found within {args.time_limit:g} s: {rep.message}")
            print("try a longer --time-limit, or keep the straight-through warm start")
            return 1
        mip_acc = float(np.mean(predict(params, X[te]) == y[te]))
        print(f"MIP network: train {rep.train_accuracy:.3f}, test {mip_acc:.3f}")

        stages.set_postfix_str("bit-packed export")
        packed = to_packed(params)
        packed_scores = np.asarray(packed(X[te]))
        packed_pred = np.argmax(packed_scores, axis=1)
        mip_pred = predict(params, X[te])
        agreement = float(np.mean(packed_pred == mip_pred))
        exact_scores = bool(np.array_equal(packed_scores, scores(params, X[te]).astype(np.float32)))
        stages.update(1)

    n_weights = sum(lay["kernel"].size + lay["bias"].size for lay in params.layers)
    ternary_bytes = model_size_bytes(params)
    float_bytes = 4 * n_weights
    print(
        f"packed inference: predictions agree with the MIP network on {agreement:.1%} of the {te.size} test images "
        f"(scores identical: {exact_scores}); packed test accuracy {float(np.mean(packed_pred == y[te])):.3f}"
    )
    print(
        f"model size: {n_weights} weights and biases; ternary at 2 bits: {ternary_bytes} bytes; as held by the "
        f"packed layers (integer first layer + two 32-bit-word planes): {packed.size_bytes} bytes; "
        f"float32: {float_bytes} bytes ({float_bytes / ternary_bytes:.0f}x the ternary size)"
    )

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "n_train": int(tr.size),
        "n_test": int(te.size),
        "ste": {"train_accuracy": ste_rep.train_accuracy, "test_accuracy": ste_acc, "seconds": ste_time},
        "mip": {
            "status": rep.status.name,
            "objective": rep.objective if math.isfinite(rep.objective) else None,
            "bound": rep.bound if math.isfinite(rep.bound) else None,
            "gap": rep.gap if math.isfinite(rep.gap) else None,
            "train_accuracy": rep.train_accuracy,
            "test_accuracy": mip_acc,
            "solve_time": rep.solve_time,
        },
        "packed": {"agreement_with_mip": agreement, "identical_scores": exact_scores, "bytes": packed.size_bytes},
        "size_bytes": {"ternary_2bit": ternary_bytes, "float32": float_bytes},
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot")
        return 0
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kernel = np.asarray(params.layers[0]["kernel"])  # (64, hidden)
    cols = min(8, args.hidden)
    rows = math.ceil(args.hidden / cols)
    fig = plt.figure(figsize=(2 + 1.3 * cols, 1.4 * rows + 3.2))
    grid = fig.add_gridspec(rows + 2, cols)
    for j in range(args.hidden):
        ax = fig.add_subplot(grid[j // cols, j % cols])
        ax.imshow(kernel[:, j].reshape(8, 8), cmap="bwr", vmin=-1, vmax=1)
        ax.set_title(f"unit {j}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = fig.add_subplot(grid[rows:, :])
    if rep.history:
        t, inc, bnd = (np.asarray(v, float) for v in zip(*rep.history, strict=True))
        ax.step(t, inc, where="post", marker="o", label="incumbent")
        finite = np.isfinite(bnd)
        if finite.any():
            ax.step(t[finite], bnd[finite], where="post", marker="x", label="bound")
        ax.legend(fontsize=8)
    ax.set(
        xlabel="seconds",
        ylabel=f"{args.formulation} objective ({rep.sense})",
        title=f"CP-SAT: {rep.status.name}; test accuracy MIP {mip_acc:.3f} vs straight-through {ste_acc:.3f}",
    )
    ax.grid(alpha=0.3)
    fig.suptitle(f"ternary first-layer weights (red +1, blue -1), digits k={args.k}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"plot saved to {out} (and {out.with_suffix('.json')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
