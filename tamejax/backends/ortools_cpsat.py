"""CP-SAT through OR-Tools' ``cp_model``, with exact integer scaling of rational data.

CP-SAT takes integer variables and integer coefficients only. tamejax never rounds data:

* every variable must be integer (otherwise ``ValueError`` names `integrality`);
* each coefficient ``v`` is read as the fraction ``p/q`` whose value in the data's own
  floating dtype is exactly ``v``, with ``q`` small enough (``q <= sqrt(1 / (2 ulp(v)))`` and
  ``<= 10**6``) for that fraction to be unique: ``0.1`` (float32 or float64) is ``1/10``,
  while ``pi`` is refused; a value with no such fraction raises ``ValueError`` naming the
  field and index;
* each row ``a x <= b`` / ``a x == b`` is multiplied by the least common multiple of the
  denominators of its entries, and the objective by that of ``c``: an exact rescaling;
* integer bounds become ``ceil(lb)``, ``floor(ub)`` (exact for integer variables), and
  infinite bounds are first tightened by exact bound propagation over the scaled rows
  (integer arithmetic, so every derived bound is valid; a contradiction proves
  infeasibility). A bound that stays infinite becomes an artificial bound ``±M`` chosen so
  that no row can overflow 64-bit arithmetic; the answer then holds inside that box only,
  so ``OPTIMAL`` is reported as ``FEASIBLE`` with bound ``-inf`` (unless propagating the
  objective cutoff ``c x <= c x*`` proves that every solution at least as good lies inside
  the box: then it is ``OPTIMAL``), ``INFEASIBLE`` as
  ``NO_SOLUTION``, and a solution touching the box (the problem may be unbounded) as
  ``ERROR``. Give finite bounds for proofs.
* scaled integers must stay below ``2**53`` in magnitude, otherwise ``ValueError``.

The model is built once per structure; a re-solve writes the new integer coefficients into
the cached model's protocol buffer in place.
"""

from __future__ import annotations

import dataclasses
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
    """The rational that ``v`` stands for: the unique ``p/q`` the dtype rounds to ``v``.

    The denominator is capped at ``Q = floor(sqrt(1 / (2 ulp(v))))`` (and ``max_den``): two
    distinct fractions with denominators ``<= Q`` differ by at least ``1/Q**2 >= 2 ulp(v)``, so
    at most one of them rounds to ``v`` and the answer cannot be an accident of rounding.
    In float32 that still recovers ``0.1 -> 1/10`` or ``2.5 -> 5/2``, and rejects ``pi``.
    """
    v = dtype.type(v)
    if v == np.round(v):
        return Fraction(int(v))
    ulp = float(np.spacing(np.abs(v)))
    cap = max(1, min(max_den, math.isqrt(int(1.0 / (2.0 * ulp)))))
    fr = Fraction(float(v)).limit_denominator(cap)
    if dtype.type(fr.numerator / fr.denominator) != v:
        raise ValueError(
            f"backend `cpsat`: expected a rational p/q (q <= {cap}) that the data's dtype {dtype} represents "
            f"exactly (CP-SAT takes integer coefficients and tamejax scales rows exactly, never rounding), "
            f"got {where} = {v!r}"
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
        for ct in self.rows:  # ``load`` writes coefficient k of every row for variable k
            if list(proto.constraints[ct.index].linear.vars) != list(range(n)):  # pragma: no cover
                raise RuntimeError("cpsat: unexpected variable order in a linear constraint")
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

    def load(self, p: HostProblem) -> _Loaded:
        """Write the scaled data into the proto (unless bound propagation proves infeasibility)."""
        dtype = np.dtype(p.input_dtype)
        proto = self.model.proto
        n = p.n
        rows = [(p.A_ub[i], p.b_ub[i], f"A_ub[{i}]", False) for i in range(p.m_ub)]
        rows += [(p.A_eq[i], p.b_eq[i], f"A_eq[{i}]", True) for i in range(p.m_eq)]
        scaled = []
        max_row = 1
        for a, b, where, eq in rows:
            ints, _ = exact_integer_scaling(np.append(a, b), dtype, where)
            scaled.append((ints[:-1], ints[-1], eq))
            max_row = max(max_row, sum(abs(k) for k in ints[:-1]))
        c_ints, c_scale = exact_integer_scaling(p.c, dtype, "c")
        max_row = max(max_row, sum(abs(k) for k in c_ints))
        big = int(min(2**40, (2**62) // (max_row * max(1, n))))
        # Integer bounds are exact (ceil/floor); infinite ones are first tightened by exact
        # bound propagation over the rows, and only what stays infinite gets an artificial M.
        lo = [math.ceil(v) if math.isfinite(v) else None for v in p.lb]
        hi = [math.floor(v) if math.isfinite(v) else None for v in p.ub]
        given = [abs(v) for v in lo + hi if v is not None]
        if given and max(given) >= big:
            raise ValueError(
                f"backend `cpsat`: expected variable bounds below {big} in magnitude for these "
                f"coefficients (64-bit overflow), got {max(given)}"
            )
        if not _propagate(scaled, lo, hi):
            return _Loaded(c_scale, c_ints, scaled, lo, hi, big, np.zeros((2, n), bool), True)
        implied_lo, implied_hi = list(lo), list(hi)
        artificial = np.array([[v is None or abs(v) >= big for v in lo], [v is None or abs(v) >= big for v in hi]])
        lo = [-big if art else v for v, art in zip(lo, artificial[0], strict=True)]
        hi = [big if art else v for v, art in zip(hi, artificial[1], strict=True)]
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
        return _Loaded(c_scale, c_ints, scaled, implied_lo, implied_hi, big, artificial, False)


@dataclasses.dataclass
class _Loaded:
    c_scale: int  # objective multiplied by this to make it integral
    c_ints: list[int]
    rows: list[tuple[list[int], int, bool]]  # scaled (coefficients, rhs, is_equality)
    lo: list  # implied integer bounds (None: infinite) before any artificial bound
    hi: list
    big: int  # the artificial bound M
    artificial: np.ndarray  # (2, n): lower / upper bound replaced by -M / +M
    infeasible: bool  # proven by bound propagation

    def box_holds_all_better_points(self, objective: int) -> bool:
        """Does every solution with ``c_ints @ x <= objective`` lie strictly inside the box?

        Propagates the rows plus the objective cutoff from the implied bounds; if every bound
        becomes finite and smaller than ``M``, the optimum inside the box is the optimum.
        """
        lo, hi = list(self.lo), list(self.hi)
        if not _propagate([*self.rows, (self.c_ints, objective, False)], lo, hi):
            return True  # no better point at all
        return all(v is not None and abs(v) < self.big for v in lo + hi)


def _propagate(rows: list[tuple[list[int], int, bool]], lo: list, hi: list, rounds: int = 20) -> bool:
    """Tighten integer bounds in place by exact bound propagation; ``False`` if infeasible.

    For a row ``a x <= b`` and a variable ``j``: ``a_j x_j <= b - min(sum_{k != j} a_k x_k)``,
    where the minimum uses ``lo_k`` for ``a_k > 0`` and ``hi_k`` for ``a_k < 0`` (``None`` is
    infinite). Equality rows are used in both directions. All arithmetic is on Python
    integers and fractions, so every derived bound is valid.
    """
    directed = []
    for a, b, eq in rows:
        directed.append((a, b))
        if eq:
            directed.append(([-v for v in a], -b))
    for _ in range(rounds):
        changed = False
        for a, b in directed:
            terms = []  # minimal contribution of each variable, None if -inf
            for k, ak in enumerate(a):
                if ak == 0:
                    terms.append(0)
                else:
                    bound = lo[k] if ak > 0 else hi[k]
                    terms.append(None if bound is None else ak * bound)
            infinite = [k for k, t in enumerate(terms) if t is None]
            if len(infinite) > 1:
                continue
            total = sum(t for t in terms if t is not None)
            for j, aj in enumerate(a):
                if aj == 0 or (infinite and infinite[0] != j):
                    continue
                rest = total - (terms[j] if terms[j] is not None else 0)
                limit = Fraction(b - rest, aj)
                if aj > 0:
                    new = math.floor(limit)
                    if hi[j] is None or new < hi[j]:
                        hi[j], changed = new, True
                else:
                    new = math.ceil(limit)
                    if lo[j] is None or new > lo[j]:
                        lo[j], changed = new, True
                if lo[j] is not None and hi[j] is not None and lo[j] > hi[j]:
                    return False
        if not changed:
            break
    return True


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
    checks_data = True  # ``check`` verifies that every datum is an exactly scalable rational

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
        if np.any(np.ceil(p.lb) > np.floor(p.ub)):
            return HostResult.failed(p.n, Status.INFEASIBLE, "empty integer domain")
        loaded = m.load(p)
        c_scale, artificial = loaded.c_scale, loaded.artificial
        if loaded.infeasible:
            r = HostResult.failed(p.n, Status.INFEASIBLE, "cpsat: bound propagation proved infeasibility")
            r.solve_time = time.perf_counter() - t0
            return r
        restricted = bool(artificial.any())  # the solver sees the problem inside an artificial box
        code = m.solver.solve(m.model)
        status = _STATUS.get(code, Status.ERROR)
        if restricted and status == Status.INFEASIBLE:
            status = Status.NO_SOLUTION  # infeasible inside the box only
        if not status.has_solution:
            message = f"cpsat: {m.solver.status_name(code)}" + (" (inside artificial bounds)" if restricted else "")
            r = HostResult.failed(p.n, status, message)
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
        message = ""
        scaled_objective = sum(k * int(v) for k, v in zip(loaded.c_ints, x, strict=True))
        if restricted and not (status == Status.OPTIMAL and loaded.box_holds_all_better_points(scaled_objective)):
            # Optimal inside an artificial box is only feasible for the real problem (a better
            # integer point may lie outside it): no proven bound.
            status, bound = Status.FEASIBLE, -math.inf
            message = "cpsat: optimal inside artificial bounds only; give finite bounds for a proof"
        result = HostResult(x, objective, min(bound, objective), status, message=message)
        if options.duals:
            fixed_lp_duals(p, x, options, cache, result)
        result.solve_time = time.perf_counter() - t0
        return result
