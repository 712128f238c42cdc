"""A host backend that solves by certifying: ``value(..., gradient="certificate")`` runs through it.

It keeps the one-bridge rule: ``value`` sends the problem through ``solve_leaves`` as usual,
and this backend (registered under ``"certificate"`` with ``tamejax.backends.register_backend``,
so worker processes find it) returns the certificate's solution, its value, ``bound = F(b)``
and, as duals, the slope of the active piece of ``F`` at ``b``: ``dual_ub``, ``dual_eq`` =
``dF/db_ub``, ``dF/db_eq``; reduced costs ``c - A^T y`` on the continuous columns (0 on the
integer ones), which ``value``'s backward rule turns into bound derivatives.

NumPy only (no JAX is imported in the worker): the slope is ``Certificate.slope()``, computed on
the host from the certificate's parameters.

Gomory runs here *without* a primal incumbent (``primal=None``): closing by the incumbent
wraps the whole LP-dual function into one final round-up, whose linear part (and so the
slope) is 0; without it the loop ends at an integral LP vertex and ``y`` is that LP's dual
(a price of the right-hand side). For a pure integer program ``z`` is a step function of
``b_ub`` when the data are integers, so this slope is a price-type surrogate, not a
derivative of ``z`` (see ``docs/duality.md``). The time limit is the solve option
``time_limit`` (default ``DEFAULT_TIME_LIMIT`` = 60 s per problem).
"""

from __future__ import annotations

import math
import time

import numpy as np

from tamejax.backends.base import HostProblem, HostResult, SolveOptions, Status

NAME = "certificate"
TARGET = "tamejax.duality._backend:CertificateBackend"
DEFAULT_TIME_LIMIT = 60.0  # seconds per certified problem when the caller gives no time_limit


def ensure_registered() -> str:
    """Register the backend (idempotent) and return its name."""
    from tamejax.backends import _REGISTRY, register_backend

    if _REGISTRY.get(NAME) != TARGET:
        register_backend(NAME, TARGET)
    return NAME


class CertificateBackend:
    """``certify`` (Gomory for pure integer programs, branch and bound otherwise) as a backend."""

    name = NAME
    supports_integers = True
    checks_data = False

    def check(self, problem: HostProblem) -> None:
        return None

    def solve(self, p: HostProblem, options: SolveOptions, cache: dict) -> HostResult:
        from tamejax.duality.certificate import certify_arrays

        t0 = time.perf_counter()
        data = {
            "c": p.c,
            "A_ub": p.A_ub,
            "b_ub": p.b_ub,
            "A_eq": p.A_eq,
            "b_eq": p.b_eq,
            "lb": p.lb,
            "ub": p.ub,
            "integrality": np.asarray(p.integrality, bool),
        }
        tl = options.time_limit if options.time_limit is not None else DEFAULT_TIME_LIMIT
        cert = certify_arrays(data, "auto", time_limit=tl, primal=None)
        status = cert.status
        if status == Status.NO_SOLUTION or cert.x is None or not status.has_solution:
            res = HostResult.failed(p.n, status if status != Status.OPTIMAL else Status.ERROR, cert.message)
            res.solve_time = time.perf_counter() - t0
            return res
        x = np.asarray(cert.x, np.float64)
        res = HostResult(x, float(p.c @ x), float(cert.bound), status)
        if options.duals:
            y = cert.slope()
            res.dual_ub, res.dual_eq = y[: p.m_ub], y[p.m_ub :]
            A = np.concatenate([p.A_ub, p.A_eq]).reshape(-1, p.n)
            rc = p.c - A.T @ y
            res.reduced_cost = np.where(p.integrality, 0.0, rc)
        res.solve_time = time.perf_counter() - t0
        if not math.isfinite(res.objective):
            res.status = Status.ERROR
        return res
