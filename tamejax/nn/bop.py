r"""Optimizers for binary weights: Bop, latent-weight clipping, and a binary/real split.

* :func:`bop` — the Binary Optimizer of Helwegen et al. (2019), as an ``optax``
  ``GradientTransformation``. Binary weights ``w in {-1, +1}`` have no magnitude to accumulate
  small gradients in, so Bop keeps an exponential moving average of the gradient instead and
  flips a weight when that average is large and agrees in sign with the weight:
  $$m_t = (1 - \gamma)\, m_{t-1} + \gamma\, g_t, \qquad
  w_t = \begin{cases} -w_{t-1} & \text{if } |m_t| > \tau
  \text{ and } \operatorname{sign}(m_t) = \operatorname{sign}(w_{t-1}) \\
  w_{t-1} & \text{otherwise} \end{cases}$$
  (``gamma``: adaptivity rate, ``tau``: threshold). A weight whose gradient has pointed the same way
  as the weight itself for long enough (so that decreasing it would decrease the loss) changes sign.
* :func:`clip_latent_weights` — the Larq-style clipping of the latent real weights of
  gradient-trained binary layers to ``[-c, c]`` after each update, as an ``optax`` transform.
* :func:`binary_optimizer` — ``optax.multi_transform`` sending the binary kernels (those of
  :mod:`tamejax.nn.layers`' binary layers) to one transformation (Bop, or Adam + clipping) and
  every other parameter (biases, batch-norm, real layers) to another.

References:
  Helwegen, K., Widdicombe, J., Geiger, L., Liu, Z., Cheng, K.-T. & Nusselder, R. (2019).
  Latent weights do not exist: rethinking binarized neural network optimization. NeurIPS.
  Geiger, L. & Team Plumerai (2020). Larq. JOSS.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from tamejax.nn.layers import BinaryConv, BinaryDense, NNXBinaryConv, NNXBinaryLinear
from tamejax.nn.quantizers import sign

__all__ = [
    "BINARY_LABEL",
    "OTHER_LABEL",
    "BopState",
    "binary_kernel_paths",
    "binary_labels",
    "binary_optimizer",
    "bop",
    "pm1_init",
    "clip_latent_weights",
]

BINARY_LABEL = "binary"
"""Label of the binary kernels in :func:`binary_labels`."""
OTHER_LABEL = "other"
"""Label of every other parameter in :func:`binary_labels`."""

PathPredicate = Callable[[tuple[str, ...]], bool]


class BopState(NamedTuple):
    """State of :func:`bop`.

    Attributes:
      momentum: the moving average ``m`` of the gradients, a pytree like the parameters.
    """

    momentum: Any


def _nonneg(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"argument `{name}`: expected a finite number >= 0, got {value!r}")
    return float(value)


def bop(threshold: float = 1e-8, gamma: float = 1e-4) -> optax.GradientTransformation:
    r"""Bop, the Binary Optimizer (Helwegen et al. 2019), as an optax transformation.

    $$m \leftarrow (1 - \gamma)\, m + \gamma\, g, \qquad
    \text{flip} = \big(|m| > \tau\big) \wedge \big(\operatorname{sign}(m) = \operatorname{sign}(w)\big),$$
    and the new weights are ``-sign(w)`` where ``flip`` and ``sign(w)`` elsewhere (``sign(0) = +1``).
    The returned updates are ``new - w``: exactly ``-2w`` at flipped entries and ``0`` elsewhere
    when the weights are ``±1``. Initialize the binary kernels to ``±1`` (``kernel_init=pm1_init()``):
    other initial weights are projected to ``±1`` at the first step, but ``w + (new - w)`` is then
    ``±1`` only up to one floating-point rounding. Apply the updates with ``optax.apply_updates``;
    do *not* chain a learning rate after Bop. For ``±1`` weights the rule is the same as Larq's
    ``w <- sign(-sign(w m - tau) w)`` (flip iff ``w m > tau``, and ``w m = ±m`` there). For other
    weights the two differ: Larq compares ``w m`` (scaled by ``|w|``) with ``tau``, this rule
    compares ``|m|`` (e.g. ``w = 0.001, m = 0.5, tau = 0.01``: Larq keeps ``+1``, this flips to ``-1``).

    Args:
      threshold: the flip threshold ``tau >= 0`` (paper's default ``1e-8``).
      gamma: the adaptivity rate ``gamma`` in ``(0, 1]`` (paper's default ``1e-4``).

    Returns:
      An ``optax.GradientTransformation`` whose ``update(grads, state, params)`` needs ``params``.

    Raises:
      ValueError: if ``threshold`` is negative or ``gamma`` is not in ``(0, 1]``.
    """
    tau = _nonneg("threshold", threshold)
    g = _nonneg("gamma", gamma)
    if not 0 < g <= 1:
        raise ValueError(f"argument `gamma`: expected a number in (0, 1], got {gamma!r}")

    def init_fn(params: Any) -> BopState:
        return BopState(momentum=jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates: Any, state: BopState, params: Any = None) -> tuple[Any, BopState]:
        if params is None:
            raise ValueError("argument `params`: bop's update needs the current parameters, got None")
        momentum = jax.tree.map(lambda m, grad: (1 - g) * m + g * grad, state.momentum, updates)

        def step(w: jax.Array, m: jax.Array) -> jax.Array:
            s = sign(w)
            flip = (jnp.abs(m) > tau) & (sign(m) == s)
            return jnp.where(flip, -s, s) - w

        return jax.tree.map(step, params, momentum), BopState(momentum=momentum)

    return optax.GradientTransformation(init_fn, update_fn)


def pm1_init(base_init: Callable | None = None) -> Callable:
    """An initializer of ``±1`` weights: ``sign(base_init(key, shape, dtype))`` (``sign(0) = +1``), for Bop.

    Args:
      base_init: a ``jax.nn.initializers`` initializer whose signs are used (default: standard normal,
        i.e. independent fair signs).

    Returns:
      An initializer ``(key, shape, dtype=float32) -> array`` of ``±1``.

    Raises:
      TypeError: if ``base_init`` is not callable.
    """
    if base_init is None:
        base_init = jax.nn.initializers.normal(1.0)
    if not callable(base_init):
        raise TypeError(f"argument `base_init`: expected an initializer (callable), got {type(base_init).__name__}")

    def init(key: jax.Array, shape: Any, dtype: Any = jnp.float32) -> jax.Array:
        return sign(base_init(key, shape, dtype))

    return init


def clip_latent_weights(clip_value: float = 1.0) -> optax.GradientTransformation:
    r"""Keep the latent weights in ``[-c, c]`` after the update (Larq's latent-weight clipping).

    Chained *after* an optimizer (``optax.chain(optax.adam(lr), clip_latent_weights(1.0))``), it
    turns the updates ``u`` into ``clip(w + u, -c, c) - w`` so that ``optax.apply_updates`` lands in
    the box. With ``ste_sign(clip_value=c)`` a latent weight outside ``[-c, c]`` gets no gradient
    and would be stuck: clipping keeps it able to flip.

    Args:
      clip_value: the bound ``c > 0``.

    Returns:
      An ``optax.GradientTransformation`` (stateless) whose ``update`` needs ``params``.

    Raises:
      ValueError: if ``clip_value`` is not a positive finite number.
    """
    if (
        isinstance(clip_value, bool)
        or not isinstance(clip_value, numbers.Real)
        or not (math.isfinite(clip_value) and clip_value > 0)
    ):
        raise ValueError(f"argument `clip_value`: expected a positive finite number, got {clip_value!r}")
    c = float(clip_value)

    def init_fn(params: Any) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update_fn(updates: Any, state: optax.EmptyState, params: Any = None) -> tuple[Any, optax.EmptyState]:
        if params is None:
            raise ValueError("argument `params`: clip_latent_weights needs the current parameters, got None")
        return jax.tree.map(lambda u, w: jnp.clip(w + u, -c, c) - w, updates, params), state

    return optax.GradientTransformation(init_fn, update_fn)


# ---------------------------------------------------------------------------- which parameters are binary
def _names(path: tuple[Any, ...]) -> tuple[str, ...]:
    out = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            out.append(str(k.key))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            out.append(k.name)
        elif isinstance(k, jax.tree_util.SequenceKey):
            out.append(str(k.idx))
        else:
            out.append(str(k))
    if out and out[-1] == "value":  # nnx.Variable leaves
        out.pop()
    return tuple(out)


_LINEN_AUTO_NAME = re.compile(r"^(BinaryDense|BinaryConv)_\d+$")


def _default_is_binary(names: tuple[str, ...]) -> bool:
    """Linen's automatic module names, exactly: ``.../BinaryDense_0/kernel``, ``.../BinaryConv_3/kernel``."""
    return len(names) >= 2 and names[-1] == "kernel" and _LINEN_AUTO_NAME.match(names[-2]) is not None


def binary_kernel_paths(model: Any, *args: Any, **kwargs: Any) -> frozenset[tuple[str, ...]]:
    """The paths of the kernels of the binary layers inside a model, whatever their names.

    For an NNX model the graph is walked (``args`` unused); for a Linen model the module is
    traced abstractly (``jax.eval_shape`` of ``model.init``, nothing is computed) with ``args`` /
    ``kwargs`` as its inputs and the binary layers that get called are recorded. Each path is
    the tuple of names from the model's root to ``'kernel'`` (without the ``'params'`` collection).

    Args:
      model: a ``flax.nnx.Module`` or a ``flax.linen.Module``.
      *args: for Linen, the positional inputs of ``model.init`` after the PRNG key.
      **kwargs: for Linen, keyword inputs of ``model.init`` (e.g. ``train=False``).

    Returns:
      The frozenset of paths, e.g. ``{('hidden1', 'kernel'), ('hidden2', 'kernel')}``.

    Raises:
      TypeError: if ``model`` is neither an NNX nor a Linen module.
    """
    if isinstance(model, nnx.Module):
        found = set()
        for path, node in nnx.iter_graph(model):
            if isinstance(node, NNXBinaryLinear | NNXBinaryConv):
                found.add((*(str(p) for p in path), "kernel"))
        return frozenset(found)
    if isinstance(model, nn.Module):
        found = set()

        def record(next_fun, f_args, f_kwargs, context):
            if isinstance(context.module, BinaryDense | BinaryConv) and context.method_name == "__call__":
                found.add((*context.module.path, "kernel"))
            return next_fun(*f_args, **f_kwargs)

        def init(key):
            with nn.intercept_methods(record):
                return model.init(key, *args, **kwargs)

        jax.eval_shape(init, jax.random.key(0))
        return frozenset(found)
    raise TypeError(f"argument `model`: expected a flax.nnx.Module or flax.linen.Module, got {type(model).__name__}")


def _predicate(is_binary: Any, model: Any = None) -> PathPredicate:
    if model is not None:
        if is_binary is not None:
            raise ValueError("arguments `is_binary` and `model`: expected at most one of them, got both")
        if isinstance(model, nnx.Module):
            is_binary = binary_kernel_paths(model)
        elif isinstance(model, nn.Module):
            raise TypeError(
                "argument `model`: a flax.linen.Module needs example inputs to find its binary layers; "
                "pass is_binary=binary_kernel_paths(model, x) instead"
            )
        else:
            raise TypeError(f"argument `model`: expected a flax.nnx.Module, got {type(model).__name__}")
    if is_binary is None:
        return _default_is_binary
    if isinstance(is_binary, frozenset | set | list | tuple):
        paths = {tuple(str(n) for n in p) for p in is_binary}
        if not all(p and p[-1] == "kernel" for p in paths) and paths:
            bad = sorted(p for p in paths if not p or p[-1] != "kernel")[0]
            raise ValueError(f"argument `is_binary`: expected paths ending with 'kernel', got {bad!r}")

        def in_paths(names: tuple[str, ...]) -> bool:
            if names in paths:
                return True
            return bool(names) and names[0] == "params" and names[1:] in paths

        return in_paths
    if callable(is_binary):
        return is_binary
    raise TypeError(
        "argument `is_binary`: expected None, a set of paths or a callable (path names) -> bool, "
        f"got {type(is_binary).__name__}"
    )


def binary_labels(
    params: Any,
    is_binary: Iterable[tuple[str, ...]] | PathPredicate | None = None,
    *,
    model: Any = None,
) -> Any:
    """Label each parameter ``"binary"`` (a binary layer's kernel) or ``"other"``, for ``optax.multi_transform``.

    The robust ways to find the binary kernels are the module types: ``model=`` an NNX model, or
    ``is_binary=binary_kernel_paths(model, x)`` (Linen or NNX, any layer names). The default
    (``is_binary=None``, no ``model``) only recognizes Linen's automatic names.

    Args:
      params: the parameter pytree (Linen ``{'params': ...}`` or its inside, or an ``nnx.State``).
      is_binary: which leaves are binary kernels: ``None`` (default) recognizes Linen's automatic
        names exactly (a ``'kernel'`` inside a module named ``BinaryDense_<n>`` / ``BinaryConv_<n>``;
        a binary layer given a custom ``name=`` is *not* recognized, and neither is any NNX model);
        a set of paths (from :func:`binary_kernel_paths`, works for any names and for NNX); or a
        callable taking the tuple of names of a leaf's path and returning a bool.
      model: an ``flax.nnx.Module`` whose ``NNXBinaryLinear`` / ``NNXBinaryConv`` layers are the
        binary ones (found by walking the graph, :func:`binary_kernel_paths`); exclusive with
        ``is_binary``.

    Returns:
      A pytree of ``params``' structure with string leaves.

    Raises:
      TypeError: if ``is_binary`` or ``model`` has the wrong type (a Linen ``model`` needs example
        inputs: use :func:`binary_kernel_paths`).
      ValueError: if a given path does not end with ``'kernel'``, if both ``is_binary`` and
        ``model`` are given, or if no leaf of ``params`` is labelled binary (the binary optimizer
        would silently train nothing with it).
    """
    return _labels(params, _predicate(is_binary, model))


def _labels(params: Any, pred: PathPredicate) -> Any:
    labels = jax.tree_util.tree_map_with_path(lambda p, _: BINARY_LABEL if pred(_names(p)) else OTHER_LABEL, params)
    if BINARY_LABEL not in jax.tree.leaves(labels):
        some = [_names(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]][:4]
        raise ValueError(
            "argument `is_binary`: expected at least one parameter to be a binary kernel, got none among "
            f"{len(jax.tree.leaves(params))} leaves (e.g. {some}); with custom layer names or NNX models pass "
            "is_binary=binary_kernel_paths(model, ...) or model=..."
        )
    return labels


def binary_optimizer(
    binary_tx: optax.GradientTransformation,
    other_tx: optax.GradientTransformation,
    *,
    is_binary: Iterable[tuple[str, ...]] | PathPredicate | None = None,
    model: Any = None,
) -> optax.GradientTransformation:
    """One optax transformation: ``binary_tx`` on the binary kernels, ``other_tx`` on the rest.

    Typical uses: ``binary_optimizer(bop(), optax.adam(1e-3))`` (Bop for the binary weights, as in
    Helwegen et al.) or ``binary_optimizer(optax.chain(optax.adam(1e-3), clip_latent_weights()),
    optax.adam(1e-3))`` (latent weights, Larq's default recipe).

    Args:
      binary_tx: transformation of the binary kernels.
      other_tx: transformation of every other parameter.
      is_binary: which parameters are binary kernels (see :func:`binary_labels`).
      model: an NNX model whose binary layers' kernels are the binary parameters (see
        :func:`binary_labels`); exclusive with ``is_binary``.

    Returns:
      An ``optax.GradientTransformation`` (``optax.multi_transform``). Its ``init`` / ``update``
      raise ``ValueError`` if no parameter is labelled binary.

    Raises:
      TypeError: if a transformation is not an ``optax.GradientTransformation`` or ``is_binary`` /
        ``model`` has the wrong type.
      ValueError: if both ``is_binary`` and ``model`` are given.
    """
    for name, tx in (("binary_tx", binary_tx), ("other_tx", other_tx)):
        if not isinstance(tx, optax.GradientTransformation):
            raise TypeError(f"argument `{name}`: expected an optax.GradientTransformation, got {type(tx).__name__}")
    pred = _predicate(is_binary, model)
    return optax.multi_transform({BINARY_LABEL: binary_tx, OTHER_LABEL: other_tx}, lambda params: _labels(params, pred))
