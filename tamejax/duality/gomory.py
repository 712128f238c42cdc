"""Gomory's fractional cutting-plane algorithm with a Chvátal-function certificate.

For a pure integer program in the integer-scaled standard form (``tamejax.duality._canonical``)

    z(d) = min { c x : A x = d, x >= 0, x integer },   A, c integral,

the algorithm (Gomory 1958, 1963) solves the LP relaxation to its *lexicographically smallest*
optimal vertex (minimize ``(c x, x_1, ..., x_N)`` lexicographically: primal simplex with
Bland's rule on the lexicographic costs), then repeatedly adds a Chvátal–Gomory cut derived
from the first fractional component of ``(c x, x_1, ..., x_N)`` and restores primal
feasibility by the lexicographic dual simplex. Every cut ``k`` is written as a function of the
right-hand side,

$$ g_k(d) = \\lceil u_k^\\top d + \\textstyle\\sum_{i<k} v_{ki}\\, g_i(d) \\rceil,\\quad v_{ki} \\ge 0,$$

and added to the LP as ``sum_j h_kj x_j >= g_k(d)`` with integer coefficients
``h_kj >= g_k(a_j)``. A cut from tableau row ``r`` with multipliers ``rho`` (the row of
``B^{-1}``) has ``u_k = -rho`` on the original rows and ``v_ki = rho_i + ceil(-rho_i)`` in
``[0, 1)`` on the earlier cuts (substituting the integer slacks of those cuts); a cut from a
fractional objective value is ``c x >= ceil(y^T d + w^T g(d))`` with the current LP duals.
When the LP optimum is integral, its duals ``(y, w >= 0)`` give the Chvátal function
``F(d) = y^T d + w^T g(d)``: ``F(a_j) <= y^T a_j + w^T h_j <= c_j`` (LP dual feasibility) and
``F(b) = z_LP = z(b)``. At a limit, the same construction gives a valid (weaker) bound.

Arithmetic: ``"exact"`` runs on ``fractions.Fraction`` (NumPy object arrays), so every
pivot, cut and certificate is exact and the lexicographic rule guarantees finiteness in
theory; the cost grows with the size of the numbers, so it suits up to a few dozen rows and
columns. ``"float"`` runs the same algorithm in float64 with tolerances (integrality and
pivots ``1e-9``), aborting with status ``"numerics"`` when entries exceed ``1e9`` or pivots
fall below ``1e-9``; its certificate is only as good as ``verify`` says.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = ["GomoryResult", "gomory"]


@dataclasses.dataclass
class GomoryResult:
    """Outcome of ``gomory`` on an integer-scaled standard-form program.

    Attributes:
      status: ``"optimal"``, ``"infeasible"``, ``"unbounded"``, ``"limit"`` or ``"numerics"``.
      x: optimal (or last LP) point of the canonical program, or ``None``.
      objective: ``c x`` of an optimal integer ``x`` (``None`` unless optimal).
      bound: ``F(b)``, a lower bound on ``z(b)`` (equal to it when optimal).
      U: list of cut vectors ``u_k`` (length ``m``), exact or float.
      V: list of dicts ``{i: v_ki}`` on earlier cuts.
      y: final linear part (length ``m``).
      w: final cut weights (length ``K``).
      H: integer cut coefficient rows ``h_k`` (for checking ``g_k(a_j) <= h_kj``).
      cuts: number of cuts added; pivots: number of simplex pivots.
    """

    status: str
    x: list | None
    objective: object
    bound: object
    U: list
    V: list
    y: list
    w: list
    H: list
    cuts: int = 0
    pivots: int = 0
    seconds: float = 0.0
    message: str = ""


class _Num:
    """Arithmetic helpers, exact (``Fraction``) or guarded float."""

    def __init__(self, exact: bool):
        self.exact = exact
        self.eps = 0 if exact else 1e-9
        self.dtype = object if exact else np.float64
        self.zero = Fraction(0) if exact else 0.0
        self.one = Fraction(1) if exact else 1.0

    def conv(self, v):
        return Fraction(v) if self.exact else float(v)

    def is_int(self, v) -> bool:
        if self.exact:
            return v.denominator == 1
        return abs(v - round(v)) <= 1e-9 * max(1.0, abs(v))

    def ceil(self, v):
        if self.exact:
            return Fraction(math.ceil(v))
        r = round(v)
        return float(r) if abs(v - r) <= 1e-9 * max(1.0, abs(v)) else float(math.ceil(v))

    def pos(self, v) -> bool:
        return v > self.eps

    def neg(self, v) -> bool:
        return v < -self.eps

    def nz(self, v) -> bool:
        return abs(v) > self.eps


class _Limit(Exception):
    pass


class _Tableau:
    """Full tableau ``[X | P | rhs]``: X = variable columns (canonical, then cut slacks),
    P = row multipliers (one per stored row, ``W[r] = P[r] . stored rows``)."""

    def __init__(self, A, d, c, num: _Num):
        self.num = num
        m, N = len(A), len(A[0]) if A else 0
        self.N = N  # canonical (lexicographic) columns
        self.sign = [1] * m
        rows = []
        for i in range(m):
            s = -1 if d[i] < 0 else 1
            self.sign[i] = s
            rows.append([num.conv(a) * s for a in A[i]] + [num.conv(d[i]) * s])
        self.nx = N  # variable columns (grows with cut slacks)
        self.np_ = m  # multiplier columns
        W = np.empty((m, N + m + 1), dtype=num.dtype)
        for i in range(m):
            W[i, :N] = rows[i][:N]
            W[i, N : N + m] = [num.one if k == i else num.zero for k in range(m)]
            W[i, -1] = rows[i][-1]
        self.W = W
        self.basis = [N + i for i in range(m)]  # artificials = multiplier columns
        self.c = [num.conv(v) for v in c]
        self.p_kind: list[tuple[str, int]] = [("orig", i) for i in range(m)]  # stored row of each P column
        self.slack_cut: list[int] = []  # cut id of each cut-slack column (X columns N..nx-1)
        self.Z = None
        self.pivots = 0

    # ------------------------------------------------------------------ basics
    @property
    def rhs(self):
        return self.W[:, -1]

    def pivot(self, r: int, j: int) -> None:
        num = self.num
        W = self.W
        piv = W[r, j]
        if not num.exact and abs(piv) < 1e-9:
            raise FloatingPointError("pivot below 1e-9")
        W[r] = W[r] / piv
        col = W[:, j].copy()
        col[r] = num.zero
        nzr = [i for i in range(W.shape[0]) if col[i] != 0]
        if nzr:
            W[nzr] = W[nzr] - np.outer(col[nzr], W[r])
            if not num.exact:
                W[nzr, j] = 0.0
        if self.Z is not None and self.Z[j] != 0:
            self.Z = self.Z - self.Z[j] * W[r]
            if not num.exact:
                self.Z[j] = 0.0
        self.basis[r] = j
        self.pivots += 1
        if not num.exact and np.max(np.abs(W)) > 1e9:
            raise FloatingPointError("tableau entries above 1e9")

    def basic_row(self) -> dict[int, int]:
        return {b: r for r, b in enumerate(self.basis)}

    def lexcol(self, j: int, brow: dict[int, int]) -> list:
        """Change of ``(c x, x_0, ..., x_{N-1})`` per unit increase of non-basic ``x_j``."""
        num = self.num
        out = [self.Z[j]]
        for k in range(self.N):
            if k == j:
                out.append(num.one)
            elif k in brow:
                out.append(-self.W[brow[k], j])
            else:
                out.append(num.zero)
        return out

    def lex_neg(self, v) -> bool:
        for t in v:
            if self.num.neg(t):
                return True
            if self.num.pos(t):
                return False
        return False

    # ------------------------------------------------------------------ primal simplex (Bland)
    def _primal(self, obj: np.ndarray, lexicographic: bool, deadline: float, max_pivots: int) -> str:
        num = self.num
        self.Z = obj
        while True:
            if time.perf_counter() > deadline or self.pivots > max_pivots:
                raise _Limit("pivot or time limit in the LP")
            brow = self.basic_row()
            enter = None
            for j in range(self.nx):
                if j in brow:
                    continue
                if num.neg(self.Z[j]):
                    enter = j
                    break
                if lexicographic and not num.pos(self.Z[j]) and self.lex_neg(self.lexcol(j, brow)):
                    enter = j
                    break
            if enter is None:
                return "optimal"
            best, best_r = None, None
            col = self.W[:, enter]
            for r in range(self.W.shape[0]):
                if num.pos(col[r]):
                    ratio = self.W[r, -1] / col[r]
                    if (
                        best is None
                        or ratio < best - num.eps
                        or (abs(ratio - best) <= num.eps and self.basis[r] < self.basis[best_r])
                    ):
                        best, best_r = ratio, r
            if best_r is None:
                if num.neg(self.Z[enter]):
                    return "unbounded"
                raise FloatingPointError("lexicographic ray without objective decrease")
            self.pivot(best_r, enter)

    def phase1(self, deadline: float, max_pivots: int) -> bool:
        """Find a feasible basis (False: the LP is infeasible); drop redundant rows."""
        num = self.num
        m = self.W.shape[0]
        obj = np.empty(self.W.shape[1], dtype=num.dtype)
        obj[:] = num.zero
        for i in range(m):
            obj = obj - self.W[i]
        obj[self.nx : self.nx + self.np_] = num.zero
        self._primal(obj, False, deadline, max_pivots)
        if num.neg(self.Z[-1]):  # -(sum of artificials) < 0
            return False
        # drive artificials out of the basis, dropping redundant rows
        r = 0
        while r < self.W.shape[0]:
            if self.basis[r] >= self.nx:
                cand = [j for j in range(self.nx) if num.nz(self.W[r, j]) and j not in self.basis]
                if cand:
                    self.pivot(r, cand[0])
                else:
                    self.W = np.delete(self.W, r, axis=0)
                    del self.basis[r]
                    continue
            r += 1
        self.Z = None
        return True

    def phase2(self, deadline: float, max_pivots: int) -> str:
        num = self.num
        obj = np.empty(self.W.shape[1], dtype=num.dtype)
        obj[:] = num.zero
        obj[: self.N] = self.c
        for r, b in enumerate(self.basis):
            cb = obj[b]
            if cb != 0:
                obj = obj - cb * self.W[r]
        return self._primal(obj, True, deadline, max_pivots)

    # ------------------------------------------------------------------ dual simplex (lexicographic)
    def dual_simplex(self, deadline: float, max_pivots: int) -> bool:
        """Restore primal feasibility; False if the LP became infeasible."""
        num = self.num
        while True:
            if time.perf_counter() > deadline or self.pivots > max_pivots:
                raise _Limit("pivot or time limit in the dual simplex")
            rhs = self.W[:, -1]
            r = None
            for i in range(len(rhs)):
                if num.neg(rhs[i]) and (r is None or rhs[i] < rhs[r]):
                    r = i
            if r is None:
                return True
            brow = self.basic_row()
            best, best_j = None, None
            for j in range(self.nx):
                if j in brow or not num.neg(self.W[r, j]):
                    continue
                a = -self.W[r, j]
                v = [t / a for t in self.lexcol(j, brow)]
                if best is None or self._lex_less(v, best):
                    best, best_j = v, j
            if best_j is None:
                return False
            self.pivot(r, best_j)

    def _lex_less(self, a, b) -> bool:
        for s, t in zip(a, b, strict=True):
            if self.num.exact:
                if s != t:
                    return s < t
            elif abs(s - t) > 1e-12 * max(1.0, abs(s), abs(t)):
                return s < t
        return False

    # ------------------------------------------------------------------ cuts
    def add_cut(self, h: list, cut_id: int, g_val) -> None:
        """Append the stored row ``-h x + s = -g`` (``s`` a new basic slack)."""
        num = self.num
        R, C = self.W.shape
        W = np.empty((R + 1, C + 2), dtype=num.dtype)
        W[:] = num.zero
        nx, npp = self.nx, self.np_
        W[:R, :nx] = self.W[:, :nx]
        W[:R, nx + 1 : nx + 1 + npp] = self.W[:, nx : nx + npp]
        W[:R, -1] = self.W[:, -1]
        new = W[R]
        new[: self.N] = [-v for v in h]
        new[nx] = num.one  # the cut's slack column
        new[nx + 1 + npp] = num.one  # its multiplier column
        new[-1] = -g_val
        brow_old = list(self.basis)
        for r, b in enumerate(brow_old):
            if b < self.N and new[b] != 0:
                W[R] = W[R] - new[b] * W[r]
        if self.Z is not None:
            Z = np.empty(C + 2, dtype=num.dtype)
            Z[:] = num.zero
            Z[:nx] = self.Z[:nx]
            Z[nx + 1 : nx + 1 + npp] = self.Z[nx : nx + npp]
            Z[-1] = self.Z[-1]
            self.Z = Z
        self.basis = [b if b < nx else b + 1 for b in self.basis] + [nx]
        self.W = W
        self.slack_cut.append(cut_id)
        self.p_kind.append(("cut", cut_id))
        self.nx += 1
        self.np_ += 1

    def purge(self) -> None:
        """Drop cut rows whose slack is basic and strictly positive (inactive cuts)."""
        num = self.num
        while True:
            drop = None
            for r, b in enumerate(self.basis):
                if self.N <= b < self.nx and num.pos(self.W[r, -1]):
                    drop = (r, b)
                    break
            if drop is None:
                return
            r, col = drop
            cut_id = self.slack_cut[col - self.N]
            pcol = self.nx + self.p_kind.index(("cut", cut_id))
            keep = [k for k in range(self.W.shape[1]) if k not in (col, pcol)]
            self.W = np.delete(self.W, r, axis=0)[:, keep]
            self.Z = self.Z[keep]
            del self.basis[r]
            self.basis = [b - (b > col) - (b > pcol) for b in self.basis]
            del self.slack_cut[col - self.N]
            self.p_kind.remove(("cut", cut_id))
            self.nx -= 1
            self.np_ -= 1


def _eval_cuts(U, V, d, num: _Num) -> list:
    g = []
    for k in range(len(U)):
        t = sum((u * x for u, x in zip(U[k], d, strict=True) if u != 0), num.zero)
        t += sum((v * g[i] for i, v in V[k].items()), num.zero)
        g.append(num.ceil(t))
    return g


def gomory(
    A: Sequence[Sequence[Any]] | np.ndarray,
    d: Sequence[Any] | np.ndarray,
    c: Sequence[Any] | np.ndarray,
    *,
    exact: bool = True,
    max_cuts: int = 500,
    max_pivots: int = 20000,
    time_limit: float = 60.0,
    incumbent: int | Fraction | float | None = None,
    cuts_per_round: int = 8,
) -> GomoryResult:
    """Gomory's fractional cutting-plane algorithm on ``min {c x : A x = d, x >= 0 integer}``.

    With an ``incumbent`` value ``z_inc`` (the integer value ``c x`` of a known feasible
    ``x``), the loop also stops as soon as ``ceil(z_LP) >= z_inc``: one more round-up of the
    current LP-dual function, ``F(d) = ceil(y^T d + w^T g(d))``, is a Chvátal function with
    ``F(a_j) <= ceil(c_j) = c_j`` and ``F(b) = z_inc``, which proves the incumbent optimal
    (``x`` is then ``None``: the caller has it).

    Args:
      A: ``m x N`` integral matrix (nested lists or array; ``Fraction`` entries when exact).
      d: length-``m`` right-hand side.
      c: length-``N`` integral costs.
      exact: rational arithmetic (``fractions.Fraction``) if True, guarded float64 otherwise.
      max_cuts: limit on the number of cuts.
      max_pivots: limit on simplex pivots.
      time_limit: seconds.
      incumbent: integer value of a known feasible point, or ``None``.
      cuts_per_round: cuts added before each dual-simplex restoration: the one from the first
        fractional component (Gomory's lexicographic rule) and the most fractional others.

    Returns:
      A ``GomoryResult``; its ``U, V, y, w`` define the certificate ``F``.
    """
    t0 = time.perf_counter()
    deadline = t0 + time_limit
    num = _Num(exact)
    A = [list(row) for row in A]
    m = len(A)
    N = len(c)
    dd = [num.conv(v) for v in d]
    cint = [num.conv(v) for v in c]
    U: list = []
    V: list = []
    H: list = []
    gb: list = []  # g_k(b)
    tab = _Tableau([[num.conv(a) for a in row] for row in A] if m else [], dd, cint, num)

    def result(status, msg="", x=None, obj=None):
        y, w = _duals(tab, m, len(U), num) if tab.Z is not None else ([num.zero] * m, [num.zero] * len(U))
        bound = sum((a * b for a, b in zip(y, dd, strict=True)), num.zero) + sum(
            (a * b for a, b in zip(w, gb, strict=True)), num.zero
        )
        if status in ("infeasible", "unbounded"):
            bound = None
        return GomoryResult(status, x, obj, bound, U, V, y, w, H, len(U), tab.pivots, time.perf_counter() - t0, msg)

    try:
        if m == 0:
            # no rows: min c x over x >= 0 integer
            if any(num.neg(v) for v in cint):
                return GomoryResult("unbounded", None, None, None, U, V, [], [], H, 0, 0, time.perf_counter() - t0)
            return GomoryResult("optimal", [num.zero] * N, num.zero, num.zero, U, V, [], [], H)
        if not tab.phase1(deadline, max_pivots):
            return result("infeasible", "LP relaxation infeasible")
        st = tab.phase2(deadline, max_pivots)
        if st == "unbounded":
            # the relaxation is unbounded: the integer program is unbounded iff it is feasible
            feas = gomory(
                A,
                d,
                [0] * N,
                exact=exact,
                max_cuts=max_cuts,
                max_pivots=max_pivots,
                time_limit=max(deadline - time.perf_counter(), 1e-3),
            )
            if feas.status == "optimal":
                return GomoryResult(
                    "unbounded",
                    feas.x,
                    None,
                    None,
                    U,
                    V,
                    [],
                    [],
                    H,
                    feas.cuts,
                    feas.pivots,
                    time.perf_counter() - t0,
                    "LP relaxation unbounded and an integer point exists",
                )
            if feas.status == "infeasible":
                return GomoryResult(
                    "infeasible",
                    None,
                    None,
                    None,
                    U,
                    V,
                    [],
                    [],
                    H,
                    feas.cuts,
                    feas.pivots,
                    time.perf_counter() - t0,
                    "no integer point",
                )
            return GomoryResult(
                feas.status,
                None,
                None,
                None,
                U,
                V,
                [],
                [],
                H,
                feas.cuts,
                feas.pivots,
                time.perf_counter() - t0,
                "relaxation unbounded; feasibility undecided",
            )
        while True:
            z0 = -tab.Z[-1]
            if incumbent is not None and num.ceil(z0) >= incumbent:
                y, w = _duals(tab, m, len(U), num)
                U.append(y)
                V.append({i: wi for i, wi in enumerate(w) if wi != 0})
                H.append([num.ceil(ci) for ci in cint])
                gb.append(num.ceil(z0))
                w_final = [num.zero] * (len(U) - 1) + [num.one]
                return GomoryResult(
                    "optimal",
                    None,
                    num.conv(incumbent),
                    gb[-1],
                    U,
                    V,
                    [num.zero] * m,
                    w_final,
                    H,
                    len(U),
                    tab.pivots,
                    time.perf_counter() - t0,
                    "closed by the incumbent",
                )
            brow = tab.basic_row()
            srcs: list = []
            if not num.is_int(z0):
                srcs.append("obj")
            fr = [(k, brow[k]) for k in range(N) if k in brow and not num.is_int(tab.W[brow[k], -1])]
            if not srcs and not fr:
                x = [num.zero] * N
                for k in range(N):
                    if k in brow:
                        x[k] = tab.W[brow[k], -1] if exact else float(round(tab.W[brow[k], -1]))
                obj = sum((a * b for a, b in zip(cint, x, strict=True)), num.zero)
                return result("optimal", "", x, obj)
            if fr:
                srcs.append(fr[0][1])  # Gomory's lexicographic rule: the first fractional component
                rest = sorted(fr[1:], key=lambda kr: -abs(float(tab.W[kr[1], -1]) - round(float(tab.W[kr[1], -1]))))
                srcs += [r for _, r in rest[: max(cuts_per_round - len(srcs), 0)]]
            added = 0
            for src in srcs:
                if len(U) >= max_cuts:
                    return result("limit", f"cut limit {max_cuts} reached")
                u, v, h = _make_cut(tab, src, m, H, N, num)
                g_val = num.ceil(
                    sum((a * b for a, b in zip(u, dd, strict=True) if a != 0), num.zero)
                    + sum((vv * gb[i] for i, vv in v.items()), num.zero)
                )
                k = len(U)
                U.append(u)
                V.append(v)
                H.append(h)
                gb.append(g_val)
                tab.add_cut(h, k, g_val)
                if not num.neg(tab.W[-1, -1]) and not exact:
                    # not violated in floating point: leave it in (valid) but do not count on it
                    continue
                added += 1
            if not added:
                raise FloatingPointError("no cut is violated by more than the float tolerance")
            if not tab.dual_simplex(deadline, max_pivots):
                if not exact:
                    raise FloatingPointError("the dual simplex found no pivot (infeasibility not trusted in float)")
                return result("infeasible", "cuts made the LP infeasible: no integer point")
            tab.purge()
    except _Limit as exc:
        return result("limit", str(exc))
    except FloatingPointError as exc:
        return result("numerics", str(exc))


def _duals(tab: _Tableau, m: int, K: int, num: _Num) -> tuple[list, list]:
    """Current LP duals: ``y`` on the original rows (canonical signs), ``w >= 0`` on the cuts."""
    y = [num.zero] * m
    w = [num.zero] * K
    for p, (kind, idx) in enumerate(tab.p_kind):
        val = -tab.Z[tab.nx + p]
        if kind == "orig":
            y[idx] = val * tab.sign[idx]
        else:
            w[idx] = -val
            if not num.exact and w[idx] < 0:
                w[idx] = 0.0 if w[idx] > -1e-7 else w[idx]
    return y, w


def _make_cut(tab: _Tableau, src, m: int, H: list, N: int, num: _Num):
    """Cut (u, v, h) from the objective (``src == "obj"``) or from tableau row ``src``."""
    if src == "obj":
        y, w = _duals(tab, m, len(H), num)
        v = {i: wi for i, wi in enumerate(w) if wi != 0}
        if any(num.neg(x) for x in v.values()):
            raise FloatingPointError("negative cut dual")
        h = [num.ceil(ci) for ci in tab.c]
        return y, v, h
    r = src
    u = [num.zero] * m
    v: dict[int, object] = {}
    ceil_neg: dict[int, object] = {}
    for p, (kind, idx) in enumerate(tab.p_kind):
        rho = tab.W[r, tab.nx + p]
        if kind == "orig":
            u[idx] = -rho * tab.sign[idx]
        else:
            cn = num.ceil(-rho)
            vv = rho + cn
            if not num.exact:
                vv = 0.0 if abs(vv) <= 1e-9 or abs(vv - 1) <= 1e-9 else vv
            if vv != 0:
                v[idx] = vv
            if cn != 0:
                ceil_neg[idx] = cn
    h = []
    for j in range(N):
        hj = num.ceil(-tab.W[r, j])
        for idx, cn in ceil_neg.items():
            hj += cn * H[idx][j]
        h.append(hj)
    return u, v, h
