"""Host-side canonical forms of a ``MIP`` for the dual-function algorithms (NumPy / fractions only).

The subadditive dual is stated for the standard form

    z(d) = min { c' x' : A' x' = d, x' >= 0, x'_j integer for j in I' }

and this module maps the ``scipy.optimize.milp`` form (``A_ub x <= b_ub``, ``A_eq x = b_eq``,
``lb <= x <= ub``) onto it, recording the affine map from the original right-hand side
``b = concat(b_ub, b_eq)`` to ``d`` and the objective offset:

* a variable with a finite lower bound is shifted, ``x = lb + x'`` (``ceil(lb)`` for an integer
  variable); one with ``lb = -inf`` and a finite upper bound is reflected, ``x = ub - x'``;
  a free variable is split, ``x = x'+ - x'-``;
* a finite upper bound of a shifted variable becomes a row ``x' + s = ub - lb`` with a slack
  (``floor(ub) - ceil(lb)`` for an integer variable); these rows belong to the canonical
  ``d`` but not to the user's ``b``: they are constants of the map;
* every ``<=`` row gets a slack column ``e_i`` of cost 0.

For Gomory's algorithm the rows are further scaled by positive integers so that the
coefficients of the (integer) columns are integers; a slack is then integer only when the
right-hand side is, so the map rounds the ``<=`` components of ``d`` down (``a x <= beta`` and
``a x <= floor(beta)`` have the same integer solutions when ``a`` is integral).
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np

__all__ = ["Canonical", "canonicalize", "to_fraction"]

_MAX_DEN = 10**6


def to_fraction(v: float) -> Fraction:
    """The simplest rational within ``1e-12`` (relative) of ``v`` with denominator <= 1e6, or ``v`` exactly."""
    f = Fraction(float(v))
    g = f.limit_denominator(_MAX_DEN)
    if abs(float(g) - float(v)) <= 1e-12 * max(1.0, abs(float(v))):
        return g
    return f


def _lcm_den(values) -> int:
    out = 1
    for v in values:
        out = math.lcm(out, v.denominator)
    return out


@dataclasses.dataclass
class Canonical:
    """A concrete problem in standard form, with the map back to the original space.

    Attributes:
      A: ``(m, N)`` canonical matrix (floats), columns: transformed variables then slacks.
      c: ``(N,)`` canonical costs (original units).
      integer: ``(N,)`` bool, integer columns (slacks of pure-integer programs are integer).
      kind: per canonical row, ``"ub"``, ``"eq"`` or ``"bound"``.
      in_matrix: ``(m, m_ub + m_eq)`` linear part of ``b -> d``.
      in_offset: ``(m,)`` constant part of ``b -> d``.
      in_floor: ``(m,)`` bool, components of ``d`` rounded down (scaled pure-integer form only).
      offset: objective constant ``c @ x0``.
      back: ``(n, N)`` and ``x0``: ``x = back @ x' + x0``.
      row_scale: ``(m,)`` positive integers the rows were multiplied by (1 when not scaled).
      cost_scale: positive integer the costs were multiplied by in the integer form.
      A_q, c_q: exact rational data (integer-scaled form) when built with ``exact=True``.
      infeasible_bounds: an integer variable has ``ceil(lb) > floor(ub)``.
    """

    A: np.ndarray
    c: np.ndarray
    integer: np.ndarray
    kind: list[str]
    in_matrix: np.ndarray
    in_offset: np.ndarray
    in_floor: np.ndarray
    offset: float
    back: np.ndarray
    x0: np.ndarray
    row_scale: np.ndarray
    cost_scale: int
    A_q: list[list[Fraction]] | None = None
    c_q: list[Fraction] | None = None
    d_q_offset: list[Fraction] | None = None
    in_q: list[list[Fraction]] | None = None
    infeasible_bounds: bool = False

    @property
    def m(self) -> int:
        return int(self.A.shape[0])

    @property
    def N(self) -> int:
        return int(self.A.shape[1])

    def d_of(self, b: np.ndarray) -> np.ndarray:
        """Canonical right-hand side(s) ``d = phi(b)`` of original ``b`` (``(..., m_ub + m_eq)``)."""
        d = np.asarray(b, dtype=np.float64) @ self.in_matrix.T + self.in_offset
        if self.in_floor.any():
            d = np.where(self.in_floor, np.floor(d + 1e-9), d)
        return d

    def d_of_exact(self, b) -> list[Fraction]:
        """Exact ``phi(b)`` (rational data, integer-scaled form)."""
        assert self.in_q is not None and self.d_q_offset is not None
        bq = [to_fraction(v) for v in b]
        out = []
        for i in range(self.m):
            terms = (self.in_q[i][k] * bq[k] for k in range(len(bq)) if self.in_q[i][k])
            v = self.d_q_offset[i] + sum(terms, Fraction(0))
            out.append(Fraction(math.floor(v)) if self.in_floor[i] else v)
        return out

    def x_of(self, xc: np.ndarray) -> np.ndarray:
        """Original ``x`` of a canonical point."""
        return self.back @ np.asarray(xc, dtype=np.float64) + self.x0


def rhs_of(data: dict) -> np.ndarray:
    """``concat(b_ub, b_eq)`` of a problem's host data, float64."""
    return np.concatenate([np.asarray(data["b_ub"], np.float64), np.asarray(data["b_eq"], np.float64)])


def canonicalize(data: dict, *, integer_scaled: bool, exact: bool) -> Canonical:
    """Standard form of a concrete, unbatched problem (see the module docstring).

    Args:
      data: float64 arrays ``c, A_ub, b_ub, A_eq, b_eq, lb, ub`` and bool ``integrality``.
      integer_scaled: scale rows and costs to integers and floor the ``<=`` components of ``d``
        (Gomory; every variable must be integer).
      exact: also keep the exact rational data (``fractions.Fraction``).

    Returns:
      The ``Canonical`` form.
    """
    c, A_ub, b_ub, A_eq, b_eq = (data[k] for k in ("c", "A_ub", "b_ub", "A_eq", "b_eq"))
    lb, ub, integ = data["lb"], data["ub"], data["integrality"]
    n, m_ub, m_eq = c.shape[0], A_ub.shape[0], A_eq.shape[0]
    infeasible_bounds = False
    # integer bounds rounded inward
    lb = np.where(integ & np.isfinite(lb), np.ceil(lb - 1e-9), lb)
    ub = np.where(integ & np.isfinite(ub), np.floor(ub + 1e-9), ub)
    if np.any(lb > ub):
        infeasible_bounds = True
        ub = np.maximum(ub, lb)
    # variable transformation: columns of T with x = T x' + x0
    cols: list[np.ndarray] = []
    col_int: list[bool] = []
    x0 = np.zeros(n)
    bound_rows: list[tuple[int, float]] = []  # (column index in x', width)
    for j in range(n):
        e = np.zeros(n)
        e[j] = 1.0
        if np.isfinite(lb[j]):
            x0[j] = lb[j]
            cols.append(e)
            col_int.append(bool(integ[j]))
            if np.isfinite(ub[j]):
                bound_rows.append((len(cols) - 1, float(ub[j] - lb[j])))
        elif np.isfinite(ub[j]):
            x0[j] = ub[j]
            cols.append(-e)
            col_int.append(bool(integ[j]))
        else:
            cols.append(e)
            cols.append(-e)
            col_int += [bool(integ[j])] * 2
    T = np.stack(cols, axis=1)  # (n, nx)
    nx = T.shape[1]
    m = m_ub + m_eq + len(bound_rows)
    n_slack = m_ub + len(bound_rows)
    N = nx + n_slack
    A = np.zeros((m, N))
    A[:m_ub, :nx] = A_ub @ T
    A[m_ub : m_ub + m_eq, :nx] = A_eq @ T
    for k, (j, _) in enumerate(bound_rows):
        A[m_ub + m_eq + k, j] = 1.0
    for i in range(m_ub):
        A[i, nx + i] = 1.0
    for k in range(len(bound_rows)):
        A[m_ub + m_eq + k, nx + m_ub + k] = 1.0
    cc = np.concatenate([c @ T, np.zeros(n_slack)])
    integer = np.concatenate([np.asarray(col_int, bool), np.full(n_slack, integer_scaled)])
    kind = ["ub"] * m_ub + ["eq"] * m_eq + ["bound"] * len(bound_rows)
    in_matrix = np.zeros((m, m_ub + m_eq))
    in_matrix[: m_ub + m_eq, :] = np.eye(m_ub + m_eq)
    in_offset = np.zeros(m)
    in_offset[:m_ub] = -(A_ub @ x0)
    in_offset[m_ub : m_ub + m_eq] = -(A_eq @ x0)
    for k, (_, width) in enumerate(bound_rows):
        in_offset[m_ub + m_eq + k] = width
    back = np.concatenate([T, np.zeros((n, n_slack))], axis=1)
    row_scale = np.ones(m, dtype=np.int64)
    cost_scale = 1
    in_floor = np.zeros(m, dtype=bool)
    out = Canonical(
        A=A,
        c=cc,
        integer=integer,
        kind=kind,
        in_matrix=in_matrix,
        in_offset=in_offset,
        in_floor=in_floor,
        offset=float(c @ x0),
        back=back,
        x0=x0,
        row_scale=row_scale,
        cost_scale=cost_scale,
        infeasible_bounds=infeasible_bounds,
    )
    if integer_scaled or exact:
        _rationalize(out, data, T, x0, bound_rows, integer_scaled)
    return out


def _rationalize(out: Canonical, data: dict, T: np.ndarray, x0: np.ndarray, bound_rows, scaled: bool) -> None:
    """Exact rational data; with ``scaled``, rows and costs multiplied to integers."""
    Aq = [[to_fraction(v) for v in row] for row in out.A]
    cq = [to_fraction(v) for v in out.c]
    m, N = out.A.shape
    m_in = out.in_matrix.shape[1]
    # exact offsets: -(A_ub x0), -(A_eq x0), widths (x0 integer for integer variables)
    A_orig = [[to_fraction(v) for v in row] for row in np.concatenate([data["A_ub"], data["A_eq"]])]
    x0q = [to_fraction(v) for v in x0]
    dq = [-sum((a * x for a, x in zip(row, x0q, strict=True) if a), Fraction(0)) for row in A_orig]
    dq += [to_fraction(w) for _, w in bound_rows]
    in_q = [[Fraction(int(i == k)) for k in range(m_in)] for i in range(m)]
    if scaled:
        nx = N - (out.m - len([k for k in out.kind if k == "eq"]))
        for i in range(m):
            L = _lcm_den(Aq[i][:nx])
            if L != 1:
                Aq[i] = [v * L if k < nx else v for k, v in enumerate(Aq[i])]
                dq[i] *= L
                in_q[i] = [v * L for v in in_q[i]]
            out.row_scale[i] = L
        Lc = _lcm_den(cq)
        cq_int = [v * Lc for v in cq]
        out.cost_scale = Lc
        out.in_floor = np.array([k != "eq" for k in out.kind], dtype=bool)
        out.in_matrix = np.array([[float(v) for v in row] for row in in_q]).reshape(m, m_in)
        out.in_offset = np.array([float(v) for v in dq])
        out.A = np.array([[float(v) for v in row] for row in Aq]).reshape(m, N)
        out.c_q = cq_int  # integer costs (scaled by cost_scale)
    else:
        out.c_q = cq
    out.A_q = Aq
    out.d_q_offset = dq
    out.in_q = in_q
