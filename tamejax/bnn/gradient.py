r"""The gradient baseline: the MIP networks' architecture trained by Adam through straight-through quantizers.

The network is exactly the one of :mod:`tamejax.bnn` (see :mod:`tamejax.bnn._types`): integer inputs
``x`` (already scaled), hidden layers ``h_l = sign(h_{l-1} K_l + b_l)`` with ``sign(0) = +1``, scores
``s = h_{L-1} K_L + b_L`` and the prediction ``argmax_k s_k`` (ties: lowest index), with every weight and
bias in the weight set (``"binary"`` {-1, 1}, ``"ternary"`` {-1, 0, 1}, ``P`` {-P..P}, or
``("continuous", B)`` [-B, B]). Training keeps one float *latent* value ``w`` per weight and uses its
quantization ``q(w)`` in the forward pass (Courbariaux et al. 2016; Hubara et al. 2016):

=====================  ========================================================  =========================
weight set             forward ``q(w)``                                          backward ``dq/dw``
=====================  ========================================================  =========================
binary                 ``sign(w)`` (``sign(0) = +1``)                            ``1{|w| <= 1}``
ternary                ``sign(w) 1{|w| > t}`` (threshold ``t``, default 1/2)     ``1{|w| <= 1}``
{-P..P}                ``clip(round(w), -P, P)``                                 ``1{|w| <= P + 1/2}``
[-B, B] (continuous)   ``clip(round(256 w) / 256, -B, B)`` (a dyadic grid)       ``1{|w| <= B}``
=====================  ========================================================  =========================

(the ternary quantizer of Li et al. 2016's ternary weight networks with a fixed threshold; ``{-1..1}``
with ``t = 1/2`` is the ternary set). The latent values are clipped after every step to the interval
where the backward pass is non-zero. The hidden activations use :func:`tamejax.nn.quantizers.ste_sign`
on the pre-activation divided by a fixed positive normaliser ``c_l`` (the root mean square of the
pre-activation of a unit with weights of magnitude one: ``c_1 = sqrt(d * mean(x^2))`` on the training
inputs, ``c_l = sqrt(width_{l-1})`` for the later layers): ``sign(a / c_l) = sign(a)``, so the
forward pass is unchanged, and the clipped straight-through window ``|a| <= c_l`` is on the scale of
the pre-activations whatever the input scaling. The loss is the softmax cross-entropy of the scores
times ``logit_scale`` (default ``1 / sqrt(width of the last hidden layer)``: integer scores of a
ternary output layer range over ``±(width + 1)``).

Training is full-batch Adam (optax) for ``epochs`` steps from ``restarts`` initializations drawn from
``seed`` (latent values uniform in ``±init_scale`` times the latent range; with the default 1 about half
of the ternary weights start at 0), for every learning rate of the grid ``lrs``, all in one vectorised
run; validation accuracy is recorded at ten checkpoints. The best ``(learning rate, initialization,
number of epochs)`` by validation accuracy (ties: lower validation loss, then fewer epochs, then the
earlier initialization and learning rate) is retrained from the same initialization on the whole
training set (``refit=True``) and returned as integer :class:`tamejax.bnn.BNNParams`. Training sets are
padded (with examples of weight zero) to the next power of two, so runs on sets of similar sizes share
one compiled function.

Validation (few-shot sets): from every class with at least two examples,
``min(c - 1, max(1, round(val_fraction * c)))`` of its ``c`` examples are held out at random (so every
class keeps at least one training example). If no class has two examples (e.g. one example per class,
``k = 1``), no example can be held out without removing its class from training; the selection then
uses the training set itself (training accuracy, ties: lower training loss), which the report states
(``validation="train"``). ``val_fraction=0`` asks for that too.

Exactness: the returned network's kernels and biases are the quantized latent values ``q(w)`` of the
selected run; its :func:`tamejax.bnn.predict` equals the argmax of :func:`ste_scores` (the quantized
forward pass used in training, in float32) whenever every partial sum is exactly representable in
float32 (integer magnitudes below ``2**24``; for the dyadic grid, below ``2**16``), which holds for the
sizes used here. Everything is deterministic given ``seed``.

References:
  Courbariaux, M., Hubara, I., Soudry, D., El-Yaniv, R. & Bengio, Y. (2016). Binarized neural networks.
  Hubara, I. et al. (2016). Quantized neural networks: training neural networks with low precision weights
  and activations. arXiv:1609.07061.
  Li, F., Zhang, B. & Liu, B. (2016). Ternary weight networks. arXiv:1605.04711.
  Kingma, D. P. & Ba, J. (2015). Adam: a method for stochastic optimization. ICLR.
  Icarte, R. T., Illanes, L., Castro, M. P., Cire, A. A., McIlraith, S. A. & Beck, J. C. (2019).
  Training binarized neural networks using MIP and CP. CP 2019 (the few-shot comparison with this
  baseline).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tamejax.bnn._types import BNNParams, Scaling, WeightSpec, predict
from tamejax.nn.quantizers import ste_sign

__all__ = ["DEFAULT_LRS", "STEReport", "fit_ste", "quantize_ste", "ste_scores", "train_ste"]

DEFAULT_LRS: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2)
"""The default learning-rate grid of Adam."""

DYADIC_STEP = 1.0 / 256
"""Grid step of continuous weights: multiples of ``2**-8`` (exact in float32 and float64)."""

_CHECKPOINTS = 10


# ---------------------------------------------------------------------------- quantizers
@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _quantize(w: jax.Array, kind: str, P: float, threshold: float) -> jax.Array:
    if kind == "binary":
        return jnp.where(w < 0, -1.0, 1.0).astype(w.dtype)
    if kind == "ternary":
        return jnp.where(w > threshold, 1.0, jnp.where(w < -threshold, -1.0, 0.0)).astype(w.dtype)
    if kind == "integer":
        return jnp.clip(jnp.round(w), -P, P)
    return jnp.clip(jnp.round(w / DYADIC_STEP) * DYADIC_STEP, -P, P)


def _latent_bound(kind: str, P: float) -> float:
    """The latent interval ``[-r, r]`` where the straight-through gradient is non-zero."""
    return P + 0.5 if kind == "integer" else float(P)


@_quantize.defjvp
def _quantize_jvp(kind, P, threshold, primals, tangents):
    (w,), (dw,) = primals, tangents
    window = (jnp.abs(w) <= _latent_bound(kind, P)).astype(w.dtype)
    return _quantize(w, kind, P, threshold), window * dw


def quantize_ste(w: Any, weights: Any = "ternary", *, threshold: float = 0.5) -> jax.Array:
    r"""Quantize latent weights to the weight set, with a straight-through (clipped identity) gradient.

    Forward (``t`` the ternary threshold, ``P`` / ``B`` the bound of the set):

    * ``"binary"``: ``sign(w)`` with ``sign(0) = +1``;
    * ``"ternary"``: ``sign(w) 1{|w| > t}`` (Li et al. 2016's ternary quantizer, fixed threshold);
    * ``P`` ({-P..P}): ``clip(round(w), -P, P)`` (round half to even);
    * ``("continuous", B)``: ``clip(round(w / 2^-8) 2^-8, -B, B)``.

    Backward: ``dq/dw = 1{|w| <= r}`` with ``r = P + 1/2`` for {-P..P} and ``r = P`` (``B``) otherwise
    (the straight-through estimator of Courbariaux et al. 2016, clipped as in Larq).

    Args:
      w: float latent weights (any shape).
      weights: the weight set (``"binary"``, ``"ternary"``, an integer ``P >= 1``, ``("continuous", B)``
        or a :class:`tamejax.bnn.WeightSpec`).
      threshold: the ternary threshold ``t`` in (0, 1) (used for ``"ternary"`` only).

    Returns:
      The quantized values, in ``w``'s dtype and shape.

    Raises:
      ValueError: if ``weights`` or ``threshold`` is invalid.
      TypeError: if ``w`` is not a floating-point array.
    """
    spec = WeightSpec.parse(weights)
    t = _check_threshold(threshold)
    w = jnp.asarray(w)
    if not jnp.issubdtype(w.dtype, jnp.floating):
        raise TypeError(f"argument `w`: expected a floating-point array, got dtype {w.dtype}")
    return _quantize(w, spec.kind, float(spec.P), t)


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 < float(threshold) < 1:
        raise ValueError(f"argument `threshold`: expected a number in (0, 1), got {threshold!r}")
    return float(threshold)


# ---------------------------------------------------------------------------- forward pass
def ste_scores(
    latent: Sequence[dict[str, Any]],
    X_int: Any,
    weights: Any = "ternary",
    *,
    threshold: float = 0.5,
    norms: Sequence[float] | None = None,
) -> jax.Array:
    r"""The quantized forward pass used in training: scores ``s`` of the network ``q(latent)``.

    $$h_0 = x,\quad h_l = \operatorname{ste\_sign}\big((h_{l-1} q(K_l) + q(b_l)) / c_l\big),\quad
    s = h_{L-1} q(K_L) + q(b_L)$$
    in float32; ``ste_sign`` has ``sign(0) = +1`` and ``c_l > 0`` does not change the sign, so the
    forward values are those of the integer network ``q(latent)`` (exactly, while partial sums are
    below ``2**24``); the normalisers ``c_l`` only scale the straight-through window.

    Args:
      latent: one ``{"kernel": (in, out), "bias": (out,)}`` of float latent values per layer.
      X_int: integer inputs ``(n, d)`` (already scaled).
      weights: the weight set (see :func:`quantize_ste`).
      threshold: the ternary threshold.
      norms: the positive normalisers ``c_l``, one per hidden layer (default all 1).

    Returns:
      ``(n, K)`` float32 scores.

    Raises:
      ValueError: on inconsistent shapes, ``norms`` of the wrong length, or an invalid weight set.
    """
    spec = WeightSpec.parse(weights)
    t = _check_threshold(threshold)
    x = jnp.asarray(X_int, jnp.float32)
    layers = tuple(latent)
    if not layers:
        raise ValueError("argument `latent`: expected at least one layer, got none")
    if norms is None:
        norms = (1.0,) * (len(layers) - 1)
    if len(norms) != len(layers) - 1:
        raise ValueError(
            f"argument `norms`: expected {len(layers) - 1} values (one per hidden layer), got {len(norms)}"
        )
    prev = x.shape[-1] if x.ndim == 2 else None
    for i, lay in enumerate(layers):
        shape = jnp.shape(lay["kernel"])
        if len(shape) != 2 or shape[0] != prev or jnp.shape(lay["bias"]) != (shape[1],):
            raise ValueError(
                f"argument `latent[{i}]`: expected kernel ({prev}, out) and bias (out,), got "
                f"{shape} and {jnp.shape(lay['bias'])} (inputs {x.shape})"
            )
        prev = shape[1]
    return _scores(tuple((lay["kernel"], lay["bias"]) for lay in layers), x, spec.kind, float(spec.P), t, tuple(norms))


def _scores(layers, x, kind, P, threshold, norms):
    h = x
    for i, (k, b) in enumerate(layers):
        a = h @ _quantize(k, kind, P, threshold) + _quantize(b, kind, P, threshold)
        if i == len(layers) - 1:
            return a
        h = ste_sign(a / norms[i], 1.0)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------- report
@dataclasses.dataclass
class STEReport:
    """What :func:`fit_ste` reports.

    Attributes:
      lr: the selected Adam learning rate.
      epochs: the selected number of full-batch steps.
      validation: ``"holdout"`` (a stratified held-out split of the training set) or ``"train"`` (no
        class has two examples, or ``val_fraction=0``: selection on the training set itself).
      n_validation: number of held-out examples (0 for ``"train"``).
      restart: index of the selected initialization (of ``restarts``).
      val_accuracy: ``(len(lrs), restarts, 10)`` validation accuracy per learning rate, initialization and
        checkpoint.
      checkpoints: the epochs of the checkpoints.
      lrs: the learning-rate grid.
      train_accuracy: accuracy of the returned network on the whole training set (by :func:`predict`).
      train_time: wall-clock seconds (selection and refit, compilation included).
      refit: whether the returned network was retrained on the whole training set.
      latent: the latent float values of the returned network (``q`` of them is the network).
      norms: the straight-through normalisers ``c_l`` of the hidden layers.
      logit_scale: the factor of the scores in the cross-entropy loss.
      threshold: the ternary threshold.
    """

    lr: float
    epochs: int
    restart: int
    validation: str
    n_validation: int
    val_accuracy: np.ndarray
    checkpoints: tuple[int, ...]
    lrs: tuple[float, ...]
    train_accuracy: float
    train_time: float
    refit: bool
    latent: tuple[dict[str, np.ndarray], ...]
    norms: tuple[float, ...]
    logit_scale: float
    threshold: float


# ---------------------------------------------------------------------------- validation of inputs
def _check_inputs(X_int: Any, y: Any, hidden: Any, n_classes: Any) -> tuple[np.ndarray, np.ndarray, tuple, int]:
    x = np.asarray(X_int)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"argument `X_int`: expected a 2-D array (n, d) with n, d >= 1, got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)) or x.dtype == np.bool_:
        raise TypeError(f"argument `X_int`: expected an integer array, got dtype {x.dtype}")
    xf = x.astype(np.float64)
    if not np.all(np.isfinite(xf)):
        raise ValueError("argument `X_int`: expected finite integer values, got NaN or inf")
    if not np.all(xf == np.round(xf)):
        raise ValueError(
            "argument `X_int`: expected integer values (scale the inputs first, e.g. tamejax.bnn.load_data)"
        )
    yv = np.asarray(y)
    if yv.ndim != 1 or yv.shape[0] != x.shape[0]:
        raise ValueError(f"argument `y`: expected shape ({x.shape[0]},) to match X_int, got {yv.shape}")
    yf = yv.astype(np.float64) if yv.dtype != np.bool_ else yv.astype(np.float64)
    if not np.all(np.isfinite(yf)) or not np.all(yf == np.round(yf)) or np.any(yf < 0):
        raise ValueError("argument `y`: expected integer class labels 0..K-1")
    yi = yf.astype(np.int64)
    if n_classes is None:
        k = int(yi.max()) + 1
    else:
        if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 2:
            raise ValueError(f"argument `n_classes`: expected an integer >= 2, got {n_classes!r}")
        k = int(n_classes)
        if yi.max() >= k:
            raise ValueError(f"argument `y`: labels must lie in 0..{k - 1} (n_classes={k}), got {int(yi.max())}")
    if np.unique(yi).size < 2:
        raise ValueError(f"argument `y`: expected at least 2 distinct classes, got only class {int(yi[0])}")
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        hidden = (hidden,)
    try:
        widths = tuple(hidden)
    except TypeError:
        raise ValueError(f"argument `hidden`: expected a sequence of positive integers, got {hidden!r}") from None
    if not all(isinstance(h, numbers.Integral) and not isinstance(h, bool) and h >= 1 for h in widths):
        raise ValueError(f"argument `hidden`: expected a sequence of positive integers, got {hidden!r}")
    return xf, yi, tuple(int(h) for h in widths), k


def _check_options(lrs: Any, epochs: Any, val_fraction: Any, init_scale: Any, logit_scale: Any) -> tuple:
    try:
        grid = tuple(float(v) for v in lrs)
    except (TypeError, ValueError):
        raise ValueError(f"argument `lrs`: expected a non-empty sequence of positive numbers, got {lrs!r}") from None
    if not grid or not all(math.isfinite(v) and v > 0 for v in grid):
        raise ValueError(f"argument `lrs`: expected a non-empty sequence of positive numbers, got {lrs!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ValueError(f"argument `epochs`: expected an integer >= 1, got {epochs!r}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real) or not 0 <= val_fraction < 1:
        raise ValueError(f"argument `val_fraction`: expected a number in [0, 1), got {val_fraction!r}")
    if isinstance(init_scale, bool) or not isinstance(init_scale, numbers.Real) or not 0 < init_scale <= 1:
        raise ValueError(f"argument `init_scale`: expected a number in (0, 1], got {init_scale!r}")
    if logit_scale is not None and (
        isinstance(logit_scale, bool)
        or not isinstance(logit_scale, numbers.Real)
        or not (math.isfinite(logit_scale) and logit_scale > 0)
    ):
        raise ValueError(f"argument `logit_scale`: expected a positive number or None, got {logit_scale!r}")
    return grid, int(epochs), float(val_fraction), float(init_scale)


def _split(y: np.ndarray, val_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of the held-out examples (stratified; every class keeps one training example)."""
    held = np.zeros(y.shape[0], bool)
    if val_fraction == 0:
        return held
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if idx.size < 2:
            continue
        m = min(idx.size - 1, max(1, round(val_fraction * idx.size)))
        held[rng.choice(idx, m, replace=False)] = True
    return held


# ---------------------------------------------------------------------------- training
def _init_latent(key: jax.Array, sizes: Sequence[int], bound: float, init_scale: float) -> tuple:
    layers = []
    for i in range(len(sizes) - 1):
        key, kk, kb = jax.random.split(key, 3)
        r = init_scale * bound
        k = jax.random.uniform(kk, (sizes[i], sizes[i + 1]), jnp.float32, -r, r)
        b = jax.random.uniform(kb, (sizes[i + 1],), jnp.float32, -r, r)
        layers.append((k, b))
    return tuple(layers)


def _bucket(n: int) -> int:
    """Padded number of examples: the next power of two (at least 16), so that runs on training sets of
    similar sizes share one compiled function."""
    return max(16, 1 << (int(n) - 1).bit_length())


def _padded(x: np.ndarray, y: np.ndarray, mask: np.ndarray, n_pad: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The examples selected by ``mask``, padded with zero rows of weight 0 to ``n_pad`` rows."""
    xs, ys = x[mask], y[mask]
    xp = np.zeros((n_pad, x.shape[1]), np.float32)
    yp = np.zeros(n_pad, np.int32)
    wp = np.zeros(n_pad, np.float32)
    xp[: xs.shape[0]], yp[: ys.shape[0]], wp[: xs.shape[0]] = xs, ys, 1.0
    return jnp.asarray(xp), jnp.asarray(yp), jnp.asarray(wp)


@functools.partial(jax.jit, static_argnames=("kind", "P", "threshold", "steps", "every", "n_classes"))
def _train_grid(inits, lrs, train, val, norms, logit_scale, *, kind, P, threshold, steps, every, n_classes):
    """Train from every initialization of ``inits`` (stacked on axis 0) with every learning rate (vmapped),
    full batch; record the validation accuracy and loss and the latent values at every checkpoint
    (``steps // every`` of them, every ``every`` steps): arrays ``(lrs, inits, checkpoints, ...)``.
    ``train`` and ``val`` are ``(x, y, weight)`` with weight 0 on padding rows."""
    bound = _latent_bound(kind, P)

    def weighted(s, y, w):
        ce = optax.softmax_cross_entropy(s * logit_scale, jax.nn.one_hot(y, n_classes))
        acc = jnp.argmax(s, -1) == y
        total = jnp.sum(w)
        return jnp.sum(ce * w) / total, jnp.sum(acc * w) / total

    def loss_fn(lat):
        return weighted(_scores(lat, train[0], kind, P, threshold, norms), train[1], train[2])[0]

    def one_run(lr, init):
        tx = optax.adam(lr)
        state = tx.init(init)

        def step(carry, _):
            lat, st = carry
            grads = jax.grad(loss_fn)(lat)
            upd, st = tx.update(grads, st, lat)
            lat = jax.tree.map(lambda w: jnp.clip(w, -bound, bound), optax.apply_updates(lat, upd))
            return (lat, st), None

        def chunk(carry, _):
            carry, _ = jax.lax.scan(step, carry, None, length=every)
            loss, acc = weighted(_scores(carry[0], val[0], kind, P, threshold, norms), val[1], val[2])
            return carry, (acc, loss, carry[0])

        _, (accs, losses, lats) = jax.lax.scan(chunk, (init, state), None, length=steps // every)
        return accs, losses, lats

    return jax.vmap(lambda lr: jax.vmap(lambda i: one_run(lr, i))(inits))(lrs)


def fit_ste(
    X_int: Any,
    y: Any,
    hidden: Sequence[int] | int = (16,),
    weights: Any = "ternary",
    *,
    n_classes: int | None = None,
    lrs: Sequence[float] = DEFAULT_LRS,
    epochs: int = 300,
    seed: int = 0,
    restarts: int = 4,
    val_fraction: float = 0.2,
    threshold: float = 0.5,
    refit: bool = True,
    init_scale: float = 1.0,
    logit_scale: float | None = None,
    progress: bool = False,
) -> tuple[BNNParams, STEReport]:
    r"""Train the MIP networks' architecture by straight-through gradient; return the network and a report.

    See the module docstring for the quantizers, the loss, the validation protocol and the exactness
    statement. The returned :class:`tamejax.bnn.BNNParams` holds ``q(latent)`` (int32 kernels and
    biases in the weight set; float64 on the dyadic grid for continuous weights) and
    ``Scaling.identity(d)`` (the inputs are already integers: put the scaling used to produce them in
    its place, e.g. ``dataclasses.replace(params, scaling=data.scaling)``).

    Args:
      X_int: integer inputs ``(n, d)`` (already scaled, e.g. ``tamejax.bnn.load_data(X, y).X``).
      y: labels ``(n,)`` in ``0..K-1``.
      hidden: widths of the hidden layers (an int for one layer).
      weights: the weight set: ``"binary"``, ``"ternary"``, an integer ``P >= 1``, ``("continuous", B)``
        or a :class:`tamejax.bnn.WeightSpec`.
      n_classes: number of classes ``K`` (default ``max(y) + 1``).
      lrs: the grid of Adam learning rates.
      epochs: full-batch Adam steps per run (validation is recorded at 10 checkpoints; a multiple of 10
        is used, rounded up).
      seed: seed of the initializations and of the validation split.
      restarts: number of random initializations (each trained with every learning rate).
      val_fraction: fraction of each class (with at least two examples) held out for the selection.
      threshold: the ternary quantizer's threshold ``t`` in (0, 1).
      refit: retrain on the whole training set with the selected learning rate and number of epochs
        (ignored when the selection used the training set).
      init_scale: latent values start uniform in ``±init_scale`` times their range.
      logit_scale: factor of the scores in the loss (default ``1 / sqrt(width of the last hidden layer)``,
        1 without hidden layers).
      progress: show a tqdm bar over the two phases (selection, refit).

    Returns:
      ``(params, report)``.

    Raises:
      ValueError: on non-integer, non-finite or wrongly shaped inputs, labels out of range, a single
        class, or invalid options (the message names the argument).
      TypeError: if ``X_int`` is not numeric.
    """
    t0 = time.perf_counter()
    x, yi, widths, k = _check_inputs(X_int, y, hidden, n_classes)
    spec = WeightSpec.parse(weights)
    t = _check_threshold(threshold)
    grid, epochs, val_fraction, init_scale = _check_options(lrs, epochs, val_fraction, init_scale, logit_scale)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"argument `seed`: expected an integer, got {seed!r}")
    if isinstance(restarts, bool) or not isinstance(restarts, numbers.Integral) or restarts < 1:
        raise ValueError(f"argument `restarts`: expected an integer >= 1, got {restarts!r}")
    restarts = int(restarts)
    every = -(-epochs // _CHECKPOINTS)
    steps = every * _CHECKPOINTS
    d = x.shape[1]
    sizes = (d, *widths, k)
    rms = float(np.sqrt(np.mean(x * x)))
    norms = (max(1.0, math.sqrt(d) * rms),) + tuple(math.sqrt(w) for w in widths[:-1])
    norms = tuple(float(c) for c in norms[: len(widths)])
    ls = float(logit_scale) if logit_scale is not None else (1.0 / math.sqrt(widths[-1]) if widths else 1.0)
    kind, P = spec.kind, float(spec.P)
    bound = _latent_bound(kind, P)

    rng = np.random.default_rng(seed)
    held = _split(yi, val_fraction, rng)
    validation = "holdout" if held.any() else "train"
    tr = ~held if validation == "holdout" else np.ones_like(held)
    va = held if validation == "holdout" else np.ones_like(held)
    keys = jax.random.split(jax.random.key(int(seed)), restarts)
    inits = jax.vmap(lambda kk: _init_latent(kk, sizes, bound, init_scale))(keys)
    static = {"kind": kind, "P": P, "threshold": t, "steps": steps, "every": every, "n_classes": k}
    checkpoints = tuple(every * (j + 1) for j in range(_CHECKPOINTS))
    n_pad = _bucket(x.shape[0])
    lr_arr = jnp.asarray(grid, jnp.float32)
    norms_arr = jnp.asarray(norms, jnp.float32)

    from tqdm.auto import tqdm

    do_refit = bool(refit) and validation == "holdout"
    with tqdm(total=2 if do_refit else 1, desc="train_ste", disable=not progress, leave=False) as bar:
        train_set, val_set = _padded(x, yi, tr, n_pad), _padded(x, yi, va, n_pad)
        accs, losses, lats = _train_grid(inits, lr_arr, train_set, val_set, norms_arr, ls, **static)
        accs, losses = np.asarray(accs), np.asarray(losses)
        # best (lr, checkpoint): highest accuracy, then lowest loss, then fewest epochs, then the earlier lr
        order = sorted(
            ((i, r, j) for i in range(len(grid)) for r in range(restarts) for j in range(_CHECKPOINTS)),
            key=lambda irj: (-accs[irj], losses[irj], irj[2], irj[1], irj[0]),
        )
        bi, br, bj = order[0]
        bar.set_postfix(lr=grid[bi], epochs=checkpoints[bj], val=f"{accs[bi, br, bj]:.3f}")
        bar.update(1)
        if do_refit:
            # the same compiled function (same shapes): every entry of the grid set to the selected rate
            full = _padded(x, yi, np.ones_like(held), n_pad)
            same = jax.tree.map(lambda a: jnp.broadcast_to(a[br], a.shape), inits)
            _, _, lats_r = _train_grid(same, jnp.full_like(lr_arr, grid[bi]), full, full, norms_arr, ls, **static)
            chosen = jax.tree.map(lambda a: a[0, 0, bj], lats_r)
            bar.update(1)
        else:
            chosen = jax.tree.map(lambda a: a[bi, br, bj], lats)

    latent = tuple({"kernel": np.asarray(kk), "bias": np.asarray(bb)} for kk, bb in chosen)
    layers = []
    for lay in latent:
        qk = np.asarray(_quantize(jnp.asarray(lay["kernel"]), kind, P, t))
        qb = np.asarray(_quantize(jnp.asarray(lay["bias"]), kind, P, t))
        dtype = np.int32 if spec.is_integer else np.float64
        layers.append({"kernel": qk.astype(dtype), "bias": qb.astype(dtype)})
    params = BNNParams(tuple(layers), Scaling.identity(d), spec)
    params.check()
    train_acc = float(np.mean(predict(params, x.astype(np.int64) if spec.is_integer else x, scaled=True) == yi))
    report = STEReport(
        lr=grid[bi],
        epochs=checkpoints[bj],
        restart=int(br),
        validation=validation,
        n_validation=int(held.sum()) if validation == "holdout" else 0,
        val_accuracy=accs,
        checkpoints=checkpoints,
        lrs=grid,
        train_accuracy=train_acc,
        train_time=time.perf_counter() - t0,
        refit=do_refit,
        latent=latent,
        norms=norms,
        logit_scale=ls,
        threshold=t,
    )
    return params, report


def train_ste(
    X_int: Any,
    y: Any,
    hidden: Sequence[int] | int = (16,),
    weights: Any = "ternary",
    *,
    n_classes: int | None = None,
    lrs: Sequence[float] = DEFAULT_LRS,
    epochs: int = 300,
    seed: int = 0,
    restarts: int = 4,
    val_fraction: float = 0.2,
    threshold: float = 0.5,
    refit: bool = True,
    init_scale: float = 1.0,
    logit_scale: float | None = None,
    progress: bool = False,
) -> BNNParams:
    """Train the MIP networks' architecture by straight-through gradient (Adam, learning-rate grid).

    The network only; :func:`fit_ste` also returns the selection report. Used by
    ``fit_mip(..., warm_start="ste")`` for the solver hint / start.

    Args:
      X_int: integer inputs ``(n, d)`` (already scaled).
      y: labels ``(n,)`` in ``0..K-1``.
      hidden: widths of the hidden layers (an int for one layer).
      weights: the weight set (``"binary"``, ``"ternary"``, ``P``, ``("continuous", B)``, a ``WeightSpec``).
      n_classes: number of classes (default ``max(y) + 1``).
      lrs: the grid of Adam learning rates.
      epochs: full-batch Adam steps per run.
      seed: seed of the initializations and of the validation split.
      restarts: number of random initializations.
      val_fraction: fraction of each class held out for the selection.
      threshold: the ternary quantizer's threshold in (0, 1).
      refit: retrain on the whole training set after the selection.
      init_scale: latent initialization range, relative.
      logit_scale: factor of the scores in the loss (default ``1 / sqrt(last hidden width)``).
      progress: show a tqdm bar.

    Returns:
      The network (:class:`tamejax.bnn.BNNParams` with ``Scaling.identity(d)``).

    Raises:
      ValueError: on invalid inputs or options (see :func:`fit_ste`).
      TypeError: if ``X_int`` is not numeric.
    """
    return fit_ste(
        X_int,
        y,
        hidden,
        weights,
        n_classes=n_classes,
        lrs=lrs,
        epochs=epochs,
        seed=seed,
        restarts=restarts,
        val_fraction=val_fraction,
        threshold=threshold,
        refit=refit,
        init_scale=init_scale,
        logit_scale=logit_scale,
        progress=progress,
    )[0]
