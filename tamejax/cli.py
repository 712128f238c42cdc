"""Command-line entry point: ``python -m tamejax demo`` (also ``tamejax demo``)."""

from __future__ import annotations

import argparse
import sys
import time


def demo(backend: str = "scip") -> int:
    """A short showcase: solve a MIP, print its value, gradient and status, then a batch."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import tamejax as tj

    np.set_printoptions(precision=3, suppress=True, floatmode="fixed")
    print(
        f"tamejax {tj.__version__} | jax {jax.__version__} | backend {backend} | "
        f"{tj.get_workers()} solver worker process(es)\n"
    )

    # Production planning: two integer products, one continuous overtime variable.
    #   minimize  -5 x0 - 4 x1 + 0.8 t
    #   s.t.      6 x0 + 4 x1 <= 24 + t   (machine hours, t = overtime)
    #               x0 + 2 x1 <= 6        (labour)
    #   x0, x1 in {0..10} integer, 0 <= t <= 10
    c = jnp.array([-5.0, -4.0, 0.8])
    A_ub = jnp.array([[6.0, 4.0, -1.0], [1.0, 2.0, 0.0]])
    b_ub = jnp.array([24.0, 6.0])
    problem = tj.MIP(c=c, A_ub=A_ub, b_ub=b_ub, lb=0.0, ub=10.0, integrality=[True, True, False])
    print("problem:", problem)

    t0 = time.perf_counter()
    sol = tj.solve(problem, backend=backend)
    print(
        f"solve  -> status {sol.status_names()}, x = {np.asarray(sol.x)}, "
        f"objective = {float(sol.objective):.3f}, bound = {float(sol.bound):.3f} "
        f"({time.perf_counter() - t0:.2f} s, includes worker start-up)"
    )

    def z(c, A_ub, b_ub):
        return tj.value(problem.replace(c=c, A_ub=A_ub, b_ub=b_ub), backend=backend)

    val, (gc, gA, gb) = jax.value_and_grad(z, argnums=(0, 1, 2))(c, A_ub, b_ub)
    print(f"value  -> z = {float(val):.3f}")
    print(f"grad   -> dz/dc = {np.asarray(gc)}  (the optimal x)")
    print(f"          dz/db_ub = {np.asarray(gb)}  (duals of the LP with x0, x1 fixed)")
    print(f"          dz/dA_ub =\n{np.asarray(gA) + 0.0}")

    # A batch of right-hand sides in one jit+vmap call (one host callback, worker pool).
    budgets = jnp.stack([b_ub + jnp.array([d, 0.0]) for d in (-44.0, -6.0, 0.0, 6.0, 12.0)])
    batched = jax.jit(jax.vmap(lambda b: tj.value_and_solution(problem.replace(b_ub=b), backend=backend)))
    vals, sols = batched(budgets)
    names = sols.status_names()
    print("\nbatch over machine hours b_ub[0] (jit + vmap, one callback):")
    for b, v, s, x in zip(np.asarray(budgets[:, 0]), np.asarray(vals), names, np.asarray(sols.x) + 0.0, strict=True):
        print(f"  b_ub[0] = {b:5.1f}: status {s:<10} z = {v:8.3f}  x = {x}")
    if names[0] != "INFEASIBLE" or not np.isinf(np.asarray(vals)[0]):
        print("unexpected: the first problem of the batch should be infeasible", file=sys.stderr)
        return 1
    print("\nInfeasible problems report status INFEASIBLE and value +inf (zero gradient); nothing is made up.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tamejax", description="tamejax command line")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="solve a small MIP and print its value, gradient and status")
    d.add_argument("--backend", default="scip", help="scip (default), cpsat, highs or cbc")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.backend == "cpsat":
            parser.error("the demo problem has a continuous variable; cpsat takes pure integer programs")
        return demo(args.backend)
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
