"""Subadditive duality for integer programs: certificates of optimal values as differentiable functions.

For ``z(d) = min { c x : A x = d, x >= 0, x_I integer }`` a *dual function* ``F`` satisfies
``F(d) <= z(d)`` for every right-hand side ``d``; the subadditive dual (Wolsey 1981) asks for
``F`` subadditive, ``F(0) = 0`` and ``F(a_j) <= c_j`` (plus a recession condition for the
continuous columns), and strong duality gives one with ``F(b) = z(b)``. For pure integer
programs with rational data, ``F`` can be a Chvátal function (Blair & Jeroslow 1982), built
here by Gomory's cutting planes; for mixed-integer programs, the branch-and-bound dual
function of Guzelsoy & Ralphs (2007) is built from the LP duals at the leaves of a tree.

Public API:

* ``certify(problem, method=...) -> Certificate``: compute a dual function (host side).
* ``verify(problem, certificate) -> VerificationReport``: check it independently.
* ``ChvatalFunction``, ``BranchAndBoundFunction``: the dual functions, JAX pytrees evaluated
  under ``jit``/``vmap``/``grad``.
* ``gomory``, ``branch_and_bound``: the algorithms on host data.

See ``docs/duality.md`` and the "Subadditive duality" section of ``docs/theory.md``.
"""

from tamejax.duality.branch_and_bound import BnBLeaf, BnBResult, branch_and_bound
from tamejax.duality.certificate import Certificate, certify
from tamejax.duality.chvatal import BranchAndBoundFunction, ChvatalFunction
from tamejax.duality.gomory import GomoryResult, gomory
from tamejax.duality.verify import VerificationReport, verify

__all__ = [
    "BnBLeaf",
    "BnBResult",
    "BranchAndBoundFunction",
    "Certificate",
    "ChvatalFunction",
    "GomoryResult",
    "VerificationReport",
    "branch_and_bound",
    "certify",
    "gomory",
    "verify",
]
