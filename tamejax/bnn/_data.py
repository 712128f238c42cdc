"""Loading and validating training data for :mod:`tamejax.bnn` (NumPy arrays or a CSV file).

Inputs are scaled to integers by an exact, recorded map (:class:`tamejax.bnn.Scaling`):
``x_int = clip(rint((X - shift) * scale), lo, hi)``. With ``scaling="exact"`` (default) the
map is ``x_int = X_k * 10**j_k`` per feature ``k``, with the smallest ``j_k <= 6`` making every
training value of that feature an integer (up to float64 representation error, 4 ulps), so no
information is lost; new inputs with more decimals are rounded onto that grid by the same
``rint``; with ``scaling=levels`` each feature is quantized to ``levels`` integer
levels between its training minimum and maximum, centred on 0 (``{-2, ..., 2}`` for 5 levels):
small centred integers make the {-1, 0, 1} biases and the sign threshold at 0 meaningful and
the models much easier for the solvers.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np

from tamejax.bnn._types import Scaling

__all__ = ["BNNData", "load_data"]

_MAX_DECIMALS = 6


@dataclasses.dataclass(frozen=True, eq=False)
class BNNData:
    """A validated training set.

    Attributes:
      X: ``(n, d)`` int64 scaled inputs.
      y: ``(n,)`` int64 labels in ``0..n_classes - 1``.
      n_classes: number of classes ``K >= 2``.
      scaling: the map from raw inputs to ``X``.
    """

    X: np.ndarray
    y: np.ndarray
    n_classes: int
    scaling: Scaling

    @property
    def n(self) -> int:
        """Number of examples."""
        return int(self.X.shape[0])

    @property
    def d(self) -> int:
        """Number of features."""
        return int(self.X.shape[1])

    def subset(self, idx: Any) -> BNNData:
        """The examples ``idx`` (same classes and scaling).

        Args:
          idx: indices or a boolean mask.

        Returns:
          A new ``BNNData``.
        """
        return BNNData(self.X[idx], self.y[idx], self.n_classes, self.scaling)


def _read_csv(path: str, label_column: int) -> tuple[np.ndarray, np.ndarray]:
    if not os.path.exists(path):
        raise ValueError(f"argument `X`: CSV file {path!r} does not exist")
    with open(path) as fh:
        first = fh.readline()
    skip = 0
    try:
        [float(t) for t in first.strip().split(",") if t.strip() != ""]
    except ValueError:
        skip = 1  # a header row
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"argument `X`: could not read CSV file {path!r} as numbers: {err}") from None
    if table.shape[1] < 2:
        raise ValueError(
            f"argument `X`: CSV file {path!r} needs at least 2 columns (features and label), got {table.shape[1]}"
        )
    ncol = table.shape[1]
    if not -ncol <= label_column < ncol:
        raise ValueError(f"argument `label_column`: expected an index in [-{ncol}, {ncol}), got {label_column}")
    lc = label_column % ncol
    y = table[:, lc]
    X = np.delete(table, lc, axis=1)
    return X, y


def _is_integral(z: np.ndarray) -> np.ndarray:
    """Whether each value is an integer up to float64 representation error (4 ulps)."""
    return np.abs(z - np.rint(z)) <= 4 * np.spacing(np.abs(z))


def _exact_scaling(X: np.ndarray) -> Scaling:
    scales = []
    for k in range(X.shape[1]):
        col = X[:, k]
        for j in range(_MAX_DECIMALS + 1):
            z = col * 10.0**j
            if np.all(_is_integral(z)):
                if np.max(np.abs(z), initial=0) >= 2**40:
                    raise ValueError(
                        f"argument `scaling`: 'exact' scaling of column {k} needs 10^{j}, and |X * 10^{j}| reaches "
                        f"{np.max(np.abs(z)):.6g} >= 2^40: pass scaling=<number of levels> (e.g. 16) or a Scaling"
                    )
                scales.append(10.0**j)
                break
        else:
            i = int(np.flatnonzero(~_is_integral(col * 10.0**_MAX_DECIMALS))[0])
            raise ValueError(
                f"argument `scaling`: 'exact' needs inputs with at most {_MAX_DECIMALS} decimals, got "
                f"X[{i}, {k}] = {col[i]!r}: pass scaling=<number of levels> (e.g. 16) to quantize each feature, "
                "or a Scaling"
            )
    return Scaling(tuple(scales), (0.0,) * X.shape[1])


def _quantized_scaling(X: np.ndarray, levels: int) -> Scaling:
    lo = X.min(axis=0)
    hi = X.max(axis=0)
    span = hi - lo
    scale = np.where(span > 0, (levels - 1) / np.where(span > 0, span, 1.0), 0.0)
    half = levels // 2
    # centred: level j of the training range [min, max] becomes j - levels // 2
    shift = np.where(scale > 0, lo + half / np.where(scale > 0, scale, 1.0), lo)
    return Scaling(tuple(scale.tolist()), tuple(shift.tolist()), float(-half), float(levels - 1 - half))


def load_data(
    X: Any,
    y: Any = None,
    *,
    label_column: int = -1,
    scaling: Any = "exact",
    n_classes: int | None = None,
) -> BNNData:
    """Validate a training set and scale its inputs to integers.

    Args:
      X: ``(n, d)`` array (NumPy, JAX, list), or the path of a CSV file (numbers separated by
        commas; a non-numeric first line is a header and skipped) holding features and labels.
      y: ``(n,)`` integer labels in ``0..K-1``; ``None`` with a CSV path (labels read from
        ``label_column``).
      label_column: the CSV column holding the labels (default: the last).
      scaling: ``"exact"`` (per feature the smallest power of ten ``10**j``, ``j <= 6``, making
        every training value an integer; later inputs are mapped by the same ``rint``, so
        values between grid points are rounded), an integer number of levels ``L >= 2`` (per feature, the training range
        ``[min, max]`` mapped linearly onto the integers ``-(L // 2) .. L - 1 - L // 2`` and clipped
        there), or a :class:`Scaling`.
      n_classes: number of classes ``K`` (default ``max(y) + 1``).

    Returns:
      The validated :class:`BNNData` (scaled inputs, labels, classes, scaling).

    Raises:
      ValueError: naming the field: NaN/inf in `X` or `y`, wrong shapes, `X`/`y` length
        mismatch, non-integer or negative labels, labels ``>= n_classes``, fewer than 2 classes
        present, a missing CSV file, or inputs that `scaling` cannot map exactly.
      TypeError: on non-numeric `X` or `y`.
    """
    if isinstance(X, str | os.PathLike):
        if y is not None:
            raise ValueError("argument `y`: must be None when `X` is a CSV path (labels come from `label_column`)")
        X, y = _read_csv(os.fspath(X), label_column)
    if y is None:
        raise ValueError("argument `y`: expected labels (n,), got None")
    try:
        Xa = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"argument `X`: expected a numeric array (n, d), got {type(X).__name__}: {err}") from None
    try:
        ya = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"argument `y`: expected integer labels (n,), got {type(y).__name__}: {err}") from None
    if Xa.ndim != 2 or Xa.shape[0] == 0 or Xa.shape[1] == 0:
        raise ValueError(f"argument `X`: expected a non-empty 2-D array (n, d), got shape {Xa.shape}")
    if ya.ndim != 1:
        raise ValueError(f"argument `y`: expected a 1-D array of labels (n,), got shape {ya.shape}")
    if ya.shape[0] != Xa.shape[0]:
        raise ValueError(f"argument `y`: expected {Xa.shape[0]} labels (one per row of `X`), got {ya.shape[0]}")
    bad = ~np.isfinite(Xa)
    if np.any(bad):
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"argument `X`: expected finite values, got {Xa[i, j]} at row {i}, column {j}")
    if not np.all(np.isfinite(ya)):
        i = int(np.flatnonzero(~np.isfinite(ya))[0])
        raise ValueError(f"argument `y`: expected finite integer labels, got {ya[i]} at index {i}")
    if np.any(ya != np.rint(ya)):
        i = int(np.flatnonzero(ya != np.rint(ya))[0])
        raise ValueError(f"argument `y`: expected integer labels, got {ya[i]} at index {i}")
    if np.any(ya < 0):
        i = int(np.flatnonzero(ya < 0)[0])
        raise ValueError(f"argument `y`: expected labels in 0..K-1, got {int(ya[i])} at index {i}")
    yi = ya.astype(np.int64)
    if n_classes is None:
        K = int(yi.max()) + 1
    else:
        if not isinstance(n_classes, int | np.integer) or isinstance(n_classes, bool) or n_classes < 2:
            raise ValueError(f"argument `n_classes`: expected an integer >= 2, got {n_classes!r}")
        K = int(n_classes)
        if yi.max() >= K:
            i = int(np.argmax(yi))
            raise ValueError(f"argument `y`: expected labels in 0..{K - 1} (n_classes={K}), got {yi[i]} at index {i}")
    if np.unique(yi).size < 2:
        raise ValueError(f"argument `y`: expected at least 2 distinct classes, got only class {int(yi[0])}")
    if K < 2:  # pragma: no cover - implied by the previous check
        raise ValueError("argument `y`: expected at least 2 classes")
    if isinstance(scaling, Scaling):
        if scaling.n_features != Xa.shape[1]:
            raise ValueError(f"argument `scaling`: expected {Xa.shape[1]} features, got {scaling.n_features}")
        sc = scaling
    elif isinstance(scaling, str) and scaling == "exact":
        sc = _exact_scaling(Xa)
    elif isinstance(scaling, int | np.integer) and not isinstance(scaling, bool) and scaling >= 2:
        sc = _quantized_scaling(Xa, int(scaling))
    else:
        raise ValueError(
            f"argument `scaling`: expected 'exact', an integer number of levels >= 2 or a Scaling, got {scaling!r}"
        )
    Xi = sc.apply(Xa)
    if np.max(np.abs(Xi), initial=0) >= 2**40 or not math.isfinite(float(np.max(np.abs(Xi), initial=0))):
        raise ValueError("argument `scaling`: scaled inputs exceed 2**40 in magnitude")
    return BNNData(Xi, yi, K, sc)
