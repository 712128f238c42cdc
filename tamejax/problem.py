"""The `MIP` pytree: a mixed-integer linear program in the `scipy.optimize.milp` convention.

    minimize    c @ x
    subject to  A_ub @ x <= b_ub
                A_eq @ x == b_eq
                lb <= x <= ub
                x[j] integer where integrality[j]

Numeric fields are pytree leaves (differentiable, batchable along leading axes);
``integrality`` is static metadata.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["MIP"]

_LEAVES = ("c", "A_ub", "b_ub", "A_eq", "b_eq", "lb", "ub")


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _as_array(name: str, value: Any) -> jax.Array:
    """Convert to a floating JAX array, rejecting non-numeric data with a named error."""
    if isinstance(value, jax.Array | jax.core.Tracer):
        arr = value
    else:
        try:
            np_arr = np.asarray(value)
        except Exception as exc:  # pragma: no cover - numpy raises many things
            raise ValueError(f"MIP field `{name}`: expected a numeric array, got {value!r}") from exc
        if np_arr.dtype == object or not (np.issubdtype(np_arr.dtype, np.number) or np_arr.dtype == np.bool_):
            raise ValueError(f"MIP field `{name}`: expected a real numeric array, got dtype {np_arr.dtype}")
        arr = np_arr
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise ValueError(f"MIP field `{name}`: expected real numbers, got dtype {arr.dtype}")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = jnp.asarray(arr, dtype=jnp.result_type(float))
    out = jnp.asarray(arr)
    if isinstance(arr, np.ndarray) and out.dtype != arr.dtype:
        _warn_if_integers_changed(name, arr, np.asarray(out))
    return out


def _warn_if_integers_changed(name: str, before: np.ndarray, after: np.ndarray) -> None:
    """Warn when JAX's dtype (float32 unless x64) changes an integer-valued datum.

    Rounding 0.1 to float32 is expected of any JAX computation; turning the integer
    16777217 into 16777216 silently changes a combinatorial problem, so it is reported.
    """
    with np.errstate(invalid="ignore"):
        integral = np.isfinite(before) & (np.asarray(before) == np.round(before))
        changed = integral & (after.astype(np.float64) != before.astype(np.float64))
    if np.any(changed):
        idx = tuple(int(i) for i in np.argwhere(changed)[0])
        warnings.warn(
            f"MIP field `{name}`: integer data changed by conversion to {after.dtype} (JAX's default dtype): "
            f"{before[idx]!r} became {after[idx]!r} at index {idx}; enable jax_enable_x64 for exact data",
            UserWarning,
            stacklevel=4,
        )


def _fmt_shape(shape: Sequence[Any]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


class MIP:
    """A mixed-integer linear program (scipy.optimize.milp convention), as a JAX pytree.

    The problem is

    $$\\min_x\\; c^\\top x \\quad\\text{s.t.}\\quad A_{ub} x \\le b_{ub},\\; A_{eq} x = b_{eq},\\;
    lb \\le x \\le ub,\\; x_j \\in \\mathbb{Z} \\text{ for } j \\in I.$$

    Args:
      c: objective coefficients, shape ``(..., n)``. Required.
      A_ub: inequality matrix, shape ``(..., m_ub, n)``; ``None`` means no inequalities.
      b_ub: inequality right-hand side, shape ``(..., m_ub)``. Given iff ``A_ub`` is.
      A_eq: equality matrix, shape ``(..., m_eq, n)``; ``None`` means no equalities.
      b_eq: equality right-hand side, shape ``(..., m_eq)``. Given iff ``A_eq`` is.
      lb: lower bounds, shape ``(..., n)`` or a scalar; default ``0`` (as scipy). ``-inf`` allowed.
      ub: upper bounds, shape ``(..., n)`` or a scalar; default ``+inf``. ``+inf`` allowed.
      integrality: static, length ``n``: ``True``/``1`` marks an integer variable,
        ``False``/``0`` a continuous one; a scalar applies to every variable.
        Default: all continuous (as scipy).

    Leading axes ``...`` are batch axes: every leaf of a batched problem carries the same
    batch shape (broadcast the unbatched ones), so ``jax.vmap`` over a batch of problems
    and passing a batched problem directly are equivalent.

    Numeric data follow JAX's default floating dtype (float32 unless
    ``jax_enable_x64`` is set); enable x64 when coefficients need more than 24 bits.

    Validation happens at construction: shapes always; finiteness (``c``, ``A``, ``b`` must
    be finite, bounds may be infinite), NaN and ``lb <= ub`` whenever the data are concrete
    (not traced). Every failure raises ``ValueError`` naming the field, what was expected
    and what was received. Inside ``jit`` the host re-checks values before solving and
    reports a bad instance with status ``ERROR``.
    """

    c: jax.Array
    A_ub: jax.Array
    b_ub: jax.Array
    A_eq: jax.Array
    b_eq: jax.Array
    lb: jax.Array
    ub: jax.Array
    integrality: tuple[bool, ...]

    def __init__(
        self,
        c: Any,
        A_ub: Any = None,
        b_ub: Any = None,
        A_eq: Any = None,
        b_eq: Any = None,
        lb: Any = None,
        ub: Any = None,
        integrality: Any = None,
    ) -> None:
        c = _as_array("c", c)
        if c.ndim < 1:
            raise ValueError(f"MIP field `c`: expected shape (..., n) with ndim >= 1, got shape {c.shape}")
        n = c.shape[-1]
        batch = tuple(c.shape[:-1])
        dtype = c.dtype

        def pair(a_name: str, A: Any, b_name: str, b: Any) -> tuple[jax.Array, jax.Array]:
            if (A is None) != (b is None):
                given, missing = (a_name, b_name) if A is not None else (b_name, a_name)
                raise ValueError(f"MIP field `{missing}`: expected an array because `{given}` is given, got None")
            if A is None:
                return jnp.zeros(batch + (0, n), dtype), jnp.zeros(batch + (0,), dtype)
            A = _as_array(a_name, A)
            b = _as_array(b_name, b)
            if A.ndim < 2 or A.shape[-1] != n:
                raise ValueError(
                    f"MIP field `{a_name}`: expected shape (..., m, {n}) (n = {n} from `c`), "
                    f"got shape {_fmt_shape(A.shape)}"
                )
            m = A.shape[-2]
            if b.ndim < 1 or b.shape[-1] != m:
                raise ValueError(
                    f"MIP field `{b_name}`: expected shape (..., {m}) (m = {m} rows of `{a_name}`), "
                    f"got shape {_fmt_shape(b.shape)}"
                )
            return A, b

        A_ub, b_ub = pair("A_ub", A_ub, "b_ub", b_ub)
        A_eq, b_eq = pair("A_eq", A_eq, "b_eq", b_eq)

        def bound(name: str, v: Any, default: float) -> jax.Array:
            if v is None:
                return jnp.full(batch + (n,), default, dtype)
            v = _as_array(name, v)
            if v.ndim == 0:
                return jnp.broadcast_to(v, batch + (n,))
            if v.shape[-1] != n:
                raise ValueError(
                    f"MIP field `{name}`: expected shape (..., {n}) or a scalar, got shape {_fmt_shape(v.shape)}"
                )
            return v

        lb = bound("lb", lb, 0.0)
        ub = bound("ub", ub, math.inf)

        # Batch shapes: every leaf must carry the same leading axes.
        fields = {
            "c": (c, 1),
            "A_ub": (A_ub, 2),
            "b_ub": (b_ub, 1),
            "A_eq": (A_eq, 2),
            "b_eq": (b_eq, 1),
            "lb": (lb, 1),
            "ub": (ub, 1),
        }
        batch_shapes = {k: tuple(v.shape[: v.ndim - core]) for k, (v, core) in fields.items()}
        try:
            full_batch = np.broadcast_shapes(*batch_shapes.values())
        except ValueError:
            full_batch = None
        if full_batch is None or any(bs != full_batch for bs in batch_shapes.values()):
            # Broadcast leaves whose batch shape is a prefix-compatible broadcast; refuse otherwise.
            if full_batch is None:
                desc = ", ".join(f"{k}: {_fmt_shape(s)}" for k, s in batch_shapes.items())
                raise ValueError(f"MIP: leading (batch) axes of the fields do not broadcast together; got {desc}")
            new = {}
            for k, (v, core) in fields.items():
                new[k] = jnp.broadcast_to(v, tuple(full_batch) + tuple(v.shape[v.ndim - core :]))
            c, A_ub, b_ub, A_eq, b_eq, lb, ub = (new[k] for k in _LEAVES)
        # One floating dtype for every leaf (the widest given), so that the host sees the data
        # as given and gradients come back in the dtype of the data.
        dtype = jnp.result_type(c, A_ub, b_ub, A_eq, b_eq, lb, ub)
        c, A_ub, b_ub, A_eq, b_eq, lb, ub = (v.astype(dtype) for v in (c, A_ub, b_ub, A_eq, b_eq, lb, ub))

        self.c, self.A_ub, self.b_ub, self.A_eq, self.b_eq, self.lb, self.ub = (
            c,
            A_ub,
            b_ub,
            A_eq,
            b_eq,
            lb,
            ub,
        )
        self.integrality = self._parse_integrality(integrality, n)
        self._check_values()

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _parse_integrality(integrality: Any, n: int) -> tuple[bool, ...]:
        if integrality is None:
            return (False,) * n
        if isinstance(integrality, jax.core.Tracer):
            raise ValueError("MIP field `integrality`: expected static (concrete) values, got a traced array")
        arr = np.asarray(integrality)
        if arr.ndim == 0:
            arr = np.full((n,), arr)
        if arr.shape != (n,):
            raise ValueError(
                f"MIP field `integrality`: expected shape ({n},) or a scalar, got shape {_fmt_shape(arr.shape)}"
            )
        if arr.dtype != np.bool_:
            if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isin(arr, (0, 1))):
                bad = arr[~np.isin(arr, (0, 1))] if np.issubdtype(arr.dtype, np.number) else arr
                raise ValueError(
                    "MIP field `integrality`: expected booleans or 0/1 (semi-continuous kinds 2 and 3 "
                    f"of scipy are not supported), got {bad.tolist()[:5]}"
                )
        return tuple(bool(v) for v in arr)

    def _check_values(self) -> None:
        leaves = [getattr(self, k) for k in _LEAVES]
        if not all(_is_concrete(v) for v in leaves):
            return
        for name in ("c", "A_ub", "b_ub", "A_eq", "b_eq"):
            v = np.asarray(getattr(self, name))
            if not np.all(np.isfinite(v)):
                idx = tuple(int(i) for i in np.argwhere(~np.isfinite(v))[0])
                raise ValueError(f"MIP field `{name}`: expected finite values, got {v[idx]} at index {idx}")
        lb, ub = np.asarray(self.lb), np.asarray(self.ub)
        for name, v in (("lb", lb), ("ub", ub)):
            if np.any(np.isnan(v)):
                idx = tuple(int(i) for i in np.argwhere(np.isnan(v))[0])
                raise ValueError(f"MIP field `{name}`: expected numbers or ±inf, got nan at index {idx}")
        if np.any(lb == np.inf):
            idx = tuple(int(i) for i in np.argwhere(lb == np.inf)[0])
            raise ValueError(f"MIP field `lb`: expected values < +inf, got +inf at index {idx}")
        if np.any(ub == -np.inf):
            idx = tuple(int(i) for i in np.argwhere(ub == -np.inf)[0])
            raise ValueError(f"MIP field `ub`: expected values > -inf, got -inf at index {idx}")
        if np.any(lb > ub):
            idx = tuple(int(i) for i in np.argwhere(lb > ub)[0])
            raise ValueError(
                f"MIP fields `lb`, `ub`: expected lb <= ub, got lb = {lb[idx]} > ub = {ub[idx]} at index {idx}"
            )

    # ------------------------------------------------------------------ pytree
    def tree_flatten(self) -> tuple[tuple[jax.Array, ...], tuple[bool, ...]]:
        return tuple(getattr(self, k) for k in _LEAVES), self.integrality

    @classmethod
    def tree_unflatten(cls, integrality: tuple[bool, ...], leaves: Sequence[Any]) -> MIP:
        # No validation here: under transformations leaves may be tracers, None or sentinels.
        obj = object.__new__(cls)
        for k, v in zip(_LEAVES, leaves, strict=True):
            object.__setattr__(obj, k, v)
        obj.integrality = integrality
        return obj

    # ------------------------------------------------------------------ properties
    @property
    def n(self) -> int:
        """Number of variables."""
        return len(self.integrality)

    @property
    def m_ub(self) -> int:
        """Number of inequality rows."""
        return int(self.A_ub.shape[-2])

    @property
    def m_eq(self) -> int:
        """Number of equality rows."""
        return int(self.A_eq.shape[-2])

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading (batch) axes shared by every leaf; ``()`` for a single problem."""
        return tuple(self.c.shape[:-1])

    @property
    def is_mip(self) -> bool:
        """Whether any variable is integer."""
        return any(self.integrality)

    def replace(self, **changes: Any) -> MIP:
        """Return a copy with some fields replaced (validated like the constructor)."""
        kw = {k: getattr(self, k) for k in _LEAVES}
        kw["integrality"] = self.integrality
        kw.update(changes)
        return MIP(**kw)

    def __getitem__(self, index: Any) -> MIP:
        """Index the batch axes: ``problems[3]`` is the fourth problem of a batch."""
        if not self.batch_shape:
            raise IndexError("MIP: this problem has no batch axes to index")
        parts = index if isinstance(index, tuple) else (index,)
        if any(i is None or i is Ellipsis for i in parts) or len(parts) > len(self.batch_shape):
            raise IndexError(
                f"MIP: expected an index of the batch axes {self.batch_shape} (at most {len(self.batch_shape)} "
                f"entries, no None or ...), got {index!r}"
            )
        out = MIP.tree_unflatten(self.integrality, [getattr(self, k)[index] for k in _LEAVES])
        core = {"c": 1, "A_ub": 2, "b_ub": 1, "A_eq": 2, "b_eq": 1, "lb": 1, "ub": 1}
        if any(getattr(out, k).shape[-d:] != getattr(self, k).shape[-d:] for k, d in core.items()):
            raise IndexError(f"MIP: index {index!r} reaches past the batch axes {self.batch_shape}")
        return out

    def __repr__(self) -> str:
        kinds = sum(self.integrality)
        b = f", batch_shape={self.batch_shape}" if self.batch_shape else ""
        return f"MIP(n={self.n}, integer={kinds}, m_ub={self.m_ub}, m_eq={self.m_eq}{b})"

    def to_numpy(self) -> dict[str, np.ndarray]:
        """The numeric fields as float64 NumPy arrays (concrete problems only)."""
        return {k: np.asarray(getattr(self, k), dtype=np.float64) for k in _LEAVES} | {
            "integrality": np.asarray(self.integrality, dtype=bool)
        }

    # ------------------------------------------------------------------ MPS
    @classmethod
    def from_mps(cls, path: str | os.PathLike[str]) -> MIP:
        """Read a problem from an MPS file (free or fixed format), through OR-Tools.

        Ranged rows ``l <= a x <= u`` become two inequality rows, ``>=`` rows are
        negated into ``<=`` rows, and a maximization objective is negated (a warning says
        so, since the MIP convention is minimization). An objective offset cannot be
        represented and raises ``ValueError``.
        """
        from tamejax.backends.mps import read_mps

        data = read_mps(os.fspath(path))
        return cls(**data)

    def to_mps(self, path: str | os.PathLike[str], *, name: str = "tamejax") -> None:
        """Write a (single, concrete) problem to an MPS file through OR-Tools."""
        if self.batch_shape:
            raise ValueError(f"MIP.to_mps: expected a single problem, got batch_shape {self.batch_shape}")
        from tamejax.backends.mps import write_mps

        write_mps(os.fspath(path), self.to_numpy(), name=name)


jax.tree_util.register_pytree_node_class(MIP)
