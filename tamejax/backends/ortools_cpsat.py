"""CP-SAT through OR-Tools' ``cp_model``, with exact integer scaling of rational data.

CP-SAT takes integer variables and integer coefficients only. tamejax never rounds data:

* every variable must be integer (otherwise ``ValueError`` names `integrality`);
* each coefficient ``v`` is read as the simplest fraction ``p/q`` (``q <= max_denominator``,
  default ``10**6``) whose value in the data's own floating dtype is exactly ``v``, so
  ``0.1`` (as float32 or float64) is ``1/10``; a value with no such fraction raises
  ``ValueError`` naming the field and index;
* each row ``a x <= b`` / ``a x == b`` is multiplied by the least common multiple of the
  denominators of its entries, and the objective by that of ``c``: an exact rescaling;
* integer bounds become ``ceil(lb)``, ``floor(ub)`` (exact for integer variables);
  an infinite bound becomes an artificial bound ``±M`` chosen so that no row can overflow
  64-bit arithmetic. If the solution touches an artificial bound the problem may be
  unbounded: the status is then ``ERROR`` (give finite bounds) rather than a made-up number.
* scaled integers must stay below ``2**53`` in magnitude, otherwise ``ValueError``.

The model is built once per structure; a re-solve writes the new integer coefficients into
the cached model's protocol buffer in place.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
from ortools.sat.python import cp_model

from tamejax.backends.base import HostProblem, HostResult, SolveOptions, Status, structure_key
from tamejax.backends.ortools_linear import fixed_lp_duals

__all__ = ["CpSatBackend", "exact_integer_scaling"]

MAX_DENOMINATOR = 10**6
_MAX_INT = 2**53


def _to_fraction(v: float, dtype: np.dtype, max_den: int, where: str) -> Fraction:
    fr = Fraction(float(v)).limit_denominator(max_den)
    if dtype.type(fr.numerator / fr.denominator) != dtype.type(v):
        raise ValueError(
            f"backend `cpsat`: expected rational data with denominators <= {max_den} (CP-SAT takes "
            f"integer coefficients and tamejax scales rows exactly, never rounding), got {where} = {v!r}"
        )
    return fr


def exact_integer_scaling(
    values: np.ndarray, dtype: np.dtype, where: str, max_den: int = MAX_DENOMINATOR
) -> tuple[list[int], int]:
    """Integers ``k`` and a positive scale ``s`` with ``k / s == values`` exactly (as rationals).

    ``where`` names the field for error messages (``"A_ub[3]"``).
    """
    fracs = []
    for idx, v in enumerate(values):
        fracs.append(_to_fraction(v, dtype, max_den, f"{where}[{idx}]" if len(values) > 1 else where))
    scale = 1
    for fr in fracs:
        scale = math.lcm(scale, fr.denominator)
    ints = [int(fr * scale) for fr in fracs]
    if any(abs(k) >= _MAX_INT for k in ints):
        raise ValueError(
            f"backend `cpsat`: expected scaled integer data below 2**53 in magnitude, got a row "
            f"scale of {scale} making {where} too large; use a MIP backend (scip, highs, cbc)"
        )
    return ints, scale


class _CpModel:
    def __init__(self, p: HostProblem, options: SolveOptions):
        self.model = cp_model.CpModel()
        n = p.n
        self.vars = [self.model.new_int_var(0, 0, f"x{j}") for j in range(n)]
        self.rows = [self.model.add_linear_constraint(sum(self.vars), 0, 0) for _ in range(p.m_ub + p.m_eq)]
        self.model.minimize(sum(self.vars))
        proto = self.model.proto
        for ct in self.rows:
            lin = proto.constraints[ct.index].linear
            assert list(lin.vars) == list(range(n))
        self.solver = cp_model.CpSolver()
        prm = self.solver.parameters
        if options.time_limit is not None:
            prm.max_time_in_seconds = float(options.time_limit)
        if options.rel_gap is not None:
            prm.relative_gap_limit = float(options.rel_gap)
        if options.threads is not None:
            prm.num_workers = int(options.threads)
        if options.seed is not None:
            prm.random_seed = int(options.seed)

    def load(self, p: HostProblem) -> tuple[int, np.ndarray]:
        """Write the scaled data into the proto; return (objective scale, artificial-bound mask)."""
        dtype = np.dtype(p.input_dtype)
        proto = self.model.proto
        n = p.n
        # Variable domains: integer bounds are exact; infinite ones get an artificial M.
        lo = np.where(np.isfinite(p.lb), np.ceil(p.lb), -np.inf)
        hi = np.where(np.isfinite(p.ub), np.floor(p.ub), np.inf)
        rows = [(p.A_ub[i], p.b_ub[i], f"A_ub[{i}]", False) for i in range(p.m_ub)]
        rows += [(p.A_eq[i], p.b_eq[i], f"A_eq[{i}]", True) for i in range(p.m_eq)]
        scaled = []
        max_row = 1
        for a, b, where, eq in rows:
            ints, s = exact_integer_scaling(np.append(a, b), dtype, where)
            scaled.append((ints[:-1], ints[-1], eq))
            max_row = max(max_row, sum(abs(k) for k in ints[:-1]))
        c_ints, c_scale = exact_integer_scaling(p.c, dtype, "c")
        max_row = max(max_row, sum(abs(k) for k in c_ints))
        finite = np.concatenate([lo[np.isfinite(lo)], hi[np.isfinite(hi)], [1.0]])
        big = int(min(2**40, (2**62) // (max_row * max(1, n))))
        if np.max(np.abs(finite)) >= big:
            raise ValueError(
                f"backend `cpsat`: expected variable bounds below {big} in magnitude for these "
                f"coefficients (64-bit overflow), got {np.max(np.abs(finite))}"
            )
        # Row 0: lower bound artificial, row 1: upper bound artificial (a variable at its
        # real finite bound is fine even when its other bound is artificial).
        artificial = np.stack([~np.isfinite(lo), ~np.isfinite(hi)])
        lo = np.where(np.isfinite(lo), lo, -big).astype(np.int64)
        hi = np.where(np.isfinite(hi), hi, big).astype(np.int64)
        for j in range(n):
            dom = proto.variables[j].domain
            dom[0] = int(lo[j])
            dom[1] = int(hi[j])
        for ct, (ints, rhs, eq) in zip(self.rows, scaled, strict=True):
            lin = proto.constraints[ct.index].linear
            for k in range(n):
                lin.coeffs[k] = ints[k]
            lin.domain[0] = rhs if eq else cp_model.INT_MIN
            lin.domain[1] = rhs
        obj = proto.objective
        for k in range(n):
            obj.coeffs[k] = c_ints[k]
        return c_scale, artificial

    def empty_domain(self, p: HostProblem) -> bool:
        lo = np.ceil(p.lb)
        hi = np.floor(p.ub)
        return bool(np.any(lo > hi))


_STATUS = {
    cp_model.OPTIMAL: Status.OPTIMAL,
    cp_model.FEASIBLE: Status.FEASIBLE,
    cp_model.INFEASIBLE: Status.INFEASIBLE,
    cp_model.MODEL_INVALID: Status.ERROR,
    cp_model.UNKNOWN: Status.NO_SOLUTION,
}


class CpSatBackend:
    """CP-SAT (OR-Tools' constraint-programming / SAT solver) for pure integer programs."""

    name = "cpsat"
    supports_integers = True

    def check(self, problem: HostProblem) -> None:
        self._check_integrality(problem)
        dtype = np.dtype(problem.input_dtype)
        for name in ("c", "A_ub", "b_ub", "A_eq", "b_eq"):
            arr = getattr(problem, name)
            for idx, v in zip(np.ndindex(arr.shape), arr.ravel(), strict=True):
                _to_fraction(v, dtype, MAX_DENOMINATOR, f"{name}[{', '.join(map(str, idx))}]")

    @staticmethod
    def _check_integrality(problem: HostProblem) -> None:
        if not problem.integrality.all():
            j = int(np.flatnonzero(~problem.integrality)[0])
            raise ValueError(
                f"backend `cpsat`: expected every variable integer (`integrality` all True), got "
                f"continuous variable {j}; use scip, highs or cbc for mixed-integer programs"
            )

    def solve(self, p: HostProblem, options: SolveOptions, cache: dict) -> HostResult:
        self._check_integrality(p)  # the data are checked exactly while loading
        t0 = time.perf_counter()
        key = ("cpsat", structure_key(p), options.time_limit, options.rel_gap, options.threads, options.seed)
        m = cache.get(key)
        if m is None:
            m = cache[key] = _CpModel(p, options)
        if m.empty_domain(p):
            return HostResult.failed(p.n, Status.INFEASIBLE, "empty integer domain")
        c_scale, artificial = m.load(p)
        code = m.solver.solve(m.model)
        status = _STATUS.get(code, Status.ERROR)
        if not status.has_solution:
            r = HostResult.failed(p.n, status, f"cpsat: {m.solver.status_name(code)}")
            r.solve_time = time.perf_counter() - t0
            return r
        x = np.array([m.solver.value(v) for v in m.vars], dtype=np.float64)
        dom = np.array(
            [[m.model.proto.variables[j].domain[0], m.model.proto.variables[j].domain[1]] for j in range(p.n)]
        )
        if np.any((artificial[0] & (x <= dom[:, 0])) | (artificial[1] & (x >= dom[:, 1]))):
            r = HostResult.failed(
                p.n,
                Status.ERROR,
                "cpsat: solution at an artificial bound (problem may be unbounded); give finite bounds",
            )
            r.solve_time = time.perf_counter() - t0
            return r
        objective = float(p.c @ x)
        bound = float(m.solver.best_objective_bound) / c_scale
        result = HostResult(x, objective, min(bound, objective), status)
        if options.duals:
            fixed_lp_duals(p, x, options, cache, result)
        result.solve_time = time.perf_counter() - t0
        return result
