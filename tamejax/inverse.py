"""Learning the constraints of a 0-1 program from observed optimal solutions.

Setting (CombOptNet's "static constraints", Paulus et al. 2021): pairs ``(c_k, x_k)`` where
``x_k = argmin { c_k x : A* x <= b*, x in {0,1}^n }`` for hidden ``(A*, b*)``. We learn
``(A, b)`` with the same number of rows ``m`` such that the program with the learned
constraints reproduces the observed solutions. Rows are used normalized,
``a_i <- a_i / ||a_i||``, ``b_i <- b_i / ||a_i||`` (so margins are Euclidean distances and
the scale of a row is not a free parameter), as CombOptNet does.

Why not simply differentiate the integer value. For a pure 0-1 program the value
``z(c; A, b)`` is piecewise constant in ``(A, b)``: moving a hyperplane changes nothing until
it crosses a grid point. Its active-piece derivative (``tamejax.value``, a conservative
gradient, Bolte & Pauwels 2021) is therefore exactly zero in ``A`` and ``b``; this is the
truth, not a defect of the estimator. The losses here are built so that a useful signal
reaches ``(A, b)`` anyway, in three principled ways:

* ``value_gap_loss`` (the value-gradient route): the optimality gap
  ``[c x_obs - z(c; A, b)]_+`` plus a feasibility hinge ``sum_i relu(a_i x_obs - b_i + margin)``,
  differentiated with ``tamejax.value``'s conservative gradient. With ``relaxation="lp"``
  ``z`` is the value of the LP relaxation (``0 <= x <= 1``), a lower bound of the integer
  value, so the gap upper-bounds the integer gap and vanishes only if the relaxation is tight
  at ``x_obs``; its gradient ``dz/db = y``, ``dz/dA = -y x_LP^T`` (LP duals ``y``) is a true
  element of the conservative field of ``z_LP`` and is non-zero whenever a constraint is
  active (classical inverse linear optimization, Ahuja & Orlin 2001; Chan, Mahmood & Zhu
  2021). With ``relaxation="none"`` the integer value is used and, as explained above, only
  the hinge moves ``(A, b)``.
* ``perturbed_gap_loss`` (perturbation): the same gap with ``z`` replaced by its Gaussian
  smoothing ``z_sigma(A, b) = E[z(A + sigma E, b + sigma e)]`` (``E, e`` standard normal),
  whose gradient ``E[(z - baseline) (E, e)] / sigma`` is the score-function (likelihood
  ratio) estimator of the smoothed integer value (Abernethy et al. 2016; Berthet et al. 2020
  "Learning with differentiable perturbed optimizers"). The smoothed value is differentiable
  even though ``z`` is piecewise constant. Infeasible perturbed programs are scored
  ``z = c x_obs`` (gap 0): the gap used is ``relu(c x_obs - z)``.
* ``cut_hinge_loss`` (structured hinge, the most effective): the solver's answer ``x_hat``
  under the current constraints is a fixed point (no solver gradient); if ``x_hat`` is
  strictly cheaper than ``x_obs`` it must be cut off (``max_i (a_i x_hat - b_i) >= margin``)
  since ``x_obs`` is optimal for the true constraints, and ``x_obs`` must be feasible
  (``a_i x_obs - b_i <= -margin``). The loss
  ``sum_i relu(a_i x_obs - b_i + margin) + [c x_hat < c x_obs] relu(margin - max_i (a_i x_hat - b_i))``
  is zero iff the learned program reproduces ``x_obs`` (up to ties) with margin; its
  subgradient is that of a structured hinge / cutting-plane loss (Tsochantaridis et al. 2005,
  "Large margin methods for structured and interdependent output variables", JMLR), here with
  the constraints as the learned parameters; it moves the constraints the way CombOptNet's own
  gradient does (make ``x_obs`` feasible, cut off the wrong ``x_hat``). It needs one solve per
  example and no derivative of the solver.

All solves go through ``tamejax.solve`` / ``tamejax.value`` (one ``pure_callback`` per batch);
``backend="enumeration"`` (exact, ``tamejax.backends.enumeration``) makes the 160 000 solves of
a CombOptNet training run affordable.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import tamejax
from tamejax.problem import MIP

__all__ = [
    "ConstraintFit",
    "METHODS",
    "normalize_constraints",
    "init_constraints",
    "solve_constraints",
    "cut_hinge_loss",
    "value_gap_loss",
    "perturbed_gap_loss",
    "fit_constraints",
    "exact_accuracy",
]

METHODS = ("hinge", "value_lp", "value_ip", "perturbed")


def normalize_constraints(params: dict) -> tuple[jax.Array, jax.Array]:
    """Rows of unit norm: ``(A / ||A_i||, b / ||A_i||)``.

    Args:
      params: ``{"A": (m, n), "b": (m,)}``.

    Returns:
      ``(A_hat, b_hat)``.
    """
    norm = jnp.sqrt(jnp.sum(params["A"] ** 2, axis=-1) + 1e-12)
    return params["A"] / norm[..., None], params["b"] / norm


def init_constraints(
    key: jax.Array, num_constraints: int, x_obs: np.ndarray, slack: float = 0.1, placement: str = "data"
) -> dict:
    """Random unit-norm rows ``a_i ~ N(0, I)`` normalized, with one of two placements.

    * ``"data"``: ``b_i = max_k a_i x_k + slack``: every observation starts feasible and the
      loss tightens the program (used by the cut hinge, which cuts off the cheaper points).
    * ``"center"``: ``b_i = a_i o_i`` with ``o_i ~ U[0.25, 0.75]^n``: each hyperplane crosses
      the cube near its center, as in CombOptNet's initialization, so constraints are active
      at the relaxed optima from the start (the value-gap losses get no gradient from a
      constraint that is never active).

    Args:
      key: PRNG key.
      num_constraints: ``m``.
      x_obs: observed solutions, shape ``(N, n)``.
      slack: distance of each hyperplane beyond the farthest observation (``"data"``).
      placement: ``"data"`` or ``"center"``.

    Returns:
      ``{"A": (m, n), "b": (m,)}`` (float32).

    Raises:
      ValueError: if ``num_constraints < 1``, ``x_obs`` is not 2-D or ``placement`` is unknown.
    """
    if not isinstance(num_constraints, int) or num_constraints < 1:
        raise ValueError(f"argument `num_constraints`: expected an integer >= 1, got {num_constraints!r}")
    x_obs = np.asarray(x_obs, dtype=np.float32)
    if x_obs.ndim != 2:
        raise ValueError(f"argument `x_obs`: expected shape (N, n), got {x_obs.shape}")
    A = np.array(jax.random.normal(key, (num_constraints, x_obs.shape[1])), dtype=np.float32)
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    if placement == "data":
        b = np.max(x_obs @ A.T, axis=0) + slack
    elif placement == "center":
        offsets = np.asarray(jax.random.uniform(jax.random.fold_in(key, 1), A.shape, minval=0.25, maxval=0.75))
        b = np.sum(A * offsets, axis=1)
    else:
        raise ValueError(f"argument `placement`: expected 'data' or 'center', got {placement!r}")
    return {"A": jnp.asarray(A), "b": jnp.asarray(b, dtype=jnp.float32)}


def _mip(costs: jax.Array, A: jax.Array, b: jax.Array, integer: bool = True) -> MIP:
    n = costs.shape[-1]
    return MIP(c=costs, A_ub=A, b_ub=b, lb=jnp.zeros(n), ub=jnp.ones(n), integrality=integer)


def solve_constraints(params: dict, costs: jax.Array, backend: str = "enumeration") -> tamejax.Solution:
    """``argmin { c x : A_hat x <= b_hat, x in {0,1}^n }`` for a batch of costs (not differentiated).

    Args:
      params: ``{"A", "b"}`` (normalized inside).
      costs: shape ``(B, n)``.
      backend: a MIP backend (``"enumeration"`` is exact and fastest here).

    Returns:
      The ``tamejax.Solution`` (``x`` NaN where the learned program is infeasible).
    """
    A, b = normalize_constraints(jax.lax.stop_gradient(params))
    return tamejax.solve(_mip(costs, A, b), backend)


def _feasibility_hinge(A: jax.Array, b: jax.Array, x_obs: jax.Array, margin: float) -> jax.Array:
    return jnp.sum(jax.nn.relu(x_obs @ A.T - b + margin), axis=-1)


def cut_hinge_loss(
    params: dict,
    costs: jax.Array,
    x_obs: jax.Array,
    *,
    margin: float = 0.01,
    backend: str = "enumeration",
) -> tuple[jax.Array, jax.Array]:
    """Structured hinge: ``x_obs`` feasible with margin, the solver's cheaper answer cut off with margin.

    $$L = \\sum_i [a_i x_{obs} - b_i + \\mu]_+ + 1[c \\hat x < c x_{obs}]\\,
    [\\mu - \\max_i (a_i \\hat x - b_i)]_+,\\quad \\hat x = \\arg\\min_{A x \\le b} c x$$

    (rows normalized; ``x_hat`` a fixed point). Zero iff ``x_obs`` is feasible with margin and
    no feasible point is cheaper (``x_hat`` ties ``x_obs``).

    Args:
      params: ``{"A", "b"}``.
      costs: shape ``(B, n)``.
      x_obs: observed solutions, shape ``(B, n)``.
      margin: ``mu``, the distance asked for on both sides.
      backend: MIP backend for ``x_hat``.

    Returns:
      ``(mean loss, correct)``: the scalar loss and a ``(B,)`` boolean, ``x_hat == x_obs``.
    """
    A, b = normalize_constraints(params)
    sol = solve_constraints(params, costs, backend)
    ok = sol.status <= int(tamejax.Status.FEASIBLE)
    x_hat = jnp.where(ok[:, None], sol.x, 0.0).astype(A.dtype)
    cheaper = ok & (jnp.sum(costs * x_hat, -1) < jnp.sum(costs * x_obs, -1) - 1e-7)
    cut = jax.nn.relu(margin - jnp.max(x_hat @ A.T - b, axis=-1))
    loss = _feasibility_hinge(A, b, x_obs, margin) + jnp.where(cheaper, cut, 0.0)
    correct = ok & jnp.all(jnp.abs(x_hat - x_obs) < 0.5, axis=-1)
    return jnp.mean(loss), correct


def value_gap_loss(
    params: dict,
    costs: jax.Array,
    x_obs: jax.Array,
    *,
    relaxation: str = "lp",
    margin: float = 0.01,
    feasibility_weight: float = 1.0,
    backend: str | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Optimality gap ``c x_obs - z(c; A, b)`` plus a feasibility hinge, through ``tamejax.value``.

    $$L = [c^\\top x_{obs} - z(c; A, b)]_+ + \\lambda \\sum_i [a_i x_{obs} - b_i + \\mu]_+$$

    (the gap is clipped at 0: when ``x_obs`` is infeasible for the learned program, ``z`` may
    exceed ``c x_obs`` and a negative gap would reward the infeasibility), differentiated
    with ``tamejax.value``'s conservative (active-piece) gradient. With
    ``relaxation="lp"``, ``z`` is the LP relaxation's value (``x in [0,1]^n``, GLOP), whose
    gradient in ``(A, b)`` is ``(-y x_LP^T, y)`` with the LP duals ``y``. With
    ``relaxation="none"`` it is the integer value, whose gradient in ``(A, b)`` is exactly zero
    (piecewise constant): only the hinge then moves the constraints. Infeasible learned
    programs (``z = +inf``) contribute no gap (zero gradient, as ``value`` gives) and the
    hinge restores feasibility of ``x_obs``.

    Args:
      params: ``{"A", "b"}``.
      costs: shape ``(B, n)``.
      x_obs: shape ``(B, n)``.
      relaxation: ``"lp"`` or ``"none"``.
      margin: ``mu``.
      feasibility_weight: ``lambda``.
      backend: solver (default ``"glop"`` for ``"lp"``, ``"enumeration"`` for ``"none"``).

    Returns:
      ``(mean loss, correct)``; ``correct`` compares the *integer* solution (``"none"``) or
      the LP solution (``"lp"``, correct only when the LP optimum is that integer point).

    Raises:
      ValueError: for an unknown ``relaxation``.
    """
    if relaxation not in ("lp", "none"):
        raise ValueError(f"argument `relaxation`: expected 'lp' or 'none', got {relaxation!r}")
    integer = relaxation == "none"
    backend = backend or ("enumeration" if integer else "glop")
    A, b = normalize_constraints(params)
    z, sol = tamejax.value_and_solution(_mip(costs, A, b, integer), backend)
    ok = jnp.isfinite(z)
    gap = jnp.where(ok, jax.nn.relu(jnp.sum(costs * x_obs, -1) - jnp.where(ok, z, 0.0)), 0.0)
    loss = gap + feasibility_weight * _feasibility_hinge(A, b, x_obs, margin)
    correct = ok & jnp.all(jnp.abs(jnp.where(ok[:, None], sol.x, -1.0) - x_obs) < 1e-6, axis=-1)
    return jnp.mean(loss), correct


def perturbed_gap_loss(
    params: dict,
    costs: jax.Array,
    x_obs: jax.Array,
    key: jax.Array,
    *,
    sigma: float = 0.05,
    num_samples: int = 4,
    margin: float = 0.01,
    feasibility_weight: float = 1.0,
    backend: str = "enumeration",
) -> tuple[jax.Array, jax.Array]:
    """Gap to the Gaussian-smoothed integer value, score-function gradient, plus the feasibility hinge.

    $$L = \\mathbb{E}_{E, e}\\big[c x_{obs} - \\min(z(c; \\hat A + \\sigma E, \\hat b + \\sigma e), c x_{obs})\\big]
    + \\lambda \\sum_i [a_i x_{obs} - b_i + \\mu]_+$$

    estimated with ``num_samples`` draws shared by the batch; the gradient of the
    expectation is the score-function estimator
    ``-(1/S) sum_s (z_s - mean_s z_s) (E_s, e_s) / sigma`` with respect to the normalized
    ``(A_hat, b_hat)`` (the mean over the samples is the baseline), then chained through the
    normalization. ``z`` is solved exactly (no gradient of the solver is used).

    Args:
      params: ``{"A", "b"}``.
      costs: shape ``(B, n)``.
      x_obs: shape ``(B, n)``.
      key: PRNG key for the perturbations.
      sigma: perturbation scale.
      num_samples: ``S``, perturbations per step (each costs one feasibility enumeration).
      margin: ``mu``.
      feasibility_weight: ``lambda``.
      backend: integer solver.

    Returns:
      ``(mean loss, correct)``; ``correct`` compares the unperturbed solution with ``x_obs``.
    """
    A, b = normalize_constraints(params)
    m, n = A.shape
    kA, kb = jax.random.split(key)
    EA = jax.random.normal(kA, (num_samples, m, n), A.dtype)
    eb = jax.random.normal(kb, (num_samples, m), A.dtype)
    As = jax.lax.stop_gradient(A)[None] + sigma * EA
    bs = jax.lax.stop_gradient(b)[None] + sigma * eb
    B = costs.shape[0]
    # (S, B) problems; the S perturbed constraint sets each shared by the batch.
    sol = tamejax.solve(
        _mip(
            jnp.broadcast_to(costs, (num_samples, B, n)),
            jnp.broadcast_to(As[:, None], (num_samples, B, m, n)),
            jnp.broadcast_to(bs[:, None], (num_samples, B, m)),
        ),
        backend,
    )
    cx = jnp.sum(costs * x_obs, -1)
    z = jnp.where(sol.status <= int(tamejax.Status.FEASIBLE), sol.objective, jnp.inf)
    gap = jax.nn.relu(cx[None] - jnp.minimum(z, cx[None]))  # (S, B), infeasible -> 0
    adv = jax.lax.stop_gradient(gap - jnp.mean(gap, axis=0, keepdims=True))
    # surrogate whose gradient in (A, b) is the score-function estimate of d E[gap] / d(A, b)
    score = (jnp.einsum("smn,mn->s", EA, A) + jnp.einsum("sm,m->s", eb, b)) / sigma
    surrogate = jnp.mean(adv * score[:, None]) + jax.lax.stop_gradient(jnp.mean(gap) - jnp.mean(adv * score[:, None]))
    loss = surrogate + feasibility_weight * jnp.mean(_feasibility_hinge(A, b, x_obs, margin))
    base = solve_constraints(params, costs, backend)
    ok = base.status <= int(tamejax.Status.FEASIBLE)
    correct = ok & jnp.all(jnp.abs(jnp.where(ok[:, None], base.x, -1.0) - x_obs) < 0.5, axis=-1)
    return loss, correct


def exact_accuracy(params: dict, costs: np.ndarray, x_true: np.ndarray) -> float:
    """Fraction of cost vectors whose solution under the learned constraints equals ``x_true`` exactly.

    Solved exactly by enumeration (``tamejax.problems.static_constraints.solve_binary_enumeration``);
    an infeasible learned program counts as wrong.

    Args:
      params: ``{"A", "b"}``.
      costs: shape ``(N, n)``.
      x_true: shape ``(N, n)``.

    Returns:
      The accuracy in ``[0, 1]``.
    """
    from tamejax.problems.static_constraints import solve_binary_enumeration

    A, b = (np.asarray(v, dtype=np.float64) for v in normalize_constraints(params))
    x, feasible = solve_binary_enumeration(np.asarray(costs, np.float64), A, b)
    return float(np.mean(feasible & np.all(x == np.asarray(x_true), axis=1)))


@dataclasses.dataclass
class ConstraintFit:
    """Result of ``fit_constraints``.

    Attributes:
      params: learned ``{"A", "b"}`` (normalize with ``normalize_constraints``).
      history: per epoch: ``loss`` (mean training loss), ``train_acc`` (fraction of training
        examples the step's solve got exactly right, for ``value_lp`` the LP solution),
        ``test_acc`` (when test data were given; NaN on epochs not evaluated), ``time``.
      method: the method name.
      seconds: wall time of the fit.
    """

    params: dict
    history: dict
    method: str
    seconds: float


def fit_constraints(
    c_train: np.ndarray,
    x_train: np.ndarray,
    num_constraints: int,
    *,
    method: str = "hinge",
    epochs: int = 100,
    batch_size: int = 8,
    learning_rate: float = 5e-3,
    seed: int = 0,
    c_test: np.ndarray | None = None,
    x_test: np.ndarray | None = None,
    eval_every: int = 10,
    progress: bool | Callable[[int, dict], None] = True,
    init: str | None = None,
    schedule: str = "cosine",
    **loss_kwargs: Any,
) -> ConstraintFit:
    """Learn ``num_constraints`` constraints from ``(cost, solution)`` pairs with Adam.

    Args:
      c_train: costs, shape ``(N, n)``.
      x_train: observed 0/1 solutions, shape ``(N, n)``.
      num_constraints: ``m`` of the learned program.
      method: ``"hinge"`` (``cut_hinge_loss``), ``"value_lp"`` (``value_gap_loss`` on the LP
        relaxation), ``"value_ip"`` (``value_gap_loss`` on the integer value: only the hinge
        has a gradient), or ``"perturbed"`` (``perturbed_gap_loss``).
      epochs: passes over the data (the protocol: 100).
      batch_size: examples per step (the protocol: 8).
      learning_rate: Adam's step size.
      seed: shuffling, initialization and perturbation seed.
      c_test: optional test costs, for ``history["test_acc"]``.
      x_test: optional test solutions.
      eval_every: evaluate the test accuracy every this many epochs (and at the end).
      progress: show a tqdm bar (``True``), nothing (``False``) or call ``progress(epoch, row)``.
      schedule: ``"cosine"`` (Adam's step size decays from ``learning_rate`` to 0 along a
        half cosine over the run, which removes the end-of-run jitter of a constant step) or
        ``"constant"``.
      init: ``init_constraints``'s placement (default: ``"data"`` for ``"hinge"``, ``"center"``
        for the value-gap methods).
      **loss_kwargs: passed to the loss (``margin``, ``sigma``, ``num_samples``, ...).

    Returns:
      A ``ConstraintFit``.

    Raises:
      ValueError: for an unknown method or inconsistent shapes.
    """
    if method not in METHODS:
        raise ValueError(f"argument `method`: expected one of {METHODS}, got {method!r}")
    c_train = np.asarray(c_train, dtype=np.float32)
    x_train = np.asarray(x_train, dtype=np.float32)
    if c_train.ndim != 2 or c_train.shape != x_train.shape:
        raise ValueError(
            f"arguments `c_train`, `x_train`: expected equal shapes (N, n), got {c_train.shape} and {x_train.shape}"
        )
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("eval_every", eval_every)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"argument `{name}`: expected an integer >= 1, got {v!r}")
    key = jax.random.PRNGKey(seed)
    key, k0 = jax.random.split(key)
    placement = init or ("data" if method == "hinge" else "center")
    params = init_constraints(k0, num_constraints, x_train, placement=placement)
    N = c_train.shape[0]
    steps = N // batch_size  # drop the last partial batch (fixed shapes under jit)
    if steps < 1:
        raise ValueError(f"argument `batch_size`: expected at most N = {N}, got {batch_size}")
    if schedule == "cosine":
        opt = optax.adam(optax.cosine_decay_schedule(learning_rate, epochs * steps))
    elif schedule == "constant":
        opt = optax.adam(learning_rate)
    else:
        raise ValueError(f"argument `schedule`: expected 'cosine' or 'constant', got {schedule!r}")
    opt_state = opt.init(params)

    def loss_fn(p, cb, xb, k):
        if method == "hinge":
            return cut_hinge_loss(p, cb, xb, **loss_kwargs)
        if method == "value_lp":
            return value_gap_loss(p, cb, xb, relaxation="lp", **loss_kwargs)
        if method == "value_ip":
            return value_gap_loss(p, cb, xb, relaxation="none", **loss_kwargs)
        return perturbed_gap_loss(p, cb, xb, k, **loss_kwargs)

    def step(carry, batch):
        p, s = carry
        cb, xb, k = batch
        (loss, correct), g = jax.value_and_grad(loss_fn, has_aux=True)(p, cb, xb, k)
        updates, s = opt.update(g, s, p)
        return (optax.apply_updates(p, updates), s), (loss, jnp.sum(correct))

    @jax.jit
    def run_epoch(p, s, cs, xs, keys):
        # one compiled scan per epoch: the solver callbacks run inside it, no per-step dispatch
        (p, s), (losses, n_correct) = jax.lax.scan(step, (p, s), (cs, xs, keys))
        return p, s, jnp.mean(losses), jnp.sum(n_correct)

    rng = np.random.default_rng(seed)
    n = c_train.shape[1]
    history: dict = {"epoch": [], "loss": [], "train_acc": [], "test_acc": [], "time": []}
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc=f"fit {method} m={num_constraints}", leave=False)
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(N)[: steps * batch_size]
        key, k = jax.random.split(key)
        params, opt_state, loss, nc = run_epoch(
            params,
            opt_state,
            c_train[order].reshape(steps, batch_size, n),
            x_train[order].reshape(steps, batch_size, n),
            jax.random.split(k, steps),
        )
        tot_loss, tot_correct = float(loss) * steps, int(nc)
        test_acc = float("nan")
        if c_test is not None and x_test is not None and (epoch % eval_every == 0 or epoch == epochs):
            test_acc = exact_accuracy(params, c_test, x_test)
        row = {
            "epoch": epoch,
            "loss": tot_loss / steps,
            "train_acc": tot_correct / (steps * batch_size),
            "test_acc": test_acc,
            "time": time.perf_counter() - t0,
        }
        for k_, v in row.items():
            history[k_].append(v)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", train=f"{row['train_acc']:.3f}")
        elif callable(progress):
            progress(epoch, row)
    if bar is not None:
        bar.close()
    return ConstraintFit(params=params, history=history, method=method, seconds=time.perf_counter() - t0)
