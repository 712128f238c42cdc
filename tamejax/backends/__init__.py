"""Host-side solver backends: NumPy in, NumPy out, no JAX.

A backend is one file here plus one line in ``_REGISTRY``. ``solve_host`` is what the worker
processes (and the in-process path) call; it never raises: failures become statuses.
"""

from __future__ import annotations

import importlib
import traceback

import numpy as np

from tamejax.backends.base import Backend, HostProblem, HostResult, SolveOptions, Status

__all__ = [
    "Backend",
    "HostProblem",
    "HostResult",
    "SolveOptions",
    "Status",
    "available_backends",
    "get_backend",
    "register_backend",
    "solve_host",
]

# name -> "module:factory" (imported lazily, also inside worker processes)
_REGISTRY: dict[str, str] = {
    "scip": "tamejax.backends.ortools_linear:scip",
    "cbc": "tamejax.backends.ortools_linear:cbc",
    "highs": "tamejax.backends.ortools_linear:highs",
    "glop": "tamejax.backends.ortools_linear:glop",
    "pdlp": "tamejax.backends.ortools_linear:pdlp",
    "cpsat": "tamejax.backends.ortools_cpsat:CpSatBackend",
    "enumeration": "tamejax.backends.enumeration:enumeration",
}
_BUILTIN = dict(_REGISTRY)  # the OR-Tools backends shipped with tamejax
_INSTANCES: dict[str, Backend] = {}


def available_backends() -> tuple[str, ...]:
    """Names accepted by ``backend=``."""
    return tuple(_REGISTRY)


def register_backend(name: str, target: str) -> None:
    """Register a backend as ``"module:factory"``; the module must import in worker processes."""
    if ":" not in target:
        raise ValueError(f"register_backend: expected 'module:factory', got {target!r}")
    _REGISTRY[name] = target
    _INSTANCES.pop(name, None)


def get_backend(name: str) -> Backend:
    """The backend registered under ``name``; ``ValueError`` lists the valid names."""
    if name not in _REGISTRY:
        raise ValueError(f"argument `backend`: expected one of {sorted(_REGISTRY)}, got {name!r}")
    if name not in _INSTANCES:
        module, attr = _REGISTRY[name].split(":")
        _INSTANCES[name] = getattr(importlib.import_module(module), attr)()
    return _INSTANCES[name]


def solve_host(backend: str, problem: HostProblem, options: SolveOptions, cache: dict) -> HostResult:
    """Solve one problem, turning every failure into a status (never raises)."""
    try:
        reason = None if problem.checked else problem.invalid_reason()
        if reason is not None:
            return HostResult.failed(problem.n, Status.ERROR, f"invalid data: {reason}")
        result = get_backend(backend).solve(problem, options, cache)
    except Exception as exc:  # noqa: BLE001 - every failure is reported as a status
        return HostResult.failed(
            problem.n, Status.ERROR, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
        )
    result.x = np.asarray(result.x, dtype=np.float64)
    return result
