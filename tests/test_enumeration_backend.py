"""The ``enumeration`` backend: an exact solver for tiny pure-integer programs.

Oracles: SCIP (an independent branch-and-bound solver) and the test-suite's brute force
(``oracles.brute_force``, ``itertools.product`` over the box) on random tiny programs.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import assert_feasible, brute_force, host_problem, tiny_programs

import tamejax
from tamejax.backends import SolveOptions, Status, available_backends, solve_host
from tamejax.backends.enumeration import MAX_POINTS, EnumerationBackend, grid_points

SETTINGS = {"suppress_health_check": [HealthCheck.too_slow]}


def test_registered():
    assert "enumeration" in available_backends()
    assert "enumeration" in tamejax.available_backends()


@settings(max_examples=60, **SETTINGS)
@given(tiny_programs(integer="all"))
def test_matches_scip_and_brute_force(p):
    r = solve_host("enumeration", p, SolveOptions(), {})
    oracle = brute_force(p)
    scip = solve_host("scip", p, SolveOptions(), {})
    if math.isinf(oracle.objective):
        assert r.status == Status.INFEASIBLE
        assert scip.status == Status.INFEASIBLE
        assert np.all(np.isnan(r.x))
        return
    assert r.status == Status.OPTIMAL, r.message
    assert scip.status == Status.OPTIMAL
    assert_feasible(p, r.x)
    assert r.objective == pytest.approx(oracle.objective, abs=1e-9)
    assert r.objective == pytest.approx(scip.objective, abs=1e-6)
    assert r.bound == r.objective
    assert float(p.c @ r.x) == pytest.approx(r.objective, abs=1e-12)


@settings(max_examples=12, **SETTINGS)
@given(st.integers(1, 4), st.integers(0, 10_000))
def test_random_binary_programs_match_scip(m, seed):
    """Continuous random data (the static-constraints kind), 10 binary variables."""
    rng = np.random.default_rng(seed)
    n = 10
    A = rng.uniform(-0.5, 0.5, (m, n))
    b = rng.uniform(-0.3, 1.0, m)
    c = rng.uniform(-1, 1, n)
    p = host_problem(c, A, b, lb=np.zeros(n), ub=np.ones(n), integrality=np.ones(n, bool))
    r = solve_host("enumeration", p, SolveOptions(), {})
    scip = solve_host("scip", p, SolveOptions(), {})
    assert r.status == scip.status
    if r.status == Status.OPTIMAL:
        assert r.objective == pytest.approx(scip.objective, abs=1e-6)
        assert_feasible(p, r.x)


def test_grid_order_and_tie_rule():
    X = grid_points(np.array([0.0, -1.0]), np.array([1.0, 1.0]))
    assert X.tolist() == [[0, -1], [0, 0], [0, 1], [1, -1], [1, 0], [1, 1]]
    # every point ties (c = 0): the first grid point is returned
    p = host_problem(np.zeros(3), lb=np.zeros(3), ub=np.ones(3), integrality=np.ones(3, bool))
    r = solve_host("enumeration", p, SolveOptions(), {})
    assert r.status == Status.OPTIMAL
    assert r.x.tolist() == [0.0, 0.0, 0.0]


def test_cache_reuses_feasible_set_only_for_equal_constraints():
    backend = EnumerationBackend()
    cache: dict = {}
    n = 6
    ones = np.ones((1, n))
    p1 = host_problem(-np.ones(n), ones, [2.0], lb=np.zeros(n), ub=np.ones(n), integrality=np.ones(n, bool))
    p2 = host_problem(-np.ones(n), ones, [4.0], lb=np.zeros(n), ub=np.ones(n), integrality=np.ones(n, bool))
    assert backend.solve(p1, SolveOptions(), cache).objective == -2.0
    assert backend.solve(p2, SolveOptions(), cache).objective == -4.0  # new b: not the cached set
    assert backend.solve(p1, SolveOptions(), cache).objective == -2.0


def test_duals_are_zero_for_pure_integer_programs():
    n = 4
    p = host_problem(-np.ones(n), np.ones((1, n)), [2.5], lb=np.zeros(n), ub=np.ones(n), integrality=np.ones(n, bool))
    r = solve_host("enumeration", p, SolveOptions(duals=True), {})
    assert r.status == Status.OPTIMAL
    assert r.objective == -2.0
    assert r.dual_ub.tolist() == [0.0]
    assert r.reduced_cost.tolist() == [0.0] * n


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"integrality": np.array([True, False])}, "continuous variable 1"),
        ({"ub": np.array([1.0, np.inf])}, "finite bounds"),
    ],
)
def test_refusals_are_error_statuses(kwargs, needle):
    base = {"lb": np.zeros(2), "ub": np.ones(2), "integrality": np.ones(2, bool)}
    base.update(kwargs)
    p = host_problem(np.ones(2), **base)
    r = solve_host("enumeration", p, SolveOptions(), {})
    assert r.status == Status.ERROR
    assert needle in r.message
    with pytest.raises(ValueError, match=needle):
        EnumerationBackend().check(p)


def test_refuses_too_many_points():
    n = 21  # 2^21 > MAX_POINTS
    assert 2**n > MAX_POINTS
    p = host_problem(np.ones(n), lb=np.zeros(n), ub=np.ones(n), integrality=np.ones(n, bool))
    r = solve_host("enumeration", p, SolveOptions(), {})
    assert r.status == Status.ERROR
    assert "integer points" in r.message
    assert np.all(np.isnan(r.x))


def test_through_solve_and_value_under_jit_and_vmap():
    rng = np.random.default_rng(0)
    n, m = 8, 2
    A = jnp.asarray(rng.uniform(-0.5, 0.5, (m, n)))
    b = jnp.asarray(rng.uniform(0.0, 1.0, m))
    C = jnp.asarray(rng.uniform(-1, 1, (5, n)))

    def mip(c):
        return tamejax.MIP(c=c, A_ub=A, b_ub=b, lb=jnp.zeros(n), ub=jnp.ones(n), integrality=True)

    x = jax.jit(jax.vmap(lambda c: tamejax.solve(mip(c), "enumeration").x))(C)
    ref = tamejax.solve(mip(C), "scip")
    np.testing.assert_allclose(np.sum(np.asarray(x) * np.asarray(C), 1), np.asarray(ref.objective), atol=1e-9)
    # value: dz/dc = x*, dz/db = 0 (pure integer: the value is locally constant in b)
    gc, gb = jax.grad(lambda c, bb: jnp.sum(tamejax.value(mip(c).replace(b_ub=bb), "enumeration")), (0, 1))(C, b)
    np.testing.assert_allclose(np.asarray(gc), np.asarray(x))
    assert np.all(np.asarray(gb) == 0.0)


def test_eager_check_raises_for_continuous_variables():
    p = tamejax.MIP(c=jnp.ones(2), lb=jnp.zeros(2), ub=jnp.ones(2), integrality=(True, False))
    with pytest.raises(ValueError, match="continuous variable"):
        tamejax.solve(p, "enumeration")
