"""tamejax: differentiable mixed-integer programming in JAX.

Public API (everything else is private):

* ``MIP``: the problem pytree (scipy.optimize.milp convention).
* ``solve``, ``Solution``, ``Status``: the bridge to the OR-Tools solvers.
* ``value``, ``value_and_solution``: the optimal value with its conservative gradient.
* ``set_workers``, ``get_workers``, ``available_backends``: solver pool and backends.
* ``Oracle``: the solution map ``theta -> argmin/argmax theta . x`` over a fixed feasible set.
* ``tamejax.estimators``: differentiable estimators of that map and decision-focused losses.
* ``tamejax.problems``: problem builders and PyEPO's data generators.
* ``tamejax.duality``: subadditive / branch-and-bound dual functions (``certify``, ``verify``,
  ``ChvatalFunction``) certifying optimal values, usable as JAX functions of the right-hand side.
* ``tamejax.bnn``: training binarized / integer-valued networks as mixed-integer programs
  (``fit_mip``; Icarte et al. 2019, Thorbjarnarson & Yorke-Smith 2023, Kurtz & Bah 2021).
* ``tamejax.inverse``: learning the constraints of a 0-1 program from observed (cost, solution) pairs
  (CombOptNet's static-constraints setting, Paulus et al. 2021).
* ``tamejax.nn``: binary quantizers, Flax binary layers (Linen and NNX), Bop, bit packing,
  XNOR-popcount kernels and packed inference layers.
"""

from tamejax import estimators, problems
from tamejax.backends import available_backends
from tamejax.backends.base import Status
from tamejax.backends.pool import get_workers, set_workers
from tamejax.oracle import Oracle
from tamejax.problem import MIP
from tamejax.solve import Solution, solve
from tamejax.value import value, value_and_solution

__version__ = "0.1.0"

# Imported on first use: Flax (tamejax.nn) and the duality module are not needed by the solver
# worker processes, which import this package.
_LAZY_SUBMODULES = ("bnn", "duality", "inverse", "nn")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        module = importlib.import_module(f"tamejax.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'tamejax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))


__all__ = [
    "MIP",
    "Oracle",
    "Solution",
    "Status",
    "available_backends",
    "bnn",
    "duality",
    "estimators",
    "get_workers",
    "inverse",
    "nn",
    "problems",
    "set_workers",
    "solve",
    "value",
    "value_and_solution",
]
