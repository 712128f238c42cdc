"""Tests of ``tamejax.estimators`` against definitions, brute force and closed forms.

Two tiny feasible sets are used throughout, small enough to enumerate:

* the vertices of the simplex, ``{e_1, ..., e_n}`` (``n`` binaries with ``sum x = 1``), where the
  perturbed maps have closed forms: with Gumbel noise and ``sense="max"``,
  ``E[x*(theta + sigma G)] = softmax(theta / sigma)`` (the Gumbel-max trick), and on two vertices
  ``P(x = e_1) = F(s (theta_2 - theta_1) / sigma)`` with ``F`` the CDF of the difference of two
  noise variables (``Phi(. / sqrt 2)`` for Gaussian noise, the logistic function for Gumbel noise);
* a 5-item knapsack ``{x in {0,1}^5 : w . x <= 8}``, enumerated once.

Every ``x*`` is recomputed by brute force over the enumerated vertices (``argmin``/``argmax`` of
``theta . v``); random continuous costs make the optimum unique almost surely, and ``brute``
asserts a margin so that a near-tie cannot make a test flaky. Forward values are compared to
their definitions exactly, with the noise reproduced from the same key
(``jax.random.normal``/``gumbel`` on ``theta.shape[:-1] + (S, n)``, ``sum_of_gamma`` for I-MLE);
so are the backward formulas. Monte-Carlo tests (unbiasedness of the gradients) average ``R``
i.i.d. replicates (identical rows of a batch, each with its own noise) and accept a deviation of
at most 5 standard errors estimated from those replicates; all keys are fixed, so the tests are
deterministic.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tamejax
from tamejax import estimators as E
from tamejax.oracle import Oracle

jax.config.update("jax_enable_x64", True)

EULER = 0.5772156649015329
SENSES = ("min", "max")
NOISES = ("gaussian", "gumbel")
K_SE = 5.0  # Monte-Carlo tolerance, in standard errors
SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def key(i: int) -> jax.Array:
    return jax.random.PRNGKey(i)


# ----------------------------------------------------------------------------- problems
def simplex_mip(n: int) -> tamejax.MIP:
    """``{x in {0,1}^n : sum x = 1}``: the vertices of the simplex."""
    return tamejax.MIP(jnp.zeros(n), A_eq=jnp.ones((1, n)), b_eq=jnp.ones(1), ub=1.0, integrality=True)


KNAP_W = np.array([3.0, 4.0, 2.0, 5.0, 3.0])
KNAP_CAP = 8.0


def knapsack_mip() -> tamejax.MIP:
    return tamejax.MIP(
        jnp.zeros(5), A_ub=jnp.asarray(KNAP_W)[None], b_ub=jnp.array([KNAP_CAP]), ub=1.0, integrality=True
    )


KNAP_V = np.array([v for v in itertools.product((0.0, 1.0), repeat=5) if np.dot(v, KNAP_W) <= KNAP_CAP])
SIMPLEX_V = {n: np.eye(n) for n in (2, 3, 4)}

# HiGHS for the large Monte-Carlo batches on the simplex (fast), SCIP elsewhere; rel_gap=0 so that no
# solver stops at a near-optimal vertex (HiGHS defaults to a 1e-4 relative gap).
ORACLES = {("knapsack", s): Oracle(knapsack_mip(), sense=s, backend="scip") for s in SENSES} | {
    (f"simplex{n}", s): Oracle(simplex_mip(n), sense=s, backend="highs", rel_gap=0.0) for n in (2, 3, 4) for s in SENSES
}
VERTICES = {"knapsack": KNAP_V} | {f"simplex{n}": SIMPLEX_V[n] for n in (2, 3, 4)}
CASES = ("knapsack", "simplex4")


def brute(V: np.ndarray, theta, sense: str = "min", margin: float = 1e-7) -> np.ndarray:
    """``argmin``/``argmax_{v in V} theta . v`` for ``theta`` of shape ``(..., n)``, asserting that the
    optimum is unique with a margin (no tie for the solver to break differently)."""
    theta = np.asarray(theta, np.float64)
    obj = (1.0 if sense == "min" else -1.0) * theta @ V.T
    if V.shape[0] > 1:
        two = np.sort(obj, axis=-1)[..., :2]
        assert np.all(two[..., 1] - two[..., 0] > margin), "near-tie in a brute-force test instance"
    return V[np.argmin(obj, axis=-1)]


def rand(shape, seed: int, scale: float = 1.0) -> jnp.ndarray:
    return jnp.asarray(scale * np.random.default_rng(seed).normal(size=shape))


def noise_like(k, noise: str, shape) -> np.ndarray:
    f = jax.random.normal if noise == "gaussian" else jax.random.gumbel
    return np.asarray(f(k, shape, jnp.float64))


def perturb_by_hand(theta, z, sigma, noise, multiplicative):
    """``(theta_s, factor)`` by the definitions (independently of the module's helpers)."""
    theta = np.asarray(theta)[..., None, :]
    if not multiplicative:
        return theta + sigma * z, np.ones_like(z)
    kappa = sigma**2 / 2 if noise == "gaussian" else sigma * EULER
    factor = np.exp(sigma * z - kappa)
    return theta * factor, factor


def assert_mc(samples, exact, axis: int = 0, k: float = K_SE, atol: float = 1e-9):
    """The mean of i.i.d. ``samples`` along ``axis`` is within ``k`` standard errors of ``exact``."""
    samples = np.asarray(samples)
    m = samples.mean(axis)
    se = samples.std(axis, ddof=1) / math.sqrt(samples.shape[axis])
    dev = np.abs(m - exact)
    assert np.all(dev <= k * se + atol), f"mean {m}\nexact {exact}\n|dev|/se {dev / np.maximum(se, 1e-300)}"


def replicated_jacobian(fn, theta_row, reps: int):
    """Forward values ``(R, n)`` and Jacobian estimates ``(R, n, n)`` (row ``i``: the VJP with
    ``e_i``) of ``fn`` on ``R`` identical rows of ``theta_row`` (i.i.d. replicates: each row gets its own
    noise); the backward passes reuse the forward residuals."""
    n = theta_row.shape[0]
    theta = jnp.tile(jnp.asarray(theta_row, jnp.float64), (reps, 1))
    out, vjp = jax.vjp(fn, theta)
    jac = jax.vmap(lambda g: vjp(jnp.broadcast_to(g, (reps, n)))[0])(jnp.eye(n))  # (n_out, R, n_in)
    return np.asarray(out), np.moveaxis(np.asarray(jac), 1, 0)


# ----------------------------------------------------------------------------- perturbed
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("sense", SENSES)
@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("multiplicative", [False, True])
def test_perturbed_forward_is_the_sample_mean(case, sense, noise, multiplicative):
    """``mean_s x*(theta_s)``, ``theta_s = theta + sigma z_s`` or ``theta * exp(sigma z_s - kappa)`` (``kappa``
    does not change ``x*``; the Fenchel-Young test sees it)."""
    o, V = ORACLES[case, sense], VERTICES[case]
    theta, S, sigma = rand((2, o.n), 1), 3, 0.7
    x = E.perturbed(o, theta, key(3), num_samples=S, sigma=sigma, noise=noise, multiplicative=multiplicative)
    z = noise_like(key(3), noise, (2, S, o.n))
    theta_s, _ = perturb_by_hand(theta, z, sigma, noise, multiplicative)
    assert x.shape == theta.shape and x.dtype == theta.dtype
    np.testing.assert_allclose(x, brute(V, theta_s, sense).mean(-2), atol=1e-12)


@pytest.mark.parametrize("sense", SENSES)
@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("multiplicative", [False, True])
@pytest.mark.parametrize("variance_reduction", [False, True])
def test_perturbed_vjp_is_the_score_function_formula(sense, noise, multiplicative, variance_reduction):
    """``g^T J = (1 / (S sigma)) sum_s r_s grad nu(z_s)`` with ``r_s = g . x_s`` (centred by the mean of
    the other samples with variance reduction), divided by ``theta`` when multiplicative."""
    o, V = ORACLES["knapsack", sense], KNAP_V
    theta, g, S, sigma = rand((2, 5), 2), rand((2, 5), 3), 3, 0.8
    kw = dict(num_samples=S, sigma=sigma, noise=noise, multiplicative=multiplicative)
    _, vjp = jax.vjp(lambda t: E.perturbed(o, t, key(4), variance_reduction=variance_reduction, **kw), theta)
    (grad,) = vjp(g)
    z = noise_like(key(4), noise, (2, S, 5))
    xs = brute(V, perturb_by_hand(theta, z, sigma, noise, multiplicative)[0], sense)
    r = np.einsum("bsn,bn->bs", xs, g)
    if variance_reduction:
        r = np.stack([[r[b, s] - np.delete(r[b], s).mean() for s in range(S)] for b in range(2)])
    score = z if noise == "gaussian" else 1.0 - np.exp(-z)
    expected = np.einsum("bs,bsn->bn", r, score) / (S * sigma)
    if multiplicative:
        expected = expected / np.asarray(theta)
    np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-12)


def test_perturbed_multiplicative_zero_cost_is_not_perturbed():
    o = ORACLES["simplex3", "min"]
    theta = jnp.array([0.0, 1.0, -1.0])
    f = lambda t: E.perturbed(o, t, key(0), num_samples=8, sigma=0.5, multiplicative=True)  # noqa: E731
    x, vjp = jax.vjp(f, theta)
    np.testing.assert_allclose(x, [0.0, 0.0, 1.0])  # -1 * factor < 0 = 0 * factor < factor
    assert np.all(np.isfinite(vjp(jnp.ones(3))[0]))
    assert vjp(jnp.array([1.0, -2.0, 0.5]))[0][0] == 0.0


@pytest.mark.parametrize("variance_reduction", [False, True])
def test_perturbed_gumbel_max_is_softmax(variance_reduction):
    """Gumbel-max trick: ``E[argmax_i (theta_i + sigma G_i)] = softmax(theta / sigma)``; the VJP must be
    an unbiased estimate of the softmax Jacobian ``(diag p - p p^T) / sigma``, with or without the
    leave-one-out baseline, already at ``num_samples=2`` (where a baseline without the ``S/(S-1)``
    correction would halve the estimate)."""
    o, sigma = ORACLES["simplex3", "max"], 0.7
    theta = np.array([0.4, -0.1, 0.2])
    f = lambda t: E.perturbed(  # noqa: E731
        o, t, key(5), num_samples=2, sigma=sigma, noise="gumbel", variance_reduction=variance_reduction
    )
    out, jac = replicated_jacobian(f, theta, reps=1500)
    p = np.asarray(jax.nn.softmax(theta / sigma))
    assert_mc(out, p)
    assert_mc(jac, (np.diag(p) - np.outer(p, p)) / sigma)


def _two_vertex_closed_form(theta, sigma, noise, sense, multiplicative):
    """``P(x* = e_1)`` and its gradient on the 2-vertex simplex.

    Additive, ``min``: ``x* = e_1`` iff ``Z_1 - Z_2 < d = (theta_2 - theta_1) / sigma``, so ``P = F(d)``
    with ``F`` the CDF of ``Z_1 - Z_2`` (``N(0, 2)`` for Gaussian, logistic for Gumbel noise, both
    symmetric); ``max`` gives ``F(-d)``: ``P = F(s d)``, ``s = +1`` (min) or ``-1`` (max), and
    ``dP/dtheta = s f(s d) (-1, 1) / sigma``. Multiplicative: the same in ``u = log|theta|`` (the
    common factor ``exp(-kappa)`` cancels), the comparison reversed for negative costs (``s`` times their
    sign), and ``du/dtheta = 1 / theta``."""
    t1, t2 = theta
    s = 1.0 if sense == "min" else -1.0
    if multiplicative:
        s *= np.sign(t1)
        d = (math.log(abs(t2)) - math.log(abs(t1))) / sigma
        du = np.array([1.0 / t1, 1.0 / t2])
    else:
        d = (t2 - t1) / sigma
        du = np.ones(2)
    if noise == "gaussian":
        cdf = 0.5 * (1.0 + math.erf(s * d / 2.0))  # Phi(s d / sqrt 2)
        pdf = math.exp(-((s * d) ** 2) / 4.0) / math.sqrt(4.0 * math.pi)
    else:
        cdf = 1.0 / (1.0 + math.exp(-s * d))
        pdf = cdf * (1.0 - cdf)
    dp = s * pdf / sigma * np.array([-1.0, 1.0]) * du
    return cdf, dp


@pytest.mark.parametrize(
    "noise,sense,multiplicative,theta",
    [
        ("gaussian", "min", False, (0.2, -0.1)),
        ("gaussian", "max", False, (0.2, -0.1)),
        ("gaussian", "min", True, (1.5, 1.0)),
        ("gaussian", "max", True, (-1.5, -1.0)),
        ("gumbel", "max", True, (1.5, 1.0)),
        ("gumbel", "min", True, (-0.8, -1.2)),
    ],
)
def test_perturbed_two_vertices_closed_form(noise, sense, multiplicative, theta):
    o, sigma = ORACLES["simplex2", sense], 0.5
    f = lambda t: E.perturbed(  # noqa: E731
        o, t, key(6), num_samples=2, sigma=sigma, noise=noise, multiplicative=multiplicative
    )
    out, jac = replicated_jacobian(f, np.array(theta), reps=500)
    p, dp = _two_vertex_closed_form(theta, sigma, noise, sense, multiplicative)
    assert_mc(out, np.array([p, 1.0 - p]))
    assert_mc(jac, np.stack([dp, -dp]))


# ----------------------------------------------------------------------------- Fenchel-Young
@pytest.mark.parametrize("sense", SENSES)
@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("multiplicative", [False, True])
def test_fenchel_young_value_and_gradients(sense, noise, multiplicative):
    """``l = sign (theta . y - mean_s theta_s . x_s)``; ``dl/dtheta = y - mean_s factor_s x_s`` (min) or
    its negative (max), i.e. ``y - x_bar`` / ``x_bar - y`` with ``x_bar`` the same-key perturbed mean;
    ``dl/dy = sign theta``."""
    o, V = ORACLES["knapsack", sense], KNAP_V
    theta, S, sigma = rand((2, 5), 7), 3, 0.6
    y = jnp.asarray(brute(V, rand((2, 5), 8), sense))
    kw = dict(num_samples=S, sigma=sigma, noise=noise, multiplicative=multiplicative)
    loss, (g_theta, g_y) = jax.value_and_grad(
        lambda t, y: jnp.sum(E.fenchel_young_loss(o, t, y, key(9), **kw)), argnums=(0, 1)
    )(theta, y)
    per = E.fenchel_young_loss(o, theta, y, key(9), **kw)
    z = noise_like(key(9), noise, (2, S, 5))
    theta_s, factor = perturb_by_hand(theta, z, sigma, noise, multiplicative)
    xs = brute(V, theta_s, sense)
    sign = o.sign
    expected = sign * (np.sum(theta * y, -1) - np.mean(np.sum(theta_s * xs, -1), -1))
    assert per.shape == (2,)
    np.testing.assert_allclose(per, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(loss, expected.sum(), rtol=1e-10)
    np.testing.assert_allclose(g_theta, sign * (y - np.mean(factor * xs, -2)), atol=1e-12)
    np.testing.assert_allclose(g_y, sign * theta, atol=1e-12)
    if not multiplicative:
        x_bar = E.perturbed(o, theta, key(9), **kw)
        np.testing.assert_allclose(g_theta, (y - x_bar) if sense == "min" else (x_bar - y), atol=1e-12)


# ----------------------------------------------------------------------------- SPO+
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("sense", SENSES)
@pytest.mark.parametrize("given_x", [False, True])
def test_spo_plus_value_and_gradients_brute_force(case, sense, given_x):
    """min: ``l = max_v (c - 2 theta) . v + 2 theta . x* - z*``, ``dl/dtheta = 2 (x* - x~)``,
    ``dl/dc = x~ - x*``, ``dl/dx* = 2 theta - c``, ``x~ = argmin (2 theta - c) . v``; max: the same for
    the minimization of ``-c`` (predicting ``-theta``)."""
    o, V = ORACLES[case, sense], VERTICES[case]
    theta, c = rand((2, o.n), 10), rand((2, o.n), 11)
    x_star = brute(V, c, sense)
    x_tilde = brute(V, 2 * theta - c, sense)
    z_star = np.sum(c * x_star, -1)
    s = o.sign
    q = s * (2 * np.asarray(theta) - np.asarray(c))  # the cost of the inner minimization, in its own sense
    expected = np.max(-q @ V.T, -1) + s * (2 * np.sum(theta * x_star, -1) - z_star)
    args = (theta, c, jnp.asarray(x_star)) if given_x else (theta, c)
    argnums = (0, 1, 2) if given_x else (0, 1)
    value = E.spo_plus_loss(o, *args)
    grads = jax.grad(lambda *a: jnp.sum(E.spo_plus_loss(o, *a)), argnums=argnums)(*args)
    np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads[0], 2 * s * (x_star - x_tilde), atol=1e-12)
    np.testing.assert_allclose(grads[1], s * (x_tilde - x_star), atol=1e-12)
    if given_x:
        np.testing.assert_allclose(grads[2], s * (2 * np.asarray(theta) - np.asarray(c)), atol=1e-12)


@pytest.mark.parametrize("sense", SENSES)
def test_spo_plus_zero_at_the_truth_and_paths_agree(sense):
    o, V = ORACLES["knapsack", sense], KNAP_V
    c = rand((2, 5), 12)
    np.testing.assert_allclose(E.spo_plus_loss(o, c, c), 0.0, atol=1e-12)
    theta = rand((2, 5), 13)
    f = lambda t, *x: jnp.sum(E.spo_plus_loss(o, t, c, *x))  # noqa: E731
    x_star = jnp.asarray(brute(V, c, sense))
    np.testing.assert_allclose(f(theta), f(theta, x_star), rtol=1e-12)
    np.testing.assert_allclose(jax.grad(f)(theta), jax.grad(f)(theta, x_star), atol=1e-12)


rows5 = st.lists(st.floats(-4, 4, allow_subnormal=False), min_size=10, max_size=10).map(
    lambda r: jnp.asarray(r, jnp.float64).reshape(2, 5)
)


@SETTINGS
@given(theta=rows5, c=rows5, sense=st.sampled_from(SENSES))
def test_spo_plus_nonnegative_and_bounds_the_regret(theta, c, sense):
    """``0 <= regret <= SPO+``. Both inequalities hold for *any* exact minimizer ``x^ in argmin theta . x``
    (``SPO+ >= (c - 2 theta) . x^ + 2 theta . x* - z* = regret + 2 theta . (x* - x^)``), so ties in
    ``theta`` (which hypothesis likes: zeros, repeated values) need no special care."""
    o = ORACLES["knapsack", sense]
    loss = np.asarray(E.spo_plus_loss(o, theta, c))
    reg = np.asarray(E.regret(o, theta, c, normalized=False))
    tol = 1e-7 * (1.0 + np.abs(np.asarray(c)).sum(-1) + np.abs(np.asarray(theta)).sum(-1))
    assert np.all(reg >= -tol) and np.all(loss >= -tol)
    assert np.all(loss >= reg - tol), (loss, reg)


# ----------------------------------------------------------------------------- regret
@pytest.mark.parametrize("sense", SENSES)
def test_regret_by_hand(sense):
    o, V = ORACLES["knapsack", sense], KNAP_V
    theta, c = rand((2, 5), 14), rand((2, 5), 15)
    x_hat, x_star = brute(V, theta, sense), brute(V, c, sense)
    z = np.sum(c * x_star, -1)
    per = o.sign * (np.sum(c * x_hat, -1) - z)
    assert np.all(per >= 0) and np.any(per > 0)
    np.testing.assert_allclose(E.regret(o, theta, c, normalized=False), per, atol=1e-12)
    np.testing.assert_allclose(E.regret(o, theta, c), per.sum() / (np.abs(z).sum() + 1e-7), rtol=1e-12)
    np.testing.assert_allclose(E.regret(o, theta, c, jnp.asarray(z)), per.sum() / (np.abs(z).sum() + 1e-7))
    np.testing.assert_allclose(E.regret(o, theta, c, z, normalized=False), per, atol=1e-12)
    # any z_true is taken as given (here: the optimum shifted by one)
    np.testing.assert_allclose(E.regret(o, theta, c, z - 1.0, normalized=False), per + o.sign, atol=1e-12)
    assert E.regret(o, theta, c).shape == ()
    # a metric: no gradient flows
    np.testing.assert_array_equal(jax.grad(lambda t: E.regret(o, t, c))(theta), 0.0)
    np.testing.assert_array_equal(jax.grad(lambda cc: E.regret(o, theta, cc))(c), 0.0)


# ----------------------------------------------------------------------------- interpolation, identity
@pytest.mark.parametrize("sense", SENSES)
def test_interpolation_forward_and_backward(sense):
    """min: ``x*(theta)``, backward ``(x*(theta + lam g) - x*(theta)) / lam``; max: ``theta - lam g`` and the
    sign flipped."""
    o, V, lam = ORACLES["knapsack", sense], KNAP_V, 3.0
    theta, g = rand((2, 5), 16), rand((2, 5), 17)
    x, vjp = jax.vjp(lambda t: E.interpolation(o, t, lam=lam), theta)
    x0 = brute(V, theta, sense)
    np.testing.assert_allclose(x, x0, atol=1e-12)
    s = o.sign
    x_lam = brute(V, theta + s * lam * g, sense)
    assert np.any(x_lam != x0)  # a non-trivial backward
    np.testing.assert_allclose(vjp(g)[0], s * (x_lam - x0) / lam, atol=1e-12)


@pytest.mark.parametrize("sense", SENSES)
@pytest.mark.parametrize("negative", [None, True, False])
def test_identity_forward_and_backward(sense, negative):
    o, V = ORACLES["knapsack", sense], KNAP_V
    theta, g = rand((2, 5), 18), rand((2, 5), 19)
    x, vjp = jax.vjp(lambda t: E.identity(o, t, negative=negative), theta)
    np.testing.assert_allclose(x, brute(V, theta, sense), atol=1e-12)
    neg = (sense == "min") if negative is None else negative
    np.testing.assert_allclose(vjp(g)[0], -g if neg else g, atol=0)


# ----------------------------------------------------------------------------- I-MLE
@pytest.mark.parametrize("sense", SENSES)
@pytest.mark.parametrize("two_sided", [False, True])
def test_imle_forward_and_backward(sense, two_sided):
    o, V = ORACLES["knapsack", sense], KNAP_V
    theta, g = rand((2, 5), 20), rand((2, 5), 21)
    S, sigma, lam, kappa, terms = 3, 0.8, 2.0, 2.0, 2
    f = lambda t: E.imle(  # noqa: E731
        o, t, key(22), num_samples=S, sigma=sigma, lam=lam, kappa=kappa, num_terms=terms, two_sided=two_sided
    )
    x, vjp = jax.vjp(f, theta)
    eps = sigma * np.asarray(E.sum_of_gamma(key(22), (2, S, 5), kappa=kappa, num_terms=terms, dtype=jnp.float64))
    theta_s = np.asarray(theta)[:, None, :] + eps
    xs = brute(V, theta_s, sense)
    np.testing.assert_allclose(x, xs.mean(1), atol=1e-12)
    gs = np.asarray(g)[:, None, :]
    if two_sided:
        expected = (brute(V, theta_s + lam * gs, sense) - brute(V, theta_s - lam * gs, sense)).mean(1) / (2 * lam)
    else:
        s = o.sign
        expected = s * (brute(V, theta_s + s * lam * gs, sense) - xs).mean(1) / lam
    assert np.any(expected != 0)
    np.testing.assert_allclose(vjp(g)[0], expected, atol=1e-12)


def test_sum_of_gamma_shape_dtype_and_key():
    # (every new shape compiles JAX's gamma sampler, about a second: shapes are shared with other tests)
    e = E.sum_of_gamma(key(0), (2, 3, 5), kappa=2.0, num_terms=2, dtype=jnp.float32)
    assert e.shape == (2, 3, 5) and e.dtype == jnp.float32
    a = E.sum_of_gamma(key(1), (2, 3, 5), num_terms=2)
    assert a.shape == (2, 3, 5) and a.dtype == jnp.float64  # x64: the default float
    np.testing.assert_array_equal(a, E.sum_of_gamma(key(1), (2, 3, 5), num_terms=2))
    assert not np.allclose(a, E.sum_of_gamma(key(2), (2, 3, 5), num_terms=2))


@pytest.mark.parametrize("kappa,terms", [(1.0, 3), (0.5, 4)])
def test_sum_of_gamma_moments(kappa, terms):
    """``eps = (sum_i Gamma(1/kappa, kappa/i) - log s) / kappa`` has mean ``(H_s - log s) / kappa`` and
    variance ``(sum_{i <= s} 1 / i^2) / kappa``."""
    e = np.asarray(E.sum_of_gamma(key(3), (10_000,), kappa=kappa, num_terms=terms))
    i = np.arange(1, terms + 1)
    mean, var = (np.sum(1 / i) - math.log(terms)) / kappa, np.sum(1 / i**2) / kappa
    assert_mc(e, mean)
    assert_mc((e - e.mean()) ** 2, var)


def test_sum_of_gamma_is_nearly_gumbel():
    """``kappa = 1``: ``eps = sum_{i<=s} Exp_i / i - log s`` is the maximum of ``s`` standard exponentials
    minus ``log s`` (Renyi), whose CDF ``(1 - e^{-t} / s)^s`` tends to the Gumbel CDF ``exp(-e^{-t})``
    (the sum of ``kappa`` independent draws has that same law for any ``kappa``). Checked: mean
    ``~ gamma`` (Euler), variance ``~ pi^2 / 6`` and the Kolmogorov distance to the Gumbel CDF."""
    s, N = 60, 10_000
    e = np.asarray(E.sum_of_gamma(key(4), (N,), kappa=1.0, num_terms=s))
    se = math.sqrt(math.pi**2 / 6 / N)
    assert abs(e.mean() - EULER) < K_SE * se + 1 / s  # bias H_s - log s - gamma ~ 1 / (2 s)
    # the sample variance has s.e. sqrt((mu_4 - sigma^4) / N), mu_4 = 5.4 sigma^4 for a Gumbel law; bias -1/s
    assert abs(e.var() - math.pi**2 / 6) < K_SE * math.sqrt(4.4 * (math.pi**2 / 6) ** 2 / N) + 1 / s
    t = np.sort(e)
    cdf = np.exp(-np.exp(-t))
    ks = np.max(np.maximum(np.arange(1, N + 1) / N - cdf, cdf - np.arange(N) / N))
    assert ks < 1.95 / math.sqrt(N) + 1 / s  # 0.1 % level of the Kolmogorov distribution, plus bias


# ----------------------------------------------------------------------------- SolutionPool
# ``add`` is jitted here: eagerly, each of its primitives compiles anew for every shape.
add = jax.jit(lambda pool, x, tol=1e-6: pool.add(x, tol))


def test_pool_create_dedups_and_drops_nan():
    rows = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [jnp.nan, 0.0, 1.0], [0.0, 1.0, 0.0]])
    pool = E.SolutionPool.create(rows.reshape(5, 1, 3))  # any leading shape
    assert int(pool.size) == 2 and int(pool.count) == 2 and pool.capacity == 1024
    got = {tuple(r) for r in np.asarray(pool.solutions)[np.asarray(pool.valid())]}
    assert got == {(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)}
    assert pool.solutions.dtype == jnp.float64
    assert E.SolutionPool.create(jnp.eye(3, dtype=jnp.int32), capacity=3).solutions.dtype == jnp.float64
    assert E.SolutionPool.create(np.arange(300.0)[:, None]).capacity == 1200  # 4 * distinct
    empty = E.SolutionPool.create(jnp.full((2, 3), jnp.nan), capacity=4)
    assert int(empty.size) == 0 and empty.capacity == 4
    assert int(E.SolutionPool.create(jnp.zeros((0, 3))).size) == 0
    with pytest.raises(ValueError, match="`capacity`"):
        E.SolutionPool.create(jnp.eye(3), capacity=2)
    with pytest.raises(ValueError, match="`capacity`"):
        E.SolutionPool.create(jnp.eye(3), capacity=0)
    with pytest.raises(ValueError, match="`solutions`"):
        E.SolutionPool.create(jnp.float64(1.0))


def test_pool_add_dedups_within_batch_and_against_pool():
    pool = E.SolutionPool.create(jnp.array([[1.0, 0.0], [0.0, 1.0]]), capacity=6)
    new = add(pool, jnp.array([[1.0, 0.0], [1.0, 1.0], [jnp.nan, 1.0], [1.0, 1.0 + 1e-9], [0.0, 0.0]]))
    assert int(new.count) == 4
    np.testing.assert_array_equal(new.solutions[:4], [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    assert int(add(new, new.solutions[:5]).count) == 4  # nothing new (row 4 is a zero row again)
    assert int(add(new, jnp.array([[0.5, 0.5]] * 5), 0.6).count) == 4  # within tol of a pool row
    assert int(add(new, jnp.array([[0.5, 0.5]] * 5), 0.4).count) == 5  # not within tol: one insertion
    assert int(pool.count) == 2  # pools are immutable values
    with pytest.raises(ValueError, match="`x`"):
        pool.add(jnp.ones(3))


def test_pool_fifo_wrap():
    pool = E.SolutionPool.create(jnp.array([[0.0]]), capacity=3)
    for v in (1.0, 2.0, 3.0):
        pool = add(pool, jnp.array([[v], [jnp.nan], [v]]))
    assert int(pool.count) == 4 and int(pool.size) == 3 and bool(pool.valid().all())
    np.testing.assert_array_equal(pool.solutions[:, 0], [3.0, 1.0, 2.0])  # 0 (oldest) overwritten
    pool = add(pool, jnp.array([[4.0], [1.0], [5.0]]))  # 1 is known: 4 and 5 replace 1 and 2
    np.testing.assert_array_equal(pool.solutions[:, 0], [3.0, 4.0, 5.0])


@SETTINGS
@given(
    capacity=st.integers(1, 5),
    batches=st.lists(
        st.lists(st.one_of(st.tuples(*[st.sampled_from((0.0, 1.0))] * 3), st.just((np.nan, 0.0, 0.0))), max_size=5),
        max_size=5,
    ),
)
def test_pool_add_matches_a_reference_model(capacity, batches):
    """Against a plain-Python FIFO of distinct rows (membership tested against the pool as it was
    before the batch, and against earlier rows of the batch). Batches are padded to 5 rows with ``NaN``
    rows (skipped), so that one compilation per capacity serves every example."""
    batches = [b[:capacity] for b in batches]  # at most `capacity` new rows per batch
    pad = [(np.nan, np.nan, np.nan)] * 5
    pool = E.SolutionPool.create(jnp.zeros((0, 3)), capacity=capacity)
    slots: list = [None] * capacity
    count = 0
    for b in batches:
        before = {r for r in slots if r is not None}
        seen: set = set()
        for r in b:
            if np.isnan(r[0]) or r in before or r in seen:
                continue
            seen.add(r)
            slots[count % capacity] = r
            count += 1
        pool = add(pool, jnp.asarray((b + pad)[:5]))
    assert int(pool.count) == count
    sol = np.asarray(pool.solutions)
    for i, r in enumerate(slots):
        if r is not None:
            assert tuple(sol[i]) == r


@pytest.mark.parametrize("sense", SENSES)
def test_pool_best_among_valid_rows_only(sense):
    # rows 2 and 3 of the buffer are zeros but not valid: theta . 0 = 0 would win otherwise
    pool = E.SolutionPool.create(jnp.array([[1.0, 1.0], [2.0, 0.0]]), capacity=4)
    theta = jnp.array([[1.0, 2.0], [1.0, 0.5], [-1.0, -2.0]]) * (1.0 if sense == "min" else -1.0)
    np.testing.assert_array_equal(pool.best(theta, sense), [[2.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    assert pool.best(theta[0], sense).shape == (2,)
    empty = E.SolutionPool.create(jnp.zeros((0, 2)), capacity=4)
    assert np.all(np.isnan(empty.best(theta, sense)))


def test_pool_under_jit_and_vmap():
    pool = E.SolutionPool.create(jnp.eye(3), capacity=5)
    rows = jnp.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    jitted = jax.jit(lambda p, x: p.add(x))(pool, rows)
    eager = pool.add(rows)
    np.testing.assert_array_equal(jitted.solutions, eager.solutions)
    assert int(jitted.count) == int(eager.count) == 5

    def grow(p, x):  # a training-loop style scan
        return p.add(x), p.best(-x, "min")

    final, best = jax.jit(lambda p: jax.lax.scan(grow, p, rows))(pool)
    np.testing.assert_array_equal(final.solutions, eager.solutions)
    # create sorts the rows ([e3, e2, e1]); of the tied e2 and e1, best takes the first
    np.testing.assert_array_equal(best[0], [0.0, 1.0, 0.0])
    theta = rand((4, 3), 23)
    np.testing.assert_array_equal(jax.jit(jax.vmap(lambda t: eager.best(t, "max")))(theta), eager.best(theta, "max"))
    np.testing.assert_array_equal(jax.jit(lambda p, t: p.best(t))(eager, theta), eager.best(theta))


# ----------------------------------------------------------------------------- CachedOracle
POOL_V = KNAP_V[[1, 5, 9, 14]]  # a few feasible points, most often not optimal


def _restricted_pool(capacity: int = 8) -> E.SolutionPool:
    return E.SolutionPool.create(jnp.asarray(POOL_V), capacity=capacity)


@pytest.mark.parametrize("sense", SENSES)
def test_cached_oracle_ratio_zero_answers_from_the_pool(sense):
    o = ORACLES["knapsack", sense]
    co = E.CachedOracle(o, _restricted_pool(), key(0), 0.0)
    assert (co.n, co.sense, co.sign) == (5, sense, o.sign)
    theta = rand((2, 5), 25)
    sol = co.solve(theta)
    x = brute(POOL_V, theta, sense)
    assert np.any(x != brute(KNAP_V, theta, sense))  # really the pool, not a solve
    np.testing.assert_array_equal(sol.x, x)
    np.testing.assert_allclose(sol.objective, np.sum(theta * x, -1), rtol=1e-12)
    np.testing.assert_array_equal(sol.status, int(tamejax.Status.FEASIBLE))
    np.testing.assert_array_equal(sol.bound, -o.sign * np.inf)
    np.testing.assert_array_equal(co(theta), x)


@pytest.mark.parametrize("sense", SENSES)
def test_cached_oracle_ratio_one_and_empty_pool_solve(sense):
    o = ORACLES["knapsack", sense]
    theta = rand((2, 5), 25)
    ref = o.solve(theta)
    empty = E.SolutionPool.create(jnp.full((1, 5), jnp.nan), capacity=2)
    for co in (E.CachedOracle(o, _restricted_pool(), key(1), 1.0), E.CachedOracle(o, empty, key(1), 0.0)):
        sol = co.solve(theta)
        np.testing.assert_array_equal(sol.x, ref.x)
        np.testing.assert_allclose(sol.objective, ref.objective, rtol=1e-12)
        np.testing.assert_array_equal(sol.status, int(tamejax.Status.OPTIMAL))


def test_cached_oracle_draw_follows_the_key_under_vmap():
    """Solve iff ``uniform(key) < solve_ratio``; under ``vmap`` over keys both branches run (select)."""
    o = ORACLES["knapsack", "min"]
    theta = rand((5,), 26)
    keys = jax.random.split(key(2), 64)
    pool = _restricted_pool()
    sol = jax.jit(jax.vmap(lambda k: E.CachedOracle(o, pool, k, 0.4).solve(theta)))(keys)
    solved = np.asarray(jax.vmap(lambda k: jax.random.uniform(k, ()))(keys)) < 0.4
    assert 0 < solved.sum() < 64
    np.testing.assert_array_equal(sol.status, np.where(solved, 0, 1))
    exact, cached = brute(KNAP_V, theta), brute(POOL_V, theta)
    assert np.any(exact != cached)
    np.testing.assert_array_equal(sol.x, np.where(solved[:, None], exact, cached))


def test_cached_oracle_inside_estimators_under_jit():
    """A ``CachedOracle`` is a pytree: it goes through ``jit`` as an argument; with ``solve_ratio=0``
    every estimator sees the pool as its feasible set."""
    o, V = ORACLES["knapsack", "min"], POOL_V
    co = E.CachedOracle(o, _restricted_pool(), key(3), 0.0)
    theta, g, c = rand((2, 5), 27), rand((2, 5), 28), rand((2, 5), 29)
    y = jnp.asarray(brute(V, c))
    S, sigma = 3, 0.5

    @jax.jit
    def run(co, theta):
        pert, vjp = jax.vjp(lambda t: E.perturbed(co, t, key(4), num_samples=S, sigma=sigma), theta)
        fy = jax.grad(lambda t: jnp.sum(E.fenchel_young_loss(co, t, y, key(4), num_samples=S, sigma=sigma)))(theta)
        interp = jax.vjp(lambda t: E.interpolation(co, t, lam=3.0), theta)[1](g)[0]
        spo = jax.value_and_grad(lambda t: jnp.sum(E.spo_plus_loss(co, t, c)))(theta)
        return pert, vjp(g)[0], fy, interp, spo, E.regret(co, theta, c, normalized=False)

    pert, _, fy, interp, (spo, spo_grad), reg = run(co, theta)
    z = noise_like(key(4), "gaussian", (2, S, 5))
    x_bar = brute(V, np.asarray(theta)[:, None] + sigma * z).mean(1)
    np.testing.assert_allclose(pert, x_bar, atol=1e-12)
    np.testing.assert_allclose(fy, y - x_bar, atol=1e-12)
    np.testing.assert_allclose(interp, (brute(V, theta + 3.0 * g) - brute(V, theta)) / 3.0, atol=1e-12)
    x_tilde = brute(V, 2 * theta - c)
    np.testing.assert_allclose(spo_grad, 2 * (y - x_tilde), atol=1e-12)
    np.testing.assert_allclose(spo, np.sum((2 * theta - c) * (y - x_tilde)), rtol=1e-10)
    np.testing.assert_allclose(reg, np.sum(c * (brute(V, theta) - y), -1), atol=1e-12)


def test_cached_oracle_bad_fields():
    o = ORACLES["knapsack", "min"]
    pool = _restricted_pool()
    with pytest.raises(ValueError, match="`oracle`"):
        E.CachedOracle(knapsack_mip(), pool, key(0), 0.5)
    with pytest.raises(ValueError, match="`pool`"):
        E.CachedOracle(o, jnp.eye(5), key(0), 0.5)
    with pytest.raises(ValueError, match="`pool`.*length 5"):
        E.CachedOracle(o, E.SolutionPool.create(jnp.eye(3)), key(0), 0.5)
    for r in (-0.1, 1.5, True, "half", float("nan")):
        with pytest.raises(ValueError, match="`solve_ratio`"):
            E.CachedOracle(o, pool, key(0), r)


def test_cached_oracle_refuses_batched_feasible_sets_and_bad_costs():
    o = ORACLES["knapsack", "min"]
    batched = tamejax.Oracle(
        o.problem.replace(
            c=jnp.zeros((2, 5)),
            A_ub=jnp.stack([o.problem.A_ub] * 2),
            b_ub=jnp.stack([o.problem.b_ub] * 2),
            lb=jnp.zeros((2, 5)),
            ub=jnp.stack([o.problem.ub] * 2),
        ),
        "min",
        o.backend,
    )
    with pytest.raises(ValueError, match="batch_shape"):
        E.CachedOracle(batched, _restricted_pool(), key(0), 0.0)
    co = E.CachedOracle(o, _restricted_pool(), key(0), 0.0)
    theta = rand((2, 5), 26).at[1, 2].set(jnp.nan)
    sol = jax.jit(lambda t: co.solve(t))(theta)
    assert int(sol.status[0]) == int(tamejax.Status.FEASIBLE)
    assert int(sol.status[1]) == int(tamejax.Status.ERROR)  # as a solve of NaN costs: no made-up answer
    assert bool(jnp.all(jnp.isnan(sol.x[1]))) and bool(jnp.isnan(sol.objective[1]))


def test_identity_and_pool_validate_their_options():
    o = ORACLES["knapsack", "min"]
    with pytest.raises(ValueError, match="`negative`"):
        E.identity(o, rand((5,), 1), negative=1)
    with pytest.raises(ValueError, match="`tol`"):
        _restricted_pool().add(jnp.eye(5), tol=-1.0)
    with pytest.raises(ValueError, match="real costs"):
        o(jnp.ones(5, jnp.complex64))


# ----------------------------------------------------------------------------- batched problems
def test_estimators_with_a_batched_problem():
    """A batched ``Oracle.problem`` (one feasible set per instance): the Monte-Carlo sample axis must not
    be confused with the problem's batch axis (a regression test: with ``num_samples`` 1 or equal to the
    batch size, the samples of instance ``b`` were solved over the wrong feasible sets, silently)."""
    ub = jnp.array([[1.0, 1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0, 1.0]])  # {e1, e2, e3} and {e3, e4, e5}
    p = tamejax.MIP(jnp.zeros((2, 5)), A_eq=jnp.ones((2, 1, 5)), b_eq=jnp.ones((2, 1)), ub=ub, integrality=True)
    o = Oracle(p, backend="highs", rel_gap=0.0)
    Vs = [np.eye(5)[:3], np.eye(5)[2:]]
    theta, g, sigma = rand((2, 5), 30), rand((2, 5), 31), 0.5
    for S in (1, 2, 3):
        x = E.perturbed(o, theta, key(5), num_samples=S, sigma=sigma)
        z = noise_like(key(5), "gaussian", (2, S, 5))
        xs = np.stack([brute(Vs[b], np.asarray(theta[b]) + sigma * z[b]) for b in range(2)])
        np.testing.assert_allclose(x, xs.mean(1), atol=1e-12)
    fy = E.fenchel_young_loss(o, theta, x, key(5), num_samples=S, sigma=sigma)
    expected = np.sum(theta * x, -1) - np.mean(np.sum((theta[:, None] + sigma * z) * xs, -1), -1)
    np.testing.assert_allclose(fy, expected, rtol=1e-10)
    xi, vjp_i = jax.vjp(lambda t: E.imle(o, t, key(6), num_samples=3, num_terms=2, two_sided=True), theta)
    ts = np.asarray(theta)[:, None] + np.asarray(E.sum_of_gamma(key(6), (2, 3, 5), num_terms=2))
    np.testing.assert_allclose(xi, np.stack([brute(Vs[b], ts[b]) for b in range(2)]).mean(1), atol=1e-12)
    gs = 10.0 * np.asarray(g)[:, None]
    two = [(brute(Vs[b], ts[b] + gs[b]) - brute(Vs[b], ts[b] - gs[b])).mean(0) / 20.0 for b in range(2)]
    np.testing.assert_allclose(vjp_i(g)[0], np.stack(two), atol=1e-12)
    x_star = np.stack([brute(Vs[b], theta[b]) for b in range(2)])
    np.testing.assert_allclose(E.identity(o, theta), x_star)
    c = rand((2, 5), 32)
    reg = [np.dot(c[b], brute(Vs[b], theta[b]) - brute(Vs[b], c[b])) for b in range(2)]
    np.testing.assert_allclose(E.regret(o, theta, c, normalized=False), reg, atol=1e-12)
    np.testing.assert_allclose(E.spo_plus_loss(o, c, c), 0.0, atol=1e-12)


# ----------------------------------------------------------------------------- jit / vmap / grad
def _estimator_losses():
    o = ORACLES["knapsack", "min"]
    om = ORACLES["knapsack", "max"]
    w = jnp.asarray(np.arange(1.0, 6.0))
    c = jnp.asarray(np.random.default_rng(33).normal(size=5))
    y = jnp.asarray(brute(KNAP_V, c))
    k = key(7)
    return {
        "perturbed": lambda t: E.perturbed(o, t, k, num_samples=3) @ w,
        "perturbed_mult_gumbel_max": lambda t: (
            E.perturbed(om, t, k, num_samples=3, noise="gumbel", multiplicative=True) @ w
        ),
        "fenchel_young": lambda t: E.fenchel_young_loss(o, t, y, k, num_samples=3),
        "spo_plus": lambda t: E.spo_plus_loss(om, t, c),
        "interpolation": lambda t: E.interpolation(o, t, lam=3.0) @ w,
        "identity": lambda t: E.identity(om, t) @ w,
        "imle": lambda t: E.imle(o, t, k, num_samples=2, lam=3.0, num_terms=2, two_sided=True) @ w,
        "regret": lambda t: E.regret(o, t, c),
    }


@pytest.mark.parametrize("name", list(_estimator_losses()))
def test_jit_vmap_grad(name):
    """``jit(vmap)`` and ``jit(vmap(grad))`` agree with per-instance ``jit(value_and_grad)`` calls (inside
    ``vmap`` the key is shared, so every instance sees the noise of a single call with that key; eager
    calls are what every other test makes)."""
    loss = _estimator_losses()[name]
    thetas = rand((2, 5), 34)
    single = jax.jit(jax.value_and_grad(loss))
    values, grads = (np.stack(v) for v in zip(*[single(t) for t in thetas], strict=True))
    np.testing.assert_allclose(jax.jit(jax.vmap(loss))(thetas), values, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jax.jit(jax.vmap(jax.grad(loss)))(thetas), grads, rtol=1e-12, atol=1e-12)
    if name != "regret":
        assert np.any(grads != 0)


# ----------------------------------------------------------------------------- bad input
def _bad_calls():
    o = ORACLES["knapsack", "min"]
    t, k = jnp.ones(5), key(0)
    bad_t = jnp.ones(4)
    calls = []
    for v in (0.0, -1.0, float("nan"), float("inf"), "big", None):
        calls += [
            ("sigma", lambda v=v: E.perturbed(o, t, k, sigma=v)),
            ("sigma", lambda v=v: E.fenchel_young_loss(o, t, t, k, sigma=v)),
            ("sigma", lambda v=v: E.imle(o, t, k, sigma=v)),
            ("lam", lambda v=v: E.interpolation(o, t, lam=v)),
            ("lam", lambda v=v: E.imle(o, t, k, lam=v)),
            ("kappa", lambda v=v: E.imle(o, t, k, kappa=v)),
            ("kappa", lambda v=v: E.sum_of_gamma(k, (2,), kappa=v)),
        ]
    for v in (0, -2, 2.5, True, "3", None):
        calls += [
            ("num_samples", lambda v=v: E.perturbed(o, t, k, num_samples=v)),
            ("num_samples", lambda v=v: E.fenchel_young_loss(o, t, t, k, num_samples=v)),
            ("num_samples", lambda v=v: E.imle(o, t, k, num_samples=v)),
            ("num_terms", lambda v=v: E.imle(o, t, k, num_terms=v)),
            ("num_terms", lambda v=v: E.sum_of_gamma(k, (2,), num_terms=v)),
        ]
    for v in ("uniform", "Gaussian", None):
        calls += [
            ("noise", lambda v=v: E.perturbed(o, t, k, noise=v)),
            ("noise", lambda v=v: E.fenchel_young_loss(o, t, t, k, noise=v)),
        ]
    calls += [
        ("x_true", lambda: E.fenchel_young_loss(o, t, bad_t, k)),
        ("x_true", lambda: E.fenchel_young_loss(o, jnp.ones((2, 5)), t, k)),
        ("x_true", lambda: E.spo_plus_loss(o, t, t, bad_t)),
        ("c_true", lambda: E.spo_plus_loss(o, t, bad_t)),
        ("c_true", lambda: E.regret(o, t, jnp.ones((2, 5)))),
        ("z_true", lambda: E.regret(o, jnp.ones((2, 5)), jnp.ones((2, 5)), jnp.ones(3))),
        ("z_true", lambda: E.regret(o, t, t, jnp.ones(1))),
    ]
    for fn in (
        lambda th: E.perturbed(o, th, k),
        lambda th: E.fenchel_young_loss(o, th, th, k),
        lambda th: E.spo_plus_loss(o, th, th),
        lambda th: E.interpolation(o, th),
        lambda th: E.identity(o, th),
        lambda th: E.imle(o, th, k),
        lambda th: E.regret(o, th, th),
    ):
        calls += [("theta", lambda fn=fn: fn(bad_t)), ("theta", lambda fn=fn: fn(jnp.float64(1.0)))]
    for not_oracle in (knapsack_mip(), lambda th: th, None):
        calls += [
            ("oracle", lambda q=not_oracle: E.perturbed(q, t, k)),
            ("oracle", lambda q=not_oracle: E.fenchel_young_loss(q, t, t, k)),
            ("oracle", lambda q=not_oracle: E.spo_plus_loss(q, t, t)),
            ("oracle", lambda q=not_oracle: E.interpolation(q, t)),
            ("oracle", lambda q=not_oracle: E.identity(q, t)),
            ("oracle", lambda q=not_oracle: E.imle(q, t, k)),
            ("oracle", lambda q=not_oracle: E.regret(q, t, t)),
        ]
    return calls


BAD_CALLS = _bad_calls()


@pytest.mark.parametrize("i", range(len(BAD_CALLS)), ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD_CALLS)])
def test_bad_input_raises_value_error_naming_the_argument(i):
    name, call = BAD_CALLS[i]
    with pytest.raises(ValueError, match=f"`{name}`"):
        call()


def test_bad_input_under_jit_and_traced_hyper_parameters():
    o = ORACLES["knapsack", "min"]
    t = jnp.ones(5)
    with pytest.raises(ValueError, match="`sigma`"):
        jax.jit(lambda th: E.perturbed(o, th, key(0), sigma=-1.0))(t)
    with pytest.raises(ValueError, match="`sigma`"):  # hyper-parameters are static: a tracer is refused
        jax.jit(lambda s: E.perturbed(o, t, key(0), sigma=s))(1.0)
    with pytest.raises(ValueError, match="`theta`"):
        jax.jit(lambda th: E.identity(o, th))(jnp.ones(6))
    # concrete 0-d arrays are accepted as numbers
    x = E.perturbed(o, t, key(0), sigma=jnp.float64(0.5), num_samples=np.int64(2))
    assert x.shape == (5,)


@SETTINGS
@given(
    sigma=st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf"))),
    lam=st.one_of(st.floats(max_value=0.0), st.just(float("inf"))),
)
def test_nonpositive_hyper_parameters_always_rejected(sigma, lam):
    o = ORACLES["simplex3", "min"]
    t = jnp.ones(3)
    with pytest.raises(ValueError, match="`sigma`"):
        E.perturbed(o, t, key(0), sigma=sigma)
    with pytest.raises(ValueError, match="`lam`"):
        E.interpolation(o, t, lam=lam)


def test_oracle_bad_sense():
    with pytest.raises(ValueError, match="`sense`"):
        Oracle(simplex_mip(3), sense="maximize")
    with pytest.raises(ValueError, match="`problem`"):
        Oracle(jnp.ones(3))
