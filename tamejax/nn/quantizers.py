r"""Binary quantizers: ``sign`` as the argmax of a tiny MIP, with estimators of its derivative.

The sign of a real number is the solution of the smallest mixed-integer program there is,

$$\operatorname{sign}(x) = \operatorname*{argmax}_{s \in \{-1, +1\}} \; s \cdot x,$$

with the tie at ``x = 0`` broken towards ``+1`` (convention of the whole of ``tamejax.nn``,
of Larq and of Larq Compute Engine: ``sign(0) = +1``). Like every solution map of a MIP in a
linear cost, it is piecewise constant: its derivative is zero almost everywhere, so training a
binarized network by gradient needs an *estimator* of that derivative. Every known way of
doing it is one of the estimators of :mod:`tamejax.estimators`, here in closed form because
this MIP is solved by hand:

=========================  ==================================  =============================================
quantizer                  forward                             backward ``d/dx`` (the estimator)
=========================  ==================================  =============================================
``ste_sign``               ``sign(x)``                         ``1{|x| <= c}`` (clipped identity)
``approx_sign``            ``sign(x)``                         ``(2 - 2|x|) 1{|x| <= 1}`` (Bi-Real Net)
``swish_sign``             ``sign(x)``                         ``b (2 - b x tanh(b x / 2)) / (1 + cosh(b x))``
``gaussian_sign``          ``sign(x + sigma Z)``, Z ~ N(0, 1)  ``sqrt(2/pi) / sigma exp(-x^2 / (2 sigma^2))``
``gumbel_sign``            ``argmax_s s x + tau G_s``          ``(1 - tanh^2(x / tau)) / tau``
``magnitude_aware_sign``   ``alpha sign(x)``                   ``alpha 1{|x| <= c}`` (``alpha = mean |x|``)
``ste_heaviside``          ``1{x >= 0}`` (0/1 output)          ``1{|x| <= c}``
=========================  ==================================  =============================================

The Gaussian and Gumbel rows are the exact derivatives of the expected perturbed solutions
``E sign(x + sigma Z) = erf(x / (sigma sqrt 2))`` and ``E argmax_s (s x + tau G_s) = tanh(x / tau)``.

``ste_sign`` is the identity (straight-through) estimator of :func:`tamejax.estimators.identity`
restricted, as in Larq, to the region where the latent value can still change sign soon; the
perturbed quantizers are :func:`tamejax.estimators.perturbed` for this MIP (Berthet et al.
2020): their backward pass is the exact derivative of the expected solution under the noise,
which here is a known smooth function (``erf`` for Gaussian noise, ``tanh`` for Gumbel noise on
the two alternatives). Their forward pass is a *sample* of the perturbed solution when a PRNG
key is given (training) and the unperturbed solution ``sign(x)`` (noise at its mean and mode,
zero) without one (inference), so the network stays binary either way.

Every quantizer is a pure function usable under ``jax.jit``, ``jax.vmap`` and ``jax.grad``
(forward- and reverse-mode: they are ``jax.custom_jvp`` rules). :func:`get_quantizer` turns a
name (``"ste_sign"``, ...), a callable or ``None`` (identity, no quantization) into a callable;
the binary layers of :mod:`tamejax.nn.layers` accept the same three forms.

References:
  Courbariaux, M. et al. (2016). Binarized neural networks. NeurIPS (straight-through sign).
  Rastegari, M. et al. (2016). XNOR-Net. ECCV (magnitude-aware scaling).
  Liu, Z. et al. (2018). Bi-Real Net. ECCV (``approx_sign``).
  Darabi, S. et al. (2018). BNN+: improved binary network training. arXiv:1812.11800 (``swish_sign``).
  Berthet, Q. et al. (2020). Learning with differentiable perturbed optimizers. NeurIPS.
  Meng, X., Bachmann, R. & Khan, M. E. (2020). Training binary neural networks using the
  Bayesian learning rule. ICML (BayesBiNN: the Gumbel/logistic relaxation).
  Geiger, L. & Team Plumerai (2020). Larq: an open-source library for training binarized neural
  networks. JOSS (the quantizer semantics followed here).
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "QUANTIZERS",
    "Quantizer",
    "approx_sign",
    "gaussian_sign",
    "get_quantizer",
    "gumbel_sign",
    "is_stochastic",
    "magnitude_aware_sign",
    "sign",
    "ste_heaviside",
    "ste_sign",
    "swish_sign",
]

Quantizer = Callable[..., jax.Array]
"""A quantizer: ``f(x) -> array`` of ``x``'s shape (stochastic ones also accept ``key=``)."""


# ---------------------------------------------------------------------------- validation
def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"argument `{name}`: expected a positive finite number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"argument `{name}`: expected a positive finite number, got {value!r}")
    return value


def _clip(clip_value: Any) -> float | None:
    """``clip_value`` checked: a positive number (``inf`` allowed) or ``None`` (no clipping)."""
    if clip_value is None:
        return None
    if isinstance(clip_value, bool) or not isinstance(clip_value, numbers.Real) or math.isnan(clip_value):
        raise ValueError(f"argument `clip_value`: expected a positive number or None, got {clip_value!r}")
    if not clip_value > 0:
        raise ValueError(f"argument `clip_value`: expected a positive number or None, got {clip_value!r}")
    return float(clip_value)


def _floating(x: Any, name: str = "x") -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"argument `{name}`: expected a floating-point array, got dtype {x.dtype}")
    return x


# ---------------------------------------------------------------------------- the tiny MIP
def sign(x: Any) -> jax.Array:
    r"""The solution of the tiny MIP ``argmax_{s in {-1, +1}} s * x``, ties to ``+1`` (no gradient rule).

    $$\operatorname{sign}(x) = \begin{cases} -1 & x < 0 \\ +1 & \text{otherwise} \end{cases}$$
    Unlike ``jnp.sign``, ``sign(0) = +1`` so that the output is always binary (``-0.0`` counts as
    zero, and so do subnormal inputs where XLA flushes them to zero, as on CPU). ``NaN`` is not
    ``< 0`` and gives ``+1``, the same as :func:`tamejax.nn.bitpack.pack` (which sets the sign bit
    only for ``x < 0``). Its derivative is zero (``jnp.where`` of constants): use one of the
    quantizers to train through it.

    Args:
      x: a floating-point array.

    Returns:
      ``±1`` in ``x``'s dtype and shape.

    Raises:
      TypeError: if ``x`` is not a floating-point array.
    """
    x = _floating(x)
    return jnp.where(x < 0, -jnp.ones((), x.dtype), jnp.ones((), x.dtype))


def _heaviside(x: jax.Array) -> jax.Array:
    return jnp.where(x < 0, jnp.zeros((), x.dtype), jnp.ones((), x.dtype))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _estimated(x: jax.Array, noise: jax.Array, forward: Callable, derivative: Callable) -> jax.Array:
    """``forward(x + noise)`` with the custom derivative ``derivative(x) * dx`` (``noise`` gets none)."""
    return forward(x + noise)


@_estimated.defjvp
def _estimated_jvp(forward, derivative, primals, tangents):
    x, noise = primals
    dx, _ = tangents
    return forward(x + noise), derivative(x) * dx


def _no_noise(x: jax.Array) -> jax.Array:
    return jnp.zeros_like(x)


# ---------------------------------------------------------------------------- derivatives (closed forms)
def _ste_derivative(clip_value: float | None, x: jax.Array) -> jax.Array:
    if clip_value is None:
        return jnp.ones_like(x)
    return (jnp.abs(x) <= clip_value).astype(x.dtype)


def _approx_derivative(x: jax.Array) -> jax.Array:
    a = jnp.abs(x)
    return jnp.where(a <= 1, 2 - 2 * a, jnp.zeros((), x.dtype))


_SWISH_CUTOFF = 80.0  # beyond |beta x| = 80 the derivative is below 1e-32: return 0 (finite at +-inf)


def _swish_derivative(beta: float, x: jax.Array) -> jax.Array:
    bx = beta * x
    inside = jnp.abs(bx) <= _SWISH_CUTOFF
    bxc = jnp.clip(bx, -_SWISH_CUTOFF, _SWISH_CUTOFF)  # no inf / inf = NaN at x = +-inf
    value = beta * (2 - bxc * jnp.tanh(bxc / 2)) / (1 + jnp.cosh(bxc))
    return jnp.where(inside, value, jnp.zeros((), x.dtype))


def _gaussian_derivative(sigma: float, x: jax.Array) -> jax.Array:
    return math.sqrt(2 / math.pi) / sigma * jnp.exp(-(x * x) / (2 * sigma * sigma))


def _gumbel_derivative(tau: float, x: jax.Array) -> jax.Array:
    c = jnp.cosh(x / tau)  # (1 - tanh^2) / tau without cancellation in the tails
    return 1 / (tau * c * c)


# ---------------------------------------------------------------------------- quantizers
def ste_sign(x: Any, clip_value: float | None = 1.0) -> jax.Array:
    r"""Straight-through sign (Courbariaux et al. 2016; Larq ``ste_sign``).

    Forward ``sign(x)`` (``sign(0) = +1``); backward the identity, clipped:
    $$\frac{\partial q}{\partial x} \approx \mathbb{1}\{|x| \le c\},$$
    the identity estimator of the tiny MIP ``argmax_s s x`` (cf. ``tamejax.estimators.identity``),
    zeroed where the latent value is already far beyond the decision boundary. The boundary is
    *inclusive*, as in Larq: at ``|x| = c`` the gradient is 1, just beyond it is 0. With
    ``clip_value=None`` the gradient is 1 everywhere (the plain straight-through estimator).

    Args:
      x: a floating-point array.
      clip_value: the threshold ``c > 0`` (``float('inf')`` or ``None``: no clipping).

    Returns:
      ``±1`` in ``x``'s dtype and shape.

    Raises:
      ValueError: if ``clip_value`` is not a positive number or ``None``.
      TypeError: if ``x`` is not a floating-point array.
    """
    x = _floating(x)
    c = _clip(clip_value)
    return _estimated(x, _no_noise(x), sign, functools.partial(_ste_derivative, c))


def approx_sign(x: Any) -> jax.Array:
    r"""Sign with the piecewise-polynomial ("ApproxSign") gradient of Bi-Real Net (Liu et al. 2018).

    Forward ``sign(x)``; backward the derivative of the piecewise quadratic
    ``F(x) = -1 (x < -1); 2x + x^2 (-1 <= x < 0); 2x - x^2 (0 <= x < 1); 1 (x >= 1)``:
    $$\frac{\partial q}{\partial x} \approx (2 - 2|x|)\, \mathbb{1}\{|x| \le 1\},$$
    which is continuous (zero at ``|x| = 1``, so the boundary convention does not matter).

    Args:
      x: a floating-point array.

    Returns:
      ``±1`` in ``x``'s dtype and shape.

    Raises:
      TypeError: if ``x`` is not a floating-point array.
    """
    x = _floating(x)
    return _estimated(x, _no_noise(x), sign, _approx_derivative)


def swish_sign(x: Any, beta: float = 5.0) -> jax.Array:
    r"""Sign with the SignSwish gradient (Darabi et al. 2018, BNN+; Larq ``swish_sign``).

    Forward ``sign(x)``; backward the derivative of the SignSwish
    ``SS_beta(x) = 2 sigma(beta x) (1 + beta x (1 - sigma(beta x))) - 1`` (``sigma`` the logistic
    function), which is Larq's closed form
    $$\frac{\partial q}{\partial x} \approx
    \frac{\beta\,\big(2 - \beta x \tanh(\beta x / 2)\big)}{1 + \cosh(\beta x)}.$$
    It equals ``beta`` at 0, vanishes at ``|x| ~ 2.4 / beta`` and is slightly negative beyond
    (``SS_beta`` overshoots ``±1``). It decays like ``|beta x| e^{-|beta x|}``: for
    ``|beta x| > 80`` (below ``1e-32``) it is returned as exactly 0, so it stays finite at ``±inf``.

    Args:
      x: a floating-point array.
      beta: the sharpness ``beta > 0`` (Larq's default 5).

    Returns:
      ``±1`` in ``x``'s dtype and shape.

    Raises:
      ValueError: if ``beta`` is not a positive finite number.
      TypeError: if ``x`` is not a floating-point array.
    """
    x = _floating(x)
    beta = _positive("beta", beta)
    return _estimated(x, _no_noise(x), sign, functools.partial(_swish_derivative, beta))


def gaussian_sign(x: Any, sigma: float = 1.0, *, key: jax.Array | None = None) -> jax.Array:
    r"""Gaussian-perturbed sign: the perturbed-optimizer estimator of the tiny MIP, in closed form.

    With ``Z ~ N(0, 1)`` the expected perturbed solution is
    $$\mathbb{E}\,\operatorname{sign}(x + \sigma Z) = 2\Phi(x/\sigma) - 1
    = \operatorname{erf}\!\Big(\frac{x}{\sigma\sqrt 2}\Big),$$
    (the Gaussian variational view of binary weights), and the backward pass is its exact derivative
    $$\frac{\partial q}{\partial x} \approx \sqrt{\frac{2}{\pi}}\,\frac{1}{\sigma}\, e^{-x^2 / (2\sigma^2)}.$$
    Forward: with ``key`` a sample ``sign(x + sigma Z)`` (independent noise per entry, training);
    without it the deterministic ``sign(x)`` (the noise at its mean; inference). The estimator is
    the closed-form case of ``tamejax.estimators.perturbed`` with Gaussian noise (Berthet et al. 2020).

    Args:
      x: a floating-point array.
      sigma: the noise scale ``sigma > 0``.
      key: a ``jax.random`` key for the sampled forward pass, or ``None`` for ``sign(x)``.

    Returns:
      ``±1`` in ``x``'s dtype and shape.

    Raises:
      ValueError: if ``sigma`` is not a positive finite number.
      TypeError: if ``x`` is not a floating-point array.
    """
    x = _floating(x)
    sigma = _positive("sigma", sigma)
    noise = _no_noise(x) if key is None else sigma * jax.random.normal(key, x.shape, x.dtype)
    return _estimated(x, jax.lax.stop_gradient(noise), sign, functools.partial(_gaussian_derivative, sigma))


def gumbel_sign(x: Any, tau: float = 1.0, *, key: jax.Array | None = None) -> jax.Array:
    r"""Gumbel-perturbed sign (Gumbel-max trick on the two alternatives; the BayesBiNN relaxation).

    Perturb the score of each alternative ``s in {-1, +1}`` of the tiny MIP with an independent
    standard Gumbel variable ``G_s`` of scale ``tau`` (the temperature):
    $$q = \operatorname*{argmax}_{s \in \{-1, +1\}} \; s\,x + \tau\, G_s
    = \operatorname{sign}\Big(x + \frac{\tau}{2} L\Big),
    \qquad L = G_{+1} - G_{-1} \sim \mathrm{Logistic}(0, 1),$$
    so ``P(q = +1) = sigma(2x / tau)`` (the Gumbel-max trick: a softmax over the scores
    ``(x, -x) / tau``) and the expected perturbed solution is
    $$\mathbb{E}\,q = 2\,\sigma(2x/\tau) - 1 = \tanh(x/\tau).$$
    The backward pass is its exact derivative
    $$\frac{\partial q}{\partial x} \approx \frac{1 - \tanh^2(x/\tau)}{\tau}.$$
    With ``tau = 1``, ``E q = tanh(x)`` is the mean of BayesBiNN's posterior over a binary weight
    with natural parameter ``x`` (Meng et al. 2020, whose relaxed sample is
    ``tanh((x + L/2) / tau')``, the same logistic noise). Forward: with ``key`` a sample
    (training); without it ``sign(x)`` (inference).

    Args:
      x: a floating-point array.
      tau: the temperature (Gumbel scale) ``tau > 0``.
      key: a ``jax.random`` key for the sampled forward pass, or ``None`` for ``sign(x)``.

    Returns:
      ``±1`` in ``x``'s dtype and shape.

    Raises:
      ValueError: if ``tau`` is not a positive finite number.
      TypeError: if ``x`` is not a floating-point array.
    """
    x = _floating(x)
    tau = _positive("tau", tau)
    noise = _no_noise(x) if key is None else (tau / 2) * jax.random.logistic(key, x.shape, x.dtype)
    return _estimated(x, jax.lax.stop_gradient(noise), sign, functools.partial(_gumbel_derivative, tau))


def magnitude_aware_sign(x: Any, clip_value: float | None = 1.0, axis: int | Sequence[int] | None = None) -> jax.Array:
    r"""Magnitude-aware sign (XNOR-Net, Rastegari et al. 2016; Larq ``MagnitudeAwareSign``).

    $$q = \alpha\, \operatorname{sign}(x), \qquad \alpha = \operatorname{mean}_{\text{axis}} |x|,$$
    the scale that minimizes ``|x - alpha s|^2`` for ``s = sign(x)``. For a kernel of layout
    ``(..., in, out)`` the default axes (all but the last) give one scale per output channel.
    A 1-D ``x`` gets one scalar scale (the mean of ``|x|`` over the whole vector). Used as a
    layer's ``input_quantizer`` on activations ``(batch, ..., features)``, the default axes
    include the batch axis: ``alpha`` is then one scale per feature, averaged over the whole
    batch (and over the spatial positions for a convolution), so an example's output depends on
    the other examples of its batch. Pass ``functools.partial(magnitude_aware_sign, axis=-1)``
    for one scale per example and position (XNOR-Net's per-position activation scale ``K``
    averages over channels, which is this with ``axis=-1``).
    As in Larq (and Bi-Real Net), ``alpha`` is treated as a constant in the backward pass, which
    is then ``alpha 1{|x| <= c}`` (the clipped straight-through estimator, scaled).

    Args:
      x: a floating-point array with at least one dimension.
      clip_value: the straight-through clip ``c > 0``, or ``None`` (no clipping).
      axis: the reduction axes of ``alpha``; default all axes but the last.

    Returns:
      ``alpha * sign(x)``, in ``x``'s dtype and shape.

    Raises:
      ValueError: if ``x`` is 0-dimensional or ``clip_value`` / ``axis`` is invalid.
      TypeError: if ``x`` is not a floating-point array.
    """
    x = _floating(x)
    if x.ndim == 0:
        raise ValueError("argument `x`: expected an array with at least 1 dimension, got a 0-d array")
    if axis is None:
        axes = tuple(range(x.ndim - 1)) if x.ndim > 1 else (0,)
    else:
        raw = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
        if not all(isinstance(a, numbers.Integral) and -x.ndim <= a < x.ndim for a in raw):
            raise ValueError(f"argument `axis`: expected axes of an array with {x.ndim} dimensions, got {axis!r}")
        axes = tuple(int(a) % x.ndim for a in raw)
    alpha = jax.lax.stop_gradient(jnp.mean(jnp.abs(x), axis=axes, keepdims=True))
    return alpha * ste_sign(x, clip_value)


def ste_heaviside(x: Any, clip_value: float | None = 1.0) -> jax.Array:
    r"""Straight-through Heaviside step: 0/1 output (Larq ``ste_heaviside``).

    Forward the solution of ``argmax_{b in {0, 1}} b x`` with ties to 1,
    $$H(x) = \mathbb{1}\{x \ge 0\} = \tfrac12(\operatorname{sign}(x) + 1),$$
    backward ``1{|x| <= c}`` (inclusive boundary) as in Larq. Note: ``H(0) = 1`` here, consistent
    with ``sign(0) = +1`` across ``tamejax.nn``; Larq's ``heaviside`` gives ``H(0) = 0``.

    Args:
      x: a floating-point array.
      clip_value: the threshold ``c > 0``, or ``None`` (no clipping).

    Returns:
      ``0``/``1`` in ``x``'s dtype and shape.

    Raises:
      ValueError: if ``clip_value`` is not a positive number or ``None``.
      TypeError: if ``x`` is not a floating-point array.
    """
    x = _floating(x)
    c = _clip(clip_value)
    return _estimated(x, _no_noise(x), _heaviside, functools.partial(_ste_derivative, c))


# ---------------------------------------------------------------------------- registry
QUANTIZERS: dict[str, Quantizer] = {
    "ste_sign": ste_sign,
    "approx_sign": approx_sign,
    "swish_sign": swish_sign,
    "gaussian_sign": gaussian_sign,
    "gumbel_sign": gumbel_sign,
    "magnitude_aware_sign": magnitude_aware_sign,
    "ste_heaviside": ste_heaviside,
}
"""The quantizers by name (the names :func:`get_quantizer` and the layers accept)."""


def _identity_quantizer(x: Any) -> jax.Array:
    return jnp.asarray(x)


def get_quantizer(quantizer: str | Quantizer | None) -> Quantizer:
    """A quantizer from its name, a callable, or ``None`` (the identity: no quantization).

    Args:
      quantizer: one of the names of ``QUANTIZERS`` (``"ste_sign"``, ``"approx_sign"``,
        ``"swish_sign"``, ``"gaussian_sign"``, ``"gumbel_sign"``, ``"magnitude_aware_sign"``,
        ``"ste_heaviside"``) with its default parameters, any callable ``x -> array`` (e.g.
        ``functools.partial(ste_sign, clip_value=0.5)``), or ``None``.

    Returns:
      The callable.

    Raises:
      ValueError: if the name is unknown.
      TypeError: if ``quantizer`` is neither a string, a callable nor ``None``.
    """
    if quantizer is None:
        return _identity_quantizer
    if isinstance(quantizer, str):
        if quantizer not in QUANTIZERS:
            raise ValueError(f"argument `quantizer`: expected one of {sorted(QUANTIZERS)}, got {quantizer!r}")
        return QUANTIZERS[quantizer]
    if callable(quantizer):
        return quantizer
    raise TypeError(
        f"argument `quantizer`: expected a quantizer name, a callable or None, got {type(quantizer).__name__}"
    )


def is_stochastic(quantizer: str | Quantizer | None) -> bool:
    """Whether a quantizer draws noise, i.e. accepts a ``key`` keyword argument (``gaussian_sign``,
    ``gumbel_sign``, or any callable with a ``key`` parameter).

    Args:
      quantizer: a quantizer name, callable or ``None``.

    Returns:
      ``True`` if the layers must pass it a PRNG key during training.

    Raises:
      ValueError: if the name is unknown.
      TypeError: if ``quantizer`` is neither a string, a callable nor ``None``.
    """
    fn = get_quantizer(quantizer)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return "key" in params and params["key"].kind in (
        inspect.Parameter.KEYWORD_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )
