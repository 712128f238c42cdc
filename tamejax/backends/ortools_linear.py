"""SCIP, CBC, HiGHS (MIP) and GLOP, PDLP (LP) through OR-Tools' ``pywraplp``.

Each worker process keeps one model per (backend, structure, options): variables and rows
are created once, and a re-solve only sends the coefficients, bounds and right-hand sides
that changed since the previous solve of that model (``SetCoefficient``/``SetBounds``), which
is what a training loop that solves the same structure thousands of times needs.
"""

from __future__ import annotations

import math
import time

import numpy as np
from ortools.linear_solver import _pywraplp, pywraplp

from tamejax.backends.base import HostProblem, HostResult, SolveOptions, Status, structure_key

__all__ = ["LinearBackend", "fixed_lp_duals"]

_STATUS = {
    pywraplp.Solver.OPTIMAL: Status.OPTIMAL,
    pywraplp.Solver.FEASIBLE: Status.FEASIBLE,
    pywraplp.Solver.INFEASIBLE: Status.INFEASIBLE,
    pywraplp.Solver.UNBOUNDED: Status.UNBOUNDED,
    pywraplp.Solver.ABNORMAL: Status.ERROR,
    pywraplp.Solver.MODEL_INVALID: Status.ERROR,
    pywraplp.Solver.NOT_SOLVED: Status.NO_SOLUTION,
}


# How many solves one pywraplp model may serve before it is rebuilt. SCIP, modified in place
# through pywraplp, slows down solve after solve (measured: 64 knapsacks of 50 items took
# 0.27 s, then 0.40, 0.57, 1.03, 1.32 s on later passes, while a fresh model stays at
# 0.27 s; no SCIP parameter we tried stops it), so its models are rebuilt periodically.
_MAX_REUSE = {"SCIP": 8}
_HIGHS_DEFAULT_GAP = 1e-4  # HiGHS's mip_rel_gap default
_HIGHS_ABS_GAP = 1e-6  # HiGHS's mip_abs_gap default


class _Model:
    """A pywraplp model whose data can be swapped for another instance of the same structure."""

    def __init__(self, solver_id: str, problem: HostProblem, options: SolveOptions, relax: bool):
        solver = pywraplp.Solver.CreateSolver(solver_id)
        if solver is None:  # pragma: no cover - depends on the OR-Tools build
            raise RuntimeError(f"OR-Tools was built without the {solver_id} solver")
        solver.SuppressOutput()
        self.solver_id = solver_id
        self.solver = solver
        self.inf = solver.infinity()
        n = problem.n
        integ = problem.integrality & (not relax)
        self.vars = [solver.Var(-self.inf, self.inf, bool(integ[j]), f"x{j}") for j in range(n)]
        self.rows_ub = [solver.Constraint(-self.inf, self.inf) for _ in range(problem.m_ub)]
        self.rows_eq = [solver.Constraint(-self.inf, self.inf) for _ in range(problem.m_eq)]
        self.objective = solver.Objective()
        self.objective.SetMinimization()
        # Current data, so that updates touch only what changed (NaN: never set).
        self.cur: dict[str, np.ndarray] = {
            "c": np.zeros(n),
            "A_ub": np.zeros((problem.m_ub, n)),
            "A_eq": np.zeros((problem.m_eq, n)),
            "b_ub": np.full(problem.m_ub, np.nan),
            "b_eq": np.full(problem.m_eq, np.nan),
            "lb": np.full(n, np.nan),
            "ub": np.full(n, np.nan),
        }
        self.solves = 0
        self._apply_options(options)

    def _apply_options(self, options: SolveOptions) -> None:
        s = self.solver
        if options.time_limit is not None:
            s.SetTimeLimit(max(1, int(math.ceil(options.time_limit * 1000))))
        if options.threads is not None:
            s.SetNumThreads(options.threads)
        specific = []
        if self.solver_id == "HIGHS":
            specific.append("output_flag=false")
            if options.seed is not None:
                specific.append(f"random_seed={options.seed}")
            if options.rel_gap is not None:
                # pywraplp's RELATIVE_MIP_GAP does not reach HiGHS: set HiGHS's own option.
                specific.append(f"mip_rel_gap={options.rel_gap!r}")
        elif self.solver_id == "SCIP" and options.seed is not None:
            specific.append(f"randomization/randomseedshift = {options.seed}")
        elif self.solver_id == "GLOP" and options.seed is not None:
            specific.append(f"random_seed: {options.seed}")
        elif self.solver_id == "PDLP":
            # GLOP's presolve first: it settles small or degenerate LPs exactly (PDLP alone
            # called a feasible single-point LP infeasible, and needed 10^7 iterations to
            # certify some tiny infeasible ones).
            specific.append("presolve_options { use_glop: true }")
        self.specific = "\n".join(specific)
        if specific:
            # The HiGHS interface reports False even when it applied the options.
            s.SetSolverSpecificParametersAsString(self.specific)
        self.params = pywraplp.MPSolverParameters()
        if options.rel_gap is not None:
            self.params.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, options.rel_gap)

    def _b(self, v: float) -> float:
        return max(-self.inf, min(self.inf, v))

    def load(self, p: HostProblem, lb: np.ndarray | None = None, ub: np.ndarray | None = None) -> None:
        """Send the data of ``p`` (with optional overriding bounds) to the solver, diffing."""
        cur = self.cur
        lb = p.lb if lb is None else lb
        ub = p.ub if ub is None else ub
        # Arrays shared by a batch (``_host_problems``) arrive as the very same object: skip them.
        if p.c is not cur["c"]:
            c, obj, xs, set_coef = p.c.tolist(), self.objective, self.vars, _pywraplp.Objective_SetCoefficient
            for j in np.flatnonzero(p.c != cur["c"]).tolist():
                set_coef(obj, xs[j], c[j])  # the SWIG call itself: the wrapper costs a third more
        for name, rows in (("A_ub", self.rows_ub), ("A_eq", self.rows_eq)):
            A = getattr(p, name)
            if A is not cur[name]:
                for i, j in zip(*np.nonzero(A != cur[name]), strict=True):
                    rows[i].SetCoefficient(self.vars[j], float(A[i, j]))
        if p.b_ub is not cur["b_ub"]:
            for i in np.flatnonzero(p.b_ub != cur["b_ub"]):
                self.rows_ub[i].SetBounds(-self.inf, self._b(p.b_ub[i]))
        if p.b_eq is not cur["b_eq"]:
            for i in np.flatnonzero(p.b_eq != cur["b_eq"]):
                self.rows_eq[i].SetBounds(float(p.b_eq[i]), float(p.b_eq[i]))
        if lb is not cur["lb"] or ub is not cur["ub"]:
            for j in np.flatnonzero((lb != cur["lb"]) | (ub != cur["ub"])):
                self.vars[j].SetBounds(self._b(lb[j]), self._b(ub[j]))
        self.cur = {"c": p.c, "A_ub": p.A_ub, "A_eq": p.A_eq, "b_ub": p.b_ub, "b_eq": p.b_eq, "lb": lb, "ub": ub}

    def run(self) -> int:
        self.solves += 1
        return self.solver.Solve(self.params)

    def run_without_presolve(self) -> int:
        """HiGHS only: solve once with its presolve off, then restore the options."""
        self.solver.SetSolverSpecificParametersAsString(self.specific + "\npresolve=off")
        try:
            return self.run()
        finally:
            self.solver.SetSolverSpecificParametersAsString(self.specific + "\npresolve=choose")

    def feasible_without_objective(self, p: HostProblem) -> int:
        """Re-solve with a zero objective (tells infeasible from unbounded)."""
        for v in self.vars:
            self.objective.SetCoefficient(v, 0.0)
        code = self.run()
        if self.solver_id == "HIGHS" and code in (pywraplp.Solver.NOT_SOLVED, pywraplp.Solver.ABNORMAL):
            code = self.run_without_presolve()  # the same HiGHS presolve failure as in ``solve``
        for j, v in enumerate(self.vars):
            self.objective.SetCoefficient(v, float(p.c[j]))
        return code

    def primal(self) -> np.ndarray:
        return np.array(list(map(_pywraplp.Variable_solution_value, self.vars)), dtype=np.float64)

    def duals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y_ub = np.array([r.dual_value() for r in self.rows_ub], dtype=np.float64)
        y_eq = np.array([r.dual_value() for r in self.rows_eq], dtype=np.float64)
        rc = np.array([v.reduced_cost() for v in self.vars], dtype=np.float64)
        return y_ub, y_eq, rc


class LinearBackend:
    """One pywraplp solver (``SCIP``, ``CBC``, ``HIGHS``, ``GLOP``, ``PDLP``) as a tamejax backend.

    Duals follow the convention ``dual = d(optimal value)/d(rhs)``; for a MIP they are the
    duals of the LP left when the integer variables are fixed at their optimal values,
    solved by GLOP (exact simplex duals). For ``GLOP``/``HIGHS``/``PDLP``, whose OR-Tools
    interface reports an unbounded LP as infeasible (or not solved), an ``INFEASIBLE``
    answer is confirmed by a zero-objective re-solve: feasible then means unbounded.
    """

    checks_data = False  # ``check`` looks at integrality only

    def __init__(self, name: str, solver_id: str, supports_integers: bool):
        self.name = name
        self.solver_id = solver_id
        self.supports_integers = supports_integers

    def check(self, problem: HostProblem) -> None:
        if not self.supports_integers and problem.integrality.any():
            j = int(np.flatnonzero(problem.integrality)[0])
            raise ValueError(
                f"backend `{self.name}` solves linear programs only: expected `integrality` all "
                f"False, got integer variable {j}; use a MIP backend (scip, cpsat, highs, cbc)"
            )

    def solve(self, p: HostProblem, options: SolveOptions, cache: dict) -> HostResult:
        self.check(p)
        t0 = time.perf_counter()
        model = _cached_model(self.solver_id, p, options, cache, relax=False)
        model.load(p)
        code = model.run()
        status = _STATUS.get(code, Status.ERROR)
        if self.solver_id == "HIGHS" and status in (Status.NO_SOLUTION, Status.ERROR) and options.time_limit is None:
            # HiGHS 1.12's presolve can reduce a small infeasible integer program to an empty
            # one, "solve" it, then reject its own solution ("solve error", reported as
            # NOT_SOLVED although no limit was set): solve once more without presolve.
            status = _STATUS.get(model.run_without_presolve(), Status.ERROR)
        if self.solver_id in ("GLOP", "HIGHS", "PDLP") and (
            status == Status.INFEASIBLE or (status == Status.NO_SOLUTION and options.time_limit is None)
        ):
            # These interfaces may answer "infeasible" for "infeasible or unbounded": a
            # zero-objective re-solve tells (also under a time limit: an unbounded problem
            # must not come back as infeasible). A NO_SOLUTION answer is only sharpened to
            # INFEASIBLE, or to UNBOUNDED when GLOP finds the LP (relaxation) unbounded.
            # PDLP (first order) may stop without a verdict: GLOP's simplex settles it.
            checker = model
            if self.solver_id == "PDLP":
                checker = _cached_model("GLOP", p, SolveOptions(time_limit=options.time_limit), cache, relax=True)
                checker.load(p)
            feasible = checker.feasible_without_objective(p)
            if feasible in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
                if status == Status.INFEASIBLE or _glop_says_unbounded(p, cache):
                    status = Status.UNBOUNDED
            elif feasible == pywraplp.Solver.INFEASIBLE:
                status = Status.INFEASIBLE
            elif status == Status.INFEASIBLE:
                status = Status.NO_SOLUTION  # the check hit the limit: infeasible or unbounded
        elif status == Status.ERROR and options.time_limit is not None:
            # HiGHS stopped by its time limit comes back from pywraplp as an unknown code with
            # no incumbent: that is "no solution within the limit", not a solver failure.
            if model.solver.WallTime() >= 0.9 * 1000 * options.time_limit:
                status = Status.NO_SOLUTION
        if not status.has_solution:
            return _stamp(HostResult.failed(p.n, status, f"{self.name}: status {status.name}"), t0)
        x = model.primal()
        objective = float(model.objective.Value())
        is_mip = bool(p.integrality.any())
        bound = float(model.objective.BestBound()) if is_mip else objective
        if abs(bound) >= 1e20:  # SCIP/CBC report "no bound yet" as their +-1e20 infinity
            bound = math.copysign(math.inf, bound)
        if self.solver_id == "HIGHS" and is_mip:
            # pywraplp passes HiGHS's incumbent off as its best bound: report the bound that
            # HiGHS's stopping rule guarantees instead (relative gap mip_rel_gap, default
            # 1e-4, or absolute gap mip_abs_gap = 1e-6), and no bound (-inf) at a limit.
            gap = _HIGHS_DEFAULT_GAP if options.rel_gap is None else options.rel_gap
            slack = max(gap * max(abs(objective), 1.0), _HIGHS_ABS_GAP)
            bound = objective - slack if status == Status.OPTIMAL else -math.inf
        result = HostResult(x, objective, bound, status)
        if options.duals:
            # SCIP and CBC give no LP duals through pywraplp and HiGHS's are unreliable
            # there: for them, as for any MIP, the duals come from GLOP on the fixed LP.
            if is_mip or self.solver_id not in ("GLOP", "PDLP"):
                fixed_lp_duals(p, x, options, cache, result)
            else:
                result.dual_ub, result.dual_eq, result.reduced_cost = model.duals()
        return _stamp(result, t0)


def _cached_model(solver_id: str, p: HostProblem, options: SolveOptions, cache: dict, relax: bool) -> _Model:
    key = (solver_id, relax, structure_key(p), options.time_limit, options.rel_gap, options.threads, options.seed)
    model = cache.get(key)
    if model is not None and solver_id == "SCIP" and not relax:
        # SCIP turns integer variables with bounds in [0, 1] into binaries, and pywraplp then
        # fails (and stays failed) on a later bound change outside [0, 1]: when the bounds of
        # an integer variable change, rebuild the model instead of updating it.
        old_lb, old_ub = model.cur["lb"], model.cur["ub"]
        changed = ((p.lb != old_lb) | (p.ub != old_ub)) & ~np.isnan(old_lb)
        if np.any(changed & p.integrality):
            model = None
    if model is not None and model.solves >= _MAX_REUSE.get(solver_id, math.inf):
        model = None
    if model is None:
        model = cache[key] = _Model(solver_id, p, options, relax)
    return model


def _glop_says_unbounded(p: HostProblem, cache: dict) -> bool:
    """For a feasible problem PDLP gave up on: does GLOP (simplex) find it unbounded?

    GLOP answers "infeasible" for a dual-infeasible LP; the problem is known feasible here.
    """
    model = _cached_model("GLOP", p, SolveOptions(), cache, relax=True)
    model.load(p)
    return model.run() == pywraplp.Solver.INFEASIBLE


def _stamp(result: HostResult, t0: float) -> HostResult:
    result.solve_time = time.perf_counter() - t0
    return result


def fixed_lp_duals(p: HostProblem, x: np.ndarray, options: SolveOptions, cache: dict, result: HostResult) -> None:
    """Duals of the LP with the integer variables fixed at ``round(x)``, solved by GLOP.

    On success the continuous part of ``x`` and the objective are replaced by the LP's
    (the same optimum, polished to simplex accuracy and consistent with the duals). If the
    fixed LP is not solved to optimality, the duals are NaN: the gradient then says so
    rather than being made up.
    """
    lp_opts = SolveOptions(time_limit=options.time_limit)
    model = _cached_model("GLOP", p, lp_opts, cache, relax=True)
    integ = p.integrality
    xi = np.where(integ, np.round(x), 0.0)
    lb = np.where(integ, xi, p.lb)
    ub = np.where(integ, xi, p.ub)
    model.load(p, lb, ub)
    code = model.run()
    if code != pywraplp.Solver.OPTIMAL:
        result.dual_ub = np.full(p.m_ub, np.nan)
        result.dual_eq = np.full(p.m_eq, np.nan)
        result.reduced_cost = np.full(p.n, np.nan)
        result.message = "fixed LP for duals not solved to optimality"
        return
    y_ub, y_eq, rc = model.duals()
    xf = model.primal()
    result.x = np.where(integ, xi, xf)
    result.objective = float(p.c @ result.x)
    result.dual_ub, result.dual_eq = y_ub, y_eq
    result.reduced_cost = np.where(integ, 0.0, rc)


def scip() -> LinearBackend:
    """SCIP (MIP) through pywraplp."""
    return LinearBackend("scip", "SCIP", True)


def cbc() -> LinearBackend:
    """COIN-OR CBC (MIP) through pywraplp."""
    return LinearBackend("cbc", "CBC", True)


def highs() -> LinearBackend:
    """HiGHS (MIP and LP) through pywraplp."""
    return LinearBackend("highs", "HIGHS", True)


def glop() -> LinearBackend:
    """GLOP, Google's primal/dual simplex (LP only)."""
    return LinearBackend("glop", "GLOP", False)


def pdlp() -> LinearBackend:
    """PDLP, first-order primal-dual LP solver (LP only; approximate duals)."""
    return LinearBackend("pdlp", "PDLP", False)
