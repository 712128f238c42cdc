"""Pallas XNOR kernel (interpret mode on CPU): bit-identical to the float computation.

Oracle: ``A @ W.T`` of the ±1 matrices in float64 (numpy), packed with an independent numpy
packer (so the kernel is not checked against the packing code it may share bugs with), and
:func:`tamejax.nn.bitpack.pack` for the round trip. Interpret mode runs the grid as a loop,
so sizes stay small.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tamejax.nn import bitpack
from tamejax.nn.pallas import xnor_matmul_pallas


def np_pack(x: np.ndarray) -> np.ndarray:
    """Reference packer: rows of ±1 (sign(0) = +1) -> uint32 words, bit 1 = -1, LSB first, padding 0."""
    r, k = x.shape
    kw = -(-k // 32)
    bits = np.zeros((r, kw * 32), np.uint64)
    bits[:, :k] = x < 0
    return (bits.reshape(r, kw, 32) << np.arange(32, dtype=np.uint64)).sum(-1).astype(np.uint32)


def pm1(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


def test_np_pack_matches_bitpack() -> None:
    x = pm1(np.random.default_rng(0), (3, 70))
    assert np.array_equal(np_pack(x), np.asarray(bitpack.pack(jnp.asarray(x), axis=-1)))


CASES = {
    "m": st.integers(1, 20),
    "k": st.integers(1, 100),
    "n": st.integers(1, 20),
    "method": st.sampled_from(["int8", "popcount"]),
    "seed": st.integers(0, 2**31 - 1),
}


def check_pallas(m: int, k: int, n: int, method: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, w = pm1(rng, (m, k)), pm1(rng, (n, k))
    out = xnor_matmul_pallas(jnp.asarray(np_pack(a)), jnp.asarray(np_pack(w)), k, method=method, block_kw=16)
    assert out.dtype == jnp.int32 and out.shape == (m, n)
    assert np.array_equal(np.asarray(out), a @ w.T)


@settings(max_examples=6, suppress_health_check=[HealthCheck.too_slow])
@given(**CASES)
def test_pallas_bit_identical_to_float(m: int, k: int, n: int, method: str, seed: int) -> None:
    check_pallas(m, k, n, method, seed)


@pytest.mark.slow
@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(**{**CASES, "m": st.integers(1, 70), "k": st.integers(1, 300), "n": st.integers(1, 70)})
def test_pallas_bit_identical_to_float_many_shapes(m: int, k: int, n: int, method: str, seed: int) -> None:
    check_pallas(m, k, n, method, seed)


@pytest.mark.parametrize(("method", "block_kw", "words"), [("int8", 16, 40), ("popcount", 2, 5)])
def test_shapes_not_multiple_of_blocks_and_multiple_k_tiles(method: str, block_kw: int, words: int) -> None:
    # M, N, Kw all off the tile sizes, and several K tiles (the in-kernel K loop: 3 steps).
    rng = np.random.default_rng(1)
    m, k, n = 19, 32 * words + 7, 23
    a, w = pm1(rng, (m, k)), pm1(rng, (n, k))
    out = xnor_matmul_pallas(
        jnp.asarray(np_pack(a)), jnp.asarray(np_pack(w)), k, method=method, block_m=16, block_n=16, block_kw=block_kw
    )
    assert np.array_equal(np.asarray(out), a @ w.T)


@pytest.mark.parametrize("method", ["int8", "popcount"])
def test_batch_one_and_extremes(method: str) -> None:
    # batch 1, k = 1, and all-(-1) rows (every bit set) against all-(+1): the dot is -k.
    a = -np.ones((1, 45))
    w = np.concatenate([np.ones((1, 45)), -np.ones((1, 45))])
    out = np.asarray(xnor_matmul_pallas(jnp.asarray(np_pack(a)), jnp.asarray(np_pack(w)), 45, method=method))
    assert np.array_equal(out, [[-45, 45]])
    one = np.asarray(
        xnor_matmul_pallas(jnp.asarray(np_pack(-np.ones((1, 1)))), jnp.asarray(np_pack(-np.ones((3, 1)))), 1)
    )
    assert np.array_equal(one, [[1, 1, 1]])


@pytest.mark.parametrize("method", ["int8", "popcount"])
def test_nonzero_padding_bits_are_masked(method: str) -> None:
    # Padding bits past k set to 1 in one operand must not change the result.
    rng = np.random.default_rng(2)
    k = 40
    a, w = pm1(rng, (3, k)), pm1(rng, (4, k))
    ap, wp = np_pack(a), np_pack(w)
    ap[:, -1] |= np.uint32(0xFFFFFF00)  # bits 8..31 of word 1 are past k = 40
    out = xnor_matmul_pallas(jnp.asarray(ap), jnp.asarray(wp), k, method=method)
    assert np.array_equal(np.asarray(out), a @ w.T)


def test_under_jit_and_agrees_with_xla_kernel() -> None:
    rng = np.random.default_rng(3)
    a, w = pm1(rng, (5, 77)), pm1(rng, (6, 77))
    ap, wp = jnp.asarray(np_pack(a)), jnp.asarray(np_pack(w))
    f = jax.jit(lambda x, y: xnor_matmul_pallas(x, y, 77))
    assert np.array_equal(np.asarray(f(ap, wp)), np.asarray(bitpack.xnor_matmul(ap, wp, 77)))
    assert np.array_equal(np.asarray(f(ap, wp)), a @ w.T)


def test_interpret_auto_on_cpu() -> None:
    assert jax.default_backend() == "cpu"
    x = jnp.asarray(np_pack(np.ones((2, 3))))
    # interpret=None selects interpret mode on CPU (compiled Pallas has no CPU lowering).
    assert np.array_equal(np.asarray(xnor_matmul_pallas(x, x, 3, interpret=None)), np.full((2, 2), 3))


def test_bad_input() -> None:
    a = jnp.zeros((2, 2), jnp.uint32)
    with pytest.raises(TypeError, match="a_packed"):
        xnor_matmul_pallas(a.astype(jnp.int32), a, 40)
    with pytest.raises(ValueError, match="w_packed"):
        xnor_matmul_pallas(a, jnp.zeros((2, 3), jnp.uint32), 40)
    with pytest.raises(ValueError, match="k: expected 33 <= k <= 64"):
        xnor_matmul_pallas(a, a, 70)
    with pytest.raises(ValueError, match="method"):
        xnor_matmul_pallas(a, a, 40, method="float")
    with pytest.raises(ValueError, match="block_m"):
        xnor_matmul_pallas(a, a, 40, block_m=0)
    with pytest.raises(ValueError, match="block_n: expected a positive power of two"):
        xnor_matmul_pallas(a, a, 40, block_n=24)
    with pytest.raises(ValueError, match="block_kw: method='int8' needs tiles of at least 16"):
        xnor_matmul_pallas(a, a, 40, block_kw=8)
    with pytest.raises(ValueError, match="platform"):
        xnor_matmul_pallas(a, a, 40, platform="cuda")
    with pytest.raises(ValueError, match="a_packed"):
        xnor_matmul_pallas(jnp.zeros((2,), jnp.uint32), a, 40)


# ------------------------------------------------------------ accelerator lowering (on CPU)
# No GPU/TPU here: these check that the kernels *lower* for CUDA (to Triton IR) and for TPU (to
# Mosaic) from a CPU-only machine. They were never compiled by Triton/ptxas or libtpu nor run.


def _lower_text(platform: str, method: str, m: int, kw: int, **blocks: int) -> str:
    a = jnp.zeros((m, kw), jnp.uint32)
    target = "gpu" if platform == "cuda" else "tpu"
    f = jax.jit(
        lambda x, y: xnor_matmul_pallas(x, y, 32 * kw, method=method, interpret=False, platform=target, **blocks)
    )
    return f.trace(a, a).lower(lowering_platforms=(platform,)).as_text()


@pytest.mark.parametrize("method", ["int8", "popcount"])
def test_lowers_for_cuda_with_triton_and_a_2d_parallel_grid(method: str) -> None:
    # JAX's default GPU lowering here is Mosaic GPU, which cannot lower these kernels: the Triton
    # backend is selected explicitly (compiler_params). Kw = 94 words with 16-word K steps: the K
    # loop runs inside the kernel, so the launch grid has no K axis (grid_z = 1).
    blocks = {"block_kw": 16} if method == "int8" else {"block_kw": 8}
    txt = _lower_text("cuda", method, 64, 94, block_m=32, block_n=32, **blocks)
    assert "xla.gpu.triton" in txt
    assert "grid_x = 2" in txt and "grid_y = 2" in txt and "grid_z = 1" in txt


@pytest.mark.parametrize("method", ["int8", "popcount"])
def test_lowers_for_tpu_with_default_tiles(method: str) -> None:
    # JAX-side Pallas -> Mosaic lowering only (the Mosaic compiler in libtpu is not available here).
    txt = _lower_text("tpu", method, 256, 64)
    assert "tpu_custom_call" in txt
