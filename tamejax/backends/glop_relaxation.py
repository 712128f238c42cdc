"""GLOP relaxation re-solved under changing bounds: the host-side LP engine of the branch-and-bound dual."""

from __future__ import annotations

import numpy as np


class GlopRelaxation:
    """GLOP model of an LP relaxation and its phase-1 twin, with variable bounds updated per node.

    Host side, used by ``tamejax.duality.branch_and_bound`` (the one place in tamejax that needs
    one LP re-solved under many bound changes, with row duals and phase-1 duals, in process).
    ``solve(lb, ub)`` returns ``(code, x, y, value)`` (``x``, ``y``, ``value`` are ``None`` unless
    GLOP reports optimal); ``phase1(lb, ub)`` returns the row duals and the value of the
    minimum-infeasibility LP (``None, None`` on failure).
    """

    def __init__(self, c, A_ub, b_ub, A_eq, b_eq):
        from ortools.linear_solver import pywraplp

        self.pw = pywraplp
        n = c.shape[0]
        self.inf = pywraplp.Solver.infinity()
        self.s = pywraplp.Solver.CreateSolver("GLOP")
        self.f = pywraplp.Solver.CreateSolver("GLOP")
        self.x = [self.s.NumVar(0, 0, f"x{j}") for j in range(n)]
        self.xf = [self.f.NumVar(0, 0, f"x{j}") for j in range(n)]
        self.rows, self.frows = [], []
        obj_f = self.f.Objective()
        for A, b, eq in ((A_ub, b_ub, False), (A_eq, b_eq, True)):
            for i in range(A.shape[0]):
                lo = float(b[i]) if eq else -self.inf
                ct = self.s.Constraint(lo, float(b[i]))
                cf = self.f.Constraint(lo, float(b[i]))
                for j in np.flatnonzero(A[i]):
                    ct.SetCoefficient(self.x[j], float(A[i, j]))
                    cf.SetCoefficient(self.xf[j], float(A[i, j]))
                p = self.f.NumVar(0, self.inf, "")
                cf.SetCoefficient(p, -1.0)
                obj_f.SetCoefficient(p, 1.0)
                if eq:
                    q = self.f.NumVar(0, self.inf, "")
                    cf.SetCoefficient(q, 1.0)
                    obj_f.SetCoefficient(q, 1.0)
                self.rows.append(ct)
                self.frows.append(cf)
        obj = self.s.Objective()
        for j in range(n):
            obj.SetCoefficient(self.x[j], float(c[j]))
        obj.SetMinimization()
        obj_f.SetMinimization()

    def _bounds(self, xs, lb, ub):
        for v, lo, hi in zip(xs, lb, ub, strict=True):
            v.SetBounds(float(lo) if np.isfinite(lo) else -self.inf, float(hi) if np.isfinite(hi) else self.inf)

    def solve(self, lb, ub):
        self._bounds(self.x, lb, ub)
        code = self.s.Solve()
        if code != self.pw.Solver.OPTIMAL:
            return code, None, None, None
        x = np.array([v.solution_value() for v in self.x])
        y = np.array([ct.dual_value() for ct in self.rows])
        return code, x, y, self.s.Objective().Value()

    def phase1(self, lb, ub):
        self._bounds(self.xf, lb, ub)
        code = self.f.Solve()
        if code != self.pw.Solver.OPTIMAL:
            return None, None
        return np.array([ct.dual_value() for ct in self.frows]), self.f.Objective().Value()
