"""Test-only backends, imported by the solver worker processes (``tests`` is on their path).

* ``crash``: kills its worker process (``os._exit``) whenever ``c[0] == CRASH_MARKER`` (so
  that problem crashes every attempt), otherwise solves with SCIP.
* ``slow``: sleeps ``SLOW_SECONDS`` and then solves with SCIP (time to kill a worker mid-batch).
"""

from __future__ import annotations

import os
import time

from tamejax.backends import HostProblem, HostResult, SolveOptions, get_backend

CRASH_MARKER = 13.0
SLOW_SECONDS = 0.4


class _Delegating:
    supports_integers = True

    def __init__(self, name: str) -> None:
        self.name = name

    def check(self, problem: HostProblem) -> None:
        get_backend("scip").check(problem)

    def before(self, problem: HostProblem) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def solve(self, problem: HostProblem, options: SolveOptions, cache: dict) -> HostResult:
        self.before(problem)
        return get_backend("scip").solve(problem, options, cache)


class _Crash(_Delegating):
    def before(self, problem: HostProblem) -> None:
        if problem.n and problem.c[0] == CRASH_MARKER:
            os._exit(77)  # no cleanup, no result frame: like a segfault in a solver


class _Slow(_Delegating):
    def before(self, problem: HostProblem) -> None:
        time.sleep(SLOW_SECONDS)


def factory() -> _Crash:
    """The ``crash`` backend."""
    return _Crash("crash")


def slow() -> _Slow:
    """The ``slow`` backend."""
    return _Slow("slow")
