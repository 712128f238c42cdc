"""Validation shared by the problem builders and data generators (private)."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np


def check_int(where: str, name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an ``int >= minimum`` (booleans refused), or a ``ValueError`` naming it."""
    if not isinstance(value, Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{where} argument `{name}`: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def check_nonnegative(where: str, name: str, value: Any) -> float:
    """``value`` as a finite ``float >= 0`` (booleans refused), or a ``ValueError`` naming it."""
    if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(float(value)) or value < 0:
        raise ValueError(f"{where} argument `{name}`: expected a finite real number >= 0, got {value!r}")
    return float(value)


def check_grid(where: str, grid: Any) -> tuple[int, int]:
    """A grid ``(rows, cols)`` of positive integers with at least two nodes."""
    try:
        dims = tuple(grid)
    except TypeError:
        dims = None
    if (
        dims is None
        or len(dims) != 2
        or any(not isinstance(d, Integral) or isinstance(d, bool) or d < 1 for d in dims)
        or dims[0] * dims[1] < 2
    ):
        raise ValueError(
            f"{where} argument `grid`: expected a pair (rows, cols) of positive integers with rows * cols >= 2, "
            f"got {grid!r}"
        )
    return int(dims[0]), int(dims[1])


def as_array(where: str, name: str, value: Any) -> np.ndarray:
    """``np.asarray(value)``, with a named ``ValueError`` for ragged or non-array input."""
    try:
        return np.asarray(value)
    except Exception as exc:  # numpy raises many things (ragged lists: ValueError)
        raise ValueError(f"{where} argument `{name}`: expected a numeric array, got {value!r}") from exc


def check_matrix(where: str, name: str, value: Any, ndim: int, shape_desc: str) -> np.ndarray:
    """``value`` as a finite real float64 NumPy array with ``ndim`` axes (none of them empty)."""
    arr = as_array(where, name, value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{where} argument `{name}`: expected a real numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{where} argument `{name}`: expected real numbers, got dtype {arr.dtype}")
    if arr.ndim != ndim or 0 in arr.shape:
        raise ValueError(f"{where} argument `{name}`: expected shape {shape_desc}, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{where} argument `{name}`: expected finite values, got {arr[idx]} at index {idx}")
    return arr


def check_generator(where: str, num_data: Any, num_features: Any, deg: Any, noise_width: Any) -> None:
    """The arguments every PyEPO-style data generator shares."""
    check_int(where, "num_data", num_data, minimum=1)
    check_int(where, "num_features", num_features, minimum=1)
    check_int(where, "deg", deg, minimum=1)
    check_nonnegative(where, "noise_width", noise_width)


def random_state(where: str, seed: Any) -> np.random.RandomState:
    """``np.random.RandomState(seed)`` (PyEPO's generator), with a named error for a bad seed."""
    try:
        return np.random.RandomState(seed)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} argument `seed`: expected None or an integer in [0, 2**32), got {seed!r}") from exc
