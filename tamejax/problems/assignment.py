"""The linear assignment problem (a perfect matching of minimum cost)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tamejax.oracle import Oracle
from tamejax.problem import MIP
from tamejax.problems._common import check_int

__all__ = ["assignment"]


def assignment(n: int, *, integer: bool = False, backend: str | None = None, **options: Any) -> Oracle:
    """The oracle of the ``n x n`` linear assignment problem.

    $$\\min_{X} \\sum_{i,j} \\theta_{ij} X_{ij} \\quad\\text{s.t.}\\quad
    \\sum_{j} X_{ij} = 1 \\;(\\text{each row } i), \\quad \\sum_{i} X_{ij} = 1 \\;(\\text{each
    column } j), \\quad 0 \\le X \\le 1.$$

    The variables are ``X`` flattened row-major (``x[i * n + j] = X[i, j]``; reshape
    ``theta`` of shape ``(..., n, n)`` to ``(..., n * n)``); the equality rows are the ``n``
    row constraints, then the ``n`` column constraints. The constraint matrix is the incidence
    matrix of a bipartite graph (totally unimodular), so the vertices of the LP are the
    permutation matrices (Birkhoff–von Neumann) and the default LP backend ``"glop"``
    returns one.

    Args:
      n: number of rows (and columns), an integer ``>= 1``.
      integer: declare the variables integer (a MIP; the default backend becomes ``"scip"``).
      backend: the solver; default ``"glop"`` (``"scip"`` when ``integer``).
      **options: solver options of ``Oracle`` (``time_limit``, ``rel_gap``, ``threads``, ``seed``).

    Returns:
      An ``Oracle`` with ``sense="min"`` and ``n * n`` variables.

    Raises:
      ValueError: ``n`` not an integer ``>= 1``, an unknown backend or option.
    """
    n = check_int("assignment", "n", n)
    eye = np.eye(n)
    rows = np.kron(eye, np.ones((1, n)))  # row i: X[i, :]
    cols = np.kron(np.ones((1, n)), eye)  # row j: X[:, j]
    A_eq = np.concatenate([rows, cols])
    problem = MIP(np.zeros(n * n), A_eq=A_eq, b_eq=np.ones(2 * n), lb=0.0, ub=1.0, integrality=bool(integer))
    if backend is None:
        backend = "scip" if integer else "glop"
    return Oracle(problem, sense="min", backend=backend, **options)
