"""``certify``: a subadditive / branch-and-bound dual function that proves the optimal value of a MIP."""

from __future__ import annotations

import dataclasses
import math
import time
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from tamejax.backends.base import Status
from tamejax.duality._canonical import Canonical, canonicalize, rhs_of
from tamejax.duality.branch_and_bound import BnBResult, branch_and_bound
from tamejax.duality.gomory import GomoryResult, gomory

if TYPE_CHECKING:  # the host path (certify_arrays, the "certificate" backend) never imports JAX
    from tamejax.duality.chvatal import BranchAndBoundFunction, ChvatalFunction
    from tamejax.problem import MIP

__all__ = ["Certificate", "certify"]

_METHODS = ("auto", "gomory", "branch_and_bound")
_ARITH = ("auto", "exact", "float")
# "auto" arithmetic: exact while the canonical tableau is at most this many entries (rows x columns)
EXACT_MAX_ENTRIES = 600


@dataclasses.dataclass
class Certificate:
    """A dual function ``F`` with ``F(b') <= z(b')`` for every right-hand side ``b'``, and its provenance.

    ``F`` takes ``b = concat(b_ub, b_eq)`` (shape ``(..., m_ub + m_eq)``); ``c``, ``A`` and the
    bounds are those of the certified problem. When ``status`` is ``OPTIMAL``,
    ``F(b) = z(b)`` (up to the arithmetic's tolerance): ``x`` is optimal and ``F`` proves it.

    Attributes:
      method: ``"gomory"`` (``F`` a ``ChvatalFunction``) or ``"branch_and_bound"``
        (``F`` a ``BranchAndBoundFunction``).
      status: ``Status.OPTIMAL`` (closed: ``bound == objective``); ``FEASIBLE`` (a limit, with an
        incumbent); ``NO_SOLUTION`` (a limit before any integer point; ``bound`` still valid);
        ``INFEASIBLE``; ``UNBOUNDED``; ``ERROR`` (floating-point guard tripped: see ``message``).
      F: the dual function as a JAX pytree (``None`` when infeasible or unbounded), built on
        first access from ``params``.
      x: best integer solution found (original variables) or ``None``.
      objective: ``c @ x`` (``+inf`` infeasible, ``-inf`` unbounded, ``nan`` unknown).
      bound: ``F(b)``, a lower bound on ``z(b)``.
      b: the right-hand side certified.
      arithmetic: ``"exact"`` or ``"float"`` (Gomory), ``"float"`` (branch and bound).
      stats: counts and time (``cuts``, ``pivots``, ``nodes``, ``seconds``).
      message: why it stopped, when not optimal.
      canonical: host-side standard form used by Gomory (for ``verify``), else ``None``.
      exact: exact rational parameters ``U, V, y, w`` (exact Gomory), else ``None``.
      leaves: branch-and-bound pieces (for ``verify``), else ``None``.
      tree: branch-and-bound tree (for ``verify``), else ``None``.
      params: the parameters of ``F`` as NumPy arrays (host side).
    """

    method: str
    status: Status
    params: dict[str, Any] | None
    x: np.ndarray | None
    objective: float
    bound: float
    b: np.ndarray
    arithmetic: str
    stats: dict[str, Any]
    message: str = ""
    canonical: Canonical | None = None
    exact: dict[str, Any] | None = None
    leaves: list | None = None
    tree: Any = None
    _F: Any = dataclasses.field(default=None, repr=False, compare=False)
    _F_dtype: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def F(self) -> ChvatalFunction | BranchAndBoundFunction | None:
        """The dual function ``F(b)``, a JAX pytree (``jit``/``vmap``/``grad``), or ``None``.

        Built in JAX's default float type at the time of access. A ``ChvatalFunction`` only
        evaluates in float64 (float32 round-ups are not a valid lower bound): with x64
        disabled, access and call it inside ``with jax.enable_x64(True):``.
        """
        if self.params is None:
            return None
        import jax.numpy as jnp

        dt = jnp.result_type(float)
        if self._F is None or self._F_dtype != dt:
            from tamejax.duality.chvatal import BranchAndBoundFunction, ChvatalFunction

            self._F_dtype = dt
            p = self.params
            if self.method == "gomory":
                self._F = ChvatalFunction(
                    **{
                        k: jnp.asarray(p[k], dt)
                        for k in ("in_matrix", "in_offset", "U", "V", "y", "w", "scale", "offset")
                    },
                    in_floor=tuple(bool(v) for v in p["in_floor"]),
                )
            else:
                self._F = BranchAndBoundFunction(Y=jnp.asarray(p["Y"], dt), e=jnp.asarray(p["e"], dt))
        return self._F

    @property
    def closed(self) -> bool:
        """Whether the certificate proves optimality (``F(b) == z(b)``)."""
        return self.status == Status.OPTIMAL

    @property
    def gap(self) -> float:
        """``objective - bound`` (0 when closed, ``inf`` without an incumbent)."""
        return float(self.objective - self.bound) if self.x is not None else math.inf

    def slope(self) -> np.ndarray:
        """Slope of the active affine piece of ``F`` at ``b`` (what ``jax.grad`` of ``F`` gives there), NumPy.

        Chvátal function: ``scale * in_matrix.T @ y``; branch-and-bound function: ``Y_t`` of the
        first minimizing leaf. Zeros when there is no ``F``. For a Chvátal function the
        components on ``<=`` rows are a price-type surrogate, not a derivative: ``F`` floors
        ``b_ub`` and is a step function of it (see ``docs/theory.md``); a certificate closed
        by an incumbent has ``y = 0``.

        Returns:
          Array of shape ``(m_ub + m_eq,)``.
        """
        p = self.params
        if p is None:
            return np.zeros_like(self.b)
        if self.method == "gomory":
            return float(p["scale"]) * p["in_matrix"].T @ p["y"]
        return p["Y"][int(np.argmin(p["Y"] @ self.b + p["e"]))]

    def __repr__(self) -> str:
        return (
            f"Certificate(method={self.method!r}, status={self.status.name}, objective={self.objective:.6g}, "
            f"bound={self.bound:.6g}, arithmetic={self.arithmetic!r}, stats={self.stats})"
        )


def _check_problem(problem: Any) -> dict:
    import jax

    from tamejax.problem import MIP

    if not isinstance(problem, MIP):
        raise TypeError(f"argument `problem`: expected a tamejax.MIP, got {type(problem).__name__}")
    if problem.batch_shape:
        raise ValueError(
            f"argument `problem`: expected a single problem, got batch_shape {problem.batch_shape}; "
            "certify each problem[i]"
        )
    leaves = [problem.c, problem.A_ub, problem.b_ub, problem.A_eq, problem.b_eq, problem.lb, problem.ub]
    if any(isinstance(v, jax.core.Tracer) for v in leaves):
        raise TypeError("argument `problem`: expected concrete data, got traced arrays (certify runs on the host)")
    return problem.to_numpy()


def certify(
    problem: MIP,
    method: str = "auto",
    *,
    arithmetic: str = "auto",
    max_cuts: int = 2000,
    max_nodes: int = 20000,
    time_limit: float = 60.0,
    primal: str | None = "scip",
) -> Certificate:
    """Compute a dual function certifying the optimal value of a (single, concrete) MIP.

    Methods:

    * ``"gomory"`` (pure integer programs): Gomory's fractional cutting planes with the
      lexicographic dual simplex on the integer-scaled standard form (see
      ``tamejax.duality.gomory``), giving a ``ChvatalFunction`` ``F`` that is subadditive,
      ``F(a_j) <= c_j`` for every canonical column and ``F(b) = z(b)`` (Gomory 1958; Wolsey
      1981; Blair & Jeroslow 1982). Data are read as rationals (``limit_denominator(10**6)``
      within ``1e-12``).
    * ``"branch_and_bound"`` (any MILP): the branch-and-bound dual function
      ``F(b) = min_t psi_t(b)`` of Guzelsoy & Ralphs (2007) from a small depth-first branch
      and bound over GLOP (``tamejax.duality.branch_and_bound``).
    * ``"auto"``: ``"gomory"`` when every variable is integer and, if the cut loop does not
      close within its limits (``max_cuts``, half of ``time_limit``), ``"branch_and_bound"``;
      ``"branch_and_bound"`` for mixed-integer programs.

    Gomory's loop needs no primal solution, but it may take many cuts to reach an integral
    vertex after the bound is already tight. With ``primal`` (a backend name, SCIP by
    default) an incumbent ``x`` is found first (rounded to integers and checked against the
    data in exact rational arithmetic; ignored if infeasible), and the loop stops as soon as
    the rounded-up bound reaches ``c x``; the certificate is then one more round-up of the
    LP-dual function (still a Chvátal function), and ``x`` is the incumbent. Its linear part,
    hence ``slope()`` and ``jax.grad`` of ``F``, is then 0; ``primal=None`` keeps the LP price
    ``y`` of the final integral LP. ``verify`` checks it all anyway.

    Float arithmetic: before returning, the certificate is checked on the host in float64
    (``w >= 0``, ``V >= 0``, ``F(a_j) <= c_j`` on every canonical column, ``F(b)`` equal to the
    loop's bound, and, when optimal, ``x`` feasible with ``c x = F(b)``); a failure gives status
    ``ERROR`` without ``F`` (and, under ``method="auto"``, the branch-and-bound fallback).

    Bounds: finite lower bounds are shifted to 0 (``ceil`` for integer variables), a variable
    with only a finite upper bound is reflected, a free variable is split, and a finite upper
    bound becomes a row with a slack; ``<=`` rows get slacks. ``F`` is stated as a function of
    the user's ``b = concat(b_ub, b_eq)`` through that affine map (``ChvatalFunction.phi``).

    Args:
      problem: a single concrete ``MIP`` (no batch axes, not traced).
      method: ``"auto"``, ``"gomory"`` or ``"branch_and_bound"``.
      arithmetic: Gomory only: ``"exact"`` (``fractions.Fraction``), ``"float"`` (guarded
        float64), or ``"auto"`` (exact when the standard form has at most
        ``EXACT_MAX_ENTRIES`` = 600 matrix entries).
      max_cuts: Gomory cut limit.
      max_nodes: branch-and-bound LP limit.
      time_limit: seconds.
      primal: backend that provides an incumbent for Gomory's loop, or ``None``.

    Returns:
      A ``Certificate``; limits and numerical trouble are statuses, not exceptions.

    Raises:
      TypeError: ``problem`` is not a concrete ``MIP``.
      ValueError: a batched problem, an unknown ``method`` or ``arithmetic``, a non-positive
        limit, or ``method="gomory"`` with continuous variables.
    """
    data = _check_problem(problem)
    return certify_arrays(
        data,
        method,
        arithmetic=arithmetic,
        max_cuts=max_cuts,
        max_nodes=max_nodes,
        time_limit=time_limit,
        primal=primal,
    )


def certify_arrays(
    data: dict,
    method: str = "auto",
    *,
    arithmetic: str = "auto",
    max_cuts: int = 2000,
    max_nodes: int = 20000,
    time_limit: float = 60.0,
    primal: str | None = "scip",
) -> Certificate:
    """``certify`` on host data (float64 arrays ``c, A_ub, b_ub, A_eq, b_eq, lb, ub``, bool ``integrality``)."""
    if method not in _METHODS:
        raise ValueError(f"argument `method`: expected one of {_METHODS}, got {method!r}")
    if arithmetic not in _ARITH:
        raise ValueError(f"argument `arithmetic`: expected one of {_ARITH}, got {arithmetic!r}")
    for name, v in (("max_cuts", max_cuts), ("max_nodes", max_nodes)):
        if not isinstance(v, int | np.integer) or v < 0:
            raise ValueError(f"argument `{name}`: expected an integer >= 0, got {v!r}")
    if not (time_limit > 0):
        raise ValueError(f"argument `time_limit`: expected a positive number of seconds, got {time_limit!r}")
    integ = np.asarray(data["integrality"], bool)
    if method == "auto":
        if not integ.all():
            return _certify_bnb(data, max_nodes, time_limit)
        t0 = time.perf_counter()
        cert = _certify_gomory(data, arithmetic, max_cuts, time_limit / 2, primal)
        if cert.status in (Status.NO_SOLUTION, Status.ERROR):
            rest = max(time_limit - (time.perf_counter() - t0), 1e-3)
            bnb = _certify_bnb(data, max_nodes, rest)
            bnb.message = f"Gomory did not close ({cert.message}); branch-and-bound dual function"
            bnb.stats["gomory"] = cert.stats
            return bnb
        return cert
    if method == "gomory":
        if not integ.all():
            j = int(np.flatnonzero(~integ)[0])
            raise ValueError(
                "method 'gomory': expected a pure integer program (`integrality` all True), got continuous "
                f"variable {j}; use method='branch_and_bound'"
            )
        return _certify_gomory(data, arithmetic, max_cuts, time_limit, primal)
    return _certify_bnb(data, max_nodes, time_limit)


_GOMORY_STATUS = {
    "optimal": Status.OPTIMAL,
    "infeasible": Status.INFEASIBLE,
    "unbounded": Status.UNBOUNDED,
    "limit": Status.NO_SOLUTION,
    "numerics": Status.ERROR,
}


def _incumbent(data: dict, backend: str, time_limit: float) -> np.ndarray | None:
    """A feasible integer point from a host solve (NumPy in, NumPy out), or ``None``."""
    from tamejax.backends import HostProblem, SolveOptions, solve_host

    p = HostProblem(
        **{k: np.asarray(data[k], np.float64) for k in ("c", "A_ub", "b_ub", "A_eq", "b_eq", "lb", "ub")},
        integrality=np.asarray(data["integrality"], bool),
    )
    r = solve_host(backend, p, SolveOptions(time_limit=time_limit), {})
    if not r.status.has_solution:
        return None
    x = np.round(np.asarray(r.x, np.float64))
    return x if _exactly_feasible(data, x) else None


def _exactly_feasible(data: dict, x: np.ndarray) -> bool:
    """Whether the integer point ``x`` satisfies the problem in exact rational arithmetic (the floats as given)."""
    xq = [Fraction(float(v)) for v in x]

    def rows(A, b, eq):
        for i in range(A.shape[0]):
            lhs = sum((Fraction(float(a)) * v for a, v in zip(A[i], xq, strict=True) if a != 0), Fraction(0))
            rhs = Fraction(float(b[i]))
            if (lhs != rhs) if eq else (lhs > rhs):
                return False
        return True

    lb, ub = np.asarray(data["lb"], np.float64), np.asarray(data["ub"], np.float64)
    if np.any(x < lb) or np.any(x > ub):
        return False
    return rows(np.asarray(data["A_ub"]), data["b_ub"], False) and rows(np.asarray(data["A_eq"]), data["b_eq"], True)


def _float_self_check(res: GomoryResult, can: Canonical, d: list, tol: float = 1e-6) -> str:
    """Dual-feasibility self-check of a float Gomory certificate in float64 (as ``F`` is evaluated).

    Checks ``w >= 0``, ``V >= 0``, ``F(a_j) <= c_j`` on every canonical column (integer-scaled
    units, ``ceil(t - 1e-9)`` as in ``ChvatalFunction``), ``F(d) == bound`` and, when optimal,
    ``A x = d``, ``x >= 0`` integer and ``c x == F(d)``. Returns ``""`` if all hold, else why not.
    """
    K = len(res.U)
    U = np.array([[float(v) for v in u] for u in res.U]).reshape(K, can.m)
    V = np.zeros((K, K))
    for k in range(K):
        for i, v in res.V[k].items():
            V[k, i] = float(v)
    y = np.array([float(v) for v in res.y])
    w = np.array([float(v) for v in res.w])
    if np.any(w < 0) or np.any(V < 0):
        return f"float self-check: negative cut weight ({min(w.min(initial=0), V.min(initial=0)):.3g})"
    A = np.asarray(can.A, np.float64)
    cost = np.array([float(v) for v in can.c_q])
    dv = np.asarray([float(v) for v in d])
    cols = np.concatenate([A, dv[:, None]], axis=1)  # every canonical column, then d
    G = np.zeros((K, cols.shape[1]))
    for k in range(K):
        G[k] = np.ceil(U[k] @ cols + V[k, :k] @ G[:k] - 1e-9)
    Fv = y @ cols + w @ G
    scale = 1.0 + float(np.max(np.abs(cost), initial=0.0))
    viol = float(np.max(Fv[:-1] - cost, initial=-np.inf))
    if viol > tol * scale:
        return f"float self-check: F(a_j) > c_j by {viol:.3g} (integer-scaled units)"
    if res.bound is not None and abs(Fv[-1] - float(res.bound)) > tol * (1.0 + abs(float(res.bound))):
        return f"float self-check: F(b) = {Fv[-1]:.9g} but the loop reports {float(res.bound):.9g}"
    if res.status == "optimal" and res.x is not None:
        x = np.array([float(v) for v in res.x])
        if np.any(x < 0) or np.any(x != np.round(x)) or np.max(np.abs(A @ x - dv), initial=0.0) > tol * scale:
            return "float self-check: the final integer point is not feasible"
        if abs(cost @ x - Fv[-1]) > tol * (1.0 + abs(cost @ x)):
            return f"float self-check: c x = {cost @ x:.9g} but F(b) = {Fv[-1]:.9g}"
    return ""


def _certify_gomory(data: dict, arithmetic: str, max_cuts: int, time_limit: float, primal: str | None) -> Certificate:
    b = rhs_of(data)
    probe = canonicalize(data, integer_scaled=False, exact=False)
    if arithmetic == "auto":
        arithmetic = "exact" if probe.m * probe.N <= EXACT_MAX_ENTRIES else "float"
    exact = arithmetic == "exact"
    can = canonicalize(data, integer_scaled=True, exact=True)
    stats: dict[str, Any] = {"cuts": 0, "pivots": 0, "seconds": 0.0}
    if can.infeasible_bounds:
        return Certificate(
            "gomory",
            Status.INFEASIBLE,
            None,
            None,
            math.inf,
            math.inf,
            b,
            arithmetic,
            stats,
            "an integer variable has ceil(lb) > floor(ub)",
            can,
        )
    t0 = time.perf_counter()
    x_inc = _incumbent(data, primal, time_limit) if primal is not None else None
    z_inc = None
    if x_inc is not None:
        z_inc = round((float(data["c"] @ x_inc) - can.offset) * can.cost_scale)
    time_limit = max(time_limit - (time.perf_counter() - t0), 1e-3)
    if exact:
        A = can.A_q
        d = can.d_of_exact(b)
    else:
        A = can.A.tolist()
        d = can.d_of(b).tolist()
    res: GomoryResult = gomory(
        A,
        d,
        can.c_q if exact else [float(v) for v in can.c_q],
        exact=exact,
        max_cuts=max_cuts,
        time_limit=time_limit,
        incumbent=z_inc,
    )
    stats = {"cuts": res.cuts, "pivots": res.pivots, "seconds": time.perf_counter() - t0}
    status = _GOMORY_STATUS[res.status]
    if status in (Status.INFEASIBLE, Status.UNBOUNDED):
        obj = math.inf if status == Status.INFEASIBLE else -math.inf
        x = can.x_of(np.array([float(v) for v in res.x])) if res.x is not None else None
        return Certificate("gomory", status, None, x, obj, obj, b, arithmetic, stats, res.message, can)
    if not exact:
        why = _float_self_check(res, can, d)
        if why:
            stats["self_check"] = why
            return Certificate("gomory", Status.ERROR, None, None, math.nan, -math.inf, b, arithmetic, stats, why, can)
    F = _chvatal_params(res, can)
    scale = 1.0 / can.cost_scale
    bound = float(res.bound) * scale + can.offset
    x, objective = None, math.nan
    if res.x is not None:
        x = can.x_of(np.array([float(v) for v in res.x]))
        objective = float(res.objective) * scale + can.offset
    elif status == Status.OPTIMAL:  # closed by the incumbent
        x = x_inc
        objective = float(data["c"] @ x_inc)
    exact_params = None
    if exact:
        exact_params = {"U": res.U, "V": res.V, "y": res.y, "w": res.w, "H": res.H}
    return Certificate("gomory", status, F, x, objective, bound, b, arithmetic, stats, res.message, can, exact_params)


def _chvatal_params(res: GomoryResult, can: Canonical) -> dict[str, Any]:
    K, m = len(res.U), can.m
    U = np.zeros((K, m))
    V = np.zeros((K, K))
    for k in range(K):
        U[k] = [float(v) for v in res.U[k]]
        for i, v in res.V[k].items():
            V[k, i] = float(v)
    return dict(
        in_matrix=np.asarray(can.in_matrix, np.float64),
        in_offset=np.asarray(can.in_offset, np.float64),
        U=U,
        V=V,
        y=np.array([float(v) for v in res.y]),
        w=np.array([float(v) for v in res.w]),
        scale=np.float64(1.0 / can.cost_scale),
        offset=np.float64(can.offset),
        in_floor=np.asarray(can.in_floor, bool),
    )


def _certify_bnb(data: dict, max_nodes: int, time_limit: float) -> Certificate:
    b = rhs_of(data)
    res: BnBResult = branch_and_bound(
        data["c"],
        data["A_ub"],
        data["b_ub"],
        data["A_eq"],
        data["b_eq"],
        data["lb"],
        data["ub"],
        data["integrality"],
        max_nodes=max_nodes,
        time_limit=time_limit,
    )
    stats = {"nodes": res.nodes, "leaves": len(res.leaves), "seconds": res.seconds}
    if res.status in ("infeasible", "unbounded", "error"):
        st = {"infeasible": Status.INFEASIBLE, "unbounded": Status.UNBOUNDED, "error": Status.ERROR}[res.status]
        obj = {"infeasible": math.inf, "unbounded": -math.inf, "error": math.nan}[res.status]
        return Certificate(
            "branch_and_bound",
            st,
            None,
            res.x,
            obj,
            obj,
            b,
            "float",
            stats,
            res.message,
            leaves=res.leaves,
            tree=res.tree,
        )
    Y = np.stack([lf.Y for lf in res.leaves]) if res.leaves else np.zeros((0, b.shape[0]))
    e = np.array([lf.e for lf in res.leaves])
    F = {"Y": Y, "e": e}
    if res.status == "optimal":
        status = Status.OPTIMAL
    else:
        status = Status.FEASIBLE if res.x is not None else Status.NO_SOLUTION
    objective = float(res.objective) if res.x is not None else math.nan
    return Certificate(
        "branch_and_bound",
        status,
        F,
        res.x,
        objective,
        float(res.bound),
        b,
        "float",
        stats,
        res.message,
        leaves=res.leaves,
        tree=res.tree,
    )
