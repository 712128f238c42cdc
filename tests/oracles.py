"""Oracles and data generators for the solver tests.

* ``host_problem``: a ``HostProblem`` from scipy-style keyword arguments.
* ``brute_force``: the optimum of a tiny bounded (mixed-)integer program by enumerating
  every integer point; continuous variables (if any) are optimized by an independent LP
  solve per integer point (``scipy.optimize.linprog`` when SciPy is installed, GLOP
  otherwise).
* ``lp_oracle``: the optimum of an LP by that same independent route.
* hypothesis strategies for tiny programs with small integer or simple rational data.
* ``market_split``: an instance no MIP solver closes within a fraction of a second.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from hypothesis import strategies as st

from tamejax.backends import HostProblem, SolveOptions, Status, solve_host

__all__ = [
    "BruteForce",
    "brute_force",
    "host_problem",
    "lp_oracle",
    "market_split",
    "tiny_programs",
    "mip_kwargs",
    "assert_feasible",
]

FEAS_TOL = 1e-7

try:  # SciPy is optional: an independent LP solver when present
    from scipy.optimize import linprog as _linprog
except ImportError:  # pragma: no cover - depends on the environment
    _linprog = None


def host_problem(
    c,
    A_ub=None,
    b_ub=None,
    A_eq=None,
    b_eq=None,
    lb=None,
    ub=None,
    integrality=None,
) -> HostProblem:
    """A ``HostProblem`` with the defaults of ``tamejax.MIP`` (``lb = 0``, ``ub = +inf``)."""
    c = np.asarray(c, dtype=np.float64)
    n = c.shape[0]

    def mat(a):
        return np.zeros((0, n)) if a is None else np.asarray(a, dtype=np.float64).reshape(-1, n)

    def vec(v, m):
        return np.zeros(m) if v is None else np.asarray(v, dtype=np.float64).reshape(m)

    def bound(v, default):
        v = default if v is None else v
        return np.broadcast_to(np.asarray(v, np.float64), (n,)).copy()

    A_ub, A_eq = mat(A_ub), mat(A_eq)
    lb, ub = bound(lb, 0.0), bound(ub, np.inf)
    integ = np.zeros(n, bool) if integrality is None else np.broadcast_to(np.asarray(integrality, bool), (n,)).copy()
    b_ub, b_eq = vec(b_ub, A_ub.shape[0]), vec(b_eq, A_eq.shape[0])
    return HostProblem(c, A_ub, b_ub, A_eq, b_eq, lb, ub, integ)


def mip_kwargs(p: HostProblem) -> dict:
    """Keyword arguments for ``tamejax.MIP`` describing the same problem."""
    return dict(
        c=p.c,
        A_ub=p.A_ub,
        b_ub=p.b_ub,
        A_eq=p.A_eq,
        b_eq=p.b_eq,
        lb=p.lb,
        ub=p.ub,
        integrality=p.integrality,
    )


@dataclass
class BruteForce:
    """Result of an oracle: ``objective`` (``+inf`` if infeasible, ``-inf`` if unbounded)."""

    objective: float
    x: np.ndarray | None

    @property
    def status(self) -> Status:
        if self.objective == math.inf:
            return Status.INFEASIBLE
        if self.objective == -math.inf:
            return Status.UNBOUNDED
        return Status.OPTIMAL


def lp_oracle(c, A_ub, b_ub, A_eq, b_eq, lb, ub) -> BruteForce:
    """Optimal value of an LP (every variable continuous), independent of the cache path."""
    n = len(c)
    if n == 0:  # nothing left to optimize: feasibility of the constant rows
        ok = np.all(b_ub >= -FEAS_TOL) and np.all(np.abs(b_eq) <= FEAS_TOL)
        return BruteForce(0.0 if ok else math.inf, np.zeros(0) if ok else None)
    if _linprog is not None:
        res = _linprog(
            c,
            A_ub=A_ub if len(b_ub) else None,
            b_ub=b_ub if len(b_ub) else None,
            A_eq=A_eq if len(b_eq) else None,
            b_eq=b_eq if len(b_eq) else None,
            bounds=[
                (None if lo == -np.inf else lo, None if hi == np.inf else hi) for lo, hi in zip(lb, ub, strict=True)
            ],
            method="highs",
        )
        if res.status == 0:
            return BruteForce(float(res.fun), np.asarray(res.x))
        if res.status == 2:
            return BruteForce(math.inf, None)
        if res.status == 3:
            return BruteForce(-math.inf, None)
        raise AssertionError(f"linprog oracle failed: {res.message}")
    p = HostProblem(
        np.asarray(c, float),
        np.asarray(A_ub, float).reshape(-1, n),
        np.asarray(b_ub, float),
        np.asarray(A_eq, float).reshape(-1, n),
        np.asarray(b_eq, float),
        np.asarray(lb, float),
        np.asarray(ub, float),
        np.zeros(n, bool),
    )
    r = solve_host("glop", p, SolveOptions(), {})  # a fresh cache: no model reuse
    if r.status == Status.OPTIMAL:
        return BruteForce(r.objective, r.x)
    if r.status in (Status.INFEASIBLE, Status.UNBOUNDED):
        return BruteForce(r.objective, None)
    raise AssertionError(f"GLOP oracle failed: {r.status.name} {r.message}")


def brute_force(p: HostProblem) -> BruteForce:
    """Optimum of a (mixed-)integer program whose integer variables all have finite bounds.

    Enumerates every integer point of the box; with continuous variables, solves the LP in
    them for each integer point. Returns ``+inf`` when nothing is feasible.
    """
    I = np.flatnonzero(p.integrality)
    C = np.flatnonzero(~p.integrality)
    lo = np.ceil(p.lb[I] - 1e-9)
    hi = np.floor(p.ub[I] + 1e-9)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError("brute_force: every integer variable needs finite bounds")
    ranges = [np.arange(a, b + 1) for a, b in zip(lo, hi, strict=True)]
    if any(len(r) == 0 for r in ranges):
        return BruteForce(math.inf, None)
    combos = list(itertools.product(*ranges))
    points = np.array(combos, dtype=np.float64).reshape(len(combos), len(I))
    if len(C) == 0:
        X = points
        ok = np.ones(len(X), bool)
        if p.m_ub:
            ok &= np.all(X @ p.A_ub.T <= p.b_ub + FEAS_TOL, axis=1)
        if p.m_eq:
            ok &= np.all(np.abs(X @ p.A_eq.T - p.b_eq) <= FEAS_TOL, axis=1)
        if not ok.any():
            return BruteForce(math.inf, None)
        vals = X[ok] @ p.c
        k = int(np.argmin(vals))
        return BruteForce(float(vals[k]), X[ok][k])
    best = BruteForce(math.inf, None)
    for xi in points:
        sub = lp_oracle(
            p.c[C],
            p.A_ub[:, C],
            p.b_ub - p.A_ub[:, I] @ xi,
            p.A_eq[:, C],
            p.b_eq - p.A_eq[:, I] @ xi,
            p.lb[C],
            p.ub[C],
        )
        if sub.objective == -math.inf:
            return BruteForce(-math.inf, None)
        val = sub.objective + float(p.c[I] @ xi)
        if val < best.objective:
            x = np.zeros(p.n)
            x[I], x[C] = xi, sub.x
            best = BruteForce(val, x)
    return best


def assert_feasible(p: HostProblem, x: np.ndarray, tol: float = 1e-6) -> None:
    """``x`` satisfies every constraint, bound and integrality requirement of ``p``."""
    x = np.asarray(x, dtype=np.float64)
    assert x.shape == (p.n,)
    assert np.all(np.isfinite(x)), x
    scale = 1.0 + np.max(np.abs(x), initial=0.0)
    assert np.all(x >= p.lb - tol * scale), (x, p.lb)
    assert np.all(x <= p.ub + tol * scale), (x, p.ub)
    if p.m_ub:
        assert np.all(p.A_ub @ x <= p.b_ub + tol * scale), (p.A_ub @ x, p.b_ub)
    if p.m_eq:
        assert np.allclose(p.A_eq @ x, p.b_eq, atol=tol * scale), (p.A_eq @ x, p.b_eq)
    xi = x[p.integrality]
    assert np.allclose(xi, np.round(xi), atol=1e-6), xi


# ---------------------------------------------------------------- hypothesis strategies

_RATIONALS = sorted({float(Fraction(k, d)) for d in (1, 2, 3, 4) for k in range(-3 * d, 3 * d + 1)})


def _coef(rational: bool) -> st.SearchStrategy[float]:
    ints = st.integers(-3, 3).map(float)
    if not rational:
        return ints
    return st.one_of(ints, st.sampled_from(_RATIONALS))


@st.composite
def tiny_programs(
    draw,
    *,
    max_n: int = 4,
    integer: str = "all",
    rational: bool = True,
    box: int = 3,
    max_m_ub: int = 3,
    max_m_eq: int = 2,
) -> HostProblem:
    """Tiny programs with every bound finite (so every instance is bounded).

    ``integer`` is ``"all"`` (pure integer), ``"none"`` (LP) or ``"mixed"`` (at least one
    integer and one continuous variable). Data are small integers, or with ``rational``
    also halves, thirds and quarters. Equality right-hand sides are often taken from a point
    of the box, so feasible and infeasible instances both occur.
    """
    min_n = 2 if integer == "mixed" else 1
    n = draw(st.integers(min_n, max_n))
    if integer == "all":
        integ = np.ones(n, bool)
    elif integer == "none":
        integ = np.zeros(n, bool)
    else:
        k = draw(st.integers(1, n - 1))
        integ = np.array([j < k for j in range(n)])
        integ = integ[draw(st.permutations(range(n)))]
    lo = np.array([draw(st.integers(-box, box)) for _ in range(n)], dtype=np.float64)
    hi = np.array([draw(st.integers(int(a), box)) for a in lo], dtype=np.float64)
    m_ub = draw(st.integers(0, max_m_ub))
    m_eq = draw(st.integers(0, max_m_eq))
    coef = _coef(rational)
    c = np.array([draw(coef) for _ in range(n)])
    A_ub = np.array([[draw(coef) for _ in range(n)] for _ in range(m_ub)]).reshape(m_ub, n)
    b_ub = np.array([draw(st.integers(-6, 6)) for _ in range(m_ub)], dtype=np.float64)
    A_eq = np.array([[draw(coef) for _ in range(n)] for _ in range(m_eq)]).reshape(m_eq, n)
    if m_eq and draw(st.booleans()):
        point = [draw(st.integers(int(a), int(b))) for a, b in zip(lo, hi, strict=True)]
        # exact rational arithmetic, so that b_eq is the double nearest a simple rational
        b_eq = np.array(
            [float(sum(Fraction(a).limit_denominator(12) * x for a, x in zip(row, point, strict=True))) for row in A_eq]
        )
    else:
        b_eq = np.array([draw(st.integers(-4, 4)) for _ in range(m_eq)], dtype=np.float64)
    return HostProblem(c, A_ub, b_ub, A_eq, b_eq, lo, hi, integ)


def market_split(m: int = 4, seed: int = 0, *, integer_slacks: bool = False) -> HostProblem:
    """A Cornuejols-Dawande market split instance: ``n = 10 (m - 1)`` binaries, ``m`` rows.

    ``min sum(s+ + s-)`` s.t. ``a_i x + s+_i - s-_i = floor(sum(a_i) / 2)``. Its LP bound is 0
    and no known MIP solver closes the gap within seconds for ``m = 4``: a time limit of a
    fraction of a second always stops the search with an incumbent (x = 0 is feasible) but
    no proof.
    """
    rng = np.random.default_rng(seed)
    n = 10 * (m - 1)
    a = rng.integers(0, 100, size=(m, n)).astype(np.float64)
    d = np.floor(a.sum(axis=1) / 2)
    A_eq = np.hstack([a, np.eye(m), -np.eye(m)])
    c = np.concatenate([np.zeros(n), np.ones(2 * m)])
    lb = np.zeros(n + 2 * m)
    ub = np.concatenate([np.ones(n), np.full(2 * m, 100.0 * n)])
    integ = np.concatenate([np.ones(n, bool), np.full(2 * m, integer_slacks)])
    return HostProblem(c, np.zeros((0, n + 2 * m)), np.zeros(0), A_eq, d, lb, ub, integ)
