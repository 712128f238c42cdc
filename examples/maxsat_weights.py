"""Learning the clause weights of a weighted MaxSAT from observed optimal assignments.

**Setting.** A fixed random 3-CNF formula (12 variables, 60 clauses: past the satisfiability
threshold, so clauses must be traded off) has hidden clause weights ``w_true`` (log-normal,
mean 1). Each instance reveals *evidence*: 3 variables fixed to random values; the observation
is the weighted-MaxSAT optimum ``x_obs`` under ``w_true`` given that evidence. From 120
(evidence, assignment) pairs the clause weights ``w`` (60 numbers, ``w = 60 softmax(rho)``: mean 1,
the scale of a MaxSAT objective being arbitrary) are learned so that the MaxSAT optimum
reproduces the observations, starting from the unweighted MaxSAT (all weights 1).

**Model.** ``tamejax.problems.maxsat_mip``: indicators ``z_j <= sum of the literals of clause j``,
``max w . z``; the evidence enters through the bounds of ``x``. The weights enter the objective
linearly through ``z``, and two losses train them through ``tamejax.nn.mip_layer.MIPLayer``
(builder mode, the evidence as inputs), Adam:

* **Fenchel-Young** (Berthet et al. 2020): ``F(w) - w . sat(x_obs)`` with ``F`` the perturbed
  MaxSAT optimum (multiplicative Gaussian noise on ``w``, 1 sample), gradient
  ``E[z*(w_perturbed)] - sat(x_obs)`` (the layer's ``fenchel_young_loss``);
* **optimality gap** (inverse optimization, structured perceptron): ``z(w) - w . sat(x_obs) >= 0``
  with ``z(w)`` the MaxSAT optimum (``output="value"``); ``dz/dw = sat(x*)`` is the exact
  derivative of the active piece (``tamejax.value``).

**Metric.** On 120 unseen evidence sets: the fraction of instances whose predicted assignment
(MaxSAT optimum under the learned weights) is optimal under the true weights ("reproduced";
ties make the observation itself only one of the optima), and the fraction equal to the
observed assignment.

    python examples/maxsat_weights.py            # 120 train / 120 test, 3 epochs, both losses
    python examples/maxsat_weights.py --quick    # smoke run (< 1 min)

Writes ``examples/out/maxsat_weights.png`` (reproduction rate per epoch; learned vs true weights).

References:
  Berthet, Q. et al. (2020). Learning with differentiable perturbed optimizers. NeurIPS.
  Li, C. M. & Manya, F. (2009). MaxSAT, hard and soft constraints. Handbook of Satisfiability.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import tamejax as tj
from tamejax.nn.mip_layer import MIPLayer
from tamejax.problems.maxsat import clause_satisfaction, maxsat, maxsat_assign, maxsat_mip, random_kcnf

DEFAULT_OUT = Path(__file__).parent / "out" / "maxsat_weights.png"
NUM_VARS, NUM_CLAUSES, K, NUM_EVIDENCE = 12, 60, 3, 3


def make_data(
    num: int, clauses: np.ndarray, w_true: np.ndarray, rng: np.random.Generator, exclude: np.ndarray | None = None
):
    """Evidence ``(num, n)`` (-1 free; no row of ``exclude``) and the optimal assignments under the true weights."""
    fixed = -np.ones((num, NUM_VARS), np.int64)
    seen = set() if exclude is None else {tuple(row) for row in exclude}
    for i in range(num):
        while True:  # redraw evidence sets that occur in `exclude` (test evidence never seen in training)
            row = -np.ones(NUM_VARS, np.int64)
            idx = rng.choice(NUM_VARS, NUM_EVIDENCE, replace=False)
            row[idx] = rng.integers(0, 2, NUM_EVIDENCE)
            if tuple(row) not in seen:
                break
        fixed[i] = row
    oracle = maxsat(clauses, NUM_VARS, fixed=fixed, threads=1)
    x, status = maxsat_assign(oracle, np.broadcast_to(w_true, (num, NUM_CLAUSES)))
    if np.any(status != int(tj.Status.OPTIMAL)):
        raise RuntimeError(f"a ground-truth MaxSAT solve was not optimal: statuses {np.unique(status)}")
    return fixed, np.round(x).astype(np.int64)


def make_layer(clauses: np.ndarray, output: str) -> MIPLayer:
    """The MaxSAT of ``clauses`` as a Linen layer: inputs = evidence (n,), parameter ``rho``."""
    template = maxsat_mip(clauses, NUM_VARS)  # (z, x), lb 0, ub 1
    m = NUM_CLAUSES

    def builder(evidence: jax.Array, params: dict) -> tj.MIP:
        w = m * jax.nn.softmax(params["rho"])
        c = jnp.concatenate([w, jnp.zeros(NUM_VARS, w.dtype)])  # maximized (sense="max")
        lb = jnp.concatenate([jnp.zeros(m), (evidence == 1).astype(w.dtype)])
        ub = jnp.concatenate([jnp.ones(m), (evidence != 0).astype(w.dtype)])
        return template.replace(c=c, lb=lb, ub=ub)

    fy = {"estimator": "perturbed", "estimator_options": {"num_samples": 1, "sigma": 0.5, "multiplicative": True}}
    return MIPLayer(
        builder,
        learnable={"rho": jnp.zeros(m)},
        input_ndim=1,
        output=output,
        **(fy if output == "solution" else {}),
        sense="max",
        backend="scip",
        solver_options={"threads": 1},
    )


def evaluate(clauses, w, fixed, x_obs, w_true) -> tuple[float, float]:
    """(reproduced: optimal under the true weights, exact: equal to the observation) fractions."""
    oracle = maxsat(clauses, NUM_VARS, fixed=fixed, threads=1)
    x_hat, _ = maxsat_assign(oracle, np.broadcast_to(w, (len(fixed), NUM_CLAUSES)))
    ok = np.all(np.isfinite(x_hat), axis=1)
    x_hat = np.where(np.isfinite(x_hat), np.round(x_hat), 0).astype(np.int64)
    v_hat = clause_satisfaction(clauses, x_hat, NUM_VARS) @ w_true
    v_obs = clause_satisfaction(clauses, x_obs, NUM_VARS) @ w_true
    reproduced = ok & (v_hat >= v_obs - 1e-9)
    exact = ok & np.all(x_hat == x_obs, axis=1)
    return float(reproduced.mean()), float(exact.mean())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (``argv=None``: ``sys.argv``), validated."""
    parser = argparse.ArgumentParser(description="learn weighted-MaxSAT clause weights from observed optima")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per loss (default 3)")
    parser.add_argument("--train", type=int, default=120, help="training instances (default 120)")
    parser.add_argument("--test", type=int, default=120, help="test instances (default 120)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 32 train / 32 test, 2 epochs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the formula, weights, evidence and noise")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"plot file (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    for name in ("epochs", "train", "test"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: expected an integer >= 1, got {getattr(args, name)}")
    if args.quick:
        args.epochs, args.train, args.test = min(args.epochs, 2), 32, 32
    return args


def main(argv: list[str] | None = None) -> int:
    """Fit the weights with both losses, print the reproduction rates, save the plot."""
    args = parse_args(argv)
    batch_size, lr = 8, 0.1
    rng = np.random.default_rng(args.seed)
    clauses = random_kcnf(NUM_VARS, NUM_CLAUSES, K, seed=args.seed)
    w_true = np.exp(rng.normal(size=NUM_CLAUSES))
    w_true *= NUM_CLAUSES / w_true.sum()
    t0 = time.perf_counter()
    e_train, x_train = make_data(args.train, clauses, w_true, rng)
    e_test, x_test = make_data(args.test, clauses, w_true, rng, exclude=e_train)
    y_train = np.concatenate([clause_satisfaction(clauses, x_train, NUM_VARS), x_train], axis=1).astype(np.float32)
    print(
        f"random {K}-CNF: {NUM_VARS} variables, {NUM_CLAUSES} clauses; {NUM_EVIDENCE} evidence variables per "
        f"instance; {args.train} train / {args.test} test; ground truth solved in {time.perf_counter() - t0:.1f} s"
    )
    base = evaluate(clauses, np.ones(NUM_CLAUSES), e_test, x_test, w_true)
    print(f"unweighted MaxSAT (all weights 1): reproduced {100 * base[0]:.1f} %, equal {100 * base[1]:.1f} %")

    steps = args.train // batch_size
    curves, final, learned = {}, {}, {}
    epoch_loss: dict[str, list[float]] = {"Fenchel-Young": [], "optimality gap": []}
    bar = tqdm(total=2 * args.epochs * steps, unit="step", desc="training")
    for method in ("Fenchel-Young", "optimality gap"):
        layer = make_layer(clauses, "solution" if method == "Fenchel-Young" else "value")
        params = layer.init(jax.random.key(args.seed), jnp.asarray(e_train[:batch_size]))["params"]
        optimizer = optax.adam(lr)
        opt_state = optimizer.init(params)

        if method == "Fenchel-Young":

            def loss_fn(p, e, y, key, layer=layer):
                fy = layer.apply({"params": p}, e, y, method="fenchel_young_loss", rngs={"mip": key})
                return jnp.mean(fy)
        else:

            def loss_fn(p, e, y, key, layer=layer):
                z = layer.apply({"params": p}, e)  # MaxSAT optimum, gradient sat(x*) in w
                w = NUM_CLAUSES * jax.nn.softmax(p["rho"])
                return jnp.mean(z - y[:, :NUM_CLAUSES] @ w)  # >= 0: the observation's weight

        @jax.jit
        def step(p, state, e, y, key, loss_fn=loss_fn, optimizer=optimizer):
            loss, grads = jax.value_and_grad(loss_fn)(p, e, y, key)
            updates, state = optimizer.update(grads, state, p)
            return optax.apply_updates(p, updates), state, loss

        key = jax.random.key(args.seed + 1)
        curve = [base[0]]
        order_rng = np.random.default_rng(args.seed + 2)
        for _ in range(args.epochs):
            order = order_rng.permutation(args.train)
            losses = []
            for b in range(steps):
                idx = order[b * batch_size : (b + 1) * batch_size]
                key, sub = jax.random.split(key)
                params, opt_state, loss = step(params, opt_state, e_train[idx], y_train[idx], sub)
                losses.append(float(loss))
                bar.set_postfix(method=method, loss=f"{float(loss):.3g}")
                bar.update()
            epoch_loss[method].append(float(np.mean(losses)))
            w = NUM_CLAUSES * np.asarray(jax.nn.softmax(params["rho"]), np.float64)
            curve.append(evaluate(clauses, w, e_test, x_test, w_true)[0])
        curves[method] = curve
        final[method] = evaluate(clauses, w, e_test, x_test, w_true)
        learned[method] = w
    bar.close()

    print(f"\n{'weights':<22} {'reproduced':>10}  {'equal to observed':>17}  corr(w, w_true)")
    print(f"{'unweighted (all 1)':<22} {100 * base[0]:9.1f}%  {100 * base[1]:16.1f}%  {'-':>15}")
    for method, (rep, eq) in final.items():
        corr = float(np.corrcoef(learned[method], w_true)[0, 1])
        print(f"{method:<22} {100 * rep:9.1f}%  {100 * eq:16.1f}%  {corr:15.2f}")
    print("(reproduced = the predicted assignment is optimal under the true weights; test set, unseen evidence)")
    for method, values in epoch_loss.items():
        print(f"mean {method} training loss per epoch: " + ", ".join(f"{v:.3f}" for v in values))
    print(f"time: {time.perf_counter() - t0:.1f} s in all")

    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot")
        return 0
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for method, curve in curves.items():
        ax1.plot(range(len(curve)), 100 * np.asarray(curve), "-o", ms=3, label=method)
    ax1.axhline(100 * base[0], color="gray", ls="--", label="unweighted MaxSAT")
    ax1.set(xlabel="epoch", ylabel="test instances reproduced (%)", ylim=(0, 105), title="reproduction rate")
    ax1.grid(True, alpha=0.3)
    ax1.legend(fontsize=8)
    for method, w in learned.items():
        ax2.scatter(w_true, w, s=12, label=method)
    ax2.plot([0, w_true.max()], [0, w_true.max()], "k:", lw=1)
    ax2.set(xlabel="true clause weight", ylabel="learned clause weight", title="learned vs true weights")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"plot saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
