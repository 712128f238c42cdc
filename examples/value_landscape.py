"""The optimal value of a MILP as a function of a right-hand side, and its tame derivative.

Sweeps the machine-hours budget ``b`` of a small production MILP (two integer products, one
continuous overtime variable) over a grid, computing ``z(b)`` and ``dz/db`` for every grid
point in one ``jax.jit(jax.vmap(jax.value_and_grad(...)))`` call (one host callback, the
worker pool solving the batch). ``z`` is piecewise linear with jumps where the integer part
of the optimum changes; tamejax's derivative is the slope of the active piece, which the
script checks against central finite differences away from the breakpoints.

    python examples/value_landscape.py            # a few seconds
    python examples/value_landscape.py --points 2000

Writes ``examples/out/value_landscape.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description="value function of a MILP and its derivative")
    parser.add_argument("--points", type=int, default=400)
    parser.add_argument("--out", default=str(Path(__file__).parent / "out" / "value_landscape.png"))
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np

    import tamejax as tj

    jax.config.update("jax_enable_x64", True)
    # minimize -5 x0 - 4 x1 + 0.8 t  s.t. 6 x0 + 4 x1 - t <= b,  x0 + 2 x1 <= 6,
    #          x0, x1 in {0..10}, 0 <= t <= 10
    c = jnp.array([-5.0, -4.0, 0.8])
    A = jnp.array([[6.0, 4.0, -1.0], [1.0, 2.0, 0.0]])

    def z(b):
        p = tj.MIP(c=c, A_ub=A, b_ub=jnp.stack([b, 6.0]), lb=0.0, ub=10.0, integrality=[True, True, False])
        return tj.value(p)

    grid = jnp.linspace(-12.0, 40.0, args.points)
    val, grad = jax.jit(jax.vmap(jax.value_and_grad(z)))(grid)
    h = 1e-4
    fd = (jax.jit(jax.vmap(z))(grid + h) - jax.jit(jax.vmap(z))(grid - h)) / (2 * h)
    val, grad, fd = (np.asarray(v) for v in (val, grad, fd))

    feasible = np.isfinite(val)
    smooth = feasible & np.isfinite(fd) & (np.abs(fd) < 1e3)  # FD stencil inside one piece
    agree = smooth & (np.abs(fd - grad) < 1e-6)
    print(f"{args.points} budgets in one jit(vmap(value_and_grad)) call")
    print(
        f"infeasible (z = +inf, gradient 0): {int((~feasible).sum())}; "
        f"gradient zero there: {bool(np.all(grad[~feasible] == 0))}"
    )
    print(
        f"points where the finite-difference stencil stays on one piece: {int(smooth.sum())}; "
        f"tamejax's derivative equals the finite difference at {int(agree.sum())} of them"
    )
    print(f"distinct slopes (pieces' derivatives): {np.unique(np.round(grad[feasible], 6))}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = np.asarray(grid)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    a1.plot(g[feasible], val[feasible], ".", ms=2)
    a1.set(ylabel="z(b)", title="optimal value of the MILP vs machine-hours budget b")
    a2.plot(g[feasible], grad[feasible], ".", ms=3, label="tamejax dz/db (active piece)")
    a2.plot(g[smooth], fd[smooth], "x", ms=3, alpha=0.4, label="central finite difference")
    a2.set(xlabel="b", ylabel="dz/db")
    a2.legend()
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"plot saved to {out}")
    return 0 if agree.sum() == smooth.sum() else 1


if __name__ == "__main__":
    sys.exit(main())
