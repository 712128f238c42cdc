"""Pallas kernel for the binary (XNOR) matrix product on bit-packed operands (GPU / TPU path).

A ±1 vector of length ``k`` is stored as ``ceil(k / 32)`` ``uint32`` words (bit = 1 encodes -1,
bit = 0 encodes +1, element ``i`` in word ``i // 32`` at bit ``i % 32``, padding bits 0; the
convention of :mod:`tamejax.nn.bitpack`). For two such vectors

.. math::

    \\langle a, w \\rangle = \\sum_i a_i w_i = k - 2\\,\\mathrm{popcount}(a \\oplus w),

Courbariaux et al. (2016), *Binarized Neural Networks*; Rastegari et al. (2016), *XNOR-Net*.

On accelerators the fastest way to evaluate this product is often *not* popcount: the matrix
units of GPUs (int8 tensor cores) and TPUs (MXU) multiply int8 matrices at several times the
rate of the vector units. :func:`xnor_matmul_pallas` therefore unpacks each tile of words to
int8 ±1 *inside the kernel* (in registers / VMEM, never in HBM, so memory traffic stays at one
bit per weight) and accumulates int8 dot products into int32. A popcount variant
(``method="popcount"``) is provided too. On CPU the kernel runs in Pallas interpret mode, which
is slow and meant for testing; use :func:`tamejax.nn.bitpack.xnor_matmul` on CPU.

Both variants are exact: every intermediate is an integer of magnitude at most ``k < 2**31``.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl

__all__ = ["xnor_matmul_pallas"]

WORD_BITS = 32
_DEFAULT_TILES = {"int8": (128, 128, 32), "popcount": (32, 32, 8)}


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _tile(requested: int, size: int, floor: int) -> int:
    """Tile length: the requested one, shrunk to the (power-of-two rounded) problem size."""
    return max(1, min(int(requested), max(floor, _next_pow2(size))))


def _pm1_int8(words: jax.Array, bit: int) -> jax.Array:
    """Bit ``bit`` of every word as int8 ±1 (bit 0 -> +1, bit 1 -> -1)."""
    b = jax.lax.shift_right_logical(words, jnp.uint32(bit)) & jnp.uint32(1)
    return (jnp.int32(1) - jnp.int32(2) * b.astype(jnp.int32)).astype(jnp.int8)


def _int8_kernel(a_ref, w_ref, o_ref):  # noqa: ANN001 - Pallas refs
    """One (i, j, kk) grid step: o[i, j] += sum over the 32 bit planes of A_b @ W_b^T (int8 -> int32).

    Instead of reshaping the (tm, tkw, 32) unpacked tile into (tm, 32 tkw), which costs a
    relayout on TPU and is not supported by every lowering, the contraction over the K bits is
    split by bit position: plane ``b`` holds bit ``b`` of every word of the tile, and the dot
    product over all bits is the sum over the 32 planes of plane dot products (the order of the
    terms of a sum over K does not matter, only that both operands use the same order).
    """

    @pl.when(pl.program_id(2) == 0)
    def _init():
        o_ref[...] = jnp.zeros(o_ref.shape, jnp.int32)

    a = a_ref[...]
    w = w_ref[...]
    acc = jnp.zeros(o_ref.shape, jnp.int32)
    dims = (((1,), (1,)), ((), ()))  # contract the word axis of both: A @ W^T
    for bit in range(WORD_BITS):
        acc = acc + jax.lax.dot_general(_pm1_int8(a, bit), _pm1_int8(w, bit), dims, preferred_element_type=jnp.int32)
    o_ref[...] += acc


def _popcount_kernel(a_ref, w_ref, o_ref):  # noqa: ANN001 - Pallas refs
    """One (i, j, kk) grid step: o[i, j] += sum_words popcount(a XOR w) (vector units)."""

    @pl.when(pl.program_id(2) == 0)
    def _init():
        o_ref[...] = jnp.zeros(o_ref.shape, jnp.int32)

    a = a_ref[...]
    w = w_ref[...]
    x = a[:, None, :] ^ w[None, :, :]
    o_ref[...] += jnp.sum(jax.lax.population_count(x).astype(jnp.int32), axis=-1, dtype=jnp.int32)


def _check_operand(name: str, x: jax.Array) -> None:
    if not isinstance(x, jax.Array | np.ndarray):
        raise TypeError(f"{name}: expected a jax.Array or numpy array of uint32 words, received {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array of packed words, received shape {tuple(x.shape)}")
    if x.dtype != jnp.uint32:
        raise TypeError(f"{name}: expected dtype uint32 (packed words), received {x.dtype}")


def xnor_matmul_pallas(
    a_packed: jax.Array,
    w_packed: jax.Array,
    k: int,
    *,
    method: Literal["int8", "popcount"] = "int8",
    block_m: int | None = None,
    block_n: int | None = None,
    block_kw: int | None = None,
    interpret: bool | None = None,
) -> jax.Array:
    """Binary matrix product of bit-packed ±1 operands with a Pallas kernel: ``A @ W^T`` in int32.

    With ``A`` the (M, k) ±1 matrix packed in ``a_packed`` and ``W`` the (N, k) ±1 matrix packed
    in ``w_packed`` (weights stored output-major, i.e. ``pack(kernel.T)`` for a Flax kernel of
    shape (k, N)), returns the (M, N) int32 matrix

    .. math::

        Y_{mn} = \\sum_{i<k} A_{mi} W_{ni} = k - 2 \\sum_{j} \\mathrm{popcount}(a_{mj} \\oplus w_{nj}),

    bit-identical to ``unpack(a) @ unpack(w).T`` computed in floating point (every term is an
    integer of magnitude at most ``k``).

    Grid and padding: the grid is (M / block_m, N / block_n, Kw / block_kw) with the word axis
    last (accumulated in the resident output tile). M, N and the word count Kw are padded up to
    multiples of the tile sizes with zero words; padded rows and columns are sliced off, and the
    zero words padded along K (each bit 0, i.e. +1, in both operands: +1 per bit) are corrected
    for exactly by subtracting ``32 * Kw_padded - k`` in the int8 variant (the popcount variant
    needs no correction, its result is ``k - 2 * popcount``). The padding *bits* of the last
    real word (positions >= k) are masked to 0 in both operands first, so operands whose
    padding bits are not 0 still give exact results. Tiles are shrunk to the problem size
    (rounded up to a power of two, at least 16 so that GPU int8 dots have legal shapes).

    Method: ``"int8"`` unpacks each tile to int8 ±1 inside the kernel, one bit plane at a time
    (plane ``b`` = bit ``b`` of every word), and sums the 32 plane products
    ``dot(A_b, W_b^T, preferred_element_type=int32)``: the int8 matrix units of GPUs and TPUs
    do the work while HBM traffic stays one bit per element. ``"popcount"`` XORs a
    (block_m, block_n, block_kw) broadcast tile and sums population counts on the vector units;
    it wins only where no int8 matrix unit exists.

    Inside ``jax.shard_map`` pass ``check_vma=False`` (a ``pallas_call`` output carries no
    varying-manual-axes type, and the interpreter rejects mixing varying and replicated operands).

    No GPU or TPU was available where this kernel was written and tested: it is verified
    bit-exact in Pallas interpret mode only, and no accelerator timings are claimed. Tile sizes
    are starting points (TPU tiles should keep the last block dimension a multiple of 128 and
    the second-to-last a multiple of 8).

    Args:
        a_packed: packed activations, uint32 array of shape (M, Kw) with ``Kw = ceil(k / 32)``.
        w_packed: packed weights, output-major, uint32 array of shape (N, Kw).
        k: the true length of the contraction axis (number of ±1 elements per row), ``1 <= k <= 32 * Kw``
            and ``k > 32 * (Kw - 1)``.
        method: ``"int8"`` (unpack to int8 and use the matrix units) or ``"popcount"``.
        block_m: tile size along M (rows of ``a_packed``); None: 128 (int8) or 32 (popcount).
        block_n: tile size along N (rows of ``w_packed``); None: 128 (int8) or 32 (popcount).
        block_kw: tile size along the word axis (``32 * block_kw`` bits per grid step); None: 32
            (int8) or 8 (popcount, whose (block_m, block_n, block_kw) XOR tile lives in registers).
        interpret: run the kernel in Pallas interpret mode; ``None`` (default) selects interpret
            mode exactly when the default JAX backend is the CPU.

    Returns:
        int32 array of shape (M, N): ``A @ W^T`` over the first ``k`` bits.

    Raises:
        TypeError: if an operand is not a uint32 array.
        ValueError: if the shapes are inconsistent, ``k`` does not match the word count, a block
            size is not positive, or ``method`` is unknown.
    """
    _check_operand("a_packed", a_packed)
    _check_operand("w_packed", w_packed)
    m, kw = a_packed.shape
    n, kw_w = w_packed.shape
    if kw != kw_w:
        raise ValueError(f"w_packed: expected {kw} words per row (as a_packed), received shape {tuple(w_packed.shape)}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"k: expected a Python int (the true contraction length), received {type(k).__name__}")
    k = int(k)
    if not (WORD_BITS * (kw - 1) < k <= WORD_BITS * kw):
        raise ValueError(
            f"k: expected {WORD_BITS * (kw - 1) + 1} <= k <= {WORD_BITS * kw} for {kw} packed words, received {k}"
        )
    if method not in ("int8", "popcount"):
        raise ValueError(f"method: expected 'int8' or 'popcount', received {method!r}")
    defaults = _DEFAULT_TILES[method]
    block_m = defaults[0] if block_m is None else block_m
    block_n = defaults[1] if block_n is None else block_n
    block_kw = defaults[2] if block_kw is None else block_kw
    for name, val in (("block_m", block_m), ("block_n", block_n), ("block_kw", block_kw)):
        if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 1:
            raise ValueError(f"{name}: expected a positive int, received {val!r}")
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    if m == 0 or n == 0:
        return jnp.zeros((m, n), jnp.int32)
    return _xnor_matmul_pallas(
        jnp.asarray(a_packed),
        jnp.asarray(w_packed),
        k=k,
        method=method,
        block_m=int(block_m),
        block_n=int(block_n),
        block_kw=int(block_kw),
        interpret=bool(interpret),
    )


@functools.partial(jax.jit, static_argnames=("k", "method", "block_m", "block_n", "block_kw", "interpret"))
def _xnor_matmul_pallas(
    a: jax.Array,
    w: jax.Array,
    *,
    k: int,
    method: str,
    block_m: int,
    block_n: int,
    block_kw: int,
    interpret: bool,
) -> jax.Array:
    m, kw = a.shape
    n = w.shape[0]
    tail = k - WORD_BITS * (kw - 1)  # valid bits in the last word, 1..32
    if tail < WORD_BITS:  # zero the padding bits of the last word in both operands
        mask = jnp.uint32((1 << tail) - 1)
        a = a.at[:, -1].set(a[:, -1] & mask)
        w = w.at[:, -1].set(w[:, -1] & mask)

    tm = _tile(block_m, m, 16)
    tn = _tile(block_n, n, 16)
    tk = _tile(block_kw, kw, 16 if method == "int8" else 1)
    mp, np_, kwp = -(-m // tm) * tm, -(-n // tn) * tn, -(-kw // tk) * tk
    a = jnp.pad(a, ((0, mp - m), (0, kwp - kw)))
    w = jnp.pad(w, ((0, np_ - n), (0, kwp - kw)))

    kernel = _int8_kernel if method == "int8" else _popcount_kernel
    out = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((mp, np_), jnp.int32),
        grid=(mp // tm, np_ // tn, kwp // tk),
        in_specs=[
            pl.BlockSpec((tm, tk), lambda i, j, kk: (i, kk)),
            pl.BlockSpec((tn, tk), lambda i, j, kk: (j, kk)),
        ],
        out_specs=pl.BlockSpec((tm, tn), lambda i, j, kk: (i, j)),
        interpret=interpret,
        name=f"xnor_matmul_{method}",
    )(a, w)
    out = out[:m, :n]
    if method == "int8":
        # Every bit past k is 0 in both operands: +1 * +1 = +1 per padding bit.
        return out - jnp.int32(WORD_BITS * kwp - k)
    return jnp.int32(k) - jnp.int32(2) * out
