"""Bit-packed inference layers (Linen and NNX) and export from trained binary layers.

A binary layer whose inputs and weights are ±1 computes integer dot products

.. math::

    d_n = \\sum_{i<k} x_i\\, \\mathrm{sign}(W_{in}) = k - 2\\,\\mathrm{popcount}(x \\oplus w_n),

on 32 elements per ``uint32`` word (:mod:`tamejax.nn.bitpack` conventions: bit 1 encodes -1, bit
0 encodes +1, element ``i`` at word ``i // 32``, bit ``i % 32``, padding bits 0, sign(0) = +1).
The layers here hold the weights packed output-major (``kernel[n]`` packs column ``n`` of the
float kernel) and return one of

* ``output="int"``: the int32 pre-activations ``d`` themselves;
* ``output="affine"``: ``d * scale + bias`` in float32 (a float bias, a positive per-channel
  kernel scale and/or a final batch-norm folded into one per-channel affine map);
* ``output="packed"``: the next layer's packed ±1 input, ``sign(BN(alpha * d + b))``, computed by
  one integer comparison per channel (batch-norm, bias and kernel scale folded into an integer
  threshold and a sign flip, as in FINN, Umuroglu et al. 2017, and Larq Compute Engine), so a
  whole binary MLP runs packed end to end.

Threshold folding (at export, in float64): with ``r = sqrt(var + eps)``, the float path outputs
+1 iff ``y = gamma (alpha d + b - mean) / r + beta >= 0`` (sign(0) = +1). With
``tau = (mean - b - beta r / gamma) / alpha``:

* ``gamma > 0``: +1 iff ``d >= ceil(tau)``; stored as ``sign = +1, threshold = ceil(tau)``;
* ``gamma < 0``: +1 iff ``d <= floor(tau)``, i.e. ``-d >= -floor(tau)``: ``sign = -1, threshold = -floor(tau)``
  (the channel is flipped);
* ``gamma == 0``: ``y = beta`` is constant: +1 iff ``beta >= 0``, stored as an unreachable threshold.

The packed layer emits bit 1 (= -1) exactly where ``sign * d < threshold``. Because ``tau`` is
itself rounded, the boundary integer is then checked against ``y`` evaluated directly (in
float64, Flax's order of operations) at its neighbours and moved if needed, so an exact tie
``y = 0`` gives +1 as in the float path. Thresholds are clipped to ``[-(k + 1), k + 1]``
(``|d| <= k``, so the result is unchanged). A float32 simulation rounds ``y``; it can disagree
with this rule only where ``|y|`` is at float32 rounding level (a near-tie).

Weights in {-1, 0, +1} (e.g. from MIP training of binarized networks, Icarte et al. 2019) cannot
be held in one bit per weight. ``weights="ternary"`` writes a ternary ``w`` as ``(u + v) / 2`` with
``u, v`` in {-1, +1} (``u = v = w`` where ``w != 0``; ``u = +1, v = -1`` where ``w == 0``), so
``x . w = (x . u + x . v) / 2`` exactly: two packed planes, twice the work and memory, still exact.
``weights="binary"`` refuses zeros with a ValueError; ``weights="latent"`` (trained float latent
weights) binarizes with sign(0) = +1, exactly as the float layer's ``ste_sign`` quantizer does.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from tamejax.nn import bitpack
from tamejax.nn.pallas import xnor_matmul_pallas

__all__ = [
    "NNXPackedConv",
    "NNXPackedLinear",
    "PackedConv",
    "PackedDense",
    "PackedLayer",
    "PackedWeight",
    "export_conv",
    "export_dense",
    "export_layer",
    "export_linen_mlp",
    "fold_threshold",
    "run_packed",
    "threshold_pack",
]

WORD_BITS = 32
Output = Literal["int", "affine", "packed"]
Backend = Literal["xla", "pallas"]
_OUTPUTS = ("int", "affine", "packed")
_BACKENDS = ("xla", "pallas")


# --------------------------------------------------------------------------------------------
# Functional core (shared by the Linen and NNX layers)
# --------------------------------------------------------------------------------------------


def _words(k: int) -> int:
    return -(-k // WORD_BITS)


def _check_static(features: int, in_features: int, output: str, backend: str) -> None:
    for name, val in (("features", features), ("in_features", in_features)):
        if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 1:
            raise ValueError(f"{name}: expected a positive int, received {val!r}")
    if output not in _OUTPUTS:
        raise ValueError(f"output: expected one of {_OUTPUTS}, received {output!r}")
    if backend not in _BACKENDS:
        raise ValueError(f"backend: expected one of {_BACKENDS}, received {backend!r}")


def _packed_input(x: Any, in_features: int, field: str = "x") -> jax.Array:
    """Inputs as packed words along the last axis (real inputs are binarized, sign(0) = +1)."""
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"{field}: expected at least 1 dimension, received shape {x.shape}")
    if x.dtype == jnp.uint32:
        if x.shape[-1] != _words(in_features):
            raise ValueError(
                f"{field}: packed input needs {_words(in_features)} uint32 words on the last axis "
                f"(in_features={in_features}), received shape {x.shape}"
            )
        return x
    if x.dtype == jnp.bool_ or not jnp.issubdtype(x.dtype, jnp.number):
        raise TypeError(f"{field}: expected packed uint32 words or a real array, received dtype {x.dtype}")
    if jnp.issubdtype(x.dtype, jnp.unsignedinteger):
        raise TypeError(f"{field}: packed inputs must be uint32 words (32 bits per word), received dtype {x.dtype}")
    if x.shape[-1] != in_features:
        raise ValueError(f"{field}: expected last axis of length in_features={in_features}, received shape {x.shape}")
    return bitpack.pack(x, axis=-1)


def _xnor(
    a: jax.Array, w: jax.Array, k: int, backend: str, interpret: bool | None, *, grouped: bool = False
) -> jax.Array:
    """int32 ``A @ W^T`` over ``k`` bits of packed (M, Kw) and (N, Kw) operands; padding bits are 0.

    ``grouped``: the rows are several packed vectors concatenated (a packed im2col), so padding
    bits sit at the end of every word group, not only in the last word. The product is then
    taken over all ``32 * Kw`` bits and the padding bits, 0 (= +1) in both operands and so +1
    each, are subtracted analytically; passing the true ``k`` to the kernel would mask real bits
    of the last group (the kernel clears bits >= k of the last word).
    """
    kw = a.shape[-1]
    matmul = bitpack.xnor_matmul if backend == "xla" else functools.partial(xnor_matmul_pallas, interpret=interpret)
    if not grouped and k > WORD_BITS * (kw - 1):
        return matmul(a, w, k).astype(jnp.int32)
    return matmul(a, w, WORD_BITS * kw).astype(jnp.int32) - jnp.int32(WORD_BITS * kw - k)


def _combine_planes(d: jax.Array, features: int, ternary: bool) -> jax.Array:
    if not ternary:
        return d
    # x.u + x.v = 2 x.w is even: the halving is exact.
    return jnp.right_shift(d[..., :features] + d[..., features:], jnp.int32(1))


def _dense_preact(
    x: jax.Array,
    kernel: jax.Array,
    in_features: int,
    features: int,
    ternary: bool,
    backend: str,
    interpret: bool | None,
) -> jax.Array:
    """int32 pre-activations of a packed dense layer (see :class:`PackedDense`)."""
    lead = x.shape[:-1]
    a = x.reshape(-1, x.shape[-1])
    d = _xnor(a, kernel.reshape(-1, kernel.shape[-1]), in_features, backend, interpret)
    return _combine_planes(d, features, ternary).reshape(*lead, features)


def _conv_preact(
    x: jax.Array,
    kernel: jax.Array,
    in_features: int,
    features: int,
    strides: tuple[int, int],
    padding: Any,
    dilation: tuple[int, int],
    pad_value: int,
    ternary: bool,
    backend: str,
    interpret: bool | None,
) -> jax.Array:
    """int32 pre-activations of a packed 2-D convolution (see :class:`PackedConv`)."""
    if x.ndim != 4:
        raise ValueError(f"x: expected NHWC input of rank 4 (channel axis packed), received shape {x.shape}")
    wk = kernel.reshape(-1, *kernel.shape[-3:])  # (P * N, kh, kw, Cw)
    if backend == "xla":
        d = bitpack.xnor_conv2d(x, wk, in_features, strides, padding, dilation, pad_value)
        return _combine_planes(d, features, ternary)
    if pad_value != 1:
        raise ValueError(f"pad_value: the Pallas backend pads with +1 only, received {pad_value}; use backend='xla'")
    b, h, w_, cw = x.shape
    tail = in_features - WORD_BITS * (cw - 1)
    if tail < WORD_BITS:  # the im2col product assumes padding bits 0: clear them in both operands
        mask = np.full(cw, 0xFFFFFFFF, np.uint32)
        mask[-1] = (1 << tail) - 1
        x, wk = x & mask, wk & mask
    kh, kw = wk.shape[1:3]
    dh, dw = dilation
    window = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    if isinstance(padding, str):
        pads = [tuple(p) for p in lax.padtype_to_pads((h, w_), window, strides, padding)]
    else:
        pads = [tuple(int(v) for v in p) for p in padding]
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))  # zero words = +1 padding
    if xp.shape[1] < window[0] or xp.shape[2] < window[1]:
        raise ValueError(f"x: spatial shape {(h, w_)} with padding {pads} is smaller than the window {window}")
    patches, ho, wo = bitpack._packed_im2col(xp, kh, kw, strides, dilation)
    d = _xnor(patches, wk.reshape(-1, kh * kw * cw), kh * kw * in_features, backend, interpret, grouped=kh * kw > 1)
    return _combine_planes(d, features, ternary).reshape(b, ho, wo, features)


def threshold_pack(d: jax.Array, sign: jax.Array, threshold: jax.Array) -> jax.Array:
    """Packed ±1 activations from int32 pre-activations: -1 (bit 1) exactly where ``sign * d < threshold``.

    Args:
        d: int32 pre-activations, shape (..., N).
        sign: int32 per-channel sign, +1 or -1, shape (N,).
        threshold: int32 per-channel threshold, shape (N,).

    Returns:
        uint32 array of shape (..., ceil(N / 32)), padding bits 0.
    """
    neg = sign.astype(jnp.int32) * d < threshold.astype(jnp.int32)
    return bitpack.pack(jnp.where(neg, jnp.int8(-1), jnp.int8(1)), axis=-1)


def _finish(d: jax.Array, output: str, params: Mapping[str, jax.Array]) -> jax.Array:
    if output == "int":
        return d
    if output == "affine":
        scale = jnp.asarray(params["scale"])
        return d.astype(scale.dtype) * scale + jnp.asarray(params["bias"])
    return threshold_pack(d, jnp.asarray(params["sign"]), jnp.asarray(params["threshold"]))


def _extra_shapes(output: str, features: int) -> dict[str, tuple[tuple[int, ...], Any]]:
    if output == "affine":
        return {"scale": ((features,), jnp.float32), "bias": ((features,), jnp.float32)}
    if output == "packed":
        return {"sign": ((features,), jnp.int32), "threshold": ((features,), jnp.int32)}
    return {}


def _check_pad_value(pad_value: Any, backend: str) -> None:
    if isinstance(pad_value, bool) or pad_value not in (1, -1, 0):
        raise ValueError(f"pad_value: expected 1, -1 or 0, received {pad_value!r}")
    if backend == "pallas" and pad_value != 1:
        raise ValueError(f"pad_value: the Pallas backend pads with +1 only, received {pad_value}; use backend='xla'")


def _check_padding(padding: Any) -> Any:
    """``"SAME"``, ``"VALID"`` or ((top, bottom), (left, right)) of non-negative ints, normalized."""
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"padding: expected 'SAME', 'VALID' or explicit pairs, received {padding!r}")
        return padding
    try:
        pads = tuple(tuple(int(v) for v in p) for p in padding)
    except (TypeError, ValueError):
        pads = None
    if pads is None or len(pads) != 2 or any(len(p) != 2 or min(p) < 0 for p in pads):
        raise ValueError(f"padding: expected ((top, bottom), (left, right)) of non-negative ints, received {padding!r}")
    return pads


def _pair(v: int | Sequence[int], field: str) -> tuple[int, int]:
    t = (int(v), int(v)) if isinstance(v, int | np.integer) else tuple(int(u) for u in v)
    if len(t) != 2 or min(t) < 1:
        raise ValueError(f"{field}: expected a positive int or a pair of positive ints, received {v!r}")
    return t  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Linen layers
# --------------------------------------------------------------------------------------------


def _zeros(dtype: Any):
    return lambda key, shape: jnp.zeros(shape, dtype)


class PackedDense(nn.Module):
    """Bit-packed binary dense layer for inference (Linen), ``y = x @ sign(W)`` on packed words.

    Parameters (collection ``'params'``; inference only, not trainable):

    * ``kernel``: uint32 (features, ceil(in_features / 32)), output-major packed ``sign(W).T``;
      (2, features, words) when ``ternary`` (two ±1 planes ``u, v`` with ``w = (u + v) / 2``);
    * ``output="affine"``: ``scale``, ``bias`` float32 (features,);
    * ``output="packed"``: ``sign``, ``threshold`` int32 (features,).

    Build them with :func:`export_dense`. Inputs are packed uint32 words (..., ceil(in_features/32))
    with padding bits 0 (as :func:`tamejax.nn.bitpack.pack` and ``output="packed"`` layers emit), or
    real arrays (..., in_features) that are binarized (sign(0) = +1) and packed on the fly. Leading
    axes are batch axes and may be sharded.

    Attributes:
        features: number of output channels N.
        in_features: true input length k (the number of ±1 inputs, not words).
        output: ``"int"`` (int32 pre-activations), ``"affine"`` (float32 ``d * scale + bias``) or
            ``"packed"`` (packed ±1 activations, bit 1 where ``sign * d < threshold``).
        ternary: weights in {-1, 0, +1} stored as two ±1 planes.
        backend: ``"xla"`` (:func:`tamejax.nn.bitpack.xnor_matmul`) or ``"pallas"``
            (:func:`tamejax.nn.pallas.xnor_matmul_pallas`).
        interpret: Pallas interpret mode (``None``: on CPU only); ignored by the XLA backend.
    """

    features: int
    in_features: int
    output: Output = "int"
    ternary: bool = False
    backend: Backend = "xla"
    interpret: bool | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the layer.

        Args:
            x: packed uint32 inputs (..., ceil(in_features / 32)) or real inputs (..., in_features).

        Returns:
            int32 (..., features), float32 (..., features) or packed uint32 (..., ceil(features / 32)),
            according to ``output``.
        """
        _check_static(self.features, self.in_features, self.output, self.backend)
        kshape = (self.features, _words(self.in_features))
        if self.ternary:
            kshape = (2, *kshape)
        kernel = self.param("kernel", _zeros(jnp.uint32), kshape)
        extra = {n: self.param(n, _zeros(dt), s) for n, (s, dt) in _extra_shapes(self.output, self.features).items()}
        xp = _packed_input(x, self.in_features)
        d = _dense_preact(xp, kernel, self.in_features, self.features, self.ternary, self.backend, self.interpret)
        return _finish(d, self.output, extra)


class PackedConv(nn.Module):
    """Bit-packed binary 2-D convolution for inference (Linen), NHWC with the channel axis packed.

    Computes ``conv(x~, sign(W))`` where ``x~`` is the ±1 input padded with ``pad_value``: ``+1``
    (default, zero words, free; the float layer's ``pad_values=1.0``), ``-1``, or ``0`` (zero
    padding, made exact by subtracting the padded taps' weight sums). The XLA backend is
    :func:`tamejax.nn.bitpack.xnor_conv2d`; the Pallas backend (``pad_value=1`` only) builds the
    packed im2col (the window positions' words concatenated, ``kh * kw * ceil(C_in / 32)`` words
    per output pixel, padding bits 0 in every group) and calls
    :func:`tamejax.nn.pallas.xnor_matmul_pallas` over all ``32 * words`` bits, subtracting the
    padding bits (+1 each, as 0 in both operands) afterwards: the padding sits at the end of every
    group, so the kernel's own masking of the bits past ``k`` in the last word would not fit.

    Parameters (collection ``'params'``): ``kernel`` uint32 (features, kh, kw, ceil(in_features/32)),
    the Flax kernel (kh, kw, C_in, N) transposed output-major and packed along C_in (a leading axis
    of 2 when ``ternary``); ``scale``/``bias`` (affine) or ``sign``/``threshold`` (packed) as in
    :class:`PackedDense`.

    Attributes:
        features: number of output channels N.
        in_features: number of input channels C_in (not words).
        kernel_size: window (kh, kw).
        strides: window strides (sh, sw).
        padding: ``"SAME"``, ``"VALID"`` or ((top, bottom), (left, right)), ``lax.conv_general_dilated``'s meaning.
        kernel_dilation: kernel dilation (dh, dw).
        pad_value: value of padded input pixels: 1, -1 or 0.
        output: ``"int"``, ``"affine"`` or ``"packed"`` (see :class:`PackedDense`).
        ternary: weights in {-1, 0, +1} stored as two ±1 planes.
        backend: ``"xla"`` or ``"pallas"``.
        interpret: Pallas interpret mode (``None``: on CPU only).
    """

    features: int
    in_features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: Any = "SAME"
    kernel_dilation: tuple[int, int] = (1, 1)
    pad_value: int = 1
    output: Output = "int"
    ternary: bool = False
    backend: Backend = "xla"
    interpret: bool | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the layer.

        Args:
            x: packed uint32 NHWC input (B, H, W, ceil(in_features / 32)) or real input (B, H, W, in_features).

        Returns:
            (B, H', W', features) int32 / float32, or packed (B, H', W', ceil(features / 32)) uint32.
        """
        _check_static(self.features, self.in_features, self.output, self.backend)
        window = _pair(self.kernel_size, "kernel_size")
        strides = _pair(self.strides, "strides")
        _check_pad_value(self.pad_value, self.backend)
        kshape = (self.features, *window, _words(self.in_features))
        if self.ternary:
            kshape = (2, *kshape)
        kernel = self.param("kernel", _zeros(jnp.uint32), kshape)
        extra = {n: self.param(n, _zeros(dt), s) for n, (s, dt) in _extra_shapes(self.output, self.features).items()}
        xp = _packed_input(x, self.in_features)
        d = _conv_preact(
            xp,
            kernel,
            self.in_features,
            self.features,
            strides,
            self.padding,
            _pair(self.kernel_dilation, "kernel_dilation"),
            self.pad_value,
            self.ternary,
            self.backend,
            self.interpret,
        )
        return _finish(d, self.output, extra)


# --------------------------------------------------------------------------------------------
# NNX layers
# --------------------------------------------------------------------------------------------


class PackedWeight(nnx.Variable):
    """NNX variable type of the packed layers' arrays (not an ``nnx.Param``: nothing to train)."""


class _NNXPackedBase(nnx.Module):
    def _init_vars(self, kshape: tuple[int, ...], output: str, features: int) -> None:
        self.kernel = PackedWeight(jnp.zeros(kshape, jnp.uint32))
        for name, (shape, dt) in _extra_shapes(output, features).items():
            setattr(self, name, PackedWeight(jnp.zeros(shape, dt)))

    def _extras(self) -> dict[str, jax.Array]:
        return {n: getattr(self, n)[...] for n in _extra_shapes(self.output, self.features)}

    def load(self, params: Mapping[str, Any]) -> None:
        """Set the arrays from a Linen-style ``params`` mapping (as in :attr:`PackedLayer.variables`).

        Args:
            params: mapping from ``'kernel'`` (and ``'scale'``/``'bias'`` or ``'sign'``/``'threshold'``)
                to arrays of the shapes this layer was built with.

        Raises:
            ValueError: if a name is missing or a shape differs.
        """
        for name in ("kernel", *_extra_shapes(self.output, self.features)):
            if name not in params:
                raise ValueError(f"params: expected an entry {name!r}, received keys {sorted(params)}")
            var = getattr(self, name)
            val = jnp.asarray(params[name], var[...].dtype)
            if val.shape != var[...].shape:
                raise ValueError(f"params[{name!r}]: expected shape {var[...].shape}, received {val.shape}")
            var[...] = val


class NNXPackedLinear(_NNXPackedBase):
    """Bit-packed binary dense layer for inference (NNX); same computation and arrays as :class:`PackedDense`.

    Attributes ``kernel`` (and ``scale``/``bias`` or ``sign``/``threshold``) are :class:`PackedWeight`
    variables, zero-initialized; fill them with :meth:`load` or build the layer with
    :meth:`PackedLayer.to_nnx`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        output: Output = "int",
        ternary: bool = False,
        backend: Backend = "xla",
        interpret: bool | None = None,
    ) -> None:
        """Create a zero-initialized layer.

        Args:
            in_features: true input length k.
            out_features: number of output channels N.
            output: ``"int"``, ``"affine"`` or ``"packed"`` (see :class:`PackedDense`).
            ternary: weights in {-1, 0, +1} stored as two ±1 planes.
            backend: ``"xla"`` or ``"pallas"``.
            interpret: Pallas interpret mode (``None``: on CPU only).

        Raises:
            ValueError: on a non-positive size or an unknown ``output`` / ``backend``.
        """
        _check_static(out_features, in_features, output, backend)
        self.in_features = int(in_features)
        self.features = int(out_features)
        self.output = output
        self.ternary = bool(ternary)
        self.backend = backend
        self.interpret = interpret
        kshape = (self.features, _words(self.in_features))
        self._init_vars((2, *kshape) if ternary else kshape, output, self.features)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the layer.

        Args:
            x: packed uint32 inputs (..., ceil(in_features / 32)) or real inputs (..., in_features).

        Returns:
            int32 / float32 (..., out_features) or packed uint32 (..., ceil(out_features / 32)).
        """
        xp = _packed_input(x, self.in_features)
        d = _dense_preact(
            xp, self.kernel[...], self.in_features, self.features, self.ternary, self.backend, self.interpret
        )
        return _finish(d, self.output, self._extras())


class NNXPackedConv(_NNXPackedBase):
    """Bit-packed binary 2-D convolution for inference (NNX); same computation and arrays as :class:`PackedConv`."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        *,
        padding: Any = "SAME",
        kernel_dilation: int | Sequence[int] = 1,
        pad_value: int = 1,
        output: Output = "int",
        ternary: bool = False,
        backend: Backend = "xla",
        interpret: bool | None = None,
    ) -> None:
        """Create a zero-initialized layer.

        Args:
            in_features: number of input channels C_in.
            out_features: number of output channels N.
            kernel_size: window (kh, kw) or one int for both.
            strides: window strides, a pair or one int.
            padding: ``"SAME"``, ``"VALID"`` or ((top, bottom), (left, right)) of non-negative ints.
            kernel_dilation: kernel dilation, a pair or one int.
            pad_value: value of padded input pixels: 1, -1 or 0 (see :class:`PackedConv`).
            output: ``"int"``, ``"affine"`` or ``"packed"``.
            ternary: weights in {-1, 0, +1} stored as two ±1 planes.
            backend: ``"xla"`` or ``"pallas"``.
            interpret: Pallas interpret mode (``None``: on CPU only).

        Raises:
            ValueError: on a non-positive size, a bad window/stride/padding or an unknown ``output`` / ``backend``.
        """
        _check_static(out_features, in_features, output, backend)
        self.in_features = int(in_features)
        self.features = int(out_features)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = _check_padding(padding)
        self.kernel_dilation = _pair(kernel_dilation, "kernel_dilation")
        _check_pad_value(pad_value, backend)
        self.pad_value = int(pad_value)
        self.output = output
        self.ternary = bool(ternary)
        self.backend = backend
        self.interpret = interpret
        kshape = (self.features, *self.kernel_size, _words(self.in_features))
        self._init_vars((2, *kshape) if ternary else kshape, output, self.features)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the layer.

        Args:
            x: packed uint32 NHWC input (B, H, W, ceil(in_features / 32)) or real input (B, H, W, in_features).

        Returns:
            (B, H', W', out_features) int32 / float32, or packed (B, H', W', ceil(out_features / 32)) uint32.
        """
        xp = _packed_input(x, self.in_features)
        d = _conv_preact(
            xp,
            self.kernel[...],
            self.in_features,
            self.features,
            self.strides,
            self.padding,
            self.kernel_dilation,
            self.pad_value,
            self.ternary,
            self.backend,
            self.interpret,
        )
        return _finish(d, self.output, self._extras())


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class PackedLayer:
    """An exported packed layer: a Linen module and its variables, callable, a pytree.

    Attributes:
        module: the Linen :class:`PackedDense` or :class:`PackedConv` (static configuration).
        variables: ``{'params': {...}}`` with the packed arrays.
    """

    module: PackedDense | PackedConv
    variables: dict[str, dict[str, jax.Array]]

    def __call__(self, x: jax.Array) -> jax.Array:
        """Run the layer: ``module.apply(variables, x)``.

        Args:
            x: packed or real input (see :class:`PackedDense` / :class:`PackedConv`).

        Returns:
            the layer's output.
        """
        return self.module.apply(self.variables, x)

    @property
    def params(self) -> dict[str, jax.Array]:
        """The packed arrays (``variables['params']``)."""
        return self.variables["params"]

    def to_nnx(self) -> NNXPackedLinear | NNXPackedConv:
        """The same layer as an NNX module (:class:`NNXPackedLinear` / :class:`NNXPackedConv`).

        Returns:
            an NNX module holding copies of the packed arrays.
        """
        m = self.module
        if isinstance(m, PackedConv):
            layer: NNXPackedLinear | NNXPackedConv = NNXPackedConv(
                m.in_features,
                m.features,
                m.kernel_size,
                m.strides,
                padding=m.padding,
                kernel_dilation=m.kernel_dilation,
                pad_value=m.pad_value,
                output=m.output,
                ternary=m.ternary,
                backend=m.backend,
                interpret=m.interpret,
            )
        else:
            layer = NNXPackedLinear(
                m.in_features, m.features, output=m.output, ternary=m.ternary, backend=m.backend, interpret=m.interpret
            )
        layer.load(self.params)
        return layer


jax.tree_util.register_pytree_node(
    PackedLayer,
    lambda p: ((p.variables,), p.module),
    lambda module, children: PackedLayer(module, children[0]),
)


def _per_channel(v: Any, n: int, field: str, default: float) -> np.ndarray:
    if v is None:
        return np.full(n, default, np.float64)
    a = np.asarray(v, np.float64)
    if a.ndim == 0:
        a = np.full(n, float(a))
    if a.shape != (n,):
        raise ValueError(f"{field}: expected shape ({n},) (one value per output channel), received {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{field}: expected finite values, received {a}")
    return a


def _bn_arrays(batch_norm: Mapping[str, Any] | None, n: int, eps: float | None) -> tuple[np.ndarray, ...] | None:
    if batch_norm is None:
        return None
    if not isinstance(batch_norm, Mapping):
        raise TypeError(
            f"batch_norm: expected a mapping with keys mean, var[, scale, bias, eps], received {batch_norm!r}"
        )
    for key in ("mean", "var"):
        if key not in batch_norm:
            raise ValueError(f"batch_norm: expected key {key!r}, received keys {sorted(batch_norm)}")
    unknown = set(batch_norm) - {"mean", "var", "scale", "bias", "eps", "epsilon"}
    if unknown:
        raise ValueError(f"batch_norm: unknown keys {sorted(unknown)} (expected mean, var, scale, bias, eps)")
    given = [float(batch_norm[key]) for key in ("eps", "epsilon") if key in batch_norm]
    if eps is not None:
        given.append(float(eps))
    if len(set(given)) > 1:
        raise ValueError(
            f"eps: the batch-norm epsilon is given more than once with different values {given} "
            "(batch_norm['eps'], batch_norm['epsilon'] and the eps= argument must agree)"
        )
    e = given[0] if given else 1e-5
    gamma = _per_channel(batch_norm.get("scale"), n, "batch_norm['scale']", 1.0)
    beta = _per_channel(batch_norm.get("bias"), n, "batch_norm['bias']", 0.0)
    mean = _per_channel(batch_norm["mean"], n, "batch_norm['mean']", 0.0)
    var = _per_channel(batch_norm["var"], n, "batch_norm['var']", 1.0)
    with np.errstate(invalid="ignore"):
        r = np.sqrt(var + float(e))
    if np.any(~(r > 0)):
        raise ValueError(f"batch_norm: expected var + eps > 0 in every channel, received var={var}, eps={e}")
    return gamma, beta, mean, r


def fold_threshold(
    k: int,
    bias: Any = None,
    batch_norm: Mapping[str, Any] | None = None,
    *,
    features: int | None = None,
    kernel_scale: Any = None,
    eps: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel integer thresholds and sign flips for ``sign(BN(alpha * d + b))`` on int pre-activations.

    The float path outputs +1 (sign(0) = +1) iff ``gamma (alpha d + b - mean) / sqrt(var + eps) + beta >= 0``.
    With ``tau = (mean - b - beta sqrt(var + eps) / gamma) / alpha``, for the integer ``d``:
    ``gamma > 0``: +1 iff ``d >= ceil(tau)``; ``gamma < 0``: +1 iff ``-d >= -floor(tau)``;
    ``gamma == 0``: +1 iff ``beta >= 0`` (constant). Without batch-norm, +1 iff ``alpha d + b >= 0``.
    Subnormals are flushed to zero as float32 inference does (XLA on CPU/GPU/TPU): a multiplier
    ``|gamma / sqrt(var + eps)|`` below the smallest normal float32 (``1.18e-38``) counts as
    ``gamma == 0``, and a subnormal ``beta`` or product ``(alpha d + b - mean) * gamma / r`` as 0.
    The packed layer emits -1 exactly where ``sign * d < threshold``. Evaluated in float64; the
    boundary from ``tau`` is corrected against a direct evaluation of ``y`` at the neighbouring
    integers (so exact ties give +1); thresholds clipped to ``[-(k + 1), k + 1]``, which changes
    nothing for ``|d| <= k``. This is the rule of FINN (Umuroglu et al. 2017).

    Args:
        k: the contraction length (``|d| <= k``).
        bias: the float layer bias b, shape (N,), or None.
        batch_norm: mapping with ``mean``, ``var`` and optionally ``scale`` (gamma), ``bias`` (beta),
            ``eps``; or None.
        features: N, needed when neither ``bias`` nor ``batch_norm`` fixes it.
        kernel_scale: positive per-channel scale alpha of the binarized kernel (e.g. XNOR-Net's
            mean |W|), shape (N,), or None for 1.
        eps: batch-norm epsilon when ``batch_norm`` has no ``eps`` entry (default 1e-5, Flax's).

    Returns:
        ``(sign, threshold)``: two int32 arrays of shape (N,), sign in {-1, +1}.

    Raises:
        ValueError: on inconsistent shapes, non-finite values, a non-positive kernel scale or ``var + eps <= 0``.
    """
    n = features
    for v in (bias, kernel_scale, None if batch_norm is None else batch_norm.get("mean")):
        if n is None and v is not None and np.ndim(v) == 1:
            n = len(v)
    if n is None:
        raise ValueError("features: cannot infer the number of channels; pass features=N")
    b = _per_channel(bias, n, "bias", 0.0)
    alpha = _per_channel(kernel_scale, n, "kernel_scale", 1.0)
    if np.any(alpha <= 0):
        raise ValueError(f"kernel_scale: expected positive values (a sign-preserving scale), received {alpha}")
    bn = _bn_arrays(batch_norm, n, eps)
    gamma, beta, mean, r = bn if bn is not None else (np.ones(n), np.zeros(n), np.zeros(n), np.ones(n))
    big = float(k + 1)
    mul = gamma / r
    # float32 inference (XLA on CPU, GPUs, TPUs) flushes subnormals to zero: a batch-norm
    # multiplier gamma / sqrt(var + eps) below the smallest normal float32 acts as 0 (constant
    # output sign(beta)), and so do subnormal products and a subnormal beta.
    tiny = float(np.finfo(np.float32).tiny)
    flush = np.abs(mul) < tiny
    gamma = np.where(flush, 0.0, gamma)
    mul = np.where(flush, 0.0, mul)
    beta = np.where(np.abs(beta) < tiny, 0.0, beta)

    def nonneg(d: np.ndarray) -> np.ndarray:
        """The float rule evaluated directly at integer pre-activations d (float64, Flax's order, flush to zero)."""
        t = (alpha * d + b - mean) * mul
        return np.where(np.abs(t) < tiny, 0.0, t) + beta >= 0

    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        tau = (mean - b - beta * r / gamma) / alpha
    pos, neg = gamma > 0, gamma < 0
    # Candidate boundaries from tau, then corrected so that they agree with the direct evaluation
    # of the rule at the neighbouring integers (tau is rounded; the tie d = tau must give +1).
    lo = np.clip(np.where(pos, np.ceil(tau), np.floor(tau)), -big - 1, big + 1)
    lo = np.where(np.isfinite(tau), lo, np.sign(tau) * (big + 1))
    for _ in range(3):
        # gamma > 0: lo = smallest d with the rule true; gamma < 0: lo = largest d with it true.
        lo = np.where(pos & nonneg(lo - 1), lo - 1, lo)
        lo = np.where(pos & ~nonneg(lo), lo + 1, lo)
        lo = np.where(neg & nonneg(lo + 1), lo + 1, lo)
        lo = np.where(neg & ~nonneg(lo), lo - 1, lo)
    sign = np.where(neg, -1, 1).astype(np.int32)
    thr = np.where(neg, -lo, lo)
    zero = ~(pos | neg)
    thr = np.where(zero, np.where(beta >= 0, -big, big), thr)  # gamma == 0: constant +1 / constant -1
    return sign, np.clip(thr, -big, big).astype(np.int32)


def _affine(
    n: int, bias: Any, batch_norm: Mapping[str, Any] | None, kernel_scale: Any, eps: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """float32 (scale, offset) with ``BN(alpha d + b) = scale * d + offset``."""
    b = _per_channel(bias, n, "bias", 0.0)
    alpha = _per_channel(kernel_scale, n, "kernel_scale", 1.0)
    bn = _bn_arrays(batch_norm, n, eps)
    if bn is None:
        return alpha.astype(np.float32), b.astype(np.float32)
    gamma, beta, mean, r = bn
    return (gamma * alpha / r).astype(np.float32), (gamma * (b - mean) / r + beta).astype(np.float32)


def _binary_planes(w: np.ndarray, weights: str, field: str) -> tuple[np.ndarray, bool]:
    """±1 planes (P, ...) from the kernel, P = 1 or 2 (ternary); output-major axes already."""
    if weights not in ("latent", "binary", "ternary"):
        raise ValueError(f"weights: expected 'latent', 'binary' or 'ternary', received {weights!r}")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{field}: expected finite values, received {np.count_nonzero(~np.isfinite(w))} non-finite")
    if weights == "latent":
        return np.where(w < 0, -1, 1)[None].astype(np.int8), False
    if weights == "binary":
        bad = ~np.isin(w, (-1.0, 1.0))
        if np.any(bad):
            zeros = int(np.count_nonzero(w == 0))
            hint = " (zero weights cannot be held in one bit: use weights='ternary')" if zeros else ""
            raise ValueError(
                f"{field}: weights='binary' expects values in {{-1, +1}}, received {int(bad.sum())} other values "
                f"({zeros} zeros){hint}"
            )
        return w[None].astype(np.int8), False
    bad = ~np.isin(w, (-1.0, 0.0, 1.0))
    if np.any(bad):
        raise ValueError(
            f"{field}: weights='ternary' expects values in {{-1, 0, +1}}, received {int(bad.sum())} others"
        )
    if not np.any(w == 0):
        return w[None].astype(np.int8), False
    u = np.where(w == 0, 1, w)
    v = np.where(w == 0, -1, w)
    return np.stack([u, v]).astype(np.int8), True


def _default_output(output: str | None, bias: Any, batch_norm: Any, kernel_scale: Any) -> str:
    if output is None:
        return "int" if bias is None and batch_norm is None and kernel_scale is None else "affine"
    if output not in _OUTPUTS:
        raise ValueError(f"output: expected one of {_OUTPUTS} or None, received {output!r}")
    if output == "int" and not (bias is None and batch_norm is None and kernel_scale is None):
        raise ValueError(
            "output: 'int' returns bare int32 dot products; with a bias, batch_norm or kernel_scale "
            "use 'affine' or 'packed'"
        )
    return output


def _finish_params(
    kernel: np.ndarray, output: str, k: int, n: int, bias: Any, batch_norm: Any, kernel_scale: Any, eps: float | None
) -> dict[str, jax.Array]:
    params: dict[str, jax.Array] = {"kernel": jnp.asarray(kernel, jnp.uint32)}
    if output == "affine":
        scale, offset = _affine(n, bias, batch_norm, kernel_scale, eps)
        params["scale"], params["bias"] = jnp.asarray(scale), jnp.asarray(offset)
    elif output == "packed":
        sign, thr = fold_threshold(k, bias, batch_norm, features=n, kernel_scale=kernel_scale, eps=eps)
        params["sign"], params["threshold"] = jnp.asarray(sign), jnp.asarray(thr)
    return params


def export_dense(
    kernel: Any,
    bias: Any = None,
    batch_norm: Mapping[str, Any] | None = None,
    *,
    weights: Literal["latent", "binary", "ternary"] = "latent",
    output: Output | None = None,
    kernel_scale: Any = None,
    eps: float | None = None,
    backend: Backend = "xla",
) -> PackedLayer:
    """Export a trained binary dense layer (Flax kernel (k, N)) to a :class:`PackedDense`.

    The float layer computes ``BN(alpha * (x @ sign(W)) + b)`` on ±1 inputs x; the packed layer
    computes the same from packed words: ``output="int"`` gives ``x @ sign(W)`` in int32 (bit
    identical), ``"affine"`` gives float32 ``scale * d + offset`` (bias, kernel scale and
    batch-norm folded; bit identical to the float layer for a bias alone), ``"packed"`` gives
    packed ``sign(...)`` with the rule of :func:`fold_threshold` (sign(0) = +1).

    Args:
        kernel: Flax kernel of shape (k, N): float latent weights, or ±1 / {-1, 0, +1} values.
        bias: float bias (N,) or None.
        batch_norm: the following batch-norm as a mapping with ``mean``, ``var`` and optionally
            ``scale``, ``bias``, ``eps`` (Flax ``batch_stats`` plus ``params`` entries), or None.
        weights: ``"latent"``: binarize with sign(0) = +1 as ``ste_sign`` does; ``"binary"``:
            values must be ±1; ``"ternary"``: values in {-1, 0, +1}, zeros kept exact with two planes.
        output: ``"int"``, ``"affine"`` or ``"packed"``; None: ``"int"`` without bias / batch-norm /
            kernel scale, else ``"affine"``.
        kernel_scale: positive per-output-channel scale of the binarized kernel, or None.
        eps: batch-norm epsilon if ``batch_norm`` has none (default 1e-5).
        backend: ``"xla"`` or ``"pallas"`` for the packed product.

    Returns:
        a :class:`PackedLayer` (Linen module and variables; ``.to_nnx()`` for NNX).

    Raises:
        ValueError: on a kernel that is not 2-D, values outside the declared ``weights`` set,
            inconsistent per-channel shapes or an invalid batch-norm.
    """
    w = np.asarray(kernel, np.float64)
    if w.ndim != 2:
        raise ValueError(f"kernel: expected a Flax dense kernel of shape (in_features, features), received {w.shape}")
    k, n = w.shape
    output = _default_output(output, bias, batch_norm, kernel_scale)
    planes, ternary = _binary_planes(w.T, weights, "kernel")
    packed = np.asarray(bitpack.pack(jnp.asarray(planes), axis=-1))
    packed = packed if ternary else packed[0]
    params = _finish_params(packed, output, k, n, bias, batch_norm, kernel_scale, eps)
    module = PackedDense(features=n, in_features=k, output=output, ternary=ternary, backend=backend)
    return PackedLayer(module, {"params": params})


def export_conv(
    kernel: Any,
    bias: Any = None,
    batch_norm: Mapping[str, Any] | None = None,
    *,
    strides: int | Sequence[int] = 1,
    padding: Any = "SAME",
    kernel_dilation: int | Sequence[int] = 1,
    pad_value: float = 1.0,
    weights: Literal["latent", "binary", "ternary"] = "latent",
    output: Output | None = None,
    kernel_scale: Any = None,
    eps: float | None = None,
    backend: Backend = "xla",
) -> PackedLayer:
    """Export a trained binary 2-D convolution (Flax kernel (kh, kw, C_in, N)) to a :class:`PackedConv`.

    Same folding as :func:`export_dense`; the contraction length is ``k = kh * kw * C_in``. The
    padding value of the float layer is reproduced exactly: ``1.0`` (``pad_values=1.0``, the
    default of binary layers with an input quantizer: free, zero words), ``-1.0``, or ``0.0``
    (zero padding: the border pixels see 0, which one bit cannot hold, so the packed kernel
    subtracts the padded taps' weight sums; XLA backend only).

    Args:
        kernel: Flax conv kernel (kh, kw, C_in, N).
        bias: float bias (N,) or None.
        batch_norm: following batch-norm mapping (see :func:`export_dense`) or None.
        strides: window strides, one int or a pair.
        padding: ``"SAME"``, ``"VALID"`` or ((top, bottom), (left, right)), as in the float layer.
        kernel_dilation: kernel dilation, one int or a pair.
        pad_value: the float layer's padding value: 1.0, -1.0 or 0.0.
        weights: ``"latent"``, ``"binary"`` or ``"ternary"`` (see :func:`export_dense`).
        output: ``"int"``, ``"affine"``, ``"packed"`` or None (see :func:`export_dense`).
        kernel_scale: positive per-output-channel scale of the binarized kernel, or None.
        eps: batch-norm epsilon if ``batch_norm`` has none (default 1e-5).
        backend: ``"xla"`` or ``"pallas"`` (``pad_value=1`` only).

    Returns:
        a :class:`PackedLayer` holding a :class:`PackedConv`.

    Raises:
        ValueError: on a kernel that is not 4-D, an invalid padding or padding value, or any
            error of :func:`export_dense`.
    """
    w = np.asarray(kernel, np.float64)
    if w.ndim != 4:
        raise ValueError(f"kernel: expected a Flax 2-D conv kernel (kh, kw, C_in, N), received shape {w.shape}")
    padding = _check_padding(padding)
    if pad_value not in (1.0, -1.0, 0.0):
        raise ValueError(f"pad_value: expected 1.0, -1.0 or 0.0 (the float layer's pad_values), received {pad_value!r}")
    pad_int = int(pad_value)
    _check_pad_value(pad_int, backend)
    kh, kw, cin, n = w.shape
    output = _default_output(output, bias, batch_norm, kernel_scale)
    planes, ternary = _binary_planes(np.transpose(w, (3, 0, 1, 2)), weights, "kernel")
    packed = np.asarray(bitpack.pack(jnp.asarray(planes), axis=-1))
    packed = packed if ternary else packed[0]
    params = _finish_params(packed, output, kh * kw * cin, n, bias, batch_norm, kernel_scale, eps)
    module = PackedConv(
        features=n,
        in_features=cin,
        kernel_size=(kh, kw),
        strides=_pair(strides, "strides"),
        padding=padding,
        kernel_dilation=_pair(kernel_dilation, "kernel_dilation"),
        pad_value=pad_int,
        output=output,
        ternary=ternary,
        backend=backend,
    )
    return PackedLayer(module, {"params": params})


_SIGN_FORWARD = ("ste_sign", "approx_sign", "swish_sign", "gaussian_sign", "gumbel_sign")


def _quantizer_name(q: Any) -> str | None:
    """Registry name of a quantizer given as a name, a registry function or a ``functools.partial`` of one."""
    from tamejax.nn import quantizers

    if q is None or isinstance(q, str):
        return q
    fn = getattr(q, "func", q)
    for name, f in quantizers.QUANTIZERS.items():
        if fn is f:
            return name
    return "<callable>"


def _mas_axis_is_default(q: Any, ndim: int) -> bool:
    """Whether a ``magnitude_aware_sign`` quantizer (maybe a ``functools.partial``) uses the default axes.

    The default (``axis=None``) is every axis but the last: one scale per output channel. Any
    other ``axis`` is accepted only if it names exactly those axes.
    """
    args = getattr(q, "args", ())
    keywords = getattr(q, "keywords", {}) or {}
    axis = keywords.get("axis", args[1] if len(args) > 1 else None)  # (x, clip_value, axis): x is the kernel
    if axis is None:
        return True
    axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
    try:
        norm = sorted(int(a) % ndim for a in axes)
    except (TypeError, ValueError):
        return False
    return norm == list(range(ndim - 1))


def _bn_mapping(batch_norm: Any) -> Mapping[str, Any] | None:
    if batch_norm is None or isinstance(batch_norm, Mapping):
        return batch_norm
    if isinstance(batch_norm, nnx.BatchNorm):
        bn: dict[str, Any] = {
            "mean": batch_norm.mean[...],
            "var": batch_norm.var[...],
            "eps": batch_norm.epsilon,
        }
        if batch_norm.scale is not None:
            bn["scale"] = batch_norm.scale[...]
        if batch_norm.bias is not None:
            bn["bias"] = batch_norm.bias[...]
        return bn
    raise TypeError(f"batch_norm: expected None, a mapping or an nnx.BatchNorm, received {type(batch_norm).__name__}")


def export_layer(
    layer: Any,
    params: Mapping[str, Any] | None = None,
    batch_norm: Any = None,
    *,
    output: Output | None = None,
    eps: float | None = None,
    backend: Backend = "xla",
) -> PackedLayer:
    """Export a binary layer of :mod:`tamejax.nn.layers` (Linen or NNX) to a packed layer.

    Reads the kernel, bias and (for convolutions) strides, padding and ``pad_values`` from the
    layer, and maps its ``kernel_quantizer`` to the binarization: the sign quantizers
    (``ste_sign``, ``approx_sign``, ``swish_sign``, and the deterministic forward pass of
    ``gaussian_sign`` / ``gumbel_sign``) binarize the latent kernel with sign(0) = +1;
    ``magnitude_aware_sign`` adds its per-output-channel scale ``mean |W|`` (over all axes but
    the last) as ``kernel_scale`` (a ``functools.partial`` with any other ``axis`` is refused:
    its scale is not per output channel); ``None`` requires a kernel already in {-1, +1}. Other
    quantizers (``ste_heaviside``'s 0/1 weights, unknown callables) are refused: export the
    kernel with :func:`export_dense` / :func:`export_conv` and an explicit ``weights=``. The
    packed layer binarizes its inputs with sign: it reproduces the float layer when the float
    layer's inputs are ±1 (a sign ``input_quantizer``, or ``None`` with inputs already ±1; any
    other input quantizer, e.g. ``magnitude_aware_sign`` or ``ste_heaviside``, is refused). With
    ``magnitude_aware_sign`` the float layer sums ``±alpha`` terms in float32, so its outputs are
    rounded (``d = 0`` may come out as ``±1e-8``); the packed layer computes the exact ``alpha * d``.

    Args:
        layer: an NNX ``NNXBinaryLinear`` / ``NNXBinaryConv`` (2-D), or a Linen ``BinaryDense`` /
            ``BinaryConv`` module (then ``params`` is required).
        params: the Linen layer's ``{'kernel': ..., 'bias': ...}``; None for NNX layers.
        batch_norm: the following batch-norm: an ``nnx.BatchNorm``, a mapping (see :func:`export_dense`) or None.
        output: ``"int"``, ``"affine"``, ``"packed"`` or None (see :func:`export_dense`).
        eps: batch-norm epsilon when ``batch_norm`` is a mapping without one (default 1e-5).
        backend: ``"xla"`` or ``"pallas"``.

    Returns:
        a :class:`PackedLayer`.

    Raises:
        TypeError: if ``layer`` is not a binary layer or ``batch_norm`` has an unsupported type.
        ValueError: on an unsupported kernel or input quantizer (incl. ``magnitude_aware_sign`` with a
            non-default ``axis``), convolution rank, padding mode or feature groups, or on missing
            ``params`` for a Linen layer.
    """
    from tamejax.nn import layers as binary_layers

    nnx_types = (binary_layers.NNXBinaryLinear, binary_layers.NNXBinaryConv)
    linen_types = (binary_layers.BinaryDense, binary_layers.BinaryConv)
    if isinstance(layer, nnx_types):
        kernel = np.asarray(layer.kernel[...])
        bias = None if layer.bias is None else np.asarray(layer.bias[...])
    elif isinstance(layer, linen_types):
        if params is None or "kernel" not in params:
            raise ValueError("params: a Linen layer needs its params mapping {'kernel': ..., 'bias': ...}")
        kernel = np.asarray(params["kernel"])
        bias = None if params.get("bias") is None else np.asarray(params["bias"])
    else:
        raise TypeError(
            "layer: expected NNXBinaryLinear, NNXBinaryConv, BinaryDense or BinaryConv, "
            f"received {type(layer).__name__}"
        )
    in_name = _quantizer_name(layer.input_quantizer)
    if in_name is not None and in_name not in _SIGN_FORWARD:
        raise ValueError(
            f"input_quantizer: the packed layer binarizes its inputs with sign(x) (±1), but the layer's input "
            f"quantizer is {in_name!r}, whose forward pass is not a ±1 sign; expected one of {_SIGN_FORWARD} or None"
        )
    qname = _quantizer_name(layer.kernel_quantizer)
    kernel_scale = None
    if qname in _SIGN_FORWARD:
        weights = "latent"
    elif qname == "magnitude_aware_sign":
        if not _mas_axis_is_default(layer.kernel_quantizer, kernel.ndim):
            raise ValueError(
                "kernel_quantizer: magnitude_aware_sign with a non-default axis cannot be exported (the packed "
                "layer holds one scale per output channel, mean |W| over all axes but the last); expected "
                f"axis=None or the axes {tuple(range(kernel.ndim - 1))}, received {layer.kernel_quantizer!r}"
            )
        weights = "latent"
        kernel_scale = np.mean(np.abs(kernel.astype(np.float64)), axis=tuple(range(kernel.ndim - 1)))
    elif qname is None:
        weights = "binary"
    else:
        raise ValueError(
            f"kernel_quantizer: cannot export {qname!r} (its forward pass is not a ±1 sign); use export_dense / "
            "export_conv with weights='binary' or 'ternary'"
        )
    bn = _bn_mapping(batch_norm)
    common = {"weights": weights, "output": output, "kernel_scale": kernel_scale, "eps": eps, "backend": backend}
    if isinstance(layer, binary_layers.NNXBinaryLinear | binary_layers.BinaryDense):
        return export_dense(kernel, bias, bn, **common)
    if kernel.ndim != 4:
        raise ValueError(f"layer: only 2-D convolutions are packed, received a kernel of shape {kernel.shape}")
    groups = layer.feature_group_count
    if groups != 1:
        raise ValueError(f"layer: feature_group_count must be 1 for packed export, received {groups}")
    dilation = 1 if layer.kernel_dilation is None else layer.kernel_dilation
    strides = 1 if layer.strides is None else layer.strides
    padding = layer.padding
    if isinstance(padding, str):
        padding = padding.upper()
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"layer: padding {padding!r} is not supported by packed convolutions (SAME, VALID, pairs)")
    elif isinstance(padding, int | np.integer):
        padding = ((int(padding), int(padding)),) * 2
    else:
        padding = tuple((int(p), int(p)) if isinstance(p, int | np.integer) else tuple(p) for p in padding)
    pad_value = layer.pad_values
    if pad_value is None:
        pad_value = 0.0 if layer.input_quantizer is None else 1.0
    return export_conv(
        kernel, bias, bn, strides=strides, padding=padding, kernel_dilation=dilation, pad_value=pad_value, **common
    )


_AUTO_DENSE = re.compile(r"BinaryDense_(\d+)")
_AUTO_BN = re.compile(r"BatchNorm_(\d+)")


def _auto_numbered(names: Sequence[str], pattern: re.Pattern[str], field: str) -> list[str]:
    """Names matching ``Type_<i>`` sorted by ``i``; the numbers must be exactly 0, 1, ..., len - 1."""
    numbered = sorted((int(pattern.fullmatch(name).group(1)), name) for name in names)  # type: ignore[union-attr]
    if [i for i, _ in numbered] != list(range(len(numbered))):
        raise ValueError(
            f"{field}: auto-named modules must be numbered 0, 1, ..., received {[name for _, name in numbered]}; "
            "pass layers=[(dense_name, bn_name or None), ...]"
        )
    return [name for _, name in numbered]


def _auto_layers(params: Mapping[str, Any], stats: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """The ``BinaryDense_i -> BatchNorm_i`` chain of a Linen model with auto-named modules (see export_linen_mlp)."""
    kernels = [name for name, tree in params.items() if isinstance(tree, Mapping) and "kernel" in tree]
    others = [name for name in kernels if not _AUTO_DENSE.fullmatch(name)]
    if others:
        raise ValueError(
            f"variables['params']: auto-detection handles only auto-named BinaryDense_<i> layers, found other "
            f"layers with a kernel {sorted(others)} (e.g. a float nn.Dense, whose place in the chain cannot be "
            "read from the variables); pass layers=[(dense_name, bn_name or None), ...] for the binary chain"
        )
    if not kernels:
        raise ValueError(f"variables['params']: no BinaryDense_<i> entry with a kernel found among {list(params)}")
    bad = [name for name in kernels if np.ndim(params[name]["kernel"]) != 2]
    if bad:
        raise ValueError(f"variables['params']: {bad} have kernels that are not 2-D (not dense layers)")
    stat_names = [name for name, tree in stats.items() if isinstance(tree, Mapping) and {"mean", "var"} <= set(tree)]
    other_stats = [name for name in stat_names if not _AUTO_BN.fullmatch(name)]
    if other_stats:
        raise ValueError(
            f"variables['batch_stats']: auto-detection handles only auto-named BatchNorm_<i> modules, found "
            f"{sorted(other_stats)}; pass layers=[(dense_name, bn_name or None), ...]"
        )
    dense = _auto_numbered(kernels, _AUTO_DENSE, "variables['params']")
    bns = _auto_numbered(stat_names, _AUTO_BN, "variables['batch_stats']")
    if len(bns) not in (len(dense), len(dense) - 1):
        raise ValueError(
            f"layers: cannot pair {len(dense)} dense layers {dense} with {len(bns)} batch-norms {bns}; "
            "pass layers=[(dense_name, bn_name or None), ...]"
        )
    for dname, bname in zip(dense, bns, strict=False):
        width = np.shape(params[dname]["kernel"])[1]
        if np.shape(stats[bname]["mean"]) != (width,):
            raise ValueError(
                f"layers: {bname} (mean of shape {np.shape(stats[bname]['mean'])}) cannot follow {dname} "
                f"({width} outputs): the BinaryDense_i -> BatchNorm_i layout does not hold; pass layers=[...]"
            )
    return list(zip(dense, [*bns, None][: len(dense)], strict=True))


def _is_dense(tree: Any) -> bool:
    return isinstance(tree, Mapping) and "kernel" in tree and np.ndim(tree["kernel"]) == 2


def export_linen_mlp(
    variables: Mapping[str, Any],
    *,
    layers: Sequence[tuple[str, str | None]] | None = None,
    eps: float = 1e-5,
    last_output: Output | None = None,
    weights: Literal["latent", "binary", "ternary"] = "latent",
    backend: Backend = "xla",
) -> list[PackedLayer]:
    """Export the binary part of a Linen MLP (chains ``BinaryDense -> BatchNorm -> sign``) to packed layers.

    Each binary dense layer (with the batch-norm after it, if any) becomes a :class:`PackedDense`;
    all but the last emit packed activations (``output="packed"``: the next layer's ``sign``
    input quantizer is folded into the threshold), the last returns ``last_output``. The dense
    layers must take ±1 inputs (``input_quantizer`` a sign); a float first or last layer is not
    part of the chain (pass the binary sub-network, or name the layers explicitly).

    Auto-detection (``layers=None``) handles exactly one layout: a model made only of Flax
    auto-named ``BinaryDense_<i>`` and ``BatchNorm_<i>`` modules (numbered 0, 1, ... by Flax in
    call order; the numbers are compared as numbers, since dictionary order is lost by tree maps
    and checkpoints), where ``BatchNorm_i`` follows ``BinaryDense_i`` and the last dense layer
    may have none. Any other entry with a ``kernel`` (a float ``nn.Dense``, a conv, an explicitly
    named module) or other batch statistics raise a ValueError instead of being guessed at, as do
    a count of batch-norms other than ``n`` or ``n - 1`` and a batch-norm whose width differs
    from its dense layer's. The pairing itself cannot be read from the variables: a model that
    skips a batch-norm in the middle of a chain of equal widths is indistinguishable from one
    without a batch-norm after the last layer; for any layout but the one above, pass ``layers``.

    Not read from the variables (pass them yourself): the batch-norm epsilon (``eps``, the same
    for every batch-norm; Flax's default 1e-5) and a ``magnitude_aware_sign`` kernel scale (its
    quantizer is not part of the variables; export such layers with :func:`export_layer`).

    Args:
        variables: Linen variables ``{'params': ..., 'batch_stats': ...}`` of the model.
        layers: explicit ``[(dense_name, batchnorm_name or None), ...]`` in call order, or None
            (auto-detection, see above).
        eps: the batch-norm epsilon of every batch-norm (Flax default 1e-5; not stored in the variables).
        last_output: output of the last layer; None: ``"int"`` if it has no bias and no batch-norm,
            else ``"affine"``.
        weights: how kernels are read (see :func:`export_dense`).
        backend: ``"xla"`` or ``"pallas"``.

    Returns:
        the list of :class:`PackedLayer`; run it with :func:`run_packed`.

    Raises:
        ValueError: if the layers cannot be identified unambiguously (see above) or a named entry
            is missing.
    """
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise ValueError(f"variables: expected a mapping with a 'params' entry, received {type(variables).__name__}")
    params = variables["params"]
    stats = variables.get("batch_stats", {})
    if layers is None:
        layers = _auto_layers(params, stats)
    out: list[PackedLayer] = []
    for i, (dname, bname) in enumerate(layers):
        if dname not in params or not _is_dense(params[dname]):
            raise ValueError(f"layers: {dname!r} is not a dense layer with a 2-D kernel in variables['params']")
        bn = None
        if bname is not None:
            if bname not in stats:
                raise ValueError(f"layers: batch-norm {bname!r} not found in variables['batch_stats']")
            bn = {"mean": stats[bname]["mean"], "var": stats[bname]["var"], "eps": eps}
            for key in ("scale", "bias"):
                if key in params.get(bname, {}):
                    bn[key] = params[bname][key]
        bias = params[dname].get("bias")
        last = i == len(layers) - 1
        output = last_output if last else "packed"
        out.append(export_dense(params[dname]["kernel"], bias, bn, weights=weights, output=output, backend=backend))
    for prev, nxt in zip(out, out[1:], strict=False):
        if prev.module.features != nxt.module.in_features:
            raise ValueError(
                f"layers: output width {prev.module.features} does not match the next layer's input "
                f"width {nxt.module.in_features}"
            )
    return out


def run_packed(layers: Sequence[PackedLayer | nnx.Module], x: jax.Array) -> jax.Array:
    """Run a chain of packed layers: ``layers[-1](... layers[0](x))``.

    Args:
        layers: :class:`PackedLayer` objects (or NNX packed layers), each but the last with
            ``output="packed"``.
        x: ±1 (real) inputs (..., k) or packed words (..., ceil(k / 32)) for the first layer;
            leading axes are batch axes (they may be sharded).

    Returns:
        the last layer's output.

    Raises:
        ValueError: if ``layers`` is empty.
    """
    if len(layers) == 0:
        raise ValueError("layers: expected at least one packed layer, received none")
    for layer in layers:
        x = layer(x)
    return x
