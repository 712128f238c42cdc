"""Predict-then-optimize on PyEPO's shortest path benchmark, trained end to end with every estimator.

The setting (Elmachtoub & Grigas 2022; Tang & Khalil, PyEPO): each instance has features
``f in R^5`` and unknown arc costs ``c in R^40`` of a 5x5 grid; a decision maker predicts
``theta = g_w(f)`` and takes the shortest path ``x*(theta) = argmin { theta . x : x in X }``
(``X``: the source-to-sink paths, an LP solved by GLOP). The quality of ``g_w`` is the
*regret* of its decisions under the true costs,

$$\\mathrm{regret}(\\theta, c) = c^\\top x^*(\\theta) - \\min_{x \\in X} c^\\top x,$$

reported normalized by the total true optimal cost (``tamejax.estimators.regret``, PyEPO's
definition). Costs are a degree-4 polynomial of the features with multiplicative noise (PyEPO's
``genData``), so the linear model ``g_w`` (one ``flax.linen.Dense`` layer, as in PyEPO) is
misspecified and fitting the costs well in mean squared error does not give the best decisions:
training *through* the solver, on a decision-focused loss, does better. But ``x*`` is piecewise
constant (zero gradient almost everywhere), hence the estimators of ``tamejax.estimators``:

=============  =========================================================  ===========================
method         loss (mean over the batch)                                 reference
=============  =========================================================  ===========================
2-stage        ``|theta - c|^2`` (cost regression; the solver is unused)   baseline
SPO+           ``spo_plus_loss``: convex surrogate upper bound of regret    Elmachtoub & Grigas 2022
PFYL           ``fenchel_young_loss`` (sigma 1, 3 samples) to ``x*(c)``    Berthet et al. 2020
DBB            regret of ``interpolation(theta)`` (lambda 20)              Vlastelica et al. 2020
DPO            ``|perturbed(theta) - x*(c)|^2`` (sigma 1, 3 samples)       Berthet et al. 2020
NID            regret of ``identity(theta)`` (negative identity backward)  Sahoo et al. 2023
I-MLE          ``|imle(theta) - x*(c)|^2`` (lambda 10, 3 samples)          Niepert et al. 2021
=============  =========================================================  ===========================

Every training step (forward, all the solves of the batch in one batched host call, backward,
optax Adam update) is one ``jax.jit``-compiled function; random estimators get a fresh key per
step. After each epoch the normalized test regret is measured on 1000 held-out instances.

    python examples/predict_then_optimize.py                      # all methods, 10 epochs
    python examples/predict_then_optimize.py --methods spo+,pfyl --epochs 20
    python examples/predict_then_optimize.py --quick              # smoke run, a few seconds

Prints the final table and writes ``examples/out/predict_then_optimize.png`` (test regret per
epoch).

References:
  Elmachtoub, A. N. & Grigas, P. (2022). Smart "Predict, then Optimize". Management Science 68(1).
  Berthet, Q. et al. (2020). Learning with differentiable perturbed optimizers. NeurIPS.
  Vlastelica, M. et al. (2020). Differentiation of blackbox combinatorial solvers. ICLR.
  Sahoo, S. S. et al. (2023). Backpropagation through combinatorial algorithms: identity with
  projection works. ICLR.
  Niepert, M., Minervini, P. & Franceschi, L. (2021). Implicit MLE: backpropagating through
  discrete exponential family distributions. NeurIPS.
  Tang, B. & Khalil, E. B. (2024). PyEPO: a PyTorch-based end-to-end predict-then-optimize
  library for linear and integer programming. Mathematical Programming Computation.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import tamejax as tj
import tamejax.estimators as est
from tamejax.problems import shortest_path, shortest_path_data

GRID = (5, 5)
NUM_FEATURES = 5
DEFAULT_OUT = Path(__file__).parent / "out" / "predict_then_optimize.png"


# ----------------------------------------------------------------------------------- losses
# One signature for all: (oracle, theta, batch, key) -> scalar, where batch holds the true costs
# "c", the true optimal paths "x" (0/1 rows) and the true optimal values "z" of the instances.
def sq_dist(a: jax.Array, b: jax.Array) -> jax.Array:
    """Squared distance per instance, averaged over the batch."""
    return jnp.mean(jnp.sum((a - b) ** 2, axis=-1))


def realized_regret(x_hat: jax.Array, batch: dict) -> jax.Array:
    """Regret ``c . x_hat - z*`` of the decisions, averaged over the batch."""
    return jnp.mean(jnp.sum(batch["c"] * x_hat, axis=-1) - batch["z"])


def two_stage(oracle, theta, batch, key):
    """Two-stage baseline: mean squared error of the predicted costs (no solve)."""
    return jnp.mean((theta - batch["c"]) ** 2)


def spo_plus(oracle, theta, batch, key):
    """SPO+ loss, given the true costs and the true optimal paths."""
    return jnp.mean(est.spo_plus_loss(oracle, theta, batch["c"], batch["x"]))


def pfyl(oracle, theta, batch, key):
    """Perturbed Fenchel-Young loss to the true optimal paths (Gaussian noise, sigma 1, 3 samples)."""
    return jnp.mean(est.fenchel_young_loss(oracle, theta, batch["x"], key, num_samples=3, sigma=1.0))


def dbb(oracle, theta, batch, key):
    """Regret of ``x*(theta)``, differentiated by interpolation (lambda 20)."""
    return realized_regret(est.interpolation(oracle, theta, lam=20.0), batch)


def dpo(oracle, theta, batch, key):
    """Squared distance of the perturbed (expected) path to the true path (sigma 1, 3 samples)."""
    return sq_dist(est.perturbed(oracle, theta, key, num_samples=3, sigma=1.0), batch["x"])


def nid(oracle, theta, batch, key):
    """Regret of ``x*(theta)``, differentiated by the negative identity."""
    return realized_regret(est.identity(oracle, theta), batch)  # -I backward (sense "min")


def imle(oracle, theta, batch, key):
    """Squared distance of the I-MLE path average to the true path (lambda 10, 3 samples)."""
    return sq_dist(est.imle(oracle, theta, key, num_samples=3, sigma=1.0, lam=10.0), batch["x"])


# CLI name -> (display name, loss)
METHODS: dict[str, tuple[str, Callable]] = {
    "two-stage": ("2-stage (MSE)", two_stage),
    "spo+": ("SPO+", spo_plus),
    "pfyl": ("PFYL", pfyl),
    "dbb": ("DBB", dbb),
    "dpo": ("DPO", dpo),
    "nid": ("NID (identity)", nid),
    "imle": ("I-MLE", imle),
}


# ----------------------------------------------------------------------------------- training
def make_step(model: nn.Module, optimizer: optax.GradientTransformation, oracle, loss_fn: Callable) -> Callable:
    """One training step as a single jitted function: loss, gradient and Adam update."""

    def step(params, opt_state, key, feats, batch):
        def objective(p):
            return loss_fn(oracle, model.apply(p, feats), batch, key)

        loss, grads = jax.value_and_grad(objective)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(step)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (``argv=None``: ``sys.argv``), validated."""
    parser = argparse.ArgumentParser(
        description="predict-then-optimize on a 5x5 shortest path with every tamejax estimator"
    )
    parser.add_argument("--epochs", type=int, default=10, help="training epochs per method (default 10)")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: 200 train / 200 test, 2 epochs")
    parser.add_argument("--workers", type=int, default=None, help="solver worker processes (tamejax.set_workers)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model initialization and the noise")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"plot file (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    args.methods = [m.strip().lower() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        parser.error(f"--methods: expected a comma-separated subset of {','.join(METHODS)}, got {unknown or '[]'}")
    if args.epochs < 1:
        parser.error(f"--epochs: expected an integer >= 1, got {args.epochs}")
    if args.workers is not None and args.workers < 0:
        parser.error(f"--workers: expected an integer >= 0, got {args.workers}")
    if args.quick:
        args.epochs = min(args.epochs, 2)
    return args


def main(argv: list[str] | None = None) -> int:
    """Train every requested method, print the table, save the plot; returns the exit status."""
    args = parse_args(argv)
    if args.workers is not None:
        tj.set_workers(args.workers)
    num_train, num_test = (200, 200) if args.quick else (1000, 1000)
    batch_size, lr = 32, 1e-2

    # Data: PyEPO's shortest path generator, split at random into train and test.
    feats, costs = shortest_path_data(num_train + num_test, NUM_FEATURES, grid=GRID, deg=4, noise_width=0.5, seed=135)
    perm = np.random.default_rng(246).permutation(len(feats))
    train, test = perm[:num_train], perm[num_train:]
    f_train, f_test = feats[train].astype(np.float32), feats[test].astype(np.float32)
    c_train, c_test = costs[train], costs[test]

    # The solution map of the grid (an LP with integral vertices: GLOP returns paths). The true
    # solutions and optimal values are solved once, each set in one batched call.
    oracle = shortest_path(GRID)
    sol_train, sol_test = oracle.solve(c_train), oracle.solve(c_test)
    data = {"c": c_train, "x": np.asarray(sol_train.x, np.float32), "z": np.asarray(sol_train.objective, np.float32)}
    z_test = np.asarray(sol_test.objective, np.float32)

    model = nn.Dense(oracle.n)  # linear model, as in PyEPO
    optimizer = optax.adam(lr)
    init_params = model.init(jax.random.key(args.seed), f_train[:1])  # same start for every method
    evaluate = jax.jit(lambda p: est.regret(oracle, model.apply(p, f_test), c_test, z_test))
    regret0 = float(evaluate(init_params))

    steps_per_epoch = num_train // batch_size  # the last partial batch is dropped: one shape, one compilation
    print(
        f"shortest path {GRID[0]}x{GRID[1]} ({oracle.n} arcs), {num_train} train / {num_test} test, "
        f"deg 4, noise 0.5; batch {batch_size}, Adam lr {lr}; {steps_per_epoch} steps/epoch; "
        f"solver workers: {tj.get_workers()}"
    )
    print(f"test regret of the initial model: {100 * regret0:.2f} %")

    curves: dict[str, list[float]] = {}
    timing: dict[str, tuple[float, float]] = {}
    shuffle = np.random.default_rng(args.seed)
    bar = tqdm(total=len(args.methods) * args.epochs, unit="epoch", desc="training")
    for name in args.methods:
        label, loss_fn = METHODS[name]
        params, opt_state = init_params, optimizer.init(init_params)
        key = jax.random.key(args.seed + 1)
        idx0 = np.arange(batch_size)
        t0 = time.perf_counter()  # compile ahead of time, so that epochs time the training only
        step = (
            make_step(model, optimizer, oracle, loss_fn)
            .lower(params, opt_state, key, f_train[idx0], {k: v[idx0] for k, v in data.items()})
            .compile()
        )
        compile_s = time.perf_counter() - t0
        curve, train_s = [regret0], 0.0
        for epoch in range(args.epochs):
            order = shuffle.permutation(num_train)
            t0 = time.perf_counter()
            for b in range(steps_per_epoch):
                idx = order[b * batch_size : (b + 1) * batch_size]
                key, step_key = jax.random.split(key)
                params, opt_state, loss = step(
                    params, opt_state, step_key, f_train[idx], {k: v[idx] for k, v in data.items()}
                )
            loss.block_until_ready()
            train_s += time.perf_counter() - t0
            curve.append(float(evaluate(params)))
            bar.set_postfix(method=label, epoch=epoch + 1, loss=f"{float(loss):.3g}", regret=f"{100 * curve[-1]:.2f}%")
            bar.update()
        curves[label] = curve
        timing[label] = (train_s / args.epochs, compile_s)
    bar.close()

    width = max(len(label) for label in curves)
    print(f"\n{'method':<{width}}  test regret  s/epoch  compile s")
    for label, curve in curves.items():
        per_epoch, compile_s = timing[label]
        print(f"{label:<{width}}  {100 * curve[-1]:9.2f} %  {per_epoch:7.2f}  {compile_s:9.2f}")

    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot")
        return 0
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, curve in curves.items():
        ax.plot(
            range(len(curve)), 100 * np.asarray(curve), "--" if label.startswith("2-stage") else "-o", ms=3, label=label
        )
    ax.set(
        xlabel="epoch",
        ylabel="normalized test regret (%)",
        title=f"shortest path {GRID[0]}x{GRID[1]}, deg 4, noise 0.5, {num_train} training instances",
    )
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"plot saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
