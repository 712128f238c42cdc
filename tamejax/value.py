"""The optimal value of a MIP as a differentiable function of its data.

For ``z(c, A_ub, b_ub, A_eq, b_eq, lb, ub) = min { c x : A_ub x <= b_ub, A_eq x = b_eq,
lb <= x <= ub, x_I integer }``, let ``x*`` be the solution found and ``(y_ub, y_eq, r)``
the duals of the LP obtained by fixing ``x_I = x*_I`` (``y = dz/db`` convention, ``r`` the
reduced costs of the continuous variables). The vector-Jacobian product is

    dz/dc    = x*                   dz/db_ub = y_ub          dz/db_eq = y_eq
    dz/dA_ub = -y_ub x*^T           dz/dA_eq = -y_eq x*^T
    dz/dlb_j = max(r_j, 0),  dz/dub_j = min(r_j, 0)   for continuous j (0 for integer j).

This is the derivative of the active piece of the piecewise-linear (tame) function z: an
element of a conservative field in the sense of Bolte & Pauwels (2021, Math. Program.), equal to the
gradient wherever z is differentiable (unique optimum, non-degenerate LP duals, interior of
a piece). See ``docs/theory.md``.

Infeasible problems have value ``+inf``, unbounded ones ``-inf``, and failures ``NaN``; their
gradients are zero and the status says why.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tamejax.backends import SolveOptions, Status
from tamejax.problem import _LEAVES, MIP
from tamejax.solve import (
    Solution,
    _eager_check,
    _match_varying,
    _options_from_kwargs,
    _varying_axes,
    solve_leaves,
)

__all__ = ["value", "value_and_solution"]


@functools.lru_cache(maxsize=256)
def _value_fn(integrality: tuple[bool, ...], backend: str, options: SolveOptions):
    integ = np.asarray(integrality, dtype=bool)  # NumPy: this closure outlives any trace

    @jax.custom_vjp
    def fn(*leaves):
        sol = solve_leaves(leaves, integrality, backend, options)
        return sol.objective, sol

    def fwd(*leaves):
        sol = solve_leaves(leaves, integrality, backend, options)
        return (sol.objective, sol), sol

    def bwd(sol: Solution, cts):
        g, _ = cts  # the Solution output is not differentiated (piecewise constant)
        ok = sol.status <= int(Status.FEASIBLE)
        dt = sol.x.dtype
        g = jnp.where(ok, g, 0).astype(dt)
        x = jnp.where(ok[..., None], sol.x, 0)
        y_ub = jnp.where(ok[..., None], sol.dual_ub, 0)
        y_eq = jnp.where(ok[..., None], sol.dual_eq, 0)
        r = jnp.where(ok[..., None] & ~integ, sol.reduced_cost, 0)
        gv = g[..., None]
        return (
            gv * x,  # c
            -(gv * y_ub)[..., :, None] * x[..., None, :],  # A_ub
            gv * y_ub,  # b_ub
            -(gv * y_eq)[..., :, None] * x[..., None, :],  # A_eq
            gv * y_eq,  # b_eq
            gv * jnp.maximum(r, 0),  # lb
            gv * jnp.minimum(r, 0),  # ub
        )

    fn.defvjp(fwd, bwd)
    return fn


def _gradient_backend(backend: str, gradient: str) -> str:
    """The backend that realizes a ``gradient`` rule (``"certificate"``: tamejax.duality's host backend)."""
    if gradient == "active":
        return backend
    if gradient == "certificate":
        from tamejax.duality._backend import ensure_registered

        return ensure_registered()
    raise ValueError(f"argument `gradient`: expected 'active' or 'certificate', got {gradient!r}")


def value_and_solution(
    problem: MIP, backend: str = "scip", *, gradient: str = "active", **options: Any
) -> tuple[jax.Array, Solution]:
    """Like ``value``, also returning the ``Solution`` (with duals) of the same solve."""
    if not isinstance(problem, MIP):
        raise ValueError(f"argument `problem`: expected a tamejax.MIP, got {type(problem).__name__}")
    backend = _gradient_backend(backend, gradient)
    opts = _options_from_kwargs(options, duals=True)
    _eager_check(problem, backend)
    leaves = tuple(getattr(problem, k) for k in _LEAVES)
    # Under shard_map, give every leaf the same varying axes, so that the custom VJP's
    # cotangents match their inputs' types (JAX then psums those of replicated inputs).
    leaves = _match_varying(leaves, _varying_axes(leaves))
    return _value_fn(problem.integrality, backend, opts)(*leaves)


def value(problem: MIP, backend: str = "scip", *, gradient: str = "active", **options: Any) -> jax.Array:
    """Optimal value ``z`` of a (batched) MIP, differentiable in every numeric field.

    $$z(c, A, b) = \\min\\{c^\\top x : A_{ub}x \\le b_{ub},\\ A_{eq}x = b_{eq},\\
    lb \\le x \\le ub,\\ x_I \\in \\mathbb{Z}^{I}\\}$$

    Gradient (reverse mode, via ``jax.custom_vjp``): with ``x*`` the optimum and ``y`` the
    duals of the LP left when the integer variables are fixed at ``x*_I`` (``y = dz/db``),
    ``dz/dc = x*``, ``dz/db = y``, ``dz/dA = -y x*^T``, and for continuous variables
    ``dz/dlb = max(r, 0)``, ``dz/dub = min(r, 0)`` with ``r`` the reduced costs. This is the
    derivative of the active piece of the piecewise-linear value function, an element of a
    conservative field (Bolte & Pauwels, Math. Program. 2021, "Conservative set valued fields, automatic
    differentiation, stochastic gradient methods and deep learning"; Bolte, Le, Pauwels &
    Silveti-Falls, 2021, "Nonsmooth implicit differentiation for machine learning and
    optimization"), and the gradient at every point where ``z`` is differentiable.

    Works with ``jit``, ``vmap``, ``grad``, ``jacrev`` and batched problems. Infeasible:
    ``+inf`` with zero gradient; unbounded: ``-inf`` with zero gradient; a solver failure or
    no solution at a limit: ``NaN`` with zero gradient (``value_and_solution`` gives the
    status). At ``FEASIBLE`` (a limit with an incumbent) the value is the incumbent's, an
    upper bound on ``z``.

    With ``gradient="certificate"`` the problem is solved by ``tamejax.duality.certify``
    (Gomory's cutting planes without an incumbent for pure integer programs, a branch and
    bound over GLOP otherwise; ``backend`` is then not used; ``time_limit`` defaults to 60 s
    per problem) and the vector used in place of ``y`` in ``b_ub``, ``b_eq`` is the slope
    ``jax.grad`` gives for the certificate's dual function ``F`` at ``b`` (``F <= z``
    everywhere, ``F(b) = z(b)``); ``dz/dc = x*`` as before, ``dz/dA`` and the bound
    derivatives use the same formulas with that slope in place of ``y``. For a MILP it is the
    optimal leaf's LP duals, equal to the active-piece rule when those are unique. For a pure
    integer program the active-piece rule gives ``0`` in ``b`` (``z`` is locally constant off
    its steps); the certificate gives the LP price ``y`` of the final integral LP of Gomory's
    loop. That is a price-type surrogate, **not** a derivative of ``z`` (nor of ``F``, which
    floors ``b_ub`` and is a step function of it) and not an element of a conservative field
    of ``z`` (see ``docs/theory.md``).

    Args:
      problem: the ``MIP``.
      backend: as in ``solve``.
      gradient: ``"active"`` (the active-piece rule above, default) or ``"certificate"``.
      **options: ``time_limit``, ``rel_gap``, ``threads``, ``seed`` as in ``solve``.

    Returns:
      Array of shape ``problem.batch_shape``.
    """
    return value_and_solution(problem, backend, gradient=gradient, **options)[0]
