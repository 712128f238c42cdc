"""A small branch and bound over GLOP that returns the branch-and-bound dual function.

For ``z(b) = min { c x : A_ub x <= b_ub, A_eq x = b_eq, l <= x <= u, x_I integer }`` and a
branch-and-bound tree whose leaves ``t`` carry bounds ``l^t <= x <= u^t`` (the original
bounds tightened by branching), let ``(y_t, r_t)`` be a dual feasible solution of the LP
relaxation of leaf ``t``: ``y_ub <= 0`` (``dz/db`` convention), ``r_t = c - A^T y_t``. Weak
duality gives, for *every* right-hand side ``b`` and every ``x`` feasible in leaf ``t``,

$$ c^\\top x \\ \\ge\\ \\psi_t(b) = y_t^\\top b + \\sum_j \\big(\\max(r_{tj},0)\\, l^t_j -
\\max(-r_{tj},0)\\, u^t_j\\big), $$

and since the leaves cover every integer assignment, ``F(b) = min_t psi_t(b) <= z(b)``
(Wolsey 1981; Guzelsoy & Ralphs 2007, "Duality for mixed-integer linear programs"). Leaves
pruned by bound use their optimal LP duals; at the optimal leaf ``psi_t(b) = z(b)``, so
``F(b) = z(b)`` when the search finishes. A leaf whose LP is infeasible uses its parent's
duals (dual feasible for the child: dual feasibility does not depend on bounds) plus
``lambda >= 0`` times a Farkas ray from a phase-1 LP, ``lambda`` chosen so that the piece
is not below ``z(b)`` at ``b``. Open nodes at a limit use their parent's duals, so ``F`` is
always a valid lower bound and ``F(b)`` the best bound found.

It is deliberately simple (depth first, most-fractional branching, GLOP through
``tamejax.backends.glop_relaxation``, bounds updated in place): correct, not fast.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from tamejax.backends.glop_relaxation import GlopRelaxation

__all__ = ["BnBLeaf", "BnBResult", "branch_and_bound"]

_INT_TOL = 1e-6


@dataclasses.dataclass
class BnBLeaf:
    """One affine piece ``psi(b) = Y . b + e`` of the dual function and where it comes from.

    Attributes:
      Y: ``(m_ub + m_eq,)`` slope.
      e: constant.
      lb: ``(n,)`` leaf lower bounds.
      ub: ``(n,)`` leaf upper bounds.
      kind: ``"optimal"`` (LP solved), ``"infeasible"`` (dual ray added) or ``"open"`` (limit).
    """

    Y: np.ndarray
    e: float
    lb: np.ndarray
    ub: np.ndarray
    kind: str


@dataclasses.dataclass
class BnBResult:
    """Outcome of ``branch_and_bound``.

    Attributes:
      status: ``"optimal"``, ``"infeasible"``, ``"unbounded"`` or ``"limit"``.
      x: best integer solution found (``None`` if none).
      objective: its value (``inf`` if none).
      bound: ``F(b) = min_t psi_t(b)``.
      leaves: the pieces of ``F``.
      tree: nested ``(j, k, left, right)`` tuples (branch ``x_j <= k`` / ``x_j >= k + 1``)
        with leaf indices at the bottom, for checking that the leaves cover the root box.
      nodes: number of LPs solved.
    """

    status: str
    x: np.ndarray | None
    objective: float
    bound: float
    leaves: list[BnBLeaf]
    tree: object
    nodes: int = 0
    seconds: float = 0.0
    message: str = ""


def _piece(c, A, y, lb, ub, p_ub, tol=1e-9):
    """Clip a dual vector to feasibility and return (Y, e, r) of its affine piece.

    A reduced cost is rounded to 0 only where it is within ``tol`` *and* the bound it would
    multiply is infinite (LP round-off that would otherwise give the piece ``-inf``); where
    that bound is finite, ``r_j * bound_j`` is kept exactly (always a valid weak-duality term).
    """
    y = np.asarray(y, dtype=np.float64).copy()
    y[:p_ub] = np.minimum(y[:p_ub], 0.0)
    r = c - A.T @ y
    inf_side = ((r > 0) & ~np.isfinite(lb)) | ((r < 0) & ~np.isfinite(ub))
    r = np.where((np.abs(r) <= tol) & inf_side, 0.0, r)
    with np.errstate(invalid="ignore"):
        lo = np.where(r > 0, r * np.where(np.isfinite(lb), lb, -np.inf), 0.0)
        hi = np.where(r < 0, r * np.where(np.isfinite(ub), ub, np.inf), 0.0)
    e = float(np.sum(lo) + np.sum(hi))
    return y, e, r


def branch_and_bound(
    c: np.ndarray,
    A_ub: np.ndarray,
    b_ub: np.ndarray,
    A_eq: np.ndarray,
    b_eq: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
    integrality: np.ndarray,
    *,
    max_nodes: int = 20000,
    time_limit: float = 60.0,
) -> BnBResult:
    """Branch and bound with GLOP, recording the branch-and-bound dual function.

    Args:
      c: ``(n,)`` costs.
      A_ub: ``(m_ub, n)`` inequality matrix.
      b_ub: ``(m_ub,)`` inequality right-hand side.
      A_eq: ``(m_eq, n)`` equality matrix.
      b_eq: ``(m_eq,)`` equality right-hand side.
      lb: ``(n,)`` lower bounds (``-inf`` allowed).
      ub: ``(n,)`` upper bounds (``+inf`` allowed).
      integrality: ``(n,)`` bool.
      max_nodes: limit on LPs solved.
      time_limit: seconds.

    Returns:
      A ``BnBResult`` whose leaves define ``F``.
    """
    t0 = time.perf_counter()
    c = np.asarray(c, np.float64)
    n = c.shape[0]
    integ = np.asarray(integrality, bool)
    lb = np.where(integ & np.isfinite(lb), np.ceil(np.asarray(lb, np.float64) - 1e-9), lb).astype(np.float64)
    ub = np.where(integ & np.isfinite(ub), np.floor(np.asarray(ub, np.float64) + 1e-9), ub).astype(np.float64)
    A = np.concatenate([A_ub, A_eq]).reshape(-1, n)
    b = np.concatenate([b_ub, b_eq])
    p_ub = A_ub.shape[0]
    lp = GlopRelaxation(c, A_ub, b_ub, A_eq, b_eq)
    leaves: list[BnBLeaf] = []
    pending_infeasible: list[tuple[int, np.ndarray, float, np.ndarray, float]] = []
    best_x, best = None, math.inf
    nodes = 0
    root: dict = {}
    # stack entries: (lb, ub, parent piece (y) or None, tree slot)
    stack = [(lb.copy(), ub.copy(), None, root)]
    status = "optimal"
    message = ""
    while stack:
        if nodes >= max_nodes or time.perf_counter() - t0 > time_limit:
            status = "limit"
            message = f"node or time limit after {nodes} LPs"
            for nlb, nub, py, slot in stack:
                Y, e, _ = _piece(c, A, py, nlb, nub, p_ub) if py is not None else (np.zeros(b.shape), -math.inf, None)
                slot["leaf"] = len(leaves)
                leaves.append(BnBLeaf(Y, e, nlb, nub, "open"))
            break
        nlb, nub, py, slot = stack.pop()
        nodes += 1
        x = y = val = None
        if not np.any(nlb > nub):
            _, x, y, val = lp.solve(nlb, nub)
        if x is None:
            empty = bool(np.any(nlb > nub))
            yf, vf = (None, None) if empty else lp.phase1(nlb, nub)
            if not empty and (yf is None or vf <= 1e-9):
                if py is None and yf is not None:
                    # feasible but the relaxation is unbounded: unbounded iff an integer point exists
                    sub = branch_and_bound(
                        np.zeros(n),
                        A_ub,
                        b_ub,
                        A_eq,
                        b_eq,
                        lb,
                        ub,
                        integ,
                        max_nodes=max_nodes,
                        time_limit=max(time_limit - (time.perf_counter() - t0), 1e-3),
                    )
                    st = {"optimal": "unbounded"}.get(sub.status, sub.status)
                    obj = -math.inf if st == "unbounded" else math.inf
                    return BnBResult(
                        st,
                        sub.x,
                        obj,
                        -math.inf,
                        [],
                        None,
                        nodes + sub.nodes,
                        time.perf_counter() - t0,
                        "LP relaxation unbounded",
                    )
                if py is None:
                    return BnBResult(
                        "error",
                        None,
                        math.nan,
                        -math.inf,
                        [],
                        None,
                        nodes,
                        time.perf_counter() - t0,
                        "root LP neither optimal nor infeasible",
                    )
                status, message = "limit", "LP of a node neither optimal nor infeasible"
                Yp, ep, _ = _piece(c, A, py, nlb, nub, p_ub)
                slot["leaf"] = len(leaves)
                leaves.append(BnBLeaf(Yp, ep, nlb, nub, "open"))
                continue
            if py is None:
                return BnBResult(
                    "infeasible",
                    None,
                    math.inf,
                    math.inf,
                    [],
                    None,
                    nodes,
                    time.perf_counter() - t0,
                    "LP relaxation infeasible",
                )
            Yp, ep, _ = _piece(c, A, py, nlb, nub, p_ub)
            if empty:  # empty box (nlb > nub): no point at all; a constant positive piece
                j = int(np.argmax(nlb - nub))
                Yf = np.zeros_like(Yp)
                ef = float(nlb[j] - nub[j])
            else:
                Yf, ef, _ = _piece(np.zeros(n), A, yf, nlb, nub, p_ub)
            slot["leaf"] = len(leaves)
            pending_infeasible.append((len(leaves), Yf, ef, Yp, ep))
            leaves.append(BnBLeaf(Yp, ep, nlb, nub, "infeasible"))
            continue
        Y, e, _ = _piece(c, A, y, nlb, nub, p_ub)
        frac = np.where(integ, np.abs(x - np.round(x)), 0.0)
        if val >= best - 1e-9 * max(1.0, abs(best)) or frac.max(initial=0.0) <= _INT_TOL:
            if frac.max(initial=0.0) <= _INT_TOL and val < best:
                best = float(c @ np.where(integ, np.round(x), x))
                best_x = np.where(integ, np.round(x), x)
            slot["leaf"] = len(leaves)
            leaves.append(BnBLeaf(Y, e, nlb, nub, "optimal"))
            continue
        j = int(np.argmax(frac))
        k = math.floor(x[j])
        left_ub, right_lb = nub.copy(), nlb.copy()
        left_ub[j] = k
        right_lb[j] = k + 1
        slot["branch"] = (j, k, {}, {})
        _, _, left, right = slot["branch"]
        stack.append((right_lb, nub.copy(), y, right))
        stack.append((nlb.copy(), left_ub, y, left))
    # infeasible leaves: add enough of the Farkas ray to reach the incumbent at b
    target = best if math.isfinite(best) else None
    for idx, Yf, ef, Yp, ep in pending_infeasible:
        vf = float(Yf @ b + ef)
        vp = float(Yp @ b + ep)
        if target is None or vf <= 0:
            lam = 0.0 if vf <= 0 else 1e6
        else:
            lam = max(0.0, (target - vp) / vf) * (1 + 1e-9) + 1e-9
        leaves[idx].Y = Yp + lam * Yf
        leaves[idx].e = ep + lam * ef
    if best_x is None and status == "optimal":
        return BnBResult(
            "infeasible",
            None,
            math.inf,
            math.inf,
            leaves,
            root,
            nodes,
            time.perf_counter() - t0,
            "every leaf infeasible",
        )
    bound = min((float(lf.Y @ b + lf.e) for lf in leaves), default=math.inf)
    return BnBResult(status, best_x, best, bound, leaves, root, nodes, time.perf_counter() - t0, message)
