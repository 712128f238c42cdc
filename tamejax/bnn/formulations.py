r"""Mixed-integer models for training binarized / integer-valued networks.

Notation. Training examples ``i`` (integer inputs ``x_i`` after the exact scaling, labels
``y_i``), layers ``l = 1..L`` of widths ``n_0 = d, n_1, ..., n_L = K``, kernels ``W^l`` and
biases ``b^l`` in the weight set (:class:`tamejax.bnn.WeightSpec`: {-1, 1}, {-1, 0, 1},
{-P..P} or [-P, P]). Hidden activations are binary variables ``z^l_{ij}`` in {0, 1} with
``h^l_{ij} = 2 z^l_{ij} - 1``; pre-activations are the linear expressions

$$
a^1_{ij} = \sum_k x_{ik} W^1_{kj} + b^1_j,\qquad
a^l_{ij} = \sum_k u^l_{ikj} + b^l_j\ (l \ge 2),\qquad s_{ik} = a^L_{ik},
$$

where ``u^l_{ikj} = W^l_{kj} h^{l-1}_{ik}`` is linearised exactly: ``u`` in ``[-P, P]`` with
``z^{l-1}_{ik} = 1  =>  u = W`` and ``z^{l-1}_{ik} = 0  =>  u = -W`` (indicator rows: CP-SAT
``OnlyEnforceIf``, SCIP big-M from the bounds). Every model contains the **sign rows**

$$
z^l_{ij} = 1 \Rightarrow a^l_{ij} \ge 0, \qquad z^l_{ij} = 0 \Rightarrow a^l_{ij} \le -\delta,
$$

(``delta = 1`` for integer weights, where all ``a`` are integers; for continuous weights the
rows are ``a >= eps``, ``a <= -eps``), so ``h = sign(a)`` with sign(0) = +1, exactly as
:func:`tamejax.bnn.predict` computes it. An example is **fitted** when

$$
s_{i y_i} - s_{ik} \ge \delta [k < y_i] + \mu \qquad \forall k \ne y_i
$$

(``mu = output_margin >= 0``): with integer weights and ``mu = 0`` this is exactly "argmax with
ties to the lowest index returns ``y_i``", so a claimed count of fitted examples is what
``predict`` recomputes (at the optimum; an incumbent may classify more examples correctly than it
claims). With continuous weights every pair needs ``s_y - s_k >= eps`` (``predict`` compares
floats exactly, so a zero difference is never counted as fitted).

All output-layer conditions are written on **pairwise score differences** ``s_y - s_k``: this
is what ``argmax`` decides. The papers below instead use one-hot outputs (one sign/threshold per
output neuron, ``o_{kj} = 1 => s_{kj} >= 0``, ``o_{kj} = 0 => s_{kj} <= -eps``); their claims
need not match an argmax predictor, so the output parts are *adapted* as stated per formulation.

Formulations (``build(formulation, ...)``):

* ``"min_weight"`` -- Toro Icarte, Illanes, Castro, Cire, McIlraith, Beck, "Training binarized
  neural networks using MIP and CP", CP 2019: every example fitted; minimise the number of
  non-zero weights and biases, ``sum nz`` with ``nz = 0 => w = 0``.
* ``"max_margin"`` -- Icarte et al. 2019 (as in Thorbjarnarson's reimplementation,
  ``mip_nn/src/mip/max_m.py``): every example fitted; each hidden neuron ``(l, j)`` has a
  margin ``m_{lj} >= 0`` with ``z = 1 => a >= m`` and ``z = 0 => a <= -delta - m`` (so every
  fitting network is feasible, with ``m = 0``; a pre-activation 0 has sign +1 and margin 0).
  *Adapted* output: instead of one margin per one-hot output neuron, one output margin
  ``m_o >= 0`` on the pairwise differences, ``s_y - s_k - m_o >= [k < y] + mu`` (the slack
  beyond the fitted rule); maximise ``sum m + m_o``.
* ``"max_correct"`` -- Thorbjarnarson & Yorke-Smith, "Optimal training of integer-valued neural
  networks with mixed integer programming", PLoS ONE 2023 (arXiv 2009.03825): weights in
  {-P..P}; binary ``c_i`` with ``c_i = 1 => example i fitted``; maximise ``sum c_i``.
  *Adapted*: the paper/code counts true-class hits of one-hot sign outputs
  (``o_{kj} = 1 => s_{kj} >= 0``, ``o_{kj} = 0 => s_{kj} <= -eps``, ``sum_j o_{kj} = 1``); here
  "fitted" is the pairwise argmax rule above (stronger, and exactly what ``predict`` counts).
* ``"sat_margin"`` -- Thorbjarnarson & Yorke-Smith: maximise the number of satisfied margins.
  *Adapted*: the paper/code counts per output neuron the satisfied margins of normalised
  outputs (``2 s_{kj} / s_max * y_{kj} >= 0.5`` on one-hot ±1 targets); here binary ``q_{ik}``
  per *pair* with ``q_{ik} = 1 => s_y - s_k >= max(margin, delta [k < y])`` (unnormalised,
  integer margin); maximise ``sum q``.
* ``"min_hinge"`` -- Thorbjarnarson & Yorke-Smith. *Adapted*: the paper/code minimises a
  **squared** hinge loss on normalised per-neuron outputs ``2 s_{kj} / s_max * y_{kj}``
  (one-hot ±1 targets, a piecewise-linear objective); here a **linear** hinge on the pairwise
  differences: ``xi_{ik} >= max(margin, delta [k < y]) - (s_y - s_k)``, ``xi >= 0``; minimise
  ``sum xi``.
* ``"big_m"`` -- Kurtz & Bah, "Efficient and robust mixed-integer optimization methods for
  training binarized deep neural networks", 2021 (arXiv 2110.11382): the same linear pairwise
  hinge loss as ``min_hinge`` (tamejax's choice of loss, not checked against the paper's), but
  every indicator is written as an explicit big-M linearisation (the model works unchanged for
  bounded *continuous* weights with SCIP): ``|u - W| <= 2P(1 - z)``, ``|u + W| <= 2P z``,
  ``a >= -M(1 - z)``, ``a <= -delta + M z``.

Options common to all formulations:

* neuron count (Thorbjarnarson & Yorke-Smith): ``neuron_penalty = alpha > 0`` adds a binary
  switch ``o_{lj}`` per hidden neuron, ``o = 0 => `` its incoming, bias and outgoing weights
  are 0 (the neuron is removed; its output sign(0) = +1 then multiplies zero weights), and
  ``alpha * sum o`` to the minimised objective (subtracted from a maximised one);
* robustness (Kurtz & Bah): ``rho > 0`` (in raw input units, l_inf ball) makes every
  first-layer sign row hold for all integer inputs within ``r_k = ceil(rho * scale_k)`` of the
  scaled training input (:func:`robust_radii`): with ``t_{kj} >= |W^1_{kj}|``,
  ``z = 1 => a - sum_k r_k t_{kj} >= 0`` and ``z = 0 => a + sum_k r_k t_{kj} <= -delta``. Since
  ``predict`` rounds a perturbed raw input ``x + d`` (``|d_k| <= rho``) to an integer input at
  most ``r_k`` away, the first-layer activations of ``predict`` cannot change inside the ball,
  so neither can its output (up to float64 rounding in the scaling map itself). For exact
  scaling this is conservative: e.g. ``rho * scale = 0.4`` gives radius 1.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tamejax.backends.bnn_solver import SparseModel
from tamejax.bnn._data import BNNData
from tamejax.bnn._types import BNNParams, WeightSpec, make_params

__all__ = ["FORMULATIONS", "BNNModel", "build", "robust_radii"]

FORMULATIONS = ("min_weight", "max_margin", "max_correct", "sat_margin", "min_hinge", "big_m")
_SENSE = {
    "min_weight": "min",
    "max_margin": "max",
    "max_correct": "max",
    "sat_margin": "max",
    "min_hinge": "min",
    "big_m": "min",
}
_HARD_FIT = ("min_weight", "max_margin")


def robust_radii(rho: float, scaling: Any) -> np.ndarray:
    """Integer l_inf radii of the scaled inputs for a raw radius ``rho``: ``r_k = ceil(rho * scale_k)``.

    ``predict`` maps a perturbed raw input by ``clip(rint((x + d - shift) * scale))``; since
    ``rint`` is monotone with ``rint(t + c) = rint(t) + c`` for integer ``c``, and clipping is
    1-Lipschitz, ``|d_k| <= rho`` moves the integer input ``k`` by at most ``ceil(rho * scale_k)``,
    for every point (on the training grid or not) and every scaling.

    Args:
      rho: radius in raw input units (``>= 0``).
      scaling: the :class:`tamejax.bnn.Scaling` of the data.

    Returns:
      ``(d,)`` float64 integers.
    """
    return np.ceil(float(rho) * np.abs(np.asarray(scaling.scale, np.float64)))


@dataclasses.dataclass
class BNNModel:
    """A built training model: the sparse model and where each network quantity lives in it.

    Attributes:
      model: the :class:`tamejax.backends.bnn_solver.SparseModel` (minimisation).
      formulation: the formulation's name.
      sense: ``"max"`` or ``"min"``: the direction of the formulation's own objective.
      data: the full training set.
      examples: indices (into ``data``) of the examples in the model.
      weights: the weight set.
      dims: layer widths ``(d, *hidden, K)``.
      kernel_idx: per layer, ``(in, out)`` variable indices of the kernel.
      bias_idx: per layer, ``(out,)`` variable indices of the bias.
      act_idx: per hidden layer, ``(n_examples, width)`` indices of the binary ``z`` (``h = 2z - 1``);
        ``None`` for a layer whose activations were fixed.
      fixed_activations: per hidden layer, the fixed ``(n_examples, width)`` activations in {-1, 1} or ``None``.
      correct_idx: ``(n_examples,)`` indices of ``c_i`` (``max_correct``), else ``None``.
      neuron_idx: per hidden layer, ``(width,)`` neuron switches (``neuron_penalty > 0``), else ``None``.
      aux: other variable groups (products ``u``, ``nz``, margins, ``sat``, ``xi``, ``absw``, pairs).
      delta: the sign/ties unit (1 for integer weights, ``eps`` for continuous).
    """

    model: SparseModel
    formulation: str
    sense: str
    data: BNNData
    examples: np.ndarray
    weights: WeightSpec
    dims: tuple[int, ...]
    kernel_idx: list[np.ndarray]
    bias_idx: list[np.ndarray]
    act_idx: list[np.ndarray | None]
    fixed_activations: list[np.ndarray | None]
    correct_idx: np.ndarray | None
    neuron_idx: list[np.ndarray] | None
    aux: dict[str, Any]
    delta: float
    options: dict[str, Any]

    def objective_value(self, solver_value: float) -> float:
        """The formulation's objective from the solver's (minimised) value.

        Args:
          solver_value: ``obj . x + offset`` of the sparse model.

        Returns:
          The value in the formulation's sense (e.g. the number of fitted examples).
        """
        return -solver_value if self.sense == "max" else solver_value

    def decode(self, x: np.ndarray) -> BNNParams:
        """The network of a solution vector.

        Args:
          x: a solution ``(n_vars,)``.

        Returns:
          The :class:`tamejax.bnn.BNNParams` (input scaling of ``data``).
        """
        x = np.asarray(x, np.float64)
        kernels = [x[k] for k in self.kernel_idx]
        biases = [x[b] for b in self.bias_idx]
        if not self.weights.is_integer:
            kernels = [np.clip(k, self.weights.lo, self.weights.hi) for k in kernels]
            biases = [np.clip(b, self.weights.lo, self.weights.hi) for b in biases]
        return make_params(kernels, biases, self.data.scaling, self.weights)

    def hint_from_params(self, params: BNNParams) -> np.ndarray:
        """A complete solution vector for a network (for CP-SAT hints / SCIP starts).

        Weights come from ``params``; activations, products, margins, indicators and slacks
        are computed by the exact forward pass on the model's examples. Variables whose value
        the network cannot satisfy (e.g. a fixed activation it contradicts) still get the
        forward-pass value: the solver repairs the hint.

        Args:
          params: a network of the model's architecture.

        Returns:
          ``(n_vars,)`` float64 values (``nan`` where nothing is known).

        Raises:
          ValueError: if the architecture differs.
        """
        dims = (params.n_features, *params.hidden, params.n_classes)
        if dims != self.dims:
            raise ValueError(f"argument `params`: expected layer widths {self.dims}, got {dims}")
        m = self.model
        v = np.full(m.n_vars, np.nan)
        K = [np.asarray(lay["kernel"], np.float64) for lay in params.layers]
        B = [np.asarray(lay["bias"], np.float64) for lay in params.layers]
        for l_ in range(len(K)):
            v[self.kernel_idx[l_]] = np.clip(K[l_], self.weights.lo, self.weights.hi)
            v[self.bias_idx[l_]] = np.clip(B[l_], self.weights.lo, self.weights.hi)
        for w_idx, s_idx in self.aux["binary"]:
            v[s_idx] = (v[w_idx] > 0).astype(np.float64)
        for w_idx, nz_idx in self.aux["nz"]:
            v[nz_idx] = (v[w_idx] != 0).astype(np.float64)
        X = self.data.X[self.examples].astype(np.float64)
        y = self.data.y[self.examples]
        h = X
        pre = []
        acts = []
        for l_ in range(len(K)):
            a = h @ K[l_] + B[l_]
            pre.append(a)
            if l_ < len(K) - 1:
                hn = np.where(a >= 0, 1.0, -1.0)
                if self.fixed_activations[l_] is not None:
                    hn = self.fixed_activations[l_].astype(np.float64)
                if self.act_idx[l_] is not None:
                    v[self.act_idx[l_]] = (hn + 1) / 2
                acts.append(hn)
                h = hn
        for l_, u in enumerate(self.aux["u"]):
            if u is not None:  # u[i, k, j] = W^l[k, j] * h^{l-1}[i, k]
                v[u] = acts[l_ - 1][:, :, None] * K[l_][None, :, :]
        if self.aux["absw"] is not None:
            v[self.aux["absw"]] = np.abs(K[0])
        if self.neuron_idx is not None:
            for l_, o in enumerate(self.neuron_idx):
                used = (np.any(K[l_] != 0, axis=0) | (B[l_] != 0)) | np.any(K[l_ + 1] != 0, axis=1)
                v[o] = used.astype(np.float64)
        lo1 = 0.0 if self.weights.is_integer else self.delta
        for l_, mg in enumerate(self.aux["margin"]):
            if mg is not None:  # the largest m with a - m >= lo1 (h = +1) and a + m <= -delta (h = -1)
                a = pre[l_]
                hpos = acts[l_] > 0
                slack = np.where(hpos, a - lo1, -self.delta - a)
                v[mg] = np.clip(np.min(slack, axis=0), m.lb[mg], m.ub[mg])
        ii, kk, t = self.aux["pairs"]
        s = pre[-1]
        diff = s[ii, y[ii]] - s[ii, kk]
        if self.aux["out_margin"] is not None:
            om = self.aux["out_margin"]
            v[om] = np.clip(np.min(diff - t) if diff.size else 0.0, m.lb[om], m.ub[om])
        if self.correct_idx is not None:
            ok = np.ones(len(y), bool)
            np.logical_and.at(ok, ii, diff >= t)
            v[self.correct_idx] = ok.astype(np.float64)
        if self.aux["sat"] is not None:
            v[self.aux["sat"]] = (diff >= t).astype(np.float64)
        if self.aux["xi"] is not None:
            xi = self.aux["xi"]
            v[xi] = np.clip(np.maximum(0.0, t - diff), m.lb[xi], m.ub[xi])
        return v


def _check_hidden(hidden: Any) -> tuple[int, ...]:
    if isinstance(hidden, int | np.integer) and not isinstance(hidden, bool):
        hidden = (int(hidden),)
    try:
        h = tuple(hidden)
    except TypeError:
        raise ValueError(f"argument `hidden`: expected a tuple of positive layer widths, got {hidden!r}") from None
    if not all(isinstance(w, int | np.integer) and not isinstance(w, bool) and w >= 1 for w in h):
        raise ValueError(f"argument `hidden`: expected a tuple of positive layer widths, got {hidden!r}")
    return tuple(int(w) for w in h)


def _nonneg_number(name: str, value: Any) -> float:
    if not isinstance(value, int | float | np.integer | np.floating) or isinstance(value, bool):
        raise ValueError(f"argument `{name}`: expected a number >= 0, got {value!r}")
    if not (math.isfinite(float(value)) and value >= 0):
        raise ValueError(f"argument `{name}`: expected a finite number >= 0, got {value!r}")
    return float(value)


def build(
    formulation: str,
    data: BNNData,
    hidden: Sequence[int] | int,
    weights: Any = "ternary",
    *,
    examples: Any = None,
    fixed_activations: Sequence[np.ndarray | None] | None = None,
    rho: float = 0.0,
    neuron_penalty: float = 0.0,
    output_margin: float = 0,
    margin: float = 1,
    objective: bool = True,
    eps: float = 1e-3,
) -> BNNModel:
    """Build the training model of a formulation (see the module docstring for the rows).

    Args:
      formulation: one of ``FORMULATIONS``.
      data: the validated training set (:func:`tamejax.bnn.load_data`).
      hidden: hidden layer widths (``()`` for a linear classifier).
      weights: the weight set (``"binary"``, ``"ternary"``, ``P``, ``("continuous", B)``).
      examples: indices of the examples to include (default: all).
      fixed_activations: per hidden layer, ``None`` or an ``(n_examples, width)`` array in
        {-1, +1} fixing that layer's activations: no ``z`` variables, the sign rows become
        unconditional and the next layer's products become linear in the weights (the second
        stage of Icarte et al.'s hybrid).
      rho: robustness radius in raw input units (l_inf, first layer; Kurtz & Bah).
      neuron_penalty: ``alpha >= 0``; ``> 0`` adds neuron switches (Thorbjarnarson & Yorke-Smith).
      output_margin: ``mu >= 0`` in the fitted rule (``min_weight``, ``max_margin``, ``max_correct``).
      margin: margin of ``sat_margin``, ``min_hinge`` and ``big_m`` (``> 0``).
      objective: ``False`` builds a pure feasibility model (zero objective), e.g. the first
        stage of Icarte et al.'s hybrid with ``"min_weight"`` (fit every example).
      eps: the strictness ``delta`` used for continuous weights.

    Returns:
      The :class:`BNNModel`.

    Raises:
      ValueError: on an unknown formulation, bad sizes/options, or incompatible combinations
        (``min_weight`` with binary weights, ``max_margin`` with neuron switches, ``rho`` without
        a hidden layer, a ``fixed_activations`` entry of the wrong shape or values).
    """
    if formulation not in FORMULATIONS:
        raise ValueError(f"argument `formulation`: expected one of {FORMULATIONS}, got {formulation!r}")
    if not isinstance(data, BNNData):
        raise TypeError(f"argument `data`: expected a BNNData (tamejax.bnn.load_data), got {type(data).__name__}")
    hidden = _check_hidden(hidden)
    spec = WeightSpec.parse(weights)
    rho = _nonneg_number("rho", rho)
    alpha = _nonneg_number("neuron_penalty", neuron_penalty)
    mu = _nonneg_number("output_margin", output_margin)
    marg = _nonneg_number("margin", margin)
    if formulation in ("sat_margin", "min_hinge", "big_m") and marg <= 0:
        raise ValueError(f"argument `margin`: expected a number > 0 for {formulation!r}, got {margin!r}")
    if formulation == "min_weight" and not spec.allows_zero:
        raise ValueError("argument `weights`: 'min_weight' needs a weight set containing 0, got 'binary'")
    if alpha > 0 and formulation == "max_margin":
        raise ValueError("argument `neuron_penalty`: not supported with 'max_margin' (a removed neuron has no margin)")
    if alpha > 0 and not spec.allows_zero:
        raise ValueError(
            "argument `neuron_penalty`: needs a weight set containing 0 (a removed neuron has zero weights)"
        )
    if alpha > 0 and not hidden:
        raise ValueError("argument `neuron_penalty`: needs at least one hidden layer")
    if rho > 0 and not hidden:
        raise ValueError("argument `rho`: robustness applies to the first hidden layer; give at least one")
    if spec.is_integer:
        for name, val in (("output_margin", mu), ("margin", marg)):
            if val != round(val):
                raise ValueError(f"argument `{name}`: expected an integer with integer weights, got {val!r}")
    ex = np.arange(data.n) if examples is None else np.asarray(examples, np.int64).reshape(-1)
    if ex.size == 0 or np.any(ex < 0) or np.any(ex >= data.n):
        raise ValueError(f"argument `examples`: expected non-empty indices in [0, {data.n}), got {ex[:10]}")
    X = data.X[ex].astype(np.float64)
    y = data.y[ex]
    n = len(ex)
    K = data.n_classes
    dims = (data.d, *hidden, K)
    L = len(dims) - 1
    P = float(spec.P)
    integer = spec.is_integer
    delta = 1.0 if integer else float(eps)
    big_m = formulation == "big_m"
    fixed: list[np.ndarray | None] = [None] * (L - 1)
    if fixed_activations is not None:
        if len(fixed_activations) != L - 1:
            raise ValueError(
                f"argument `fixed_activations`: expected {L - 1} entries (one per hidden layer), "
                f"got {len(fixed_activations)}"
            )
        for l_, fa in enumerate(fixed_activations):
            if fa is None:
                continue
            a = np.asarray(fa)
            if a.shape != (n, dims[l_ + 1]):
                raise ValueError(
                    f"argument `fixed_activations[{l_}]`: expected shape {(n, dims[l_ + 1])}, got {a.shape}"
                )
            if not np.all(np.abs(a) == 1):
                raise ValueError(
                    f"argument `fixed_activations[{l_}]`: expected values in {{-1, 1}}, got "
                    f"{np.unique(a[np.abs(a) != 1])[:5].tolist()}"
                )
            fixed[l_] = a.astype(np.int64)

    m = SparseModel()
    kernel_idx = [m.add_vars((dims[l_], dims[l_ + 1]), -P, P, integer) for l_ in range(L)]
    bias_idx = [m.add_vars((dims[l_ + 1],), -P, P, integer) for l_ in range(L)]
    aux: dict[str, Any] = {"binary": [], "nz": [], "u": [None] * L, "margin": [None] * (L - 1)}
    aux.update({"out_margin": None, "sat": None, "xi": None, "absw": None})
    if spec.kind == "binary":  # w = 2 s - 1, s in {0, 1}
        for w in (*kernel_idx, *bias_idx):
            s = m.add_vars(w.shape, 0, 1)
            m.add_rows(np.stack([w.reshape(-1), s.reshape(-1)], 1), [[1.0, -2.0]], -1.0, -1.0)
            aux["binary"].append((w, s))
    obj_terms: list[tuple[np.ndarray, float]] = []  # (indices, coefficient) of the MINIMISED objective

    # bounds on |a| per layer (for margins, slacks and big-M)
    amax = [P * (float(np.max(np.sum(np.abs(X), axis=1))) + 1.0)] + [P * (dims[l_] + 1.0) for l_ in range(1, L)]

    # activations
    act_idx: list[np.ndarray | None] = []
    for l_ in range(L - 1):
        act_idx.append(None if fixed[l_] is not None else m.add_vars((n, dims[l_ + 1]), 0, 1))

    # robust first layer: t >= |W^1|, integer radii r_k = ceil(rho scale_k) (valid after predict's rint)
    r_q = None
    if rho > 0:
        absw = m.add_vars(kernel_idx[0].shape, 0, P, integer)
        flat_w, flat_t = kernel_idx[0].reshape(-1), absw.reshape(-1)
        m.add_rows(np.stack([flat_t, flat_w], 1), [[1.0, -1.0]], 0.0, np.inf)
        m.add_rows(np.stack([flat_t, flat_w], 1), [[1.0, 1.0]], 0.0, np.inf)
        aux["absw"] = absw
        r_q = robust_radii(rho, data.scaling)
    aux["radii"] = r_q

    def preactivation(l_: int) -> tuple[np.ndarray, np.ndarray]:
        """Columns and coefficients (n, out, T) of a^l (bias included)."""
        W, b = kernel_idx[l_], bias_idx[l_]
        out, inn = dims[l_ + 1], dims[l_]
        if l_ == 0 or fixed[l_ - 1] is not None:
            src = X if l_ == 0 else fixed[l_ - 1].astype(np.float64)
            cols = np.broadcast_to(W.T[None], (n, out, inn))
            vals = np.broadcast_to(src[:, None, :], (n, out, inn))
        else:
            z = act_idx[l_ - 1]  # (n, inn)
            u = m.add_vars((n, inn, out), -P, P, integer)
            aux["u"][l_] = u
            Wb = np.broadcast_to(W[None], (n, inn, out))
            zb = np.broadcast_to(z[:, :, None], (n, inn, out)).reshape(-1)
            pair = np.stack([u.reshape(-1), Wb.reshape(-1)], 1)
            if big_m:  # |u - W| <= 2P(1 - z), |u + W| <= 2P z
                trip = np.concatenate([pair, zb[:, None]], 1)
                m.add_rows(trip, [[1.0, -1.0, 2 * P]], -np.inf, 2 * P)
                m.add_rows(trip, [[1.0, -1.0, -2 * P]], -2 * P, np.inf)
                m.add_rows(trip, [[1.0, 1.0, -2 * P]], -np.inf, 0.0)
                m.add_rows(trip, [[1.0, 1.0, 2 * P]], 0.0, np.inf)
            else:
                m.add_rows(pair, [[1.0, -1.0]], 0.0, 0.0, enforce_var=zb, enforce_val=1)
                m.add_rows(pair, [[1.0, 1.0]], 0.0, 0.0, enforce_var=zb, enforce_val=0)
            cols = u.transpose(0, 2, 1)
            vals = np.ones((n, out, inn))
        cols = np.concatenate([cols, np.broadcast_to(b[None, :, None], (n, out, 1))], 2)
        vals = np.concatenate([vals, np.ones((n, out, 1))], 2)
        return cols, vals

    # hidden layers: sign rows
    for l_ in range(L - 1):
        out = dims[l_ + 1]
        cols, vals = preactivation(l_)
        cols = cols.reshape(n * out, -1)
        vals = vals.reshape(n * out, -1)
        extra_c_pos, extra_v_pos = [], []  # added to the z = 1 row (>= lo1)
        extra_c_neg, extra_v_neg = [], []  # added to the z = 0 row (<= -delta)
        lo1, hi0 = (0.0 if integer else delta), -delta
        rmax = 0.0
        if l_ == 0 and r_q is not None:
            tcols = np.broadcast_to(aux["absw"].T[None], (n, out, dims[0])).reshape(n * out, -1)
            extra_c_pos.append(tcols)
            extra_v_pos.append(np.broadcast_to(-r_q[None, :], tcols.shape))
            extra_c_neg.append(tcols)
            extra_v_neg.append(np.broadcast_to(r_q[None, :], tcols.shape))
            rmax = float(np.sum(r_q)) * P
        if formulation == "max_margin":  # z = 1 => a - m >= lo1, z = 0 => a + m <= -delta, m >= 0
            mg = m.add_vars((out,), 0.0, amax[l_], integer)
            aux["margin"][l_] = mg
            obj_terms.append((mg, -1.0))
            mcol = np.broadcast_to(mg[None, :], (n, out)).reshape(-1, 1)
            extra_c_pos.append(mcol)
            extra_v_pos.append(np.full(mcol.shape, -1.0))
            extra_c_neg.append(mcol)
            extra_v_neg.append(np.full(mcol.shape, 1.0))
        c_pos = np.concatenate([cols, *extra_c_pos], 1)
        v_pos = np.concatenate([vals, *extra_v_pos], 1)
        c_neg = np.concatenate([cols, *extra_c_neg], 1)
        v_neg = np.concatenate([vals, *extra_v_neg], 1)
        if fixed[l_] is not None:
            hv = fixed[l_].reshape(-1)
            pos, neg = hv > 0, hv < 0
            m.add_rows(c_pos[pos], v_pos[pos], lo1, np.inf)
            m.add_rows(c_neg[neg], v_neg[neg], -np.inf, hi0)
            continue
        z = act_idx[l_].reshape(-1)
        if big_m:
            bigm = amax[l_] + rmax + 2.0  # >= |a| + sum_k r_k |W_kj| + delta (big_m never has margins)
            m.add_rows(
                np.concatenate([c_pos, z[:, None]], 1),
                np.concatenate([v_pos, np.full((len(z), 1), -bigm)], 1),
                lo1 - bigm,
                np.inf,
            )
            m.add_rows(
                np.concatenate([c_neg, z[:, None]], 1),
                np.concatenate([v_neg, np.full((len(z), 1), -bigm)], 1),
                -np.inf,
                hi0,
            )
        else:
            m.add_rows(c_pos, v_pos, lo1, np.inf, enforce_var=z, enforce_val=1)
            m.add_rows(c_neg, v_neg, -np.inf, hi0, enforce_var=z, enforce_val=0)

    # neuron switches
    neuron_idx = None
    if alpha > 0:
        neuron_idx = []
        for l_ in range(L - 1):
            o = m.add_vars((dims[l_ + 1],), 0, 1)
            neuron_idx.append(o)
            obj_terms.append((o, alpha))
            groups = [
                (kernel_idx[l_], np.broadcast_to(o[None, :], kernel_idx[l_].shape)),
                (bias_idx[l_], o),
                (kernel_idx[l_ + 1], np.broadcast_to(o[:, None], kernel_idx[l_ + 1].shape)),
            ]
            for w, ob in groups:
                m.add_rows(w.reshape(-1, 1), [[1.0]], 0.0, 0.0, enforce_var=ob.reshape(-1), enforce_val=0)

    # output layer: pairwise score differences s_y - s_k, k != y
    cols, vals = preactivation(L - 1)
    ii = np.repeat(np.arange(n), K - 1)
    others = np.array([[k for k in range(K) if k != c] for c in range(K)], np.int64)
    kk = others[y].reshape(-1)
    yy = y[ii]
    d_cols = np.concatenate([cols[ii, yy], cols[ii, kk]], 1)
    d_vals = np.concatenate([vals[ii, yy], -vals[ii, kk]], 1)
    # integer scores: ties go to the lowest index, so k < y needs s_y - s_k >= 1 and k > y needs >= 0;
    # continuous weights: predict compares floats exactly, so every pair needs s_y - s_k >= eps
    tie = delta * (kk < yy) if integer else np.full(kk.shape, delta)
    npair = len(ii)
    correct_idx = None
    smax = 2 * amax[L - 1]
    if formulation in _HARD_FIT:
        t = tie + mu
        m.add_rows(d_cols, d_vals, t, np.inf)
        if formulation == "max_margin":  # s_y - s_k - m_o >= [k < y] + mu, m_o >= 0
            om = m.add_vars((1,), 0.0, smax, integer)
            aux["out_margin"] = om
            obj_terms.append((om, -1.0))
            m.add_rows(
                np.concatenate([d_cols, np.broadcast_to(om, (npair, 1))], 1),
                np.concatenate([d_vals, -np.ones((npair, 1))], 1),
                t,
                np.inf,
            )
        else:  # min_weight: nz = 0 => w = 0
            for w in (*kernel_idx, *bias_idx):
                nz = m.add_vars(w.shape, 0, 1)
                m.add_rows(w.reshape(-1, 1), [[1.0]], 0.0, 0.0, enforce_var=nz.reshape(-1), enforce_val=0)
                aux["nz"].append((w, nz))
                obj_terms.append((nz, 1.0))
    elif formulation == "max_correct":
        t = tie + mu
        correct_idx = m.add_vars((n,), 0, 1)
        m.add_rows(d_cols, d_vals, t, np.inf, enforce_var=correct_idx[ii], enforce_val=1)
        obj_terms.append((correct_idx, -1.0))
    elif formulation == "sat_margin":
        t = np.maximum(marg, tie)
        sat = m.add_vars((npair,), 0, 1)
        aux["sat"] = sat
        m.add_rows(d_cols, d_vals, t, np.inf, enforce_var=sat, enforce_val=1)
        obj_terms.append((sat, -1.0))
    else:  # min_hinge, big_m
        t = np.maximum(marg, tie)
        xi = m.add_vars((npair,), 0.0, t + smax, integer)
        aux["xi"] = xi
        m.add_rows(
            np.concatenate([d_cols, xi[:, None]], 1), np.concatenate([d_vals, np.ones((npair, 1))], 1), t, np.inf
        )
        obj_terms.append((xi, 1.0))
    aux["pairs"] = (ii, kk, np.broadcast_to(np.asarray(t, np.float64), (npair,)).copy())
    if objective:
        for idx, coef in obj_terms:
            m.add_objective(idx, coef)
    return BNNModel(
        model=m,
        formulation=formulation,
        sense=_SENSE[formulation],
        data=data,
        examples=ex,
        weights=spec,
        dims=dims,
        kernel_idx=kernel_idx,
        bias_idx=bias_idx,
        act_idx=act_idx,
        fixed_activations=fixed,
        correct_idx=correct_idx,
        neuron_idx=neuron_idx,
        aux=aux,
        delta=delta,
        options={"rho": rho, "neuron_penalty": alpha, "output_margin": mu, "margin": marg, "objective": objective},
    )
