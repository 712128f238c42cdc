"""Binary Flax layers: equal to flax Dense/Conv without quantizers, Linen == NNX, binary arithmetic, padding."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from tamejax.nn.layers import BinaryConv, BinaryDense, NNXBinaryConv, NNXBinaryLinear, binary_conv, binary_dense
from tamejax.nn.quantizers import gaussian_sign, ste_sign

KEY = jax.random.key(0)


def normal(shape, seed=1, scale=1.0):
    return scale * jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def pm1(x):
    return np.where(np.asarray(x) >= 0, 1.0, -1.0).astype(np.float32)


def nnx_copy(module, params):
    """Copy Linen params into an NNX module (same layout)."""
    module.kernel[...] = params["kernel"]
    if "bias" in params:
        module.bias[...] = params["bias"]
    return module


# ---------------------------------------------------------------------------- no quantizers == flax
@pytest.mark.parametrize("shape", [(5,), (4, 5), (2, 3, 5)])
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_without_quantizers_is_flax_dense(shape, use_bias):
    x = normal(shape)
    ref = nn.Dense(7, use_bias=use_bias)
    ours = BinaryDense(7, use_bias=use_bias)
    p_ref, p_ours = ref.init(KEY, x), ours.init(KEY, x)
    assert jax.tree.map(jnp.shape, p_ref) == jax.tree.map(jnp.shape, p_ours)
    for a, b in zip(jax.tree.leaves(p_ref), jax.tree.leaves(p_ours), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # same initialization too
    np.testing.assert_array_equal(np.asarray(ours.apply(p_ref, x)), np.asarray(ref.apply(p_ref, x)))
    lin = nnx.Linear(5, 7, use_bias=use_bias, rngs=nnx.Rngs(0))
    bl = nnx_copy(NNXBinaryLinear(5, 7, use_bias=use_bias, rngs=nnx.Rngs(1)), p_ref["params"])
    nnx_copy(lin, p_ref["params"])
    np.testing.assert_array_equal(np.asarray(bl(x)), np.asarray(lin(x)))


_slow = pytest.mark.slow
CONV_CASES = [
    # (kernel_size, input shape, kwargs)
    ((3,), (2, 9, 3), {}),
    pytest.param((3,), (2, 9, 3), {"padding": "VALID", "strides": 2}, marks=_slow),
    pytest.param((4,), (2, 9, 3), {"padding": "CAUSAL", "kernel_dilation": 2}, marks=_slow),
    pytest.param((3, 3), (2, 7, 7, 3), {}, marks=_slow),
    ((3, 3), (2, 8, 7, 3), {"strides": 2}),
    pytest.param((3, 2), (2, 7, 7, 3), {"padding": [(1, 2), (0, 1)]}, marks=_slow),
    pytest.param((3, 3), (2, 7, 7, 3), {"padding": 2, "kernel_dilation": (2, 1)}, marks=_slow),
    ((3, 3), (2, 7, 7, 4), {"feature_group_count": 2}),
    pytest.param((3, 3), (7, 7, 3), {}, marks=_slow),  # unbatched
    pytest.param((3, 3), (2, 2, 6, 6, 3), {"padding": "CIRCULAR"}, marks=_slow),  # two batch axes
]


@pytest.mark.parametrize(("kernel_size", "shape", "kwargs"), CONV_CASES)
def test_conv_without_quantizers_is_flax_conv(kernel_size, shape, kwargs):
    x = normal(shape)
    ref = nn.Conv(6, kernel_size, **kwargs)
    ours = BinaryConv(6, kernel_size, **kwargs)
    p_ref, p_ours = ref.init(KEY, x), ours.init(KEY, x)
    assert jax.tree.map(jnp.shape, p_ref) == jax.tree.map(jnp.shape, p_ours)
    for a, b in zip(jax.tree.leaves(p_ref), jax.tree.leaves(p_ours), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    y_ref = ref.apply(p_ref, x)
    np.testing.assert_array_equal(np.asarray(ours.apply(p_ref, x)), np.asarray(y_ref))
    strides = kwargs.pop("strides", 1)
    conv = nnx_copy(nnx.Conv(shape[-1], 6, kernel_size, strides, rngs=nnx.Rngs(0), **kwargs), p_ref["params"])
    bconv = nnx_copy(NNXBinaryConv(shape[-1], 6, kernel_size, strides, rngs=nnx.Rngs(0), **kwargs), p_ref["params"])
    np.testing.assert_array_equal(np.asarray(bconv(x)), np.asarray(conv(x)))
    np.testing.assert_array_equal(np.asarray(bconv(x)), np.asarray(y_ref))


# ---------------------------------------------------------------------------- binary arithmetic (oracles)
def test_binary_dense_is_integer_dot_of_signs():
    x, w, b = normal((6, 33), 1), normal((33, 5), 2, 0.3), normal((5,), 3)
    layer = BinaryDense(5, input_quantizer="ste_sign", kernel_quantizer="ste_sign")
    params = {"params": {"kernel": w, "bias": b}}
    y = layer.apply(params, x)
    exact = pm1(x).astype(np.int64) @ pm1(w).astype(np.int64)  # integer oracle
    y0 = layer.clone(use_bias=False).apply({"params": {"kernel": w}}, x)
    np.testing.assert_array_equal(np.asarray(y0), exact.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y0 + b))
    assert np.all((exact % 2) == 1)  # 33 terms of +-1: odd


def test_binary_dense_gradients_are_the_ste_closed_form():
    x, w = normal((4, 8), 1), normal((8, 3), 2, 0.8)
    c = normal((4, 3), 3)
    layer = BinaryDense(3, use_bias=False, input_quantizer="ste_sign", kernel_quantizer="ste_sign")

    def loss(w, x):
        return jnp.sum(layer.apply({"params": {"kernel": w}}, x) * c)

    gw, gx = jax.grad(loss, argnums=(0, 1))(w, x)
    # d/dW sum(c * (sign x) (sign W)) = (sign x)^T c * 1{|W| <= 1};  d/dx = c (sign W)^T * 1{|x| <= 1}
    np.testing.assert_allclose(np.asarray(gw), (pm1(x).T @ np.asarray(c)) * (np.abs(np.asarray(w)) <= 1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gx), (np.asarray(c) @ pm1(w).T) * (np.abs(np.asarray(x)) <= 1), rtol=1e-5)


@pytest.mark.parametrize("padding", ["SAME", pytest.param(1, marks=_slow), [(2, 0), (1, 1)], "CAUSAL"])
def test_binary_conv_pads_with_plus_one(padding):
    rank = 1 if padding == "CAUSAL" else 2
    ks = (3,) if rank == 1 else (3, 3)
    x = normal((2, 6, 3) if rank == 1 else (2, 6, 5, 3), 1)
    w = normal(ks + (3, 4), 2, 0.5)
    layer = BinaryConv(4, ks, padding=padding, use_bias=False, input_quantizer="ste_sign", kernel_quantizer="ste_sign")
    y = np.asarray(layer.apply({"params": {"kernel": w}}, x))
    # oracle: pad sign(x) with +1 explicitly, then a VALID flax convolution of the +-1 arrays
    if padding == "SAME":
        pads = [(1, 1), (1, 1)]
    elif padding == 1:
        pads = [(1, 1), (1, 1)]
    elif padding == "CAUSAL":
        pads = [(2, 0)]
    else:
        pads = padding
    xp = np.pad(pm1(x), [(0, 0), *pads, (0, 0)], constant_values=1.0)
    ref = nn.Conv(4, ks, padding="VALID", use_bias=False).apply({"params": {"kernel": pm1(w)}}, xp)
    np.testing.assert_array_equal(y, np.asarray(ref))
    assert np.all(y % 2 == 1)  # 9*3 or 3*3 terms of +-1 everywhere, borders included: binary padding
    # pad_values=0 gives zero padding instead (even sums appear at the borders)
    zero = BinaryConv(4, ks, padding=padding, use_bias=False, input_quantizer="ste_sign", kernel_quantizer="ste_sign")
    zero = zero.clone(pad_values=0.0)
    y0 = np.asarray(zero.apply({"params": {"kernel": w}}, x))
    ref0 = nn.Conv(4, ks, padding=padding, use_bias=False).apply({"params": {"kernel": pm1(w)}}, pm1(x))
    np.testing.assert_array_equal(y0, np.asarray(ref0))


def test_conv_same_stride_padding_matches_lax_pads():
    # stride 2 on an even length: SAME pads asymmetrically (0, 1); our explicit padding must agree with lax.
    x, w = normal((1, 8, 8, 2), 1), normal((3, 3, 2, 2), 2)
    y = binary_conv(x, w, strides=2, padding="SAME", input_quantizer="ste_sign", pad_values=0.0)
    y1 = binary_conv(x, w, strides=2, padding="SAME", input_quantizer="ste_sign", pad_values=1.0)
    xs = pm1(x)
    ref = nn.Conv(2, (3, 3), strides=2, use_bias=False).apply({"params": {"kernel": w}}, xs)
    np.testing.assert_allclose(np.asarray(y), np.asarray(ref), rtol=1e-6)
    xp = np.pad(xs, [(0, 0), (0, 1), (0, 1), (0, 0)], constant_values=1.0)
    ref1 = nn.Conv(2, (3, 3), strides=2, padding="VALID", use_bias=False).apply({"params": {"kernel": w}}, xp)
    np.testing.assert_allclose(np.asarray(y1), np.asarray(ref1), rtol=1e-6)


# ---------------------------------------------------------------------------- Linen == NNX
@given(
    q_in=st.sampled_from([None, "ste_sign", "approx_sign", "swish_sign", "ste_heaviside"]),
    q_k=st.sampled_from([None, "ste_sign", "magnitude_aware_sign", "gaussian_sign", "gumbel_sign"]),
    use_bias=st.booleans(),
)
@settings(max_examples=6, deadline=None)
def test_linen_equals_nnx(q_in, q_k, use_bias):
    x = normal((3, 5, 5, 4), 1)
    conv = BinaryConv(6, (3, 3), use_bias=use_bias, input_quantizer=q_in, kernel_quantizer=q_k, deterministic=True)
    p = conv.init(KEY, x)
    nconv = NNXBinaryConv(
        4,
        6,
        (3, 3),
        use_bias=use_bias,
        input_quantizer=q_in,
        kernel_quantizer=q_k,
        deterministic=True,
        rngs=nnx.Rngs(3),
    )
    nnx_copy(nconv, p["params"])
    np.testing.assert_array_equal(np.asarray(conv.apply(p, x)), np.asarray(nconv(x)))
    dense = BinaryDense(6, use_bias=use_bias, input_quantizer=q_in, kernel_quantizer=q_k, deterministic=True)
    xd = x.reshape(3, -1)
    pd = dense.init(KEY, xd)
    nd = nnx_copy(
        NNXBinaryLinear(
            xd.shape[-1], 6, use_bias=use_bias, input_quantizer=q_in, kernel_quantizer=q_k, rngs=nnx.Rngs(3)
        ),
        pd["params"],
    )
    np.testing.assert_array_equal(np.asarray(dense.apply(pd, xd)), np.asarray(nd(xd, deterministic=True)))
    # and the same gradients
    g_lin = jax.grad(lambda k: jnp.sum(dense.apply({"params": {**pd["params"], "kernel": k}}, xd) ** 2))(
        pd["params"]["kernel"]
    )

    def nnx_loss(m):
        return jnp.sum(m(xd, deterministic=True) ** 2)

    g_nnx = nnx.grad(nnx_loss)(nd)
    np.testing.assert_allclose(np.asarray(g_nnx.kernel[...]), np.asarray(g_lin), rtol=1e-6)


def test_nnx_with_a_key_equals_functional_form():
    # (Linen's make_rng derives its own key from the stream, so Linen and NNX samples agree in law, not bitwise.)
    x = normal((4, 10), 1)
    q = functools.partial(gaussian_sign, sigma=0.5)
    w, b = normal((10, 3), 2), normal((3,), 3)
    key = jax.random.key(7)
    nd = nnx_copy(
        NNXBinaryLinear(10, 3, input_quantizer=q, kernel_quantizer=q, rngs=nnx.Rngs(0)), {"kernel": w, "bias": b}
    )
    y_nnx = nd(x, rngs=key)
    y_fn = binary_dense(x, w, b, input_quantizer=q, kernel_quantizer=q, key=key)
    np.testing.assert_array_equal(np.asarray(y_nnx), np.asarray(y_fn))
    k_in, k_k = jax.random.split(key)
    y_manual = (np.asarray(q(x, key=k_in)) @ np.asarray(q(w, key=k_k))) + np.asarray(b)
    np.testing.assert_allclose(np.asarray(y_fn), y_manual, rtol=1e-6)


# ---------------------------------------------------------------------------- stochastic quantizers and rngs
def test_stochastic_layer_modes():
    x = normal((8, 16), 1, 0.1)
    dense = BinaryDense(4, kernel_quantizer="gumbel_sign", input_quantizer="gumbel_sign")
    p = dense.init(KEY, x, deterministic=True)
    det = dense.apply(p, x, deterministic=True)
    det_ref = BinaryDense(4, kernel_quantizer="ste_sign", input_quantizer="ste_sign").apply(p, x)
    np.testing.assert_array_equal(np.asarray(det), np.asarray(det_ref))  # deterministic: sign
    a = dense.apply(p, x, deterministic=False, rngs={"quantizer": jax.random.key(1)})
    b = dense.apply(p, x, deterministic=False, rngs={"quantizer": jax.random.key(2)})
    assert not np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="deterministic"):
        dense.apply(p, x)  # neither attribute nor argument
    # NNX: stored stream advances (training), eval is deterministic
    m = NNXBinaryLinear(16, 4, kernel_quantizer="gumbel_sign", input_quantizer="gumbel_sign", rngs=nnx.Rngs(0))
    nnx_copy(m, p["params"])
    assert not np.array_equal(np.asarray(m(x)), np.asarray(m(x)))
    m.set_view(deterministic=True)
    np.testing.assert_array_equal(np.asarray(m(x)), np.asarray(det))


# ---------------------------------------------------------------------------- jit
def test_layers_under_jit():
    x = normal((2, 6, 6, 3), 1)
    conv = BinaryConv(4, (3, 3), input_quantizer="approx_sign", kernel_quantizer="swish_sign")
    p = conv.init(KEY, x)
    np.testing.assert_array_equal(np.asarray(jax.jit(conv.apply)(p, x)), np.asarray(conv.apply(p, x)))
    g = jax.jit(jax.grad(lambda p: jnp.sum(conv.apply(p, x) ** 2)))(p)
    g0 = jax.grad(lambda p: jnp.sum(conv.apply(p, x) ** 2))(p)
    np.testing.assert_allclose(np.asarray(g["params"]["kernel"]), np.asarray(g0["params"]["kernel"]), rtol=1e-5)
    m = NNXBinaryConv(3, 4, (3, 3), input_quantizer="approx_sign", kernel_quantizer="swish_sign", rngs=nnx.Rngs(0))
    nnx_copy(m, p["params"])
    np.testing.assert_array_equal(np.asarray(nnx.jit(lambda m, x: m(x))(m, x)), np.asarray(conv.apply(p, x)))
    key_fn = jax.jit(lambda x, k: binary_dense(x, jnp.ones((3, 2)), kernel_quantizer=gaussian_sign, key=k))
    assert key_fn(x[0, 0], jax.random.key(0)).shape == (6, 2)


# ---------------------------------------------------------------------------- bad input
def test_bad_input_errors():
    x = normal((2, 5), 1)
    with pytest.raises(ValueError, match="input_quantizer.*'sgn'"):
        BinaryDense(3, input_quantizer="sgn").init(KEY, x)
    with pytest.raises(ValueError, match="kernel_quantizer"):
        NNXBinaryLinear(5, 3, kernel_quantizer="nope", rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="kernel_quantizer"):
        binary_dense(x, jnp.ones((5, 3)), kernel_quantizer=3)
    with pytest.raises(ValueError, match="features"):
        BinaryDense(0).init(KEY, x)
    with pytest.raises(ValueError, match=r"inputs.*\(\.\.\., 4\)"):
        NNXBinaryLinear(4, 3, rngs=nnx.Rngs(0))(x)
    with pytest.raises(ValueError, match="kernel"):
        binary_dense(x, jnp.ones((5,)))
    with pytest.raises(ValueError, match="bias"):
        binary_dense(x, jnp.ones((5, 3)), jnp.ones(4))
    with pytest.raises(ValueError, match="inputs"):
        BinaryConv(3, (3, 3)).init(KEY, jnp.ones((5, 3)))
    with pytest.raises(ValueError, match="inputs"):
        NNXBinaryConv(4, 3, (3, 3), rngs=nnx.Rngs(0))(jnp.ones((1, 5, 5, 3)))
    with pytest.raises(ValueError, match="kernel_size"):
        BinaryConv(3, (0, 3)).init(KEY, jnp.ones((1, 5, 5, 3)))
    with pytest.raises(ValueError, match="padding"):
        BinaryConv(3, (3, 3), padding="FULL").init(KEY, jnp.ones((1, 5, 5, 3)))
    with pytest.raises(ValueError, match="padding.*CAUSAL"):
        NNXBinaryConv(3, 3, (3, 3), padding="CAUSAL", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="padding"):
        binary_conv(jnp.ones((1, 5, 5, 3)), jnp.ones((3, 3, 3, 2)), padding=[(1, -1), (0, 0)])
    with pytest.raises(ValueError, match="pad_values"):
        BinaryConv(3, (3, 3), pad_values=float("nan")).init(KEY, jnp.ones((1, 5, 5, 3)))
    with pytest.raises(ValueError, match="strides"):
        NNXBinaryConv(3, 3, (3, 3), strides=(1, 0), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="feature_group_count"):
        BinaryConv(3, (3, 3), feature_group_count=2).init(KEY, jnp.ones((1, 5, 5, 3)))
    with pytest.raises(ValueError, match="deterministic"):
        NNXBinaryLinear(5, 3, deterministic=None, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="floating"):
        binary_dense(jnp.ones((2, 5), jnp.int32), jnp.ones((5, 3), jnp.int32), kernel_quantizer=ste_sign)
