"""Host-side data types shared by every backend: NumPy in, NumPy out, no JAX."""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Protocol

import numpy as np

__all__ = ["Status", "HostProblem", "SolveOptions", "HostResult", "Backend", "structure_key"]


class Status(enum.IntEnum):
    """Outcome of a solve, carried as an ``int32`` inside JAX transformations.

    * ``OPTIMAL`` (0): proven optimal within the relative gap asked for.
    * ``FEASIBLE`` (1): a limit (time, gap not reached) stopped the solver with a feasible
      incumbent; ``objective`` is its value, ``bound`` the best proven bound.
    * ``INFEASIBLE`` (2): proven infeasible; objective ``+inf``.
    * ``UNBOUNDED`` (3): proven unbounded (or infeasible-or-unbounded with a feasible
      point known); objective ``-inf``.
    * ``NO_SOLUTION`` (4): a limit was reached before any feasible point was found.
    * ``ERROR`` (5): the solver failed, the data were invalid on the host (NaN inside
      ``jit``), or a worker process crashed twice on this instance.

    ``x`` is ``NaN`` and the objective is never a made-up number unless the status is
    ``OPTIMAL`` or ``FEASIBLE``.
    """

    OPTIMAL = 0
    FEASIBLE = 1
    INFEASIBLE = 2
    UNBOUNDED = 3
    NO_SOLUTION = 4
    ERROR = 5

    @property
    def has_solution(self) -> bool:
        return self in (Status.OPTIMAL, Status.FEASIBLE)


@dataclasses.dataclass(frozen=True)
class HostProblem:
    """One concrete problem in float64 NumPy arrays (the backend-facing form of ``MIP``)."""

    c: np.ndarray
    A_ub: np.ndarray
    b_ub: np.ndarray
    A_eq: np.ndarray
    b_eq: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    integrality: np.ndarray  # bool, shape (n,)
    input_dtype: str = "float64"  # dtype the data had in JAX (for exact rational recovery)
    checked: bool = False  # values already validated (vectorized over a batch by the bridge)

    @property
    def n(self) -> int:
        return int(self.c.shape[0])

    @property
    def m_ub(self) -> int:
        return int(self.A_ub.shape[0])

    @property
    def m_eq(self) -> int:
        return int(self.A_eq.shape[0])

    def invalid_reason(self) -> str | None:
        """Host-side re-check of the values (for data that were traced at construction)."""
        for name in ("c", "A_ub", "b_ub", "A_eq", "b_eq"):
            if not np.all(np.isfinite(getattr(self, name))):
                return f"field `{name}` has non-finite values"
        if np.any(np.isnan(self.lb)) or np.any(np.isnan(self.ub)):
            return "bounds contain NaN"
        if np.any(self.lb > self.ub):
            return "lb > ub for some variable"
        if np.any(self.lb == np.inf) or np.any(self.ub == -np.inf):
            return "lb = +inf or ub = -inf for some variable"
        return None


@dataclasses.dataclass(frozen=True)
class SolveOptions:
    """Solver options common to every backend.

    Attributes:
      time_limit: wall-clock limit in seconds per problem (``None``: no limit).
      rel_gap: relative MIP gap at which to stop (``None``: the solver's default).
      threads: solver threads per problem (``None``: the solver's default; 1 is best when a
        worker pool already runs one solve per core).
      seed: random seed, where the solver has one (SCIP, CP-SAT, HiGHS; CBC, GLOP and PDLP
        are deterministic and ignore it).
      duals: also compute dual values (LP duals, or the duals of the LP obtained by fixing
        the integer variables at their optimal values), needed by ``value``'s gradient.
    """

    time_limit: float | None = None
    rel_gap: float | None = None
    threads: int | None = None
    seed: int | None = None
    duals: bool = False

    def __post_init__(self) -> None:
        if self.time_limit is not None and not (self.time_limit > 0 and math.isfinite(self.time_limit)):
            raise ValueError(
                f"option `time_limit`: expected a positive finite number of seconds, got {self.time_limit!r}"
            )
        if self.rel_gap is not None and not (0 <= self.rel_gap < math.inf):
            raise ValueError(f"option `rel_gap`: expected a finite number >= 0, got {self.rel_gap!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"option `threads`: expected an integer >= 1, got {self.threads!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"option `seed`: expected an integer >= 0, got {self.seed!r}")


@dataclasses.dataclass
class HostResult:
    """What a backend returns for one problem.

    ``dual_ub``/``dual_eq`` are derivatives of the optimal value with respect to
    ``b_ub``/``b_eq`` (so ``dual_ub <= 0`` for a minimization); ``reduced_cost`` is
    ``c - A_ub.T @ dual_ub - A_eq.T @ dual_eq`` (zero on the integer variables, whose bounds
    do not move the value of the active piece). They are ``None`` unless duals were asked for
    and the status has a solution.
    """

    x: np.ndarray
    objective: float
    bound: float
    status: Status
    dual_ub: np.ndarray | None = None
    dual_eq: np.ndarray | None = None
    reduced_cost: np.ndarray | None = None
    solve_time: float = 0.0
    message: str = ""

    @classmethod
    def failed(cls, n: int, status: Status, message: str = "") -> HostResult:
        objective = {Status.INFEASIBLE: math.inf, Status.UNBOUNDED: -math.inf}.get(status, math.nan)
        return cls(np.full(n, np.nan), objective, objective, status, message=message)


class Backend(Protocol):
    """A solver backend: ``name``, what it accepts, and ``solve``."""

    name: str
    supports_integers: bool
    checks_data: bool  # does ``check`` inspect the numbers (True) or only the structure?

    def check(self, problem: HostProblem) -> None:
        """Raise ``ValueError`` if this backend cannot take the problem (e.g. CP-SAT data)."""

    def solve(self, problem: HostProblem, options: SolveOptions, cache: dict) -> HostResult:
        """Solve one problem; ``cache`` is this process's model cache (structure -> model)."""


def structure_key(problem: HostProblem) -> tuple:
    """What a cached model depends on: sizes and integrality (coefficients are updated)."""
    return (problem.n, problem.m_ub, problem.m_eq, problem.integrality.tobytes())
