"""Tests of ``tamejax.problems.maxsat``: the MIP against brute force, learning, bad input.

Oracle: enumeration of all ``2^n`` assignments (``maxsat_brute_force``, itself checked against
a direct evaluation of the clauses).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tamejax as tj
from tamejax import Status
from tamejax.problems.maxsat import (
    clause_satisfaction,
    maxsat,
    maxsat_assign,
    maxsat_brute_force,
    maxsat_mip,
    random_kcnf,
)


def _sat_direct(clauses, x):
    """Clause satisfaction by the definition, for one assignment (a tuple of 0/1)."""
    return [float(any((x[abs(lit) - 1] == 1) == (lit > 0) for lit in clause)) for clause in clauses]


@st.composite
def formulas(draw):
    n = draw(st.integers(1, 5))
    m = draw(st.integers(1, 6))
    lit = st.integers(1, n).flatmap(lambda v: st.sampled_from([v, -v]))
    clauses = [draw(st.lists(lit, min_size=1, max_size=3)) for _ in range(m)]
    weights = draw(st.lists(st.integers(0, 20).map(lambda k: k / 4), min_size=m, max_size=m))
    fixed = draw(st.lists(st.sampled_from([-1, -1, 0, 1]), min_size=n, max_size=n))
    return clauses, n, np.array(weights), np.array(fixed)


def test_clause_satisfaction_and_brute_force():
    clauses = [[1, -2], [2], [-1, -3, 3], [-1]]  # the third is a tautology
    for x in itertools.product((0, 1), repeat=3):
        np.testing.assert_array_equal(clause_satisfaction(clauses, np.array(x)), _sat_direct(clauses, x))
    value, optimal = maxsat_brute_force(clauses, 3, [1.0, 2.0, 0.5, 3.0])
    assert value == 5.5  # x1 = 0, x2 = 1: clause 1 fails (weight 1), the rest hold
    assert all(row[0] == 0 and row[1] == 1 for row in optimal) and len(optimal) == 2
    value, optimal = maxsat_brute_force(clauses, 3, [1.0, 2.0, 0.5, 3.0], fixed=[1, -1, -1])
    assert value == 3.5 and np.all(optimal[:, 0] == 1)


@settings(max_examples=12)
@given(formulas())
def test_mip_optimum_equals_brute_force(case):
    clauses, n, w, fixed = case
    best, optimal = maxsat_brute_force(clauses, n, w, fixed=fixed)
    oracle = maxsat(clauses, n, fixed=fixed, threads=1)
    sol = oracle.full().solve(oracle.pad(w))  # one solve: objective, z and x
    assert int(sol.status) == Status.OPTIMAL
    np.testing.assert_allclose(float(sol.objective), best, atol=1e-7)
    z, x = np.asarray(sol.x)[: len(clauses)], np.round(np.asarray(sol.x)[len(clauses) :]).astype(int)
    assert any(np.array_equal(x, row) for row in optimal)
    assert np.all((fixed < 0) | (x == fixed))
    np.testing.assert_allclose(z @ w, best, atol=1e-7)  # z = sat(x) wherever w > 0
    # the MIP in minimization form: -value is the optimum
    np.testing.assert_allclose(-float(tj.value(maxsat_mip(clauses, n, w, fixed=fixed), threads=1)), best, atol=1e-7)


def test_assign_and_value_gradient_in_weights_is_the_satisfaction_vector():
    clauses = random_kcnf(6, 20, 3, seed=2)
    w = np.random.default_rng(0).uniform(0.5, 2.0, 20)
    best, optimal = maxsat_brute_force(clauses, 6, w)
    sats = np.unique(clause_satisfaction(clauses, optimal), axis=0)
    assert len(sats) == 1  # every optimum satisfies the same clauses: the value is differentiable in w
    grad = jax.grad(lambda v: -tj.value(maxsat_mip(clauses, 6, v), threads=1))(jnp.asarray(w))
    np.testing.assert_allclose(np.asarray(grad), sats[0], atol=1e-9)
    x, status = maxsat_assign(maxsat(clauses, 6, threads=1), w)
    assert int(status) == Status.OPTIMAL
    assert any(np.array_equal(np.round(x).astype(int), row) for row in optimal)


def test_batched_evidence_with_shared_weights_equals_brute_force():
    """Batched ``fixed`` (3 evidence rows) with one broadcast ``w``: each row against its own enumeration."""
    clauses = random_kcnf(7, 24, 3, seed=8)
    w = np.random.default_rng(4).uniform(0.2, 2.0, 24)
    fixed = np.array([[-1] * 7, [1, 0, -1, -1, 1, -1, -1], [0, 0, 0, -1, -1, -1, 1]])
    oracle = maxsat(clauses, 7, fixed=fixed, threads=1)
    x, status = maxsat_assign(oracle, np.broadcast_to(w, (3, 24)))
    assert x.shape == (3, 7) and np.all(status == Status.OPTIMAL)
    x = np.round(x).astype(int)
    sol = oracle.full().solve(oracle.pad(np.broadcast_to(w, (3, 24))))
    for i, row in enumerate(fixed):
        best, optimal = maxsat_brute_force(clauses, 7, w, fixed=row)
        assert any(np.array_equal(x[i], opt) for opt in optimal)
        assert np.all((row < 0) | (x[i] == row))
        np.testing.assert_allclose(clause_satisfaction(clauses, x[i]) @ w, best, atol=1e-7)
        np.testing.assert_allclose(float(np.asarray(sol.objective)[i]), best, atol=1e-7)
    # the MIP form, batched by `fixed` with unbatched weights, has the same optima
    values = -np.asarray(tj.value(maxsat_mip(clauses, 7, w, fixed=fixed), threads=1))
    np.testing.assert_allclose(values, [maxsat_brute_force(clauses, 7, w, fixed=r)[0] for r in fixed], atol=1e-7)


def test_random_kcnf():
    f = random_kcnf(7, 30, 3, seed=5)
    assert f.shape == (30, 3) and f.dtype == np.int64
    assert np.all((np.abs(f) >= 1) & (np.abs(f) <= 7))
    assert all(len(set(np.abs(row).tolist())) == 3 for row in f)
    np.testing.assert_array_equal(f, random_kcnf(7, 30, 3, seed=5))
    assert not np.array_equal(f, random_kcnf(7, 30, 3, seed=6))
    assert 0.3 < np.mean(f > 0) < 0.7


def _reproduction(clauses, n, w, fixed, w_true):
    """Fraction of evidence rows whose MaxSAT optimum under ``w`` is optimal under ``w_true``."""
    x, status = maxsat_assign(maxsat(clauses, n, fixed=fixed, threads=1), np.broadcast_to(w, (len(fixed), len(w))))
    assert np.all(status == Status.OPTIMAL)
    hits = [
        clause_satisfaction(clauses, np.round(x[i]).astype(int)) @ w_true
        >= maxsat_brute_force(clauses, n, w_true, fixed=fixed[i])[0] - 1e-9
        for i in range(len(fixed))
    ]
    return float(np.mean(hits))


def test_learned_weights_improve_reproduction():
    """Optimality-gap loss z(w) - w . sat(x_obs) with the exact value gradient, a tiny case."""
    n, m = 6, 24
    clauses = random_kcnf(n, m, 3, seed=1)
    rng = np.random.default_rng(3)
    w_true = np.exp(1.5 * rng.normal(size=m))
    w_true *= m / w_true.sum()
    fixed = -np.ones((24, n), int)
    for row in fixed:
        idx = rng.choice(n, 2, replace=False)
        row[idx] = rng.integers(0, 2, 2)
    train, test = fixed[:12], fixed[12:]
    x_obs = np.array([maxsat_brute_force(clauses, n, w_true, fixed=f)[1][0] for f in train])
    z_obs = clause_satisfaction(clauses, x_obs)

    def loss(rho):
        w = m * jax.nn.softmax(rho)
        z = -tj.value(maxsat_mip(clauses, n, jnp.broadcast_to(w, (len(train), m)), fixed=train), threads=1)
        return jnp.mean(z - z_obs @ w)  # >= 0, zero iff every observation is optimal for w

    rho = jnp.zeros(m)
    before = _reproduction(clauses, n, np.ones(m), test, w_true)
    loss0 = float(loss(rho))
    step = jax.jit(jax.value_and_grad(loss))
    for _ in range(10):
        _, g = step(rho)
        rho = rho - 0.5 * g
    after = _reproduction(clauses, n, m * np.asarray(jax.nn.softmax(rho)), test, w_true)
    assert float(loss(rho)) < loss0
    assert after > before, (before, after)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: maxsat_mip([[1, 0]], 2), r"`clauses`: expected literals in \[-2, -1\] or \[1, 2\]"),
        (lambda: maxsat_mip([[1, 3]], 2), "`clauses`: expected literals"),
        (lambda: maxsat_mip([[1, -3]], 2), "got -3 in clause 0"),
        (lambda: maxsat_mip([[1], []], 2), "`clauses`: expected clause 1 to be a non-empty"),
        (lambda: maxsat_mip([], 2), "`clauses`: expected at least one clause"),
        (lambda: maxsat_mip([[1.5]], 2), "`clauses`: expected integer literals"),
        (lambda: maxsat_mip(np.ones((2, 2, 2), int), 2), "`clauses`: expected a 2-d array"),
        (lambda: maxsat_mip([[1]], 0), "`num_vars`"),
        (lambda: maxsat_mip([[1], [2]], 2, [1.0, -1.0]), r"`weights`: expected finite values >= 0, got -1.0"),
        (lambda: maxsat_mip([[1], [2]], 2, [1.0, np.nan]), "`weights`: expected finite values >= 0, got nan"),
        (lambda: maxsat_mip([[1], [2]], 2, [1.0]), r"`weights`: expected shape \(\.\.\., 2\)"),
        (lambda: maxsat([[1], [2]], 2, fixed=[2, -1]), "`fixed`: expected entries -1"),
        (lambda: maxsat([[1], [2]], 2, fixed=[1]), r"`fixed`: expected shape \(\.\.\., 2\)"),
        (lambda: maxsat_brute_force([[1]], 21), "`num_vars`: expected at most 20"),
        (lambda: maxsat_brute_force([[1]], 1, [-2.0]), "`weights`"),
        (lambda: clause_satisfaction([[1]], np.array([2])), "`x`: expected 0/1 entries"),
        (lambda: clause_satisfaction([[1, 2]], np.array([1])), "`clauses`: expected literals"),
        (lambda: random_kcnf(2, 5, 3), "`k`: expected at most num_vars"),
        (lambda: random_kcnf(5, 0, 3), "`num_clauses`"),
        (lambda: maxsat_assign(tj.Oracle(maxsat_mip([[1]], 1)), [1.0]), "`oracle`"),
        (
            lambda: maxsat_assign(maxsat([[1], [2]], 2), [1.0, 1.0, 1.0]),
            r"maxsat_assign argument `weights`: expected shape \(\.\.\., 2\).*got \(3,\)",
        ),
        (
            lambda: maxsat_mip([[1], [2]], 2, np.ones((3, 2)), fixed=-np.ones((2, 2), int)),
            r"maxsat_mip arguments `weights` / `fixed`: expected broadcastable batch shapes, got \(3,\) and \(2,\)",
        ),
        (lambda: maxsat([[1], [2]], 2, fixed=[2, -1]), "^maxsat argument `fixed`"),
        (lambda: clause_satisfaction([[1]], 1), r"clause_satisfaction argument `x`: expected 0/1 assignments of shape"),
    ],
)
def test_bad_input_names_the_field(call, match):
    with pytest.raises(ValueError, match=match):
        call()
