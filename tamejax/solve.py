"""The one bridge from JAX to the solvers: ``solve`` and the ``Solution`` pytree.

Every feature of tamejax that needs a solver goes through ``solve_leaves`` here, the only
call of ``jax.pure_callback`` for solving. A batch (leading axes of the problem, or axes
added by ``jax.vmap``, nested or not) reaches the host in *one* callback
(``vmap_method="expand_dims"``), where the worker pool solves its problems in parallel.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tamejax.backends import HostProblem, SolveOptions, Status, get_backend
from tamejax.backends.pool import solve_many
from tamejax.problem import _LEAVES, MIP

__all__ = ["Solution", "Status", "solve"]

_CORE_NDIM = {"c": 1, "A_ub": 2, "b_ub": 1, "A_eq": 2, "b_eq": 1, "lb": 1, "ub": 1}


@dataclasses.dataclass(frozen=True)
class Solution:
    """Result of ``solve``: a pytree whose leaves carry the problem's batch shape ``...``.

    Attributes:
      x: ``(..., n)`` solution; ``NaN`` unless ``status`` is ``OPTIMAL`` or ``FEASIBLE``.
      objective: ``(...)`` value ``c @ x``; ``+inf`` if infeasible, ``-inf`` if unbounded,
        ``NaN`` when no solution is known (``NO_SOLUTION``, ``ERROR``).
      bound: ``(...)`` best proven lower bound (equals ``objective`` at optimality for LPs).
      status: ``(...)`` ``int32`` codes of ``tamejax.Status``.
      dual_ub, dual_eq: ``(..., m_ub)``, ``(..., m_eq)`` derivatives of the optimal value
        with respect to ``b_ub``, ``b_eq`` (``None`` unless ``duals=True``); for a MIP, those of
        the LP left when the integer variables are fixed at their optimum.
      reduced_cost: ``(..., n)`` ``c - A_ub.T dual_ub - A_eq.T dual_eq`` on the continuous
        variables, ``0`` on the integer ones (``None`` unless ``duals=True``).
    """

    x: jax.Array
    objective: jax.Array
    bound: jax.Array
    status: jax.Array
    dual_ub: jax.Array | None = None
    dual_eq: jax.Array | None = None
    reduced_cost: jax.Array | None = None

    @property
    def ok(self) -> jax.Array:
        """Boolean mask: a feasible solution is known (``OPTIMAL`` or ``FEASIBLE``)."""
        return self.status <= int(Status.FEASIBLE)

    def status_names(self) -> np.ndarray:
        """The statuses as names (eager only), e.g. ``array(['OPTIMAL', 'INFEASIBLE'])``."""
        codes = np.asarray(self.status)
        return np.vectorize(lambda k: Status(int(k)).name, otypes=[object])(codes)


jax.tree_util.register_dataclass(
    Solution,
    data_fields=[f.name for f in dataclasses.fields(Solution)],
    meta_fields=[],
)


def _options(time_limit, rel_gap, threads, seed, duals) -> SolveOptions:
    return SolveOptions(
        time_limit=None if time_limit is None else float(time_limit),
        rel_gap=None if rel_gap is None else float(rel_gap),
        threads=threads,
        seed=seed,
        duals=bool(duals),
    )


def _batch_valid(arrays: dict[str, np.ndarray], batch: tuple[int, ...]) -> np.ndarray:
    """Vectorized ``HostProblem.invalid_reason() is None`` over a batch, shape ``batch``."""
    ok = np.ones(batch, dtype=bool)
    for k, a in arrays.items():
        core = tuple(range(a.ndim - _CORE_NDIM[k], a.ndim))
        if k in ("lb", "ub"):
            bad = np.isnan(a) | (a == (np.inf if k == "lb" else -np.inf))
        else:
            bad = ~np.isfinite(a)
        ok &= ~np.broadcast_to(np.any(bad, axis=core), batch)
    ok &= ~np.broadcast_to(np.any(arrays["lb"] > arrays["ub"], axis=-1), batch)
    return ok


def _host_problems(
    arrays: dict[str, np.ndarray], integrality: np.ndarray, dtype: str
) -> tuple[tuple[int, ...], list[HostProblem]]:
    """Split batched host arrays (possibly with size-1 axes from vmap) into single problems.

    A field that is the same for the whole batch (size-1 batch axes, as an ``Oracle``'s
    constraints) becomes *one* array shared by every problem: it is pickled once per chunk
    sent to a worker, and the backends skip re-loading it (identity check)."""
    batch = np.broadcast_shapes(*(a.shape[: a.ndim - _CORE_NDIM[k]] for k, a in arrays.items()))
    size = int(np.prod(batch, dtype=np.int64))
    valid = _batch_valid(arrays, tuple(batch)).reshape(size)
    per: dict[str, Any] = {}
    for k, a in arrays.items():
        core = a.shape[a.ndim - _CORE_NDIM[k] :]
        if all(d == 1 for d in a.shape[: a.ndim - _CORE_NDIM[k]]):
            shared = np.ascontiguousarray(a.reshape(core), dtype=np.float64)
            per[k] = [shared] * size
        else:
            flat = np.ascontiguousarray(np.broadcast_to(a, batch + core).reshape((size,) + core), dtype=np.float64)
            per[k] = list(flat)  # views of one contiguous block
    problems = [
        HostProblem(
            **{k: per[k][i] for k in _LEAVES},
            integrality=integrality,
            input_dtype=dtype,
            checked=bool(valid[i]),
        )
        for i in range(size)
    ]
    return batch, problems


def solve_leaves(
    leaves: tuple[jax.Array, ...], integrality: tuple[bool, ...], backend: str, options: SolveOptions
) -> Solution:
    """Solve from the MIP's leaves (the bridge itself; ``solve`` and ``value`` call this)."""
    c, A_ub, b_ub, A_eq, b_eq, lb, ub = leaves
    dtype = jnp.result_type(*leaves)
    batch = tuple(c.shape[:-1])
    n, m_ub, m_eq = c.shape[-1], A_ub.shape[-2], A_eq.shape[-2]
    sd = jax.ShapeDtypeStruct
    out_shapes = [sd(batch + (n,), dtype), sd(batch, dtype), sd(batch, dtype), sd(batch, jnp.int32)]
    if options.duals:
        out_shapes += [sd(batch + (m_ub,), dtype), sd(batch + (m_eq,), dtype), sd(batch + (n,), dtype)]
    integ = np.asarray(integrality, dtype=bool)
    np_dtype = np.dtype(dtype)

    def host(*arrays):
        arrays = dict(zip(_LEAVES, (np.asarray(a) for a in arrays), strict=True))
        hbatch, problems = _host_problems(arrays, integ, str(np_dtype))
        results = solve_many(backend, problems, options)

        def stack(get, shape):
            return (
                np.stack([get(r) for r in results]).reshape(hbatch + shape).astype(np_dtype)
                if results
                else np.zeros(hbatch + shape, np_dtype)
            )

        outs = [
            stack(lambda r: r.x, (n,)),
            stack(lambda r: r.objective, ()),
            stack(lambda r: r.bound, ()),
            np.array([int(r.status) for r in results], dtype=np.int32).reshape(hbatch),
        ]
        if options.duals:

            def dual(attr, m):
                return lambda r: getattr(r, attr) if getattr(r, attr) is not None else np.full(m, np.nan)

            outs += [
                stack(dual("dual_ub", m_ub), (m_ub,)),
                stack(dual("dual_eq", m_eq), (m_eq,)),
                stack(dual("reduced_cost", n), (n,)),
            ]
        return tuple(outs)

    outs = jax.pure_callback(host, tuple(out_shapes), *leaves, vmap_method="expand_dims")
    return Solution(*_mark_varying(outs, leaves))


def _varying_axes(leaves: Any) -> frozenset:
    """Mesh axes (inside ``shard_map`` with ``check_vma=True``) along which any leaf varies."""
    axes: set = set()
    for leaf in leaves:
        aval = jax.typeof(leaf)
        mat = getattr(aval, "mat", None)  # jax >= 0.8: ManualAxisType; before: aval.vma
        axes.update(mat.varying if mat is not None else getattr(aval, "vma", ()))
    return frozenset(axes)


def _match_varying(xs: Any, axes: frozenset) -> tuple[jax.Array, ...]:
    """Cast each array to varying along ``axes`` (those it is not already varying along)."""
    out = []
    for x in xs:
        missing = tuple(sorted(axes - _varying_axes((x,)), key=str))
        if missing:
            x = (
                jax.lax.pcast(x, missing, to="varying") if hasattr(jax.lax, "pcast") else jax.lax.pvary(x, missing)
            )  # pragma: no cover - jax < 0.8
        out.append(x)
    return tuple(out)


def _mark_varying(outs: tuple[jax.Array, ...], leaves: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
    """Inside ``shard_map`` (``check_vma=True``), type the results as varying along every mesh
    axis the inputs vary along: each device solves its own shard, but ``pure_callback``
    declares its results invariant, which breaks ``grad`` (cotangent types) under shard_map."""
    axes = _varying_axes(leaves)
    return _match_varying(outs, axes) if axes else outs


def _eager_check(problem: MIP, backend: str) -> None:
    """Raise the backend's ``ValueError`` early: static checks always, data checks when concrete."""
    b = get_backend(backend)
    leaves = [getattr(problem, k) for k in _LEAVES]
    if not getattr(b, "checks_data", True) or any(isinstance(v, jax.core.Tracer) for v in leaves):
        n = problem.n
        z = np.zeros
        dummy = HostProblem(z(n), z((0, n)), z(0), z((0, n)), z(0), z(n), z(n), np.asarray(problem.integrality, bool))
        b.check(dummy)
        return
    arrays = {k: np.asarray(v) for k, v in zip(_LEAVES, leaves, strict=True)}
    dtype = str(np.dtype(jnp.result_type(*leaves)))  # as the host will see them (``solve_leaves``)
    _, problems = _host_problems(arrays, np.asarray(problem.integrality, bool), dtype)
    for p in problems:
        b.check(p)


def solve(
    problem: MIP,
    backend: str = "scip",
    *,
    time_limit: float | None = None,
    rel_gap: float | None = None,
    threads: int | None = None,
    seed: int | None = None,
    duals: bool = False,
) -> Solution:
    """Solve a (possibly batched) ``MIP`` with an OR-Tools backend.

    Works eagerly and under ``jax.jit``, ``jax.vmap`` (any nesting: the whole batch reaches
    the host in one callback and is spread over the worker pool, see ``set_workers``), and
    ``shard_map`` / sharded inputs. The result is not differentiable (the solution map of
    a MIP is piecewise constant); use ``value`` for the optimal value's gradient.

    Args:
      problem: the ``MIP``; leading axes are solved as a batch.
      backend: ``"scip"`` (default), ``"cpsat"``, ``"highs"``, ``"cbc"`` for MIPs (and LPs);
        ``"glop"``, ``"pdlp"`` for LPs only.
      time_limit: seconds per problem; on expiry the status is ``FEASIBLE`` (incumbent kept)
        or ``NO_SOLUTION``.
      rel_gap: relative optimality gap at which MIP search stops.
      threads: solver threads per problem.
      seed: solver random seed (SCIP, CP-SAT, HiGHS, GLOP).
      duals: also return dual values (``Solution.dual_ub``, ``dual_eq``, ``reduced_cost``).

    Returns:
      A ``Solution`` pytree. Failures are statuses, never exceptions, inside
      transformations; eagerly, invalid input (unknown backend, bad option, CP-SAT given
      non-rational data or continuous variables, an LP backend given integer variables)
      raises ``ValueError`` naming the problem.
    """
    if not isinstance(problem, MIP):
        raise ValueError(f"argument `problem`: expected a tamejax.MIP, got {type(problem).__name__}")
    options = _options(time_limit, rel_gap, threads, seed, duals)
    _eager_check(problem, backend)
    leaves = tuple(getattr(problem, k) for k in _LEAVES)
    return solve_leaves(leaves, problem.integrality, backend, options)


def _options_from_kwargs(kwargs: dict[str, Any], duals: bool) -> SolveOptions:
    unknown = set(kwargs) - {"time_limit", "rel_gap", "threads", "seed"}
    if unknown:
        raise ValueError(f"unknown solver option(s) {sorted(unknown)}; expected time_limit, rel_gap, threads, seed")
    return _options(kwargs.get("time_limit"), kwargs.get("rel_gap"), kwargs.get("threads"), kwargs.get("seed"), duals)
