"""The symmetric travelling salesperson problem (PyEPO's benchmark) and its data generator.

Costs live on the undirected edges ``(i, j)``, ``i < j``, in PyEPO's order
(``itertools.combinations(range(num_nodes), 2)``, the order of ``tspABBase.edges`` and of
SciPy's condensed distance vector), so the cost vectors of ``pyepo.data.tsp.genData`` (or of
``tsp_data`` here) cost the same edges, and a solution is PyEPO's 0/1 edge vector.

A compact formulation of the TSP needs auxiliary variables (flows or node potentials) besides
the edge variables. They must not carry a cost: a perturbed or predicted cost on a flow
variable would change which tour is optimal. ``tsp`` therefore returns a ``SlicedOracle``
(an ``Oracle`` whose ``theta`` and ``x`` cover only the first ``num_costs`` variables of its
``MIP``, the edges; the auxiliaries cost zero and are hidden), except for the ``"dfj"``
formulation, which has no auxiliaries and is a plain ``Oracle``. Either way ``oracle.n`` is
the number of edges and ``oracle(theta)`` the 0/1 edge vector of an optimal tour.

References:
  Tang, B. & Khalil, E. B. (2022). PyEPO: A PyTorch-based end-to-end predict-then-optimize
  library for linear and integer programming. arXiv:2206.14234.
  Dantzig, G., Fulkerson, R. & Johnson, S. (1954). Solution of a large-scale
  traveling-salesman problem. Operations Research 2(4).
  Miller, C. E., Tucker, A. W. & Zemlin, R. A. (1960). Integer programming formulation of
  traveling salesman problems. Journal of the ACM 7(4).
  Gavish, B. & Graves, S. C. (1978). The travelling salesman problem and related problems.
  Working paper OR-078-78, MIT Operations Research Center.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tamejax.oracle import Oracle
from tamejax.problem import MIP
from tamejax.problems._common import as_array, check_generator, check_int, random_state
from tamejax.solve import Solution

__all__ = ["SlicedOracle", "tsp", "tsp_data", "tsp_edges", "tsp_tour"]

_FORMULATIONS = ("flow", "mtz", "dfj")
_DFJ_MAX_NODES = 12


@dataclasses.dataclass(frozen=True, init=False)
class SlicedOracle(Oracle):
    """An ``Oracle`` whose cost covers only the first ``num_costs`` variables of its problem.

    $$x^*(\\theta) = \\Big[\\operatorname{argmin}_{(x, z) \\in X} \\theta^\\top x + 0^\\top z
    \\Big]_x, \\qquad \\theta \\in \\mathbb{R}^{k},\\; k = \\texttt{num\\_costs},$$

    (``argmax`` for ``sense="max"``): the variables ``z`` after the first ``k`` are auxiliary
    (flows, node potentials of a compact formulation), cost zero and are dropped from the
    solution. ``n`` (the length of ``theta`` and of ``x``) is ``k``; ``problem.n`` counts the
    auxiliaries too. Everything else (pytree, batching, ``jit``/``vmap``, options) is as for
    ``Oracle``; ``Solution.x`` of ``solve`` has shape ``(..., k)``.

    Args:
      problem: the ``MIP`` whose feasible set is ``X``, its first ``num_costs`` variables
        being the costed ones.
      num_costs: ``k``, an integer in ``[1, problem.n]``.
      sense: as for ``Oracle``.
      backend: as for ``Oracle``.
      **options: as for ``Oracle``.

    Raises:
      ValueError: a bad ``num_costs``, and whatever ``Oracle`` raises.
    """

    num_costs: int

    def __init__(self, problem: MIP, num_costs: int, sense: str = "min", backend: str = "scip", **options: Any) -> None:
        super().__init__(problem, sense, backend, **options)
        valid = isinstance(num_costs, int | np.integer) and not isinstance(num_costs, bool)
        if not valid or not 1 <= num_costs <= problem.n:
            raise ValueError(
                f"SlicedOracle field `num_costs`: expected an integer in [1, {problem.n}] (problem.n = {problem.n}), "
                f"got {num_costs!r}"
            )
        object.__setattr__(self, "num_costs", int(num_costs))

    def tree_flatten(self):
        return (self.problem,), (self.sense, self.backend, self.options, self.num_costs)

    @classmethod
    def tree_unflatten(cls, aux, children):
        sense, backend, options, num_costs = aux
        obj = object.__new__(cls)
        for name, value in (
            ("problem", children[0]),
            ("sense", sense),
            ("backend", backend),
            ("options", options),
            ("num_costs", num_costs),
        ):
            object.__setattr__(obj, name, value)
        return obj

    @property
    def n(self) -> int:
        """Number of costed variables (the length of ``theta`` and of ``x``)."""
        return self.num_costs

    def replace(self, **changes: Any) -> SlicedOracle:
        """A copy with ``problem``, ``num_costs``, ``sense``, ``backend`` or solver options changed."""
        kw: dict[str, Any] = {
            "problem": self.problem,
            "num_costs": self.num_costs,
            "sense": self.sense,
            "backend": self.backend,
        }
        opts = dataclasses.asdict(self.options)
        opts.pop("duals", None)
        kw.update({k: v for k, v in opts.items() if v is not None})
        kw.update(changes)
        return SlicedOracle(**kw)

    def full(self) -> Oracle:
        """The plain ``Oracle`` over every variable (``theta`` of length ``problem.n``)."""
        return Oracle(self.problem, self.sense, self.backend, _options=self.options)

    def pad(self, theta: Any) -> jax.Array:
        """``theta`` of shape ``(..., num_costs)`` padded with zeros to ``(..., problem.n)``."""
        theta = self.check_theta(theta)
        zeros = jnp.zeros(theta.shape[:-1] + (self.problem.n - self.num_costs,), theta.dtype)
        return jnp.concatenate([theta, zeros], axis=-1)

    def solve(self, theta: Any) -> Solution:
        """Solve for the cost(s) ``theta`` (shape ``(..., num_costs)``); no gradient.

        ``Solution.x`` is the costed part ``(..., num_costs)``; ``objective`` is ``theta . x``
        in the oracle's own sense.
        """
        sol = self.full().solve(self.pad(theta))
        return dataclasses.replace(sol, x=sol.x[..., : self.num_costs])


jax.tree_util.register_pytree_node(SlicedOracle, SlicedOracle.tree_flatten, SlicedOracle.tree_unflatten)


def tsp_edges(num_nodes: int) -> list[tuple[int, int]]:
    """The undirected edges ``(i, j)``, ``i < j``, of the complete graph, in PyEPO's order.

    ``itertools.combinations(range(num_nodes), 2)``: ``(0, 1), (0, 2), ..., (0, n-1), (1, 2),
    ...``; edge ``k`` is variable ``k`` of ``tsp(num_nodes)`` and entry ``k`` of a cost vector
    of ``tsp_data``.

    Raises:
      ValueError: ``num_nodes`` not an integer ``>= 3``.
    """
    num_nodes = check_int("tsp_edges", "num_nodes", num_nodes, minimum=3)
    return list(itertools.combinations(range(num_nodes), 2))


def tsp_tour(x: Any, tol: float = 1e-6) -> list[int]:
    """The tour of a 0/1 edge vector, as the node sequence ``[0, v_1, ..., v_{n-1}]``.

    The number of nodes is read from the length ``n (n - 1) / 2`` of ``x``; the tour starts at
    node 0 and leaves it through its smaller neighbour.

    Args:
      x: edge vector, shape ``(num_edges,)`` in ``tsp_edges`` order.
      tol: how far from 0 or 1 an entry may be.

    Returns:
      The ``num_nodes`` nodes in tour order (the edge back to node 0 is implied).

    Raises:
      ValueError: ``x`` of a length that is no ``n (n - 1) / 2`` with ``n >= 3``, entries not
        0/1, a node of degree other than 2, or several subtours.
    """
    arr = as_array("tsp_tour", "x", x).astype(np.float64)
    num_edges = arr.shape[0] if arr.ndim == 1 else -1
    num_nodes = int(round((1 + math.sqrt(max(1 + 8 * num_edges, 0))) / 2)) if num_edges > 0 else 0
    if arr.ndim != 1 or num_nodes < 3 or num_nodes * (num_nodes - 1) // 2 != num_edges:
        raise ValueError(
            f"tsp_tour argument `x`: expected shape (n (n - 1) / 2,) for some n >= 3 (3, 6, 10, ...), got {arr.shape}"
        )
    on = np.abs(arr - 1) <= tol
    if not np.all(on | (np.abs(arr) <= tol)):
        k = int(np.flatnonzero(~on & (np.abs(arr) > tol))[0])
        raise ValueError(f"tsp_tour argument `x`: expected 0/1 entries, got {arr[k]} at index {k}")
    neighbours: list[list[int]] = [[] for _ in range(num_nodes)]
    for k, (i, j) in enumerate(itertools.combinations(range(num_nodes), 2)):
        if on[k]:
            neighbours[i].append(j)
            neighbours[j].append(i)
    bad = [v for v in range(num_nodes) if len(neighbours[v]) != 2]
    if bad:
        raise ValueError(
            f"tsp_tour argument `x`: expected every node of degree 2, got degree {len(neighbours[bad[0]])} "
            f"at node {bad[0]}"
        )
    tour, prev, cur = [0], 0, min(neighbours[0])
    while cur != 0:
        tour.append(cur)
        a, b = neighbours[cur]
        prev, cur = cur, (b if a == prev else a)
    if len(tour) != num_nodes:
        raise ValueError(
            f"tsp_tour argument `x`: expected a single tour through all {num_nodes} nodes, got a subtour {tour}"
        )
    return tour


def _flow(num_nodes: int, aux_integer: bool) -> tuple[MIP, int]:
    """Single-commodity flow (Gavish–Graves) formulation over the undirected edges."""
    n = num_nodes
    edges = list(itertools.combinations(range(n), 2))
    arcs = [(i, j) for i in range(n) for j in range(1, n) if i != j]  # no arc into the depot 0
    ne, na = len(edges), len(arcs)
    arc_index = {a: ne + k for k, a in enumerate(arcs)}
    nv = ne + na
    # degree 2 at every node; one unit of flow absorbed at every node but 0
    A_eq = np.zeros((n + n - 1, nv))
    for k, (i, j) in enumerate(edges):
        A_eq[i, k] = A_eq[j, k] = 1.0
    for (i, j), col in arc_index.items():
        A_eq[n + j - 1, col] += 1.0
        if i != 0:
            A_eq[n + i - 1, col] -= 1.0
    b_eq = np.concatenate([np.full(n, 2.0), np.ones(n - 1)])
    # flow only on chosen edges: f_0j <= (n-1) x_0j; f_ij + f_ji <= (n-2) x_ij for i, j != 0
    A_ub = np.zeros((ne, nv))
    for k, (i, j) in enumerate(edges):
        if i == 0:
            A_ub[k, arc_index[(0, j)]] = 1.0
            A_ub[k, k] = -(n - 1.0)
        else:
            A_ub[k, arc_index[(i, j)]] = A_ub[k, arc_index[(j, i)]] = 1.0
            A_ub[k, k] = -(n - 2.0)
    ub = np.concatenate([np.ones(ne), np.full(na, n - 1.0)])
    integrality = [True] * ne + [aux_integer] * na
    return MIP(
        np.zeros(nv), A_ub=A_ub, b_ub=np.zeros(ne), A_eq=A_eq, b_eq=b_eq, lb=0.0, ub=ub, integrality=integrality
    ), ne


def _mtz(num_nodes: int, aux_integer: bool) -> tuple[MIP, int]:
    """Miller–Tucker–Zemlin formulation: directed arcs and node potentials behind the edges."""
    n = num_nodes
    edges = list(itertools.combinations(range(n), 2))
    arcs = [(i, j) for i in range(n) for j in range(n) if i != j]
    ne, na = len(edges), len(arcs)
    arc_index = {a: ne + k for k, a in enumerate(arcs)}
    u0 = ne + na  # u_v at column u0 + v - 1, v = 1..n-1
    nv = u0 + n - 1
    A_eq = np.zeros((ne + 2 * n, nv))
    for k, (i, j) in enumerate(edges):  # x_ij = y_ij + y_ji
        A_eq[k, k] = 1.0
        A_eq[k, arc_index[(i, j)]] = A_eq[k, arc_index[(j, i)]] = -1.0
    for (i, j), col in arc_index.items():  # out-degree 1 (rows ne + i), in-degree 1 (rows ne + n + j)
        A_eq[ne + i, col] = 1.0
        A_eq[ne + n + j, col] = 1.0
    b_eq = np.concatenate([np.zeros(ne), np.ones(2 * n)])
    # u_i - u_j + (n - 1) y_ij <= n - 2 for i, j != 0: y_ij = 1 forces u_j >= u_i + 1
    inner = [(i, j) for (i, j) in arcs if i != 0 and j != 0]
    A_ub = np.zeros((len(inner), nv))
    for r, (i, j) in enumerate(inner):
        A_ub[r, u0 + i - 1] += 1.0
        A_ub[r, u0 + j - 1] -= 1.0
        A_ub[r, arc_index[(i, j)]] = n - 1.0
    b_ub = np.full(len(inner), n - 2.0)
    lb = np.concatenate([np.zeros(ne + na), np.ones(n - 1)])
    ub = np.concatenate([np.ones(ne + na), np.full(n - 1, n - 1.0)])
    integrality = [True] * (ne + na) + [aux_integer] * (n - 1)
    return MIP(np.zeros(nv), A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, lb=lb, ub=ub, integrality=integrality), ne


def _dfj(num_nodes: int) -> MIP:
    """Dantzig–Fulkerson–Johnson formulation with every subtour elimination row written out."""
    n = num_nodes
    edges = list(itertools.combinations(range(n), 2))
    ne = len(edges)
    A_eq = np.zeros((n, ne))
    for k, (i, j) in enumerate(edges):
        A_eq[i, k] = A_eq[j, k] = 1.0
    index = {e: k for k, e in enumerate(edges)}
    rows, rhs = [], []
    # With degree 2 everywhere, a subtour leaves a cycle on at most n/2 nodes; |S| = 2 is x <= 1,
    # and for |S| = n/2 the sets S and V \ S give the same row (keep the one holding node 0).
    for size in range(3, n // 2 + 1):
        for S in itertools.combinations(range(n), size):
            if 2 * size == n and S[0] != 0:
                continue
            row = np.zeros(ne)
            row[[index[e] for e in itertools.combinations(S, 2)]] = 1.0
            rows.append(row)
            rhs.append(size - 1.0)
    A_ub = np.array(rows) if rows else None
    b_ub = np.array(rhs) if rows else None
    return MIP(np.zeros(ne), A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=np.full(n, 2.0), lb=0.0, ub=1.0, integrality=True)


def tsp(num_nodes: int, formulation: str = "flow", *, backend: str = "scip", **options: Any) -> Oracle:
    """The oracle of the symmetric TSP on the complete graph, costs on the undirected edges.

    $$\\min_{x \\in \\{0,1\\}^{E}} \\theta^\\top x \\quad\\text{s.t.}\\quad \\{e : x_e = 1\\}
    \\text{ is a Hamiltonian cycle}, \\qquad E = \\{(i, j) : 0 \\le i < j < n\\}$$

    in PyEPO's edge order (``tsp_edges``). Every formulation has the degree rows
    $\\sum_{e \\ni v} x_e = 2$ (directly or through directed arcs) and differs in how it
    forbids subtours:

    * ``"flow"`` (default): single-commodity flow (Gavish & Graves, 1978). Node 0 sends one
      unit of flow to every other node along directed arcs ``f_ij >= 0`` that may only use
      chosen edges: $f_{0j} \\le (n-1) x_{0j}$, $f_{ij} + f_{ji} \\le (n-2) x_{ij}$
      ($i, j \\ne 0$), $\\sum_i f_{iv} - \\sum_j f_{vj} = 1$ ($v \\ne 0$). A connected
      2-regular graph is a Hamiltonian cycle. ``n (n-1)/2 + (n-1)^2`` variables; SCIP proves
      random 20-node Euclidean instances optimal in well under a second (``"mtz"``: a few).
    * ``"mtz"``: directed arcs ``y_ij`` with in- and out-degree 1, $x_{ij} = y_{ij} + y_{ji}$,
      and Miller–Tucker–Zemlin potentials $1 \\le u_v \\le n-1$,
      $u_i - u_j + (n-1) y_{ij} \\le n - 2$ ($i, j \\ne 0$).
    * ``"dfj"``: the edge variables only, with every subtour elimination row
      $\\sum_{e \\subseteq S} x_e \\le |S| - 1$, $3 \\le |S| \\le n/2$ (Dantzig, Fulkerson &
      Johnson, 1954), written out: the tightest LP relaxation of the three, but the number of
      rows grows as $2^{n-1}$, so ``num_nodes <= 12``.

    ``"flow"`` and ``"mtz"`` need auxiliary variables; they come after the edges in the
    ``MIP`` and the returned ``SlicedOracle`` hides them (``theta`` and ``x`` cover the edges
    only; auxiliaries cost zero, so a perturbed ``theta`` never reaches them). ``"dfj"``
    returns a plain ``Oracle``. In both cases ``oracle.n == num_nodes * (num_nodes - 1) // 2``
    and ``oracle(theta)`` is the 0/1 edge vector of an optimal tour (``tsp_tour`` lists it).

    Auxiliary variables are continuous, except with ``backend="cpsat"`` (integer variables
    only), where they are declared integer (flows and potentials of a tour are integral).

    Args:
      num_nodes: number of nodes ``n >= 3``.
      formulation: ``"flow"`` (default), ``"mtz"`` or ``"dfj"``.
      backend: a MIP solver; default ``"scip"``.
      **options: solver options of ``Oracle`` (``time_limit``, ``rel_gap``, ``threads``, ``seed``).

    Returns:
      An ``Oracle`` (``"dfj"``) or ``SlicedOracle`` (``"flow"``, ``"mtz"``) with ``sense="min"``
      and ``n = num_nodes * (num_nodes - 1) // 2``.

    Raises:
      ValueError: ``num_nodes`` not an integer ``>= 3``, an unknown formulation, ``"dfj"``
        with more than 12 nodes, an unknown backend or option.
    """
    num_nodes = check_int("tsp", "num_nodes", num_nodes, minimum=3)
    if formulation not in _FORMULATIONS:
        raise ValueError(f"tsp argument `formulation`: expected one of {_FORMULATIONS}, got {formulation!r}")
    if formulation == "dfj":
        if num_nodes > _DFJ_MAX_NODES:
            raise ValueError(
                f"tsp argument `num_nodes`: expected <= {_DFJ_MAX_NODES} with formulation 'dfj' (its subtour rows "
                f"grow as 2^(n-1)), got {num_nodes}; use formulation 'flow' or 'mtz'"
            )
        return Oracle(_dfj(num_nodes), sense="min", backend=backend, **options)
    build = _flow if formulation == "flow" else _mtz
    problem, num_edges = build(num_nodes, aux_integer=backend == "cpsat")
    return SlicedOracle(problem, num_edges, sense="min", backend=backend, **options)


def tsp_data(
    num_data: int,
    num_features: int,
    num_nodes: int,
    deg: int = 1,
    noise_width: float = 0.0,
    seed: Any = 135,
) -> tuple[np.ndarray, np.ndarray]:
    """Features and edge costs of PyEPO's TSP benchmark, bit for bit.

    With ``m = num_nodes``, ``p = num_features``, ``E = m (m - 1) / 2`` edges and
    ``w = noise_width``: node coordinates $z_v \\sim \\mathcal{U}[-2, 2]^2$ for the first
    $\\lfloor m/2 \\rfloor$ nodes and $z_v \\sim \\mathcal{N}(0, I_2)$ for the others, a fixed
    matrix $B = \\Xi \\odot U$ ($E \\times p$, $\\Xi_{ek} \\sim \\mathrm{Bernoulli}(0.5)$,
    $U_{ek} \\sim \\mathcal{U}[-2, 2]$), features $x_i \\sim \\mathcal{N}(0, I_p)$ and costs

    $$c_{ie} = \\mathrm{round}_4\\!\\left(\\lVert z_a - z_b \\rVert_2 +
    \\frac{\\left(\\tfrac{1}{\\sqrt{p}} (B x_i)_e + 3\\right)^{\\deg}}{3^{\\deg - 1}} \\cdot
    \\varepsilon_{ie}\\right), \\qquad e = (a, b),\\; \\varepsilon_{ie} \\sim
    \\mathcal{U}[1 - w, 1 + w],$$

    a Euclidean part shared by all instances plus a polynomial of degree ``deg`` in the
    features with multiplicative noise of half-width ``w``, rounded to 4 decimals. The draws
    are made in PyEPO's order (coordinates, ``B``, features, noise) from
    ``numpy.random.RandomState(seed)``, and the distances by ``scipy.spatial.distance.pdist``,
    so the result equals ``pyepo.data.tsp.genData`` with the same arguments bit for bit.

    Args:
      num_data: number of instances ``>= 1``.
      num_features: feature dimension ``p >= 1``.
      num_nodes: number of nodes ``m >= 3``; costs follow ``tsp_edges(num_nodes)``.
      deg: polynomial degree, an integer ``>= 1``.
      noise_width: half-width ``w >= 0`` of the multiplicative noise.
      seed: seed of ``numpy.random.RandomState`` (default 135, as PyEPO).

    Returns:
      ``(features, costs)``: ``float64`` array ``(num_data, num_features)`` and ``float32``
      array ``(num_data, E)`` (PyEPO's dtypes).

    Raises:
      ValueError: a non-positive count, ``num_nodes < 3``, ``deg`` not an integer ``>= 1``, a
        negative or non-finite ``noise_width``, a malformed ``seed``.
    """
    from scipy.spatial import distance  # a dependency of jax

    where = "tsp_data"
    check_generator(where, num_data, num_features, deg, noise_width)
    check_int(where, "num_nodes", num_nodes, minimum=3)
    rnd = random_state(where, seed)
    n, p, m = num_data, num_features, num_nodes
    # PyEPO's statements, in PyEPO's order (bit-for-bit reproduction).
    coords = np.concatenate((rnd.uniform(-2, 2, (m // 2, 2)), rnd.normal(0, 1, (m - m // 2, 2))))
    dist_upper = distance.pdist(coords, "euclidean")
    B = rnd.binomial(1, 0.5, (m * (m - 1) // 2, p)) * rnd.uniform(-2, 2, (m * (m - 1) // 2, p))
    x = rnd.normal(0, 1, (n, p))
    feature_cost = ((x @ B.T / np.sqrt(p) + 3) ** deg) / 3 ** (deg - 1)
    noise = rnd.uniform(1 - noise_width, 1 + noise_width, (n, m * (m - 1) // 2))
    c = dist_upper + feature_cost * noise
    c = np.around(c, decimals=4).astype(np.float32)
    return x, c
