"""A dual function F is a global under-estimator of the value function z that touches it at b.

Two small programs, parametrized by one right-hand side ``beta``:

* a pure integer program (the textbook ``max 5 x1 + 4 x2``, ``6 x1 + 4 x2 <= beta``,
  ``x1 + 2 x2 <= 6``, ``x`` integer in ``[0, 10]``), certified at ``beta = 24`` by Gomory's
  cutting planes (``F`` a Chvátal function) and by branch and bound (``F`` a minimum of
  affine pieces);
* a mixed-integer program (the same with a continuous overtime variable ``0 <= s <= 4`` of
  cost 1 that relaxes the first row: ``6 x1 + 4 x2 - s <= beta``), certified by branch and bound.

For every ``beta`` on a grid the true value ``z(beta)`` is obtained by re-solving (one batched
SCIP call), and the LP relaxation value by GLOP, and the script checks that
``F(beta) <= z(beta)`` everywhere and ``F(24) = z(24)``. The Chvátal function follows the
staircase of ``z`` from below over a wide range around ``b``; the branch-and-bound function is
exact near ``b`` and coarse far from it (it only knows the leaves of one tree). The LP
relaxation value (re-solved at every ``beta``) is drawn for comparison.

    python examples/duality_value_function.py            # grid step 0.05
    python examples/duality_value_function.py --quick    # grid step 0.5

Writes ``examples/out/duality_value_function.png``.

References: Wolsey (1981), Integer programming duality: price functions and sensitivity
analysis; Guzelsoy & Ralphs (2007), Duality for mixed-integer linear programs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import tamejax as tj  # noqa: E402
from tamejax.duality import certify, verify  # noqa: E402

B0 = 24.0


def pure_ip(beta) -> tj.MIP:
    beta = np.asarray(beta, float)
    batch = beta.shape
    return tj.MIP(
        c=np.broadcast_to([-5.0, -4.0], batch + (2,)),
        A_ub=np.broadcast_to([[6.0, 4.0], [1.0, 2.0]], batch + (2, 2)),
        b_ub=np.stack([beta, np.full(batch, 6.0)], -1),
        ub=np.broadcast_to(10.0, batch + (2,)),
        integrality=True,
    )


def mixed(beta) -> tj.MIP:
    beta = np.asarray(beta, float)
    batch = beta.shape
    return tj.MIP(
        c=np.broadcast_to([-5.0, -4.0, 1.0], batch + (3,)),
        A_ub=np.broadcast_to([[6.0, 4.0, -1.0], [1.0, 2.0, 0.0]], batch + (2, 3)),
        b_ub=np.stack([beta, np.full(batch, 6.0)], -1),
        ub=np.broadcast_to([10.0, 10.0, 4.0], batch + (3,)),
        integrality=[1, 1, 0],
    )


def lp_value(make, betas) -> np.ndarray:
    p = make(betas)
    relaxed = tj.MIP(c=p.c, A_ub=p.A_ub, b_ub=p.b_ub, lb=p.lb, ub=p.ub)
    return np.asarray(tj.solve(relaxed, "glop").objective)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="coarse grid (smoke run)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "duality_value_function.png"))
    args = ap.parse_args(argv)
    step = 0.5 if args.quick else 0.05
    betas = np.arange(0.0, 48.0 + step / 2, step)
    curves: dict[str, dict[str, np.ndarray]] = {}
    failures = 0
    cases = [("pure IP", pure_ip, ("gomory", "branch_and_bound")), ("MILP", mixed, ("branch_and_bound",))]
    for name, make, methods in tqdm(cases, desc="problems"):
        p0 = make(B0)
        z = np.asarray(tj.solve(make(betas), "scip").objective)  # re-solve at every beta (one batch)
        curves[name] = {"z": z, "LP relaxation": lp_value(make, betas)}
        for method in methods:
            cert = certify(p0, method)
            rep = verify(p0, cert)
            # F takes b = concat(b_ub, b_eq) = (beta, 6)
            bs = jnp.asarray(np.stack([betas, np.full_like(betas, 6.0)], -1))
            F = np.asarray(jax.jit(jax.vmap(cert.F))(bs))
            curves[name][method] = F
            worst = float(np.max(F - z))
            touch = abs(float(cert.F(jnp.asarray([B0, 6.0]))) - cert.objective)
            tqdm.write(
                f"{name:8s} {method:17s} z({B0:g}) = {cert.objective:g}, F({B0:g}) = {cert.bound:g}, "
                f"max_beta F - z = {worst:.2e}, mean z - F = {np.mean(z - F):.3f}, "
                f"LP bound mean gap = {np.mean(z - curves[name]['LP relaxation']):.3f}; {rep}"
            )
            if worst > 1e-7 or touch > 1e-7 or not rep.passed:
                failures += 1

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    styles = {
        "z": ("k", "-", "z(beta) (re-solved)"),
        "gomory": ("C3", "--", "Chvátal function (Gomory)"),
        "branch_and_bound": ("C0", ":", "branch-and-bound dual function"),
        "LP relaxation": ("C2", "-.", "LP relaxation value (re-solved)"),
    }
    for ax, (name, cur) in zip(axes, curves.items(), strict=True):
        for key, vals in cur.items():
            color, ls, label = styles[key]
            ax.plot(betas, vals, color=color, ls=ls, lw=1.5 if key != "z" else 2.2, label=label)
        ax.axvline(B0, color="grey", lw=0.8)
        ax.annotate("b", (B0, ax.get_ylim()[1]), textcoords="offset points", xytext=(3, -12))
        ax.set(title=f"{name}: dual functions certified at beta = {B0:g}", xlabel="beta (right-hand side of row 1)")
        ax.legend(fontsize=8, loc="upper right")
    axes[0].set_ylabel("optimal value")
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"plot saved to {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
