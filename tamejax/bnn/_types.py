r"""Parameters, weight sets, input scaling and the exact forward pass of MIP-trained networks.

The network (``L`` layers, ``L - 1`` hidden) maps an input ``x`` (already scaled to integers,
see :class:`Scaling`) through

$$
h_0 = x,\qquad h_l = \operatorname{sign}(h_{l-1} K_l + b_l)\ (l < L),\qquad
s = h_{L-1} K_L + b_L,\qquad \hat y = \arg\max_k s_k,
$$

with ``sign(a) = +1`` iff ``a >= 0`` and ties of the argmax broken towards the lowest index
(``np.argmax``). With integer weights every quantity is an integer, so an example with label
``y`` is classified correctly iff ``s_y - s_k >= 1`` for every ``k < y`` and ``s_y - s_k >= 0``
for every ``k > y``: the rule every formulation of :mod:`tamejax.bnn.formulations` encodes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from tamejax.backends.base import Status

__all__ = [
    "WeightSpec",
    "Scaling",
    "BNNParams",
    "FitReport",
    "PackedBNN",
    "scores",
    "predict",
    "hidden_activations",
    "to_flax",
    "to_packed",
    "model_size_bytes",
]


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """The set the weights and biases are drawn from.

    Attributes:
      kind: ``"binary"`` ({-1, 1}), ``"ternary"`` ({-1, 0, 1}), ``"integer"`` ({-P, ..., P}) or
        ``"continuous"`` ([-P, P], SCIP only, Kurtz & Bah 2021).
      P: the bound ``P`` (1 for binary and ternary).
    """

    kind: str
    P: float = 1

    @property
    def lo(self) -> float:
        """Smallest value."""
        return -self.P

    @property
    def hi(self) -> float:
        """Largest value."""
        return self.P

    @property
    def is_integer(self) -> bool:
        """Whether the values are integers."""
        return self.kind != "continuous"

    @property
    def allows_zero(self) -> bool:
        """Whether 0 is an allowed value."""
        return self.kind != "binary"

    @property
    def bits(self) -> int:
        """Bits needed to store one value (32 for continuous, a float32)."""
        if self.kind == "continuous":
            return 32
        if self.kind == "binary":
            return 1
        return max(1, math.ceil(math.log2(2 * int(self.P) + 1)))

    def contains(self, values: np.ndarray) -> bool:
        """Whether every value lies in the set.

        Args:
          values: an array.

        Returns:
          ``True`` iff all values are allowed.
        """
        v = np.asarray(values, np.float64)
        if self.kind == "continuous":
            return bool(np.all(np.abs(v) <= self.P + 1e-9))
        ok = np.all(v == np.round(v)) and np.all(np.abs(v) <= self.P)
        if self.kind == "binary":
            ok = ok and np.all(v != 0)
        return bool(ok)

    @classmethod
    def parse(cls, weights: Any) -> WeightSpec:
        """Read a weight specification.

        Args:
          weights: ``"binary"``, ``"ternary"``, an integer ``P >= 1`` (weights in {-P..P}),
            ``"continuous"`` (in [-1, 1]), ``("continuous", B)`` (in [-B, B]) or a ``WeightSpec``.

        Returns:
          The parsed specification.

        Raises:
          ValueError: on anything else (the message names the field `weights`).
        """
        if isinstance(weights, WeightSpec):
            return weights
        if isinstance(weights, str):
            if weights == "binary":
                return cls("binary", 1)
            if weights == "ternary":
                return cls("ternary", 1)
            if weights == "continuous":
                return cls("continuous", 1.0)
        elif isinstance(weights, int | np.integer) and not isinstance(weights, bool):
            if int(weights) >= 1:
                return cls("integer", int(weights))
        elif (
            isinstance(weights, tuple)
            and len(weights) == 2
            and weights[0] == "continuous"
            and isinstance(weights[1], int | float)
            and math.isfinite(weights[1])
            and weights[1] > 0
        ):
            return cls("continuous", float(weights[1]))
        raise ValueError(
            "argument `weights`: expected 'binary', 'ternary', an integer P >= 1, 'continuous' or "
            f"('continuous', bound > 0), got {weights!r}"
        )


@dataclasses.dataclass(frozen=True)
class Scaling:
    """The exact map from raw inputs to the integer inputs the network sees.

    ``x_int = clip(rint((X - shift) * scale), lo, hi)`` in float64, per feature, with NumPy's
    ``rint`` (round half to even). The fitted network is defined on ``x_int``: :func:`predict`
    applies the very same map, so training and prediction see identical integers.

    * exact scaling (``load_data(..., scaling="exact")``): ``shift = 0``, per feature ``k`` a
      power of ten ``scale_k = 10**j_k`` (the smallest making every training value of that
      feature an integer, e.g. 1 for the digits' pixel counts) and no clipping: exact for data
      with at most ``j_k`` decimals in feature ``k``; inputs with more decimals are rounded onto
      that grid;
    * quantization to ``L`` levels (``scaling=L``): per feature over the training set,
      ``scale = (L - 1) / (max - min)``, ``shift = min + (L // 2) / scale``, clipped to
      ``[-(L // 2), L - 1 - L // 2]`` (the training range onto centred integers).

    Attributes:
      scale: per-feature factors.
      shift: per-feature offsets.
      lo: clipping lower bound (``-inf``: none).
      hi: clipping upper bound (``+inf``: none).
    """

    scale: tuple[float, ...]
    shift: tuple[float, ...]
    lo: float = -math.inf
    hi: float = math.inf

    @classmethod
    def identity(cls, d: int) -> Scaling:
        """The identity map on ``d`` features (inputs already integers).

        Args:
          d: number of features.

        Returns:
          A ``Scaling`` with scale 1 and shift 0.
        """
        return cls((1.0,) * d, (0.0,) * d)

    @property
    def n_features(self) -> int:
        """Number of features."""
        return len(self.scale)

    def apply(self, X: Any) -> np.ndarray:
        """Scale raw inputs to integers.

        Args:
          X: raw inputs ``(n, d)`` (NumPy or JAX).

        Returns:
          ``(n, d)`` int64 integers.

        Raises:
          ValueError: on a wrong number of features or non-finite values.
        """
        x = np.asarray(X, np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"argument `X`: expected shape (n, {self.n_features}), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("argument `X`: expected finite values, got NaN or inf")
        z = np.rint((x - np.asarray(self.shift)) * np.asarray(self.scale))
        return np.clip(z, self.lo, self.hi).astype(np.int64)


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class BNNParams:
    """A trained network: integer (or, for continuous weights, float) layers and the input map.

    A JAX pytree whose leaves are the kernels and biases (``scaling`` and ``weights`` are static).

    Attributes:
      layers: one ``{"kernel": (in, out), "bias": (out,)}`` per layer (int32 for integer weights,
        float64 for continuous ones); ``len(layers) - 1`` hidden layers.
      scaling: the input map applied by :func:`predict` (see :class:`Scaling`).
      weights: the weight set the values were drawn from.
    """

    layers: tuple[dict[str, Any], ...]
    scaling: Scaling
    weights: WeightSpec

    def tree_flatten(self) -> tuple[tuple, tuple]:
        """Leaves ``((kernel, bias), ...)``; ``scaling`` and ``weights`` as static data.

        Returns:
          ``(children, aux_data)``.
        """
        leaves = tuple((lay["kernel"], lay["bias"]) for lay in self.layers)
        return leaves, (self.scaling, self.weights)

    @classmethod
    def tree_unflatten(cls, aux: tuple, children: tuple) -> BNNParams:
        """Rebuild from :meth:`tree_flatten`'s output.

        Args:
          aux: ``(scaling, weights)``.
          children: ``((kernel, bias), ...)``.

        Returns:
          The parameters.
        """
        layers = tuple({"kernel": k, "bias": b} for k, b in children)
        return cls(layers, aux[0], aux[1])

    @property
    def n_features(self) -> int:
        """Number of input features."""
        return int(np.shape(self.layers[0]["kernel"])[0])

    @property
    def n_classes(self) -> int:
        """Number of classes (output scores)."""
        return int(np.shape(self.layers[-1]["kernel"])[1])

    @property
    def hidden(self) -> tuple[int, ...]:
        """Widths of the hidden layers."""
        return tuple(int(np.shape(lay["kernel"])[1]) for lay in self.layers[:-1])

    def check(self) -> None:
        """Check shapes and that every value lies in ``weights``.

        Raises:
          ValueError: naming the layer and field at fault.
        """
        prev = self.n_features
        for l_, lay in enumerate(self.layers):
            k, b = np.asarray(lay["kernel"]), np.asarray(lay["bias"])
            if k.ndim != 2 or k.shape[0] != prev or b.shape != (k.shape[1],):
                raise ValueError(f"field `layers[{l_}]`: inconsistent shapes kernel {k.shape}, bias {b.shape}")
            for name, v in (("kernel", k), ("bias", b)):
                if not self.weights.contains(v):
                    raise ValueError(f"field `layers[{l_}].{name}`: values outside the weight set {self.weights}")
            prev = k.shape[1]


@dataclasses.dataclass
class FitReport:
    """What a training run reports.

    Attributes:
      status: ``Status.OPTIMAL`` (proven optimal), ``FEASIBLE`` (stopped by the time limit with
        an incumbent network), ``INFEASIBLE`` (no network of this architecture and weight set
        satisfies the hard constraints, e.g. fits every example), ``NO_SOLUTION`` (limit reached
        before any network was found) or ``ERROR``.
      objective: the formulation's objective at the returned network, in its own sense
        (``sense``), e.g. the number of correctly classified training examples for
        ``max_correct``; ``nan`` without a network.
      bound: the best proven bound on that objective (``nan`` if unknown).
      gap: ``|objective - bound| / max(1, |objective|)`` (0 when the bound proves optimality,
        ``nan`` if unknown); always computed from ``objective`` and ``bound``.
      train_accuracy: training accuracy recomputed by :func:`predict` (``nan`` without a network).
      solve_time: wall-clock seconds of all solves (and building).
      model_size_bytes: bytes needed to store the weights and biases (see :func:`model_size_bytes`).
      n_variables: variables of the (last) model solved.
      n_constraints: linear rows of the (last) model solved.
      method: ``"exact"`` or the heuristic's name.
      formulation: the formulation's name.
      history: ``(t, incumbent, bound)`` over time, in the formulation's sense.
      message: details (solver status, reasons).
      sense: ``"max"`` or ``"min"``: the direction of ``objective`` and ``bound``.
      backend: the engine used.
      extra: free-form details (per-iteration data of heuristics, warm-start info).
    """

    status: Status
    objective: float
    bound: float
    gap: float
    train_accuracy: float
    solve_time: float
    model_size_bytes: int
    n_variables: int
    n_constraints: int
    method: str
    formulation: str
    history: list[tuple[float, float, float]] = dataclasses.field(default_factory=list)
    message: str = ""
    sense: str = "max"
    backend: str = "cpsat"
    extra: dict = dataclasses.field(default_factory=dict)


def relative_gap(objective: float, bound: float) -> float:
    """``|objective - bound| / max(1, |objective|)`` (``nan`` if either is not finite).

    Args:
      objective: incumbent value.
      bound: proven bound.

    Returns:
      The relative gap.
    """
    if not (math.isfinite(objective) and math.isfinite(bound)):
        return math.nan
    return abs(objective - bound) / max(1.0, abs(objective))


def _inputs(params: BNNParams, X: Any, scaled: bool) -> np.ndarray:
    if scaled:
        x = np.asarray(X)
        if x.ndim != 2 or x.shape[1] != params.n_features:
            raise ValueError(f"argument `X`: expected shape (n, {params.n_features}), got {x.shape}")
        if params.weights.is_integer:
            xf = np.asarray(x, np.float64)
            if not np.all(xf == np.round(xf)):
                bad = xf[xf != np.round(xf)][0]
                raise ValueError(f"argument `X`: scaled=True expects integer inputs, got {bad!r}")
            return xf.astype(np.int64)
        return np.asarray(x, np.float64)
    x = params.scaling.apply(X)
    return x if params.weights.is_integer else x.astype(np.float64)


def _forward(params: BNNParams, X: Any, scaled: bool) -> tuple[list[np.ndarray], np.ndarray]:
    h = _inputs(params, X, scaled)
    dtype = np.int64 if params.weights.is_integer else np.float64
    hidden = []
    for lay in params.layers[:-1]:
        a = h @ np.asarray(lay["kernel"]).astype(dtype) + np.asarray(lay["bias"]).astype(dtype)
        h = np.where(a >= 0, 1, -1).astype(dtype)
        hidden.append(h.astype(np.int8))
    last = params.layers[-1]
    s = h @ np.asarray(last["kernel"]).astype(dtype) + np.asarray(last["bias"]).astype(dtype)
    return hidden, s


def scores(params: BNNParams, X: Any, *, scaled: bool = False) -> np.ndarray:
    """Output scores ``s`` (exact integer arithmetic for integer weights).

    Args:
      params: the network.
      X: inputs ``(n, d)``: raw (``scaled=False``, mapped by ``params.scaling``) or already integer.
      scaled: whether ``X`` is already scaled.

    Returns:
      ``(n, K)`` int64 scores (float64 for continuous weights).
    """
    return _forward(params, X, scaled)[1]


def predict(params: BNNParams, X: Any, *, scaled: bool = False) -> np.ndarray:
    """Predicted labels ``argmax_k s_k`` (ties: lowest index).

    Raw inputs are mapped by ``params.scaling`` (:class:`Scaling`): values between its integer
    grid points (e.g. more decimals than the training data had) are rounded by ``rint``, and
    quantized scalings clip values outside the training range.

    Args:
      params: the network.
      X: inputs ``(n, d)`` (NumPy or JAX).
      scaled: whether ``X`` is already scaled to integers.

    Returns:
      ``(n,)`` int64 labels.
    """
    return np.argmax(scores(params, X, scaled=scaled), axis=1).astype(np.int64)


def hidden_activations(params: BNNParams, X: Any, *, scaled: bool = False) -> list[np.ndarray]:
    """Hidden activations ``h_l`` in {-1, +1} (sign(0) = +1).

    Args:
      params: the network.
      X: inputs ``(n, d)``.
      scaled: whether ``X`` is already scaled to integers.

    Returns:
      One ``(n, width_l)`` int8 array per hidden layer.
    """
    return _forward(params, X, scaled)[0]


def model_size_bytes(params: BNNParams) -> int:
    """Bytes to store all kernels and biases: ``ceil(count * bits / 8)``.

    Bits per value: 1 (binary), 2 (ternary), ``ceil(log2(2P + 1))`` ({-P..P}), 32 (continuous).

    Args:
      params: the network.

    Returns:
      The size in bytes.
    """
    count = sum(int(np.size(lay["kernel"])) + int(np.size(lay["bias"])) for lay in params.layers)
    return math.ceil(count * params.weights.bits / 8)


def to_flax(params: BNNParams) -> tuple[Any, dict]:
    """The network as a Linen module of :class:`tamejax.nn.BinaryDense` layers, and its variables.

    Layer 0 takes the scaled integer inputs ``x_int`` (``input_quantizer=None``) and computes in
    **int32** (``dtype=param_dtype=int32``: exact integer arithmetic, no float32 rounding of
    large inputs); every later layer quantizes its input with ``"ste_sign"`` (sign(0) = +1),
    i.e. applies the hidden activation, in float32 (the int32 pre-activations are cast first,
    which keeps every sign, zero included); kernels are already integer
    (``kernel_quantizer=None``). ``module.apply(variables, x_int)`` then returns exactly the
    scores of :func:`scores` (as float32 when there is a hidden layer, where ``|s| <= P (w + 1)``
    is far below ``2**24``; as int32 for a network without hidden layer), provided the
    first-layer pre-activations ``|x_int @ K_1 + b_1|`` stay below ``2**31`` (int32), e.g.
    ``max|x_int| * max_j ||K_1[:, j]||_1 + P < 2**31``. Pass ``x_int`` as an integer array
    (``Scaling.apply``); a float input is rounded to the nearest integer first (float32 inputs
    are exact only below ``2**24``).

    Args:
      params: the network (integer weights).

    Returns:
      ``(module, variables)`` with ``variables = {"params": {"layers_0": {...}, ...}}``.

    Raises:
      ValueError: on continuous weights (use :func:`scores`).
    """
    import flax.linen as nn
    import jax.numpy as jnp

    from tamejax.nn import BinaryDense

    if not params.weights.is_integer:
        raise ValueError("argument `params`: to_flax needs integer weights, got continuous weights")
    widths = tuple(int(np.shape(lay["kernel"])[1]) for lay in params.layers)

    class BNNMLP(nn.Module):
        """MIP-trained binarized MLP (scores); the first layer in exact int32 arithmetic."""

        features: tuple[int, ...]

        def setup(self) -> None:
            self.layers = [
                BinaryDense(
                    f,
                    input_quantizer=None,
                    kernel_quantizer=None,
                    dtype=jnp.int32,
                    param_dtype=jnp.int32,
                    kernel_init=nn.initializers.zeros_init(),
                )
                if i == 0
                else BinaryDense(f, input_quantizer="ste_sign", kernel_quantizer=None)
                for i, f in enumerate(self.features)
            ]

        def __call__(self, x: Any) -> Any:
            x = jnp.asarray(x)
            if not jnp.issubdtype(x.dtype, jnp.integer):
                x = jnp.rint(x)
            x = self.layers[0](x.astype(jnp.int32))
            for layer in self.layers[1:]:
                x = layer(x.astype(jnp.float32))
            return x

    module = BNNMLP(widths)
    variables = {
        "params": {
            f"layers_{i}": {
                "kernel": jnp.asarray(np.asarray(lay["kernel"], np.int32 if i == 0 else np.float32)),
                "bias": jnp.asarray(np.asarray(lay["bias"], np.int32 if i == 0 else np.float32)),
            }
            for i, lay in enumerate(params.layers)
        }
    }
    return module, variables


@dataclasses.dataclass(frozen=True, eq=False)
class PackedBNN:
    """Bit-packed inference form of a network (see :func:`to_packed`).

    Attributes:
      first_kernel: integer kernel of layer 0 (inputs are integers, not ±1: not packed).
      first_bias: integer bias of layer 0.
      layers: packed layers 1..L-1 (:class:`tamejax.nn.packed.PackedLayer`); all but the last emit
        packed activations, the last returns float32 scores.
      scaling: the input map.
    """

    first_kernel: np.ndarray
    first_bias: np.ndarray
    layers: tuple[Any, ...]
    scaling: Scaling

    def __call__(self, X: Any, *, scaled: bool = False) -> Any:
        """Scores of the packed network.

        Args:
          X: inputs ``(n, d)``.
          scaled: whether ``X`` is already scaled to integers.

        Returns:
          ``(n, K)`` float32 scores (equal to :func:`scores` for integers below ``2**24``).
        """
        import jax.numpy as jnp

        if scaled:
            xf = np.asarray(X, np.float64)
            if xf.ndim != 2 or xf.shape[1] != self.first_kernel.shape[0]:
                raise ValueError(f"argument `X`: expected shape (n, {self.first_kernel.shape[0]}), got {xf.shape}")
            if not np.all(xf == np.round(xf)):
                bad = xf[xf != np.round(xf)][0]
                raise ValueError(f"argument `X`: scaled=True expects integer inputs, got {bad!r}")
            x = xf.astype(np.int64)
        else:
            x = self.scaling.apply(X)
        a = x @ self.first_kernel.astype(np.int64) + self.first_bias.astype(np.int64)
        h = jnp.asarray(a, jnp.float32)  # the first packed layer binarizes with sign(0) = +1
        for layer in self.layers:
            h = layer(h)
        return h

    @property
    def size_bytes(self) -> int:
        """Bytes of the first layer (at its bit width) plus the packed arrays."""
        big = max(1, int(np.max(np.abs(self.first_kernel), initial=0)), int(np.max(np.abs(self.first_bias), initial=0)))
        bits = max(1, math.ceil(math.log2(2 * big + 1)))
        size = math.ceil((self.first_kernel.size + self.first_bias.size) * bits / 8)
        for layer in self.layers:
            size += sum(int(np.asarray(v).nbytes) for v in jax.tree_util.tree_leaves(layer.params))
        return size


def to_packed(params: BNNParams, *, backend: str = "xla") -> PackedBNN:
    """Export to bit-packed inference (:func:`tamejax.nn.packed.export_dense`).

    Layer 0 sees integer inputs and stays an integer matrix product; layers 1..L-1 see ±1
    inputs and become XNOR-popcount layers with ``weights="binary"`` or ``"ternary"`` (two
    planes for zeros, exact), all but the last emitting packed activations with the bias folded
    into an integer threshold (sign(0) = +1), the last returning ``d + bias`` in float32.

    Args:
      params: the network (layers after the first must have values in {-1, 0, 1}).
      backend: ``"xla"`` or ``"pallas"``.

    Returns:
      A :class:`PackedBNN` (callable on raw inputs).

    Raises:
      ValueError: if a layer after the first has values outside {-1, 0, 1}, or on continuous weights.
    """
    from tamejax.nn.packed import export_dense

    if not params.weights.is_integer:
        raise ValueError("argument `params`: to_packed needs integer weights, got continuous weights")
    packed = []
    n_layers = len(params.layers)
    for i, lay in enumerate(params.layers[1:], start=1):
        k = np.asarray(lay["kernel"], np.float64)
        b = np.asarray(lay["bias"], np.float64)
        if np.any(np.abs(k) > 1):
            raise ValueError(
                f"argument `params`: layer {i} kernel has values outside {{-1, 0, 1}} (weights={params.weights}); "
                "bit packing needs binary or ternary weights after the first layer"
            )
        kind = "binary" if np.all(k != 0) else "ternary"
        out = "affine" if i == n_layers - 1 else "packed"
        packed.append(export_dense(k, b, weights=kind, output=out, backend=backend))
    first = params.layers[0]
    return PackedBNN(
        np.asarray(first["kernel"]).astype(np.int64),
        np.asarray(first["bias"]).astype(np.int64),
        tuple(packed),
        params.scaling,
    )


def make_params(
    kernels: Sequence[np.ndarray], biases: Sequence[np.ndarray], scaling: Scaling, weights: WeightSpec
) -> BNNParams:
    """Assemble a :class:`BNNParams` (casting to int32, or float64 for continuous weights).

    Args:
      kernels: one ``(in, out)`` array per layer.
      biases: one ``(out,)`` array per layer.
      scaling: the input map.
      weights: the weight set.

    Returns:
      The parameters (checked).
    """
    dt = np.int32 if weights.is_integer else np.float64
    layers = tuple(
        {
            "kernel": (np.rint(np.asarray(k, np.float64)) if weights.is_integer else np.asarray(k, np.float64)).astype(
                dt
            ),
            "bias": (np.rint(np.asarray(b, np.float64)) if weights.is_integer else np.asarray(b, np.float64)).astype(
                dt
            ),
        }
        for k, b in zip(kernels, biases, strict=True)
    )
    params = BNNParams(layers, scaling, weights)
    params.check()
    return params
