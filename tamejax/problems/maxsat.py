"""Weighted MaxSAT as a 0-1 program, with learnable clause weights; random k-CNF; brute force.

A CNF formula over ``n`` boolean variables is a list of clauses, each a sequence of non-zero
DIMACS literals: ``i`` stands for ``x_i`` and ``-i`` for ``not x_i`` (``1 <= i <= n``). A clause
may have any length ``>= 1``; a literal may repeat, and a clause holding both ``i`` and ``-i``
is always true. With clause weights ``w_j >= 0``, weighted MaxSAT asks for

$$\\max_{x \\in \\{0,1\\}^n} \\sum_j w_j\\, [\\text{clause } j \\text{ is satisfied by } x],$$

the MIP (one indicator ``z_j`` per clause, Li & Manya 2009):

$$\\max_{z \\in \\{0,1\\}^m,\\, x \\in \\{0,1\\}^n} w^\\top z \\quad\\text{s.t.}\\quad
z_j \\le \\sum_{i \\in P_j} x_i + \\sum_{i \\in N_j} (1 - x_i), \\qquad j = 1, \\dots, m,$$

(``P_j``, ``N_j``: the variables of the positive and negative literals of clause ``j``). For
``w > 0`` an optimal ``z`` is exactly the satisfaction vector of an optimal ``x`` (where
``w_j = 0``, ``z_j`` costs nothing and may be ``0`` even when clause ``j`` is satisfied). The
weights enter the objective linearly through ``z``, so learning them from observed
assignments is learning the cost vector of an ``Oracle`` over ``z`` (``maxsat``): the
perturbed Fenchel-Young loss (``tamejax.estimators``) with target ``clause_satisfaction(x_obs)``,
or the optimality gap ``z(w) - w . sat(x_obs)`` whose gradient ``dz/dw = sat(x*)`` is the
exact derivative of the active piece (``tamejax.value``).

Variables are ordered ``(z_1..z_m, x_1..x_n)``. Evidence (``fixed``) fixes some ``x_i`` through
their bounds, one row per instance of a batch.

References:
  Li, C. M. & Manya, F. (2009). MaxSAT, hard and soft constraints. Handbook of Satisfiability.
  Berthet, Q. et al. (2020). Learning with differentiable perturbed optimizers. NeurIPS.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tamejax.problem import MIP
from tamejax.problems._common import check_int
from tamejax.problems.tsp import SlicedOracle

__all__ = [
    "clause_satisfaction",
    "maxsat",
    "maxsat_assign",
    "maxsat_brute_force",
    "maxsat_mip",
    "random_kcnf",
]


# ---------------------------------------------------------------------------- validation
def _check_clauses(where: str, clauses: Any, num_vars: Any) -> tuple[list[np.ndarray], int]:
    """Clauses as a list of ``int64`` literal arrays, and ``num_vars`` as an int."""
    n = check_int(where, "num_vars", num_vars, minimum=1)
    if isinstance(clauses, np.ndarray):
        if clauses.ndim != 2:
            raise ValueError(
                f"{where} argument `clauses`: expected a 2-d array (m, k) or a list of literal lists, "
                f"got an array of shape {clauses.shape}"
            )
        rows = list(clauses)
    else:
        try:
            rows = list(clauses)
        except TypeError:
            raise ValueError(
                f"{where} argument `clauses`: expected a sequence of clauses (sequences of DIMACS literals), "
                f"got {clauses!r}"
            ) from None
    if not rows:
        raise ValueError(f"{where} argument `clauses`: expected at least one clause, got none")
    out = []
    for j, clause in enumerate(rows):
        try:
            lits = list(np.asarray(clause).ravel()) if not isinstance(clause, Integral) else None
        except Exception:  # noqa: BLE001 - numpy raises many things for ragged input
            lits = None
        if lits is None or not lits:
            raise ValueError(
                f"{where} argument `clauses`: expected clause {j} to be a non-empty literal sequence, got {clause!r}"
            )
        for lit in lits:
            if not isinstance(lit, Integral | np.integer) or isinstance(lit, bool | np.bool_):
                if isinstance(lit, float | np.floating) and float(lit).is_integer():
                    continue
                raise ValueError(f"{where} argument `clauses`: expected integer literals, got {lit!r} in clause {j}")
        arr = np.asarray(lits).astype(np.int64)
        bad = (arr == 0) | (np.abs(arr) > n)
        if np.any(bad):
            raise ValueError(
                f"{where} argument `clauses`: expected literals in [-{n}, -1] or [1, {n}] (num_vars = {n}), "
                f"got {int(arr[bad][0])} in clause {j}"
            )
        out.append(arr)
    return out, n


def _check_weights(where: str, weights: Any, m: int) -> np.ndarray:
    """Concrete weights ``(..., m)``: finite and ``>= 0``."""
    w = np.asarray(weights, dtype=np.float64) if not isinstance(weights, np.ndarray) else weights.astype(np.float64)
    if w.ndim < 1 or w.shape[-1] != m:
        raise ValueError(
            f"{where} argument `weights`: expected shape (..., {m}) (m = number of clauses), got {w.shape}"
        )
    bad = ~np.isfinite(w) | (w < 0)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{where} argument `weights`: expected finite values >= 0, got {w[idx]} at index {idx}")
    return w


def _check_fixed(where: str, fixed: Any, n: int) -> np.ndarray | None:
    """Evidence ``(..., n)`` with entries ``-1`` (free), ``0`` or ``1``."""
    if fixed is None:
        return None
    f = np.asarray(fixed)
    if f.dtype == object or not (np.issubdtype(f.dtype, np.number) or f.dtype == np.bool_):
        raise ValueError(f"{where} argument `fixed`: expected a numeric array, got dtype {f.dtype}")
    if f.ndim < 1 or f.shape[-1] != n:
        raise ValueError(f"{where} argument `fixed`: expected shape (..., {n}) (n = num_vars), got {f.shape}")
    bad = ~np.isin(f, (-1, 0, 1))
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{where} argument `fixed`: expected entries -1 (free), 0 or 1, got {f[idx]!r} at index {idx}")
    return f.astype(np.int64)


def _check_assignments(where: str, x: Any, n: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim < 1 or arr.shape[-1] != n:
        raise ValueError(f"{where} argument `x`: expected shape (..., {n}) (n = num_vars), got {arr.shape}")
    with np.errstate(invalid="ignore"):
        bad = ~np.isin(arr, (0, 1))
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{where} argument `x`: expected 0/1 entries, got {arr[idx]!r} at index {idx}")
    return arr.astype(np.int64)


# ---------------------------------------------------------------------------- builders
def _rows(clauses: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """``A_ub (m, m + n)`` and ``b_ub (m,)`` of ``z_j - sum_P x_i + sum_N x_i <= |N_j|``."""
    m = len(clauses)
    A = np.zeros((m, m + n))
    b = np.zeros(m)
    for j, lits in enumerate(clauses):
        A[j, j] = 1.0
        for lit in lits:
            i = abs(int(lit)) - 1
            if lit > 0:
                A[j, m + i] -= 1.0
            else:
                A[j, m + i] += 1.0
                b[j] += 1.0
    return A, b


def _bounds(fixed: np.ndarray | None, m: int, n: int) -> tuple[Any, Any]:
    if fixed is None:
        return 0.0, 1.0
    batch = fixed.shape[:-1]
    lb = np.concatenate([np.zeros(batch + (m,)), np.where(fixed == 1, 1.0, 0.0)], axis=-1)
    ub = np.concatenate([np.ones(batch + (m,)), np.where(fixed == 0, 0.0, 1.0)], axis=-1)
    return lb, ub


def maxsat_mip(clauses: Any, num_vars: int, weights: Any = None, *, fixed: Any = None) -> MIP:
    """The weighted MaxSAT MIP in minimization form: ``min -w . z`` over ``(z, x)``.

    $$\\min_{z \\in \\{0,1\\}^m, x \\in \\{0,1\\}^n} -w^\\top z \\quad\\text{s.t.}\\quad
    z_j - \\sum_{i \\in P_j} x_i + \\sum_{i \\in N_j} x_i \\le |N_j|,$$

    so ``-tamejax.value(maxsat_mip(...))`` is the MaxSAT optimum and its gradient in ``c`` is
    ``-(z*, x*)``: differentiating ``-value`` in ``w`` gives ``z*`` (for ``w > 0`` the satisfaction
    vector of the optimal assignment; where ``w_j = 0`` a satisfied clause may get ``z_j = 0``, still a
    valid supergradient), exact wherever the optimum is unique.

    Args:
      clauses: ``m`` clauses of DIMACS literals (a list of sequences, or an int array ``(m, k)``).
      num_vars: ``n >= 1``; every literal must be in ``[-n, -1]`` or ``[1, n]``.
      weights: ``None`` (all ones) or clause weights ``(..., m)``, finite and ``>= 0`` when
        concrete (a JAX tracer is accepted unchecked, for differentiation).
      fixed: ``None`` or evidence ``(..., n)``: ``-1`` free, ``0``/``1`` fixes ``x_i`` (bounds).

    Returns:
      A ``MIP`` over ``m + n`` binary variables ``(z, x)``, batched like ``weights``/``fixed``.

    Raises:
      ValueError: a malformed clause, a literal out of range, negative or non-finite weights, a
        weight or evidence array of the wrong shape, evidence other than ``-1, 0, 1``.
    """
    where = "maxsat_mip"
    cls, n = _check_clauses(where, clauses, num_vars)
    m = len(cls)
    f = _check_fixed(where, fixed, n)
    if weights is None:
        w: Any = np.ones(m)
    elif isinstance(weights, jax.core.Tracer):
        if weights.ndim < 1 or weights.shape[-1] != m:
            raise ValueError(
                f"{where} argument `weights`: expected shape (..., {m}) (m = number of clauses), got {weights.shape}"
            )
        w = weights
    else:
        w = _check_weights(where, weights, m)
    A, b = _rows(cls, n)
    lb, ub = _bounds(f, m, n)
    xshape = (f.shape[:-1] if f is not None else ()) + (n,)
    try:
        batch = jnp.broadcast_shapes(tuple(w.shape[:-1]), xshape[:-1])
    except ValueError:
        raise ValueError(
            f"{where} arguments `weights` / `fixed`: expected broadcastable batch shapes, got {tuple(w.shape[:-1])} "
            f"and {xshape[:-1]}"
        ) from None
    c = jnp.concatenate(
        [-jnp.broadcast_to(jnp.asarray(w), batch + (m,)), jnp.zeros(batch + (n,), jnp.asarray(w).dtype)], -1
    )
    return MIP(c, A_ub=A, b_ub=b, lb=lb, ub=ub, integrality=True)


def maxsat(clauses: Any, num_vars: int, *, fixed: Any = None, backend: str = "scip", **options: Any) -> SlicedOracle:
    """The oracle ``w -> z*(w)`` of weighted MaxSAT: clause weights in, satisfied clauses out.

    $$z^*(w) \\in \\operatorname{argmax}_{(z, x) \\text{ feasible}} w^\\top z \\quad
    (\\text{the } z \\text{ part; the assignment } x \\text{ is auxiliary}),$$

    a ``SlicedOracle`` (sense ``"max"``) whose cost covers the ``m`` clause indicators. For
    ``w > 0``, ``z*`` is the satisfaction vector of an optimal assignment (a clause with ``w_j = 0``
    may get ``z_j = 0`` even when satisfied); a negative ``w_j``
    (a perturbation, say) simply makes the solver leave ``z_j = 0``. The optimal assignment is
    ``oracle.full().solve(oracle.pad(w)).x[..., m:]`` (see ``maxsat_assign``). Use it with
    ``tamejax.estimators`` (e.g. ``fenchel_young_loss(oracle, w, clause_satisfaction(...), key)``)
    to learn the weights.

    Args:
      clauses: ``m`` clauses of DIMACS literals (a list of sequences, or an int array ``(m, k)``).
      num_vars: ``n >= 1``.
      fixed: ``None`` or evidence ``(..., n)`` (``-1`` free, ``0``/``1`` fixed); batched evidence
        makes a batched problem, solved for weights of the same batch shape.
      backend: a MIP solver; default ``"scip"``.
      **options: solver options of ``Oracle``.

    Returns:
      A ``SlicedOracle`` over ``m`` costed variables (``problem.n = m + n``).

    Raises:
      ValueError: as ``maxsat_mip``, and an unknown backend or option.
    """
    cls, n = _check_clauses("maxsat", clauses, num_vars)
    f = _check_fixed("maxsat", fixed, n)
    problem = maxsat_mip(cls, n, fixed=f)
    return SlicedOracle(problem.replace(c=np.zeros(problem.c.shape)), len(cls), sense="max", backend=backend, **options)


def maxsat_assign(oracle: SlicedOracle, weights: Any) -> tuple[np.ndarray, np.ndarray]:
    """The optimal assignment of a ``maxsat`` oracle for given weights (no gradient).

    Args:
      oracle: a ``SlicedOracle`` returned by ``maxsat``.
      weights: clause weights ``(..., m)``.

    Returns:
      ``(x, status)``: the assignments ``(..., n)`` (``NaN`` rows where no solution is known)
      and the solver statuses ``(...)``.

    Raises:
      ValueError: not a ``SlicedOracle``, weights of the wrong shape.
    """
    if not isinstance(oracle, SlicedOracle):
        raise ValueError(f"maxsat_assign argument `oracle`: expected the SlicedOracle of `maxsat`, got {oracle!r}")
    shape = np.shape(weights)
    if len(shape) < 1 or shape[-1] != oracle.num_costs:
        raise ValueError(
            f"maxsat_assign argument `weights`: expected shape (..., {oracle.num_costs}) (m = number of clauses), "
            f"got {shape}"
        )
    sol = oracle.full().solve(oracle.pad(weights))
    return np.asarray(sol.x)[..., oracle.num_costs :], np.asarray(sol.status)


# ---------------------------------------------------------------------------- helpers
def clause_satisfaction(clauses: Any, x: Any, num_vars: int | None = None) -> np.ndarray:
    """``sat_j(x) = 1`` iff assignment ``x`` satisfies clause ``j``.

    Args:
      clauses: ``m`` clauses of DIMACS literals.
      x: 0/1 assignments ``(..., n)``.
      num_vars: ``n``; default ``x.shape[-1]``.

    Returns:
      A ``float64`` array ``(..., m)`` of 0/1.

    Raises:
      ValueError: a malformed clause or literal out of range, an ``x`` that is not 0/1 of shape ``(..., n)``.
    """
    where = "clause_satisfaction"
    arr = np.asarray(x)
    if arr.ndim < 1:
        raise ValueError(f"{where} argument `x`: expected 0/1 assignments of shape (..., n), got shape {arr.shape}")
    n = arr.shape[-1] if num_vars is None else num_vars
    cls, n = _check_clauses(where, clauses, n)
    xb = _check_assignments(where, arr, n)
    out = np.zeros(xb.shape[:-1] + (len(cls),))
    for j, lits in enumerate(cls):
        idx = np.abs(lits) - 1
        vals = xb[..., idx]
        out[..., j] = np.any(np.where(lits > 0, vals == 1, vals == 0), axis=-1)
    return out


def maxsat_brute_force(
    clauses: Any, num_vars: int, weights: Any = None, *, fixed: Any = None
) -> tuple[float, np.ndarray]:
    """Weighted MaxSAT by enumerating all ``2^n`` assignments (``n <= 20``): a test oracle.

    Args:
      clauses: ``m`` clauses of DIMACS literals.
      num_vars: ``n`` in ``[1, 20]``.
      weights: ``None`` (ones) or weights ``(m,)``, finite and ``>= 0``.
      fixed: ``None`` or evidence ``(n,)`` (``-1`` free, ``0``/``1`` fixed).

    Returns:
      ``(value, optimal)``: the optimal weight and every optimal assignment, an ``int64`` array
      ``(k, n)`` (in increasing binary order, ``x_1`` the most significant bit).

    Raises:
      ValueError: as ``maxsat_mip``, ``n > 20``, batched weights or evidence.
    """
    where = "maxsat_brute_force"
    cls, n = _check_clauses(where, clauses, num_vars)
    if n > 20:
        raise ValueError(f"{where} argument `num_vars`: expected at most 20 (2^n assignments), got {n}")
    w = np.ones(len(cls)) if weights is None else _check_weights(where, weights, len(cls))
    if w.ndim != 1:
        raise ValueError(f"{where} argument `weights`: expected shape ({len(cls)},), got {w.shape}")
    f = _check_fixed(where, fixed, n)
    if f is not None and f.ndim != 1:
        raise ValueError(f"{where} argument `fixed`: expected shape ({n},), got {f.shape}")
    codes = np.arange(2**n)
    X = (codes[:, None] >> np.arange(n - 1, -1, -1)) & 1
    if f is not None:
        keep = np.all((f < 0) | (X == f), axis=1)
        X = X[keep]
    values = clause_satisfaction(cls, X, n) @ w
    best = float(values.max())
    return best, X[np.isclose(values, best, rtol=0.0, atol=1e-9 * max(1.0, abs(best)))]


def random_kcnf(num_vars: int, num_clauses: int, k: int = 3, *, seed: Any = 0) -> np.ndarray:
    """A random k-CNF formula: each clause draws ``k`` distinct variables and independent signs.

    The fixed-clause-length model of random k-SAT (Mitchell, Selman & Levesque 1992); with
    ``m / n`` above the satisfiability threshold (about 4.27 for ``k = 3``) almost every formula
    is unsatisfiable and weighted MaxSAT must trade clauses off.

    Args:
      num_vars: ``n >= k``.
      num_clauses: ``m >= 1``.
      k: literals per clause, ``>= 1``.
      seed: seed of ``numpy.random.default_rng``.

    Returns:
      An ``int64`` array ``(m, k)`` of DIMACS literals.

    Raises:
      ValueError: non-positive sizes, ``k > n``, a bad seed.
    """
    where = "random_kcnf"
    k = check_int(where, "k", k, minimum=1)
    n = check_int(where, "num_vars", num_vars, minimum=1)
    m = check_int(where, "num_clauses", num_clauses, minimum=1)
    if k > n:
        raise ValueError(f"{where} argument `k`: expected at most num_vars = {n} (distinct variables), got {k}")
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} argument `seed`: expected None or a non-negative integer, got {seed!r}") from exc
    var = np.argsort(rng.random((m, n)), axis=1)[:, :k] + 1
    sign = np.where(rng.random((m, k)) < 0.5, -1, 1)
    return (var * sign).astype(np.int64)
