"""Packed inference layers and export: bit-identical to the float simulation of the binary layers.

Oracles: the float layers of :mod:`tamejax.nn.layers` (Linen ``BinaryDense`` / ``BinaryConv`` and
NNX ``NNXBinaryLinear`` / ``NNXBinaryConv`` with ``kernel_quantizer="ste_sign"``) on ±1 inputs,
Flax ``BatchNorm`` for the folded thresholds, numpy ``x @ W`` for ternary weights, and a direct
evaluation of the batch-norm rule at every integer pre-activation for the threshold folding.

The sharding check runs this file as a script in a subprocess (``--shard-check``) with 4 forced
host devices, which must be set before JAX initializes.
"""

from __future__ import annotations

import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tamejax.nn import bitpack
from tamejax.nn.layers import BinaryConv, BinaryDense, NNXBinaryConv, NNXBinaryLinear
from tamejax.nn.packed import (
    NNXPackedConv,
    NNXPackedLinear,
    PackedDense,
    PackedLayer,
    export_conv,
    export_dense,
    export_layer,
    export_linen_mlp,
    fold_threshold,
    run_packed,
    threshold_pack,
)


def pm1(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


def sign(y: np.ndarray) -> np.ndarray:
    return np.where(np.asarray(y) >= 0, 1, -1)  # sign(0) = +1


def unpacked(p: jax.Array, n: int) -> np.ndarray:
    return np.asarray(bitpack.unpack(p, n, axis=-1)).astype(int)


def random_bn(rng: np.random.Generator, n: int, spread: float) -> dict[str, np.ndarray]:
    """Batch-norm statistics with some negative and some zero scales."""
    gamma = rng.normal(size=n).astype(np.float32)
    gamma[: max(1, n // 8)] = 0.0
    return {
        "scale": gamma,
        "bias": rng.normal(size=n).astype(np.float32),
        "mean": (spread * rng.normal(size=n)).astype(np.float32),
        "var": rng.uniform(0.1, 3.0, n).astype(np.float32),
    }


def linen_dense(rng: np.random.Generator, k: int, n: int, use_bias: bool) -> tuple[BinaryDense, dict]:
    layer = BinaryDense(n, use_bias=use_bias, input_quantizer="ste_sign", kernel_quantizer="ste_sign")
    # parameters drawn directly (Flax's init costs seconds of compilation per shape on this CPU)
    kernel = rng.normal(size=(k, n)).astype(np.float32)
    kernel.flat[:: max(1, kernel.size // 5)] = 0.0  # exact zeros: sign(0) = +1 in both paths
    params = {"kernel": jnp.asarray(kernel)}
    if use_bias:
        params["bias"] = jnp.asarray(rng.normal(size=n).astype(np.float32))
    return layer, params


# ------------------------------------------------------------------------------- dense


DENSE_CASES = {
    "m": st.integers(1, 9),
    "k": st.integers(1, 90),
    "n": st.integers(1, 40),
    "seed": st.integers(0, 2**31 - 1),
}


def check_dense_export(m: int, k: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    layer, params = linen_dense(rng, k, n, use_bias=False)
    x = pm1(rng, (m, k))
    ref = np.asarray(layer.apply({"params": params}, x))
    packed = export_layer(layer, params)
    assert packed.module.output == "int"
    out = packed(x)
    assert out.dtype == jnp.int32 and out.shape == (m, n)
    assert np.array_equal(np.asarray(out), ref)
    # packed input (words) gives the same, and so does the layer under jit
    assert np.array_equal(np.asarray(jax.jit(lambda p, v: p(v))(packed, bitpack.pack(x))), ref)


@settings(max_examples=8, suppress_health_check=[HealthCheck.too_slow])
@given(**DENSE_CASES)
def test_dense_export_int_preactivations_bit_identical(m: int, k: int, n: int, seed: int) -> None:
    check_dense_export(m, k, n, seed)


@pytest.mark.slow
@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(**DENSE_CASES)
def test_dense_export_int_preactivations_many_shapes(m: int, k: int, n: int, seed: int) -> None:
    check_dense_export(m, k, n, seed)


def test_dense_bias_affine_bit_identical_and_nnx() -> None:
    rng = np.random.default_rng(0)
    k, n = 45, 13
    layer = NNXBinaryLinear(k, n, input_quantizer="ste_sign", kernel_quantizer="ste_sign", rngs=nnx.Rngs(0))
    layer.bias[...] = jnp.asarray(rng.normal(size=n).astype(np.float32))
    x = pm1(rng, (1, k))  # batch 1
    ref = np.asarray(layer(x))
    packed = export_layer(layer)
    assert packed.module.output == "affine"
    assert np.array_equal(np.asarray(packed(x)), ref)  # float32 d * 1 + b, same rounding
    nnx_packed = packed.to_nnx()
    assert isinstance(nnx_packed, NNXPackedLinear)
    assert np.array_equal(np.asarray(nnx_packed(x)), ref)
    assert np.array_equal(np.asarray(nnx.jit(lambda mdl, v: mdl(v))(nnx_packed, x)), ref)


def test_linen_and_nnx_packed_agree_and_nnx_load() -> None:
    rng = np.random.default_rng(1)
    w = rng.normal(size=(70, 33))
    packed = export_dense(w, rng.normal(size=33), random_bn(rng, 33, 3.0), output="packed")
    x = pm1(rng, (4, 70))
    fresh = NNXPackedLinear(70, 33, output="packed")
    fresh.load(packed.params)
    assert np.array_equal(np.asarray(fresh(x)), np.asarray(packed(x)))
    linen_out = PackedDense(33, 70, output="packed").apply(packed.variables, x)
    assert np.array_equal(np.asarray(linen_out), np.asarray(packed(x)))


# ------------------------------------------------------------------- threshold folding


def test_threshold_folding_matches_float_batchnorm() -> None:
    """Packed activations == sign(BN(x @ sign(W) + b)) of the float Linen path, gamma < 0 and == 0 included."""
    rng = np.random.default_rng(2)
    m, k, n = 16, 77, 40

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            y = BinaryDense(n, input_quantizer="ste_sign", kernel_quantizer="ste_sign")(x)
            return nn.BatchNorm(use_running_average=True)(y)

    x = pm1(rng, (m, k))
    bn = random_bn(rng, n, spread=4.0)
    params = {
        "BinaryDense_0": {"kernel": rng.normal(size=(k, n)), "bias": rng.normal(size=n)},
        "BatchNorm_0": {"scale": bn["scale"], "bias": bn["bias"]},
    }
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    stats = {"BatchNorm_0": {"mean": jnp.asarray(bn["mean"]), "var": jnp.asarray(bn["var"])}}
    y = np.asarray(Block().apply({"params": params, "batch_stats": stats}, x))
    packed = export_dense(params["BinaryDense_0"]["kernel"], params["BinaryDense_0"]["bias"], bn, output="packed")
    out = packed(x)
    assert out.dtype == jnp.uint32 and out.shape == (m, 2)
    assert np.array_equal(unpacked(out, n), sign(y))
    assert np.all(unpacked(out, n)[:, bn["scale"] == 0] == sign(bn["bias"][bn["scale"] == 0]))
    # padding bits of the emitted words are 0 (n = 40: bits 8..31 of word 1)
    assert np.all(np.asarray(out)[:, 1] >> 8 == 0)


@pytest.mark.parametrize("gamma", [1.0, -1.0, 2.0, -0.5])
def test_ties_give_plus_one(gamma: float) -> None:
    """At an exact tie (BN output exactly 0) the packed layer emits +1, as the float path's sign(0) = +1."""
    rng = np.random.default_rng(3)
    m, k, n = 12, 50, 16
    w = rng.normal(size=(k, n)).astype(np.float32)
    x = pm1(rng, (m, k))
    d = x @ np.where(w < 0, -1.0, 1.0)
    mean = d[0].copy()  # row 0 hits the tie d == mean in every channel
    bn = {"scale": np.full(n, gamma, np.float32), "bias": np.zeros(n, np.float32), "mean": mean, "var": np.ones(n)}
    packed = export_dense(w, None, bn, output="packed", eps=0.0)
    got = unpacked(packed(x), n)
    y = gamma * (d - mean)  # exact: var + eps = 1
    assert np.all(y[0] == 0) and np.all(got[0] == 1)
    assert np.array_equal(got, sign(y))
    # the same through a float32 Flax BatchNorm (exact here: rsqrt(1) = 1)
    bn_layer = nn.BatchNorm(use_running_average=True, epsilon=0.0)
    yf = bn_layer.apply(
        {"params": {"scale": bn["scale"], "bias": bn["bias"]}, "batch_stats": {"mean": mean, "var": bn["var"]}},
        jnp.asarray(d, jnp.float32),
    )
    assert np.array_equal(got, sign(yf))


@settings(max_examples=60)
@given(
    k=st.integers(1, 40),
    gamma=st.sampled_from([0.0, 1.0, -1.0, 0.75, -3.0, 1e-30, -1e-30]),
    beta=st.sampled_from([0.0, 0.5, -0.5, 1.25, -2.0, 7.0]),
    mean=st.integers(-45, 45).map(lambda v: v / 4),
    b=st.integers(-8, 8).map(lambda v: v / 2),
    var=st.sampled_from([1.0, 0.25, 4.0, 0.3]),
    alpha=st.sampled_from([1.0, 0.5, 0.37]),
)
def test_fold_threshold_equals_rule_at_every_integer(
    k: int, gamma: float, beta: float, mean: float, b: float, var: float, alpha: float
) -> None:
    bn = {"scale": [gamma], "bias": [beta], "mean": [mean], "var": [var], "eps": 0.0}
    s, t = fold_threshold(k, [b], bn, kernel_scale=[alpha])
    d = np.arange(-k, k + 1)
    y = (alpha * d + b - mean) * (gamma / np.sqrt(var)) + beta
    emitted = np.where(s[0] * d < t[0], -1, 1)
    assert np.array_equal(emitted, sign(y))
    assert s.dtype == np.int32 and t.dtype == np.int32 and abs(int(t[0])) <= k + 1


def test_threshold_pack_rule() -> None:
    d = jnp.asarray([[-3, 0, 2, 5]], jnp.int32)
    out = threshold_pack(d, jnp.asarray([1, 1, -1, -1], jnp.int32), jnp.asarray([0, 0, -2, -4], jnp.int32))
    # -1 where sign * d < threshold: [-3 < 0, 0 < 0, -2 < -2, -5 < -4] -> [-1, +1, +1, -1]
    assert np.array_equal(unpacked(out, 4), [[-1, 1, 1, -1]])


# ------------------------------------------------------------------------ whole MLP


class BinaryMLP(nn.Module):
    widths: tuple[int, ...]

    @nn.compact
    def __call__(self, x):
        for i, w in enumerate(self.widths):
            last = i == len(self.widths) - 1
            x = BinaryDense(w, use_bias=last, input_quantizer="ste_sign", kernel_quantizer="ste_sign")(x)
            if not last:
                x = nn.BatchNorm(use_running_average=True)(x)
        return x


def mlp_variables(rng: np.random.Generator, k: int, widths: tuple[int, ...]) -> dict:
    """Variables of ``BinaryMLP(widths)`` in Flax's layout and order, drawn directly (no init compile)."""
    params: dict = {}
    stats: dict = {}
    for i, (fan_in, w) in enumerate(zip((k, *widths[:-1]), widths, strict=True)):
        dense = {"kernel": jnp.asarray(rng.normal(size=(fan_in, w)).astype(np.float32))}
        if i == len(widths) - 1:
            dense["bias"] = jnp.asarray(rng.normal(size=w).astype(np.float32))
        params[f"BinaryDense_{i}"] = dense
        if i < len(widths) - 1:
            bn = random_bn(rng, w, spread=3.0)
            params[f"BatchNorm_{i}"] = {"scale": jnp.asarray(bn["scale"]), "bias": jnp.asarray(bn["bias"])}
            stats[f"BatchNorm_{i}"] = {"mean": jnp.asarray(bn["mean"]), "var": jnp.asarray(bn["var"])}
    return {"params": params, "batch_stats": stats}


def test_mlp_export_runs_packed_end_to_end() -> None:
    rng = np.random.default_rng(4)
    k, widths = 64 + 9, (100, 37, 10)
    variables = mlp_variables(rng, k, widths)
    x = pm1(rng, (32, k))
    # the hand-made variables have the structure (names, order, shapes) Flax's init gives
    shapes = jax.eval_shape(BinaryMLP(widths).init, jax.random.key(0), x)
    assert jax.tree.structure(shapes) == jax.tree.structure(variables)
    assert jax.tree.map(lambda a: a.shape, shapes) == jax.tree.map(jnp.shape, variables)
    ref = np.asarray(BinaryMLP(widths).apply(variables, x))
    layers = export_linen_mlp(variables)
    assert [layer.module.output for layer in layers] == ["packed", "packed", "affine"]
    out = run_packed(layers, x)
    assert np.array_equal(np.asarray(out), ref)  # logits bit-identical (bias-only last layer)
    assert np.array_equal(np.asarray(jax.jit(run_packed)(layers, x)), ref)
    # and with explicit names and NNX copies
    named = export_linen_mlp(
        variables,
        layers=[("BinaryDense_0", "BatchNorm_0"), ("BinaryDense_1", "BatchNorm_1"), ("BinaryDense_2", None)],
    )
    assert np.array_equal(np.asarray(run_packed([layer.to_nnx() for layer in named], x)), ref)


def test_mlp_auto_detection_ignores_dict_order() -> None:
    # 11 layers: sorted dict keys put BinaryDense_10 before BinaryDense_2 (tree maps sort keys)
    rng = np.random.default_rng(10)
    widths = (6,) * 10 + (3,)
    variables = jax.tree.map(lambda a: a, mlp_variables(rng, 7, widths))
    assert list(variables["params"])[:3] == ["BatchNorm_0", "BatchNorm_1", "BatchNorm_2"]
    x = pm1(rng, (5, 7))
    layers = export_linen_mlp(variables)
    assert np.array_equal(np.asarray(jax.jit(run_packed)(layers, x)), np.asarray(BinaryMLP(widths).apply(variables, x)))


@pytest.mark.slow
def test_mlp_pallas_backend_nnx() -> None:
    rng = np.random.default_rng(4)
    k, widths = 64 + 9, (100, 37, 10)
    variables = mlp_variables(rng, k, widths)
    x = pm1(rng, (3, k))
    ref = np.asarray(BinaryMLP(widths).apply(variables, x))
    layers = export_linen_mlp(variables, backend="pallas")  # interpret mode on CPU
    assert np.array_equal(np.asarray(run_packed([layer.to_nnx() for layer in layers], x)), ref)


def test_mlp_export_errors() -> None:
    rng = np.random.default_rng(5)
    variables = mlp_variables(rng, 20, (8, 6, 4))
    with pytest.raises(ValueError, match="params"):
        export_linen_mlp({"batch_stats": {}})
    with pytest.raises(ValueError, match="cannot pair"):
        export_linen_mlp({"params": variables["params"], "batch_stats": {}})
    with pytest.raises(ValueError, match="not found"):
        export_linen_mlp(variables, layers=[("BinaryDense_0", "nope")])
    with pytest.raises(ValueError, match="does not match"):
        export_linen_mlp(variables, layers=[("BinaryDense_0", "BatchNorm_0"), ("BinaryDense_2", None)])
    with pytest.raises(ValueError, match="at least one"):
        run_packed([], jnp.zeros((1, 3)))


# ---------------------------------------------------------------------------- conv


CONV_CASES = {
    "b": st.integers(1, 2),
    "hw": st.tuples(st.integers(5, 7), st.integers(5, 7)),
    "cin": st.integers(1, 40),
    "cout": st.integers(1, 12),
    "window": st.sampled_from([(1, 1), (3, 3), (2, 3)]),
    "strides": st.sampled_from([1, 2, (1, 2)]),
    "padding": st.sampled_from(["SAME", "VALID", ((1, 0), (2, 1))]),
    "dilation": st.sampled_from([1, (2, 1)]),
    "pad_values": st.sampled_from([1.0, 0.0]),
    "seed": st.integers(0, 2**31 - 1),
}


def check_conv_export(b, hw, cin, cout, window, strides, padding, dilation, pad_values, seed) -> None:
    rng = np.random.default_rng(seed)
    layer = BinaryConv(
        cout,
        window,
        strides=strides,
        padding=padding,
        kernel_dilation=dilation,
        pad_values=pad_values,
        use_bias=False,
        input_quantizer="ste_sign",
        kernel_quantizer="ste_sign",
    )
    x = pm1(rng, (b, *hw, cin))
    params = {"kernel": jnp.asarray(rng.normal(size=(*window, cin, cout)).astype(np.float32))}
    ref = np.asarray(jax.jit(layer.apply)({"params": params}, x))  # pads the quantized input with pad_values
    packed = export_layer(layer, params)
    out = jax.jit(lambda p, v: p(v))(packed, x)
    assert out.dtype == jnp.int32 and out.shape == ref.shape
    assert np.array_equal(np.asarray(out), ref)


@settings(max_examples=6, suppress_health_check=[HealthCheck.too_slow])
@given(**CONV_CASES)
def test_conv_export_int_preactivations_bit_identical(**case) -> None:
    check_conv_export(**case)


@pytest.mark.slow
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(**CONV_CASES)
def test_conv_export_int_preactivations_many_shapes(**case) -> None:
    check_conv_export(**case)


def test_conv_threshold_nnx_and_pallas() -> None:
    rng = np.random.default_rng(6)
    cin, cout = 35, 20
    layer = NNXBinaryConv(cin, cout, (3, 3), input_quantizer="ste_sign", kernel_quantizer="ste_sign", rngs=nnx.Rngs(3))
    layer.bias[...] = jnp.asarray(rng.normal(size=cout).astype(np.float32))
    bn = nnx.BatchNorm(cout, use_running_average=True, rngs=nnx.Rngs(0))
    stats = random_bn(rng, cout, spread=6.0)
    bn.scale[...], bn.bias[...] = jnp.asarray(stats["scale"]), jnp.asarray(stats["bias"])
    bn.mean[...], bn.var[...] = jnp.asarray(stats["mean"]), jnp.asarray(stats["var"])
    x = pm1(rng, (2, 5, 6, cin))
    ref = sign(bn(layer(x)))
    packed = export_layer(layer, batch_norm=bn, output="packed")
    assert np.array_equal(unpacked(packed(x), cout), ref)
    conv_nnx = packed.to_nnx()
    assert isinstance(conv_nnx, NNXPackedConv)
    assert np.array_equal(unpacked(conv_nnx(x), cout), ref)
    pallas = export_layer(layer, batch_norm=bn, output="packed", backend="pallas")
    assert np.array_equal(np.asarray(pallas(x[:1])), np.asarray(packed(x[:1])))
    # packed words whose padding bits (channels 35..63) are set give the same result on both backends
    dirty = np.asarray(bitpack.pack(x[:1])).copy()
    dirty[..., -1] |= np.uint32(0xFFFFFFF8)
    assert np.array_equal(np.asarray(pallas(jnp.asarray(dirty))), np.asarray(packed(x[:1])))
    assert np.array_equal(np.asarray(packed(jnp.asarray(dirty))), np.asarray(packed(x[:1])))


def test_conv_zero_and_minus_one_padding_exact() -> None:
    rng = np.random.default_rng(9)
    x = pm1(rng, (2, 5, 4, 6))
    for pad_values, input_quantizer in ((0.0, None), (-1.0, "ste_sign"), (None, None)):
        layer = BinaryConv(
            5,
            (3, 2),
            kernel_dilation=(1, 2),
            pad_values=pad_values,
            input_quantizer=input_quantizer,
            kernel_quantizer="ste_sign",
            use_bias=False,
        )
        params = layer.init(jax.random.key(0), x)["params"]
        ref = np.asarray(layer.apply({"params": params}, x))
        packed = export_layer(layer, params)
        assert packed.module.pad_value == (0 if pad_values is None else int(pad_values))
        assert np.array_equal(np.asarray(packed(x)), ref)
    with pytest.raises(ValueError, match="Pallas backend pads with \\+1 only"):
        export_conv(np.ones((3, 3, 4, 2)), pad_value=0.0, backend="pallas")
    with pytest.raises(ValueError, match="pad_value"):
        export_conv(np.ones((3, 3, 4, 2)), pad_value=0.5)
    with pytest.raises(ValueError, match="feature_group_count"):
        export_layer(layer.clone(feature_group_count=2), params)


# ------------------------------------------------------------------- weights / errors


def test_ternary_weights_two_planes_exact() -> None:
    rng = np.random.default_rng(7)
    w = rng.integers(-1, 2, size=(50, 30)).astype(np.float64)
    x = pm1(rng, (6, 50))
    packed = export_dense(w, weights="ternary")
    assert packed.module.ternary and packed.params["kernel"].shape == (2, 30, 2)
    assert np.array_equal(np.asarray(packed(x)), x @ w)
    with pytest.raises(ValueError, match="zero weights cannot be held in one bit"):
        export_dense(w, weights="binary")
    with pytest.raises(ValueError, match="ternary"):
        export_dense(w * 0.5, weights="ternary")
    # without zeros, ternary export is a plain binary layer
    assert not export_dense(np.where(w == 0, 1.0, w), weights="ternary").module.ternary
    # ternary conv
    wc = rng.integers(-1, 2, size=(3, 3, 5, 4)).astype(np.float64)
    xc = pm1(rng, (1, 4, 4, 5))
    ref = jax.lax.conv_general_dilated(
        np.pad(xc, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=1.0),
        wc.astype(np.float32),
        (1, 1),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    assert np.array_equal(np.asarray(export_conv(wc, weights="ternary")(xc)), np.asarray(ref))


def check_pallas_conv(window: tuple[int, int], cin: int, weights: str, seed: int) -> None:
    # Regression: the packed im2col has padding bits at the end of every tap's word group; the
    # Pallas path used to pass k = kh * kw * cin to the kernel, which masked real bits of the
    # last tap whenever kh * kw * (32 * words - cin) < 32.
    rng = np.random.default_rng(seed)
    if weights == "ternary":
        w = rng.integers(-1, 2, size=(*window, cin, 3)).astype(np.float64)
    else:
        w = rng.normal(size=(*window, cin, 3))
    x = pm1(rng, (1, 3, 4, cin))
    ref = jax.lax.conv_general_dilated(
        x,
        np.where(w < 0, -1.0, 1.0).astype(np.float32) if weights == "latent" else w.astype(np.float32),
        (1, 1),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    got = export_conv(w, padding="VALID", weights=weights, backend="pallas")(x)
    assert np.array_equal(np.asarray(got), np.asarray(ref))


@pytest.mark.parametrize(
    ("window", "cin", "weights"), [((3, 3), 31, "latent"), ((1, 2), 17, "latent"), ((3, 3), 30, "ternary")]
)
def test_pallas_conv_padding_bits_in_every_tap(window: tuple[int, int], cin: int, weights: str) -> None:
    check_pallas_conv(window, cin, weights, seed=cin)


@pytest.mark.slow
@pytest.mark.parametrize(("window", "cin"), [((3, 3), c) for c in (29, 30, 31)] + [((1, 2), c) for c in range(17, 32)])
@pytest.mark.parametrize("weights", ["latent", "ternary"])
def test_pallas_conv_padding_bits_in_every_tap_all(window: tuple[int, int], cin: int, weights: str) -> None:
    check_pallas_conv(window, cin, weights, seed=cin)


def test_mlp_auto_detection_refuses_float_layers_and_bad_pairing() -> None:
    rng = np.random.default_rng(12)
    base = mlp_variables(rng, 16, (8, 8, 4))
    # a float nn.Dense (issue: Dense, BN, 2x(BinaryDense, BN), Dense used to export a wrong net silently)
    with_float = {
        "params": {**base["params"], "Dense_0": {"kernel": jnp.ones((8, 8)), "bias": jnp.zeros(8)}},
        "batch_stats": base["batch_stats"],
    }
    with pytest.raises(ValueError, match=r"other layers with a kernel \['Dense_0'\]"):
        export_linen_mlp(with_float)
    # the binary chain is still exportable with explicit names
    named = export_linen_mlp(with_float, layers=[("BinaryDense_0", "BatchNorm_0"), ("BinaryDense_1", None)])
    assert [layer.module.features for layer in named] == [8, 8]
    # a batch-norm missing in the middle: true chain D0-BN(8), D1 (none), D2-BN(4), D3-BN(3); the
    # auto-named BatchNorm_1 (width 4) would be paired with BinaryDense_1 (width 6)
    four = mlp_variables(rng, 16, (8, 6, 4, 3))
    bn3 = random_bn(rng, 3, spread=1.0)
    missing = {
        "params": {name: tree for name, tree in four["params"].items() if not name.startswith("BatchNorm")},
        "batch_stats": {
            "BatchNorm_0": four["batch_stats"]["BatchNorm_0"],
            "BatchNorm_1": four["batch_stats"]["BatchNorm_2"],
            "BatchNorm_2": {"mean": jnp.asarray(bn3["mean"]), "var": jnp.asarray(bn3["var"])},
        },
    }
    with pytest.raises(ValueError, match="BatchNorm_1 .* cannot follow BinaryDense_1"):
        export_linen_mlp(missing)
    # numbering with a gap, and explicitly named modules
    gap = {"params": dict(base["params"]), "batch_stats": dict(base["batch_stats"])}
    gap["params"]["BinaryDense_5"] = gap["params"].pop("BinaryDense_2")
    with pytest.raises(ValueError, match="numbered 0, 1"):
        export_linen_mlp(gap)
    named_bn = {
        "params": base["params"],
        "batch_stats": {**base["batch_stats"], "bn_head": base["batch_stats"]["BatchNorm_0"]},
    }
    with pytest.raises(ValueError, match="bn_head"):
        export_linen_mlp(named_bn)


def test_subnormal_batchnorm_scale_acts_as_zero() -> None:
    # float32 inference flushes subnormals: gamma / sqrt(var + eps) below 1.18e-38 gives y = beta
    # (constant), and a subnormal product gives y = beta too. Oracle: Flax BatchNorm in float32 on
    # this CPU at every integer pre-activation d in [-k, k].
    k = 40
    gamma = np.array([1e-40, -1e-40, 1e-39, 3e-38, -3e-38, 1.0, 1e-30, 1e-40], np.float32)
    beta = np.array([0.0, 0.0, -0.5, 0.0, 0.0, 0.1, 0.0, -1e-40], np.float32)
    n = gamma.size
    mean = np.array([3.5, -2.0, 1.0, 0.25, 0.75, 0.0, 5.0, 0.0], np.float32)
    var = np.full(n, 1.0, np.float32)
    bn = {"scale": gamma, "bias": beta, "mean": mean, "var": var}
    s, thr = fold_threshold(k, batch_norm=bn)
    d = np.arange(-k, k + 1, dtype=np.float32)[:, None] * np.ones((1, n), np.float32)
    module = nn.BatchNorm(use_running_average=True)
    variables = {
        "params": {"scale": jnp.asarray(gamma), "bias": jnp.asarray(beta)},
        "batch_stats": {"mean": jnp.asarray(mean), "var": jnp.asarray(var)},
    }
    y = np.asarray(module.apply(variables, jnp.asarray(d, jnp.float32)))
    assert y.dtype == np.float32
    rule = np.where(s[None, :] * d.astype(np.int64) >= thr[None, :], 1, -1)
    assert np.array_equal(rule, sign(y))
    assert np.all(rule[:, [0, 1, 7]] == 1) and np.all(rule[:, 2] == -1)  # flushed: constant sign(beta)


def test_export_layer_refuses_non_default_scale_axis_and_non_sign_inputs() -> None:
    import functools

    from tamejax.nn.quantizers import magnitude_aware_sign

    rng = np.random.default_rng(13)
    x = pm1(rng, (3, 16))
    bad = NNXBinaryLinear(
        16,
        5,
        input_quantizer="ste_sign",
        kernel_quantizer=functools.partial(magnitude_aware_sign, axis=-1),
        rngs=nnx.Rngs(0),
    )
    with pytest.raises(ValueError, match="non-default axis"):
        export_layer(bad)
    # axis=0 names exactly the default axes (all but the last) of a dense kernel: accepted and exact
    same = NNXBinaryLinear(
        16,
        5,
        input_quantizer="ste_sign",
        kernel_quantizer=functools.partial(magnitude_aware_sign, axis=(0,)),
        rngs=nnx.Rngs(0),
    )
    np.testing.assert_allclose(np.asarray(export_layer(same)(x)), np.asarray(same(x)), rtol=1e-6, atol=1e-6)
    mas_in = NNXBinaryLinear(
        16, 5, input_quantizer="magnitude_aware_sign", kernel_quantizer="ste_sign", rngs=nnx.Rngs(0)
    )
    with pytest.raises(ValueError, match="input_quantizer"):
        export_layer(mas_in)


def test_eps_conflict_and_conv_padding_checked_at_construction() -> None:
    bn = {"mean": np.zeros(3), "var": np.ones(3), "eps": 1e-3}
    with pytest.raises(ValueError, match="eps"):
        export_dense(np.ones((4, 3)), batch_norm=bn, output="packed", eps=1e-5)
    assert export_dense(np.ones((4, 3)), batch_norm=bn, output="packed", eps=1e-3).module.output == "packed"
    with pytest.raises(ValueError, match="padding"):
        NNXPackedConv(4, 3, 3, padding="CIRCULAR")
    with pytest.raises(ValueError, match="padding"):
        NNXPackedConv(4, 3, 3, padding=((1, -1), (0, 0)))


def test_latent_zero_maps_to_plus_one() -> None:
    w = np.zeros((3, 2))
    w[1, 1] = -0.2
    x = np.array([[1.0, -1.0, 1.0]], np.float32)
    # sign(W) = [[1, 1], [1, -1], [1, 1]]
    assert np.array_equal(np.asarray(export_dense(w)(x)), [[1, 3]])


def test_magnitude_aware_sign_export() -> None:
    rng = np.random.default_rng(8)
    layer = NNXBinaryLinear(
        40, 9, input_quantizer="ste_sign", kernel_quantizer="magnitude_aware_sign", rngs=nnx.Rngs(1)
    )
    x = pm1(rng, (5, 40))
    ref = np.asarray(layer(x))
    packed = export_layer(layer)
    np.testing.assert_allclose(np.asarray(packed(x)), ref, rtol=1e-6, atol=1e-6)
    # The float path rounds alpha * (+-1) sums: where d = 0 it returns +-1e-8 instead of 0, so the
    # exact rule (sign(alpha * d) = sign(d), sign(0) = +1) is checked against d, and against the
    # float path away from 0.
    d = np.asarray(
        export_layer(layer.__class__(40, 9, kernel_quantizer="ste_sign", use_bias=False, rngs=nnx.Rngs(1)))(x)
    )
    acts = unpacked(export_layer(layer, output="packed")(x), 9)
    assert np.array_equal(acts, sign(d))
    far = np.abs(ref) > 1e-4
    assert np.array_equal(acts[far], sign(ref)[far]) and far.mean() > 0.5


def test_bad_inputs() -> None:
    packed = export_dense(np.ones((40, 3)))
    with pytest.raises(ValueError, match="2 uint32 words"):
        packed(jnp.zeros((1, 1), jnp.uint32))
    with pytest.raises(ValueError, match="in_features=40"):
        packed(jnp.zeros((1, 39)))
    with pytest.raises(TypeError, match="must be uint32 words"):
        packed(jnp.zeros((1, 1), jnp.uint16))
    with pytest.raises(TypeError, match="dtype bool"):
        packed(jnp.zeros((1, 40), bool))
    with pytest.raises(ValueError, match="output"):
        export_dense(np.ones((4, 3)), output="float")
    with pytest.raises(ValueError, match="'affine' or 'packed'"):
        export_dense(np.ones((4, 3)), np.zeros(3), output="int")
    with pytest.raises(ValueError, match="var"):
        export_dense(np.ones((4, 3)), batch_norm={"mean": np.zeros(3), "var": -np.ones(3)}, output="packed")
    with pytest.raises(ValueError, match=r"batch_norm\['mean'\]: expected shape \(3,\)"):
        export_dense(np.ones((4, 3)), batch_norm={"mean": np.zeros(2), "var": np.ones(3)})
    with pytest.raises(ValueError, match="kernel_scale"):
        export_dense(np.ones((4, 3)), kernel_scale=[1.0, -1.0, 1.0], output="packed")
    with pytest.raises(ValueError, match="kernel: expected a Flax dense kernel"):
        export_dense(np.ones((4, 3, 2)))
    with pytest.raises(ValueError, match="backend"):
        PackedDense(3, 4, backend="cuda").init(jax.random.key(0), jnp.zeros((1, 4)))
    with pytest.raises(TypeError, match="layer"):
        export_layer(nnx.Linear(3, 4, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="ste_heaviside"):
        export_layer(NNXBinaryLinear(3, 4, kernel_quantizer="ste_heaviside", rngs=nnx.Rngs(0)))
    assert isinstance(packed, PackedLayer)


# ------------------------------------------------------------------------- sharding


def test_sharded_and_unsharded_agree() -> None:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--shard-check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(proc.stdout, proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "ALL OK" in proc.stdout


def _shard_main() -> int:
    """Batch-sharded packed MLP and conv (jit on NamedSharding inputs and shard_map) == unsharded."""
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    devices = jax.devices()
    print(f"{len(devices)} devices: {devices}")
    if len(devices) != 4:
        print("FAILED: expected 4 devices")
        return 1
    mesh = Mesh(np.array(devices), ("d",))
    rng = np.random.default_rng(0)
    k, widths = 70, (48, 33, 10)
    variables = mlp_variables(rng, k, widths)
    layers = export_linen_mlp(variables)
    x = pm1(rng, (8, k))
    ref = np.asarray(BinaryMLP(widths).apply(variables, x))
    ok = True

    def check(label: str, got: jax.Array, want: np.ndarray) -> None:
        nonlocal ok
        same = np.array_equal(np.asarray(got), want)
        devs = len(got.sharding.device_set)
        good = same and devs == 4 and not got.sharding.is_fully_replicated
        print(f"[{label}] {'ok' if good else 'MISMATCH'} shape={got.shape} devices={devs}")
        ok &= good

    xs = jax.device_put(x, NamedSharding(mesh, P("d")))
    check("mlp jit+NamedSharding", jax.jit(run_packed)(layers, xs), ref)
    check("mlp packed-words input", jax.jit(run_packed)(layers, jax.device_put(bitpack.pack(x), xs.sharding)), ref)
    smap = jax.jit(jax.shard_map(lambda v: run_packed(layers, v), mesh=mesh, in_specs=P("d"), out_specs=P("d")))
    check("mlp shard_map", smap(x), ref)
    pallas_layers = export_linen_mlp(variables, backend="pallas")
    # a pallas_call has no varying-manual-axes type: shard_map needs check_vma=False
    smap_p = jax.jit(
        jax.shard_map(
            lambda v: run_packed(pallas_layers, v), mesh=mesh, in_specs=P("d"), out_specs=P("d"), check_vma=False
        )
    )
    check("mlp pallas shard_map", smap_p(x), ref)

    conv = export_conv(rng.normal(size=(3, 3, 20, 6)), rng.normal(size=6), random_bn(rng, 6, 4.0), output="packed")
    xc = pm1(rng, (8, 5, 5, 20))
    ref_c = np.asarray(conv(xc))
    check(
        "conv jit+NamedSharding",
        jax.jit(lambda c, v: c(v))(conv, jax.device_put(xc, NamedSharding(mesh, P("d")))),
        ref_c,
    )
    print("ALL OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__" and "--shard-check" in sys.argv:
    sys.exit(_shard_main())
