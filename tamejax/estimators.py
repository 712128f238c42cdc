"""Differentiable estimators of the solution map of a MIP, and decision-focused losses.

The solution map ``x*(theta) = argmin { theta . x : x in X }`` of a linear objective over a
fixed (integer) feasible set ``X`` is piecewise constant: its derivative is zero almost
everywhere and undefined elsewhere, so learning ``theta`` (from features, by a neural
network) needs either a smoothed map or a loss with an informative (sub)gradient. This module
gives the standard ones, each as a small pure function in the style of optax, each usable
under ``jax.jit``, ``jax.vmap`` and ``jax.grad``:

========================  ==============================================  ==========================
function                  forward                                         reference
========================  ==============================================  ==========================
``perturbed``             ``E[x*(theta + sigma Z)]`` (Monte Carlo)          Berthet et al. 2020
``fenchel_young_loss``    perturbed Fenchel-Young loss                    Berthet et al. 2020
``spo_plus_loss``         SPO+ surrogate of the regret                    Elmachtoub & Grigas 2022
``interpolation``         ``x*(theta)``, interpolated backward              Vlastelica et al. 2020
``identity``              ``x*(theta)``, (negative) identity backward       Sahoo et al. 2023
``imle``                  ``x*(theta + eps)``, sum-of-gamma noise, I-MLE    Niepert et al. 2021
``regret``                normalized regret (metric, no gradient)         PyEPO (Tang & Khalil)
========================  ==============================================  ==========================

Every estimator takes an ``Oracle`` (``tamejax.Oracle``: the feasible set, the sense, the
backend) or a ``CachedOracle`` (the same, answering a fraction of the calls from a pool of known
solutions), and costs ``theta`` of shape ``(..., n)``. All the solves of one call (all
Monte-Carlo samples of all instances of a batch, the extra solve of SPO+ and its labels)
reach the host in *one* batched callback of the bridge and are spread over the worker pool.

Sign conventions: for ``sense="min"`` the estimators follow the papers as written for
minimization; for ``sense="max"`` the cost is negated inside, exactly as PyEPO does, so the
same hyper-parameters mean the same thing. A solve that fails (infeasible ``X``, a time limit
without incumbent) yields ``NaN`` rows, never a made-up solution; the oracle's ``solve`` gives
the statuses.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp

from tamejax.oracle import Oracle
from tamejax.solve import Solution

__all__ = [
    "CachedOracle",
    "SolutionPool",
    "fenchel_young_loss",
    "identity",
    "imle",
    "interpolation",
    "perturbed",
    "regret",
    "spo_plus_loss",
    "sum_of_gamma",
]

_NOISES = ("gaussian", "gumbel")
_EULER_GAMMA = 0.5772156649015329


# ---------------------------------------------------------------------------- validation
def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool | str):
        raise ValueError(f"argument `{name}`: expected a positive finite number, got {value!r}")
    if not isinstance(value, numbers.Real):
        try:
            value = float(value)  # concrete 0-d arrays
        except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
            raise ValueError(f"argument `{name}`: expected a positive finite number, got {value!r}") from None
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"argument `{name}`: expected a positive finite number, got {value!r}")
    return value


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"argument `{name}`: expected an integer >= 1, got {value!r}")
    return int(value)


def _noise_name(noise: Any) -> str:
    if noise not in _NOISES:
        raise ValueError(f"argument `noise`: expected one of {_NOISES}, got {noise!r}")
    return noise


def _oracle(oracle: Any) -> Oracle | CachedOracle:
    if not isinstance(oracle, Oracle | CachedOracle):
        raise ValueError(f"argument `oracle`: expected a tamejax.Oracle or CachedOracle, got {type(oracle).__name__}")
    return oracle


def _like(oracle: Any, name: str, value: Any, theta: jax.Array) -> jax.Array:
    """``value`` as an array of ``theta``'s shape and dtype, or a ValueError naming it."""
    value = jnp.asarray(value)
    if value.shape != theta.shape:
        raise ValueError(f"argument `{name}`: expected shape {theta.shape} (that of `theta`), got {value.shape}")
    return value.astype(theta.dtype)


def _zeros(tree: Any) -> Any:
    return jax.tree.map(jnp.zeros_like, tree)


def _solve_x(oracle: Any, theta: jax.Array) -> jax.Array:
    """``x*(theta)`` without gradient, in ``theta``'s dtype (``NaN`` rows on failure)."""
    return jax.lax.stop_gradient(oracle.solve(jax.lax.stop_gradient(theta)).x.astype(theta.dtype))


def _solve_samples(oracle: Any, theta_s: jax.Array) -> jax.Array:
    """``_solve_x`` of sampled costs ``(..., S, n)``: the sample axis is moved in front for the solve, so
    that the batch axes ``...`` still line up with those of a batched ``oracle.problem``."""
    return jnp.moveaxis(_solve_x(oracle, jnp.moveaxis(theta_s, -2, 0)), 0, -2)


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.sum(a * b, axis=-1)


# ---------------------------------------------------------------------------- noise
def _sample(key: jax.Array, noise: str, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    if noise == "gaussian":
        return jax.random.normal(key, shape, dtype)
    return jax.random.gumbel(key, shape, dtype)


def _score(noise: str, z: jax.Array) -> jax.Array:
    """``grad nu(z)`` for the noise density ``mu(z) ~ exp(-nu(z))`` (Berthet et al. 2020, Prop. 3.1)."""
    if noise == "gaussian":
        return z
    return 1.0 - jnp.exp(-z)  # standard Gumbel: nu(z) = z + exp(-z)


def _log_shift(noise: str, sigma: float) -> float:
    """``kappa`` in the multiplicative factor ``exp(sigma Z - kappa)``: ``E[factor] = 1`` for Gaussian
    ``Z`` (``sigma^2 / 2``); for Gumbel ``Z``, its mean ``sigma * gamma`` is removed (log-mean zero)."""
    return 0.5 * sigma * sigma if noise == "gaussian" else sigma * _EULER_GAMMA


def _perturb(theta: jax.Array, z: jax.Array, sigma: float, multiplicative: bool, noise: str) -> tuple[jax.Array, ...]:
    """Perturbed costs ``(..., S, n)`` and the multiplicative factors (``1`` if additive)."""
    t = theta[..., None, :]
    if multiplicative:
        factor = jnp.exp(sigma * z - _log_shift(noise, sigma))
        return t * factor, factor
    return t + sigma * z, jnp.ones_like(z)


# ---------------------------------------------------------------------------- perturbed
@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def _perturbed(oracle, theta, z, sigma, multiplicative, noise, variance_reduction):
    return _perturbed_fwd(oracle, theta, z, sigma, multiplicative, noise, variance_reduction)[0]


def _perturbed_fwd(oracle, theta, z, sigma, multiplicative, noise, variance_reduction):
    theta_s, _ = _perturb(theta, z, sigma, multiplicative, noise)
    xs = _solve_samples(oracle, theta_s)
    return jnp.mean(xs, axis=-2), (oracle, theta, z, xs)


def _perturbed_bwd(sigma, multiplicative, noise, variance_reduction, res, g):
    oracle, theta, z, xs = res
    s = xs.shape[-2]
    # d/dtheta E[f(theta + sigma Z)] = E[f(theta + sigma Z) score(Z)^T] / sigma for any f, argmin or
    # argmax alike (Berthet et al. 2020, Prop. 3.1); the VJP weighs each sample by g . x_s.
    # A sample whose solve failed (NaN row: infeasible, error, time limit without incumbent)
    # contributes zero, not NaN: infeasible -> zero gradient, the status says why.
    ok = jnp.all(jnp.isfinite(xs), axis=-1)  # (..., S)
    reward = jnp.where(ok, _dot(jnp.where(ok[..., None], xs, 0.0), g[..., None, :]), 0.0)  # (..., S)
    if variance_reduction and s > 1:  # leave-one-out baseline: unbiased since E[score(Z)] = 0
        reward = (reward - jnp.mean(reward, axis=-1, keepdims=True)) * (s / (s - 1))
        reward = jnp.where(ok, reward, 0.0)
    grad = jnp.einsum("...s,...sn->...n", reward, _score(noise, z)) / (s * sigma)
    if multiplicative:  # additive smoothing in u = log|theta|; d u / d theta = 1 / theta
        grad = jnp.where(theta == 0, 0.0, grad / jnp.where(theta == 0, 1.0, theta))
    return _zeros(oracle), grad.astype(theta.dtype), jnp.zeros_like(z)


_perturbed.defvjp(_perturbed_fwd, _perturbed_bwd)


def perturbed(
    oracle: Oracle | CachedOracle,
    theta: Any,
    key: jax.Array,
    *,
    num_samples: int = 1,
    sigma: float = 1.0,
    noise: str = "gaussian",
    multiplicative: bool = False,
    variance_reduction: bool = True,
) -> jax.Array:
    """Perturbed optimizer: the expected solution under random perturbations of the cost.

    Additive (Berthet et al. 2020):
    $$\\bar x_\\sigma(\\theta) = \\mathbb{E}_Z\\big[x^*(\\theta + \\sigma Z)\\big],\\qquad
    J_\\theta \\bar x_\\sigma = \\tfrac{1}{\\sigma}\\,\\mathbb{E}_Z\\big[x^*(\\theta + \\sigma Z)\\,
    \\nabla\\nu(Z)^\\top\\big],$$
    with ``Z`` of density ``mu(z) ~ exp(-nu(z))``: standard Gaussian (``grad nu(z) = z``) or standard
    Gumbel (``grad nu(z) = 1 - exp(-z)``). Both expectations are estimated with the same
    ``num_samples`` draws, so the returned Jacobian is that of the Monte-Carlo average's
    expectation (unbiased), not of the sample.

    Multiplicative (Dalle et al. 2022, "Learning with combinatorial optimization layers: a
    probabilistic approach"): ``theta_s = theta * exp(sigma Z - kappa)`` componentwise, with
    ``kappa = sigma^2 / 2`` for Gaussian ``Z`` (factor of mean 1) and ``kappa = sigma * gamma``
    (Euler's constant) for Gumbel ``Z``; it keeps the sign of every cost (non-negative costs stay
    non-negative, as shortest paths need). The same formula applies in ``log|theta|``, whence
    ``J_theta = J_log|theta| / theta``; the gradient is ``0`` where ``theta == 0`` (no perturbation
    there).

    Variance reduction (``variance_reduction=True``, needs ``num_samples > 1``): each sample's
    weight ``g . x_s`` is centred by the mean of the *other* samples (a leave-one-out baseline,
    which keeps the estimator unbiased since ``E[grad nu(Z)] = 0``).

    Args:
      oracle: the ``Oracle`` (or ``CachedOracle``).
      theta: costs, shape ``(..., n)``.
      key: a ``jax.random`` key; split it between steps (the same key gives the same noise, and
        under ``vmap`` an unbatched key gives every instance the same noise: batch ``theta``
        or the keys).
      num_samples: Monte-Carlo samples per instance (``>= 1``); all ``(..., num_samples)``
        problems are solved in one batched call.
      sigma: noise scale (``> 0``), a Python number (static).
      noise: ``"gaussian"`` or ``"gumbel"``.
      multiplicative: multiplicative instead of additive perturbation.
      variance_reduction: use the leave-one-out baseline in the backward pass.

    Returns:
      The averaged solution, shape ``(..., n)``, differentiable in ``theta``.
    """
    oracle = _oracle(oracle)
    num_samples = _positive_int("num_samples", num_samples)
    sigma = _positive("sigma", sigma)
    noise = _noise_name(noise)
    theta = oracle.check_theta(theta)
    z = _sample(key, noise, theta.shape[:-1] + (num_samples, theta.shape[-1]), theta.dtype)
    return _perturbed(oracle, theta, z, sigma, bool(multiplicative), noise, bool(variance_reduction))


# ---------------------------------------------------------------------------- Fenchel-Young
def fenchel_young_loss(
    oracle: Oracle | CachedOracle,
    theta: Any,
    x_true: Any,
    key: jax.Array,
    *,
    num_samples: int = 1,
    sigma: float = 1.0,
    noise: str = "gaussian",
    multiplicative: bool = False,
) -> jax.Array:
    """Perturbed Fenchel-Young loss (Berthet et al. 2020, "Learning with differentiable perturbed
    optimizers", NeurIPS).

    With ``F(theta) = E_Z[ max_{x in X} (theta + sigma Z) . x ]`` (``sense="max"``), the loss is
    $$\\ell(\\theta; y) = F(\\theta) - \\theta^\\top y \\;(+\\,\\Omega(y)),\\qquad
    \\nabla_\\theta \\ell = \\bar x_\\sigma(\\theta) - y,$$
    and for ``sense="min"`` (``F`` with ``min``) ``l = theta . y - F(theta)``, gradient
    ``y - x_bar(theta)``. The constant ``Omega(y)`` (the conjugate of ``F`` at ``y``, independent
    of ``theta``) cannot be computed and is left out, as in PyEPO: the value returned is the loss
    up to that constant and can be negative; the gradient is exact in expectation. ``F`` and
    ``x_bar`` are Monte-Carlo estimates over ``num_samples`` draws. With ``multiplicative=True``
    the perturbation is that of ``perturbed`` and the gradient ``E[factor * x*(theta_s)] - y``.

    Args:
      oracle: the ``Oracle``.
      theta: predicted costs, shape ``(..., n)``.
      x_true: target solutions, same shape (typically ``oracle(c_true)``).
      key: a ``jax.random`` key, as in ``perturbed``.
      num_samples: Monte-Carlo samples per instance, as in ``perturbed``.
      sigma: noise scale, as in ``perturbed``.
      noise: ``"gaussian"`` or ``"gumbel"``, as in ``perturbed``.
      multiplicative: multiplicative perturbation, as in ``perturbed``.

    Returns:
      The loss per instance, shape ``(...)``; gradients for ``theta`` (and ``x_true``).
    """
    oracle = _oracle(oracle)
    num_samples = _positive_int("num_samples", num_samples)
    sigma = _positive("sigma", sigma)
    noise = _noise_name(noise)
    theta = oracle.check_theta(theta)
    y = _like(oracle, "x_true", x_true, theta)
    z = _sample(key, noise, theta.shape[:-1] + (num_samples, theta.shape[-1]), theta.dtype)
    theta_s, _ = _perturb(theta, z, sigma, bool(multiplicative), noise)
    xs = _solve_samples(oracle, theta_s)  # constants: Danskin's theorem makes plain autodiff exact
    f = jnp.mean(_dot(theta_s, xs), axis=-1)  # F(theta), Monte Carlo
    return oracle.sign * (_dot(theta, y) - f)


# ---------------------------------------------------------------------------- SPO+
def spo_plus_loss(oracle: Oracle | CachedOracle, theta: Any, c_true: Any, x_true: Any = None) -> jax.Array:
    """SPO+ loss (Elmachtoub & Grigas 2022, "Smart 'Predict, then Optimize'", Management Science).

    For ``sense="min"``, with ``x*`` optimal for the true cost ``c`` and ``z* = c . x*``:
    $$\\ell_{SPO+}(\\theta, c) = \\max_{x \\in X}\\,(c - 2\\theta)^\\top x + 2\\theta^\\top x^* - z^*,
    \\qquad 2\\,(x^* - \\tilde x) \\in \\partial_\\theta \\ell,\\quad
    \\tilde x = x^*(2\\theta - c).$$
    It is convex in ``theta``, non-negative, and an upper bound of the SPO regret
    ``c . x*(theta) - z*``. For ``sense="max"`` the problem is the minimization of ``-c``
    (``l = max_x (2 theta - c) . x - 2 theta . x* + z*``, subgradient ``2 (x~ - x*)``).
    The gradient reported for ``c_true`` is Danskin's ``x~ - x*`` (min), and for ``x_true``
    the partial derivative ``2 theta - c`` (min); negated for ``"max"``.

    Args:
      oracle: the ``Oracle``.
      theta: predicted costs, shape ``(..., n)``.
      c_true: true costs, same shape.
      x_true: a true optimal solution for ``c_true``, same shape; ``None`` solves for it (in the
        same batched call as ``x~``).

    Returns:
      The loss per instance, shape ``(...)``.
    """
    oracle = _oracle(oracle)
    theta = oracle.check_theta(theta)
    c = _like(oracle, "c_true", c_true, theta)
    q = 2.0 * theta - c
    if x_true is None:
        x_tilde, x_true = _solve_x(oracle, jnp.stack([q, c]))
    else:
        x_true = _like(oracle, "x_true", x_true, theta)
        x_tilde = _solve_x(oracle, q)
    # x~ is a constant here: by Danskin's theorem autodiff of this expression gives the subgradient.
    return oracle.sign * (_dot(q, x_true) - _dot(q, x_tilde))


# ---------------------------------------------------------------------------- interpolation (DBB)
@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _interpolation(oracle, theta, lam):
    return _solve_x(oracle, theta)


def _interpolation_fwd(oracle, theta, lam):
    x = _solve_x(oracle, theta)
    return x, (oracle, theta, x)


def _interpolation_bwd(lam, res, g):
    oracle, theta, x = res
    # min: theta' = theta + lam g, grad = -(x*(theta) - x*(theta')) / lam;  max: theta' = theta - lam g.
    sgn = oracle.sign
    x_lam = _solve_x(oracle, theta + sgn * lam * g.astype(theta.dtype))
    return _zeros(oracle), (sgn * (x_lam - x) / lam).astype(theta.dtype)


_interpolation.defvjp(_interpolation_fwd, _interpolation_bwd)


def interpolation(oracle: Oracle | CachedOracle, theta: Any, *, lam: float = 10.0) -> jax.Array:
    """Differentiable black-box solver by interpolation (Vlastelica et al. 2020, "Differentiation
    of blackbox combinatorial solvers", ICLR).

    Forward: ``x*(theta)``. Backward, for the downstream gradient ``g = dL/dx`` (``sense="min"``):
    $$\\theta' = \\theta + \\lambda g,\\qquad \\nabla_\\theta f_\\lambda = -\\tfrac{1}{\\lambda}
    \\big(x^*(\\theta) - x^*(\\theta')\\big),$$
    the exact gradient of a piecewise-affine interpolation ``f_lambda`` of the piecewise-constant
    ``L(x*(theta))``; ``lam`` trades faithfulness (small) against informativeness (large).
    For ``sense="max"``, ``theta' = theta - lam g`` and the sign flips (PyEPO's convention). One
    extra batched solve per backward pass.

    Args:
      oracle: the ``Oracle``.
      theta: costs, shape ``(..., n)``.
      lam: interpolation strength ``lambda > 0`` (static; 10 to 20 is typical).

    Returns:
      ``x*(theta)``, shape ``(..., n)``.
    """
    oracle = _oracle(oracle)
    lam = _positive("lam", lam)
    theta = oracle.check_theta(theta)
    return _interpolation(oracle, theta, lam)


# ---------------------------------------------------------------------------- identity
@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _identity(oracle, theta, scale):
    return _solve_x(oracle, theta)


def _identity_fwd(oracle, theta, scale):
    return _solve_x(oracle, theta), (oracle, theta)


def _identity_bwd(scale, res, g):
    oracle, theta = res
    return _zeros(oracle), (scale * g).astype(theta.dtype)


_identity.defvjp(_identity_fwd, _identity_bwd)


def identity(oracle: Oracle | CachedOracle, theta: Any, *, negative: bool | None = None) -> jax.Array:
    """Straight-through solver: ``x*(theta)`` forward, a signed identity backward (Sahoo et al.
    2023, "Backpropagation through combinatorial algorithms: identity with projection works",
    ICLR).

    $$\\frac{\\partial x^*}{\\partial \\theta} \\approx -I \\quad (\\text{sense}=\\text{"min"}),
    \\qquad +I \\quad (\\text{sense}=\\text{"max"}),$$
    the sign in which the solution moves when a cost grows. No extra solve, no hyper-parameter.

    Args:
      oracle: the ``Oracle``.
      theta: costs, shape ``(..., n)``.
      negative: force ``-I`` (``True``) or ``+I`` (``False``); default by the oracle's sense.

    Returns:
      ``x*(theta)``, shape ``(..., n)``.
    """
    oracle = _oracle(oracle)
    theta = oracle.check_theta(theta)
    if negative is None:
        negative = oracle.sense == "min"
    elif not isinstance(negative, bool):
        raise ValueError(f"argument `negative`: expected True, False or None, got {negative!r}")
    return _identity(oracle, theta, -1.0 if negative else 1.0)


# ---------------------------------------------------------------------------- I-MLE
def sum_of_gamma(
    key: jax.Array, shape: tuple[int, ...], *, kappa: float = 5.0, num_terms: int = 10, dtype: Any = None
) -> jax.Array:
    """Sum-of-Gamma noise of Niepert et al. (2021), with temperature 1:
    $$\\epsilon = \\frac{1}{\\kappa}\\Big(\\sum_{i=1}^{s} \\mathrm{Gamma}\\big(\\tfrac{1}{\\kappa},
    \\tfrac{\\kappa}{i}\\big) - \\log s\\Big),$$
    (shape ``1/kappa``, scale ``kappa/i``, ``s = num_terms``): as ``s`` grows, the sum of ``kappa``
    such variables tends to a Gumbel variable, so the perturbed MAP of a ``kappa``-subset problem
    samples approximately from its exponential family.
    """
    kappa = _positive("kappa", kappa)
    num_terms = _positive_int("num_terms", num_terms)
    dtype = dtype or jnp.result_type(float)
    scale = (kappa / jnp.arange(1, num_terms + 1, dtype=dtype)).reshape((num_terms,) + (1,) * len(shape))
    total = jnp.sum(scale * jax.random.gamma(key, 1.0 / kappa, (num_terms, *shape), dtype), axis=0)
    return (total - math.log(num_terms)) / kappa


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _imle(oracle, theta, eps, lam, two_sided):
    return jnp.mean(_solve_samples(oracle, theta[..., None, :] + eps), axis=-2)


def _imle_fwd(oracle, theta, eps, lam, two_sided):
    theta_s = theta[..., None, :] + eps
    xs = _solve_samples(oracle, theta_s)
    return jnp.mean(xs, axis=-2), (oracle, theta_s, xs, eps)


def _imle_bwd(lam, two_sided, res, g):
    oracle, theta_s, xs, eps = res
    d = lam * g[..., None, :].astype(theta_s.dtype)
    s = theta_s.shape[-2]

    def finite(diff: jax.Array) -> jax.Array:  # a failed solve (NaN row) contributes zero, not NaN
        return jnp.where(jnp.all(jnp.isfinite(diff), axis=-1, keepdims=True), diff, 0.0)

    if two_sided:  # central difference: one solve of both sides
        both = _solve_samples(oracle, jnp.concatenate([theta_s + d, theta_s - d], axis=-2))
        grad = jnp.mean(finite(both[..., :s, :] - both[..., s:, :]), axis=-2) / (2.0 * lam)
    else:  # target distribution theta' = theta - lam g (max), theta + lam g (min), same noise
        sgn = oracle.sign
        grad = sgn * jnp.mean(finite(_solve_samples(oracle, theta_s + sgn * d) - xs), axis=-2) / lam
    return _zeros(oracle), grad.astype(theta_s.dtype), jnp.zeros_like(eps)


_imle.defvjp(_imle_fwd, _imle_bwd)


def imle(
    oracle: Oracle | CachedOracle,
    theta: Any,
    key: jax.Array,
    *,
    num_samples: int = 1,
    sigma: float = 1.0,
    lam: float = 10.0,
    kappa: float = 5.0,
    num_terms: int = 10,
    two_sided: bool = False,
) -> jax.Array:
    """Implicit maximum-likelihood estimation (Niepert, Minervini & Franceschi 2021, "Implicit MLE:
    backpropagating through discrete exponential family distributions", NeurIPS).

    Forward: perturb-and-MAP samples ``x_s = x*(theta + sigma eps_s)`` with ``eps_s`` sum-of-Gamma
    noise (``sum_of_gamma``; ``kappa`` is the ``k`` of a ``k``-subset problem), averaged over
    ``num_samples``. Backward, with the same noise, towards the target distribution
    ``theta' = theta + lam g`` (``sense="min"``; ``theta - lam g`` for ``"max"``):
    $$\\widehat{\\nabla}_\\theta L = \\tfrac{1}{\\lambda}\\,\\overline{\\big(x^*(\\theta' + \\sigma
    \\epsilon) - x^*(\\theta + \\sigma \\epsilon)\\big)}\\;(\\text{min; sign flipped for max}),$$
    or the central difference ``(x*(theta_s + lam g) - x*(theta_s - lam g)) / (2 lam)`` with
    ``two_sided=True``. (Niepert et al. leave out the ``1/lambda`` factor; dividing by it, as
    PyEPO does, makes ``lam`` a step size rather than a gradient scale.)

    Args:
      oracle: the ``Oracle``.
      theta: costs, shape ``(..., n)``.
      key: a ``jax.random`` key.
      num_samples: noise samples per instance (``>= 1``).
      sigma: noise temperature (``> 0``).
      lam: step ``lambda > 0`` towards the target distribution.
      kappa: sum-of-Gamma shape parameter (``> 0``).
      num_terms: terms of the sum-of-Gamma series (``>= 1``).
      two_sided: central instead of one-sided difference (twice the backward solves).

    Returns:
      The averaged perturbed solution, shape ``(..., n)``.
    """
    oracle = _oracle(oracle)
    num_samples = _positive_int("num_samples", num_samples)
    sigma = _positive("sigma", sigma)
    lam = _positive("lam", lam)
    theta = oracle.check_theta(theta)
    eps = sigma * sum_of_gamma(
        key, theta.shape[:-1] + (num_samples, theta.shape[-1]), kappa=kappa, num_terms=num_terms, dtype=theta.dtype
    )
    return _imle(oracle, theta, eps, lam, bool(two_sided))


# ---------------------------------------------------------------------------- regret
def regret(
    oracle: Oracle | CachedOracle,
    theta: Any,
    c_true: Any,
    z_true: Any = None,
    *,
    normalized: bool = True,
) -> jax.Array:
    """Regret of the decisions taken with predicted costs (a metric: no gradient).

    With ``x^ = x*(theta)`` and ``z* = opt_x c . x`` (the true optimum), instance ``i`` has regret
    ``c_i . x^_i - z*_i`` (``sense="min"``) or ``z*_i - c_i . x^_i`` (``"max"``), never negative.
    The normalized regret, as PyEPO defines it (Tang & Khalil, "PyEPO: a PyTorch-based end-to-end
    predict-then-optimize library for linear and integer programming", Math. Prog. Comp. 2024), is
    $$\\frac{\\sum_i \\mathrm{regret}_i}{\\sum_i |z^*_i| + 10^{-7}}.$$

    Args:
      oracle: the ``Oracle``.
      theta: predicted costs, shape ``(..., n)``.
      c_true: true costs, same shape.
      z_true: true optimal values, shape ``(...)``; ``None`` solves for them (in the same batched
        call as ``x^``).
      normalized: return the normalized regret over all instances (a scalar) instead of the
        regret of each instance (shape ``(...)``).

    Returns:
      The normalized regret (scalar) or the regrets per instance. ``NaN`` if a solve failed.
    """
    oracle = _oracle(oracle)
    theta = jax.lax.stop_gradient(oracle.check_theta(theta))
    c = jax.lax.stop_gradient(_like(oracle, "c_true", c_true, theta))
    if z_true is None:
        x_hat, x_true = _solve_x(oracle, jnp.stack([theta, c]))
        z = _dot(c, x_true)
    else:
        z = jnp.asarray(z_true, theta.dtype)
        if z.shape != theta.shape[:-1]:
            raise ValueError(f"argument `z_true`: expected shape {theta.shape[:-1]}, got {z.shape}")
        x_hat = _solve_x(oracle, theta)
    per = oracle.sign * (_dot(c, x_hat) - jax.lax.stop_gradient(z))
    if not normalized:
        return per
    return jnp.sum(per) / (jnp.sum(jnp.abs(z)) + 1e-7)


# ---------------------------------------------------------------------------- solution caching
@dataclasses.dataclass(frozen=True)
class SolutionPool:
    """A fixed-capacity pool of known feasible solutions (a pytree; ``add`` works under ``jit``).

    Solution caching (Mulamba et al. 2021, "Contrastive losses and solution caching for
    predict-and-optimize", IJCAI; PyEPO's ``solve_ratio``): the pool is typically seeded with the
    solutions of the training set, grown with the solutions found during training, and a
    ``CachedOracle`` answers a fraction of its calls with the best pool member instead of a solve.

    Attributes:
      solutions: ``(capacity, n)`` rows; the first ``size`` inserted ones are valid (first in,
        first out once full).
      count: number of rows inserted so far (``int32`` scalar).
    """

    solutions: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, solutions: Any, capacity: int | None = None) -> SolutionPool:
        """A pool holding the distinct rows of ``solutions`` (shape ``(..., n)``; ``NaN`` rows are
        dropped), with room for ``capacity`` rows (default ``max(1024, 4 * distinct)``)."""
        sol = jnp.asarray(solutions)
        if sol.ndim < 1:
            raise ValueError(f"argument `solutions`: expected shape (..., n), got {sol.shape}")
        n = sol.shape[-1]
        rows = sol.reshape(-1, n)
        rows = rows[~jnp.any(jnp.isnan(rows), axis=-1)]
        rows = jnp.unique(rows, axis=0) if rows.shape[0] else rows
        if capacity is None:
            capacity = max(1024, 4 * rows.shape[0])
        capacity = _positive_int("capacity", capacity)
        if rows.shape[0] > capacity:
            raise ValueError(f"argument `capacity`: expected >= {rows.shape[0]} (distinct solutions), got {capacity}")
        dtype = sol.dtype if jnp.issubdtype(sol.dtype, jnp.floating) else jnp.result_type(float)
        buf = jnp.zeros((capacity, n), dtype).at[: rows.shape[0]].set(rows.astype(dtype))
        return cls(buf, jnp.asarray(rows.shape[0], jnp.int32))

    @property
    def capacity(self) -> int:
        """Number of rows the pool can hold."""
        return self.solutions.shape[0]

    @property
    def size(self) -> jax.Array:
        """Number of valid rows."""
        return jnp.minimum(self.count, self.capacity)

    def valid(self) -> jax.Array:
        """Boolean mask of the valid rows, shape ``(capacity,)``."""
        return jnp.arange(self.capacity) < self.size

    def add(self, x: Any, tol: float = 1e-6) -> SolutionPool:
        """Insert the rows of ``x`` (shape ``(..., n)``) not already in the pool (max-norm distance
        ``> tol`` to every valid row and to earlier rows of ``x``); ``NaN`` rows are skipped.
        Once full, the oldest rows are overwritten."""
        if not isinstance(tol, jax.core.Tracer):  # a traced tol (under jit) is taken as given
            if isinstance(tol, bool | str) or not (math.isfinite(float(tol)) and float(tol) >= 0):
                raise ValueError(f"argument `tol`: expected a finite number >= 0, got {tol!r}")
        x = jnp.asarray(x, self.solutions.dtype)
        n = self.solutions.shape[-1]
        if x.ndim < 1 or x.shape[-1] != n:
            raise ValueError(f"argument `x`: expected shape (..., {n}), got {x.shape}")
        rows = jax.lax.stop_gradient(x.reshape(-1, n))
        finite = ~jnp.any(jnp.isnan(rows), axis=-1)
        near_pool = jnp.max(jnp.abs(rows[:, None, :] - self.solutions[None, :, :]), axis=-1) <= tol
        in_pool = jnp.any(near_pool & self.valid()[None, :], axis=-1)
        near_rows = jnp.max(jnp.abs(rows[:, None, :] - rows[None, :, :]), axis=-1) <= tol
        k = rows.shape[0]
        earlier = jnp.tril(jnp.ones((k, k), bool), -1)
        dup = jnp.any(near_rows & earlier & finite[None, :], axis=-1)
        new = finite & ~in_pool & ~dup
        rank = jnp.cumsum(new) - 1
        slot = jnp.where(new, (self.count + rank) % self.capacity, self.capacity)  # out of range: dropped
        sols = self.solutions.at[slot].set(rows, mode="drop")
        return SolutionPool(sols, self.count + jnp.sum(new, dtype=jnp.int32))

    def best(self, theta: Any, sense: str = "min") -> jax.Array:
        """The valid row minimizing (``"max"``: maximizing) ``theta . x``, for ``theta`` of shape
        ``(..., n)``; ``NaN`` if the pool is empty."""
        if sense not in ("min", "max"):
            raise ValueError(f"argument `sense`: expected 'min' or 'max', got {sense!r}")
        theta = jnp.asarray(theta)
        obj = theta @ self.solutions.T.astype(theta.dtype)  # (..., capacity)
        sgn = 1.0 if sense == "min" else -1.0
        obj = jnp.where(self.valid(), sgn * obj, jnp.inf)
        x = self.solutions[jnp.argmin(obj, axis=-1)].astype(theta.dtype)
        return jnp.where(self.size > 0, x, jnp.nan)


jax.tree_util.register_dataclass(SolutionPool, data_fields=["solutions", "count"], meta_fields=[])


@dataclasses.dataclass(frozen=True, init=False)
class CachedOracle:
    """An ``Oracle`` that solves only a fraction ``solve_ratio`` of its calls and answers the others
    with the best member of a ``SolutionPool`` (for expensive MIPs; PyEPO's ``solve_ratio``).

    Each call draws ``u ~ U(0, 1)`` from ``key`` and solves if ``u < solve_ratio`` (or the pool is
    empty); otherwise every instance gets ``argmin_{x in pool} theta . x`` with status
    ``FEASIBLE`` (a feasible point, not a proven optimum) and bound ``-inf`` (``+inf`` for
    ``"max"``). All the solves of one estimator call share the draw. Under ``jit`` the skipped
    branch does not run (``lax.cond``), so cached steps cost no solve; under ``vmap`` over
    *keys* the draw is batched, ``lax.cond`` becomes a select and both branches run (vmap over
    the costs instead, with one key). The pool does not grow by
    itself: add the solutions you obtain (``pool.add``) and pass a new ``CachedOracle`` with a fresh
    key at each step.

    The oracle must have one feasible set (``problem.batch_shape == ()``): a pooled solution is
    only known to be feasible for it. A cached answer for non-finite costs is ``NaN`` with status
    ``ERROR``, as a solve would give.

    Args:
      oracle: the ``Oracle`` (unbatched problem).
      pool: the ``SolutionPool``.
      key: a ``jax.random`` key for the solve-or-cache draw.
      solve_ratio: probability of solving, in ``[0, 1]`` (static).
    """

    oracle: Oracle
    pool: SolutionPool
    key: jax.Array
    solve_ratio: float

    def __init__(self, oracle: Oracle, pool: SolutionPool, key: jax.Array, solve_ratio: float) -> None:
        if not isinstance(oracle, Oracle):
            raise ValueError(f"CachedOracle field `oracle`: expected a tamejax.Oracle, got {type(oracle).__name__}")
        if not isinstance(pool, SolutionPool):
            raise ValueError(f"CachedOracle field `pool`: expected a SolutionPool, got {type(pool).__name__}")
        if pool.solutions.shape[-1] != oracle.n:
            raise ValueError(
                f"CachedOracle field `pool`: expected solutions of length {oracle.n} (oracle.n), "
                f"got {pool.solutions.shape[-1]}"
            )
        if oracle.problem.batch_shape:
            raise ValueError(
                "CachedOracle field `oracle`: expected an Oracle over one feasible set (problem.batch_shape "
                f"== ()), got batch_shape {oracle.problem.batch_shape}: a pooled solution feasible for one "
                "instance may be infeasible for another"
            )
        if isinstance(solve_ratio, bool) or not isinstance(solve_ratio, numbers.Real) or not 0 <= solve_ratio <= 1:
            raise ValueError(f"CachedOracle field `solve_ratio`: expected a number in [0, 1], got {solve_ratio!r}")
        object.__setattr__(self, "oracle", oracle)
        object.__setattr__(self, "pool", pool)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "solve_ratio", float(solve_ratio))

    def tree_flatten(self):
        return (self.oracle, self.pool, self.key), (self.solve_ratio,)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        for name, v in zip(("oracle", "pool", "key"), children, strict=True):
            object.__setattr__(obj, name, v)
        object.__setattr__(obj, "solve_ratio", aux[0])
        return obj

    n = property(lambda self: self.oracle.n, doc="Number of variables.")
    sense = property(lambda self: self.oracle.sense, doc="``'min'`` or ``'max'``.")
    sign = property(lambda self: self.oracle.sign, doc="``+1.0`` (min) or ``-1.0`` (max).")

    def check_theta(self, theta: Any, name: str = "theta") -> jax.Array:
        """As ``Oracle.check_theta``."""
        return self.oracle.check_theta(theta, name)

    def solve(self, theta: Any) -> Solution:
        """Solve, or answer from the pool (see the class docstring)."""
        theta = jax.lax.stop_gradient(self.check_theta(theta))
        u = jax.random.uniform(self.key, ())
        do_solve = (u < self.solve_ratio) | (self.pool.size == 0)

        def solved(t):
            s = self.oracle.solve(t)
            return s.x.astype(t.dtype), s.objective.astype(t.dtype), s.bound.astype(t.dtype), s.status

        def cached(t):
            finite = jnp.all(jnp.isfinite(t), axis=-1)  # as the solver path: bad costs are an ERROR
            x = jnp.where(finite[..., None], self.pool.best(t, self.sense), jnp.nan)
            obj = jnp.sum(t * x, axis=-1)
            bound = jnp.where(finite, -self.sign * jnp.inf, jnp.nan).astype(t.dtype)
            return x, obj, bound, jnp.where(finite, 1, 5).astype(jnp.int32)  # Status.FEASIBLE / ERROR

        x, obj, bound, status = jax.lax.cond(do_solve, solved, cached, theta)
        return Solution(x, obj, bound, status)

    def __call__(self, theta: Any) -> jax.Array:
        """``x`` of ``solve(theta)``."""
        return self.solve(theta).x


jax.tree_util.register_pytree_node(CachedOracle, CachedOracle.tree_flatten, CachedOracle.tree_unflatten)
