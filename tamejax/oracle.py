"""A linear-objective optimization oracle: ``theta -> argmin/argmax { theta . x : x in X }``.

The estimators of ``tamejax.estimators`` differentiate the solution map of a problem whose
feasible set ``X`` is fixed and whose linear cost ``theta`` is predicted (by a neural network,
say). ``Oracle`` packages that map: ``X`` is given by a ``MIP`` (its ``c`` is ignored and
replaced by ``theta``), the objective sense says whether ``theta`` is minimized or maximized,
and the backend and solver options are fixed once. Every call goes through the one bridge
(``tamejax.solve``), so a batch of costs, and every Monte-Carlo sample of a batch, reaches
the host in one callback and is spread over the worker pool.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from tamejax.backends import SolveOptions
from tamejax.problem import _LEAVES, MIP
from tamejax.solve import Solution, _eager_check, _options_from_kwargs, solve_leaves

__all__ = ["Oracle"]

_SENSES = ("min", "max")


@dataclasses.dataclass(frozen=True, init=False)
class Oracle:
    """The solution map ``x*(theta)`` of a linear objective over a fixed feasible set.

    $$x^*(\\theta) \\in \\operatorname{argmin}_{x \\in X} \\theta^\\top x \\quad (\\text{sense}=
    \\text{"min"}), \\qquad \\operatorname{argmax}_{x \\in X} \\theta^\\top x \\quad
    (\\text{sense}=\\text{"max"}),$$

    where ``X`` is the feasible set of ``problem`` (constraints, bounds, integrality; the
    problem's own ``c`` is ignored). ``x*`` is piecewise constant in ``theta``: its
    derivative is zero almost everywhere, which is why ``tamejax.estimators`` exists.

    An ``Oracle`` is a pytree (the problem's arrays are its leaves; sense, backend and
    options are static), so it can be passed through ``jax.jit`` and its constraints may
    be traced values.

    Args:
      problem: the ``MIP`` whose feasible set is ``X``; unbatched, or batched with batch
        axes that broadcast against those of ``theta``.
      sense: ``"min"`` (default) or ``"max"``.
      backend: the solver (``tamejax.solve``'s ``backend``); ``"glop"`` or ``"pdlp"`` suit
        LPs whose vertices are integral (shortest path, assignment).
      **options: ``time_limit``, ``rel_gap``, ``threads``, ``seed`` as in ``tamejax.solve``.

    Raises:
      ValueError: a field that is not a ``MIP``, an unknown sense, backend or option.
    """

    problem: MIP
    sense: str
    backend: str
    options: SolveOptions

    def __init__(self, problem: MIP, sense: str = "min", backend: str = "scip", **options: Any) -> None:
        if not isinstance(problem, MIP):
            raise ValueError(f"Oracle field `problem`: expected a tamejax.MIP, got {type(problem).__name__}")
        if sense not in _SENSES:
            raise ValueError(f"Oracle field `sense`: expected 'min' or 'max', got {sense!r}")
        opts = options.pop("_options", None)
        if opts is None:
            opts = _options_from_kwargs(options, duals=False)
            _eager_check(problem, backend)
        object.__setattr__(self, "problem", problem)
        object.__setattr__(self, "sense", sense)
        object.__setattr__(self, "backend", backend)
        object.__setattr__(self, "options", opts)

    # ------------------------------------------------------------------ pytree
    def tree_flatten(self):
        return (self.problem,), (self.sense, self.backend, self.options)

    @classmethod
    def tree_unflatten(cls, aux, children):
        sense, backend, options = aux
        return cls(children[0], sense, backend, _options=options)

    # ------------------------------------------------------------------ properties
    @property
    def n(self) -> int:
        """Number of variables (the length of ``theta``)."""
        return self.problem.n

    @property
    def sign(self) -> float:
        """``+1.0`` for a minimization, ``-1.0`` for a maximization."""
        return 1.0 if self.sense == "min" else -1.0

    def replace(self, **changes: Any) -> Oracle:
        """A copy with ``problem``, ``sense``, ``backend`` or solver options changed."""
        kw: dict[str, Any] = {"problem": self.problem, "sense": self.sense, "backend": self.backend}
        opts = dataclasses.asdict(self.options)
        opts.pop("duals", None)
        kw.update({k: v for k, v in opts.items() if v is not None})
        kw.update(changes)
        return Oracle(**kw)

    # ------------------------------------------------------------------ solving
    def check_theta(self, theta: Any, name: str = "theta") -> jax.Array:
        """``theta`` as an array of shape ``(..., n)``, or a ``ValueError`` naming it."""
        theta = jnp.asarray(theta)
        if theta.ndim < 1 or theta.shape[-1] != self.n:
            raise ValueError(f"argument `{name}`: expected shape (..., {self.n}) (n = oracle.n), got {theta.shape}")
        if jnp.issubdtype(theta.dtype, jnp.complexfloating):
            raise ValueError(f"argument `{name}`: expected real costs, got dtype {theta.dtype}")
        if not jnp.issubdtype(theta.dtype, jnp.floating):
            theta = theta.astype(jnp.result_type(float))
        return theta

    def solve(self, theta: Any) -> Solution:
        """Solve for the cost(s) ``theta`` (shape ``(..., n)``); no gradient.

        ``Solution.objective`` is ``theta . x*`` in the oracle's own sense (a maximum for
        ``sense="max"``); ``x`` is ``NaN`` and the status says why when no solution is known.
        """
        theta = jax.lax.stop_gradient(self.check_theta(theta))
        p = self.problem
        batch = jnp.broadcast_shapes(theta.shape[:-1], p.batch_shape)
        dtype = jnp.result_type(theta, p.c)
        c = jnp.broadcast_to(self.sign * theta, batch + (self.n,)).astype(dtype)
        leaves = [c]
        for k in _LEAVES[1:]:
            # Constraints are not broadcast to the batch: with size-1 batch axes the host sees
            # one array shared by every problem (sent once per chunk, loaded once per model).
            v = getattr(p, k).astype(dtype)
            core = v.shape[len(p.batch_shape) :]
            pb = (1,) * (len(batch) - len(p.batch_shape)) + tuple(p.batch_shape)
            leaves.append(v.reshape(pb + core))
        sol = solve_leaves(tuple(leaves), p.integrality, self.backend, self.options)
        if self.sense == "max":
            sol = dataclasses.replace(sol, objective=-sol.objective, bound=-sol.bound)
        return sol

    def __call__(self, theta: Any) -> jax.Array:
        """``x*(theta)`` of shape ``(..., n)`` (``NaN`` rows where no solution is known)."""
        return self.solve(theta).x

    def objective(self, theta: Any, x: Any) -> jax.Array:
        """``theta . x`` over the last axis (differentiable in both)."""
        return jnp.sum(jnp.asarray(theta) * jnp.asarray(x), axis=-1)


jax.tree_util.register_pytree_node(Oracle, Oracle.tree_flatten, Oracle.tree_unflatten)
