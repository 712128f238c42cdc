"""The (weighted) set cover problem."""

from __future__ import annotations

from typing import Any

import numpy as np

from tamejax.oracle import Oracle
from tamejax.problem import MIP
from tamejax.problems._common import check_matrix

__all__ = ["set_cover"]


def set_cover(incidence: Any, *, backend: str = "scip", **options: Any) -> Oracle:
    """The oracle of the set cover problem: the cheapest sets covering every element.

    With ``A[e, s] = 1`` when set ``s`` contains element ``e``:

    $$\\min_{x \\in \\{0,1\\}^{S}} \\theta^\\top x \\quad\\text{s.t.}\\quad
    \\sum_{s} A_{es} x_s \\ge 1 \\quad \\text{for every element } e,$$

    stored as the rows ``-A x <= -1``. For costs ``theta >= 0`` this is the usual weighted set
    cover; a negative cost makes its set free to take.

    Args:
      incidence: ``A``, shape ``(num_elements, num_sets)``, entries 0 or 1 (booleans
        accepted); every element must lie in at least one set.
      backend: a MIP solver; default ``"scip"``.
      **options: solver options of ``Oracle`` (``time_limit``, ``rel_gap``, ``threads``, ``seed``).

    Returns:
      An ``Oracle`` with ``sense="min"`` and ``num_sets`` binary variables (``x_s = 1``:
      set ``s`` is chosen).

    Raises:
      ValueError: a wrong shape, an entry other than 0/1, an element no set covers, an
        unknown backend or option.
    """
    where = "set_cover"
    A = check_matrix(where, "incidence", incidence, 2, "(num_elements, num_sets) with both >= 1")
    if not np.all((A == 0) | (A == 1)):
        idx = tuple(int(i) for i in np.argwhere((A != 0) & (A != 1))[0])
        raise ValueError(f"{where} argument `incidence`: expected entries 0 or 1, got {A[idx]} at index {idx}")
    uncovered = np.flatnonzero(A.sum(axis=1) == 0)
    if uncovered.size:
        raise ValueError(
            f"{where} argument `incidence`: expected every element (row) in at least one set, "
            f"got element(s) {uncovered.tolist()[:10]} in no set"
        )
    num_elements, num_sets = A.shape
    problem = MIP(np.zeros(num_sets), A_ub=-A, b_ub=-np.ones(num_elements), lb=0.0, ub=1.0, integrality=True)
    return Oracle(problem, sense="min", backend=backend, **options)
