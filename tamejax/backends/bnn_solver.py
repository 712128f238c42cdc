"""A neutral sparse MIP model (NumPy) and its solve by CP-SAT or SCIP, for ``tamejax.bnn``.

This is the only module of ``tamejax.bnn`` that imports OR-Tools. A :class:`SparseModel` holds

* variables ``x_j`` with bounds ``lb_j <= x_j <= ub_j`` and an integer flag;
* linear rows ``lo_i <= sum_j A_ij x_j <= hi_i`` in COO form, each optionally *enforced* by a
  literal: the row must hold only when the 0/1 variable ``x[enf_var_i]`` equals ``enf_val_i``
  (an indicator constraint);
* a linear objective ``min obj . x + obj_offset``.

:func:`solve` sends it to

* **CP-SAT** (default): an enforced row becomes ``OnlyEnforceIf`` natively. CP-SAT takes
  integer variables and integer coefficients only: a continuous variable or a fractional row
  coefficient raises ``ValueError``; row bounds are rounded inwards (``ceil(lo)``,
  ``floor(hi)``), which is exact since every activity is then an integer; a fractional
  objective is multiplied by the least common multiple of its denominators in exact rational
  arithmetic (:func:`objective_integers`) and divided back in the answer; :func:`check_model`
  reports data CP-SAT cannot take before any solve;
* **SCIP** (through ``pywraplp``): an enforced row ``lo <= a.x <= hi`` if ``g = 1`` (``g`` is the
  literal or its complement) becomes the big-M pair
  ``a.x - (lo - m) g >= m`` and ``a.x + (M - hi) g <= M`` with ``m``/``M`` the smallest/largest
  value of ``a.x`` over the variable bounds (so the bounds of every variable of an enforced
  row must be finite).

The model is built in bulk: the CP-SAT protocol buffer is filled row by row from Python lists
(measured about 1 s for 50,000 rows of 20 terms on one core), never through the expression API.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np

from tamejax.backends.base import Status

__all__ = ["SparseModel", "SolveResult", "solve", "check_model", "objective_integers", "ENGINES"]

ENGINES = ("cpsat", "scip")
_MAX_INT = 2**53


def _canonical(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, ...]:
    """COO sorted by (row, column) with repeated entries of a row summed and zeros dropped."""
    if rows.size == 0:
        return rows, cols, vals
    order = np.lexsort((cols, rows))
    r, c, v = rows[order], cols[order], vals[order]
    new = np.ones(r.size, bool)
    new[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
    if not np.all(new):
        start = np.flatnonzero(new)
        r, c, v = r[start], c[start], np.add.reduceat(v, start)
    keep = v != 0
    return r[keep], c[keep], v[keep]


def _as_index_array(idx: object, field: str) -> np.ndarray:
    arr = np.asarray(idx)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"argument `{field}`: expected integer variable indices, got dtype {arr.dtype}")
    return arr.astype(np.int64)


class SparseModel:
    """A mixed-integer linear model in NumPy arrays (minimisation), mutable and copyable.

    Attributes:
      lb: lower bounds, float64 ``(n,)``.
      ub: upper bounds, float64 ``(n,)``.
      integer: integer flags, bool ``(n,)``.
      obj: objective coefficients, float64 ``(n,)`` (the model *minimises* ``obj . x + obj_offset``).
      obj_offset: constant of the objective.
    """

    def __init__(self) -> None:
        self.lb = np.zeros(0)
        self.ub = np.zeros(0)
        self.integer = np.zeros(0, dtype=bool)
        self.obj = np.zeros(0)
        self.obj_offset = 0.0
        self._chunks: list[tuple[np.ndarray, ...]] = []  # (rows, cols, vals, lo, hi, enf_var, enf_val)
        self._m = 0
        self._cache: tuple[np.ndarray, ...] | None = None

    # -- sizes and views ------------------------------------------------------------------------
    @property
    def n_vars(self) -> int:
        """Number of variables."""
        return int(self.lb.shape[0])

    @property
    def n_rows(self) -> int:
        """Number of linear rows."""
        return self._m

    def _rows(self) -> tuple[np.ndarray, ...]:
        if self._cache is None:
            if self._chunks:
                parts = [np.concatenate(p) for p in zip(*self._chunks, strict=True)]
                parts[0], parts[1], parts[2] = _canonical(parts[0], parts[1], parts[2])
                self._cache = tuple(parts)
            else:
                e_i, e_f = np.zeros(0, np.int64), np.zeros(0)
                self._cache = (e_i, e_i, e_f, e_f, e_f, e_i, np.zeros(0, np.int8))
            self._chunks = [self._cache]
        return self._cache

    @property
    def rows(self) -> np.ndarray:
        """Row index of each nonzero (COO), int64."""
        return self._rows()[0]

    @property
    def cols(self) -> np.ndarray:
        """Variable index of each nonzero (COO), int64."""
        return self._rows()[1]

    @property
    def vals(self) -> np.ndarray:
        """Coefficient of each nonzero (COO), float64."""
        return self._rows()[2]

    @property
    def row_lo(self) -> np.ndarray:
        """Lower side of each row (``-inf`` allowed)."""
        return self._rows()[3]

    @property
    def row_hi(self) -> np.ndarray:
        """Upper side of each row (``+inf`` allowed)."""
        return self._rows()[4]

    @property
    def enf_var(self) -> np.ndarray:
        """Enforcement variable of each row (``-1``: the row always holds)."""
        return self._rows()[5]

    @property
    def enf_val(self) -> np.ndarray:
        """Value (0 or 1) the enforcement variable must take for the row to hold."""
        return self._rows()[6]

    # -- building -------------------------------------------------------------------------------
    def add_vars(
        self, shape: int | Sequence[int], lb: float | np.ndarray, ub: float | np.ndarray, integer: bool = True
    ) -> np.ndarray:
        """Append variables.

        Args:
          shape: number of variables or the shape of the returned index array.
          lb: lower bound(s), broadcast to ``shape``.
          ub: upper bound(s), broadcast to ``shape``.
          integer: whether the variables are integer.

        Returns:
          The int64 indices of the new variables, with the given shape.

        Raises:
          ValueError: if some ``lb > ub`` or a bound is NaN.
        """
        shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
        count = math.prod(shape)
        lo = np.broadcast_to(np.asarray(lb, np.float64), shape).reshape(-1)
        hi = np.broadcast_to(np.asarray(ub, np.float64), shape).reshape(-1)
        if np.any(np.isnan(lo)) or np.any(np.isnan(hi)) or np.any(lo > hi):
            raise ValueError(f"argument `lb`/`ub`: expected lb <= ub without NaN, got lb={lo[:5]}, ub={hi[:5]}")
        start = self.n_vars
        self.lb = np.concatenate([self.lb, lo])
        self.ub = np.concatenate([self.ub, hi])
        self.integer = np.concatenate([self.integer, np.full(count, bool(integer))])
        self.obj = np.concatenate([self.obj, np.zeros(count)])
        return np.arange(start, start + count, dtype=np.int64).reshape(shape)

    def add_rows(
        self,
        cols: np.ndarray | Sequence[Sequence[int]],
        vals: np.ndarray | Sequence[Sequence[float]],
        lo: float | np.ndarray,
        hi: float | np.ndarray,
        *,
        enforce_var: int | np.ndarray | None = None,
        enforce_val: int | np.ndarray = 1,
    ) -> np.ndarray:
        """Append ``m`` rows ``lo_i <= sum_k vals[i, k] x[cols[i, k]] <= hi_i`` (vectorised).

        Args:
          cols: ``(m, k)`` variable indices; ``-1`` pads rows with fewer terms. A variable may
            appear twice in one row: its coefficients add up (the stored rows are canonical,
            sorted by variable with repeated entries summed, for both engines).
          vals: ``(m, k)`` coefficients (broadcast to ``cols``' shape).
          lo: lower side(s), broadcast to ``(m,)``; ``-inf`` for none.
          hi: upper side(s), broadcast to ``(m,)``; ``+inf`` for none.
          enforce_var: ``None`` (rows always hold) or the 0/1 variable(s) ``(m,)`` enforcing them
            (``-1``: this row always holds).
          enforce_val: value(s) ``(m,)`` in {0, 1} the enforcement variable must take.

        Returns:
          The int64 indices of the new rows.

        Raises:
          ValueError: on out-of-range indices, NaN data, ``lo > hi``, or a non-0/1 enforcement variable.
        """
        c = _as_index_array(cols, "cols")
        if c.ndim == 1:
            c = c[None, :]
        if c.ndim != 2:
            raise ValueError(f"argument `cols`: expected shape (m, k), got {c.shape}")
        m = c.shape[0]
        v = np.broadcast_to(np.asarray(vals, np.float64), c.shape)
        lo_a = np.broadcast_to(np.asarray(lo, np.float64), (m,)).copy()
        hi_a = np.broadcast_to(np.asarray(hi, np.float64), (m,)).copy()
        if np.any(c >= self.n_vars) or np.any(c < -1):
            raise ValueError(
                f"argument `cols`: variable indices must lie in [-1, {self.n_vars}), got {c.min()}..{c.max()}"
            )
        if np.any(np.isnan(v)) or np.any(np.isinf(v)):
            bad = np.argwhere(~np.isfinite(v))[0]
            raise ValueError(f"argument `vals`: expected finite coefficients, got {v[tuple(bad)]} at {tuple(bad)}")
        if np.any(np.isnan(lo_a)) or np.any(np.isnan(hi_a)) or np.any(lo_a > hi_a):
            i = int(np.flatnonzero(np.isnan(lo_a) | np.isnan(hi_a) | (lo_a > hi_a))[0])
            raise ValueError(
                f"argument `lo`/`hi`: expected lo <= hi without NaN, got lo={lo_a[i]}, hi={hi_a[i]} (row {i})"
            )
        if enforce_var is None:
            ev = np.full(m, -1, np.int64)
        else:
            ev = np.broadcast_to(_as_index_array(enforce_var, "enforce_var"), (m,)).copy()
        ek = np.broadcast_to(np.asarray(enforce_val, np.int64), (m,)).astype(np.int8)
        used = ev[ev >= 0]
        if used.size:
            if np.any(used >= self.n_vars):
                raise ValueError(f"argument `enforce_var`: index out of range [0, {self.n_vars})")
            ok = self.integer[used] & (self.lb[used] >= 0) & (self.ub[used] <= 1)
            if not np.all(ok):
                j = int(used[~ok][0])
                raise ValueError(
                    f"argument `enforce_var`: expected 0/1 integer variables, got variable {j} with bounds "
                    f"[{self.lb[j]}, {self.ub[j]}], integer={bool(self.integer[j])}"
                )
        if np.any((ek != 0) & (ek != 1)):
            raise ValueError(f"argument `enforce_val`: expected values in {{0, 1}}, got {ek[(ek != 0) & (ek != 1)][0]}")
        mask = (c >= 0) & (v != 0)
        r_idx = np.broadcast_to(np.arange(self._m, self._m + m, dtype=np.int64)[:, None], c.shape)[mask]
        self._chunks.append((r_idx, c[mask], v[mask].astype(np.float64), lo_a, hi_a, ev, ek))
        self._cache = None
        self._m += m
        return np.arange(self._m - m, self._m, dtype=np.int64)

    def add_row(
        self,
        cols: Sequence[int] | np.ndarray,
        vals: Sequence[float] | np.ndarray,
        lo: float,
        hi: float,
        *,
        enforce_var: int = -1,
        enforce_val: int = 1,
    ) -> int:
        """Append one row ``lo <= sum_k vals[k] x[cols[k]] <= hi``.

        Args:
          cols: variable indices.
          vals: coefficients.
          lo: lower side (``-inf`` for none).
          hi: upper side (``+inf`` for none).
          enforce_var: enforcing 0/1 variable, ``-1`` for none.
          enforce_val: value the enforcing variable must take.

        Returns:
          The row index.
        """
        cols_a = np.asarray(cols, np.int64).reshape(1, -1)
        vals_a = np.asarray(vals, np.float64).reshape(1, -1)
        return int(
            self.add_rows(cols_a, vals_a, lo, hi, enforce_var=np.array([enforce_var]), enforce_val=enforce_val)[0]
        )

    def fix(self, idx: np.ndarray | Sequence[int] | int, values: float | np.ndarray) -> None:
        """Fix variables: ``lb = ub = values`` (broadcast).

        Args:
          idx: variable indices (any shape).
          values: values, broadcast to ``idx``' shape.
        """
        self.set_bounds(idx, values, values)

    def set_bounds(self, idx: np.ndarray | Sequence[int] | int, lo: float | np.ndarray, hi: float | np.ndarray) -> None:
        """Set the bounds of variables (broadcast).

        Args:
          idx: variable indices (any shape).
          lo: new lower bounds.
          hi: new upper bounds.

        Raises:
          ValueError: if a new ``lo > hi``.
        """
        i = _as_index_array(idx, "idx").reshape(-1)
        lo_a = np.broadcast_to(np.asarray(lo, np.float64), np.shape(idx)).reshape(-1)
        hi_a = np.broadcast_to(np.asarray(hi, np.float64), np.shape(idx)).reshape(-1)
        if np.any(lo_a > hi_a) or np.any(np.isnan(lo_a)) or np.any(np.isnan(hi_a)):
            k = int(np.flatnonzero((lo_a > hi_a) | np.isnan(lo_a) | np.isnan(hi_a))[0])
            raise ValueError(f"argument `lo`/`hi`: expected lo <= hi without NaN, got lo={lo_a[k]}, hi={hi_a[k]}")
        self.lb[i] = lo_a
        self.ub[i] = hi_a

    def add_objective(self, idx: np.ndarray | Sequence[int] | int, coefs: float | np.ndarray) -> None:
        """Add ``coefs`` to the objective coefficients of ``idx`` (minimisation).

        Args:
          idx: variable indices.
          coefs: coefficients, broadcast to ``idx``' shape.
        """
        i = _as_index_array(idx, "idx").reshape(-1)
        np.add.at(self.obj, i, np.broadcast_to(np.asarray(coefs, np.float64), np.shape(idx)).reshape(-1))

    def copy(self) -> SparseModel:
        """An independent copy (rows are shared read-only; bounds and objective are copied)."""
        new = SparseModel()
        new.lb, new.ub, new.integer, new.obj = self.lb.copy(), self.ub.copy(), self.integer.copy(), self.obj.copy()
        new.obj_offset = self.obj_offset
        new._chunks = [self._rows()]
        new._cache = self._rows()
        new._m = self._m
        return new

    # -- checks ---------------------------------------------------------------------------------
    def activities(self, x: np.ndarray) -> np.ndarray:
        """Row activities ``A x``.

        Args:
          x: a point ``(n,)``.

        Returns:
          ``(m,)`` activities.
        """
        act = np.zeros(self._m)
        np.add.at(act, self.rows, self.vals * np.asarray(x, np.float64)[self.cols])
        return act

    def violations(self, x: np.ndarray, tol: float = 1e-6) -> int:
        """Number of bounds, integrality conditions and active rows that ``x`` violates.

        Args:
          x: a point ``(n,)``.
          tol: absolute tolerance.

        Returns:
          The count of violated conditions (0 for a feasible point).
        """
        x = np.asarray(x, np.float64)
        bad = int(np.sum((x < self.lb - tol) | (x > self.ub + tol)))
        bad += int(np.sum(self.integer & (np.abs(x - np.round(x)) > tol)))
        act = self.activities(x)
        active = np.ones(self._m, bool)
        ev = self.enf_var
        has = ev >= 0
        active[has] = np.round(x[ev[has]]) == self.enf_val[has]
        viol = (act < self.row_lo - tol) | (act > self.row_hi + tol)
        return bad + int(np.sum(viol & active))

    def objective_of(self, x: np.ndarray) -> float:
        """The objective value ``obj . x + obj_offset``.

        Args:
          x: a point ``(n,)``.

        Returns:
          The value.
        """
        return float(self.obj @ np.asarray(x, np.float64) + self.obj_offset)

    def activity_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Smallest and largest value of each row's ``a.x`` over the variable bounds.

        Returns:
          ``(m,)`` arrays (``-inf``/``+inf`` where a bound is infinite).
        """
        r, c, v = self.rows, self.cols, self.vals
        with np.errstate(invalid="ignore"):
            a_lo = np.where(v > 0, v * self.lb[c], v * self.ub[c])
            a_hi = np.where(v > 0, v * self.ub[c], v * self.lb[c])
        mn = np.zeros(self._m)
        mx = np.zeros(self._m)
        np.add.at(mn, r, a_lo)
        np.add.at(mx, r, a_hi)
        return mn, mx


@dataclasses.dataclass
class SolveResult:
    """What :func:`solve` returns.

    Attributes:
      status: outcome (``Status.OPTIMAL``, ``FEASIBLE`` = stopped by a limit with an incumbent,
        ``INFEASIBLE``, ``NO_SOLUTION`` = limit without incumbent, ``ERROR``).
      x: the best point (integer variables rounded), or ``None`` without one.
      objective: ``obj . x + obj_offset`` of ``x`` (``nan`` without a point, ``inf`` if infeasible).
      bound: best proven lower bound on the objective (``nan`` if unknown).
      wall_time: seconds spent (building and solving).
      history: ``(t, incumbent, bound)`` at each improving solution (CP-SAT) or at the end (SCIP).
      message: details (solver status name, error text).
    """

    status: Status
    x: np.ndarray | None
    objective: float
    bound: float
    wall_time: float
    history: list[tuple[float, float, float]] = dataclasses.field(default_factory=list)
    message: str = ""


def _exact_integers(values: np.ndarray, field: str) -> np.ndarray:
    r = np.round(values)
    if np.any(np.abs(values - r) > 0) or np.any(np.abs(r) >= _MAX_INT):
        bad = int(np.flatnonzero((np.abs(values - r) > 0) | (np.abs(r) >= _MAX_INT))[0])
        raise ValueError(
            f"engine `cpsat`: expected integer {field} (CP-SAT takes integer data only), "
            f"got {field}[{bad}] = {values[bad]!r}"
        )
    return r.astype(np.int64)


def objective_integers(obj: np.ndarray) -> tuple[np.ndarray, int]:
    """Exact integer objective for CP-SAT: ``obj * scale`` with ``scale`` the LCM of the denominators.

    Every coefficient must be a rational ``p / q`` with ``q <= 10**6`` whose float64 value is
    exactly ``obj_j`` (e.g. 0.29 is read as 29/100); the integers ``p * scale / q`` are computed
    in exact rational arithmetic (never ``obj * scale`` in floating point).

    Args:
      obj: objective coefficients ``(n,)``.

    Returns:
      ``(iobj, scale)``: int64 coefficients and the positive integer factor.

    Raises:
      ValueError: naming the coefficient, if one is not such a rational or the scaled integers
        reach ``2**53``.
    """
    fracs: dict[float, Fraction] = {}
    lcm = 1
    for v in np.unique(obj[obj != 0]).tolist():
        fr = Fraction(v).limit_denominator(10**6)
        if float(fr) != v:
            j = int(np.flatnonzero(obj == v)[0])
            raise ValueError(
                f"engine `cpsat`: objective coefficient {j} = {v!r} is not a rational with denominator <= 1e6 "
                "(CP-SAT needs an exact integer objective); use engine 'scip' or a rational value such as 0.25"
            )
        fracs[v] = fr
        lcm = lcm * fr.denominator // math.gcd(lcm, fr.denominator)
    iobj = np.zeros(obj.shape[0], np.int64)
    for v, fr in fracs.items():
        q = fr * lcm
        if abs(q.numerator) >= _MAX_INT:
            raise ValueError(f"engine `cpsat`: objective coefficient {v!r} times the scale {lcm} reaches 2**53")
        iobj[obj == v] = int(q)
    return iobj, lcm


def check_model(model: SparseModel, engine: str) -> None:
    """Check, before any solve, that ``engine`` can take the model's data exactly.

    CP-SAT needs integer variables, finite bounds, integer row coefficients and an objective
    of rationals with denominators ``<= 10**6``; SCIP takes any finite data.

    Args:
      model: the model.
      engine: ``"cpsat"`` or ``"scip"``.

    Raises:
      ValueError: naming what the engine cannot take and the value received.
    """
    if engine not in ENGINES:
        raise ValueError(f"argument `engine`: expected one of {ENGINES}, got {engine!r}")
    if engine != "cpsat":
        return
    if not np.all(model.integer):
        j = int(np.flatnonzero(~model.integer)[0])
        raise ValueError(
            f"engine `cpsat`: expected integer variables only, got continuous variable {j}; use engine 'scip' "
            "(continuous weights) or integer weights"
        )
    if not (np.all(np.isfinite(model.lb)) and np.all(np.isfinite(model.ub))):
        j = int(np.flatnonzero(~(np.isfinite(model.lb) & np.isfinite(model.ub)))[0])
        raise ValueError(
            f"engine `cpsat`: expected finite variable bounds, got [{model.lb[j]}, {model.ub[j]}] for variable {j}"
        )
    _exact_integers(model.vals, "row coefficients")
    objective_integers(model.obj)


def _csr(model: SparseModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(model.rows, kind="stable")
    indptr = np.zeros(model.n_rows + 1, np.int64)
    np.cumsum(np.bincount(model.rows, minlength=model.n_rows), out=indptr[1:])
    return indptr, model.cols[order], model.vals[order]


def _solve_cpsat(
    model: SparseModel,
    time_limit: float | None,
    threads: int | None,
    seed: int,
    hint: np.ndarray | None,
    progress: Callable[[float, float, float], None] | None,
    rel_gap: float | None,
    log: bool,
    t0: float,
    params: dict | None = None,
) -> SolveResult:
    from ortools.sat.python import cp_model

    n = model.n_vars
    check_model(model, "cpsat")
    lb = np.ceil(model.lb - 1e-9).astype(np.int64)
    ub = np.floor(model.ub + 1e-9).astype(np.int64)
    if np.any(lb > ub):
        return SolveResult(
            Status.INFEASIBLE, None, math.inf, math.inf, time.perf_counter() - t0, message="empty domain"
        )
    indptr, cols, vals = _csr(model)
    ivals = _exact_integers(vals, "row coefficients")
    mn, mx = model.activity_bounds()
    lo = np.maximum(np.ceil(model.row_lo - 1e-9), mn)
    hi = np.minimum(np.floor(model.row_hi + 1e-9), mx)
    iobj, scale = objective_integers(model.obj)

    cp = cp_model.CpModel()
    proto = cp.proto
    for a, b in zip(lb.tolist(), ub.tolist(), strict=True):
        proto.variables.add().domain.extend([a, b])
    cols_l, vals_l = cols.tolist(), ivals.tolist()
    ptr = indptr.tolist()
    ev, ek = model.enf_var.tolist(), model.enf_val.tolist()
    trivially_infeasible = False
    for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
        s, e = ptr[i], ptr[i + 1]
        if a <= mn[i] and b >= mx[i]:
            continue  # always satisfied
        if a > b:
            if ev[i] < 0:
                trivially_infeasible = True
                break
            # the row can never hold: its literal must take the other value
            lit = ev[i] if ek[i] == 0 else -ev[i] - 1
            c = proto.constraints.add()
            c.bool_or.literals.append(lit)
            continue
        c = proto.constraints.add()
        if ev[i] >= 0:
            c.enforcement_literal.append(ev[i] if ek[i] == 1 else -ev[i] - 1)
        lin = c.linear
        lin.vars.extend(cols_l[s:e])
        lin.coeffs.extend(vals_l[s:e])
        lin.domain.extend([int(a), int(b)])
    if trivially_infeasible:
        return SolveResult(
            Status.INFEASIBLE, None, math.inf, math.inf, time.perf_counter() - t0, message="a row cannot hold"
        )
    nz = np.flatnonzero(iobj)
    if nz.size:
        proto.objective.vars.extend(nz.tolist())
        proto.objective.coeffs.extend(iobj[nz].tolist())
    if hint is not None:
        h = np.asarray(hint, np.float64)
        if h.shape != (n,):
            raise ValueError(f"argument `hint`: expected shape ({n},), got {h.shape}")
        have = np.flatnonzero(~np.isnan(h))
        hv = np.clip(np.round(h[have]), lb[have], ub[have]).astype(np.int64)
        proto.solution_hint.vars.extend(have.tolist())
        proto.solution_hint.values.extend(hv.tolist())

    solver = cp_model.CpSolver()
    prm = solver.parameters
    if time_limit is not None:
        prm.max_time_in_seconds = float(time_limit)
    if threads is not None:
        prm.num_workers = int(threads)
    prm.random_seed = int(seed)
    if rel_gap is not None:
        prm.relative_gap_limit = float(rel_gap)
    prm.log_search_progress = bool(log)
    for key, value in (params or {}).items():
        setattr(prm, key, value)
    history: list[tuple[float, float, float]] = []
    offset = model.obj_offset

    class _Cb(cp_model.CpSolverSolutionCallback):
        def on_solution_callback(self) -> None:
            inc = self.ObjectiveValue() / scale + offset if nz.size else offset
            bnd = self.BestObjectiveBound() / scale + offset if nz.size else offset
            t = time.perf_counter() - t0
            history.append((t, inc, bnd))
            if progress is not None:
                progress(t, inc, bnd)

    code = solver.Solve(cp, _Cb())
    wall = time.perf_counter() - t0
    name = solver.StatusName(code)
    if code in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        x = np.asarray(list(solver.response_proto.solution), np.float64)[:n]
        obj = float(model.obj @ x + offset)
        bound = solver.BestObjectiveBound() / scale + offset if nz.size else obj
        status = Status.OPTIMAL if code == cp_model.OPTIMAL else Status.FEASIBLE
        if status == Status.OPTIMAL:
            # OPTIMAL only when the bound proves it: with relative_gap_limit CP-SAT reports OPTIMAL
            # as soon as the gap limit is met. The scaled objective is an integer, so the bound
            # proves optimality iff ceil(bound) >= the incumbent (scaled units).
            iinc = int(iobj @ np.round(x).astype(np.int64)) if nz.size else 0
            ibnd = solver.BestObjectiveBound() if nz.size else 0.0
            if rel_gap is None or math.ceil(ibnd - 1e-9) >= iinc:
                bound = obj
            else:
                status = Status.FEASIBLE
                name = f"{name}: stopped at relative gap {rel_gap} (optimality not proven)"
        history.append((wall, obj, bound))
        if progress is not None:
            progress(wall, obj, bound)
        return SolveResult(status, x, obj, bound, wall, history, name)
    if code == cp_model.INFEASIBLE:
        return SolveResult(Status.INFEASIBLE, None, math.inf, math.inf, wall, history, name)
    if code == cp_model.UNKNOWN:
        # CP-SAT reports a placeholder bound (0) when stopped in presolve: report none
        msg = name + ": limit reached, no solution"
        return SolveResult(Status.NO_SOLUTION, None, math.nan, math.nan, wall, history, msg)
    return SolveResult(Status.ERROR, None, math.nan, math.nan, wall, history, f"{name}: {cp.Validate()}")


def _solve_scip(
    model: SparseModel,
    time_limit: float | None,
    threads: int | None,
    seed: int,
    hint: np.ndarray | None,
    progress: Callable[[float, float, float], None] | None,
    rel_gap: float | None,
    log: bool,
    t0: float,
) -> SolveResult:
    from ortools.linear_solver import _pywraplp, pywraplp

    solver = pywraplp.Solver.CreateSolver("SCIP")
    if solver is None:  # pragma: no cover - depends on the OR-Tools build
        return SolveResult(Status.ERROR, None, math.nan, math.nan, 0.0, message="OR-Tools was built without SCIP")
    if not log:
        solver.SuppressOutput()
    else:
        solver.EnableOutput()
    inf = solver.infinity()
    n = model.n_vars
    lbv = np.clip(model.lb, -inf, inf).tolist()
    ubv = np.clip(model.ub, -inf, inf).tolist()
    xs = [
        solver.Var(a, b, bool(t), f"x{j}")
        for j, (a, b, t) in enumerate(zip(lbv, ubv, model.integer.tolist(), strict=True))
    ]
    indptr, cols, vals = _csr(model)
    mn, mx = model.activity_bounds()
    ptr = indptr.tolist()
    cols_l, vals_l = cols.tolist(), vals.tolist()
    lo_l, hi_l = model.row_lo.tolist(), model.row_hi.tolist()
    ev, ek = model.enf_var.tolist(), model.enf_val.tolist()
    set_coef = _pywraplp.Constraint_SetCoefficient
    for i in range(model.n_rows):
        s, e = ptr[i], ptr[i + 1]
        a, b = lo_l[i], hi_l[i]
        if a <= mn[i] and b >= mx[i]:
            continue
        terms = list(zip(cols_l[s:e], vals_l[s:e], strict=True))
        if ev[i] < 0:
            row = solver.Constraint(max(a, -inf), min(b, inf))
            for j, v in terms:
                set_coef(row, xs[j], v)
            continue
        if not (math.isfinite(mn[i]) and math.isfinite(mx[i])):
            raise ValueError(
                f"engine `scip`: enforced row {i} needs finite bounds on its variables for the big-M reformulation"
            )
        z, val = ev[i], ek[i]
        # g = z (val 1) or 1 - z (val 0); lower side: a.x - (a - mn) g >= mn; upper: a.x + (mx - b) g <= mx
        for side, big, bnd in (("lo", a - mn[i], mn[i]), ("hi", mx[i] - b, mx[i])):
            if big <= 0:
                continue
            sign = -1.0 if side == "lo" else 1.0
            coef_z = sign * big if val == 1 else -sign * big
            const = 0.0 if val == 1 else sign * big  # g = 1 - z contributes sign*big - sign*big*z
            if side == "lo":
                row = solver.Constraint(bnd - const, inf)
            else:
                row = solver.Constraint(-inf, bnd - const)
            acc: dict[int, float] = {}
            for j, v in terms:
                acc[j] = acc.get(j, 0.0) + v
            acc[z] = acc.get(z, 0.0) + coef_z
            for j, v in acc.items():
                set_coef(row, xs[j], v)
    objective = solver.Objective()
    for j in np.flatnonzero(model.obj).tolist():
        objective.SetCoefficient(xs[j], float(model.obj[j]))
    objective.SetOffset(float(model.obj_offset))
    objective.SetMinimization()
    if time_limit is not None:
        solver.SetTimeLimit(max(1, int(math.ceil(time_limit * 1000))))
    if threads is not None:
        solver.SetNumThreads(int(threads))
    solver.SetSolverSpecificParametersAsString(f"randomization/randomseedshift = {int(seed)}")
    params = pywraplp.MPSolverParameters()
    if rel_gap is not None:
        params.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, float(rel_gap))
    if hint is not None:
        h = np.asarray(hint, np.float64)
        if h.shape != (n,):
            raise ValueError(f"argument `hint`: expected shape ({n},), got {h.shape}")
        have = np.flatnonzero(~np.isnan(h)).tolist()
        solver.SetHint([xs[j] for j in have], [float(h[j]) for j in have])
    code = solver.Solve(params)
    wall = time.perf_counter() - t0
    if code in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        x = np.array(list(map(_pywraplp.Variable_solution_value, xs)), np.float64)
        x[model.integer] = np.round(x[model.integer])
        obj = float(model.obj @ x + model.obj_offset)
        try:
            bound = float(objective.BestBound())
        except Exception:  # noqa: BLE001 - some builds do not report it
            bound = math.nan
        status = Status.OPTIMAL if code == pywraplp.Solver.OPTIMAL else Status.FEASIBLE
        msg = "SCIP " + ("OPTIMAL" if code == 0 else "FEASIBLE")
        if status == Status.OPTIMAL:
            # with a gap limit SCIP reports OPTIMAL once the gap is met: keep OPTIMAL only if proven
            if rel_gap is None or (math.isfinite(bound) and bound >= obj - 1e-9 * max(1.0, abs(obj))):
                bound = obj
            else:
                status = Status.FEASIBLE
                msg += f": stopped at relative gap {rel_gap} (optimality not proven)"
        hist = [(wall, obj, bound)]
        if progress is not None:
            progress(wall, obj, bound)
        return SolveResult(status, x, obj, bound, wall, hist, msg)
    if code == pywraplp.Solver.INFEASIBLE:
        return SolveResult(Status.INFEASIBLE, None, math.inf, math.inf, wall, [], "SCIP INFEASIBLE")
    if code == pywraplp.Solver.NOT_SOLVED:
        return SolveResult(Status.NO_SOLUTION, None, math.nan, math.nan, wall, [], "SCIP: limit reached, no solution")
    return SolveResult(Status.ERROR, None, math.nan, math.nan, wall, [], f"SCIP status code {code}")


def solve(
    model: SparseModel,
    *,
    engine: str = "cpsat",
    time_limit: float | None = None,
    threads: int | None = None,
    seed: int = 0,
    hint: np.ndarray | None = None,
    progress: Callable[[float, float, float], None] | None = None,
    rel_gap: float | None = None,
    log: bool = False,
    params: dict | None = None,
) -> SolveResult:
    """Solve a :class:`SparseModel` (minimisation) with CP-SAT or SCIP.

    Args:
      model: the model.
      engine: ``"cpsat"`` (integer data only, native indicator rows) or ``"scip"`` (big-M rows).
      time_limit: wall-clock limit in seconds (``None``: none).
      threads: solver threads (CP-SAT workers; ``None``: the solver's default).
      seed: random seed.
      hint: ``(n,)`` values to start from (``nan``: no hint for that variable); CP-SAT
        ``AddHint``, SCIP ``SetHint``.
      progress: called as ``progress(t, incumbent, bound)`` on each improving solution (CP-SAT)
        and once at the end.
      rel_gap: relative gap at which to stop (``None``: prove optimality).
      log: print the solver's log.
      params: extra CP-SAT parameters (``SatParameters`` field names, e.g.
        ``{"symmetry_level": 0}``), CP-SAT only.

    Returns:
      A :class:`SolveResult`. If the solver stops at a limit without a point better than a
      complete hint that satisfies every row, that hint is returned (status ``FEASIBLE``). A
      ``FEASIBLE`` result's bound is at least the trivial bound ``sum_j min(obj_j lb_j, obj_j ub_j)``;
      an incumbent attaining it is reported ``OPTIMAL``. With ``rel_gap`` the status is
      ``OPTIMAL`` only when the bound proves optimality (else ``FEASIBLE``, message "stopped at
      relative gap").

    Raises:
      ValueError: on an unknown engine, invalid options, or data the engine cannot take
        (continuous variables or fractional coefficients for CP-SAT).
    """
    if engine not in ENGINES:
        raise ValueError(f"argument `engine`: expected one of {ENGINES}, got {engine!r}")
    if time_limit is not None and not (time_limit > 0 and math.isfinite(time_limit)):
        raise ValueError(f"argument `time_limit`: expected a positive finite number of seconds, got {time_limit!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"argument `threads`: expected an integer >= 1, got {threads!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"argument `seed`: expected an integer >= 0, got {seed!r}")
    t0 = time.perf_counter()
    if engine == "cpsat":
        res = _solve_cpsat(model, time_limit, threads, int(seed), hint, progress, rel_gap, log, t0, params)
    else:
        if params:
            raise ValueError("argument `params`: CP-SAT parameters are only accepted with engine 'cpsat'")
        res = _solve_scip(model, time_limit, threads, int(seed), hint, progress, rel_gap, log, t0)
    return _trivial_bound(model, _fall_back_on_hint(model, res, hint, progress))


def _trivial_bound(model: SparseModel, res: SolveResult) -> SolveResult:
    """Tighten a stopped solve's bound by ``sum_j min(obj_j lb_j, obj_j ub_j) + offset`` (always valid).

    E.g. "all ``n`` examples fitted" for ``max_correct``, hinge 0 for ``min_hinge``: an incumbent
    attaining it is proven optimal, so the result becomes ``OPTIMAL``.
    """
    if res.status != Status.FEASIBLE:
        return res
    with np.errstate(invalid="ignore"):
        triv = float(np.sum(np.minimum(model.obj * model.lb, model.obj * model.ub)[model.obj != 0]) + model.obj_offset)
    if not math.isfinite(triv) or (not math.isnan(res.bound) and res.bound >= triv):
        return res
    if res.objective <= triv + 1e-9 * max(1.0, abs(triv)):
        msg = f"{res.message}; the incumbent attains the trivial bound {triv:g} (proven optimal)"
        return dataclasses.replace(res, status=Status.OPTIMAL, bound=res.objective, message=msg)
    return dataclasses.replace(res, bound=triv)


def _fall_back_on_hint(
    model: SparseModel,
    res: SolveResult,
    hint: np.ndarray | None,
    progress: Callable[[float, float, float], None] | None,
) -> SolveResult:
    """A complete hint that satisfies every row is a feasible point the caller already has.

    When the limit stops the solver before it reports a point (CP-SAT may spend a short time
    limit in presolve) or with a worse one, the hint is returned instead, as ``FEASIBLE`` with
    the solver's bound. The hint is checked here (bounds, integrality, every active row), so
    this never reports an infeasible point.
    """
    if hint is None or res.status not in (Status.NO_SOLUTION, Status.FEASIBLE):
        return res
    h = np.asarray(hint, np.float64)
    if h.shape != (model.n_vars,) or np.any(np.isnan(h)):
        return res
    h = np.where(model.integer, np.round(h), h)
    if model.violations(h, tol=1e-9) != 0:
        return res
    value = model.objective_of(h)
    if res.status == Status.FEASIBLE and res.objective <= value:
        return res
    bound = res.bound if (not math.isnan(res.bound) and res.bound <= value) else math.nan
    history = [*res.history, (res.wall_time, value, bound)]
    if progress is not None:
        progress(res.wall_time, value, bound)
    msg = f"{res.message}; returned the complete feasible hint (objective {value:g}): the solver had no better point"
    return SolveResult(Status.FEASIBLE, h, value, bound, res.wall_time, history, msg)
