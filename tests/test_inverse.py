"""Learning constraints from observed solutions (``tamejax.inverse``) and the static-constraints data."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tamejax
from tamejax.inverse import (
    cut_hinge_loss,
    exact_accuracy,
    fit_constraints,
    init_constraints,
    normalize_constraints,
    perturbed_gap_loss,
    value_gap_loss,
)
from tamejax.problems.static_constraints import solve_binary_enumeration, static_constraints_data


@pytest.fixture(autouse=True, scope="module")
def _in_process():
    before = tamejax.get_workers()
    tamejax.set_workers(0)
    yield
    tamejax.set_workers(before)


def test_data_is_deterministic_and_labels_are_exact():
    d1 = static_constraints_data(2, seed=3, num_train=20, num_test=10, num_variables=6)
    d2 = static_constraints_data(2, seed=3, num_train=20, num_test=10, num_variables=6)
    np.testing.assert_array_equal(d1.A, d2.A)
    np.testing.assert_array_equal(d1.x_train, d2.x_train)
    assert d1.c_train.shape == (20, 6) and d1.c_test.shape == (10, 6)
    np.testing.assert_allclose(np.linalg.norm(d1.A, axis=1), 1.0)
    assert np.all(d1.A @ d1.corner <= d1.b + 1e-12)  # the random corner is kept feasible
    assert np.all(np.abs(d1.c_train) <= 1.0)
    # brute force over {0,1}^6 with itertools (independent of the vectorised enumeration)
    pts = np.array(list(itertools.product([0.0, 1.0], repeat=6)))
    feas = pts[np.all(pts @ d1.A.T <= d1.b + 1e-9, axis=1)]
    for c, x in zip(np.vstack([d1.c_train, d1.c_test]), np.vstack([d1.x_train, d1.x_test]), strict=True):
        assert float(c @ x) == pytest.approx(float(np.min(feas @ c)), abs=1e-12)
        assert np.all(d1.A @ x <= d1.b + 1e-9)


def test_data_matches_scip_labels():
    d = static_constraints_data(4, seed=1, num_train=6, num_test=0, num_variables=16)
    p = tamejax.MIP(c=d.c_train, A_ub=d.A, b_ub=d.b, lb=jnp.zeros(16), ub=jnp.ones(16), integrality=True)
    ref = tamejax.solve(p, "scip")
    np.testing.assert_allclose(np.sum(d.c_train * d.x_train, 1), np.asarray(ref.objective), atol=1e-6)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_constraints"):
        static_constraints_data(0)
    with pytest.raises(ValueError, match="num_variables"):
        static_constraints_data(1, num_variables=24)
    with pytest.raises(ValueError, match="method"):
        fit_constraints(np.zeros((8, 3)), np.zeros((8, 3)), 1, method="nope")
    with pytest.raises(ValueError, match="c_train"):
        fit_constraints(np.zeros((8, 3)), np.zeros((8, 4)), 1)
    with pytest.raises(ValueError, match="placement"):
        init_constraints(jax.random.PRNGKey(0), 1, np.zeros((4, 3)), placement="x")


def _truth_params(d):
    return {"A": jnp.asarray(d.A), "b": jnp.asarray(d.b)}


def test_losses_vanish_at_the_truth_for_the_hinge():
    d = static_constraints_data(2, seed=0, num_train=16, num_test=0, num_variables=8)
    loss, correct = cut_hinge_loss(_truth_params(d), jnp.asarray(d.c_train), jnp.asarray(d.x_train), margin=0.0)
    assert float(loss) == 0.0
    assert bool(jnp.all(correct))
    assert exact_accuracy(_truth_params(d), d.c_train, d.x_train) == 1.0


def test_hinge_gradient_cuts_off_the_cheaper_point():
    # one constraint x0 + x1 <= 2 (inactive); observed x = (1, 0) for c = (-1, -1): x_hat = (1, 1) is cheaper
    params = {"A": jnp.array([[1.0, 1.0]]), "b": jnp.array([2.0])}
    c = jnp.array([[-1.0, -1.0]])
    x = jnp.array([[1.0, 0.0]])
    (loss, correct), g = jax.value_and_grad(cut_hinge_loss, has_aux=True)(params, c, x, margin=0.1)
    assert float(loss) > 0 and not bool(correct[0])
    assert float(g["b"][0]) > 0  # descent lowers b: the constraint tightens toward x_hat


def test_integer_value_gap_has_zero_gradient_in_A_b_but_lp_gap_does_not():
    d = static_constraints_data(2, seed=0, num_train=8, num_test=0, num_variables=8)
    params = init_constraints(jax.random.PRNGKey(0), 2, d.x_train, placement="center")
    c, x = jnp.asarray(d.c_train), jnp.asarray(d.x_train)
    # margin far below the data: every observation strictly feasible -> the hinge is zero
    far = {"A": params["A"], "b": params["b"] + 100.0}
    g_ip = jax.grad(lambda p: value_gap_loss(p, c, x, relaxation="none")[0])(far)
    assert float(jnp.max(jnp.abs(g_ip["A"]))) == 0.0 and float(jnp.max(jnp.abs(g_ip["b"]))) == 0.0
    g_lp = jax.grad(lambda p: value_gap_loss(p, c, x, relaxation="lp", feasibility_weight=0.0)[0])(params)
    assert float(jnp.max(jnp.abs(g_lp["A"]))) > 0.0


@pytest.mark.slow
def test_lp_gap_gradient_matches_finite_differences_in_b():
    d = static_constraints_data(1, seed=2, num_train=4, num_test=0, num_variables=6)
    params = init_constraints(jax.random.PRNGKey(1), 1, d.x_train, placement="center")
    c, x = jnp.asarray(d.c_train), jnp.asarray(d.x_train)

    def f(b):
        return value_gap_loss({"A": params["A"], "b": b}, c, x, relaxation="lp", feasibility_weight=0.0)[0]

    g = float(jax.grad(f)(params["b"])[0])
    h = 1e-5
    fd = (float(f(params["b"] + h)) - float(f(params["b"] - h))) / (2 * h)
    assert g == pytest.approx(fd, abs=1e-4)


@pytest.mark.slow
def test_perturbed_gap_loss_runs_and_has_gradient():
    d = static_constraints_data(2, seed=0, num_train=8, num_test=0, num_variables=8)
    params = init_constraints(jax.random.PRNGKey(0), 2, d.x_train, placement="center")
    c, x = jnp.asarray(d.c_train), jnp.asarray(d.x_train)
    (loss, correct), g = jax.value_and_grad(perturbed_gap_loss, has_aux=True)(
        params, c, x, jax.random.PRNGKey(3), sigma=0.1, num_samples=8
    )
    assert np.isfinite(float(loss)) and correct.shape == (8,)
    assert float(jnp.max(jnp.abs(g["A"]))) > 0.0


def test_normalization():
    A, b = normalize_constraints({"A": jnp.array([[3.0, 4.0]]), "b": jnp.array([5.0])})
    np.testing.assert_allclose(np.asarray(A), [[0.6, 0.8]])
    np.testing.assert_allclose(np.asarray(b), [1.0])


def test_solve_binary_enumeration_infeasible():
    x, feasible = solve_binary_enumeration(np.ones((2, 3)), np.ones((1, 3)), np.array([-1.0]))
    assert not feasible.any() and np.all(np.isnan(x))


def test_hinge_loss_decreases_on_a_short_fit():
    d = static_constraints_data(1, seed=0, num_train=400, num_test=0)
    fit = fit_constraints(
        d.c_train, d.x_train, 1, method="hinge", epochs=4, learning_rate=5e-3, schedule="constant", progress=False
    )
    loss = fit.history["loss"]
    assert len(loss) == 4 and loss[3] < 0.5 * loss[0]


@pytest.mark.slow
def test_hinge_learns_one_constraint():
    """Five epochs of the protocol's data beat the constraint-free baseline by a wide margin."""
    d = static_constraints_data(1, seed=0, num_train=1600, num_test=1000)
    fit = fit_constraints(
        d.c_train, d.x_train, 1, method="hinge", epochs=5, learning_rate=5e-3, schedule="constant", progress=False
    )
    box = float(np.mean(np.all((d.c_test < 0) == d.x_test, axis=1)))
    acc = exact_accuracy(fit.params, d.c_test, d.x_test)
    assert acc > box + 0.2, (acc, box)
