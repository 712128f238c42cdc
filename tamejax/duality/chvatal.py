"""Chvátal functions as JAX pytrees: the certificates produced by Gomory's cutting-plane algorithm.

A Chvátal function (Chvátal 1973; Blair & Jeroslow 1982) is built from linear maps,
non-negative combinations and integer round-ups, composed finitely often. The ones produced by
a cutting-plane run have the layered form

$$ g_k(d) = \\Big\\lceil u_k^\\top d + \\sum_{i<k} V_{ki}\\, g_i(d) \\Big\\rceil \\quad (V \\ge 0),
\\qquad F(d) = y^\\top d + \\sum_k w_k\\, g_k(d) \\quad (w \\ge 0), $$

one ``g_k`` per cut. ``F`` is subadditive with ``F(0) = 0`` (``ceil`` is subadditive and the
combinations are non-negative, the linear part is additive), piecewise linear, lower
semicontinuous, and tame (definable in the o-minimal structure of semilinear sets).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ChvatalFunction", "BranchAndBoundFunction"]


_UNROLL = 32  # up to this many cuts, evaluate with an unrolled Python loop; beyond, lax.fori_loop


def _tol_for(dtype) -> float:
    return 1e-9 if jnp.finfo(dtype).bits >= 64 else 1e-4


@dataclasses.dataclass(frozen=True, eq=False)
class ChvatalFunction:
    """A Chvátal function of a right-hand side, evaluated in JAX (``jit``/``vmap``/``grad``).

    $$F(b) = \\text{offset} + \\text{scale}\\,\\Big(y^\\top d + \\sum_{k=1}^K w_k\\, g_k(d)\\Big),
    \\quad g_k(d) = \\Big\\lceil u_k^\\top d + \\sum_{i<k} V_{ki}\\, g_i(d)\\Big\\rceil,\\quad
    d = \\phi(b),$$

    where ``phi(b) = in_matrix @ b + in_offset`` with the components flagged in ``in_floor``
    rounded down. ``phi`` maps the user's right-hand side ``b = concat(b_ub, b_eq)`` onto the
    canonical standard form ``{A' x' = d, x' >= 0 integer}`` of ``tamejax.duality.certify``
    (slacks, bound rows, integer row scaling); ``canonical()`` drops it. ``w >= 0`` and
    ``V >= 0`` (strictly lower triangular) make the canonical part subadditive.

    Round-ups use a tolerance ``tol`` (``ceil(t - tol)``, and ``floor(t + tol)`` in ``phi``),
    ``1e-9`` unless given, so that data that are integers in exact arithmetic are not pushed
    across a step by rounding errors. Evaluation is float64 only: in float32 the rounding
    errors of ``u_k^T d`` (coefficients and right-hand sides in the thousands) exceed any
    fixed tolerance and a single round-up step is then enough to break ``F <= z`` (seen:
    ``F(b) = 1434`` for ``z(b) = -408``), so calling ``F`` with float32 parameters raises a
    ``TypeError``; enable ``jax_enable_x64`` or call it inside ``with jax.enable_x64(True):``.
    Even in float64 the JAX evaluation of a long chain of cuts is only as faithful as the
    accumulated rounding allows; ``verify`` compares it with the host evaluation. The exact
    rational parameters, when the certificate was computed exactly, are kept by the
    ``Certificate``.

    Automatic differentiation: ``ceil`` has derivative 0 and the floor in ``phi`` is applied
    as a piecewise-constant correction with zero derivative, so ``jax.grad`` gives
    ``scale * in_matrix.T @ y``, the slope of the affine part ``y^T d`` of the *canonical*
    function, pulled back through the linear part of ``phi``. In ``b_eq`` (and in ``b_ub``
    when the canonical function is differentiable there) that is the slope of the active
    piece of ``F``. It is **not** the derivative of ``F`` as a function of the user's ``b``
    in general: for a ``<=`` row with integer data, the slack is an integer variable, ``phi``
    floors ``b_ub`` and ``F`` (like ``z``) is a step function of ``b_ub``, whose derivative is
    0 almost everywhere, while ``jax.grad`` returns the LP-type price ``y`` (a surrogate, not an
    element of a conservative field of ``z``). Dropping the floor does not help: ``F``
    evaluated at real, unfloored ``b_ub`` is not a lower bound of ``z`` (brute force finds
    ``F - z`` up to 1.5 on small knapsacks). See ``docs/theory.md``.

    Attributes:
      in_matrix: ``(m, p)`` linear part of ``phi``.
      in_offset: ``(m,)`` constant part of ``phi``.
      U: ``(K, m)`` linear coefficients of the cuts.
      V: ``(K, K)`` non-negative, strictly lower-triangular coefficients on earlier cuts.
      y: ``(m,)`` final linear (LP dual) part.
      w: ``(K,)`` non-negative final weights of the cuts.
      scale: positive scalar (the inverse of the integer cost scaling).
      offset: scalar objective constant (from shifted bounds).
      in_floor: static, length ``m``: components of ``phi`` rounded down.
      tol: static rounding tolerance (``None``: ``1e-9``).
    """

    in_matrix: jax.Array
    in_offset: jax.Array
    U: jax.Array
    V: jax.Array
    y: jax.Array
    w: jax.Array
    scale: jax.Array
    offset: jax.Array
    in_floor: tuple[bool, ...] = ()
    tol: float | None = None

    @property
    def num_cuts(self) -> int:
        """Number ``K`` of round-up layers (cuts)."""
        return int(self.U.shape[0])

    @property
    def num_rows(self) -> int:
        """Dimension ``m`` of the canonical right-hand side."""
        return int(self.U.shape[1]) if self.U.ndim == 2 else int(self.y.shape[-1])

    def canonical(self) -> ChvatalFunction:
        """The same function of the canonical right-hand side ``d`` (identity ``phi``, no offset)."""
        m = self.y.shape[-1]
        dt = self.y.dtype
        return dataclasses.replace(
            self,
            in_matrix=jnp.eye(m, dtype=dt),
            in_offset=jnp.zeros((m,), dt),
            offset=jnp.zeros((), dt),
            in_floor=(False,) * m,
        )

    def phi(self, b: jax.Array) -> jax.Array:
        """Canonical right-hand side ``d = phi(b)``, shape ``(..., m)``."""
        b = jnp.asarray(b, dtype=self.y.dtype)
        d = b @ self.in_matrix.T + self.in_offset
        if any(self.in_floor):
            tol = self.tol if self.tol is not None else _tol_for(d.dtype)
            mask = jnp.asarray(self.in_floor)
            # floor applied as a piecewise-constant correction (zero derivative): jax.grad keeps
            # the price y of the affine part, a surrogate (F itself is a step function of these b).
            fl = jax.lax.stop_gradient(jnp.floor(d + tol) - d)
            d = jnp.where(mask, d + fl, d)
        return d

    def cuts(self, d: jax.Array) -> jax.Array:
        """Values ``g_k(d)`` of the cut functions at canonical ``d``, shape ``(..., K)``."""
        K = self.U.shape[0]
        tol = self.tol if self.tol is not None else _tol_for(self.y.dtype)
        g = jnp.zeros(d.shape[:-1] + (K,), dtype=d.dtype)
        if K <= _UNROLL:  # a few cuts: plain ops (fast eagerly, small graphs under jit)
            for k in range(K):
                t = d @ self.U[k] + g @ self.V[k]
                g = g.at[..., k].set(jnp.ceil(t - tol))
            return g

        def body(k, g):
            t = d @ self.U[k] + g @ self.V[k]
            return g.at[..., k].set(jnp.ceil(t - tol))

        return jax.lax.fori_loop(0, K, body, g)

    def __call__(self, b: jax.Array) -> jax.Array:
        """Evaluate ``F(b)`` in float64.

        Args:
          b: right-hand sides, shape ``(..., p)`` (any batch axes).

        Returns:
          ``F(b)``, shape ``(...)``.

        Raises:
          ValueError: ``b`` has the wrong last dimension.
          TypeError: the parameters are not float64 (x64 disabled when they were built).
        """
        b = jnp.asarray(b)
        if b.ndim < 1 or b.shape[-1] != self.in_matrix.shape[-1]:
            raise ValueError(
                f"ChvatalFunction: expected b of shape (..., {self.in_matrix.shape[-1]}), got shape {b.shape}"
            )
        if self.y.dtype != jnp.float64:
            raise TypeError(
                f"ChvatalFunction: expected float64 parameters, got {self.y.dtype}; float32 round-ups are not a "
                "valid lower bound. Enable x64 (jax.config.update('jax_enable_x64', True)) or evaluate inside "
                "`with jax.enable_x64(True):`"
            )
        d = self.phi(b)
        g = self.cuts(d)
        return self.offset + self.scale * (d @ self.y + g @ self.w)


jax.tree_util.register_dataclass(
    ChvatalFunction,
    data_fields=["in_matrix", "in_offset", "U", "V", "y", "w", "scale", "offset"],
    meta_fields=["in_floor", "tol"],
)


@dataclasses.dataclass(frozen=True, eq=False)
class BranchAndBoundFunction:
    """The branch-and-bound dual function of a MILP (Wolsey 1981; Guzelsoy & Ralphs 2007).

    $$F(b) = \\min_{t \\in \\text{leaves}} \\big( Y_t^\\top b + e_t \\big),\\qquad
    e_t = \\alpha_t^\\top \\ell^t - \\beta_t^\\top u^t,$$

    where ``(Y_t, alpha_t, beta_t)`` is a dual feasible solution of the LP relaxation of leaf
    ``t`` (bounds ``l^t <= x <= u^t`` of the original and branching bounds), so each affine
    piece is, by weak duality, a lower bound on the leaf's value for *every* right-hand side
    ``b = concat(b_ub, b_eq)``; the leaves cover every integer assignment, so ``F <= z``
    everywhere. ``jax.grad`` gives the slope ``Y_t`` of the minimizing leaf (the first one on
    ties).

    Attributes:
      Y: ``(T, p)`` leaf slopes (dual values, ``dz/db`` sign convention).
      e: ``(T,)`` leaf constants.
    """

    Y: jax.Array
    e: jax.Array

    @property
    def num_leaves(self) -> int:
        """Number ``T`` of affine pieces (leaves)."""
        return int(self.Y.shape[0])

    def __call__(self, b: jax.Array) -> jax.Array:
        """Evaluate ``F(b)``; ``b`` has shape ``(..., p)``, result ``(...)``."""
        b = jnp.asarray(b, dtype=self.Y.dtype)
        if b.ndim < 1 or b.shape[-1] != self.Y.shape[-1]:
            raise ValueError(f"BranchAndBoundFunction: expected b of shape (..., {self.Y.shape[-1]}), got {b.shape}")
        return jnp.min(b @ self.Y.T + self.e, axis=-1)


jax.tree_util.register_dataclass(BranchAndBoundFunction, data_fields=["Y", "e"], meta_fields=[])


def _np(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)
