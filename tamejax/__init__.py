"""tamejax: differentiable mixed-integer programming in JAX.

Public API (everything else is private):

* ``MIP``: the problem pytree (scipy.optimize.milp convention).
* ``solve``, ``Solution``, ``Status``: the bridge to the OR-Tools solvers.
* ``value``, ``value_and_solution``: the optimal value with its conservative gradient.
* ``set_workers``, ``get_workers``, ``available_backends``: solver pool and backends.
* ``Oracle``: the solution map ``theta -> argmin/argmax theta . x`` over a fixed feasible set.
* ``tamejax.estimators``: differentiable estimators of that map and decision-focused losses.
* ``tamejax.problems``: problem builders and PyEPO's data generators.
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

__all__ = [
    "MIP",
    "Oracle",
    "Solution",
    "Status",
    "available_backends",
    "estimators",
    "get_workers",
    "problems",
    "set_workers",
    "solve",
    "value",
    "value_and_solution",
]
