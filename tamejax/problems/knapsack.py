"""The multi-dimensional 0-1 knapsack (PyEPO's benchmark) and its data generator.

References:
  Tang, B. & Khalil, E. B. (2022). PyEPO: A PyTorch-based end-to-end predict-then-optimize
  library for linear and integer programming. arXiv:2206.14234.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tamejax.oracle import Oracle
from tamejax.problem import MIP
from tamejax.problems._common import as_array, check_generator, check_int, check_matrix, random_state

__all__ = ["knapsack", "knapsack_data"]


def knapsack(weights: Any, capacities: Any, *, backend: str = "scip", **options: Any) -> Oracle:
    """The oracle of the multi-dimensional 0-1 knapsack (item values ``theta``, maximized).

    $$\\max_{x \\in \\{0,1\\}^n} \\theta^\\top x \\quad\\text{s.t.}\\quad
    \\sum_{j=1}^{n} w_{ij} x_j \\le C_i, \\quad i = 1, \\dots, m,$$

    PyEPO's model (``pyepo.model.*.knapsackModel``): binary ``x``, one capacity row per
    dimension. With ``knapsack_data``'s weights and capacities chosen as in PyEPO's examples
    (e.g. ``capacities = 0.5 * weights.sum(axis=1)``) its costs are the item values.

    Args:
      weights: item weights ``w``, shape ``(m, n)`` (``m`` dimensions, ``n`` items),
        finite and ``>= 0``; a vector ``(n,)`` is one dimension.
      capacities: capacities ``C``, shape ``(m,)``, finite and ``> 0``; a scalar when ``m = 1``.
      backend: a MIP solver; default ``"scip"``.
      **options: solver options of ``Oracle`` (``time_limit``, ``rel_gap``, ``threads``, ``seed``).

    Returns:
      An ``Oracle`` with ``sense="max"`` and ``n`` binary variables (``x_j = 1``: item ``j``
      is packed).

    Raises:
      ValueError: wrong shapes, negative or non-finite weights, non-positive capacities, an
        unknown backend or option.
    """
    where = "knapsack"
    w = as_array(where, "weights", weights)
    if w.ndim == 1:
        w = w.reshape(1, -1)
    w = check_matrix(where, "weights", w, 2, "(m, n) with m, n >= 1")
    m, n = w.shape
    cap = as_array(where, "capacities", capacities)
    if cap.ndim == 0 and m == 1:
        cap = cap.reshape(1)
    cap = check_matrix(where, "capacities", cap, 1, f"({m},) (m = {m} rows of `weights`)")
    if cap.shape != (m,):
        raise ValueError(
            f"{where} argument `capacities`: expected shape ({m},) (m = {m} rows of `weights`), got shape {cap.shape}"
        )
    if np.any(w < 0):
        idx = tuple(int(i) for i in np.argwhere(w < 0)[0])
        raise ValueError(f"{where} argument `weights`: expected values >= 0, got {w[idx]} at index {idx}")
    if np.any(cap <= 0):
        i = int(np.argwhere(cap <= 0)[0, 0])
        raise ValueError(f"{where} argument `capacities`: expected values > 0, got {cap[i]} at index {i}")
    problem = MIP(np.zeros(n), A_ub=w, b_ub=cap, lb=0.0, ub=1.0, integrality=True)
    return Oracle(problem, sense="max", backend=backend, **options)


def knapsack_data(
    num_data: int,
    num_features: int,
    num_items: int,
    dim: int = 1,
    deg: int = 1,
    noise_width: float = 0.0,
    seed: Any = 135,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, features and item values of PyEPO's knapsack benchmark, bit for bit.

    With ``p = num_features``, ``n = num_items`` and ``w = noise_width``: weights
    $W_{ij} = k_{ij} / 100$, $k_{ij}$ uniform on $\\{300, \\dots, 799\\}$ (shape
    ``(dim, num_items)``, the same for every instance), a fixed matrix ``B`` with i.i.d.
    entries $B_{jk} \\sim \\mathrm{Bernoulli}(0.5)$, features $x_i \\sim \\mathcal{N}(0, I_p)$
    and item values

    $$c_{ij} = \\left\\lceil \\frac{5 \\left[\\left(\\tfrac{1}{\\sqrt{p}} (B x_i)_j + 3\\right)^{\\deg}
    + 1\\right]}{3.5^{\\deg}} \\cdot \\varepsilon_{ij} \\right\\rceil, \\qquad
    \\varepsilon_{ij} \\sim \\mathcal{U}[1 - w, 1 + w],$$

    a polynomial of degree ``deg`` in the features, rescaled, perturbed by multiplicative
    noise of half-width ``w`` and rounded up to an integer. The draws are made in PyEPO's
    order (weights, ``B``, features, noise) from ``numpy.random.RandomState(seed)``, so the
    result equals ``pyepo.data.knapsack.genData`` with the same arguments bit for bit.

    Args:
      num_data: number of instances ``>= 1``.
      num_features: feature dimension ``p >= 1``.
      num_items: number of items ``n >= 1``.
      dim: number of knapsack dimensions (capacity rows) ``>= 1``.
      deg: polynomial degree, an integer ``>= 1``.
      noise_width: half-width ``w >= 0`` of the multiplicative noise.
      seed: seed of ``numpy.random.RandomState`` (default 135, as PyEPO).

    Returns:
      ``(weights, features, values)``: ``float64`` arrays ``(dim, num_items)`` and
      ``(num_data, num_features)``, and a ``float32`` array ``(num_data, num_items)`` of
      integer values (PyEPO's dtypes).

    Raises:
      ValueError: a non-positive count, ``deg`` not an integer ``>= 1``, a negative or
        non-finite ``noise_width``, a malformed ``seed``.
    """
    where = "knapsack_data"
    check_generator(where, num_data, num_features, deg, noise_width)
    check_int(where, "num_items", num_items)
    check_int(where, "dim", dim)
    rnd = random_state(where, seed)
    n, p, d, m = num_data, num_features, dim, num_items
    # PyEPO's statements, in PyEPO's order (bit-for-bit reproduction).
    weights = rnd.choice(range(300, 800), size=(d, m)) / 100
    B = rnd.binomial(1, 0.5, (m, p))
    x = rnd.normal(0, 1, (n, p))
    c = (x @ B.T / np.sqrt(p) + 3) ** deg + 1
    c *= 5
    c /= 3.5**deg
    epsilon = rnd.uniform(1 - noise_width, 1 + noise_width, (n, m))
    c *= epsilon
    c = np.ceil(c).astype(np.float32)
    return weights, x, c
