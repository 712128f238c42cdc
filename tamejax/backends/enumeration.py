"""Exact solver for tiny pure-integer programs by complete enumeration (NumPy, no JAX).

For ``min { c x : A_ub x <= b_ub, A_eq x = b_eq, lb <= x <= ub, x integer }`` with every
variable integer and every bound finite, the feasible set is a subset of the finite grid
``G = prod_j {ceil(lb_j), ..., floor(ub_j)}``. The backend evaluates every row of the
constraints on every point of ``G`` (one matrix product), keeps the feasible points and
returns the one of least cost. This *is* an exact solver: the answer is ``OPTIMAL`` (a
proven optimum, up to the feasibility tolerance below) or ``INFEASIBLE`` (no grid point is
feasible), never a heuristic guess. It is meant for programs with at most ``MAX_POINTS``
(``2**20``) grid points, e.g. 16 binary variables (65 536 points), where it is far
cheaper per solve than a branch-and-bound solver: a training run of CombOptNet's
static-constraints protocol makes 160 000 solves.

What makes it fast in a training loop:

* the grid of a structure (``n``, ``lb``, ``ub``) is built once per process and kept in the
  model cache, as two half-grids (the first ``n // 2`` variables and the rest): a linear
  form on the full grid is the outer sum of its values on the halves, so a constraint row
  costs one addition per grid point and a cost vector one gather-and-add per feasible point;
* the feasible subset of the grid depends only on ``(A_ub, b_ub, A_eq, b_eq, lb, ub)``, not
  on ``c``. The last feasible subset is cached, so a batch whose constraints are shared (the
  usual case: learned constraints, per-example costs; ``tamejax.solve`` hands a shared
  field to the backend as one array) pays for one feasibility test and then only one
  small product ``X_feasible @ c`` per problem.

Conventions: a constraint row holds when ``a x <= b + tol`` (equality rows:
``|a x - b| <= tol``) with ``tol = FEAS_TOL * max(1, |b|)``; among several optimal points the
first of the grid in lexicographic order (variable 0 slowest) is returned. Duals: fixing
the integer variables of a pure integer program leaves an empty LP, so the duals of the
active-piece rule (``tamejax.value``) are all zero (``dual_ub = 0``, ``dual_eq = 0``,
``reduced_cost = 0``): the value of a pure integer program is locally constant in ``b`` and
``A`` wherever it is differentiable.

Refusals: continuous variables, an infinite bound, or more than ``MAX_POINTS`` grid points
give status ``ERROR`` with a message naming the reason (``check`` raises the same as a
``ValueError`` when ``tamejax.solve`` checks concrete data eagerly).
"""

from __future__ import annotations

import math
import time

import numpy as np

from tamejax.backends.base import HostProblem, HostResult, SolveOptions, Status

__all__ = ["EnumerationBackend", "MAX_POINTS", "FEAS_TOL", "grid_points"]

MAX_POINTS = 2**20
FEAS_TOL = 1e-9


def _grid_sizes(lb: np.ndarray, ub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = np.ceil(lb - 1e-9)
    hi = np.floor(ub + 1e-9)
    return lo, np.maximum(hi - lo + 1, 0)


def grid_points(lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """Every integer point of the box ``[lb, ub]``, in lexicographic order (variable 0 slowest).

    Args:
      lb: lower bounds, shape ``(n,)``, finite.
      ub: upper bounds, shape ``(n,)``, finite.

    Returns:
      Array of shape ``(P, n)`` (float64), ``P = prod_j (floor(ub_j) - ceil(lb_j) + 1)``.

    Raises:
      ValueError: if a bound is not finite or ``P > MAX_POINTS``.
    """
    lb = np.asarray(lb, dtype=np.float64)
    ub = np.asarray(ub, dtype=np.float64)
    if not (np.all(np.isfinite(lb)) and np.all(np.isfinite(ub))):
        raise ValueError("grid_points: expected finite `lb` and `ub`, got an infinite bound")
    lo, sizes = _grid_sizes(lb, ub)
    total = math.prod(int(s) for s in sizes)
    if total > MAX_POINTS:
        raise ValueError(f"grid_points: expected at most {MAX_POINTS} grid points, got {total}")
    if total == 0:
        return np.zeros((0, lb.shape[0]))
    axes = [lo[j] + np.arange(int(sizes[j]), dtype=np.float64) for j in range(lb.shape[0])]
    if not axes:
        return np.zeros((1, 0))
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


class EnumerationBackend:
    """Complete enumeration of the integer grid: an exact solver for tiny pure-integer programs.

    Registered as ``backend="enumeration"``. See the module docstring for the method, the
    tolerance, the tie rule and the duals. Options ``time_limit``, ``rel_gap``, ``threads``
    and ``seed`` are accepted and ignored (the method is deterministic and exact).

    Args:
      max_points: the largest grid this instance enumerates (default ``MAX_POINTS``).
    """

    name = "enumeration"
    supports_integers = True
    checks_data = True  # ``check`` looks at the bounds (the grid size)

    def __init__(self, max_points: int = MAX_POINTS):
        self.max_points = int(max_points)

    def refusal(self, problem: HostProblem) -> str | None:
        """Why this backend cannot take ``problem`` (``None`` if it can).

        Args:
          problem: the host problem.

        Returns:
          The reason as a message, or ``None``.
        """
        if not np.all(problem.integrality):
            j = int(np.flatnonzero(~problem.integrality)[0])
            return (
                f"backend `enumeration` solves pure integer programs only: expected `integrality` all True, "
                f"got continuous variable {j}; use scip, highs or cbc"
            )
        if not (np.all(np.isfinite(problem.lb)) and np.all(np.isfinite(problem.ub))):
            j = int(np.flatnonzero(~(np.isfinite(problem.lb) & np.isfinite(problem.ub)))[0])
            return (
                f"backend `enumeration` needs finite bounds: expected finite `lb`/`ub`, got "
                f"[{problem.lb[j]}, {problem.ub[j]}] for variable {j}"
            )
        _, sizes = _grid_sizes(problem.lb, problem.ub)
        total = math.prod(int(s) for s in sizes)
        if total > self.max_points:
            return (
                f"backend `enumeration`: expected at most {self.max_points} integer points in the box "
                f"[lb, ub], got {total}; use scip, highs or cbc"
            )
        return None

    def check(self, problem: HostProblem) -> None:
        """Raise ``ValueError`` if the problem has continuous variables, infinite bounds or too many points.

        On the structure-only dummy that ``tamejax.solve`` checks under tracing (all bounds
        zero) only the integrality is decided.

        Args:
          problem: the host problem.

        Raises:
          ValueError: naming the reason.
        """
        reason = self.refusal(problem)
        if reason is not None:
            raise ValueError(reason)

    def _grid(self, p: HostProblem, cache: dict) -> tuple[np.ndarray, np.ndarray, int]:
        """The grid as two halves ``(G1, G2, n1)``: point ``i1 * len(G2) + i2`` is ``(G1[i1], G2[i2])``."""
        key = ("enumeration-grid", p.n, p.lb.tobytes(), p.ub.tobytes())
        grid = cache.get(key)
        if grid is None:
            n1 = p.n // 2
            grid = (grid_points(p.lb[:n1], p.ub[:n1]), grid_points(p.lb[n1:], p.ub[n1:]), n1)
            cache[key] = grid
        return grid

    def _feasible(self, p: HostProblem, grid: tuple, cache: dict) -> tuple[np.ndarray, np.ndarray]:
        """Indices ``(i1, i2)`` of the feasible grid points, in grid order (cached for the last data seen).

        A row's activity on the whole grid is the outer sum of its activities on the two
        halves (``a x = a_1 x_1 + a_2 x_2``): ``m`` additions per point instead of ``m n``
        multiply-adds.
        """
        key = (
            p.lb.tobytes(),
            p.ub.tobytes(),
            p.A_ub.shape,
            p.A_ub.tobytes(),
            p.b_ub.tobytes(),
            p.A_eq.shape,
            p.A_eq.tobytes(),
            p.b_eq.tobytes(),
        )
        last = cache.get("enumeration-feasible")
        if last is not None and last[0] == key:
            return last[1]
        G1, G2, n1 = grid
        ok = np.ones((G1.shape[0], G2.shape[0]), dtype=bool)
        for a, rhs in zip(p.A_ub, p.b_ub, strict=True):
            act = (G1 @ a[:n1])[:, None] + (G2 @ a[n1:])[None, :]
            ok &= act <= rhs + FEAS_TOL * max(1.0, abs(rhs))
        for a, rhs in zip(p.A_eq, p.b_eq, strict=True):
            act = (G1 @ a[:n1])[:, None] + (G2 @ a[n1:])[None, :]
            ok &= np.abs(act - rhs) <= FEAS_TOL * max(1.0, abs(rhs))
        i1, i2 = np.nonzero(ok)  # row-major: grid order
        out = (i1.astype(np.intp), i2.astype(np.intp))
        cache["enumeration-feasible"] = (key, out)
        return out

    def solve(self, p: HostProblem, options: SolveOptions, cache: dict) -> HostResult:
        """Solve ``p`` exactly by enumeration (``OPTIMAL``, ``INFEASIBLE`` or ``ERROR`` with the reason).

        Args:
          p: the host problem.
          options: solver options (ignored except ``duals``).
          cache: this process's model cache (grids and the last feasible set live there).

        Returns:
          The ``HostResult``.
        """
        t0 = time.perf_counter()
        reason = self.refusal(p)
        if reason is not None:
            return HostResult.failed(p.n, Status.ERROR, reason)
        grid = self._grid(p, cache)
        G1, G2, n1 = grid
        i1, i2 = self._feasible(p, grid, cache)
        if i1.size == 0:
            res = HostResult.failed(p.n, Status.INFEASIBLE, "no integer point of the box satisfies the constraints")
            res.solve_time = time.perf_counter() - t0
            return res
        cost = (G1 @ p.c[:n1])[i1] + (G2 @ p.c[n1:])[i2]
        k = int(np.argmin(cost))  # first minimum: lexicographic tie rule
        x = np.concatenate([G1[i1[k]], G2[i2[k]]])
        obj = float(p.c @ x)
        res = HostResult(x, obj, obj, Status.OPTIMAL)
        if options.duals:
            res.dual_ub = np.zeros(p.m_ub)
            res.dual_eq = np.zeros(p.m_eq)
            res.reduced_cost = np.zeros(p.n)
        res.solve_time = time.perf_counter() - t0
        return res


def enumeration() -> EnumerationBackend:
    """Factory used by the backend registry (``"tamejax.backends.enumeration:enumeration"``)."""
    return EnumerationBackend()
