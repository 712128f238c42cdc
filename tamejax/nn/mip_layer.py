r"""A mixed-integer program as a Flax layer (Linen and NNX), with learnable costs and constraints.

A :class:`MIPLayer` (Linen) or :class:`NNXMIPLayer` (NNX) holds the static structure of a MIP
(the integrality of its variables, the shapes of its data) and computes, from its inputs and its
parameters,

$$z(c, A, b) = \min\{c^\top x : A_{ub}x \le b_{ub},\ A_{eq}x = b_{eq},\ lb \le x \le ub,\
x_I \in \mathbb{Z}^I\} \quad(\texttt{output="value"}),$$

or a differentiable surrogate of a solution ``x*(c)`` (``output="solution"``); ``sense="max"``
maximizes instead. The problem comes either from a *template* (a ``tamejax.MIP`` whose field
``input_field`` is replaced by the inputs and whose ``learnable`` fields become parameters,
initialised from the template or an initializer), or from a *builder* ``builder(inputs, params)
-> MIP`` for any other dependence of the data on inputs and parameters.

Which data receive a gradient (the theory is in ``docs/theory.md`` and the docstrings of
:func:`tamejax.value` and :mod:`tamejax.estimators`):

==============================  ==========================================  =====================
output / ``gradient``           gradient of                                 fields with gradient
==============================  ==========================================  =====================
``"value"``, ``"active"``       ``z``: ``dz/dc = x*``, ``dz/db = y``,       every numeric field
                                ``dz/dA = -y x*^T``, bounds: reduced costs
``"value"``, ``"certificate"``  the same with the dual function's slope     every numeric field
                                in place of ``y`` (``tamejax.duality``)
``"solution"``, any estimator   ``x*`` as a function of the cost only       ``c`` (others: 0)
==============================  ==========================================  =====================

``y`` are the duals of the LP left when the integer variables are fixed at ``x*``: for a pure
integer program the active-piece rule gives ``dz/db = 0`` and ``dz/dA = 0`` (the value is locally
constant in ``b``), which is the correct derivative almost everywhere, not a bug; a MILP with
continuous variables has non-zero duals on its binding rows. The estimators of ``output=
"solution"`` (``perturbed``, ``imle``, ``interpolation``, ``identity``) differentiate the
solution map with respect to the cost only, so a template layer refuses learnable constraint
fields with that output (``ValueError``); a builder's parameters that reach the constraints get a
zero gradient from it (documented, not detected).

Batching: leading axes of the inputs beyond one instance's shape are batch axes, solved in one
batched call of the bridge (``tamejax.solve``) and spread over the worker pool; ``jax.jit``,
``jax.vmap`` and ``jax.grad`` of the layer work as for any Flax layer. Failures are data, never
exceptions, under transformations: an infeasible instance has value ``+inf`` (``-inf`` for
``"max"``), a failed or time-limited one without incumbent ``NaN``, all with zero gradient;
solutions are ``NaN`` rows. With ``output="solution"``, mask those rows in the loss (e.g.
``jnp.nansum``): the failed samples of ``"perturbed"`` and ``"imle"`` then contribute zero to the
gradient, and ``"identity"`` passes the masked (zero) cotangent through; ``"interpolation"``
(which re-solves at the failed instance) and the Fenchel-Young loss still give ``NaN`` there,
so drop failed instances from the batch for those.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tamejax import estimators as _est
from tamejax.oracle import Oracle
from tamejax.problem import _LEAVES, MIP
from tamejax.solve import Solution
from tamejax.value import value_and_solution

__all__ = ["ESTIMATORS", "MIPLayer", "NNXMIPLayer", "build_problem", "mip_layer_apply"]

_CORE_NDIM = {"c": 1, "A_ub": 2, "b_ub": 1, "A_eq": 2, "b_eq": 1, "lb": 1, "ub": 1}
_OUTPUTS = ("solution", "value", "value_and_solution")
_GRADIENTS = ("active", "certificate")
_SENSES = ("min", "max")
_SOLVER_OPTIONS = ("time_limit", "rel_gap", "threads", "seed")

#: Named estimators of ``output="solution"``: name -> (function, needs a PRNG key).
ESTIMATORS: dict[str, tuple[Callable[..., jax.Array], bool]] = {
    "perturbed": (_est.perturbed, True),
    "imle": (_est.imle, True),
    "interpolation": (_est.interpolation, False),
    "identity": (_est.identity, False),
}
_FY_OPTIONS = ("num_samples", "sigma", "noise", "multiplicative")


# ---------------------------------------------------------------------------- configuration
@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity (static metadata of NNX / jit)
class _Config:
    """The validated constructor arguments shared by the Linen and NNX layers."""

    template: MIP | None
    builder: Callable[..., MIP] | None
    input_field: str | None
    input_ndim: int | None
    init_values: dict[str, Any]  # initial arrays (NumPy, JAX or traced)
    initializers: dict[str, Callable[..., jax.Array]]
    output: str
    estimator: Callable[..., jax.Array] | None
    estimator_name: str
    needs_key: bool
    estimator_options: dict[str, Any]
    gradient: str
    sense: str
    backend: str
    solver_options: dict[str, Any]

    @property
    def stochastic(self) -> bool:
        return self.output == "solution" and self.needs_key


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"argument `{name}`: expected a mapping (dict) or None, got {type(value).__name__}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise TypeError(f"argument `{name}`: expected string keys, got {bad[0]!r}")
    return dict(value)


def _keyword_names(fn: Callable[..., Any]) -> tuple[set[str], bool]:
    """Keyword parameter names of ``fn`` and whether it takes ``**kwargs``."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return set(), True
    names = {p.name for p in sig.parameters.values() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return names, any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())


def _array(v: Any) -> Any:
    """``v`` as an array (JAX arrays and tracers kept as they are, anything else through NumPy)."""
    return v if isinstance(v, jax.Array | jax.core.Tracer) else np.asarray(v)


def _make_config(
    problem: Any,
    learnable: Any,
    input_field: Any,
    input_ndim: Any,
    output: Any,
    estimator: Any,
    estimator_options: Any,
    gradient: Any,
    sense: Any,
    backend: Any,
    solver_options: Any,
    initializers: Any,
) -> _Config:
    if output not in _OUTPUTS:
        raise ValueError(f"argument `output`: expected one of {_OUTPUTS}, got {output!r}")
    if gradient not in _GRADIENTS:
        raise ValueError(f"argument `gradient`: expected one of {_GRADIENTS}, got {gradient!r}")
    if gradient != "active" and output == "solution":
        raise ValueError(
            f"argument `gradient`: {gradient!r} applies to output='value' or 'value_and_solution' "
            "(the optimal value's gradient rule); output='solution' is differentiated by `estimator`"
        )
    if sense not in _SENSES:
        raise ValueError(f"argument `sense`: expected 'min' or 'max', got {sense!r}")
    if not isinstance(backend, str):
        raise TypeError(f"argument `backend`: expected a backend name (str), got {type(backend).__name__}")
    solver_options = _mapping("solver_options", solver_options)
    unknown = sorted(set(solver_options) - set(_SOLVER_OPTIONS))
    if unknown:
        raise ValueError(f"argument `solver_options`: expected keys among {_SOLVER_OPTIONS}, got {unknown}")
    initializers = _mapping("initializers", initializers)
    for k, fn in initializers.items():
        if not callable(fn):
            raise TypeError(
                f"argument `initializers`: expected a callable initializer(key, shape, dtype) for `{k}`, "
                f"got {type(fn).__name__}"
            )

    # -- problem: template or builder
    template: MIP | None = None
    builder: Callable[..., MIP] | None = None
    if isinstance(problem, MIP):
        template = problem
        if template.batch_shape:
            raise ValueError(
                f"argument `problem`: expected an unbatched tamejax.MIP template (batch_shape ()), "
                f"got batch_shape {template.batch_shape}; batch the layer's inputs instead"
            )
    elif callable(problem):
        builder = problem
    else:
        raise TypeError(
            "argument `problem`: expected a tamejax.MIP template or a callable builder(inputs, params) -> MIP, "
            f"got {type(problem).__name__}"
        )

    # -- learnable parameters and their initial values
    if isinstance(learnable, str):
        learnable = (learnable,)
    if learnable is None:
        learnable = ()
    init_values: dict[str, Any] = {}
    if isinstance(learnable, Mapping):
        items = list(learnable.items())
    elif isinstance(learnable, Sequence):
        if builder is not None and len(learnable):
            raise TypeError(
                "argument `learnable`: a builder needs a mapping {name: initial array} (it fixes the shapes), "
                f"got a {type(learnable).__name__} of names"
            )
        items = [(k, None) for k in learnable]
    else:
        raise TypeError(
            f"argument `learnable`: expected field names or a mapping {{name: initial array}}, "
            f"got {type(learnable).__name__}"
        )
    for k, v in items:
        if not isinstance(k, str):
            raise TypeError(f"argument `learnable`: expected string names, got {k!r}")
        if k in init_values:
            raise ValueError(f"argument `learnable`: field `{k}` given twice")
        if template is not None:
            if k not in _LEAVES:
                raise ValueError(f"argument `learnable`: expected MIP fields among {_LEAVES}, got {k!r}")
            expected = tuple(getattr(template, k).shape)
            if v is None:
                v = getattr(template, k)  # may be traced (a template built inside jit)
            else:
                v = _array(v)
                if v.shape != expected:
                    raise ValueError(
                        f"argument `learnable`: field `{k}`: expected an initial value of shape {expected} "
                        f"(the template's), got shape {v.shape}"
                    )
        else:
            if v is None:
                raise ValueError(f"argument `learnable`: parameter `{k}`: expected an initial array, got None")
            v = _array(v)
        if v.dtype == object or not (jnp.issubdtype(v.dtype, jnp.number) or v.dtype == jnp.bool_):
            raise ValueError(f"argument `learnable`: parameter `{k}`: expected a numeric array, got dtype {v.dtype}")
        init_values[k] = v
    extra = sorted(set(initializers) - set(init_values))
    if extra:
        raise ValueError(
            f"argument `initializers`: expected keys among the learnable parameters {sorted(init_values)}, got {extra}"
        )

    # -- inputs
    if template is not None:
        if input_ndim is not None:
            raise ValueError(
                f"argument `input_ndim`: only for a builder (a template's input field fixes it), got {input_ndim!r}"
            )
        if input_field is None:  # default: the cost, unless it is learnable (then: no inputs)
            input_field = None if "c" in init_values else "c"
        elif input_field not in _LEAVES:
            raise ValueError(f"argument `input_field`: expected a MIP field among {_LEAVES}, got {input_field!r}")
        if input_field is not None and input_field in init_values:
            raise ValueError(
                f"argument `input_field`: field `{input_field}` is also learnable; a field is either the "
                "layer's input or a parameter"
            )
    else:
        if input_field is not None:
            raise ValueError(
                f"argument `input_field`: only for a template (a builder places the inputs itself), got {input_field!r}"
            )
        if input_ndim is not None and (
            isinstance(input_ndim, bool) or not isinstance(input_ndim, int | np.integer) or input_ndim < 0
        ):
            raise ValueError(f"argument `input_ndim`: expected an integer >= 0 or None, got {input_ndim!r}")

    # -- which gradients can exist
    if output == "solution" and template is not None:
        no_grad = sorted(k for k in init_values if k != "c")
        if no_grad:
            raise ValueError(
                f"argument `learnable`: field `{no_grad[0]}` would receive no gradient with output='solution': "
                "the solution estimators differentiate with respect to the cost `c` only; use output='value' "
                "(conservative gradient in every field) or learn only `c`"
            )

    # -- estimator
    estimator_options = _mapping("estimator_options", estimator_options)
    fn: Callable[..., jax.Array] | None = None
    name = ""
    needs_key = False
    if output == "solution":
        if isinstance(estimator, str):
            if estimator not in ESTIMATORS:
                raise ValueError(f"argument `estimator`: expected one of {tuple(ESTIMATORS)}, got {estimator!r}")
            fn, needs_key = ESTIMATORS[estimator]
            name = estimator
        elif callable(estimator):
            fn = estimator
            name = getattr(estimator, "__name__", "estimator")
            needs_key = "key" in _keyword_names(estimator)[0]
        else:
            raise TypeError(
                f"argument `estimator`: expected a name among {tuple(ESTIMATORS)} or a callable "
                f"estimator(oracle, theta, ...), got {type(estimator).__name__}"
            )
        names, var_kw = _keyword_names(fn)
        names -= {"oracle", "theta", "key"}
        bad = sorted(set(estimator_options) - names)
        if bad and not var_kw:
            raise ValueError(
                f"argument `estimator_options`: expected keys among {sorted(names)} (options of `{name}`), got {bad}"
            )
    elif estimator_options:
        raise ValueError(
            f"argument `estimator_options`: only for output='solution', got {sorted(estimator_options)} "
            f"with output={output!r}"
        )
    return _Config(
        template=template,
        builder=builder,
        input_field=input_field,
        input_ndim=None if input_ndim is None else int(input_ndim),
        init_values=init_values,
        initializers=initializers,
        output=output,
        estimator=fn,
        estimator_name=name,
        needs_key=needs_key,
        estimator_options=estimator_options,
        gradient=gradient,
        sense=sense,
        backend=backend,
        solver_options=solver_options,
    )


def _init_param(cfg: _Config, name: str, key: jax.Array | None, param_dtype: Any) -> jax.Array:
    v = cfg.init_values[name]
    dtype = param_dtype
    if dtype is None:
        dtype = v.dtype if jnp.issubdtype(v.dtype, jnp.floating) else jnp.result_type(float)
    if name in cfg.initializers:
        if key is None:
            raise ValueError(
                f"argument `rngs`: the initializer of `{name}` needs a PRNG key (pass rngs=nnx.Rngs(params=...)), "
                "got None"
            )
        out = jnp.asarray(cfg.initializers[name](key, v.shape, dtype))
        if out.shape != v.shape:
            raise ValueError(
                f"argument `initializers`: initializer of `{name}`: expected an array of shape {v.shape}, "
                f"got shape {out.shape}"
            )
        return out.astype(dtype)
    return jnp.asarray(v, dtype)


# ---------------------------------------------------------------------------- functional core
def _as_float(name: str, x: Any) -> jax.Array:
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating) or not (
        jnp.issubdtype(x.dtype, jnp.number) or x.dtype == jnp.bool_
    ):
        raise ValueError(f"argument `{name}`: expected real numbers, got dtype {x.dtype}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def _check_params(cfg: _Config, params: Mapping[str, Any]) -> dict[str, jax.Array]:
    if not isinstance(params, Mapping):
        raise TypeError(f"argument `params`: expected a mapping {{name: array}}, got {type(params).__name__}")
    missing = sorted(set(cfg.init_values) - set(params))
    if missing:
        raise ValueError(
            f"argument `params`: expected the learnable parameters {sorted(cfg.init_values)}, missing {missing}"
        )
    extra = sorted(str(k) for k in set(params) - set(cfg.init_values))
    if extra:
        raise ValueError(
            f"argument `params`: expected exactly the learnable parameters {sorted(cfg.init_values)}, "
            f"got unexpected {extra}"
        )
    out = {}
    for k, v0 in cfg.init_values.items():
        v = jnp.asarray(params[k])
        if v.shape != v0.shape:
            raise ValueError(f"argument `params`: parameter `{k}`: expected shape {v0.shape}, got shape {v.shape}")
        out[k] = v
    return out


def _template_fields(cfg: _Config, params: dict[str, jax.Array], inputs: Any) -> dict[str, jax.Array]:
    t = cfg.template
    assert t is not None
    fields = {k: getattr(t, k) for k in _LEAVES}
    fields.update(params)
    if inputs is not None:
        f = cfg.input_field
        if f is None:
            raise ValueError(
                "argument `inputs`: expected None (this layer's cost `c` is learnable and no `input_field` was "
                f"given, so it takes no inputs), got an array of shape {jnp.shape(inputs)}"
            )
        core = tuple(getattr(t, f).shape)
        x = _as_float("inputs", inputs)
        k = _CORE_NDIM[f]
        if x.ndim < k or tuple(x.shape[x.ndim - k :]) != core:
            exp = "(..., " + ", ".join(str(d) for d in core) + ")"
            raise ValueError(
                f"argument `inputs` (MIP field `{f}`): expected shape {exp} (the template's `{f}` with optional "
                f"leading batch axes), got shape {tuple(x.shape)}"
            )
        fields[f] = x
    return fields


def build_problem(cfg_or_layer: Any, params: Mapping[str, Any], inputs: Any = None) -> MIP:
    """The (possibly batched) ``MIP`` a layer solves, differentiable in ``params`` and ``inputs``.

    Args:
      cfg_or_layer: a :class:`MIPLayer` or :class:`NNXMIPLayer` (its configuration is used).
      params: the learnable parameters ``{name: array}`` (for a Linen layer:
        ``variables["params"]``).
      inputs: the layer's inputs (``None``: the template's value of ``input_field``).

    Returns:
      The ``MIP`` as built: the layer minimizes ``c.x`` over it, or maximizes ``c.x`` when
      ``sense="max"`` (negate ``c`` to solve the latter with :func:`tamejax.solve`, which minimizes).

    Raises:
      ValueError: missing, unexpected or mis-shaped parameters, inputs of the wrong shape.
      TypeError: a builder that does not return a ``tamejax.MIP``; ``params`` not a mapping; a
        pytree of inputs with ``input_ndim`` set.
    """
    cfg = cfg_or_layer if isinstance(cfg_or_layer, _Config) else cfg_or_layer._config()
    p = _check_params(cfg, params)
    if cfg.template is not None:
        return MIP(**_template_fields(cfg, p, inputs), integrality=cfg.template.integrality)
    builder = cfg.builder
    assert builder is not None
    if inputs is not None:
        inputs = jax.tree.map(jnp.asarray, inputs)
    nd = cfg.input_ndim
    if nd is not None and inputs is not None:
        if not isinstance(inputs, jax.Array | jax.core.Tracer):
            raise TypeError(
                f"argument `inputs`: input_ndim = {nd} needs a single array (its leading axes are vmapped), "
                f"got a {type(inputs).__name__}; batch a pytree of inputs in the builder (input_ndim=None)"
            )
        x = inputs
        if x.ndim < nd:
            raise ValueError(
                f"argument `inputs`: expected at least input_ndim = {nd} axes (one instance), got shape {x.shape}"
            )
        batch = x.shape[: x.ndim - nd]
        fn = _call_builder(builder, p)
        for _ in batch:
            fn = jax.vmap(fn)
        return fn(x)
    return _call_builder(builder, p)(inputs)


def _call_builder(builder: Callable[..., MIP], params: dict[str, jax.Array]) -> Callable[[Any], MIP]:
    def call(inputs: Any) -> MIP:
        out = builder(inputs, dict(params))
        if not isinstance(out, MIP):
            name = getattr(builder, "__name__", "builder")
            raise TypeError(
                f"argument `problem`: the builder `{name}`(inputs, params) must return a tamejax.MIP, "
                f"got {type(out).__name__}"
            )
        return out

    return call


def _negate_cost(p: MIP) -> MIP:
    leaves = [getattr(p, k) for k in _LEAVES]
    leaves[0] = -leaves[0]
    return MIP.tree_unflatten(p.integrality, leaves)


def _max_solution(sol: Solution) -> Solution:
    """The ``Solution`` of ``min -c x`` expressed for ``max c x`` (objective, bound and the
    derivatives ``dz/db``, reduced costs negated)."""

    def neg(v: jax.Array | None) -> jax.Array | None:
        return None if v is None else -v

    return dataclasses.replace(
        sol,
        objective=-sol.objective,
        bound=-sol.bound,
        dual_ub=neg(sol.dual_ub),
        dual_eq=neg(sol.dual_eq),
        reduced_cost=neg(sol.reduced_cost),
    )


def _oracle_and_theta(cfg: _Config, params: dict[str, jax.Array], inputs: Any) -> tuple[Oracle, jax.Array]:
    if cfg.template is not None:
        fields = _template_fields(cfg, params, inputs)
        theta = fields.pop("c")
        # The feasible set keeps its own (usually unbatched) shape: the bridge then sends the
        # shared constraints once per chunk instead of once per instance.
        n = cfg.template.n
        feas = MIP(jnp.zeros((n,), theta.dtype), **fields, integrality=cfg.template.integrality)
        # ... but the cost carries the batch of both (an input in a constraint field batches the
        # feasible set while the template's or learned cost is unbatched): one cost per instance.
        batch = jnp.broadcast_shapes(theta.shape[:-1], feas.batch_shape)
        theta = jnp.broadcast_to(theta, batch + (n,))
    else:
        feas = build_problem(cfg, params, inputs)
        theta = feas.c
        # a builder may return an unbatched cost with batched constraints: one cost per instance
        theta = jnp.broadcast_to(theta, jnp.broadcast_shapes(theta.shape[:-1], feas.batch_shape) + theta.shape[-1:])
    oracle = Oracle(feas, cfg.sense, cfg.backend, **cfg.solver_options)
    return oracle, theta


def mip_layer_apply(
    cfg_or_layer: Any,
    params: Mapping[str, Any],
    inputs: Any = None,
    *,
    key: jax.Array | None = None,
    deterministic: bool = False,
) -> Any:
    """The layer's forward pass as a pure function of its parameters (both layers call it).

    Args:
      cfg_or_layer: a :class:`MIPLayer` or :class:`NNXMIPLayer`.
      params: the learnable parameters ``{name: array}``.
      inputs: the inputs (``None``: none).
      key: PRNG key of a stochastic estimator (``perturbed``, ``imle``).
      deterministic: with a stochastic estimator, return the exact solution ``x*(c)`` (no
        noise, zero gradient) instead of the estimator.

    Returns:
      ``output="value"``: the optimal values, shape ``batch``; ``"solution"``: the solutions,
      shape ``batch + (n,)``; ``"value_and_solution"``: ``(value, tamejax.Solution)``.

    Raises:
      ValueError: missing, unexpected or mis-shaped parameters, inputs of the wrong shape, a missing
        key for a stochastic estimator.
      TypeError: ``params`` not a mapping.
    """
    cfg = cfg_or_layer if isinstance(cfg_or_layer, _Config) else cfg_or_layer._config()
    p = _check_params(cfg, params)
    if cfg.output == "solution":
        oracle, theta = _oracle_and_theta(cfg, p, inputs)
        if cfg.stochastic and deterministic:
            return oracle(jax.lax.stop_gradient(theta)).astype(theta.dtype)
        kw = dict(cfg.estimator_options)
        if cfg.needs_key:
            if key is None:
                raise ValueError(
                    f"estimator `{cfg.estimator_name}` needs a PRNG key: pass key=..., an rng stream "
                    "(Linen: rngs={rng_collection: key}; NNX: rngs=nnx.Rngs(...)), or deterministic=True"
                )
            kw["key"] = key
        assert cfg.estimator is not None
        return cfg.estimator(oracle, theta, **kw)
    problem = build_problem(cfg, p, inputs)
    solved = problem if cfg.sense == "min" else _negate_cost(problem)
    z, sol = value_and_solution(solved, cfg.backend, gradient=cfg.gradient, **cfg.solver_options)
    if cfg.sense == "max":
        z, sol = -z, _max_solution(sol)
    if cfg.output == "value":
        return z
    return z, sol


def _fenchel_young(
    cfg: _Config, params: Mapping[str, Any], inputs: Any, x_true: Any, key: jax.Array | None, options: dict[str, Any]
) -> jax.Array:
    if cfg.template is not None and any(k != "c" for k in cfg.init_values):
        bad = sorted(k for k in cfg.init_values if k != "c")[0]
        raise ValueError(
            f"fenchel_young_loss: learnable field `{bad}` would receive no gradient (the loss differentiates "
            "with respect to the cost `c` only)"
        )
    if key is None:
        raise ValueError("fenchel_young_loss needs a PRNG key: pass key=... or an rng stream")
    base = (
        {k: v for k, v in cfg.estimator_options.items() if k in _FY_OPTIONS}
        if cfg.estimator_name == "perturbed"
        else {}
    )
    base.update(options)
    bad = sorted(set(base) - set(_FY_OPTIONS))
    if bad:
        raise ValueError(f"fenchel_young_loss: expected options among {_FY_OPTIONS}, got {bad}")
    oracle, theta = _oracle_and_theta(cfg, _check_params(cfg, params), inputs)
    return _est.fenchel_young_loss(oracle, theta, x_true, key, **base)


# ---------------------------------------------------------------------------- Linen
class MIPLayer(nn.Module):
    r"""A MIP as a Linen layer: optimal value or differentiable solution, learnable ``c``, ``A``, ``b``.

    The layer solves, for its inputs ``u`` (leading axes are a batch),

    $$z = \min_x \{c^\top x : A_{ub} x \le b_{ub},\ A_{eq} x = b_{eq},\ lb \le x \le ub,\
    x_I \in \mathbb{Z}^I\}$$

    (``max`` for ``sense="max"``) with the data built from ``u`` and the parameters:

    * template mode (``problem`` a ``tamejax.MIP``): the field ``input_field`` (default ``"c"``)
      is ``u`` (shape ``(..., *template.<field>.shape)``), the fields named in ``learnable`` are
      parameters (``params/<field>``, initialised from the template or ``initializers[field]``),
      every other field is the template's constant;
    * builder mode (``problem`` a callable ``builder(inputs, params) -> MIP``): ``learnable`` maps
      parameter names to initial arrays, ``params`` is the dict of their current values; with
      ``input_ndim`` set, leading input axes beyond ``input_ndim`` are vmapped over (the builder
      sees one instance), otherwise the builder receives the inputs as given.

    Outputs and gradients:

    * ``output="value"``: ``z`` with the conservative gradient of :func:`tamejax.value` in every
      numeric field (``dz/dc = x*``, ``dz/db = y``, ``dz/dA = -y x*^T``, bounds by reduced costs;
      ``y`` the duals of the LP with the integers fixed, so ``0`` in ``A`` and ``b`` for a pure
      integer program with ``gradient="active"``); ``gradient="certificate"`` uses the slope of
      ``tamejax.duality``'s dual function instead (see :func:`tamejax.value`). For ``sense="max"``,
      ``z = -min(-c)x`` and the signs follow.
    * ``output="value_and_solution"``: ``(z, tamejax.Solution)``; the solution carries ``x``, the
      status and the derivatives ``dual_ub = dz/db_ub``, ``dual_eq``, ``reduced_cost`` (in the
      layer's sense); it is not differentiated.
    * ``output="solution"``: ``estimator(oracle, c, ...)`` from :mod:`tamejax.estimators`
      (``"perturbed"``: Berthet et al. 2020; ``"imle"``: Niepert et al. 2021;
      ``"interpolation"``: Vlastelica et al. 2020; ``"identity"``: Sahoo et al. 2023; or a callable
      with the same signature, receiving ``key=`` if it has that parameter), a gradient with respect
      to the cost ``c`` only. Template layers refuse learnable constraint fields here
      (``ValueError``); with a builder, parameters reaching only the constraints get ``0``; an
      ``input_field`` other than ``c`` gives its inputs a ``0`` gradient.

    Stochastic estimators (``"perturbed"``, ``"imle"``, a callable with a ``key`` parameter) draw
    their key from the ``rng_collection`` stream (``apply(..., rngs={"mip": key})``) or the call's
    ``key`` argument; with ``deterministic=True`` such a layer returns the exact solution ``x*(c)``
    (zero gradient), for evaluation. ``deterministic`` does not change the deterministic
    estimators ``"identity"`` and ``"interpolation"``, whose forward pass is already ``x*(c)``
    (they keep their gradient). The method
    :meth:`fenchel_young_loss` gives the perturbed Fenchel-Young loss (Berthet et al. 2020) of the
    same cost against target solutions, which trains ``c`` without differentiating the solver.

    Attributes:
      problem: a ``tamejax.MIP`` template (unbatched) or a builder ``(inputs, params) -> MIP``.
      learnable: template mode: field names (or ``{field: initial array}``); builder mode:
        ``{name: initial array}``.
      input_field: template mode: the MIP field the inputs fill (default ``"c"``, or no inputs when
        ``c`` is learnable).
      input_ndim: builder mode: number of trailing axes of one instance's inputs (``None``: the
        builder handles batch axes itself).
      output: ``"solution"`` (default), ``"value"`` or ``"value_and_solution"``.
      estimator: the solution estimator (name or callable), for ``output="solution"``.
      estimator_options: keyword options of the estimator (``sigma``, ``num_samples``, ``lam``...).
      gradient: ``"active"`` or ``"certificate"``, for the value outputs.
      sense: ``"min"`` or ``"max"``.
      backend: solver backend (as in :func:`tamejax.solve`).
      solver_options: ``time_limit``, ``rel_gap``, ``threads``, ``seed``.
      initializers: ``{name: initializer(key, shape, dtype)}`` overriding initial values.
      param_dtype: dtype of the parameters (default: that of the initial value; float if integer).
      deterministic: default of the call argument of the same name (``None``: ``False``).
      rng_collection: PRNG stream of stochastic estimators.
    """

    problem: Any
    learnable: Any = ()
    input_field: str | None = None
    input_ndim: int | None = None
    output: str = "solution"
    estimator: Any = "perturbed"
    estimator_options: Any = None
    gradient: str = "active"
    sense: str = "min"
    backend: str = "scip"
    solver_options: Any = None
    initializers: Any = None
    param_dtype: Any = None
    deterministic: bool | None = None
    rng_collection: str = "mip"

    def __post_init__(self) -> None:
        self._config()  # validate at construction, with errors naming the argument
        if self.deterministic is not None and not isinstance(self.deterministic, bool | np.bool_):
            raise ValueError(f"argument `deterministic`: expected True, False or None, got {self.deterministic!r}")
        if not isinstance(self.rng_collection, str):
            raise TypeError(
                f"argument `rng_collection`: expected a stream name (str), got {type(self.rng_collection).__name__}"
            )
        super().__post_init__()

    def _config(self) -> _Config:
        return _make_config(
            self.problem,
            self.learnable,
            self.input_field,
            self.input_ndim,
            self.output,
            self.estimator,
            self.estimator_options,
            self.gradient,
            self.sense,
            self.backend,
            self.solver_options,
            self.initializers,
        )

    def setup(self) -> None:
        cfg = self._config()
        self._cfg = cfg
        self._values = {
            name: self.param(name, lambda key, _n=name: _init_param(cfg, _n, key, self.param_dtype))
            for name in cfg.init_values
        }

    def _key(self, cfg: _Config, key: jax.Array | None, deterministic: bool) -> jax.Array | None:
        if key is not None or not cfg.stochastic or deterministic:
            return key
        if not self.has_rng(self.rng_collection):
            return None
        return self.make_rng(self.rng_collection)

    def __call__(self, inputs: Any = None, *, key: jax.Array | None = None, deterministic: bool | None = None) -> Any:
        """Solve for ``inputs``.

        Args:
          inputs: the inputs (see the class docstring); ``None`` for a layer without inputs.
          key: PRNG key of a stochastic estimator (overrides the ``rng_collection`` stream).
          deterministic: return the exact solution instead of a stochastic estimator's (overrides
            the attribute of the same name).

        Returns:
          The value(s), the solution(s), or ``(value, Solution)`` according to ``output``.
        """
        cfg = self._cfg
        det = bool(self.deterministic) if deterministic is None else bool(deterministic)
        params = dict(self._values)
        key = self._key(cfg, key, det)
        if key is None and cfg.stochastic and self.is_initializing():
            det = True  # init without the estimator's stream: shapes only, the exact solution
        return mip_layer_apply(cfg, params, inputs, key=key, deterministic=det)

    def build(self, inputs: Any = None) -> MIP:
        """The ``MIP`` solved for ``inputs`` (differentiable in the parameters).

        Use it through ``module.apply(variables, u, method="build")``, e.g. for a feasibility
        penalty on learned constraints.

        Args:
          inputs: the inputs.

        Returns:
          The (possibly batched) ``MIP`` as built: the layer maximizes ``c.x`` over it when
          ``sense="max"`` (negate ``c`` to solve it with :func:`tamejax.solve`, which minimizes).
        """
        return build_problem(self._cfg, dict(self._values), inputs)

    def fenchel_young_loss(
        self, inputs: Any, x_true: Any, *, key: jax.Array | None = None, **options: Any
    ) -> jax.Array:
        """Perturbed Fenchel-Young loss of the layer's cost against target solutions.

        See :func:`tamejax.estimators.fenchel_young_loss`; its gradient with respect to ``c`` is
        ``x_bar(c) - x_true`` (``"min"``: ``x_true - x_bar``), so a model whose cost comes from
        inputs or parameters trains without a solver derivative. ``num_samples``, ``sigma``,
        ``noise`` and ``multiplicative`` default to the ``estimator_options`` of a
        ``"perturbed"`` layer. Call it with ``module.apply(variables, u, x, method="fenchel_young_loss",
        rngs={"mip": key})``.

        Args:
          inputs: the inputs, as for ``__call__``.
          x_true: target solutions, shape ``batch + (n,)``.
          key: PRNG key (overrides the ``rng_collection`` stream).
          **options: ``num_samples``, ``sigma``, ``noise``, ``multiplicative``.

        Returns:
          The loss per instance, shape ``batch``.
        """
        cfg, params = self._cfg, dict(self._values)
        if key is None and self.has_rng(self.rng_collection):
            key = self.make_rng(self.rng_collection)
        return _fenchel_young(cfg, params, inputs, x_true, key, options)


# ---------------------------------------------------------------------------- NNX
def _stream_names(rngs: nnx.Rngs) -> list[str]:
    """The stream names of an ``nnx.Rngs`` (for error messages)."""
    try:
        return [str(k) for k, _ in vars(rngs).items() if not str(k).startswith("_")]
    except TypeError:  # pragma: no cover - flax internals changed
        return []


class NNXMIPLayer(nnx.Module):
    r"""A MIP as an NNX layer: the same model, outputs and gradients as :class:`MIPLayer`.

    The learnable parameters live in ``self.params`` (an ``nnx.Dict`` of ``nnx.Param`` keyed by
    field or parameter name); with the same initial values the layer computes exactly what
    :class:`MIPLayer` computes. See :class:`MIPLayer` for the model and for which fields receive
    gradients.

    Args:
      problem: a ``tamejax.MIP`` template (unbatched) or a builder ``(inputs, params) -> MIP``.
      learnable: template mode: field names (or ``{field: initial array}``); builder mode:
        ``{name: initial array}``.
      input_field: template mode: the MIP field the inputs fill (default ``"c"``, or no inputs when
        ``c`` is learnable).
      input_ndim: builder mode: number of trailing axes of one instance's inputs.
      output: ``"solution"`` (default), ``"value"`` or ``"value_and_solution"``.
      estimator: the solution estimator (name or callable), for ``output="solution"``.
      estimator_options: keyword options of the estimator.
      gradient: ``"active"`` or ``"certificate"``, for the value outputs.
      sense: ``"min"`` or ``"max"``.
      backend: solver backend.
      solver_options: ``time_limit``, ``rel_gap``, ``threads``, ``seed``.
      initializers: ``{name: initializer(key, shape, dtype)}`` overriding initial values.
      param_dtype: dtype of the parameters.
      deterministic: return exact solutions instead of a stochastic estimator's (evaluation);
        ``model.eval()`` and ``nnx.view(model, deterministic=True)`` set it too.
      rng_collection: stream of ``rngs`` used by stochastic estimators and
        :meth:`fenchel_young_loss`.
      rngs: ``nnx.Rngs`` (``params`` for initializers, ``rng_collection`` or ``default`` for
        stochastic estimators and the Fenchel-Young loss); optional when neither is needed.

    Raises:
      ValueError: a bad argument (named), learnable constraint fields with ``output="solution"``,
        or ``rngs`` without the stream a stochastic estimator needs.
      TypeError: a ``problem`` that is neither a MIP nor a callable, bad argument types.
    """

    def __init__(
        self,
        problem: MIP | Callable[..., MIP],
        *,
        learnable: Sequence[str] | Mapping[str, Any] = (),
        input_field: str | None = None,
        input_ndim: int | None = None,
        output: str = "solution",
        estimator: str | Callable[..., jax.Array] = "perturbed",
        estimator_options: Mapping[str, Any] | None = None,
        gradient: str = "active",
        sense: str = "min",
        backend: str = "scip",
        solver_options: Mapping[str, Any] | None = None,
        initializers: Mapping[str, Callable[..., jax.Array]] | None = None,
        param_dtype: Any = None,
        deterministic: bool = False,
        rng_collection: str = "mip",
        rngs: nnx.Rngs | None = None,
    ) -> None:
        cfg = _make_config(
            problem,
            learnable,
            input_field,
            input_ndim,
            output,
            estimator,
            estimator_options,
            gradient,
            sense,
            backend,
            solver_options,
            initializers,
        )
        if not isinstance(deterministic, bool):
            raise ValueError(f"argument `deterministic`: expected True or False, got {deterministic!r}")
        if cfg.initializers and rngs is None:
            raise ValueError("argument `rngs`: expected an nnx.Rngs for `initializers`, got None")
        params = {}
        for name in cfg.init_values:
            key = rngs.params() if name in cfg.initializers and rngs is not None else None
            params[name] = nnx.Param(_init_param(cfg, name, key, param_dtype))
        self.params = nnx.Dict(params)
        self.cfg = nnx.static(cfg) if hasattr(nnx, "static") else cfg
        self.deterministic = deterministic
        self.rng_collection = rng_collection
        if not isinstance(rng_collection, str):
            raise TypeError(
                f"argument `rng_collection`: expected a stream name (str), got {type(rng_collection).__name__}"
            )
        stream = None
        if rngs is not None:  # kept whenever given: the Fenchel-Young loss draws from it on any layer
            if rng_collection in rngs:
                stream = rngs[rng_collection].fork()
            elif "default" in rngs:
                stream = rngs.default.fork()
            elif cfg.stochastic:
                raise ValueError(
                    f"argument `rngs`: estimator `{cfg.estimator_name}` needs the stream {rng_collection!r} "
                    f"(`rng_collection`) or 'default', got streams {sorted(_stream_names(rngs))}"
                )
        self.rngs = nnx.data(None) if stream is None else stream

    def _config(self) -> _Config:
        return self.cfg

    def set_view(self, deterministic: bool | None = None) -> None:
        """Set the evaluation mode; called by ``nnx.view(model, deterministic=...)``.

        Args:
          deterministic: ``True``: return exact solutions instead of a stochastic estimator's;
            ``None``: leave the mode unchanged.

        Raises:
          ValueError: ``deterministic`` neither a bool nor ``None``.
        """
        if deterministic is None:
            return
        if not isinstance(deterministic, bool | np.bool_):
            raise ValueError(f"argument `deterministic`: expected True, False or None, got {deterministic!r}")
        self.deterministic = bool(deterministic)

    def _values(self) -> dict[str, jax.Array]:
        return {k: v[...] for k, v in self.params.items()}

    def _key(self, key: Any, deterministic: bool) -> jax.Array | None:
        if key is not None or not self.cfg.stochastic or deterministic:
            return key if not isinstance(key, nnx.RngStream) else key()
        return None if self.rngs is None else self.rngs()

    def __call__(self, inputs: Any = None, *, key: Any = None, deterministic: bool | None = None) -> Any:
        """Solve for ``inputs``.

        Args:
          inputs: the inputs (see :class:`MIPLayer`); ``None`` for a layer without inputs.
          key: PRNG key (or ``nnx.RngStream``) of a stochastic estimator, overriding the stored stream.
          deterministic: overrides the attribute of the same name.

        Returns:
          The value(s), the solution(s), or ``(value, Solution)`` according to ``output``.
        """
        det = self.deterministic if deterministic is None else bool(deterministic)
        return mip_layer_apply(self.cfg, self._values(), inputs, key=self._key(key, det), deterministic=det)

    def fenchel_young_loss(self, inputs: Any, x_true: Any, *, key: Any = None, **options: Any) -> jax.Array:
        """Perturbed Fenchel-Young loss of the layer's cost against target solutions.

        As :meth:`MIPLayer.fenchel_young_loss`.

        Args:
          inputs: the inputs.
          x_true: target solutions, shape ``batch + (n,)``.
          key: PRNG key (overrides the stored stream).
          **options: ``num_samples``, ``sigma``, ``noise``, ``multiplicative``.

        Returns:
          The loss per instance, shape ``batch``.
        """
        if isinstance(key, nnx.RngStream):
            key = key()
        if key is None and self.rngs is not None:
            key = self.rngs()
        return _fenchel_young(self.cfg, self._values(), inputs, x_true, key, options)

    def build(self, inputs: Any = None) -> MIP:
        """The ``MIP`` solved for ``inputs`` (differentiable in the parameters).

        Args:
          inputs: the inputs.

        Returns:
          The (possibly batched) ``MIP`` as built: the layer maximizes ``c.x`` over it when
          ``sense="max"`` (negate ``c`` to solve it with :func:`tamejax.solve`, which minimizes).
        """
        return build_problem(self.cfg, self._values(), inputs)
