r"""Binary dense and convolution layers for both Flax APIs (Linen and NNX), Larq-style.

A binary layer keeps *latent* real-valued weights (the parameters the optimizer updates) and
computes with quantized ones: for a dense layer

$$y = q_{\text{in}}(x)\; q_{\text{k}}(W) + b,$$

where ``q_in`` (``input_quantizer``) and ``q_k`` (``kernel_quantizer``) are quantizers of
:mod:`tamejax.nn.quantizers` (names such as ``"ste_sign"``, callables, or ``None`` for no
quantization). With both quantizers ``None`` a layer is exactly ``flax.linen.Dense`` /
``flax.linen.Conv`` (``flax.nnx.Linear`` / ``flax.nnx.Conv``): same parameter names, shapes,
initializers and arithmetic, so it is a drop-in replacement.

=====================  ==========================  =====================================================
Linen                  NNX                         parameters
=====================  ==========================  =====================================================
:class:`BinaryDense`   :class:`NNXBinaryLinear`    ``kernel (in, out)``, ``bias (out,)``
:class:`BinaryConv`    :class:`NNXBinaryConv`      ``kernel (*window, in/groups, out)``, ``bias (out,)``
=====================  ==========================  =====================================================

Convolutions use the channels-last layout (NWC, NHWC, ...) like Flax. Their padding pads the
*quantized* input with ``pad_values`` (Larq's ``pad_values``): with the default (``1.0`` when an
input quantizer is set, ``0.0`` otherwise) a binary input stays binary after padding, which is
what bit-packed XNOR inference computes; zero padding would add a third value.

Stochastic quantizers (``gaussian_sign``, ``gumbel_sign``) draw their noise from the PRNG stream
``rng_collection`` (default ``"quantizer"``) when the layer is not ``deterministic``, and
compute ``sign`` (the noise at its mean) when it is. The latent weights are kept in ``[-1, 1]``
by :func:`tamejax.nn.bop.clip_latent_weights` (an optax transform) as in Larq.

The functional forms :func:`binary_dense` and :func:`binary_conv` compute the same thing from
explicit parameters (used by both APIs, and by export / float simulation).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from tamejax.nn.quantizers import Quantizer, get_quantizer, is_stochastic

__all__ = [
    "BinaryConv",
    "BinaryDense",
    "NNXBinaryConv",
    "NNXBinaryLinear",
    "binary_conv",
    "binary_dense",
]

QuantizerLike = str | Quantizer | None
PaddingLike = str | int | Sequence[int | tuple[int, int]]

_default_kernel_init = nn.initializers.lecun_normal()
_default_bias_init = nn.initializers.zeros_init()


# ---------------------------------------------------------------------------- helpers
def _check_quantizer(name: str, quantizer: Any) -> Quantizer:
    try:
        return get_quantizer(quantizer)
    except (ValueError, TypeError) as err:
        raise type(err)(str(err).replace("argument `quantizer`", f"argument `{name}`")) from None


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"argument `{name}`: expected an integer >= 1, got {value!r}")
    return int(value)


def _int_tuple(name: str, value: Any, rank: int) -> tuple[int, ...]:
    """``value`` (``None`` = 1, an int, or ``rank`` ints) as ``rank`` positive ints."""
    if value is None:
        value = 1
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,) * rank
    try:
        out = tuple(value)
    except TypeError:
        raise ValueError(f"argument `{name}`: expected an int or a sequence of {rank} ints, got {value!r}") from None
    if len(out) != rank or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in out):
        raise ValueError(f"argument `{name}`: expected an int or a sequence of {rank} ints >= 1, got {value!r}")
    return tuple(int(v) for v in out)


def _canonical_padding(padding: Any, rank: int) -> str | list[tuple[int, int]]:
    if isinstance(padding, str):
        p = padding.upper()
        if p not in ("SAME", "VALID", "CIRCULAR", "REFLECT", "CAUSAL"):
            raise ValueError(
                "argument `padding`: expected 'SAME', 'VALID', 'CIRCULAR', 'REFLECT', 'CAUSAL', an int or "
                f"{rank} ints / (low, high) pairs, got {padding!r}"
            )
        if p == "CAUSAL" and rank != 1:
            raise ValueError(f"argument `padding`: 'CAUSAL' needs a 1D convolution, got a {rank}D kernel")
        return p
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        padding = [int(padding)] * rank
    pads: list[tuple[int, int]] = []
    if isinstance(padding, Sequence) and len(padding) == rank:
        for p in padding:
            if isinstance(p, numbers.Integral) and not isinstance(p, bool):
                pads.append((int(p), int(p)))
            elif isinstance(p, Sequence) and len(p) == 2 and all(isinstance(v, numbers.Integral) for v in p):
                pads.append((int(p[0]), int(p[1])))
    if len(pads) != rank or any(lo < 0 or hi < 0 for lo, hi in pads):
        raise ValueError(
            f"argument `padding`: expected a padding string, an int >= 0 or {rank} ints / (low, high) pairs "
            f">= 0, got {padding!r}"
        )
    return pads


def _pad_value(pad_values: Any, input_quantizer: QuantizerLike) -> float:
    if pad_values is None:
        return 0.0 if input_quantizer is None else 1.0
    if isinstance(pad_values, bool) or not isinstance(pad_values, numbers.Real) or not math.isfinite(pad_values):
        raise ValueError(f"argument `pad_values`: expected a finite number or None, got {pad_values!r}")
    return float(pad_values)


def _promote(dtype: Any, *arrays: jax.Array | None) -> list[jax.Array | None]:
    """flax's ``promote_dtype``: all to ``dtype``, or to the result type of the arrays."""
    present = [a for a in arrays if a is not None]
    dtype = dtype if dtype is not None else jnp.result_type(*present)
    return [None if a is None else jnp.asarray(a, dtype) for a in arrays]


def _quantize(q: Quantizer, stochastic: bool, x: jax.Array, key: jax.Array | None) -> jax.Array:
    if stochastic and key is not None:
        return q(x, key=key)
    return q(x)


def _split(key: jax.Array | None) -> tuple[jax.Array | None, jax.Array | None]:
    if key is None:
        return None, None
    k1, k2 = jax.random.split(key)
    return k1, k2


# ---------------------------------------------------------------------------- functional forms
def binary_dense(
    inputs: Any,
    kernel: Any,
    bias: Any = None,
    *,
    input_quantizer: QuantizerLike = None,
    kernel_quantizer: QuantizerLike = None,
    key: jax.Array | None = None,
    dtype: Any = None,
    precision: Any = None,
) -> jax.Array:
    r"""``q_in(inputs) @ q_k(kernel) + bias`` over the last axis of ``inputs`` (``flax.linen.Dense``'s arithmetic).

    Args:
      inputs: array ``(..., in)``.
      kernel: latent kernel ``(in, out)``.
      bias: bias ``(out,)`` or ``None``.
      input_quantizer: quantizer of the inputs (name, callable or ``None``). It sees the whole
        batch: ``magnitude_aware_sign`` with its default axes averages its scale over the batch
        (see its docstring; ``functools.partial(magnitude_aware_sign, axis=-1)`` does not).
      kernel_quantizer: quantizer of the kernel (name, callable or ``None``).
      key: PRNG key for stochastic quantizers (``None``: their deterministic forward pass).
      dtype: computation dtype (default: promoted from the operands, as in Flax).
      precision: ``jax.lax`` precision of the matrix product.

    Returns:
      The array ``(..., out)``.

    Raises:
      ValueError: if the shapes do not match or a quantizer name is unknown.
    """
    q_in = _check_quantizer("input_quantizer", input_quantizer)
    q_k = _check_quantizer("kernel_quantizer", kernel_quantizer)
    inputs, kernel = jnp.asarray(inputs), jnp.asarray(kernel)
    if kernel.ndim != 2:
        raise ValueError(f"argument `kernel`: expected shape (in, out), got {kernel.shape}")
    if inputs.ndim < 1 or inputs.shape[-1] != kernel.shape[0]:
        raise ValueError(f"argument `inputs`: expected shape (..., {kernel.shape[0]}), got {inputs.shape}")
    if bias is not None:
        bias = jnp.asarray(bias)
        if bias.shape != (kernel.shape[1],):
            raise ValueError(f"argument `bias`: expected shape ({kernel.shape[1]},), got {bias.shape}")
    inputs, kernel, bias = _promote(dtype, inputs, kernel, bias)
    k_in, k_k = _split(key)
    x = _quantize(q_in, is_stochastic(input_quantizer), inputs, k_in)
    w = _quantize(q_k, is_stochastic(kernel_quantizer), kernel, k_k)
    y = lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())), precision=precision)
    if bias is not None:
        y += jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
    return y


def _conv_dimension_numbers(input_shape: tuple[int, ...]) -> lax.ConvDimensionNumbers:
    ndim = len(input_shape)
    lhs_spec = (0, ndim - 1) + tuple(range(1, ndim - 1))
    rhs_spec = (ndim - 1, ndim - 2) + tuple(range(0, ndim - 2))
    return lax.ConvDimensionNumbers(lhs_spec, rhs_spec, lhs_spec)


def binary_conv(
    inputs: Any,
    kernel: Any,
    bias: Any = None,
    *,
    strides: int | Sequence[int] | None = 1,
    padding: PaddingLike = "SAME",
    kernel_dilation: int | Sequence[int] | None = 1,
    feature_group_count: int = 1,
    input_quantizer: QuantizerLike = None,
    kernel_quantizer: QuantizerLike = None,
    pad_values: float | None = None,
    key: jax.Array | None = None,
    dtype: Any = None,
    precision: Any = None,
) -> jax.Array:
    r"""Channels-last convolution of ``q_in(inputs)`` with ``q_k(kernel)`` (``flax.linen.Conv``'s arithmetic).

    Padding: the quantized input is padded with the constant ``pad_values`` (explicitly, then a
    ``VALID`` convolution), so that a binary input stays binary; with ``pad_values = 0`` the
    padding is handed to ``lax.conv_general_dilated`` as Flax does.

    Args:
      inputs: array ``(*batch, *spatial, in)`` (one or more batch axes, or none).
      kernel: latent kernel ``(*window, in / feature_group_count, out)``; ``len(window)`` is the
        number of spatial dimensions (1 for NWC, 2 for NHWC, ...).
      bias: bias ``(out,)`` or ``None``.
      strides: an int or one int per spatial dimension.
      padding: ``'SAME'``, ``'VALID'``, ``'CIRCULAR'``, ``'REFLECT'``, ``'CAUSAL'`` (1D), an int or
        one int / ``(low, high)`` pair per spatial dimension, as in Flax.
      kernel_dilation: an int or one int per spatial dimension.
      feature_group_count: number of feature groups (grouped / depthwise convolution).
      input_quantizer: quantizer of the inputs (name, callable or ``None``). It sees the whole
        batch: ``magnitude_aware_sign`` with its default axes averages its scale over the batch
        (see its docstring; ``functools.partial(magnitude_aware_sign, axis=-1)`` does not).
      kernel_quantizer: quantizer of the kernel (name, callable or ``None``).
      pad_values: the constant the quantized input is padded with; ``None`` means ``1.0`` with an
        input quantizer and ``0.0`` (Flax's zero padding) without.
      key: PRNG key for stochastic quantizers (``None``: their deterministic forward pass).
      dtype: computation dtype (default: promoted from the operands, as in Flax).
      precision: ``jax.lax`` precision of the convolution.

    Returns:
      The array ``(*batch, *out_spatial, out)``.

    Raises:
      ValueError: if the shapes or the convolution arguments are invalid, or a quantizer name is unknown.
    """
    q_in = _check_quantizer("input_quantizer", input_quantizer)
    q_k = _check_quantizer("kernel_quantizer", kernel_quantizer)
    inputs, kernel = jnp.asarray(inputs), jnp.asarray(kernel)
    if kernel.ndim < 3:
        raise ValueError(
            f"argument `kernel`: expected shape (*window, in, out) with >= 1 window axis, got {kernel.shape}"
        )
    rank = kernel.ndim - 2
    kernel_size = kernel.shape[:rank]
    groups = _positive_int("feature_group_count", feature_group_count)
    num_batch = inputs.ndim - (rank + 1)
    if num_batch < 0:
        raise ValueError(
            f"argument `inputs`: expected shape (*batch, {rank} spatial axes, channels) for a {rank}D kernel, "
            f"got {inputs.shape}"
        )
    if inputs.shape[-1] != kernel.shape[-2] * groups:
        raise ValueError(
            f"argument `inputs`: expected {kernel.shape[-2] * groups} channels (kernel in-features "
            f"{kernel.shape[-2]} x feature_group_count {groups}), got shape {inputs.shape}"
        )
    if kernel.shape[-1] % groups:
        raise ValueError(
            f"argument `feature_group_count`: expected a divisor of the {kernel.shape[-1]} output features, "
            f"got {groups}"
        )
    if bias is not None:
        bias = jnp.asarray(bias)
        if bias.shape != (kernel.shape[-1],):
            raise ValueError(f"argument `bias`: expected shape ({kernel.shape[-1]},), got {bias.shape}")
    strides_t = _int_tuple("strides", strides, rank)
    dilation = _int_tuple("kernel_dilation", kernel_dilation, rank)
    padding_lax = _canonical_padding(padding, rank)
    pad_value = _pad_value(pad_values, input_quantizer)

    if num_batch != 1:
        batch_shape = inputs.shape[:num_batch]
        inputs = jnp.reshape(inputs, (-1,) + inputs.shape[num_batch:])
    inputs, kernel, bias = _promote(dtype, inputs, kernel, bias)
    k_in, k_k = _split(key)
    x = _quantize(q_in, is_stochastic(input_quantizer), inputs, k_in)
    w = _quantize(q_k, is_stochastic(kernel_quantizer), kernel, k_k)

    dilated = [(k - 1) * d + 1 for k, d in zip(kernel_size, dilation, strict=True)]
    if padding_lax in ("CIRCULAR", "REFLECT"):
        pads = [((k - 1) // 2, k // 2) for k in dilated]
        x = jnp.pad(x, [(0, 0), *pads, (0, 0)], mode={"CIRCULAR": "wrap", "REFLECT": "reflect"}[padding_lax])
        padding_lax = "VALID"
    elif padding_lax == "CAUSAL":
        x = jnp.pad(x, [(0, 0), (dilation[0] * (kernel_size[0] - 1), 0), (0, 0)], constant_values=pad_value)
        padding_lax = "VALID"
    elif pad_value != 0.0 and padding_lax != "VALID":
        if padding_lax == "SAME":
            pads = lax.padtype_to_pads(x.shape[1:-1], dilated, strides_t, "SAME")
        else:
            pads = padding_lax
        x = jnp.pad(x, [(0, 0), *pads, (0, 0)], constant_values=jnp.asarray(pad_value, x.dtype))
        padding_lax = "VALID"

    y = lax.conv_general_dilated(
        x,
        w,
        strides_t,
        padding_lax,
        lhs_dilation=(1,) * rank,
        rhs_dilation=dilation,
        dimension_numbers=_conv_dimension_numbers(x.shape),
        feature_group_count=groups,
        precision=precision,
    )
    if bias is not None:
        bias = bias.reshape((1,) * (y.ndim - bias.ndim) + bias.shape)
        y += bias
    if num_batch != 1:
        y = jnp.reshape(y, batch_shape + y.shape[1:])
    return y


def _kernel_size(kernel_size: Any) -> tuple[int, ...]:
    if isinstance(kernel_size, numbers.Integral) and not isinstance(kernel_size, bool):
        kernel_size = (kernel_size,)
    try:
        ks = tuple(kernel_size)
    except TypeError:
        raise ValueError(
            f"argument `kernel_size`: expected an int or a sequence of ints, got {kernel_size!r}"
        ) from None
    if not ks or not all(isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 1 for k in ks):
        raise ValueError(
            f"argument `kernel_size`: expected an int or a non-empty sequence of ints >= 1, got {kernel_size!r}"
        )
    return tuple(int(k) for k in ks)


# ---------------------------------------------------------------------------- Linen
class _LinenBinary(nn.Module):
    """Shared key handling of the Linen binary layers."""

    def _key(self, deterministic: bool | None) -> jax.Array | None:
        if not (is_stochastic(self.input_quantizer) or is_stochastic(self.kernel_quantizer)):
            return None
        if nn.merge_param("deterministic", self.deterministic, deterministic):
            return None
        return self.make_rng(self.rng_collection)


class BinaryDense(_LinenBinary):
    r"""Binary dense layer (Linen): ``q_in(x) @ q_k(W) + b``, Larq's ``QuantDense``.

    Parameters ``{'kernel': (in, out), 'bias': (out,)}`` as ``flax.linen.Dense``; with both
    quantizers ``None`` it *is* ``flax.linen.Dense``.

    Attributes:
      features: number of output features.
      use_bias: whether to add a bias.
      input_quantizer: quantizer of the inputs (name, callable or ``None``). It sees the whole
        batch: ``magnitude_aware_sign`` with its default axes averages its scale over the batch
        (see its docstring; ``functools.partial(magnitude_aware_sign, axis=-1)`` does not).
      kernel_quantizer: quantizer of the latent kernel (name, callable or ``None``).
      deterministic: for stochastic quantizers: ``True`` uses their deterministic forward pass,
        ``False`` samples with the ``rng_collection`` stream (may also be given at call time).
      dtype: computation dtype (default: promoted from inputs and parameters).
      param_dtype: dtype of the parameters.
      precision: ``jax.lax`` precision of the matrix product.
      kernel_init: initializer of the latent kernel (Flax's default, LeCun normal).
      bias_init: initializer of the bias (zeros).
      rng_collection: name of the PRNG stream of stochastic quantizers.
    """

    features: int
    use_bias: bool = True
    input_quantizer: QuantizerLike = None
    kernel_quantizer: QuantizerLike = None
    deterministic: bool | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Callable = _default_kernel_init
    bias_init: Callable = _default_bias_init
    rng_collection: str = "quantizer"

    @nn.compact
    def __call__(self, inputs: Any, deterministic: bool | None = None) -> jax.Array:
        """Apply the layer.

        Args:
          inputs: array ``(..., in)``.
          deterministic: overrides the attribute of the same name.

        Returns:
          The array ``(..., features)``.
        """
        features = _positive_int("features", self.features)
        _check_quantizer("input_quantizer", self.input_quantizer)
        _check_quantizer("kernel_quantizer", self.kernel_quantizer)
        inputs = jnp.asarray(inputs)
        if inputs.ndim < 1:
            raise ValueError(f"argument `inputs`: expected shape (..., in), got {inputs.shape}")
        kernel = self.param("kernel", self.kernel_init, (jnp.shape(inputs)[-1], features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (features,), self.param_dtype) if self.use_bias else None
        return binary_dense(
            inputs,
            kernel,
            bias,
            input_quantizer=self.input_quantizer,
            kernel_quantizer=self.kernel_quantizer,
            key=self._key(deterministic),
            dtype=self.dtype,
            precision=self.precision,
        )


class BinaryConv(_LinenBinary):
    r"""Binary convolution (Linen), 1D / 2D / ND channels-last: Larq's ``QuantConv1D/2D``.

    Parameters ``{'kernel': (*kernel_size, in / feature_group_count, out), 'bias': (out,)}`` as
    ``flax.linen.Conv``; with both quantizers ``None`` (and the default ``pad_values``) it *is*
    ``flax.linen.Conv``. The number of spatial dimensions is ``len(kernel_size)``.

    Attributes:
      features: number of output features (filters).
      kernel_size: window shape (an int means a 1D window).
      strides: an int or one int per spatial dimension.
      padding: ``'SAME'``, ``'VALID'``, ``'CIRCULAR'``, ``'REFLECT'``, ``'CAUSAL'``, an int or
        pairs, as ``flax.linen.Conv``.
      kernel_dilation: an int or one int per spatial dimension.
      feature_group_count: number of feature groups.
      use_bias: whether to add a bias.
      input_quantizer: quantizer of the inputs (name, callable or ``None``). It sees the whole
        batch: ``magnitude_aware_sign`` with its default axes averages its scale over the batch
        (see its docstring; ``functools.partial(magnitude_aware_sign, axis=-1)`` does not).
      kernel_quantizer: quantizer of the latent kernel (name, callable or ``None``).
      pad_values: constant the quantized input is padded with (``None``: 1.0 with an input
        quantizer, so binary inputs stay binary; 0.0 without).
      deterministic: for stochastic quantizers (see :class:`BinaryDense`).
      dtype: computation dtype.
      param_dtype: dtype of the parameters.
      precision: ``jax.lax`` precision of the convolution.
      kernel_init: initializer of the latent kernel.
      bias_init: initializer of the bias.
      rng_collection: name of the PRNG stream of stochastic quantizers.
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] | None = 1
    padding: PaddingLike = "SAME"
    kernel_dilation: int | Sequence[int] | None = 1
    feature_group_count: int = 1
    use_bias: bool = True
    input_quantizer: QuantizerLike = None
    kernel_quantizer: QuantizerLike = None
    pad_values: float | None = None
    deterministic: bool | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Callable = _default_kernel_init
    bias_init: Callable = _default_bias_init
    rng_collection: str = "quantizer"

    @nn.compact
    def __call__(self, inputs: Any, deterministic: bool | None = None) -> jax.Array:
        """Apply the layer.

        Args:
          inputs: array ``(*batch, *spatial, in)``.
          deterministic: overrides the attribute of the same name.

        Returns:
          The array ``(*batch, *out_spatial, features)``.
        """
        features = _positive_int("features", self.features)
        kernel_size = _kernel_size(self.kernel_size)
        groups = _positive_int("feature_group_count", self.feature_group_count)
        _check_quantizer("input_quantizer", self.input_quantizer)
        _check_quantizer("kernel_quantizer", self.kernel_quantizer)
        inputs = jnp.asarray(inputs)
        if inputs.ndim < len(kernel_size) + 1:
            raise ValueError(
                f"argument `inputs`: expected shape (*batch, {len(kernel_size)} spatial axes, channels), "
                f"got {inputs.shape}"
            )
        in_features = inputs.shape[-1]
        if in_features % groups:
            raise ValueError(
                f"argument `feature_group_count`: expected a divisor of the {in_features} input channels, got {groups}"
            )
        kernel = self.param(
            "kernel", self.kernel_init, kernel_size + (in_features // groups, features), self.param_dtype
        )
        bias = self.param("bias", self.bias_init, (features,), self.param_dtype) if self.use_bias else None
        return binary_conv(
            inputs,
            kernel,
            bias,
            strides=self.strides,
            padding=self.padding,
            kernel_dilation=self.kernel_dilation,
            feature_group_count=groups,
            input_quantizer=self.input_quantizer,
            kernel_quantizer=self.kernel_quantizer,
            pad_values=self.pad_values,
            key=self._key(deterministic),
            dtype=self.dtype,
            precision=self.precision,
        )


# ---------------------------------------------------------------------------- NNX
class _NNXBinary(nnx.Module):
    """Shared quantizer / PRNG handling of the NNX binary layers."""

    def _init_quantizers(
        self,
        input_quantizer: QuantizerLike,
        kernel_quantizer: QuantizerLike,
        deterministic: bool,
        rng_collection: str,
        rngs: nnx.Rngs,
    ) -> None:
        _check_quantizer("input_quantizer", input_quantizer)
        _check_quantizer("kernel_quantizer", kernel_quantizer)
        if not isinstance(deterministic, bool):
            raise ValueError(f"argument `deterministic`: expected True or False, got {deterministic!r}")
        self.input_quantizer = input_quantizer
        self.kernel_quantizer = kernel_quantizer
        self.deterministic = deterministic
        self.rng_collection = rng_collection
        if is_stochastic(input_quantizer) or is_stochastic(kernel_quantizer):
            self.rngs = rngs[rng_collection].fork()
        else:
            self.rngs = nnx.data(None)

    def _key(self, deterministic: bool | None, rngs: Any) -> jax.Array | None:
        if self.rngs is None:  # no stochastic quantizer
            return None
        if (self.deterministic if deterministic is None else deterministic) is True:
            return None
        if rngs is None:
            return self.rngs()
        if isinstance(rngs, nnx.Rngs):
            return rngs[self.rng_collection]()
        if isinstance(rngs, nnx.RngStream):
            return rngs()
        return rngs  # a key

    def set_view(self, deterministic: bool | None = None) -> None:
        """Used by ``nnx.view`` / ``model.eval()``-style switches: set ``deterministic``.

        Args:
          deterministic: ``True`` for the deterministic forward pass of stochastic quantizers.
        """
        if deterministic is not None:
            self.deterministic = deterministic


class NNXBinaryLinear(_NNXBinary):
    r"""Binary dense layer (NNX): ``q_in(x) @ q_k(W) + b``, mirroring ``flax.nnx.Linear``.

    ``kernel`` ``(in_features, out_features)`` and ``bias`` ``(out_features,)`` are ``nnx.Param``;
    with both quantizers ``None`` it computes exactly what ``flax.nnx.Linear`` computes.

    Args:
      in_features: number of input features.
      out_features: number of output features.
      use_bias: whether to add a bias.
      input_quantizer: quantizer of the inputs (name, callable or ``None``). It sees the whole
        batch: ``magnitude_aware_sign`` with its default axes averages its scale over the batch
        (see its docstring; ``functools.partial(magnitude_aware_sign, axis=-1)`` does not).
      kernel_quantizer: quantizer of the latent kernel (name, callable or ``None``).
      deterministic: for stochastic quantizers: ``True`` uses their deterministic forward pass,
        ``False`` (default, training) samples from the ``rng_collection`` stream.
      dtype: computation dtype.
      param_dtype: dtype of the parameters.
      precision: ``jax.lax`` precision of the matrix product.
      kernel_init: initializer of the latent kernel.
      bias_init: initializer of the bias.
      rng_collection: name of the PRNG stream of stochastic quantizers.
      rngs: the ``nnx.Rngs`` (``params`` stream for the initializers).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        input_quantizer: QuantizerLike = None,
        kernel_quantizer: QuantizerLike = None,
        deterministic: bool = False,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        precision: Any = None,
        kernel_init: Callable = _default_kernel_init,
        bias_init: Callable = _default_bias_init,
        rng_collection: str = "quantizer",
        rngs: nnx.Rngs,
    ) -> None:
        in_features = _positive_int("in_features", in_features)
        out_features = _positive_int("out_features", out_features)
        self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features), param_dtype))
        self.bias = nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype)) if use_bias else nnx.data(None)
        self.in_features = in_features
        self.out_features = out_features
        self.use_bias = use_bias
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self._init_quantizers(input_quantizer, kernel_quantizer, deterministic, rng_collection, rngs)

    def __call__(self, inputs: Any, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        """Apply the layer.

        Args:
          inputs: array ``(..., in_features)``.
          deterministic: overrides the attribute of the same name.
          rngs: an ``nnx.Rngs``, ``nnx.RngStream`` or key overriding the stored stream.

        Returns:
          The array ``(..., out_features)``.

        Raises:
          ValueError: if ``inputs`` does not end with ``in_features``.
        """
        inputs = jnp.asarray(inputs)
        if inputs.ndim < 1 or inputs.shape[-1] != self.in_features:
            raise ValueError(f"argument `inputs`: expected shape (..., {self.in_features}), got {inputs.shape}")
        return binary_dense(
            inputs,
            self.kernel[...],
            None if self.bias is None else self.bias[...],
            input_quantizer=self.input_quantizer,
            kernel_quantizer=self.kernel_quantizer,
            key=self._key(deterministic, rngs),
            dtype=self.dtype,
            precision=self.precision,
        )


class NNXBinaryConv(_NNXBinary):
    r"""Binary convolution (NNX), 1D / 2D / ND channels-last, mirroring ``flax.nnx.Conv``.

    ``kernel`` ``(*kernel_size, in_features / feature_group_count, out_features)`` and ``bias``
    ``(out_features,)`` are ``nnx.Param``; with both quantizers ``None`` it computes exactly what
    ``flax.nnx.Conv`` computes.

    Args:
      in_features: number of input channels.
      out_features: number of output channels (filters).
      kernel_size: window shape (an int means a 1D window).
      strides: an int or one int per spatial dimension.
      padding: as :class:`BinaryConv`.
      kernel_dilation: an int or one int per spatial dimension.
      feature_group_count: number of feature groups.
      use_bias: whether to add a bias.
      input_quantizer: quantizer of the inputs (name, callable or ``None``). It sees the whole
        batch: ``magnitude_aware_sign`` with its default axes averages its scale over the batch
        (see its docstring; ``functools.partial(magnitude_aware_sign, axis=-1)`` does not).
      kernel_quantizer: quantizer of the latent kernel (name, callable or ``None``).
      pad_values: constant the quantized input is padded with (``None``: 1.0 with an input
        quantizer, 0.0 without).
      deterministic: for stochastic quantizers (see :class:`NNXBinaryLinear`).
      dtype: computation dtype.
      param_dtype: dtype of the parameters.
      precision: ``jax.lax`` precision of the convolution.
      kernel_init: initializer of the latent kernel.
      bias_init: initializer of the bias.
      rng_collection: name of the PRNG stream of stochastic quantizers.
      rngs: the ``nnx.Rngs`` (``params`` stream for the initializers).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] | None = 1,
        *,
        padding: PaddingLike = "SAME",
        kernel_dilation: int | Sequence[int] | None = 1,
        feature_group_count: int = 1,
        use_bias: bool = True,
        input_quantizer: QuantizerLike = None,
        kernel_quantizer: QuantizerLike = None,
        pad_values: float | None = None,
        deterministic: bool = False,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        precision: Any = None,
        kernel_init: Callable = _default_kernel_init,
        bias_init: Callable = _default_bias_init,
        rng_collection: str = "quantizer",
        rngs: nnx.Rngs,
    ) -> None:
        in_features = _positive_int("in_features", in_features)
        out_features = _positive_int("out_features", out_features)
        kernel_size = _kernel_size(kernel_size)
        groups = _positive_int("feature_group_count", feature_group_count)
        if in_features % groups:
            raise ValueError(
                f"argument `feature_group_count`: expected a divisor of in_features={in_features}, got {groups}"
            )
        rank = len(kernel_size)
        # validate the static convolution arguments now (errors early, at construction)
        _int_tuple("strides", strides, rank)
        _int_tuple("kernel_dilation", kernel_dilation, rank)
        _canonical_padding(padding, rank)
        _pad_value(pad_values, input_quantizer)
        shape = kernel_size + (in_features // groups, out_features)
        self.kernel = nnx.Param(kernel_init(rngs.params(), shape, param_dtype))
        self.bias = nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype)) if use_bias else nnx.data(None)
        self.in_features = in_features
        self.out_features = out_features
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        self.kernel_dilation = kernel_dilation
        self.feature_group_count = groups
        self.use_bias = use_bias
        self.pad_values = pad_values
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self._init_quantizers(input_quantizer, kernel_quantizer, deterministic, rng_collection, rngs)

    def __call__(self, inputs: Any, *, deterministic: bool | None = None, rngs: Any = None) -> jax.Array:
        """Apply the layer.

        Args:
          inputs: array ``(*batch, *spatial, in_features)``.
          deterministic: overrides the attribute of the same name.
          rngs: an ``nnx.Rngs``, ``nnx.RngStream`` or key overriding the stored stream.

        Returns:
          The array ``(*batch, *out_spatial, out_features)``.

        Raises:
          ValueError: if ``inputs`` has the wrong number of axes or channels.
        """
        inputs = jnp.asarray(inputs)
        if inputs.ndim < len(self.kernel_size) + 1 or inputs.shape[-1] != self.in_features:
            raise ValueError(
                f"argument `inputs`: expected shape (*batch, {len(self.kernel_size)} spatial axes, "
                f"{self.in_features}), got {inputs.shape}"
            )
        return binary_conv(
            inputs,
            self.kernel[...],
            None if self.bias is None else self.bias[...],
            strides=self.strides,
            padding=self.padding,
            kernel_dilation=self.kernel_dilation,
            feature_group_count=self.feature_group_count,
            input_quantizer=self.input_quantizer,
            kernel_quantizer=self.kernel_quantizer,
            pad_values=self.pad_values,
            key=self._key(deterministic, rngs),
            dtype=self.dtype,
            precision=self.precision,
        )
