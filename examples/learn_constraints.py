"""Learn two hidden constraints of a 0-1 program from observed optimal solutions.

The setting is CombOptNet's "static constraints" benchmark (Paulus et al. 2021): a hidden
program ``x*(c) = argmin { c x : A x <= b, x in {0,1}^16 }`` with ``m = 2`` random constraints
(``tamejax.problems.static_constraints.static_constraints_data``); we observe pairs
``(c, x*(c))`` and learn ``(A, b)`` (two rows, like the truth) so that the learned program
reproduces the observed solutions. Methods (``tamejax.inverse``):

* ``hinge``: structured cut hinge -- the solver's answer ``x_hat`` under the current
  constraints is a fixed point; if it is cheaper than the observation it must be cut off
  with a margin, and the observation must stay feasible (no solver gradient needed);
* ``value_lp``: optimality gap to the LP-relaxation value plus a feasibility hinge,
  differentiated with ``tamejax.value``'s conservative gradient (LP duals);
* ``perturbed``: gap to the Gaussian-smoothed integer value, score-function gradient.

Every solve is exact (``backend="enumeration"``: complete enumeration of the 65 536 points,
or GLOP for the LP relaxation) and goes through ``tamejax.solve``/``tamejax.value``, one
callback per batch of 8. After training, the learned constraints are put into a
``tamejax.nn.mip_layer.MIPLayer`` (a Flax module) to predict the test solutions, which must
agree with the accuracy measured by direct enumeration.

    python examples/learn_constraints.py             # hinge and value_lp, 20 epochs, 1600/1000 examples
    python examples/learn_constraints.py --methods hinge,perturbed --epochs 40
    python examples/learn_constraints.py --quick     # smoke run (< 60 s)

Writes ``examples/out/learn_constraints.png`` (training loss, training and test exact-solution
accuracy per epoch).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import tamejax
from tamejax.inverse import METHODS, exact_accuracy, fit_constraints, normalize_constraints
from tamejax.problems.static_constraints import static_constraints_data

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "learn_constraints.png"
LR = {"hinge": 5e-3, "value_lp": 1e-2, "value_ip": 1e-2, "perturbed": 2e-2}
EXTRA = {"value_lp": {"feasibility_weight": 0.2}, "value_ip": {"feasibility_weight": 0.2}}
EXTRA["perturbed"] = {"feasibility_weight": 0.2, "sigma": 0.1, "num_samples": 4}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description="Learn 2 hidden constraints of a 0-1 program (CombOptNet protocol).")
    p.add_argument("--methods", default="hinge,value_lp", help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--epochs", type=int, default=20, help="training epochs (the full protocol uses 100)")
    p.add_argument("--constraints", type=int, default=2, help="number of hidden (and learned) constraints")
    p.add_argument("--seed", type=int, default=0, help="data-set and initialization seed")
    p.add_argument("--quick", action="store_true", help="smoke run: 320 train / 200 test, 3 epochs, hinge only")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"plot file (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in args.methods:
        if m not in METHODS:
            p.error(f"--methods: expected names from {METHODS}, got {m!r}")
    return args


def predict_with_mip_layer(params: dict, costs: np.ndarray) -> np.ndarray:
    """Solutions of the learned program through a Flax ``MIPLayer`` (inputs: the costs)."""
    from tamejax.nn.mip_layer import MIPLayer

    A, b = (np.asarray(v, dtype=np.float64) for v in normalize_constraints(params))
    n = A.shape[1]
    template = tamejax.MIP(c=np.zeros(n), A_ub=A, b_ub=b, lb=np.zeros(n), ub=np.ones(n), integrality=True)
    layer = MIPLayer(template, output="value_and_solution", backend="enumeration")
    variables = layer.init(jax.random.PRNGKey(0), jnp.zeros((1, n)))
    _, sol = jax.jit(layer.apply)(variables, jnp.asarray(costs))
    return np.asarray(sol.x)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    num_train, num_test, epochs, methods = 1600, 1000, args.epochs, args.methods
    if args.quick:
        num_train, num_test, epochs, methods = 320, 200, 3, ["hinge"]
    tamejax.set_workers(0)  # tiny solves: in-process
    d = static_constraints_data(args.constraints, args.seed, num_train=num_train, num_test=num_test)
    box = float(np.mean(np.all((d.c_test < 0) == d.x_test, axis=1)))
    print(f"m = {args.constraints} hidden constraints, {num_train} train / {num_test} test; ignoring them: {box:.1%}")
    fits = {}
    for method in tqdm(methods, desc="methods"):
        fits[method] = fit_constraints(
            d.c_train,
            d.x_train,
            args.constraints,
            method=method,
            epochs=epochs,
            learning_rate=LR[method],
            seed=args.seed,
            c_test=d.c_test,
            x_test=d.x_test,
            eval_every=1,
            **EXTRA.get(method, {}),
        )
    results = {}
    for method, fit in fits.items():
        acc = exact_accuracy(fit.params, d.c_test, d.x_test)
        x_layer = predict_with_mip_layer(fit.params, d.c_test)
        acc_layer = float(np.mean(np.all(x_layer == d.x_test, axis=1)))
        if acc_layer != acc:
            raise RuntimeError(f"MIPLayer accuracy {acc_layer} differs from the enumeration's {acc}")
        results[method] = acc
        print(f"{method:9s}: test exact-solution accuracy {acc:.1%} (MIPLayer agrees), {fit.seconds:.0f} s")
    plot(fits, box, args.out)
    return results


def plot(fits: dict, box: float, out: str) -> None:
    """Training loss and accuracy curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for method, fit in fits.items():
        h = fit.history
        ax1.plot(h["epoch"], h["loss"], label=method)
        (line,) = ax2.plot(h["epoch"], h["test_acc"], label=f"{method} test")
        ax2.plot(h["epoch"], h["train_acc"], "--", color=line.get_color(), label=f"{method} train (step solves)")
    ax2.axhline(box, color="gray", ls=":", label="ignore the constraints")
    ax1.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    ax2.set(xlabel="epoch", ylabel="exact-solution accuracy", ylim=(0, 1), title="accuracy")
    ax1.legend()
    ax2.legend(fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"plot written to {out}")


if __name__ == "__main__":
    main()
