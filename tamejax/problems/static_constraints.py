"""CombOptNet's "static constraints" data: random hidden constraints of a 0-1 program.

Protocol of Paulus, Rolinek, Musil, Amos & Martius (2021), "CombOptNet: Fit the right
NP-hard problem by learning integer programming constraints" (ICML), Sec. 5.1 and their
``binary_random`` data set. An instance family is

$$x^*(c) = \\arg\\min \\{ c^\\top x : A x \\le b,\\ x \\in \\{0, 1\\}^n \\}$$

with ``n = 16`` binary variables and ``m in {1, 2, 4, 8}`` hidden constraints ``(A, b)``
fixed per data set; the inputs are cost vectors ``c`` and the labels the exact solutions.
Learning methods see only ``(c, x*(c))`` pairs (``tamejax.inverse``).

Construction (what this module does, following the paper's description and its public
data-generation code; the random draws are ours, from ``numpy.random.default_rng(seed)``):

1. Directions: ``a_i ~ U[-0.5, 0.5]^n``, normalized to unit Euclidean norm.
2. Offsets: each constraint has its own origin ``o_i ~ U[0.25, 0.75]^n`` (the unit cube's
   central half, CombOptNet's ``random_unif`` offset with ``scale_sample_range = 0.5``);
   in that origin the constraint reads ``a_i (x - o_i) + 0.2 <= 0``, i.e.
   ``a_i x <= b_i`` with ``b_i = a_i o_i - 0.2`` (a half-space at distance 0.2 from
   ``o_i``, not containing it).
3. A random corner ``v in {0, 1}^n`` is drawn once; every constraint that ``v`` violates is
   flipped in its own origin (``(a_i, 0.2) -> (-a_i, -0.2)``, i.e. ``-a_i x <= -a_i o_i +
   0.2``: the flipped half-space contains its origin with slack 0.2), so ``v`` satisfies all
   constraints and the program is feasible for every ``c``. This flip rule is our reading of
   the protocol; it has not been checked line by line against CombOptNet's code.
4. Costs: ``c ~ U[-1, 1]^n`` i.i.d. (CombOptNet's ``positive_costs: false``).
5. Labels: ``x*(c)`` solved exactly by complete enumeration of ``{0, 1}^16``
   (``tamejax.backends.enumeration``; ties, of probability zero for continuous costs, go
   to the lexicographically first point).
6. Split: the first ``num_test`` draws are the test set, the next ``num_train`` the
   training set (1000 and 1600 in the protocol), as in CombOptNet.

Everything is a deterministic function of ``seed``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tamejax.backends.enumeration import grid_points
from tamejax.problems._common import check_int

__all__ = ["StaticConstraintsData", "static_constraints_data", "solve_binary_enumeration"]


@dataclasses.dataclass(frozen=True)
class StaticConstraintsData:
    """One data set of the static-constraints protocol.

    Attributes:
      A: hidden constraint matrix, shape ``(m, n)``, unit-norm rows (``A x <= b``).
      b: hidden right-hand side, shape ``(m,)``.
      corner: the corner of ``{0, 1}^n`` kept feasible, shape ``(n,)``.
      c_train: training costs, shape ``(num_train, n)``.
      x_train: training labels (exact solutions), shape ``(num_train, n)``, entries 0/1.
      c_test: test costs, shape ``(num_test, n)``.
      x_test: test labels, shape ``(num_test, n)``.
      seed: the seed the data were drawn from.
    """

    A: np.ndarray
    b: np.ndarray
    corner: np.ndarray
    c_train: np.ndarray
    x_train: np.ndarray
    c_test: np.ndarray
    x_test: np.ndarray
    seed: int

    @property
    def num_variables(self) -> int:
        """``n``."""
        return int(self.A.shape[1])

    @property
    def num_constraints(self) -> int:
        """``m``."""
        return int(self.A.shape[0])


def solve_binary_enumeration(costs: np.ndarray, A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``argmin { c x : A x <= b, x in {0,1}^n }`` for many costs at once, by enumeration.

    The same method and tolerance as the ``"enumeration"`` backend (the feasible points of
    ``{0,1}^n`` are listed once, then every cost takes its first minimum), vectorised over
    the costs. Use it for data generation and evaluation; inside JAX use ``tamejax.solve``
    with ``backend="enumeration"``.

    Args:
      costs: cost vectors, shape ``(N, n)``.
      A: constraint matrix, shape ``(m, n)``.
      b: right-hand side, shape ``(m,)``.

    Returns:
      ``(x, feasible)``: solutions of shape ``(N, n)`` (NaN rows where the program is
      infeasible) and a boolean flag (the same for all costs: whether any point is feasible).

    Raises:
      ValueError: if the shapes disagree or ``n > 20``.
    """
    from tamejax.backends.enumeration import FEAS_TOL

    costs = np.atleast_2d(np.asarray(costs, dtype=np.float64))
    A = np.atleast_2d(np.asarray(A, dtype=np.float64))
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    n = costs.shape[1]
    if A.shape != (b.shape[0], n):
        raise ValueError(f"solve_binary_enumeration: expected A of shape ({b.shape[0]}, {n}), got {A.shape}")
    if n > 20:
        raise ValueError(f"solve_binary_enumeration: expected at most 20 variables, got {n}")
    X = grid_points(np.zeros(n), np.ones(n))
    ok = np.all(X @ A.T <= b + FEAS_TOL * np.maximum(1.0, np.abs(b)), axis=1)
    Xf = X[ok]
    if Xf.shape[0] == 0:
        return np.full(costs.shape, np.nan), np.zeros(costs.shape[0], dtype=bool)
    out = np.empty_like(costs)
    for s in range(0, costs.shape[0], 512):
        out[s : s + 512] = Xf[np.argmin(costs[s : s + 512] @ Xf.T, axis=1)]
    return out, np.ones(costs.shape[0], dtype=bool)


def static_constraints_data(
    num_constraints: int,
    seed: int = 0,
    *,
    num_variables: int = 16,
    num_train: int = 1600,
    num_test: int = 1000,
) -> StaticConstraintsData:
    """Draw one data set of CombOptNet's static-constraints benchmark (see the module docstring).

    Args:
      num_constraints: ``m``, the number of hidden constraints (the protocol uses 1, 2, 4, 8).
      seed: the data set seed (everything is a deterministic function of it).
      num_variables: ``n`` (16 in the protocol; at most 20 for the enumeration).
      num_train: training set size (1600).
      num_test: test set size (1000).

    Returns:
      A ``StaticConstraintsData``.

    Raises:
      ValueError: for a non-integer or out-of-range size or seed.
    """
    where = "static_constraints_data"
    m = check_int(where, "num_constraints", num_constraints)
    n = check_int(where, "num_variables", num_variables)
    seed = check_int(where, "seed", seed, minimum=0)
    num_train = check_int(where, "num_train", num_train, minimum=0)
    num_test = check_int(where, "num_test", num_test, minimum=0)
    if n > 20:
        raise ValueError(f"{where} argument `num_variables`: expected an integer <= 20 (enumeration), got {n}")
    rng = np.random.default_rng(seed)
    A = rng.uniform(-0.5, 0.5, size=(m, n))
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    offsets = rng.uniform(0.25, 0.75, size=(m, n))
    corner = rng.integers(0, 2, size=n).astype(np.float64)
    shift = 0.2
    b = np.sum(A * offsets, axis=1) - shift  # a_i (x - o_i) + 0.2 <= 0
    violated = A @ corner > b
    A[violated] *= -1.0  # (a, 0.2) -> (-a, -0.2) in the constraint's own origin
    b = np.sum(A * offsets, axis=1) - np.where(violated, -shift, shift)
    costs = rng.uniform(-1.0, 1.0, size=(num_test + num_train, n))
    x, _ = solve_binary_enumeration(costs, A, b)
    return StaticConstraintsData(
        A=A,
        b=b,
        corner=corner,
        c_train=costs[num_test:],
        x_train=x[num_test:],
        c_test=costs[:num_test],
        x_test=x[:num_test],
        seed=seed,
    )
