"""Predict-then-optimize on PyEPO's shortest-path protocol: test regret and training time per epoch.

Protocol (the PyEPO paper's shortest-path setting): a 5x5 grid, ``num_data=2000,
num_features=5, deg=4, noise_width=0.5, seed=42`` from ``tamejax.problems.shortest_path_data``
(PyEPO's generator, reproduced bit for bit), split 1000 train / 1000 test with
``sklearn.model_selection.train_test_split(random_state=42)``, a linear model (``flax.linen.Dense``),
Adam with learning rate 1e-2, batch 32, 20 epochs, OR-Tools GLOP. Methods:

* ``spo+``: ``spo_plus_loss`` (Elmachtoub & Grigas);
* ``pfyl``: ``fenchel_young_loss``, sigma 1, 3 samples (Berthet et al.);
* ``dbb``: ``interpolation``, lambda 20, loss = regret ``c . x^ - z*`` (Vlastelica et al.);
* ``dpo``: ``perturbed``, sigma 1, 3 samples, loss = squared error to ``x*`` (Berthet et al.);
* ``identity``: negative identity, loss = regret (Sahoo et al.);
* ``imle``: ``imle``, sigma 1, lambda 10, 3 samples, loss = squared error to ``x*`` (Niepert et al.).

Each training step (loss, gradient, optax update) is one ``jax.jit``-compiled function. The runs
being compared (tamejax, PyEPO jit, PyEPO eager) alternate epoch by epoch. Reported
per method: normalized test regret after the last epoch (PyEPO's definition) and the median
seconds per training epoch (epochs after the first, which includes compilation).

When the package ``pyepo`` is importable (``pip install pyepo torch scikit-learn``: it is never a
tamejax dependency), the same training runs, in the same process, from the same initial
parameters and batch order, with PyEPO's JAX losses (``pyepo.func.jax``) and PyEPO's OR-Tools
model (``pyepo.model.ort.shortestPathModel``, GLOP): once with the step under ``jax.jit`` (PyEPO's
losses accept an explicit key for that) and once eagerly (PyEPO's stateful default), and the
script prints the per-epoch time ratios.

Usage::

    python benchmarks/bench_pto.py            # the protocol: 20 epochs
    python benchmarks/bench_pto.py --quick    # 3 epochs (a smoke run of a minute or two)

Records go to ``benchmarks/results/bench_pto.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_bridge import write_record  # noqa: E402

import tamejax  # noqa: E402
from tamejax import estimators as E  # noqa: E402
from tamejax.problems import shortest_path, shortest_path_data  # noqa: E402

GRID = (5, 5)
METHODS = ("spo+", "pfyl", "dbb", "dpo", "identity", "imle")
# Normalized test regret (%) PyEPO reports for this protocol (the targets, +- 0.5 point).
PUBLISHED = {"spo+": 7.59, "pfyl": 7.29, "dbb": 15.12}
SAMPLES, SIGMA, DBB_LAMBDA, IMLE_LAMBDA = 3, 1.0, 20.0, 10.0


def split(x: np.ndarray, c: np.ndarray):
    """The protocol's split (scikit-learn's when installed; else an error naming it)."""
    try:
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("bench_pto needs scikit-learn for the protocol's split: pip install scikit-learn") from exc
    return train_test_split(x, c, test_size=1000, random_state=42)


def tamejax_loss(method: str, oracle):
    """loss(theta, c, x_true, z_true, key) for a method, with tamejax's estimators."""

    def loss(theta, c, w, z, key):
        if method == "spo+":
            return jnp.mean(E.spo_plus_loss(oracle, theta, c, w))
        if method == "pfyl":
            return jnp.mean(E.fenchel_young_loss(oracle, theta, w, key, num_samples=SAMPLES, sigma=SIGMA))
        if method == "dbb":
            return jnp.mean(jnp.sum(c * E.interpolation(oracle, theta, lam=DBB_LAMBDA), -1) - z)
        if method == "dpo":
            xb = E.perturbed(oracle, theta, key, num_samples=SAMPLES, sigma=SIGMA)
            return jnp.mean(jnp.sum((xb - w) ** 2, -1))
        if method == "identity":
            return jnp.mean(jnp.sum(c * E.identity(oracle, theta), -1) - z)
        if method == "imle":
            xb = E.imle(oracle, theta, key, num_samples=SAMPLES, sigma=SIGMA, lam=IMLE_LAMBDA)
            return jnp.mean(jnp.sum((xb - w) ** 2, -1))
        raise ValueError(f"unknown method {method!r}")

    return loss


def pyepo_loss(method: str, optmodel, jit: bool):
    """The same losses with PyEPO's JAX modules (``pyepo.func.jax``)."""
    from pyepo.func import jax as pf

    seed = 135
    if method == "spo+":
        m = pf.SPOPlus(optmodel)
        return lambda theta, c, w, z, key: m(theta, c, w, z[:, None])
    if method == "pfyl":
        m = pf.perturbedFenchelYoung(optmodel, n_samples=SAMPLES, sigma=SIGMA, seed=seed)
        return lambda theta, c, w, z, key: m(theta, w, key=key if jit else None)
    if method == "dbb":
        m = pf.blackboxOpt(optmodel, lambd=DBB_LAMBDA)
        return lambda theta, c, w, z, key: jnp.mean(jnp.sum(c * m(theta), -1) - z)
    if method == "dpo":
        m = pf.perturbedOpt(optmodel, n_samples=SAMPLES, sigma=SIGMA, seed=seed)
        return lambda theta, c, w, z, key: jnp.mean(jnp.sum((m(theta, key=key if jit else None) - w) ** 2, -1))
    if method == "identity":
        m = pf.negativeIdentity(optmodel)
        return lambda theta, c, w, z, key: jnp.mean(jnp.sum(c * m(theta), -1) - z)
    if method == "imle":
        m = pf.implicitMLE(optmodel, n_samples=SAMPLES, sigma=SIGMA, lambd=IMLE_LAMBDA, seed=seed)
        return lambda theta, c, w, z, key: jnp.mean(jnp.sum((m(theta, key=key if jit else None) - w) ** 2, -1))
    raise ValueError(f"unknown method {method!r}")


def train(loss_fn, data, epochs: int, seed: int, jit: bool, test_regret, result: dict):
    """Train a linear model, one epoch per ``next()``: a generator, so that the runs being
    compared can alternate epoch by epoch (machine noise then hits all of them alike).
    Fills ``result`` with the per-epoch times and test regrets."""
    x_tr, c_tr, w_tr, z_tr = data
    model = nn.Dense(c_tr.shape[1])
    params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, x_tr.shape[1])))
    opt = optax.adam(1e-2)
    state = opt.init(params)

    def step(params, state, xb, cb, wb, zb, key):
        def objective(p):
            return loss_fn(model.apply(p, xb), cb, wb, zb, key)

        value, grads = jax.value_and_grad(objective)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    step = jax.jit(step) if jit else step
    order_rng = np.random.default_rng(seed)  # the same batch order for every method and library
    key = jax.random.PRNGKey(seed)
    times, regrets, losses = [], [], []
    n = x_tr.shape[0]
    for _ in range(epochs):
        perm = order_rng.permutation(n)
        t0 = time.perf_counter()
        total = 0.0
        for i in range(0, n, 32):
            idx = perm[i : i + 32]
            key, sub = jax.random.split(key)
            params, state, value = step(params, state, x_tr[idx], c_tr[idx], w_tr[idx], z_tr[idx], sub)
            total += float(value) * len(idx)
        jax.block_until_ready(params)
        times.append(time.perf_counter() - t0)
        losses.append(total / n)
        regrets.append(float(test_regret(model, params)))
        steady = times[1:] if len(times) > 1 else times
        result.update(
            test_regret=regrets[-1],
            test_regret_per_epoch=list(regrets),
            train_loss_per_epoch=list(losses),
            epoch_seconds=list(times),
            median_epoch_seconds=statistics.median(steady),
            first_epoch_seconds=times[0],
        )
        yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 epochs (a smoke run)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 20, or 3 with --quick)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    parser.add_argument("--workers", type=int, default=None, help="tamejax solver processes (default: all cores)")
    parser.add_argument("--no-pyepo", action="store_true", help="skip PyEPO even if it is importable")
    parser.add_argument("--pyepo-modes", default="jit,eager", help="PyEPO runs: 'jit', 'eager' or both")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bench_pto.json"))
    args = parser.parse_args(argv)
    epochs = args.epochs or (3 if args.quick else 20)
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            parser.error(f"--methods: expected names from {METHODS}, got {m!r}")
    if args.workers is not None:
        tamejax.set_workers(args.workers)
    jax.config.update("jax_enable_x64", False)

    x, c = shortest_path_data(2000, 5, GRID, deg=4, noise_width=0.5, seed=42)
    x_tr, x_te, c_tr, c_te = split(x, c)
    oracle = shortest_path(GRID, backend="glop")
    x_tr, x_te = np.asarray(x_tr, np.float32), np.asarray(x_te, np.float32)
    c_tr, c_te = np.asarray(c_tr, np.float32), np.asarray(c_te, np.float32)
    sol = oracle.solve(jnp.asarray(np.concatenate([c_tr, c_te])))
    if not bool(jnp.all(sol.ok)):
        raise SystemExit("bench_pto: a true-cost shortest path failed to solve")
    w_all, z_all = np.asarray(sol.x, np.float32), np.asarray(sol.objective, np.float32)
    w_tr, z_tr, z_te = w_all[:1000], z_all[:1000], z_all[1000:]
    data = (x_tr, c_tr, w_tr, z_tr)

    @jax.jit
    def _regret(theta, c, z):
        return E.regret(oracle, theta, c, z)

    def test_regret(model, params):
        return _regret(model.apply(params, x_te), c_te, z_te)

    runs = [("tamejax", True)]
    pyepo_model = None
    if not args.no_pyepo:
        try:
            import pyepo  # noqa: F401
            from pyepo.model.ort import shortestPathModel

            pyepo_model = shortestPathModel(GRID, solver="glop")
            runs += [(f"pyepo_{mode}", mode == "jit") for mode in args.pyepo_modes.split(",") if mode]
        except ImportError:
            print("pyepo is not importable: the PyEPO comparison is skipped")
    results: dict = {m: {name: {} for name, _ in runs} for m in methods}
    with tqdm(total=len(methods) * len(runs) * epochs, desc="bench_pto", unit="epoch") as bar:
        for method in methods:
            # The runs of one method alternate epoch by epoch, from the same initial parameters.
            trainers = []
            for name, jit in runs:
                loss_fn = tamejax_loss(method, oracle) if name == "tamejax" else pyepo_loss(method, pyepo_model, jit)
                trainers.append((name, train(loss_fn, data, epochs, 0, jit, test_regret, results[method][name])))
            for epoch in range(epochs):
                for name, trainer in trainers:
                    bar.set_postfix_str(f"{method}/{name} epoch {epoch + 1}/{epochs}")
                    next(trainer)
                    bar.update(1)

    print()
    print(f"Shortest path {GRID[0]}x{GRID[1]}, deg 4, noise 0.5, 1000 train / 1000 test, {epochs} epochs, GLOP")
    print(
        f"tamejax: {tamejax.get_workers()} solver worker process(es) (0: in-process); "
        "PyEPO: its default, one process (processes=1)"
    )
    header = f"{'method':<9} {'run':<12} {'test regret':>12} {'published':>10} {'s/epoch':>9} {'tamejax speed-up':>17}"
    print(header)
    print("-" * len(header))
    for method in methods:
        ours = results[method]["tamejax"]["median_epoch_seconds"]
        for name, _ in runs:
            r = results[method][name]
            pub = f"{PUBLISHED[method]:.2f} %" if method in PUBLISHED and name == "tamejax" else ""
            ratio = "" if name == "tamejax" else f"{r['median_epoch_seconds'] / ours:.2f}x"
            if name != "tamejax":
                r["tamejax_speedup"] = r["median_epoch_seconds"] / ours
            print(
                f"{method:<9} {name:<12} {100 * r['test_regret']:>10.2f} % {pub:>10} "
                f"{r['median_epoch_seconds']:>9.3f} {ratio:>17}"
            )
    record = {
        "benchmark": "bench_pto",
        "protocol": {
            "grid": GRID,
            "num_data": 2000,
            "num_features": 5,
            "deg": 4,
            "noise_width": 0.5,
            "seed": 42,
            "split": "train_test_split(test_size=1000, random_state=42)",
            "model": "flax.linen.Dense",
            "optimizer": "adam(1e-2)",
            "batch": 32,
            "epochs": epochs,
            "backend": "glop",
            "samples": SAMPLES,
            "sigma": SIGMA,
            "dbb_lambda": DBB_LAMBDA,
            "imle_lambda": IMLE_LAMBDA,
        },
        "published_regret_percent": PUBLISHED,
        "results": results,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "jax": jax.__version__,
            "tamejax_workers": tamejax.get_workers(),
        },
        "quick": args.quick,
    }
    write_record(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
