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
# TPU (Mosaic): the output block's last dimension must be a multiple of 128 (or the whole padded N).
_DEFAULT_TILES_TPU = {"int8": (128, 128, 32), "popcount": (32, 128, 8)}


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _tile(requested: int, size: int, floor: int) -> int:
    """Tile length: the requested one (a validated power of two), shrunk to the problem size rounded up to a power
    of two, never below ``floor``."""
    return max(floor, min(int(requested), _next_pow2(size)))


def _pm1_int8(words: jax.Array, bit: int) -> jax.Array:
    """Bit ``bit`` of every word as int8 ±1 (bit 0 -> +1, bit 1 -> -1)."""
    b = jax.lax.shift_right_logical(words, jnp.uint32(bit)) & jnp.uint32(1)
    return (jnp.int32(1) - jnp.int32(2) * b.astype(jnp.int32)).astype(jnp.int8)


def _int8_tile(a: jax.Array, w: jax.Array) -> jax.Array:
    """sum over the 32 bit planes of A_b @ W_b^T (int8 -> int32) for one (tm, tk) x (tn, tk) tile of words.

    Instead of reshaping the (tm, tk, 32) unpacked tile into (tm, 32 tk), which costs a relayout
    on TPU and is not supported by every lowering, the contraction over the K bits is split by
    bit position: plane ``b`` holds bit ``b`` of every word of the tile, and the dot product over
    all bits is the sum over the 32 planes of plane dot products (the order of the terms of a sum
    over K does not matter, only that both operands use the same order).
    """
    acc = jnp.zeros((a.shape[0], w.shape[0]), jnp.int32)
    dims = (((1,), (1,)), ((), ()))  # contract the word axis of both: A @ W^T
    for bit in range(WORD_BITS):
        acc = acc + jax.lax.dot_general(_pm1_int8(a, bit), _pm1_int8(w, bit), dims, preferred_element_type=jnp.int32)
    return acc


def _popcount_tile(a: jax.Array, w: jax.Array) -> jax.Array:
    """sum over the words of popcount(a XOR w) for one (tm, tk) x (tn, tk) tile (vector units)."""
    x = a[:, None, :] ^ w[None, :, :]
    return jnp.sum(jax.lax.population_count(x).astype(jnp.int32), axis=-1, dtype=jnp.int32)


def _make_kernel(method: str, tk: int, n_k: int):  # noqa: ANN202 - returns a Pallas kernel
    """Kernel for one (i, j) output tile: loops over the ``n_k`` word tiles of K *inside* the kernel.

    The whole K extent of the (i, j) rows is one block; the loop reads ``tk``-word slices of it
    (``pl.ds``) and accumulates in registers; the output tile is written once. No grid step reads
    or writes another step's output, so both grid axes are parallel (safe on a GPU, where grid
    steps run concurrently).
    """
    tile = _int8_tile if method == "int8" else _popcount_tile

    def kernel(a_ref, w_ref, o_ref):  # noqa: ANN001 - Pallas refs
        if n_k == 1:
            o_ref[...] = tile(a_ref[...], w_ref[...])
            return

        def body(kk, acc):  # noqa: ANN001, ANN202
            s = pl.multiple_of(kk * jnp.int32(tk), tk)  # int32 even under jax_enable_x64 (Mosaic indices)
            return acc + tile(a_ref[:, pl.ds(s, tk)], w_ref[:, pl.ds(s, tk)])

        o_ref[...] = jax.lax.fori_loop(jnp.int32(0), jnp.int32(n_k), body, jnp.zeros(o_ref.shape, jnp.int32))

    return kernel


def _check_operand(name: str, x: jax.Array) -> None:
    if not isinstance(x, jax.Array | np.ndarray):
        raise TypeError(f"{name}: expected a jax.Array or numpy array of uint32 words, received {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array of packed words, received shape {tuple(x.shape)}")
    if x.dtype != jnp.uint32:
        raise TypeError(f"{name}: expected dtype uint32 (packed words), received {x.dtype}")


def _compiler_params(platform: str) -> object:
    """Explicit Pallas backend selection: Triton on GPU, Mosaic TPU (both grid axes parallel) on TPU."""
    if platform == "gpu":
        from jax.experimental.pallas import triton as pltriton

        return pltriton.CompilerParams()
    from jax.experimental.pallas import tpu as pltpu

    return pltpu.CompilerParams(dimension_semantics=("parallel", "parallel"))


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
    platform: Literal["gpu", "tpu"] | None = None,
) -> jax.Array:
    """Binary matrix product of bit-packed ±1 operands with a Pallas kernel: ``A @ W^T`` in int32.

    With ``A`` the (M, k) ±1 matrix packed in ``a_packed`` and ``W`` the (N, k) ±1 matrix packed
    in ``w_packed`` (weights stored output-major, i.e. ``pack(kernel.T)`` for a Flax kernel of
    shape (k, N)), returns the (M, N) int32 matrix

    .. math::

        Y_{mn} = \\sum_{i<k} A_{mi} W_{ni} = k - 2 \\sum_{j} \\mathrm{popcount}(a_{mj} \\oplus w_{nj}),

    bit-identical to ``unpack(a) @ unpack(w).T`` computed in floating point (every term is an
    integer of magnitude at most ``k``).

    Grid and padding: the grid is (M / block_m, N / block_n), both axes parallel. Each grid step
    owns one (block_m, block_n) output tile, reads the whole K extent of its rows and columns,
    loops over it in slices of ``block_kw`` words *inside* the kernel (``lax.fori_loop``),
    accumulates in registers and writes its output tile once: no grid step reads or writes
    another step's output, so the kernel is race-free where grid steps run concurrently (GPU).
    M, N and the word count Kw are padded up to multiples of the tile sizes with zero words;
    padded rows and columns are sliced off, and the zero words padded along K (each bit 0, i.e.
    +1, in both operands: +1 per bit) are corrected for exactly by subtracting
    ``32 * Kw_padded - k`` in the int8 variant (the popcount variant needs no correction, its
    result is ``k - 2 * popcount``). The padding *bits* of the last real word (positions >= k)
    are masked to 0 in both operands first, so operands whose padding bits are not 0 still give
    exact results. This assumes that all padding bits sit at the end of each row (one packed
    vector of length k); for concatenated word groups (a packed im2col) pass
    ``k = 32 * Kw`` and subtract the padding bits yourself, as :mod:`tamejax.nn.packed` does.
    Requested tiles must be powers of two (Triton block shapes), at least 16 along every axis
    for ``"int8"`` (the smallest Triton ``dot``); they are shrunk to the problem size rounded up
    to a power of two (never below 16 along M and N, and for ``"int8"`` along K).

    Method: ``"int8"`` unpacks each tile to int8 ±1 inside the kernel, one bit plane at a time
    (plane ``b`` = bit ``b`` of every word), and sums the 32 plane products
    ``dot(A_b, W_b^T, preferred_element_type=int32)``: the int8 matrix units of GPUs and TPUs
    do the work while HBM traffic stays one bit per element. ``"popcount"`` XORs a
    (block_m, block_n, block_kw) broadcast tile and sums population counts on the vector units;
    it wins only where no int8 matrix unit exists.

    Backends: ``interpret=True`` runs the Pallas interpreter (any platform, slow: testing only;
    use :func:`tamejax.nn.bitpack.xnor_matmul` on CPU). Compiled, the Pallas backend is chosen
    explicitly through ``compiler_params``: Triton on GPU
    (``jax.experimental.pallas.triton.CompilerParams``; JAX's default GPU lowering, Mosaic GPU,
    cannot lower these kernels), Mosaic TPU with both grid axes ``"parallel"`` on TPU.

    What was verified, and what was not: no GPU or TPU was available where this kernel was
    written. It is verified bit-exact in Pallas interpret mode on CPU (tests), and its
    lowering for CUDA through Triton (``jax.jit(f).trace(...).lower(lowering_platforms=("cuda",))``
    on a CPU-only machine, which produces the Triton IR; both methods, with the K loop) is
    checked by the tests. It was never compiled by Triton/ptxas nor run on a GPU, and no
    accelerator timings are claimed. TPU is *unverified*: on CPU, JAX's Pallas-to-Mosaic lowering
    for TPU (``lowering_platforms=("tpu",)``) succeeds with the default TPU tiles for both methods
    (checked by the tests), but the Mosaic compiler (in libtpu) never saw the kernels, so they may
    still be rejected on a TPU; treat TPU as experimental until tested on one.

    Inside ``jax.shard_map`` pass ``check_vma=False`` (a ``pallas_call`` output carries no
    varying-manual-axes type, and the interpreter rejects mixing varying and replicated operands).

    Args:
        a_packed: packed activations, uint32 array of shape (M, Kw) with ``Kw = ceil(k / 32)``.
        w_packed: packed weights, output-major, uint32 array of shape (N, Kw).
        k: the true length of the contraction axis (number of ±1 elements per row), ``1 <= k <= 32 * Kw``
            and ``k > 32 * (Kw - 1)``.
        method: ``"int8"`` (unpack to int8 and use the matrix units) or ``"popcount"``.
        block_m: tile size along M (rows of ``a_packed``), a power of two; None: 128 (int8) or 32 (popcount).
        block_n: tile size along N (rows of ``w_packed``), a power of two; None: 128 (int8) or 32 (popcount;
            128 when compiled for TPU, whose output blocks need a last dimension that is a multiple of 128 or
            the whole padded N).
        block_kw: words per step of the in-kernel K loop (``32 * block_kw`` bits), a power of two;
            None: 32 (int8) or 8 (popcount, whose (block_m, block_n, block_kw) XOR tile lives in registers).
        interpret: run the kernel in Pallas interpret mode; ``None`` (default) selects interpret
            mode exactly when ``jax.default_backend()`` is the CPU (the default backend, not the
            device the operands live on).
        platform: target of the compiled kernel, ``"gpu"`` (Triton) or ``"tpu"`` (Mosaic TPU);
            None: ``"tpu"`` when ``jax.default_backend()`` is the TPU, else ``"gpu"``. Ignored in
            interpret mode. Set it when lowering for another platform than the default one.

    Returns:
        int32 array of shape (M, N): ``A @ W^T`` over the first ``k`` bits.

    Raises:
        TypeError: if an operand is not a uint32 array.
        ValueError: if the shapes are inconsistent, ``k`` does not match the word count, a block
            size is not a power of two (or below 16 for ``"int8"``), or ``method`` / ``platform``
            is unknown.
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
    if platform not in (None, "gpu", "tpu"):
        raise ValueError(f"platform: expected 'gpu', 'tpu' or None, received {platform!r}")
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    if platform is None:
        platform = "tpu" if jax.default_backend() == "tpu" else "gpu"
    defaults = (_DEFAULT_TILES_TPU if platform == "tpu" and not interpret else _DEFAULT_TILES)[method]
    block_m = defaults[0] if block_m is None else block_m
    block_n = defaults[1] if block_n is None else block_n
    block_kw = defaults[2] if block_kw is None else block_kw
    least = 16 if method == "int8" else 1
    for name, val in (("block_m", block_m), ("block_n", block_n), ("block_kw", block_kw)):
        if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 1 or (int(val) & (int(val) - 1)):
            raise ValueError(f"{name}: expected a positive power of two, received {val!r}")
        if val < least:
            raise ValueError(f"{name}: method='int8' needs tiles of at least 16 (Triton dot shapes), received {val}")
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
        platform=platform,
    )


@functools.partial(jax.jit, static_argnames=("k", "method", "block_m", "block_n", "block_kw", "interpret", "platform"))
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
    platform: str,
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

    out = pl.pallas_call(
        _make_kernel(method, tk, kwp // tk),
        out_shape=jax.ShapeDtypeStruct((mp, np_), jnp.int32),
        grid=(mp // tm, np_ // tn),
        in_specs=[
            pl.BlockSpec((tm, kwp), lambda i, j: (i, 0)),
            pl.BlockSpec((tn, kwp), lambda i, j: (j, 0)),
        ],
        out_specs=pl.BlockSpec((tm, tn), lambda i, j: (i, j)),
        interpret=interpret,
        compiler_params=None if interpret else _compiler_params(platform),
        name=f"xnor_matmul_{method}",
    )(a, w)
    out = out[:m, :n]
    if method == "int8":
        # Every bit past k is 0 in both operands: +1 * +1 = +1 per padding bit.
        return out - jnp.int32(WORD_BITS * kwp - k)
    return jnp.int32(k) - jnp.int32(2) * out
