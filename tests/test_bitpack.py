"""Bit packing and XNOR-popcount kernels (tamejax.nn.bitpack) against brute-force and float oracles."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

from tamejax.nn.bitpack import pack, unpack, word_bits, xnor_conv2d, xnor_matmul

WORDS = [jnp.uint32, jnp.uint64]  # conftest enables x64 for the test session


def pm1(rng: np.random.Generator, shape) -> np.ndarray:
    """Random ±1 float32 array."""
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


def brute_pack(x: np.ndarray, bits: int) -> np.ndarray:
    """Oracle: pack the last axis bit by bit in Python integers (bit 1 <=> x < 0, LSB first)."""
    k = x.shape[-1]
    kw = -(-k // bits)
    out = np.zeros(x.shape[:-1] + (kw,), dtype=np.uint64 if bits == 64 else np.uint32)
    for idx in np.ndindex(*x.shape[:-1]):
        words = [0] * kw
        for i in range(k):
            if x[idx + (i,)] < 0:
                words[i // bits] |= 1 << (i % bits)
        out[idx] = words
    return out


ROUNDTRIP = dict(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    k=st.integers(1, 200),
    word=st.sampled_from(WORDS),
    seed=st.integers(0, 2**31 - 1),
    data=st.data(),
)


@settings(max_examples=10)
@given(**ROUNDTRIP)
def test_pack_unpack_roundtrip(lead, k, word, seed, data):
    check_roundtrip(lead, k, word, seed, data)


@pytest.mark.slow
@settings(max_examples=200)
@given(**ROUNDTRIP)
def test_pack_unpack_roundtrip_many(lead, k, word, seed, data):
    check_roundtrip(lead, k, word, seed, data)


def check_roundtrip(lead, k, word, seed, data):
    rng = np.random.default_rng(seed)
    shape = list(lead)
    axis = data.draw(st.integers(-(len(shape) + 1), len(shape)))
    shape.insert(axis if axis >= 0 else len(shape) + 1 + axis, k)
    x = pm1(rng, tuple(shape))
    p = pack(x, axis=axis, word_dtype=word)
    bits = word_bits(word)
    assert p.dtype == np.dtype(word)
    assert p.shape[axis] == -(-k // bits)
    back = unpack(p, k, axis=axis)
    assert back.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(back), x)
    np.testing.assert_array_equal(np.asarray(unpack(p, k, axis=axis, dtype=jnp.int8)), x.astype(np.int8))


@settings(max_examples=8)
@given(k=st.integers(1, 130), rows=st.integers(1, 3), word=st.sampled_from(WORDS), seed=st.integers(0, 2**31 - 1))
def test_pack_matches_brute_force_on_real_values(k, rows, word, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(rows, k)).astype(np.float32)  # zeros included: sign(0) = +1
    x[rng.random(x.shape) < 0.1] = -0.0  # -0.0 is not negative either
    bits = word_bits(word)
    np.testing.assert_array_equal(np.asarray(pack(x, word_dtype=word)), brute_pack(x, bits))
    # Integer input follows the same sign rule; unpacking gives sign(x) with sign(0) = +1.
    np.testing.assert_array_equal(np.asarray(pack(x.astype(np.int32), word_dtype=word)), brute_pack(x, bits))
    np.testing.assert_array_equal(np.asarray(unpack(pack(x, word_dtype=word), k)), np.where(x < 0, -1.0, 1.0))


def test_pack_bit_order_and_padding_bits():
    x = np.ones(40, np.float32)
    x[[0, 3, 31, 32, 39]] = -1.0
    p = np.asarray(pack(x))
    assert p.tolist() == [(1 << 0) | (1 << 3) | (1 << 31), (1 << 0) | (1 << 7)]  # high bits of word 1 are 0
    p64 = np.asarray(pack(x, word_dtype=jnp.uint64))
    assert p64.tolist() == [(1 << 0) | (1 << 3) | (1 << 31) | (1 << 32) | (1 << 39)]


@settings(max_examples=5)
@given(k=st.integers(1, 300), seed=st.integers(0, 2**31 - 1))
def test_uint64_packing_is_fused_uint32_pairs(k, seed):
    x = pm1(np.random.default_rng(seed), (2, k))
    p32 = np.asarray(pack(x))
    if p32.shape[-1] % 2:
        p32 = np.concatenate([p32, np.zeros((2, 1), np.uint32)], axis=-1)
    fused = p32[:, 0::2].astype(np.uint64) | (p32[:, 1::2].astype(np.uint64) << np.uint64(32))
    np.testing.assert_array_equal(np.asarray(pack(x, word_dtype=jnp.uint64)), fused)


def float_matmul(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.einsum("...k,nk->...n", a.astype(np.int64), w.astype(np.int64))


MATMUL = dict(
    m=st.integers(1, 40),
    n=st.integers(1, 40),
    k=st.integers(1, 1100),
    lead=st.lists(st.integers(1, 2), min_size=0, max_size=1),
    word=st.sampled_from(WORDS),
    seed=st.integers(0, 2**31 - 1),
)


@settings(max_examples=12)
@given(**MATMUL)
def test_xnor_matmul_equals_float(m, n, k, lead, word, seed):
    check_matmul(m, n, k, lead, word, seed)


@pytest.mark.slow
@settings(max_examples=200)
@given(**MATMUL)
def test_xnor_matmul_equals_float_many(m, n, k, lead, word, seed):
    check_matmul(m, n, k, lead, word, seed)


def check_matmul(m, n, k, lead, word, seed):
    rng = np.random.default_rng(seed)
    a = pm1(rng, (*lead, m, k))
    w = pm1(rng, (n, k))
    out = xnor_matmul(pack(a, word_dtype=word), pack(w, word_dtype=word), k)
    assert out.dtype == jnp.int32
    assert out.shape == (*lead, m, n)
    np.testing.assert_array_equal(np.asarray(out), float_matmul(a, w))


@pytest.mark.parametrize(("m", "k", "n"), [(1, 4096, 37), (300, 700, 3), (3, 70, 300), (64, 1024, 64), (2, 33, 1)])
def test_xnor_matmul_shapes_of_each_path(m, k, n):
    """Multi-step scans, padded chunks, the row/column swap and a single output column."""
    rng = np.random.default_rng(m * 7 + n)
    a, w = pm1(rng, (m, k)), pm1(rng, (n, k))
    np.testing.assert_array_equal(np.asarray(xnor_matmul(pack(a), pack(w), k)), float_matmul(a, w))


def test_xnor_matmul_jit_and_32_bit_mode_leave_config_alone():
    rng = np.random.default_rng(0)
    a, w = pm1(rng, (5, 100)), pm1(rng, (7, 100))
    expected = float_matmul(a, w)
    before = jax.config.jax_enable_x64
    with jax.enable_x64(False):
        pa, pw = pack(a), pack(w)

        @jax.jit
        def f(pa, pw):
            return xnor_matmul(pa, pw, 100) + 0

        out = f(pa, pw)
        assert out.dtype == jnp.int32
        np.testing.assert_array_equal(np.asarray(out), expected)
        assert not jax.config.jax_enable_x64
    assert jax.config.jax_enable_x64 == before
    np.testing.assert_array_equal(np.asarray(jax.jit(xnor_matmul, static_argnums=2)(pack(a), pack(w), 100)), expected)
    # vmap over a batch of activations
    batched = jax.vmap(lambda x: xnor_matmul(x, pack(w), 100))(pack(a)[:, None, :])
    np.testing.assert_array_equal(np.asarray(batched)[:, 0, :], expected)


@pytest.mark.parametrize("word", WORDS)
def test_xnor_matmul_ignores_set_padding_bits(word):
    rng = np.random.default_rng(1)
    k = 45
    a, w = pm1(rng, (4, k)), pm1(rng, (6, k))
    pa, pw = np.array(pack(a, word_dtype=word)), np.array(pack(w, word_dtype=word))
    bits = word_bits(word)
    junk = np.array(((1 << bits) - 1) ^ ((1 << (k % bits)) - 1), dtype=pa.dtype)
    pa[:, -1] |= junk
    pw[:3, -1] |= junk
    np.testing.assert_array_equal(np.asarray(xnor_matmul(pa, pw, k)), float_matmul(a, w))


def float_conv(x, w_hwio, strides, padding, dilation, pad_value):
    window = [(w_hwio.shape[i] - 1) * dilation[i] + 1 for i in range(2)]
    pads = lax.padtype_to_pads(x.shape[1:3], window, strides, padding) if isinstance(padding, str) else padding
    pads = ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0))
    xp = jnp.pad(jnp.asarray(x, jnp.float64), pads, constant_values=pad_value)
    y = lax.conv_general_dilated(
        xp,
        jnp.asarray(w_hwio, jnp.float64),
        strides,
        "VALID",
        rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return np.asarray(y)


CONV = dict(
    b=st.integers(1, 2),
    h=st.integers(3, 8),
    wd=st.integers(3, 8),
    c=st.integers(1, 80),
    o=st.integers(1, 20),
    kh=st.integers(1, 3),
    kw=st.integers(1, 3),
    stride=st.integers(1, 2),
    dil=st.tuples(st.integers(1, 3), st.integers(1, 3)),  # (height, width) dilation
    padding=st.sampled_from(["SAME", "VALID", ((1, 0), (2, 1))]),
    pad_value=st.sampled_from([1, -1, 0]),
    word=st.sampled_from(WORDS),
    seed=st.integers(0, 2**31 - 1),
)


@settings(max_examples=10)
@given(**CONV)
def test_xnor_conv2d_equals_float_conv(b, h, wd, c, o, kh, kw, stride, dil, padding, pad_value, word, seed):
    check_conv(b, h, wd, c, o, kh, kw, stride, dil, padding, pad_value, word, seed)


@pytest.mark.slow
@settings(max_examples=150)
@given(**CONV)
def test_xnor_conv2d_equals_float_conv_many(b, h, wd, c, o, kh, kw, stride, dil, padding, pad_value, word, seed):
    check_conv(b, h, wd, c, o, kh, kw, stride, dil, padding, pad_value, word, seed)


def check_conv(b, h, wd, c, o, kh, kw, stride, dil, padding, pad_value, word, seed):
    rng = np.random.default_rng(seed)
    x = pm1(rng, (b, h, wd, c))
    w_hwio = pm1(rng, (kh, kw, c, o))
    strides, dilation = (stride, stride), tuple(dil)
    window = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
    pads = lax.padtype_to_pads((h, wd), window, strides, padding) if isinstance(padding, str) else padding
    if h + sum(pads[0]) < window[0] or wd + sum(pads[1]) < window[1]:
        return  # empty output: rejected with a ValueError (test_bad_inputs_raise_clear_errors)
    px = pack(x, axis=-1, word_dtype=word)
    pw = pack(jnp.transpose(w_hwio, (3, 0, 1, 2)), axis=-1, word_dtype=word)
    out = xnor_conv2d(px, pw, c, strides=strides, padding=padding, dilation=dilation, pad_value=pad_value)
    ref = float_conv(x, w_hwio, strides, padding, dilation, float(pad_value))
    assert out.dtype == jnp.int32
    assert out.shape == ref.shape
    np.testing.assert_array_equal(np.asarray(out), ref.astype(np.int64))


@pytest.mark.parametrize(
    ("h", "wd", "c", "kh", "kw", "strides", "dilation", "padding", "pad_value"),
    [
        (7, 9, 33, 3, 2, (1, 2), (1, 2), "SAME", 0),
        (9, 7, 65, 2, 3, (2, 1), (2, 2), "SAME", 0),
        (8, 8, 31, 3, 3, (2, 3), (1, 3), "VALID", 1),
        (6, 10, 40, 1, 3, (1, 1), (1, 2), ((0, 2), (3, 1)), -1),
        (10, 6, 5, 2, 2, (1, 1), (1, 3), "SAME", 1),
    ],
)
def test_xnor_conv2d_width_and_mixed_dilation(h, wd, c, kh, kw, strides, dilation, padding, pad_value):
    rng = np.random.default_rng(h * 100 + wd * 10 + c)
    x, w_hwio = pm1(rng, (2, h, wd, c)), pm1(rng, (kh, kw, c, 4))
    ref = float_conv(x, w_hwio, strides, padding, dilation, float(pad_value))
    pw = pack(jnp.transpose(w_hwio, (3, 0, 1, 2)))
    out = xnor_conv2d(pack(x), pw, c, strides=strides, padding=padding, dilation=dilation, pad_value=pad_value)
    assert out.shape == ref.shape
    np.testing.assert_array_equal(np.asarray(out), ref.astype(np.int64))


# ---------------------------------------------------------------------------- the deployed 32-bit mode, in process
# conftest turns x64 on for the whole session; the deployed setting (x64 off, uint32 words) is checked here
# under `jax.enable_x64(False)`, references computed outside the context in int64 / float64.
X64_OFF_MATMUL = [
    (1, 4096, 37),
    (300, 700, 3),
    (3, 70, 300),
    (64, 1100, 64),
    (40, 1000, 37),
    (20, 2000, 20),
    (17, 33, 1),
]


@pytest.mark.parametrize(("m", "k", "n"), X64_OFF_MATMUL)
def test_xnor_matmul_x64_off_eager_jit_vmap(m, k, n):
    """Multi-step scans, padded chunks, the row/column swap, one output column; eager, jit and vmap."""
    rng = np.random.default_rng(m * 31 + k + n)
    a, w = pm1(rng, (m, k)), pm1(rng, (n, k))
    a3, w3 = pm1(rng, (2, m, k)), pm1(rng, (2, n, k))
    expected = float_matmul(a, w)
    expected_a3 = np.einsum("bmk,nk->bmn", a3.astype(np.int64), w.astype(np.int64))
    expected_w3 = np.einsum("mk,bnk->bmn", a.astype(np.int64), w3.astype(np.int64))
    with jax.enable_x64(False):
        pa, pw = pack(a), pack(w)
        assert pa.dtype == jnp.uint32 and pw.dtype == jnp.uint32
        eager = xnor_matmul(pa, pw, k)
        jitted = jax.jit(lambda x, y: xnor_matmul(x, y, k))(pa, pw)
        over_a = jax.vmap(lambda x: xnor_matmul(x, pw, k))(pack(a3))
        over_w = jax.jit(jax.vmap(lambda y: xnor_matmul(pa, y, k)))(pack(w3))
        for out in (eager, jitted, over_a, over_w):
            assert out.dtype == jnp.int32
        np.testing.assert_array_equal(np.asarray(eager), expected)
        np.testing.assert_array_equal(np.asarray(jitted), expected)
        np.testing.assert_array_equal(np.asarray(over_a), expected_a3)
        np.testing.assert_array_equal(np.asarray(over_w), expected_w3)
        np.testing.assert_array_equal(np.asarray(unpack(pa, k)), a)


@pytest.mark.parametrize(
    ("h", "wd", "c", "kh", "kw", "strides", "dilation", "padding", "pad_value"),
    [
        (9, 9, 40, 3, 3, (1, 1), (1, 1), "SAME", 0),
        (8, 7, 70, 3, 3, (2, 2), (1, 1), "SAME", -1),
        (6, 6, 100, 3, 3, (1, 1), (1, 1), "VALID", 1),
        (7, 9, 33, 3, 2, (1, 2), (2, 2), ((1, 0), (2, 1)), 1),
    ],
)
def test_xnor_conv2d_x64_off_eager_and_jit(h, wd, c, kh, kw, strides, dilation, padding, pad_value):
    rng = np.random.default_rng(h + wd + c)
    x, w_hwio = pm1(rng, (2, h, wd, c)), pm1(rng, (kh, kw, c, 5))
    ref = float_conv(x, w_hwio, strides, padding, dilation, float(pad_value)).astype(np.int64)
    with jax.enable_x64(False):
        px, pw = pack(x), pack(jnp.transpose(w_hwio, (3, 0, 1, 2)))
        assert px.dtype == jnp.uint32

        def conv(u):
            return xnor_conv2d(u, pw, c, strides=strides, padding=padding, dilation=dilation, pad_value=pad_value)

        for out in (conv(px), jax.jit(conv)(px)):
            assert out.dtype == jnp.int32
            np.testing.assert_array_equal(np.asarray(out), ref)


def test_xnor_conv2d_zero_padding_matches_lax_same_under_jit():
    rng = np.random.default_rng(3)
    x, w_hwio = pm1(rng, (2, 9, 9, 40)), pm1(rng, (3, 3, 40, 5))
    ref = lax.conv_general_dilated(
        jnp.asarray(x), jnp.asarray(w_hwio), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    pw = pack(jnp.transpose(w_hwio, (3, 0, 1, 2)))
    out = jax.jit(lambda px: xnor_conv2d(px, pw, 40, padding="SAME", pad_value=0))(pack(x))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref).astype(np.int64))


def test_bad_inputs_raise_clear_errors():
    x = np.ones((3, 40), np.float32)
    p = pack(x)
    with pytest.raises(TypeError, match="x: expected a real"):
        pack(np.ones(4, bool))
    with pytest.raises(TypeError, match="word dtype"):
        pack(x, word_dtype=jnp.uint16)
    with pytest.raises(ValueError, match="axis"):
        pack(x, axis=2)
    with jax.enable_x64(False), pytest.raises(ValueError, match="uint64 needs jax_enable_x64"):
        pack(x, word_dtype=jnp.uint64)
    with pytest.raises(ValueError, match=r"k: expected 33 <= k <= 64"):
        unpack(p, 70)
    with pytest.raises(ValueError, match=r"k: expected 33 <= k <= 64"):
        unpack(p, 32)
    with pytest.raises(TypeError, match="dtype"):
        unpack(p, 40, dtype=jnp.uint8)
    with pytest.raises(TypeError, match="p.dtype|word dtype"):
        unpack(p.astype(jnp.int32), 40)
    w = pack(np.ones((5, 40), np.float32))
    with pytest.raises(TypeError, match="a_packed: expected packed words"):
        xnor_matmul(x, w, 40)
    with pytest.raises(TypeError, match="w_packed: expected the dtype"):
        xnor_matmul(p, w.astype(jnp.uint64), 40)
    with pytest.raises(ValueError, match="w_packed: expected 2 words per row"):
        xnor_matmul(p, pack(np.ones((5, 100), np.float32)), 40)
    with pytest.raises(ValueError, match=r"w_packed: expected shape \(N, Kw\)"):
        xnor_matmul(p, w[None], 40)
    with pytest.raises(ValueError, match="k: expected"):
        xnor_matmul(p, w, 65)
    with pytest.raises(TypeError, match="k: expected a Python int"):
        xnor_matmul(p, w, 40.0)
    with pytest.raises(TypeError, match="k: expected a Python int"):
        xnor_matmul(p, w, True)
    xp = pack(np.ones((1, 4, 4, 40), np.float32))
    wp = pack(np.ones((2, 3, 3, 40), np.float32))
    with pytest.raises(ValueError, match="x_packed: expected shape"):
        xnor_conv2d(xp[0], wp, 40)
    with pytest.raises(ValueError, match="w_packed: expected 2 channel words"):
        xnor_conv2d(xp, pack(np.ones((2, 3, 3, 70), np.float32)), 40)
    with pytest.raises(ValueError, match="padding"):
        xnor_conv2d(xp, wp, 40, padding="FULL")
    with pytest.raises(ValueError, match="pad_value"):
        xnor_conv2d(xp, wp, 40, pad_value=2)
    with pytest.raises(ValueError, match="strides"):
        xnor_conv2d(xp, wp, 40, strides=0)
    with pytest.raises(ValueError, match="output is empty"):
        xnor_conv2d(xp, pack(np.ones((2, 5, 5, 40), np.float32)), 40, padding="VALID")
    with pytest.raises(ValueError, match="k: expected"):
        xnor_conv2d(xp, wp, 20)


SHARD_SCRIPT = """
import os
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tamejax.nn.bitpack import pack, xnor_conv2d, xnor_matmul
assert len(jax.devices()) == 4
mesh = Mesh(np.array(jax.devices()), ("b",))
rng = np.random.default_rng(0)
a = np.where(rng.random((16, 300)) < 0.5, -1.0, 1.0).astype(np.float32)
w = np.where(rng.random((40, 300)) < 0.5, -1.0, 1.0).astype(np.float32)
pa, pw = pack(a), pack(w)
expected = (a.astype(np.int64) @ w.T.astype(np.int64))
sharded = jax.jit(lambda x, y: xnor_matmul(x, y, 300))(jax.device_put(pa, NamedSharding(mesh, P("b", None))), pw)
assert np.array_equal(np.asarray(sharded), expected), "jit on sharded input"
per_shard = jax.jit(jax.shard_map(lambda x: xnor_matmul(x, pw, 300), mesh=mesh, in_specs=P("b"), out_specs=P("b")))(pa)
assert np.array_equal(np.asarray(per_shard), expected), "shard_map"
x = np.where(rng.random((8, 6, 6, 40)) < 0.5, -1.0, 1.0).astype(np.float32)
wk = pack(jnp.transpose(np.where(rng.random((3, 3, 40, 5)) < 0.5, -1.0, 1.0).astype(np.float32), (3, 0, 1, 2)))
conv = jax.jit(lambda u: xnor_conv2d(u, wk, 40, pad_value=0))
assert np.array_equal(np.asarray(conv(jax.device_put(pack(x), NamedSharding(mesh, P("b"))))), np.asarray(conv(pack(x))))
print("sharded ok")
"""


def test_sharded_and_unsharded_results_agree():
    """Batch-sharded inputs on 4 forced CPU devices (a subprocess: the device count is fixed at start-up)."""
    proc = subprocess.run([sys.executable, "-c", SHARD_SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sharded ok" in proc.stdout
