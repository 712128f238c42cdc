"""Bit packing of ±1 tensors and XNOR-popcount matmul / conv kernels compiled by XLA.

A binarized layer multiplies ±1 activations by ±1 weights. Packing 32 (or 64) signs per machine
word turns a length-``K`` dot product into bit operations: with bit ``1`` encoding ``-1`` and bit
``0`` encoding ``+1``, two signs agree exactly when their bits are equal, so

$$\\sum_{i<K} a_i w_i \\;=\\; (\\#\\text{agree}) - (\\#\\text{disagree})
\\;=\\; K - 2\\,\\operatorname{popcount}(a \\oplus w),$$

summed over the words of the packed vectors (Rastegari et al., *XNOR-Net*, ECCV 2016; Courbariaux
et al., *Binarized Neural Networks*, 2016; the sign-bit convention of Larq Compute Engine,
Bannink et al., MLSys 2021).

Conventions (shared by every packed routine in :mod:`tamejax.nn`):

* the bit of a real value ``v`` is ``1`` if ``v < 0`` and ``0`` otherwise, i.e. ``sign(0) = +1``
  (``-0.0`` and NaN also give ``+1``);
* element ``i`` of the packed axis goes to word ``i // B``, bit ``i % B`` (least significant bit
  first), ``B`` = 32 for ``uint32`` (the default) and 64 for ``uint64``. On little-endian hosts
  the ``uint64`` packing of a tensor is bit for bit the ``uint32`` packing with consecutive word
  pairs fused (low word first);
* when the axis length ``K`` is not a multiple of ``B``, the padding bits of the last word are
  ``0`` (``+1``); the kernels take the true ``K`` and, to be safe against foreign data, clear
  the padding bits of both operands themselves, so they never change a result.

Kernels on CPU. XLA has no popcount matmul; the kernels here are written in plain ``jax.lax``
so that XLA fuses the XOR, the population count and the reduction into one vectorised loop
(see :func:`xnor_matmul` for the formulation and why it was chosen).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike, DTypeLike

__all__ = ["pack", "unpack", "xnor_conv2d", "xnor_matmul", "word_bits"]

_WORD_BITS = {np.dtype(np.uint32): 32, np.dtype(np.uint64): 64}
# Words (of 64 bits) XOR-ed and popcounted per step of the scan in the matmul kernel.
_CHUNK_WORDS64 = 8
# Below this many output columns, the kernel vectorises over rows instead (see xnor_matmul).
_MIN_VECTOR_COLUMNS = 16
# Up to this many rows (after the swap), the kernel reduces along the contiguous word axis.
_MAX_ROWDOT_ROWS = 2


def word_bits(dtype: DTypeLike) -> int:
    """Number of bits per word of a packing word dtype.

    Args:
        dtype: a NumPy/JAX dtype; ``uint32`` or ``uint64``.

    Returns:
        32 or 64.

    Raises:
        TypeError: if ``dtype`` is not ``uint32`` or ``uint64``.
    """
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"word dtype: expected uint32 or uint64, got {dtype!r}") from exc
    if dt not in _WORD_BITS:
        raise TypeError(f"word dtype: expected uint32 or uint64, got {dt}")
    return _WORD_BITS[dt]


def _check_k(k, kw: int, bits: int, field: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"{field}: expected a Python int (static), got {type(k).__name__}")
    k = int(k)
    if k < 0 or -(-k // bits) != kw:
        lo, hi = (kw - 1) * bits + 1, kw * bits
        raise ValueError(
            f"{field}: expected {lo} <= {field} <= {hi} for {kw} words of {bits} bits "
            f"(ceil({field} / {bits}) must equal the word count), got {k}"
        )
    return k


def pack(x: ArrayLike, axis: int = -1, word_dtype: DTypeLike = jnp.uint32) -> jax.Array:
    """Pack the signs of ``x`` along ``axis`` into unsigned words.

    Bit ``i % B`` of word ``i // B`` is ``1`` where ``x[..., i] < 0`` (encodes ``-1``) and ``0``
    elsewhere (encodes ``+1``; so ``sign(0) = +1``); ``B`` is the word size. When the axis length
    ``K`` is not a multiple of ``B`` the last word's high bits are ``0``.

    Args:
        x: a real (integer or floating) array, typically ±1 values or pre-activations.
        axis: the axis to pack; its length ``K`` becomes ``ceil(K / B)``.
        word_dtype: ``jnp.uint32`` (default, ``B = 32``) or ``jnp.uint64`` (``B = 64``; needs
            ``jax_enable_x64``, which is never switched on here behind the caller's back).

    Returns:
        The packed array, of dtype ``word_dtype`` and the shape of ``x`` with the length of
        ``axis`` replaced by ``ceil(K / B)``.

    Raises:
        TypeError: if ``x`` is boolean, complex or not numeric, or ``word_dtype`` is not
            ``uint32``/``uint64``.
        ValueError: if ``word_dtype`` is ``uint64`` while 64-bit types are disabled, or
            ``axis`` is out of range.
    """
    x = jnp.asarray(x)
    bits = word_bits(word_dtype)
    if bits == 64 and not jax.config.jax_enable_x64:
        raise ValueError("word_dtype: uint64 needs jax_enable_x64=True (it is disabled); use jnp.uint32")
    if x.dtype == jnp.bool_ or not (jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.floating)):
        raise TypeError(f"x: expected a real integer or floating array, got dtype {x.dtype}")
    if x.ndim == 0:
        raise ValueError("x: expected an array with at least one axis, got a scalar")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis: expected -{x.ndim} <= axis < {x.ndim} for x of shape {x.shape}, got {axis}")
    return _pack_jit(x, axis % x.ndim, np.dtype(word_dtype))


@partial(jax.jit, static_argnames=("axis", "wd"))
def _pack_jit(x: jax.Array, axis: int, wd: np.dtype) -> jax.Array:
    bits = _WORD_BITS[wd]
    x = jnp.moveaxis(x, axis, -1)
    k = x.shape[-1]
    kw = -(-k // bits)
    b = (x < 0).astype(wd)
    b = jnp.pad(b, [(0, 0)] * (b.ndim - 1) + [(0, kw * bits - k)])
    b = b.reshape(*b.shape[:-1], kw, bits)
    shifts = jnp.arange(bits, dtype=wd)
    # Distinct bits: the sum is their bitwise OR.
    words = jnp.sum(b << shifts, axis=-1, dtype=wd)
    return jnp.moveaxis(words, -1, axis)


def unpack(p: ArrayLike, k: int, axis: int = -1, dtype: DTypeLike = jnp.float32) -> jax.Array:
    """Unpack words to ±1 values (bit ``1`` -> ``-1``, bit ``0`` -> ``+1``), the inverse of :func:`pack`.

    Args:
        p: packed words, ``uint32`` or ``uint64``.
        k: the true length of the unpacked axis, ``ceil(k / B) == p.shape[axis]``.
        axis: the packed axis of ``p``.
        dtype: the output dtype, a floating or signed integer dtype.

    Returns:
        A ±1 array of dtype ``dtype`` and the shape of ``p`` with the length of ``axis`` set to ``k``.

    Raises:
        TypeError: if ``p`` is not ``uint32``/``uint64``, ``k`` is not an int or ``dtype`` cannot
            hold ``-1``.
        ValueError: if ``k`` does not match the word count or ``axis`` is out of range.
    """
    p = jnp.asarray(p)
    bits = word_bits(p.dtype)
    if p.ndim == 0:
        raise ValueError("p: expected an array with at least one axis, got a scalar")
    if not -p.ndim <= axis < p.ndim:
        raise ValueError(f"axis: expected -{p.ndim} <= axis < {p.ndim} for p of shape {p.shape}, got {axis}")
    k = _check_k(k, p.shape[axis], bits)
    out_dt = np.dtype(dtype)
    if not (np.issubdtype(out_dt, np.floating) or np.issubdtype(out_dt, np.signedinteger)):
        raise TypeError(f"dtype: expected a floating or signed integer dtype, got {out_dt}")
    return _unpack_jit(p, k, axis % p.ndim, out_dt)


@partial(jax.jit, static_argnames=("k", "axis", "out_dt"))
def _unpack_jit(p: jax.Array, k: int, axis: int, out_dt: np.dtype) -> jax.Array:
    bits = _WORD_BITS[np.dtype(p.dtype)]
    p = jnp.moveaxis(p, axis, -1)
    shifts = jnp.arange(bits, dtype=p.dtype)
    b = (p[..., None] >> shifts) & jnp.asarray(1, p.dtype)
    b = b.reshape(*b.shape[:-2], -1)[..., :k]
    out = (1 - 2 * b.astype(jnp.int32)).astype(out_dt)
    return jnp.moveaxis(out, -1, axis)


# ----------------------------------------------------------------------------------------------
# kernels


def _valid_mask(kw: int, k: int, bits: int) -> np.ndarray | None:
    """Per-word masks keeping the ``k`` valid bits of ``kw`` words (None when all bits are valid)."""
    r = k - (kw - 1) * bits
    if kw == 0 or r == bits:
        return None
    mask = np.full((kw,), np.iinfo(np.uint64).max if bits == 64 else np.iinfo(np.uint32).max, dtype=f"uint{bits}")
    mask[-1] = (1 << r) - 1
    return mask


def _to_words64(p: jax.Array) -> jax.Array:
    """(..., Kw) uint32/uint64 -> (..., ceil(bits*Kw/64)) uint64 (call inside ``jax.enable_x64``)."""
    if p.dtype == jnp.uint64:
        return p
    kw = p.shape[-1]
    if kw % 2:
        p = jnp.pad(p, [(0, 0)] * (p.ndim - 1) + [(0, 1)])
    p = p.reshape(*p.shape[:-1], p.shape[-1] // 2, 2)
    return lax.bitcast_convert_type(p, jnp.uint64)


def _plan(m: int, n: int, kw64: int) -> dict:
    """The formulation :func:`_popcount_xor_matmul` uses for ``(M, N)`` outputs and ``kw64`` 64-bit words.

    Returns a dict with ``form`` (``"rowdot"``: at most ``_MAX_ROWDOT_ROWS`` rows, one fused
    reduction along the contiguous word axis, no weight transpose; ``"scan"`` otherwise), ``swap``
    (vectorise along M instead of N), ``chunk`` (64-bit words per scan
    step: a divisor of ``kw64`` in 5..8 when there is one, so no zero chunk padding is needed, else
    ``min(8, kw64)``), ``steps`` (scan length) and ``pad`` (zero words appended).
    """
    swap = n < _MIN_VECTOR_COLUMNS and m > n
    if min(m, n) <= _MAX_ROWDOT_ROWS or kw64 == 0:
        return {"form": "rowdot", "swap": False, "chunk": 0, "steps": 0, "pad": 0}
    cw = next((c for c in range(_CHUNK_WORDS64, 4, -1) if kw64 % c == 0), min(_CHUNK_WORDS64, kw64))
    steps = -(-kw64 // cw)
    return {"form": "scan", "swap": swap, "chunk": cw, "steps": steps, "pad": steps * cw - kw64}


def _popcount_xor_matmul(a: jax.Array, w: jax.Array) -> jax.Array:
    """``sum_j popcount(a[m, j] ^ w[n, j])`` as int32 (M, N) for 2-D word arrays of one dtype.

    The formulation (measured on a 2-core AVX2 CPU, see docs/benchmarks.md):

    * words are viewed as ``uint64`` (pairs of ``uint32`` fused) under a local
      ``jax.enable_x64`` context: LLVM lowers a 64-bit vector popcount to a nibble-table
      ``vpshufb`` count whose byte sums it keeps across the words of a chunk and reduces with
      one ``vpsadbw``, about 1.6x fewer instructions than 32-bit lanes;
    * a ``lax.scan`` over chunks of up to 8 words (5-8 when the word count allows, :func:`_plan`)
      accumulates an int32 ``(M, N)`` total; inside a step,
      ``popcount(a[:, j, None] ^ wT[None, j, :])`` summed over the chunk is ONE XLA loop fusion
      vectorised along ``N`` (contiguous in ``wT``) and split over the cores.
      A naive broadcast of the whole ``(M, N, Kw)`` product is 3-20x slower at large shapes (XLA
      may materialise it); chunks of 4-8 words measured best, 16 and more worse;
    * the vectorised axis should be long: when ``N < 16 <= M`` the roles of ``a`` and ``w`` swap
      (the result is transposed back), so a tiny output width never runs in scalar lanes;
    * with one or two rows (batch-1 inference), transposing the weights to ``(Kw, N)`` at every
      call would cost more than the product itself, so the ``(M, N, Kw)`` XOR is reduced along
      the contiguous word axis in one fusion instead.
    """
    m, n = a.shape[0], w.shape[0]
    kw64 = -(-a.shape[1] * word_bits(a.dtype) // 64)
    plan = _plan(m, n, kw64)
    if plan["form"] == "rowdot":
        if n < m:
            return _popcount_xor_matmul(w, a).T
        x = a[:, None, :] ^ w[None, :, :]  # (M <= 2, N, Kw): one fused reduction over contiguous words
        return jnp.sum(lax.population_count(x).astype(jnp.int32), axis=-1, dtype=jnp.int32)
    if plan["swap"]:
        return _popcount_xor_matmul(w, a).T
    with jax.enable_x64(True):
        a64 = _to_words64(a)
        w64 = _to_words64(w)
        kw = a64.shape[-1]
        if kw == 0:
            return jnp.zeros((m, n), jnp.int32)
        cw, nc, pad = plan["chunk"], plan["steps"], plan["pad"]
        if pad:  # zero words in both operands: XOR 0, popcount 0
            a64 = jnp.pad(a64, ((0, 0), (0, pad)))
            w64 = jnp.pad(w64, ((0, 0), (0, pad)))
        a_steps = a64.reshape(m, nc, cw).transpose(1, 0, 2)  # (nc, M, cw)
        w_steps = w64.T.reshape(nc, cw, n)  # (nc, cw, N): N contiguous

        def step(a_c, w_c):
            x = a_c[:, :, None] ^ w_c[None, :, :]  # (M, cw, N), fused away
            return jnp.sum(lax.population_count(x).astype(jnp.int64), axis=1, dtype=jnp.int64).astype(jnp.int32)

        if nc == 1:
            out = step(a_steps[0], w_steps[0])
        else:

            def body(acc, xs):
                return acc + step(*xs), None

            out, _ = lax.scan(body, jnp.zeros((m, n), jnp.int32), (a_steps, w_steps))
        return out.astype(jnp.int32)


@partial(jax.jit, static_argnames=("k",))
def _xnor_matmul_jit(a: jax.Array, w: jax.Array, k: int) -> jax.Array:
    bits = word_bits(a.dtype)
    kw = a.shape[-1]
    mask = _valid_mask(kw, k, bits)
    if mask is not None:
        a = a & mask
        w = w & mask
    batch = a.shape[:-1]
    pc = _popcount_xor_matmul(a.reshape(math.prod(batch), kw), w)
    return (jnp.int32(k) - 2 * pc).reshape(*batch, w.shape[0])


def _check_words(x, field: str) -> jax.Array:
    x = jnp.asarray(x)
    if np.dtype(x.dtype) not in _WORD_BITS:
        raise TypeError(f"{field}: expected packed words of dtype uint32 or uint64, got {x.dtype}")
    return x


def xnor_matmul(a_packed: ArrayLike, w_packed: ArrayLike, k: int) -> jax.Array:
    """Binary matrix product ``a_pm1 @ w_pm1.T`` on packed operands, exact, as int32.

    For packed rows ``a`` and ``w`` of a ``K``-long ±1 contraction,

    $$(a_{\\pm 1} w_{\\pm 1}^\\top)_{mn} \\;=\\; K - 2 \\sum_j \\operatorname{popcount}(a_{mj} \\oplus w_{nj})$$

    (XNOR-Net, Rastegari et al. 2016). Weights are stored output-major: for a Flax kernel ``W``
    of shape ``(K, N)``, ``w_packed = pack(W.T, axis=-1)``. Padding bits beyond ``k`` are cleared
    in both operands before the XOR, so they never affect the result.

    Formulation (chosen by measurement on a 2-core AVX2 CPU, no AVX-512): the words are fused
    to ``uint64`` under a local ``jax.enable_x64`` context (the caller's setting is untouched),
    and a ``lax.scan`` over chunks of such words (a divisor of the word count in 5..8 when there
    is one, else 8 with zero-word padding, or all the words when there are fewer than 8)
    accumulates an int32 ``(M, N)`` total whose step is one XLA loop fusion (XOR, population
    count and chunk sum) vectorised along ``N``;
    when ``N < 16 <= M`` the operands swap roles so the long axis is vectorised. With one or
    two rows (batch-1 inference) the XOR is instead reduced along the contiguous word axis in
    one fusion, which avoids transposing the weights at every call. The function
    is ``jax.jit``-compiled (``k`` static) and traceable inside a caller's ``jit``/``vmap``.

    Args:
        a_packed: activations, packed words of shape ``(..., Kw)`` (``uint32`` or ``uint64``),
            any leading batch axes.
        w_packed: weights, packed words of shape ``(N, Kw)``, same dtype as ``a_packed``.
        k: the true contraction length ``K`` (a static Python int), ``ceil(k / B) == Kw``.

    Returns:
        int32 array of shape ``(..., N)``, equal to ``unpack(a_packed, k) @ unpack(w_packed, k).T``.

    Raises:
        TypeError: if an operand is not ``uint32``/``uint64`` words, the dtypes differ or ``k``
            is not an int.
        ValueError: if ``w_packed`` is not 2-D, ``a_packed`` is a scalar, the word counts differ
            or ``k`` does not match the word count.
    """
    a = _check_words(a_packed, "a_packed")
    w = _check_words(w_packed, "w_packed")
    if a.dtype != w.dtype:
        raise TypeError(f"w_packed: expected the dtype of a_packed ({a.dtype}), got {w.dtype}")
    if a.ndim < 1:
        raise ValueError("a_packed: expected shape (..., Kw), got a scalar")
    if w.ndim != 2:
        raise ValueError(f"w_packed: expected shape (N, Kw), got {w.shape}")
    if a.shape[-1] != w.shape[-1]:
        raise ValueError(
            f"w_packed: expected {a.shape[-1]} words per row (the last axis of a_packed, shape {a.shape}), "
            f"got shape {w.shape}"
        )
    k = _check_k(k, a.shape[-1], word_bits(a.dtype))
    return _xnor_matmul_jit(a, w, k)


def _pair(v, field: str) -> tuple[int, int]:
    if isinstance(v, int | np.integer) and not isinstance(v, bool):
        v = (int(v), int(v))
    try:
        t = tuple(int(u) for u in v)
    except TypeError as exc:
        raise TypeError(f"{field}: expected an int or a pair of ints, got {v!r}") from exc
    if len(t) != 2 or min(t) < 1:
        raise ValueError(f"{field}: expected a pair of positive ints, got {v!r}")
    return t


def _packed_im2col(
    xp: jax.Array, kh: int, kw: int, strides: tuple[int, int], dilation: tuple[int, int]
) -> tuple[jax.Array, int, int]:
    """Packed im2col of an already padded NHWC word array ``xp`` (B, Hp, Wp, Cw).

    Returns ``(cols, Ho, Wo)`` with ``cols`` of shape ``(B*Ho*Wo, KH*KW*Cw)``, tap-major like
    ``w.reshape(O, KH*KW*Cw)`` for a kernel packed as ``(O, KH, KW, Cw)``.
    """
    b, hp, wp, cw = xp.shape
    (sh, sw), (dh, dw) = strides, dilation
    ho = (hp - dh * (kh - 1) - 1) // sh + 1
    wo = (wp - dw * (kw - 1) - 1) // sw + 1
    taps = [
        lax.slice(
            xp,
            (0, i * dh, j * dw, 0),
            (b, i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1, cw),
            (1, sh, sw, 1),
        )
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.concatenate(taps, axis=-1).reshape(b * ho * wo, kh * kw * cw), ho, wo


@partial(jax.jit, static_argnames=("k", "strides", "pads", "dilation", "pad_value"))
def _xnor_conv2d_jit(x, w, k, strides, pads, dilation, pad_value):
    bits = word_bits(x.dtype)
    b, h, wd, cw = x.shape
    o, kh, kwid, _ = w.shape
    (sh, sw), (dh, dw) = strides, dilation
    mask = _valid_mask(cw, k, bits)
    fill = 0 if pad_value >= 0 else np.iinfo(np.dtype(x.dtype)).max
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=np.array(fill, x.dtype))
    if mask is not None:
        xp = xp & mask
        w = w & mask
    cols, ho, wo = _packed_im2col(xp, kh, kwid, strides, dilation)
    ktot = kh * kwid * k
    pc = _popcount_xor_matmul(cols, w.reshape(o, kh * kwid * cw))
    out = (jnp.int32(ktot) - 2 * pc).reshape(b, ho, wo, o)
    if pad_value == 0:
        # Zero padding: padded taps contribute 0 instead of the +1 they were computed with, so
        # subtract sum_c w[o, i, j, c] (= k - 2 popcount(w[o, i, j])) for every padded tap.
        pcw = jnp.sum(lax.population_count(w).astype(jnp.int32), axis=-1, dtype=jnp.int32)
        s = jnp.int32(k) - 2 * pcw  # (O, KH, KW)
        rows = np.arange(ho)[:, None] * sh - pads[0][0] + np.arange(kh)[None, :] * dh
        colsx = np.arange(wo)[:, None] * sw - pads[1][0] + np.arange(kwid)[None, :] * dw
        oob_h = (rows < 0) | (rows >= h)  # (Ho, KH)
        oob_w = (colsx < 0) | (colsx >= wd)  # (Wo, KW)
        oob = (oob_h[:, None, :, None] | oob_w[None, :, None, :]).astype(np.int32)  # (Ho, Wo, KH, KW)
        if oob.any():
            corr = jnp.einsum("yxij,oij->yxo", jnp.asarray(oob), s, preferred_element_type=jnp.int32)
            out = out - corr[None]
    return out


def xnor_conv2d(
    x_packed: ArrayLike,
    w_packed: ArrayLike,
    k: int,
    strides: int | Sequence[int] = 1,
    padding: str | Sequence[tuple[int, int]] = "SAME",
    dilation: int | Sequence[int] = 1,
    pad_value: int = 1,
) -> jax.Array:
    """Binary 2-D convolution on channel-packed NHWC data, exact, as int32.

    Computes, for ±1 input ``x`` (NHWC) and ±1 kernel ``W`` (HWIO, Flax's ``Conv`` layout),

    $$y_{b,p,q,o} = \\sum_{i,j,c} \\tilde x_{b,\\,p s_h + i d_h,\\,q s_w + j d_w,\\,c}\\, W_{i,j,c,o}$$

    where $\\tilde x$ is ``x`` spatially padded with ``pad_value``; i.e. ``lax.conv_general_dilated``
    on the float data (``dimension_numbers=("NHWC", "HWIO", "NHWC")``, ``rhs_dilation=dilation``)
    after padding the input with ``pad_value``. The kernel is a packed im2col (the ``KH*KW``
    shifted views of the words, concatenated along the word axis) followed by the popcount
    matmul of :func:`xnor_matmul` with contraction length ``KH * KW * k``.

    Padding: ``pad_value=1`` (default) pads with ``+1`` (zero words), which keeps the padded
    input binary (Larq's ``pad_values=1``) and costs nothing; ``-1`` pads with all-ones words;
    ``0`` gives zero padding (``flax.linen.Conv``'s float semantics) exactly, by subtracting the
    padded taps' weight sums ``k - 2 popcount(w[o, i, j])`` afterwards.

    Args:
        x_packed: packed input of shape ``(B, H, W, Cw)``, ``pack(x, axis=-1)`` of NHWC ``x``.
        w_packed: packed kernel of shape ``(O, KH, KW, Cw)``, output-major:
            ``pack(jnp.transpose(W, (3, 0, 1, 2)), axis=-1)`` for a Flax kernel ``W`` (KH, KW, C, O).
        k: the true number of input channels ``C`` (static), ``ceil(k / B) == Cw``.
        strides: window strides, an int or ``(sh, sw)``.
        padding: ``"SAME"``, ``"VALID"`` or explicit ``((top, bottom), (left, right))``, with
            ``lax.conv_general_dilated``'s meaning.
        dilation: kernel (rhs) dilation, an int or ``(dh, dw)``.
        pad_value: value of the padded input positions: ``1``, ``-1`` or ``0``.

    Returns:
        int32 array of shape ``(B, Ho, Wo, O)``.

    Raises:
        TypeError: if an operand is not ``uint32``/``uint64`` words, dtypes differ, or an
            argument has the wrong type.
        ValueError: if shapes are not 4-D, word counts differ, ``k`` does not match ``Cw``,
            ``padding``/``strides``/``dilation``/``pad_value`` are invalid or the output would be empty.
    """
    x = _check_words(x_packed, "x_packed")
    w = _check_words(w_packed, "w_packed")
    if x.dtype != w.dtype:
        raise TypeError(f"w_packed: expected the dtype of x_packed ({x.dtype}), got {w.dtype}")
    if x.ndim != 4:
        raise ValueError(f"x_packed: expected shape (B, H, W, Cw), got {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"w_packed: expected shape (O, KH, KW, Cw), got {w.shape}")
    if x.shape[-1] != w.shape[-1]:
        raise ValueError(
            f"w_packed: expected {x.shape[-1]} channel words (the last axis of x_packed, shape {x.shape}), "
            f"got shape {w.shape}"
        )
    k = _check_k(k, x.shape[-1], word_bits(x.dtype))
    strides = _pair(strides, "strides")
    dilation = _pair(dilation, "dilation")
    if isinstance(pad_value, bool) or pad_value not in (1, -1, 0):
        raise ValueError(f"pad_value: expected 1, -1 or 0, got {pad_value!r}")
    window = ((w.shape[1] - 1) * dilation[0] + 1, (w.shape[2] - 1) * dilation[1] + 1)
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"padding: expected 'SAME', 'VALID' or ((top, bottom), (left, right)), got {padding!r}")
        pads = tuple(tuple(p) for p in lax.padtype_to_pads(x.shape[1:3], window, strides, padding.upper()))
    else:
        try:
            pads = tuple((int(lo), int(hi)) for lo, hi in padding)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"padding: expected ((top, bottom), (left, right)), got {padding!r}") from exc
        if len(pads) != 2 or min(min(p) for p in pads) < 0:
            raise ValueError(f"padding: expected two non-negative (lo, hi) pairs, got {padding!r}")
    hp, wp = x.shape[1] + sum(pads[0]), x.shape[2] + sum(pads[1])
    if hp < window[0] or wp < window[1]:
        raise ValueError(
            f"w_packed: the dilated window {window} is larger than the padded input ({hp}, {wp}); the output is empty"
        )
    return _xnor_conv2d_jit(x, w, k, strides, pads, dilation, int(pad_value))
