"""Binary quantizers: forward values and gradients against their closed forms (clip boundaries included)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.scipy.special import erf

from tamejax.nn import quantizers as q

SIGN_QUANTIZERS = [q.ste_sign, q.approx_sign, q.swish_sign, q.gaussian_sign, q.gumbel_sign]
GRID = np.array([-3.0, -1.5, -1.0, -0.75, -0.5, -0.1, 0.0, 0.1, 0.5, 0.75, 1.0, 1.5, 3.0], np.float32)


def elementwise_grad(f, x):
    """d f(x_i) / d x_i for an elementwise f."""
    return jax.grad(lambda v: jnp.sum(f(v)))(x)


def np_sign(x):
    return np.where(np.asarray(x) >= 0, 1.0, -1.0)


# ---------------------------------------------------------------------------- forward
@pytest.mark.parametrize("f", SIGN_QUANTIZERS, ids=lambda f: f.__name__)
def test_forward_is_sign_with_sign0_plus1(f):
    out = f(jnp.asarray(GRID))
    np.testing.assert_array_equal(np.asarray(out), np_sign(GRID))
    assert out.dtype == jnp.float32
    assert float(f(jnp.float32(0.0))) == 1.0
    assert float(f(jnp.float32(-0.0))) == 1.0  # -0.0 >= 0


def test_subnormals_count_as_zero():
    # XLA on CPU flushes subnormals to zero: a tiny negative subnormal has sign +1 (documented in `sign`)
    tiny = jnp.asarray([-1e-40, 1e-40], jnp.float32)
    assert np.all(np.asarray(q.sign(tiny)) == np.asarray(q.ste_sign(tiny)))
    assert float(q.sign(jnp.float32(-np.finfo(np.float32).tiny))) == -1.0  # smallest normal: still negative


def test_sign_helper_and_heaviside_forward():
    np.testing.assert_array_equal(np.asarray(q.sign(GRID)), np_sign(GRID))
    np.testing.assert_array_equal(np.asarray(q.ste_heaviside(GRID)), (GRID >= 0).astype(np.float32))
    assert float(q.ste_heaviside(jnp.float32(0.0))) == 1.0


@given(
    hnp.arrays(
        np.float32, hnp.array_shapes(max_dims=3, max_side=5), elements=st.floats(-4, 4, width=32, allow_subnormal=False)
    )
)
@settings(max_examples=30, deadline=None)
def test_forward_property(x):
    for f in (q.ste_sign, q.approx_sign, q.swish_sign):
        out = np.asarray(f(x))
        assert out.shape == x.shape
        np.testing.assert_array_equal(out, np_sign(x))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
def test_dtype_preserved(dtype):
    x = jnp.asarray(GRID, dtype)
    for f in SIGN_QUANTIZERS + [q.ste_heaviside, q.magnitude_aware_sign]:
        assert f(x).dtype == dtype
        assert elementwise_grad(f, x).dtype == dtype


# ---------------------------------------------------------------------------- gradients: closed forms
@pytest.mark.parametrize("clip", [0.5, 1.0, 2.0])
def test_ste_sign_gradient_and_inclusive_boundary(clip):
    x = jnp.asarray(GRID)
    expected = (np.abs(GRID) <= clip).astype(np.float32)
    np.testing.assert_array_equal(
        np.asarray(elementwise_grad(functools.partial(q.ste_sign, clip_value=clip), x)), expected
    )
    c = np.float32(clip)
    above = np.nextafter(c, np.float32(np.inf))
    below = np.nextafter(c, np.float32(0))
    pts = jnp.asarray([c, -c, above, -above, below, -below], jnp.float32)
    g = np.asarray(elementwise_grad(functools.partial(q.ste_sign, clip_value=clip), pts))
    np.testing.assert_array_equal(g, [1, 1, 0, 0, 1, 1])  # |x| = c: gradient 1 (Larq's less_equal)


def test_ste_sign_no_clip():
    x = jnp.asarray(GRID * 100)
    for clip in (None, math.inf):
        np.testing.assert_array_equal(
            np.asarray(elementwise_grad(lambda v, c=clip: q.ste_sign(v, c), x)), np.ones(GRID.shape)
        )


def test_ste_heaviside_gradient():
    x = jnp.asarray([-1.5, -1.0, 0.0, 1.0, np.nextafter(np.float32(1), np.float32(2))], jnp.float32)
    np.testing.assert_array_equal(np.asarray(elementwise_grad(q.ste_heaviside, x)), [0, 1, 1, 1, 0])
    g = elementwise_grad(functools.partial(q.ste_heaviside, clip_value=2.0), x)
    np.testing.assert_array_equal(np.asarray(g), [1, 1, 1, 1, 1])


def test_approx_sign_gradient():
    x = jnp.asarray(GRID)
    expected = np.where(np.abs(GRID) <= 1, 2 - 2 * np.abs(GRID), 0).astype(np.float32)
    np.testing.assert_allclose(np.asarray(elementwise_grad(q.approx_sign, x)), expected, rtol=0, atol=1e-6)

    # it is the derivative of Bi-Real's piecewise quadratic F
    def F(v):
        return jnp.where(v < -1, -1.0, jnp.where(v < 0, 2 * v + v * v, jnp.where(v < 1, 2 * v - v * v, 1.0)))

    inner = jnp.asarray([-0.9, -0.5, -0.2, 0.2, 0.5, 0.9], jnp.float32)
    np.testing.assert_allclose(elementwise_grad(q.approx_sign, inner), elementwise_grad(F, inner), atol=1e-6)


@pytest.mark.parametrize("beta", [1.0, 5.0, 10.0])
def test_swish_sign_gradient_is_derivative_of_signswish(beta):
    def signswish(v):  # Darabi et al. 2018: 2 sigma(bx) (1 + bx (1 - sigma(bx))) - 1
        s = jax.nn.sigmoid(beta * v)
        return 2 * s * (1 + beta * v * (1 - s)) - 1

    x = jnp.asarray(GRID)
    got = elementwise_grad(functools.partial(q.swish_sign, beta=beta), x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(elementwise_grad(signswish, x)), rtol=1e-4, atol=2e-5 * beta)
    # Larq's closed form, evaluated in float64 numpy
    bx = beta * GRID.astype(np.float64)
    larq = beta * (2 - bx * np.tanh(bx / 2)) / (1 + np.cosh(bx))
    np.testing.assert_allclose(np.asarray(got), larq, rtol=1e-5, atol=1e-6)
    assert float(elementwise_grad(functools.partial(q.swish_sign, beta=beta), jnp.float32(0))) == pytest.approx(beta)


def test_swish_sign_large_inputs_finite():
    g = elementwise_grad(q.swish_sign, jnp.asarray([-1e4, -100.0, 100.0, 1e4], jnp.float32))
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_allclose(np.asarray(g), 0, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64])
def test_swish_sign_gradient_at_infinity_and_cutoff(dtype):
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        pytest.skip("float64 needs x64")
    x = jnp.asarray([-np.inf, -1e30 if dtype != jnp.float16 else -6e4, np.inf, 15.0, 17.0], dtype)
    g = np.asarray(elementwise_grad(q.swish_sign, x)).astype(np.float64)
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(g[:3], 0.0)
    # |beta x| = 75 (inside the cutoff): the float64 closed form; |beta x| = 85: exactly 0
    bx = 75.0
    expected = 5 * (2 - bx * np.tanh(bx / 2)) / (1 + np.cosh(bx))
    if dtype == jnp.float16:  # cosh(75) overflows float16: the quotient is 0
        assert g[3] == 0.0
    else:
        np.testing.assert_allclose(g[3], expected, rtol=0.02)
    assert g[4] == 0.0


def test_nan_gives_plus_one_like_pack():
    from tamejax.nn.bitpack import pack, unpack

    x = jnp.asarray([np.nan, -np.nan, -1.0, 0.0, -0.0, np.inf, -np.inf], jnp.float32)
    expected = [1.0, 1.0, -1.0, 1.0, 1.0, 1.0, -1.0]
    for f in SIGN_QUANTIZERS + [q.sign]:
        np.testing.assert_array_equal(np.asarray(f(x)), expected, err_msg=getattr(f, "__name__", "?"))
    np.testing.assert_array_equal(np.asarray(unpack(pack(x), x.shape[0])), expected)
    np.testing.assert_array_equal(np.asarray(q.ste_heaviside(x)), (np.asarray(expected) + 1) / 2)


@pytest.mark.parametrize("sigma", [0.25, 1.0, 2.0])
def test_gaussian_sign_gradient_is_derivative_of_erf_expectation(sigma):
    x = jnp.asarray(GRID)
    f = functools.partial(q.gaussian_sign, sigma=sigma)
    expected = np.sqrt(2 / np.pi) / sigma * np.exp(-(GRID.astype(np.float64) ** 2) / (2 * sigma**2))
    np.testing.assert_allclose(np.asarray(elementwise_grad(f, x)), expected, rtol=1e-5, atol=1e-7)
    mean = lambda v: erf(v / (sigma * np.sqrt(2)))  # noqa: E731
    np.testing.assert_allclose(
        np.asarray(elementwise_grad(f, x)), np.asarray(elementwise_grad(mean, x)), rtol=1e-5, atol=1e-7
    )
    # the sampled forward pass has the same gradient (that of the expectation at x)
    fk = lambda v: q.gaussian_sign(v, sigma, key=jax.random.key(3))  # noqa: E731
    np.testing.assert_allclose(np.asarray(elementwise_grad(fk, x)), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_gumbel_sign_gradient_is_derivative_of_tanh_expectation(tau):
    x = jnp.asarray(GRID)
    f = functools.partial(q.gumbel_sign, tau=tau)
    t = np.tanh(GRID.astype(np.float64) / tau)
    np.testing.assert_allclose(np.asarray(elementwise_grad(f, x)), (1 - t * t) / tau, rtol=1e-5, atol=1e-7)
    mean = lambda v: jnp.tanh(v / tau)  # noqa: E731  (float32 autodiff of tanh cancels in the tails: atol)
    np.testing.assert_allclose(
        np.asarray(elementwise_grad(f, x)), np.asarray(elementwise_grad(mean, x)), rtol=1e-5, atol=1e-6
    )


# ---------------------------------------------------------------------------- perturbed: the expectations (Monte Carlo)
def test_gaussian_sign_samples_average_to_erf():
    sigma, n = 0.7, 20000
    x = jnp.asarray([-1.0, -0.3, 0.0, 0.2, 0.8], jnp.float32)
    xs = jnp.broadcast_to(x, (n, x.size))
    samples = np.asarray(q.gaussian_sign(xs, sigma, key=jax.random.key(0)))
    assert set(np.unique(samples)) <= {-1.0, 1.0}
    expected = np.asarray(erf(x / (sigma * np.sqrt(2))))
    np.testing.assert_allclose(samples.mean(0), expected, atol=4 / np.sqrt(n))  # 4 standard errors (sd <= 1)


def test_gumbel_sign_samples_average_to_tanh_and_match_gumbel_max():
    tau, n = 0.6, 20000
    x = jnp.asarray([-1.0, -0.3, 0.0, 0.2, 0.8], jnp.float32)
    xs = jnp.broadcast_to(x, (n, x.size))
    samples = np.asarray(q.gumbel_sign(xs, tau, key=jax.random.key(1)))
    np.testing.assert_allclose(samples.mean(0), np.tanh(np.asarray(x) / tau), atol=4 / np.sqrt(n))
    # the Gumbel-max trick on the two alternatives s = +1, -1 with scores (x, -x), independently sampled
    g = np.asarray(jax.random.gumbel(jax.random.key(2), (n, x.size, 2)))
    gm = np.where(np.asarray(x) + tau * g[..., 0] >= -np.asarray(x) + tau * g[..., 1], 1.0, -1.0)
    np.testing.assert_allclose(gm.mean(0), np.tanh(np.asarray(x) / tau), atol=4 / np.sqrt(n))


def test_perturbed_without_key_is_deterministic_sign_and_key_matters():
    x = jnp.asarray(GRID)
    for f in (q.gaussian_sign, q.gumbel_sign):
        np.testing.assert_array_equal(np.asarray(f(x)), np_sign(GRID))
        a = f(jnp.zeros(1000) + 0.01, key=jax.random.key(0))
        b = f(jnp.zeros(1000) + 0.01, key=jax.random.key(1))
        assert not np.array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(f(x, key=jax.random.key(5))), np.asarray(f(x, key=jax.random.key(5))))


# ---------------------------------------------------------------------------- magnitude-aware
def test_magnitude_aware_sign_forward_and_gradient():
    w = jax.random.normal(jax.random.key(0), (3, 3, 4, 5)) * 0.8
    out = q.magnitude_aware_sign(w)
    alpha = np.mean(np.abs(np.asarray(w)), axis=(0, 1, 2), keepdims=True)  # per output channel
    np.testing.assert_allclose(np.asarray(out), alpha * np_sign(w), rtol=1e-6)
    g = elementwise_grad(q.magnitude_aware_sign, w)  # alpha held constant (Larq)
    np.testing.assert_allclose(np.asarray(g), np.broadcast_to(alpha, w.shape) * (np.abs(np.asarray(w)) <= 1), rtol=1e-6)
    out_ax = q.magnitude_aware_sign(w, axis=-1)
    alpha_ax = np.mean(np.abs(np.asarray(w)), axis=-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(out_ax), alpha_ax * np_sign(w), rtol=1e-6)
    v = jnp.asarray([-2.0, 0.0, 1.0])
    np.testing.assert_allclose(np.asarray(q.magnitude_aware_sign(v)), [-1.0, 1.0, 1.0])  # 1-D: one scalar scale


def test_magnitude_aware_sign_on_activations_averages_over_the_batch():
    # as an input quantizer on (batch, features): the default scale is per feature, over the whole batch
    x = jnp.asarray([[1.0, -4.0], [-3.0, 2.0]])
    np.testing.assert_allclose(np.asarray(q.magnitude_aware_sign(x)), [[2.0, -3.0], [-2.0, 3.0]])
    # so an example's output depends on the rest of the batch; axis=-1 gives one scale per example
    np.testing.assert_allclose(np.asarray(q.magnitude_aware_sign(x[:1])), [[1.0, -4.0]])
    np.testing.assert_allclose(np.asarray(q.magnitude_aware_sign(x, axis=-1)), [[2.5, -2.5], [-2.5, 2.5]])


# ---------------------------------------------------------------------------- transformations
def test_jit_vmap_and_forward_mode_agree():
    x = jnp.asarray(GRID)
    for name, f in q.QUANTIZERS.items():
        eager_val, eager_grad = f(x), elementwise_grad(f, x)
        np.testing.assert_array_equal(np.asarray(jax.jit(f)(x)), np.asarray(eager_val), err_msg=name)
        np.testing.assert_allclose(np.asarray(jax.jit(lambda v, f=f: elementwise_grad(f, v))(x)), eager_grad, rtol=1e-5)
        if name != "magnitude_aware_sign":  # elementwise ones
            np.testing.assert_array_equal(np.asarray(jax.vmap(f)(x)), np.asarray(eager_val), err_msg=name)
            _, tangent = jax.jvp(f, (x,), (jnp.ones_like(x),))
            np.testing.assert_allclose(np.asarray(tangent), np.asarray(eager_grad), rtol=1e-6, err_msg=name)
    kf = jax.jit(lambda v, k: q.gumbel_sign(v, 0.5, key=k))
    np.testing.assert_array_equal(
        np.asarray(kf(x, jax.random.key(0))), np.asarray(q.gumbel_sign(x, 0.5, key=jax.random.key(0)))
    )


# ---------------------------------------------------------------------------- registry and bad input
def test_get_quantizer_names_callables_none():
    for name, f in q.QUANTIZERS.items():
        assert q.get_quantizer(name) is f
    custom = functools.partial(q.ste_sign, clip_value=0.3)
    assert q.get_quantizer(custom) is custom
    x = jnp.asarray(GRID)
    np.testing.assert_array_equal(np.asarray(q.get_quantizer(None)(x)), GRID)
    assert q.is_stochastic("gaussian_sign") and q.is_stochastic(functools.partial(q.gumbel_sign, tau=2.0))
    assert not q.is_stochastic("ste_sign") and not q.is_stochastic(None) and not q.is_stochastic(jnp.tanh)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="quantizer.*'sgn'"):
        q.get_quantizer("sgn")
    with pytest.raises(TypeError, match="quantizer"):
        q.get_quantizer(3)
    for bad in (0.0, -1.0, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="clip_value"):
            q.ste_sign(jnp.ones(3), clip_value=bad)
        with pytest.raises(ValueError, match="clip_value"):
            q.ste_heaviside(jnp.ones(3), clip_value=bad)
    for bad in (0.0, -2.0, float("inf"), None):
        with pytest.raises(ValueError, match="beta"):
            q.swish_sign(jnp.ones(3), beta=bad)
        with pytest.raises(ValueError, match="sigma"):
            q.gaussian_sign(jnp.ones(3), sigma=bad)
        with pytest.raises(ValueError, match="tau"):
            q.gumbel_sign(jnp.ones(3), tau=bad)
    with pytest.raises(TypeError, match="floating"):
        q.ste_sign(jnp.arange(3))
    with pytest.raises(ValueError, match="at least 1 dimension"):
        q.magnitude_aware_sign(jnp.float32(1.0))
    with pytest.raises(ValueError, match="axis"):
        q.magnitude_aware_sign(jnp.ones((2, 3)), axis=2)
