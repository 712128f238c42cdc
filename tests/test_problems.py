"""Tests of ``tamejax.problems``: builders against brute force, data generators against PyEPO.

* Every builder's optimum equals the brute-force optimum (enumerated paths, 0/1 vectors,
  permutations, tours) on tiny instances, for a whole batch of costs solved in one call, and
  its solutions are feasible (a path, a tour, a permutation matrix, a cover).
* The data generators reproduce PyEPO bit for bit (when ``pyepo`` is importable), and pinned
  values guard against regressions where it is not.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tamejax import Status
from tamejax.oracle import Oracle
from tamejax.problems import (
    SlicedOracle,
    assignment,
    knapsack,
    knapsack_data,
    set_cover,
    shortest_path,
    shortest_path_arcs,
    shortest_path_data,
    tsp,
    tsp_data,
    tsp_edges,
    tsp_tour,
)

TOL = 1e-6


def _check_batch(oracle, theta, candidates, sense="min"):
    """Solve ``theta`` (B, n) in one call; each row's optimum must be the best candidate's value
    and its solution one of the candidates (0/1 rows) attaining it."""
    sol = oracle.solve(theta)
    assert sol.x.shape == theta.shape
    assert np.all(np.asarray(sol.status) == Status.OPTIMAL)
    x = np.asarray(sol.x)
    values = theta @ candidates.T  # (B, K)
    best = values.min(axis=1) if sense == "min" else values.max(axis=1)
    np.testing.assert_allclose(np.asarray(sol.objective), best, atol=1e-6)
    for b in range(theta.shape[0]):
        match = np.all(np.abs(candidates - x[b]) <= TOL, axis=1)
        assert match.any(), f"row {b}: solution {x[b]} is not a feasible candidate"
        assert abs(values[b, match.argmax()] - best[b]) <= 1e-6
    return x


# ---------------------------------------------------------------------------- shortest path
def _grid_paths(rows, cols):
    """Every monotone (right/down) path from node 0 to the last node, as 0/1 arc vectors."""
    arcs = {a: k for k, a in enumerate(shortest_path_arcs((rows, cols)))}
    paths = []
    for downs in itertools.combinations(range(rows + cols - 2), rows - 1):
        v, x = 0, np.zeros(len(arcs))
        for step in range(rows + cols - 2):
            w = v + cols if step in downs else v + 1
            x[arcs[(v, w)]] = 1.0
            v = w
        paths.append(x)
    return np.array(paths)


def test_shortest_path_arcs_are_pyepos_order():
    assert shortest_path_arcs((3, 3)) == [
        (0, 1), (1, 2), (0, 3), (1, 4), (2, 5), (3, 4), (4, 5), (3, 6), (4, 7), (5, 8), (6, 7), (7, 8),
    ]  # fmt: skip
    for grid in [(5, 5), (2, 7), (6, 1)]:
        assert len(shortest_path_arcs(grid)) == (grid[0] - 1) * grid[1] + (grid[1] - 1) * grid[0]
    assert shortest_path((5, 5)).n == 40


@pytest.mark.parametrize("grid", [(2, 2), (3, 3), (2, 4), (1, 3), (4, 1)])
def test_shortest_path_matches_enumeration(grid):
    oracle = shortest_path(grid)
    assert oracle.sense == "min" and oracle.backend == "glop"
    theta = np.random.default_rng(sum(grid)).uniform(-1.0, 2.0, (6, oracle.n))
    _check_batch(oracle, theta, _grid_paths(*grid))


def test_shortest_path_integer_variant_and_pyepo_costs():
    oracle = shortest_path((3, 3), integer=True)
    assert oracle.backend == "scip" and all(oracle.problem.integrality)
    _, costs = shortest_path_data(5, 3, (3, 3), deg=2, noise_width=0.5, seed=3)
    _check_batch(oracle, costs.astype(np.float64), _grid_paths(3, 3))
    assert shortest_path((3, 3), backend="highs", time_limit=5.0).backend == "highs"


# ---------------------------------------------------------------------------- knapsack
def _binary_vectors(n):
    return np.array(list(itertools.product((0.0, 1.0), repeat=n)))


@pytest.mark.parametrize("m", [1, 2])
def test_knapsack_matches_enumeration(m):
    weights, _, values = knapsack_data(6, 3, 8, dim=m, deg=2, noise_width=0.5, seed=m)
    caps = 0.5 * weights.sum(axis=1)
    oracle = knapsack(weights, caps)
    assert oracle.sense == "max" and oracle.sign == -1.0 and oracle.n == 8
    cand = _binary_vectors(8)
    cand = cand[np.all(cand @ weights.T <= caps + 1e-9, axis=1)]
    x = _check_batch(oracle, values.astype(np.float64), cand, sense="max")
    assert np.all(x @ weights.T <= caps + 1e-6)


def test_knapsack_one_dimension_vector_weights():
    oracle = knapsack([3.0, 4.0, 5.0, 6.0], 10.0)
    sol = oracle.solve(np.array([4.0, 5.0, 6.0, 7.0]))
    assert float(sol.objective) == pytest.approx(12.0)  # items 1 and 3: weight 10, value 12
    np.testing.assert_allclose(np.asarray(sol.x), [0.0, 1.0, 0.0, 1.0], atol=TOL)


# ---------------------------------------------------------------------------- assignment
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_assignment_matches_permutations(n):
    oracle = assignment(n)
    assert oracle.n == n * n and oracle.backend == "glop"
    perms = np.array([np.eye(n)[list(p)].reshape(-1) for p in itertools.permutations(range(n))])
    theta = np.random.default_rng(n).normal(size=(5, n * n))
    x = _check_batch(oracle, theta, perms).reshape(5, n, n)
    np.testing.assert_allclose(x.sum(axis=1), 1.0, atol=TOL)
    np.testing.assert_allclose(x.sum(axis=2), 1.0, atol=TOL)


def test_assignment_row_major_and_integer():
    theta = np.full((3, 3), 10.0)
    theta[0, 2] = theta[1, 0] = theta[2, 1] = 0.0
    x = np.asarray(assignment(3, integer=True)(theta.reshape(-1))).reshape(3, 3)
    np.testing.assert_allclose(x, [[0, 0, 1], [1, 0, 0], [0, 1, 0]], atol=TOL)


# ---------------------------------------------------------------------------- set cover
def test_set_cover_matches_enumeration():
    rng = np.random.default_rng(7)
    incidence = (rng.random((8, 7)) < 0.35).astype(float)
    incidence[np.arange(8), rng.integers(0, 7, 8)] = 1.0  # every element in some set
    oracle = set_cover(incidence)
    cand = _binary_vectors(7)
    cand = cand[np.all(cand @ incidence.T >= 1, axis=1)]
    x = _check_batch(oracle, rng.uniform(0.5, 3.0, (6, 7)), cand)
    assert np.all(x @ incidence.T >= 1 - TOL)
    assert set_cover(incidence.astype(bool)).n == 7


# ---------------------------------------------------------------------------- TSP
def _tours(n):
    """Every Hamiltonian cycle of K_n (node 0 first, each direction once), as edge vectors."""
    index = {e: k for k, e in enumerate(tsp_edges(n))}
    out = []
    for perm in itertools.permutations(range(1, n)):
        if perm[0] > perm[-1]:
            continue
        cycle = (0,) + perm
        x = np.zeros(len(index))
        for a, b in zip(cycle, cycle[1:] + (0,), strict=True):
            x[index[(min(a, b), max(a, b))]] = 1.0
        out.append(x)
    return np.array(out)


def test_tsp_edges_are_pyepos_order():
    assert tsp_edges(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert tsp_edges(20) == list(itertools.combinations(range(20), 2))


@pytest.mark.parametrize("formulation", ["flow", "mtz", "dfj"])
@pytest.mark.parametrize("n", [3, 5, 7])
def test_tsp_matches_enumeration(formulation, n):
    oracle = tsp(n, formulation)
    assert oracle.n == n * (n - 1) // 2 and oracle.sense == "min"
    assert isinstance(oracle, SlicedOracle) == (formulation != "dfj")
    theta = np.random.default_rng(n).uniform(0.0, 5.0, (4, oracle.n))
    x = _check_batch(oracle, theta, _tours(n))
    for row in x:
        assert sorted(tsp_tour(row)) == list(range(n))


def test_tsp_pyepo_costs_all_formulations_agree():
    _, costs = tsp_data(3, 4, 8, deg=2, noise_width=0.5, seed=1)
    costs = costs.astype(np.float64)
    objs = [np.asarray(tsp(8, f).solve(costs).objective) for f in ("flow", "mtz", "dfj")]
    best = (costs @ _tours(8).T).min(axis=1)
    for obj in objs:
        np.testing.assert_allclose(obj, best, atol=1e-6)


def test_tsp_20_nodes_euclidean():
    from scipy.spatial import distance

    oracle = tsp(20)
    theta = np.stack([distance.pdist(np.random.default_rng(s).uniform(0, 1, (20, 2))) for s in range(2)])
    sol = oracle.solve(theta)
    assert np.all(np.asarray(sol.status) == Status.OPTIMAL)
    for b in range(2):
        tour = tsp_tour(np.asarray(sol.x[b]))
        assert sorted(tour) == list(range(20))
        np.testing.assert_allclose(float(sol.objective[b]), theta[b] @ np.asarray(sol.x[b]), atol=1e-9)
    # an independent formulation proves the same optimum
    np.testing.assert_allclose(np.asarray(tsp(20, "mtz").solve(theta).objective), np.asarray(sol.objective), atol=1e-6)


def test_tsp_cpsat_integer_auxiliaries():
    oracle = tsp(6, "flow", backend="cpsat")
    assert all(oracle.problem.integrality)
    theta = np.random.default_rng(0).integers(1, 20, (2, oracle.n)).astype(float)
    _check_batch(oracle, theta, _tours(6))


def test_sliced_oracle_pytree_jit_vmap_and_replace():
    oracle = tsp(5)
    theta = jnp.asarray(np.random.default_rng(1).uniform(0, 1, (3, oracle.n)))
    eager = np.asarray(oracle(theta))
    leaves, treedef = jax.tree_util.tree_flatten(oracle)
    again = jax.tree_util.tree_unflatten(treedef, leaves)
    assert isinstance(again, SlicedOracle) and again.num_costs == oracle.num_costs
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda o, t: o(t))(oracle, theta)), eager)
    np.testing.assert_array_equal(np.asarray(jax.vmap(oracle)(theta)), eager)
    other = oracle.replace(time_limit=10.0)
    assert isinstance(other, SlicedOracle) and other.n == oracle.n and other.options.time_limit == 10.0
    full = oracle.full()
    assert type(full) is Oracle and full.n == oracle.problem.n > oracle.n
    padded = oracle.pad(theta)
    assert padded.shape == (3, oracle.problem.n) and not np.any(np.asarray(padded[:, oracle.n :]))
    with pytest.raises(ValueError, match="theta"):
        oracle(np.zeros(oracle.problem.n))
    with pytest.raises(ValueError, match="num_costs"):
        SlicedOracle(oracle.problem, oracle.problem.n + 1)


def test_tsp_tour_rejects_non_tours():
    index = {e: k for k, e in enumerate(tsp_edges(6))}
    two_triangles = np.zeros(15)
    for e in [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5)]:
        two_triangles[index[e]] = 1.0
    with pytest.raises(ValueError, match="single tour"):
        tsp_tour(two_triangles)
    with pytest.raises(ValueError, match="degree 2"):
        tsp_tour(np.zeros(15))
    with pytest.raises(ValueError, match="0/1"):
        tsp_tour(np.full(15, 0.5))
    with pytest.raises(ValueError, match="shape"):
        tsp_tour(np.zeros(7))
    assert tsp_tour(_tours(5)[0]) == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: shortest_path((0, 3)), "grid"),
        (lambda: shortest_path((1, 1)), "grid"),
        (lambda: shortest_path(5), "grid"),
        (lambda: shortest_path((2.5, 3)), "grid"),
        (lambda: shortest_path((3, 3), backend="nope"), "backend"),
        (lambda: shortest_path((3, 3), integer=True, backend="glop"), "glop|integer|LP"),
        (lambda: shortest_path((3, 3), bogus=1), "bogus"),
        (lambda: knapsack([[1.0, 2.0]], [0.0]), "capacities"),
        (lambda: knapsack([[1.0, 2.0]], [-1.0]), "capacities"),
        (lambda: knapsack([[1.0, 2.0]], [1.0, 2.0]), "capacities"),
        (lambda: knapsack([[1.0, -2.0]], [3.0]), "weights"),
        (lambda: knapsack([[1.0, np.nan]], [3.0]), "weights"),
        (lambda: knapsack(np.ones((2, 2, 2)), [3.0, 3.0]), "weights"),
        (lambda: knapsack([[1.0, 2.0], [1.0]], [3.0, 3.0]), "weights"),
        (lambda: assignment(0), "`n`"),
        (lambda: assignment(2.0), "`n`"),
        (lambda: set_cover([[1, 0], [0, 0]]), "element"),
        (lambda: set_cover([[1, 2], [0, 1]]), "0 or 1"),
        (lambda: set_cover([1, 0, 1]), "incidence"),
        (lambda: tsp(2), "num_nodes"),
        (lambda: tsp(True), "num_nodes"),
        (lambda: tsp(5, "gg"), "formulation"),
        (lambda: tsp(13, "dfj"), "num_nodes"),
        (lambda: tsp_edges(2), "num_nodes"),
    ],
)
def test_builders_reject_bad_input(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ---------------------------------------------------------------------------- data generators
def test_generator_shapes_and_dtypes():
    x, c = shortest_path_data(4, 3, (5, 5))
    assert (x.shape, x.dtype, c.shape, c.dtype) == ((4, 3), np.float64, (4, 40), np.float32)
    w, x, c = knapsack_data(4, 3, 10, dim=2)
    assert (w.shape, w.dtype, x.shape, c.shape, c.dtype) == ((2, 10), np.float64, (4, 3), (4, 10), np.float32)
    assert np.all((w >= 3.0) & (w < 8.0)) and np.all(c == np.ceil(c)) and np.all(c >= 1)
    x, c = tsp_data(4, 3, 6)
    assert (x.shape, x.dtype, c.shape, c.dtype) == ((4, 3), np.float64, (4, 15), np.float32)
    # without noise (noise_width = 0) the costs are deterministic functions of the features
    x, c = shortest_path_data(5, 2, (3, 3), deg=1, noise_width=0.0, seed=0)
    x2, c2 = shortest_path_data(5, 2, (3, 3), deg=1, noise_width=0.0, seed=0)
    np.testing.assert_array_equal(c, c2)


def test_generators_pinned_values():
    x, c = shortest_path_data(3, 4, (3, 3), deg=2, noise_width=0.5, seed=135)
    np.testing.assert_allclose(x[0], [1.13461684, -1.03128696, -0.15922701, 2.35059261], rtol=0, atol=1e-8)
    np.testing.assert_array_equal(
        c[0],
        np.float32(
            [2.596023, 1.9774288, 0.80237764, 2.2087884, 2.067211, 1.0377424,
             1.6815467, 1.1318853, 0.8471718, 2.0677915, 0.91946083, 1.5049454]
        ),
    )  # fmt: skip
    w, x, c = knapsack_data(3, 4, 5, dim=2, deg=2, noise_width=0.5, seed=135)
    np.testing.assert_array_equal(w, [[4.59, 4.87, 5.19, 7.59, 6.8], [4.97, 4.84, 3.22, 7.9, 3.62]])
    np.testing.assert_allclose(x[0], [1.43569056, 0.04691624, 0.63812218, -0.04784704], rtol=0, atol=1e-8)
    np.testing.assert_array_equal(c, np.float32([[6, 8, 8, 4, 5], [2, 2, 3, 4, 3], [3, 3, 3, 4, 6]]))
    x, c = tsp_data(3, 4, 5, deg=2, noise_width=0.5, seed=135)
    np.testing.assert_allclose(x[0], [0.95373732, 1.95188092, 0.56718614, -0.28410401], rtol=0, atol=1e-8)
    np.testing.assert_array_equal(
        c[0], np.float32([4.1526, 2.4257, 2.5961, 3.1258, 11.8264, 3.8358, 11.9335, 11.1686, 2.0608, 3.0619])
    )


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: shortest_path_data(0, 3), "num_data"),
        (lambda: shortest_path_data(5, 0), "num_features"),
        (lambda: shortest_path_data(5, 3, deg=0), "deg"),
        (lambda: shortest_path_data(5, 3, deg=1.5), "deg"),
        (lambda: shortest_path_data(5, 3, deg=True), "deg"),
        (lambda: shortest_path_data(5, 3, noise_width=-0.1), "noise_width"),
        (lambda: shortest_path_data(5, 3, noise_width=float("inf")), "noise_width"),
        (lambda: shortest_path_data(5, 3, grid=(0, 2)), "grid"),
        (lambda: shortest_path_data(5, 3, seed=-1), "seed"),
        (lambda: knapsack_data(5, 3, 0), "num_items"),
        (lambda: knapsack_data(5, 3, 4, dim=0), "dim"),
        (lambda: tsp_data(5, 3, 2), "num_nodes"),
        (lambda: tsp_data(5, 3, 5, noise_width="0.1"), "noise_width"),
    ],
)
def test_generators_reject_bad_input(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ---------------------------------------------------------------------------- PyEPO, when installed
@pytest.mark.parametrize(
    "args",
    [(10, 5, (5, 5), 1, 0.0, 135), (7, 3, (3, 4), 4, 0.5, 7), (1, 1, (1, 2), 2, 0.25, 0)],
)
def test_shortest_path_data_equals_pyepo(args):
    shortestpath = pytest.importorskip("pyepo.data.shortestpath")
    for ours, theirs in zip(shortest_path_data(*args), shortestpath.genData(*args), strict=True):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("args", [(10, 5, 32, 2, 4, 0.5, 135), (3, 2, 7, 1, 1, 0.0, 1), (4, 3, 5, 3, 6, 1.0, 99)])
def test_knapsack_data_equals_pyepo(args):
    kp = pytest.importorskip("pyepo.data.knapsack")
    for ours, theirs in zip(knapsack_data(*args), kp.genData(*args), strict=True):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("args", [(10, 5, 20, 1, 0.0, 135), (4, 3, 7, 4, 0.5, 3), (2, 1, 3, 2, 0.1, 11)])
def test_tsp_data_equals_pyepo(args):
    tp = pytest.importorskip("pyepo.data.tsp")
    for ours, theirs in zip(tsp_data(*args), tp.genData(*args), strict=True):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)


def test_shortest_path_solutions_equal_pyepo_model():
    ort = pytest.importorskip("pyepo.model.ort")
    grid = (4, 5)
    model = ort.shortestPathModel(grid)
    assert list(model.arcs) == shortest_path_arcs(grid)
    _, costs = shortest_path_data(6, 4, grid, deg=3, noise_width=0.5, seed=2)
    sol = shortest_path(grid).solve(costs.astype(np.float64))
    for i, c in enumerate(costs):
        model.setObj(c)
        x, obj = model.solve()
        np.testing.assert_allclose(np.asarray(sol.x[i]), x, atol=TOL)
        assert float(sol.objective[i]) == pytest.approx(obj, abs=1e-4)


def test_knapsack_values_equal_pyepo_model():
    ort = pytest.importorskip("pyepo.model.ort")
    weights, _, values = knapsack_data(6, 4, 12, dim=2, deg=2, noise_width=0.3, seed=5)
    caps = 0.5 * weights.sum(axis=1)
    model = ort.knapsackModel(weights, caps, solver="scip")
    sol = knapsack(weights, caps).solve(values.astype(np.float64))
    for i, c in enumerate(values):
        model.setObj(c)
        _, obj = model.solve()
        assert float(sol.objective[i]) == pytest.approx(obj, abs=1e-6)
