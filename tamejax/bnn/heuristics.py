r"""Heuristics for training binarized / integer-valued networks as MIPs: hybrid, local search, k-means, batch.

The exact method (``fit_mip(..., method="exact")``) solves one MIP over all weights, all hidden activations
and all training examples. Its size grows with ``n_examples x width`` and it stalls beyond a few hundred
examples. The five methods here solve a sequence of smaller or easier MIPs built by
:func:`tamejax.bnn.formulations.build` and solved by :func:`tamejax.backends.bnn_solver.solve`. Each method
returns a valid network, with the same exact integer arithmetic and the same "correct" rule as
:func:`tamejax.bnn.predict`:

* ``"hybrid"``, after Icarte, Illanes, Castro, Cire, McIlraith & Beck, *Training binarized neural networks
  using MIP and CP*, CP 2019. Stage 1 is a CP-SAT feasibility solve that finds weights fitting every
  training example. This fixes the hidden activations ``h_l(x_i)``. Stage 2 is a MIP with those activations
  fixed: a pure integer linear program in the weights alone that decomposes by neuron. It optimises the
  ``"min_weight"`` or ``"max_margin"`` objective.
* ``"local_search"``, after Kurtz & Bah, *Efficient and robust mixed-integer optimization methods for
  training binarized deep neural networks*, 2021. Block-coordinate descent on the weights: a block (one
  layer, or one neuron's incoming weights and bias) is re-optimised by a small MIP with every other weight
  fixed. It starts from a warm start (straight-through gradient or random) and stops when a whole round
  gains nothing, or at the time limit.
* ``"kmeans"``, after Kurtz & Bah 2021 (iterative data splitting). The training examples of each class are
  clustered by k-means, and the MIP requires all points of a cluster to share one hidden activation pattern.
  The model is built on one representative per cluster. The other members only add their first-layer sign
  rows, enforced by the representative's activation variables, and the per-example objective terms are
  weighted by the cluster size. This leaves one set of activation decisions, products and output rows per
  cluster instead of per example. Misclassified clusters (or all of them, when none is misclassified or the
  restricted model gave no network) are split by 2-means and the MIP is solved again, warm-started from the
  previous network, which stays feasible. With one cluster per example this is exactly the exact model.
* ``"batch"``, after Thorbjarnarson & Yorke-Smith, *Optimal training of integer-valued neural networks with
  mixed integer programming*, PLOS ONE 2023 (arXiv 2009.03825). Each epoch solves the MIP on disjoint
  batches of the training set and averages the batch networks weighted by their validation accuracy. The
  average is rounded to the integer grid, and each weight's bounds are tightened to a shrinking window
  around it for the next epoch.

* ``"decomposed"``, Icarte et al. 2019's stage 2 in its decomposed form, with activation targets chosen
  before any solve. Once the hidden activations of the training examples are fixed, the weight problem
  separates into one small MIP per hidden neuron (its ``d + 1`` weights must reproduce the neuron's target on
  every example, with the largest margin) and one MIP for the output layer. The targets come from an
  error-correcting output code (:func:`ecoc_code`: example ``i`` of class ``y`` gets ``C[y, j]`` at neuron
  ``j``) or from a warm start's activations. The output layer is solved on the *actual* activations of the
  fitted hidden layer.

Honest statuses: a heuristic reports ``Status.FEASIBLE`` whenever it returns a network, and reports
``Status.OPTIMAL`` only when it has proved optimality for the whole problem. ``"kmeans"`` proves it when its
last solve was the exact model (one cluster per example) and that solve was optimal. ``"local_search"`` and
``"kmeans"`` also prove it when the network attains the formulation's best conceivable value (every example
fitted for ``max_correct``, every margin met for ``sat_margin``, zero loss for ``min_hinge``/``big_m``,
without neuron switches). ``bound`` and ``gap`` are ``nan`` unless such a proof exists.
``Status.INFEASIBLE`` is reported only when the whole problem is proven infeasible (the hybrid's stage 1 is
the full feasibility model). In every other case where no network is found, the status is
``Status.NO_SOLUTION``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tamejax.backends.base import Status
from tamejax.backends.bnn_solver import SolveResult, solve
from tamejax.bnn._data import BNNData
from tamejax.bnn._types import (
    BNNParams,
    FitReport,
    WeightSpec,
    hidden_activations,
    make_params,
    model_size_bytes,
    predict,
    relative_gap,
)
from tamejax.bnn.formulations import BNNModel, build

__all__ = ["HEURISTICS", "ecoc_code", "fit_heuristic", "kmeans_labels"]

HEURISTICS = ("hybrid", "local_search", "kmeans", "batch", "decomposed")

# Formulations that require every training example to be fitted (Icarte's models): a network that
# misclassifies an example is infeasible for them.
_HARD = ("min_weight", "max_margin")
_MIN_SOLVE_TIME = 0.05  # seconds: the smallest time limit handed to one solve


# --------------------------------------------------------------------------------------------------------
# small utilities
# --------------------------------------------------------------------------------------------------------
class _Clock:
    """Wall clock of one heuristic run: the overall time limit, split across its stages."""

    def __init__(self, time_limit: float) -> None:
        self.t0 = time.perf_counter()
        self.limit = float(time_limit)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def remaining(self) -> float:
        return self.limit - self.elapsed()

    def share(self, fraction: float) -> float:
        """A time limit for the next solve: ``fraction`` of what remains (at least ``_MIN_SOLVE_TIME``; ``inf``
        without a limit)."""
        return max(_MIN_SOLVE_TIME, fraction * self.remaining())


class _Progress:
    """A tqdm bar over the solves of a heuristic, showing the incumbent (disabled if ``progress=False``)."""

    def __init__(self, enabled: bool, method: str, total: int | None = None) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=f"bnn {method}", unit="solve", leave=True)

    def step(self, **postfix: Any) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()})
            self.bar.update(1)

    def callback(self, bm: BNNModel | None = None, **fixed: Any) -> Callable[[float, float, float], None] | None:
        """A ``progress(t, incumbent, bound)`` callback for :func:`solve` that updates the bar's postfix.

        With ``bm``, the solver's (minimised) values are shown in the formulation's own sense.
        """
        if self.bar is None:
            return None
        bar = self.bar
        conv = (lambda v: v) if bm is None else bm.objective_value

        def cb(t: float, incumbent: float, bound: float) -> None:
            inc, bnd = conv(incumbent), conv(bound)
            bar.set_postfix({**fixed, "t": f"{t:.1f}", "inc": f"{inc:.4g}", "bnd": f"{bnd:.4g}"})

        return cb

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _accuracy(params: BNNParams | None, data: BNNData, idx: np.ndarray | None = None) -> float:
    if params is None:
        return math.nan
    X, y = (data.X, data.y) if idx is None else (data.X[idx], data.y[idx])
    if len(y) == 0:
        return math.nan
    return float(np.mean(predict(params, X, scaled=True) == y))


def _value(bm: BNNModel, params: BNNParams) -> float | None:
    """The formulation's objective (in its own sense) of ``params`` on ``bm``; ``None`` if infeasible there."""
    x = bm.hint_from_params(params)
    if np.any(np.isnan(x)) or bm.model.violations(x) > 0:
        return None
    return float(bm.objective_value(bm.model.objective_of(x)))


def _sense(formulation: str) -> str:
    """Direction of a formulation's objective (the minimised ones are the weight count and the hinge losses)."""
    return "min" if formulation in ("min_weight", "min_hinge", "big_m") else "max"


def _ideal(bm: BNNModel) -> float | None:
    """The formulation's best conceivable value when it is attainable in principle, else ``None``.

    ``max_correct``: every example fitted (``n``); ``sat_margin``: every margin satisfied (``n (K - 1)``);
    ``min_hinge``/``big_m``: zero loss, all over the whole training set (a k-means model's weighted objective
    is the full one). A network reaching it is optimal for the whole problem. Not used with neuron switches
    (their penalty moves the optimum).
    """
    if bm.options.get("neuron_penalty", 0.0) > 0:
        return None
    n, K = bm.data.n, bm.data.n_classes
    return {
        "max_correct": float(n),
        "sat_margin": float(n * (K - 1)),
        "min_hinge": 0.0,
        "big_m": 0.0,
    }.get(bm.formulation)


def _reaches(bm: BNNModel, value: float | None, ideal: float | None) -> bool:
    if value is None or ideal is None:
        return False
    return value >= ideal - 1e-9 if bm.sense == "max" else value <= ideal + 1e-9


def _better(sense: str, a: float | None, b: float | None, tol: float = 1e-9) -> bool:
    """Whether objective ``a`` is strictly better than ``b`` (``None`` = infeasible, worst)."""
    if a is None:
        return False
    if b is None:
        return True
    return a > b + tol if sense == "max" else a < b - tol


def _pos_float(name: str, value: Any, *, upper: float | None = None) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"argument `{name}`: expected a number, got {type(value).__name__} {value!r}") from None
    if not (v > 0 and math.isfinite(v)) or (upper is not None and v > upper):
        rng = f"(0, {upper}]" if upper is not None else "a positive finite number"
        raise ValueError(f"argument `{name}`: expected {rng}, got {value!r}")
    return v


def _pos_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"argument `{name}`: expected an integer >= 1, got {value!r}")
    return int(value)


def _weight_arrays(params: BNNParams) -> list[np.ndarray]:
    """Kernels and biases of ``params`` as a flat list ``[K_1, b_1, K_2, b_2, ...]`` (NumPy)."""
    out: list[np.ndarray] = []
    for layer in params.layers:
        out += [np.asarray(layer["kernel"]), np.asarray(layer["bias"])]
    return out


def _weight_idx(bm: BNNModel) -> list[np.ndarray]:
    """Variable indices in the order of :func:`_weight_arrays`."""
    out: list[np.ndarray] = []
    for k_idx, b_idx in zip(bm.kernel_idx, bm.bias_idx, strict=True):
        out += [np.asarray(k_idx), np.asarray(b_idx)]
    return out


def _params_from_arrays(arrays: list[np.ndarray], like: BNNParams) -> BNNParams:
    return make_params(arrays[0::2], arrays[1::2], like.scaling, like.weights)


def _random_params(bm: BNNModel, data: BNNData, spec: WeightSpec, rng: np.random.Generator) -> BNNParams:
    """A random network with each weight drawn uniformly from its variable's domain in ``bm``.

    Binary weights never take 0; continuous weights are drawn uniformly from their interval.
    """
    lb, ub = bm.model.lb, bm.model.ub
    arrays = []
    for idx in _weight_idx(bm):
        lo, hi = lb[idx], ub[idx]
        if spec.is_integer:
            v = np.floor(lo + rng.random(idx.shape) * (hi - lo + 1)).clip(lo, hi)
            if not spec.allows_zero:
                v = np.where(v == 0, np.where(rng.random(idx.shape) < 0.5, -1.0, 1.0), v).clip(lo, hi)
        else:
            v = lo + rng.random(idx.shape) * (hi - lo)
        arrays.append(v)
    return make_params(arrays[0::2], arrays[1::2], data.scaling, spec)


def _trivial_params(bm: BNNModel, data: BNNData, spec: WeightSpec, rng: np.random.Generator) -> BNNParams:
    """A default start when there is no warm start: the all-zero network if 0 is a weight, else a random one.

    The zero network gives every example the same activations (all pre-activations are 0, ``h = +1``), so it
    respects any tying of activations (k-means), and it is feasible for every soft formulation. As a hint it
    hands the solver a first incumbent at once.
    """
    if spec.allows_zero:
        zeros = [np.zeros(np.shape(idx)) for idx in _weight_idx(bm)]
        return make_params(zeros[0::2], zeros[1::2], data.scaling, spec)
    return _random_params(bm, data, spec, rng)


def _solve(model: Any, *, hint: np.ndarray | None, time_limit: float, **kw: Any) -> SolveResult:
    """:func:`solve` with an infinite time limit meaning none.

    ``solve`` keeps a complete feasible hint as the incumbent when a short limit ends the solve before it
    reports a better point (CP-SAT can spend a short limit in presolve). This makes every heuristic step that is
    hinted with the current network monotone.
    """
    return solve(model, hint=hint, time_limit=None if math.isinf(time_limit) else time_limit, **kw)


def _hint(bm: BNNModel, params: BNNParams | None) -> np.ndarray | None:
    return None if params is None else bm.hint_from_params(params)


def _report(
    *,
    status: Status,
    params: BNNParams | None,
    data: BNNData,
    objective: float,
    sense: str,
    solve_time: float,
    n_variables: int,
    n_constraints: int,
    method: str,
    formulation: str,
    history: list[tuple[float, float, float]],
    message: str,
    extra: dict[str, Any],
    backend: str,
    bound: float = math.nan,
) -> FitReport:
    gap = 0.0 if status == Status.OPTIMAL else relative_gap(objective, bound)
    return FitReport(
        status=status,
        objective=float(objective),
        bound=float(bound),
        gap=float(gap),
        train_accuracy=_accuracy(params, data),
        solve_time=float(solve_time),
        model_size_bytes=int(model_size_bytes(params)) if params is not None else 0,
        n_variables=int(n_variables),
        n_constraints=int(n_constraints),
        method=method,
        formulation=formulation,
        history=history,
        message=message,
        sense=sense,
        backend=backend,
        extra=extra,
    )


# --------------------------------------------------------------------------------------------------------
# k-means (NumPy): scikit-learn is not a dependency of tamejax
# --------------------------------------------------------------------------------------------------------
def kmeans_labels(points: np.ndarray, k: int, *, seed: int = 0, n_init: int = 4, max_iter: int = 100) -> np.ndarray:
    r"""Cluster labels by Lloyd's k-means with k-means++ seeding (NumPy).

    Minimises the within-cluster sum of squares :math:`\sum_i \|x_i - \mu_{c(i)}\|^2` locally. Lloyd's
    iterations (assign each point to its nearest centre, then move each centre to the mean of its points)
    start from k-means++ seeds: the first centre is drawn uniformly, and each next centre is drawn with
    probability proportional to the squared distance to the nearest centre already chosen (Arthur &
    Vassilvitskii 2007). An emptied cluster is re-seeded with the worst-fitted point. The best of ``n_init``
    runs is kept. Identical points always share a cluster, and when there are at most ``k`` distinct points
    each distinct point gets its own cluster.

    Args:
      points: array ``(n, d)``.
      k: number of clusters (clipped to the number of distinct points).
      seed: random seed.
      n_init: number of seeded runs.
      max_iter: maximum Lloyd iterations per run.

    Returns:
      int64 labels ``(n,)`` in ``[0, k')``, every label used, with ``k' = min(k, #distinct points)``.

    Raises:
      ValueError: if ``points`` is not 2-D, contains NaN, or ``k < 1``.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2:
        raise ValueError(f"argument `points`: expected shape (n, d), got {pts.shape}")
    if np.any(~np.isfinite(pts)):
        raise ValueError("argument `points`: expected finite values, got NaN or inf")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"argument `k`: expected an integer >= 1, got {k!r}")
    if pts.shape[0] == 0:
        return np.zeros(0, np.int64)
    # Cluster the distinct points, each weighted by its multiplicity: identical points share a label.
    uniq, inverse, counts = np.unique(pts, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    n = uniq.shape[0]
    if n <= k:
        return inverse.astype(np.int64)
    k = int(k)
    w = counts.astype(np.float64)
    rng = np.random.default_rng(seed)
    sq = np.einsum("ij,ij->i", uniq, uniq)

    def dist2(centers: np.ndarray) -> np.ndarray:
        return np.maximum(sq[:, None] - 2.0 * uniq @ centers.T + np.einsum("ij,ij->i", centers, centers)[None, :], 0.0)

    best, best_inertia = None, math.inf
    for _ in range(max(1, int(n_init))):
        centers = np.empty((k, uniq.shape[1]))
        centers[0] = uniq[rng.choice(n, p=w / w.sum())]
        d2 = dist2(centers[:1])[:, 0]
        for c in range(1, k):
            p = w * d2
            centers[c] = uniq[rng.choice(n, p=p / p.sum()) if p.sum() > 0 else rng.integers(n)]
            d2 = np.minimum(d2, dist2(centers[c : c + 1])[:, 0])
        labels = np.full(n, -1, np.int64)
        for _ in range(max_iter):
            d = dist2(centers)
            new = np.argmin(d, axis=1)
            for c in range(k):  # re-seed an empty cluster with the worst-fitted point of a cluster of >= 2 points
                if not np.any(new == c):
                    fit = d[np.arange(n), new].copy()
                    fit[np.bincount(new, minlength=k)[new] <= 1] = -1.0
                    new[int(np.argmax(fit))] = c
            if np.array_equal(new, labels):
                break
            labels = new
            for c in range(k):
                mine = labels == c
                centers[c] = (w[mine, None] * uniq[mine]).sum(axis=0) / w[mine].sum()
        inertia = float(np.sum(w * np.sum((uniq - centers[labels]) ** 2, axis=1)))
        if inertia < best_inertia:
            best, best_inertia = labels.copy(), inertia
    assert best is not None
    _, relabel = np.unique(best, return_inverse=True)
    return relabel.reshape(-1).astype(np.int64)[inverse]


# --------------------------------------------------------------------------------------------------------
# hybrid (Icarte et al. 2019)
# --------------------------------------------------------------------------------------------------------
def _hybrid(
    data: BNNData,
    hidden: tuple[int, ...],
    spec: WeightSpec,
    *,
    formulation: str,
    time_limit: float,
    backend: str,
    warm_start: BNNParams | None,
    threads: int | None,
    seed: int,
    progress: bool,
    opts: dict[str, Any],
    solver_params: dict[str, Any] | None = None,
    stage1_fraction: float = 0.75,
) -> tuple[BNNParams | None, FitReport]:
    if formulation not in _HARD:
        raise ValueError(
            f"argument `formulation`: method 'hybrid' (Icarte et al. 2019) optimises {_HARD} after a feasibility "
            f"solve fitting every example, got {formulation!r}"
        )
    frac = _pos_float("stage1_fraction", stage1_fraction, upper=1.0)
    clock = _Clock(time_limit)
    bar = _Progress(progress, "hybrid", total=2)
    history: list[tuple[float, float, float]] = []
    try:
        # Stage 1: CP feasibility -- every training example fitted, no objective (CP-SAT; SCIP for continuous
        # weights, which CP-SAT cannot take).
        engine1 = "cpsat" if spec.is_integer else "scip"
        bm1 = build(formulation, data, hidden, spec, objective=False, **{**opts, "neuron_penalty": 0.0})
        r1 = _solve(
            bm1.model,
            engine=engine1,
            time_limit=clock.share(frac),
            threads=threads,
            params=solver_params,
            seed=seed,
            hint=_hint(bm1, warm_start),
            progress=bar.callback(bm1, stage=1),
        )
        bar.step(stage1=r1.status.name)
        msg1 = f"stage 1 ({engine1} feasibility, all examples fitted): {r1.status.name} in {r1.wall_time:.2f}s"
        size = {"n_variables": bm1.model.n_vars, "n_constraints": bm1.model.n_rows}
        extra: dict[str, Any] = {"stage1_status": r1.status.name, "stage1_time": r1.wall_time}
        if r1.x is None:
            # Stage 1 is the full feasibility model: its infeasibility proves the whole problem infeasible.
            status = r1.status if r1.status in (Status.INFEASIBLE, Status.ERROR) else Status.NO_SOLUTION
            rep = _report(
                backend=backend,
                status=status,
                params=None,
                data=data,
                objective=math.nan,
                sense=bm1.sense,
                solve_time=clock.elapsed(),
                method="hybrid",
                formulation=formulation,
                history=history,
                message=f"{msg1}; {r1.message}",
                extra=extra,
                **size,
            )
            return None, rep
        p1 = bm1.decode(r1.x)
        # Stage 2: activations fixed to stage 1's -> an integer linear program in the weights alone.
        acts = hidden_activations(p1, data.X, scaled=True)
        bm2 = build(formulation, data, hidden, spec, fixed_activations=acts, **opts)
        v1 = _value(bm2, p1)
        history.append((clock.elapsed(), math.nan if v1 is None else v1, math.nan))
        remaining = clock.remaining()
        if remaining > _MIN_SOLVE_TIME:
            r2 = _solve(
                bm2.model,
                engine=backend,
                time_limit=remaining,
                threads=threads,
                params=solver_params,
                seed=seed,
                hint=_hint(bm2, p1),
                progress=bar.callback(bm2, stage=2),
            )
        else:
            r2 = SolveResult(Status.NO_SOLUTION, None, math.nan, math.nan, 0.0, [], "no time left for stage 2")
        bar.step(stage2=r2.status.name)
        best, best_v, source = p1, v1, "stage 1"
        if r2.x is not None:
            v2 = float(bm2.objective_value(r2.objective))
            if _better(bm2.sense, v2, best_v) or best_v is None:
                best, best_v, source = bm2.decode(r2.x), v2, "stage 2"
            history.append((clock.elapsed(), best_v, math.nan))
        s2_bound = float(bm2.objective_value(r2.bound)) if math.isfinite(r2.bound) else math.nan
        extra.update(
            stage2_status=r2.status.name,
            stage2_time=r2.wall_time,
            stage2_bound=s2_bound,
            stage2_n_variables=bm2.model.n_vars,
            stage2_n_constraints=bm2.model.n_rows,
            source=source,
        )
        msg = (
            f"{msg1}; stage 2 ({backend} {formulation} with the hidden activations fixed): {r2.status.name} in "
            f"{r2.wall_time:.2f}s{' (optimal for these activations only)' if r2.status == Status.OPTIMAL else ''}; "
            f"returned the {source} network; no bound for the whole problem"
        )
        rep = _report(
            backend=backend,
            status=Status.FEASIBLE,
            params=best,
            data=data,
            objective=math.nan if best_v is None else best_v,
            sense=bm2.sense,
            solve_time=clock.elapsed(),
            method="hybrid",
            formulation=formulation,
            history=history,
            message=msg,
            extra=extra,
            **size,
        )
        return best, rep
    finally:
        bar.close()


# --------------------------------------------------------------------------------------------------------
# local search (Kurtz & Bah 2021): block-coordinate descent over layers / neurons
# --------------------------------------------------------------------------------------------------------
def _blocks(hidden: tuple[int, ...], granularity: str) -> list[tuple[int, int | None]]:
    """Blocks ``(layer, neuron or None)``, output layer first, then the hidden layers backwards."""
    n_layers = len(hidden) + 1
    blocks: list[tuple[int, int | None]] = []
    for layer in reversed(range(n_layers)):
        if granularity == "layer" or layer == n_layers - 1:
            blocks.append((layer, None))  # the output layer is always one block (its neurons are coupled)
        else:
            blocks += [(layer, j) for j in range(hidden[layer])]
    return blocks


def _block_model(bm: BNNModel, params: BNNParams, data: BNNData, block: tuple[int, int | None]) -> Any:
    """``bm``'s model with every weight outside ``block`` fixed to ``params``' value.

    The hidden activations that the fixed weights determine are fixed as well (those of the layers before
    the block's, and of the block layer's other neurons), which leaves the solver only the block's weights,
    its neuron's activations and the activations of later layers.
    """
    layer, neuron = block
    m = bm.model.copy()
    acts = hidden_activations(params, data.X[bm.examples], scaled=True) if bm.act_idx else []
    for li, (k_idx, b_idx) in enumerate(zip(bm.kernel_idx, bm.bias_idx, strict=True)):
        K = np.asarray(params.layers[li]["kernel"], np.float64)
        b = np.asarray(params.layers[li]["bias"], np.float64)
        if li != layer:
            m.fix(k_idx, K)
            m.fix(b_idx, b)
        elif neuron is not None:
            keep = np.arange(K.shape[1]) != neuron
            m.fix(np.asarray(k_idx)[:, keep], K[:, keep])
            m.fix(np.asarray(b_idx)[keep], b[keep])
    for li, a_idx in enumerate(bm.act_idx):
        z = (np.asarray(acts[li]) + 1) // 2
        if li < layer:
            m.fix(a_idx, z)
        elif li == layer and neuron is not None:
            keep = np.arange(z.shape[1]) != neuron
            m.fix(np.asarray(a_idx)[:, keep], z[:, keep])
    return m


def _descend(
    bm: BNNModel,
    start: BNNParams,
    data: BNNData,
    hidden: tuple[int, ...],
    *,
    clock: _Clock,
    backend: str,
    threads: int | None,
    seed: int,
    bar: _Progress,
    granularity: str,
    block_time: float | None,
    max_rounds: int | None,
    history: list[tuple[float, float, float]],
    stop: Callable[[BNNParams], bool] | None = None,
    solver_params: dict[str, Any] | None = None,
) -> tuple[BNNParams, float | None, dict[str, Any]]:
    """Block-coordinate descent on ``bm`` from ``start``; returns the network, its value and statistics."""
    blocks = _blocks(hidden, granularity)
    per_block = block_time if block_time is not None else max(_MIN_SOLVE_TIME, clock.limit / (2 * len(blocks)))
    current, cur_v = start, _value(bm, start)
    rounds = solves = improvements = 0
    local_opt = converged = False
    while clock.remaining() > _MIN_SOLVE_TIME and (max_rounds is None or rounds < max_rounds):
        if stop is not None and stop(current):
            break
        rounds += 1
        improved, all_optimal = False, True
        for block in blocks:
            if clock.remaining() <= _MIN_SOLVE_TIME:
                all_optimal = False
                break
            model = _block_model(bm, current, data, block)
            r = _solve(
                model,
                engine=backend,
                time_limit=min(per_block, clock.remaining()),
                threads=threads,
                params=solver_params,
                seed=seed + solves,
                hint=bm.hint_from_params(current),
                progress=None,
            )
            solves += 1
            all_optimal &= r.status in (Status.OPTIMAL, Status.INFEASIBLE)
            if r.x is not None:
                v = float(bm.objective_value(r.objective))
                if _better(bm.sense, v, cur_v):
                    current, cur_v, improved = bm.decode(r.x), v, True
                    improvements += 1
                    history.append((clock.elapsed(), v, math.nan))
            bar.step(round=rounds, block=f"L{block[0]}" + ("" if block[1] is None else f"n{block[1]}"), best=cur_v)
            if stop is not None and stop(current):
                break
        if not improved:
            local_opt, converged = all_optimal, True
            break
    stats = {
        "rounds": rounds,
        "solves": solves,
        "improvements": improvements,
        "local_optimum": local_opt,
        "converged": converged,
    }
    return current, cur_v, stats


def _local_search(
    data: BNNData,
    hidden: tuple[int, ...],
    spec: WeightSpec,
    *,
    formulation: str,
    time_limit: float,
    backend: str,
    warm_start: BNNParams | None,
    threads: int | None,
    seed: int,
    progress: bool,
    opts: dict[str, Any],
    solver_params: dict[str, Any] | None = None,
    granularity: str = "layer",
    block_time: float | None = None,
    max_rounds: int | None = None,
    restarts: bool = True,
) -> tuple[BNNParams | None, FitReport]:
    if not isinstance(restarts, bool):
        raise TypeError(f"argument `restarts`: expected a bool, got {restarts!r}")
    if granularity not in ("layer", "neuron"):
        raise ValueError(f"argument `granularity`: expected 'layer' or 'neuron', got {granularity!r}")
    block_time = None if block_time is None else _pos_float("block_time", block_time)
    max_rounds = _pos_int("max_rounds", max_rounds, allow_none=True)
    clock = _Clock(time_limit)
    bar = _Progress(progress, "local_search")
    history: list[tuple[float, float, float]] = []
    try:
        bm = build(formulation, data, hidden, spec, **opts)
        start = warm_start if warm_start is not None else _random_params(bm, data, spec, np.random.default_rng(seed))
        common = dict(
            data=data,
            hidden=hidden,
            clock=clock,
            backend=backend,
            threads=threads,
            seed=seed,
            bar=bar,
            granularity=granularity,
            block_time=block_time,
            max_rounds=max_rounds,
            history=history,
            solver_params=solver_params,
        )
        extra: dict[str, Any] = {"start": "warm_start" if warm_start is not None else "random"}
        v0 = _value(bm, start)
        extra["start_value"] = math.nan if v0 is None else v0
        extra["start_accuracy"] = _accuracy(start, data)
        rng = np.random.default_rng(seed)
        bm0: BNNModel | None = None
        best, best_v, last = start, None, start
        descents: list[dict[str, Any]] = []
        while True:
            if _value(bm, start) is None:
                # The start violates the formulation (a hard formulation and a start that misfits an example,
                # or the robust margin): first maximise the number of fitted examples.
                if bm0 is None:
                    bm0 = build("max_correct", data, hidden, spec, **{**opts, "neuron_penalty": 0.0})
                start, _, stats0 = _descend(bm0, start, stop=lambda p: _value(bm, p) is not None, **common)
            # Descend on the formulation itself. From an infeasible start (e.g. a hidden pre-activation 0 where
            # max_margin needs |a| >= 1) a block solve may still find a feasible network: that is progress.
            cand, cand_v, stats = _descend(bm, start, **common)
            descents.append(stats)
            last = cand
            if cand_v is not None and (best_v is None or _better(bm.sense, cand_v, best_v)):
                best, best_v = cand, cand_v
            if _reaches(bm, best_v, _ideal(bm)):
                break  # the best conceivable value: optimal for the whole problem
            # Iterated local search: at a local optimum with time left, restart from a random network.
            if (
                not restarts
                or max_rounds is not None
                or math.isinf(clock.limit)
                or not stats["converged"]
                or clock.remaining() <= _MIN_SOLVE_TIME
            ):
                break
            start = _random_params(bm, data, spec, rng)
        stats = {
            "descents": len(descents),
            "rounds": sum(d["rounds"] for d in descents),
            "solves": sum(d["solves"] for d in descents),
            "improvements": sum(d["improvements"] for d in descents),
            "local_optimum": bool(descents[-1]["local_optimum"]),
        }
        extra.update(stats)
        if best_v is None:
            best = last
        if best_v is None:
            msg = (
                f"local search: no network feasible for {formulation!r} found in {stats['descents']} descent(s) "
                f"(start accuracy {extra['start_accuracy']:.3f}, last network {_accuracy(best, data):.3f}); "
                "try a soft formulation such as 'max_correct' or a longer time limit"
            )
            extra["best_network"] = best
            rep = _report(
                backend=backend,
                status=Status.NO_SOLUTION,
                params=None,
                data=data,
                objective=math.nan,
                sense=bm.sense,
                solve_time=clock.elapsed(),
                n_variables=bm.model.n_vars,
                n_constraints=bm.model.n_rows,
                method="local_search",
                formulation=formulation,
                history=history,
                message=msg,
                extra=extra,
            )
            return None, rep
        msg = (
            f"local search ({granularity} blocks): {stats['descents']} descent(s), {stats['rounds']} round(s), "
            f"{stats['solves']} block solve(s), {stats['improvements']} improvement(s); "
            + (
                "the last descent stopped at a local optimum (no block improves)"
                if stats["local_optimum"]
                else "stopped by the time/round limit or a block solve that did not finish"
            )
        )
        ideal = _ideal(bm)
        proven = _reaches(bm, best_v, ideal)
        msg += (
            f"; optimal: the network attains the best conceivable value {ideal:g}"
            if proven
            else "; no bound for the whole problem"
        )
        rep = _report(
            backend=backend,
            status=Status.OPTIMAL if proven else Status.FEASIBLE,
            params=best,
            data=data,
            objective=math.nan if best_v is None else best_v,
            bound=ideal if proven else math.nan,
            sense=bm.sense,
            solve_time=clock.elapsed(),
            n_variables=bm.model.n_vars,
            n_constraints=bm.model.n_rows,
            method="local_search",
            formulation=formulation,
            history=history,
            message=msg,
            extra=extra,
        )
        return best, rep
    finally:
        bar.close()


# --------------------------------------------------------------------------------------------------------
# k-means data splitting (Kurtz & Bah 2021)
# --------------------------------------------------------------------------------------------------------
def _initial_clusters(data: BNNData, n_clusters: int | float, seed: int) -> np.ndarray:
    """Cluster id ``(n,)`` per example: k-means within each class, ``k_c`` clusters for class ``c``."""
    ids = np.empty(len(data.y), np.int64)
    nxt = 0
    for c in range(data.n_classes):
        idx = np.flatnonzero(data.y == c)
        if idx.size == 0:
            continue
        if isinstance(n_clusters, float):
            k = max(1, math.ceil(n_clusters * idx.size))
        else:
            k = min(int(n_clusters), idx.size)
        lab = kmeans_labels(data.X[idx].astype(np.float64), k, seed=seed + c)
        ids[idx] = lab + nxt
        nxt += int(lab.max()) + 1
    return ids


def _atomic(data: BNNData, members: np.ndarray) -> bool:
    """Whether a cluster cannot be split: its points are identical (they share activations anyway)."""
    pts = data.X[members]
    return bool(np.all(pts == pts[0]))


def _tie_rows(bm: BNNModel, clusters: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Equality rows ``z[i, j] - z[rep, j] = 0`` tying the first hidden layer's activations in each cluster.

    Ties in the first hidden layer suffice: every later activation and the scores are functions of it.
    """
    pos = np.full(int(bm.data.n), -1, np.int64)
    pos[bm.examples] = np.arange(bm.examples.size)
    a_idx = np.asarray(bm.act_idx[0])
    cols = []
    for members in clusters:
        if members.size < 2:
            continue
        rows = pos[members]
        rep, others = a_idx[rows[0]], a_idx[rows[1:]]  # (w,), (m-1, w)
        cols.append(np.stack([others.reshape(-1), np.broadcast_to(rep, others.shape).reshape(-1)], axis=1))
    if not cols:
        return np.zeros((0, 2), np.int64), np.zeros((0, 2))
    c = np.concatenate(cols)
    return c, np.broadcast_to(np.array([1.0, -1.0]), c.shape)


def _cluster_model(
    formulation: str,
    data: BNNData,
    hidden: tuple[int, ...],
    spec: WeightSpec,
    opts: dict[str, Any],
    clusters: list[np.ndarray],
    full: Callable[[], BNNModel],
) -> tuple[BNNModel, Any]:
    r"""The MIP in which the points of each cluster share their representative's activation pattern.

    The model is built on the representatives ``r_c`` (first point of each cluster). Each other member ``i``
    of cluster ``c`` only adds its first-layer sign rows, enforced by the representative's activation
    variables: :math:`z_{r_c j} = 1 \Rightarrow x_i W_{:j} + b_j \ge 0` and
    :math:`z_{r_c j} = 0 \Rightarrow x_i W_{:j} + b_j \le -\delta` (with the margin variable for
    ``max_margin``, :math:`\ge m_j` / :math:`\le -m_j`). Every later activation and the scores of ``i`` are
    then those of ``r_c``, so the per-example objective terms of ``r_c`` (``c_i``, ``sat``, ``xi``) are
    weighted by the cluster size, and the objective is the full training objective of the network. With
    ``rho > 0`` the robust rows are not replicated: the full model is used instead, with the first layer's
    activation variables tied by equality rows.

    Returns:
      ``(bm, model)``: the built model (for ``decode``/``hint_from_params``) and the sparse model to solve.
    """
    if opts["rho"] > 0:
        bm = full()
        model = bm.model.copy()
        cols, vals = _tie_rows(bm, clusters)
        if cols.shape[0]:
            model.add_rows(cols, vals, 0.0, 0.0)
        return bm, model
    reps = np.array([m[0] for m in clusters], np.int64)
    sizes = np.array([m.size for m in clusters], np.float64)
    bm = build(formulation, data, hidden, spec, examples=reps, **opts)
    model = bm.model
    if bm.correct_idx is not None:
        model.obj[bm.correct_idx] *= sizes
    ii = bm.aux["pairs"][0]
    for key in ("sat", "xi"):
        if bm.aux.get(key) is not None:
            model.obj[bm.aux[key]] *= sizes[ii]
    owner = np.array([p for p, m in enumerate(clusters) for _ in m[1:]], np.int64)
    member = np.array([i for m in clusters for i in m[1:]], np.int64)
    if member.size:
        z = np.asarray(bm.act_idx[0])[owner]  # (M, w)
        W, b = np.asarray(bm.kernel_idx[0]), np.asarray(bm.bias_idx[0])  # (d, w), (w,)
        M, w = z.shape
        d = W.shape[0]
        cols = np.concatenate([np.broadcast_to(W.T[None], (M, w, d)), np.broadcast_to(b[None, :, None], (M, w, 1))], 2)
        xs = data.X[member].astype(np.float64)
        vals = np.concatenate([np.broadcast_to(xs[:, None, :], (M, w, d)), np.ones((M, w, 1))], 2)
        cols, vals = cols.reshape(M * w, -1), vals.reshape(M * w, -1)
        zf = z.reshape(-1)
        if formulation == "max_margin":
            mg = np.broadcast_to(np.asarray(bm.aux["margin"][0])[None, :], (M, w)).reshape(-1, 1)
            lo1 = 0.0 if spec.is_integer else bm.delta
            model.add_rows(np.hstack([cols, mg]), np.hstack([vals, -np.ones_like(mg)]), lo1, np.inf, enforce_var=zf)
            model.add_rows(
                np.hstack([cols, mg]),
                np.hstack([vals, np.ones_like(mg)]),
                -np.inf,
                -bm.delta,
                enforce_var=zf,
                enforce_val=0,
            )
        else:
            lo1 = 0.0 if spec.is_integer else bm.delta
            model.add_rows(cols, vals, lo1, np.inf, enforce_var=zf, enforce_val=1)
            model.add_rows(cols, vals, -np.inf, -bm.delta, enforce_var=zf, enforce_val=0)
    return bm, model


def _respects(params: BNNParams | None, data: BNNData, clusters: list[np.ndarray]) -> bool:
    """Whether ``params`` gives every point of each cluster the same first-layer activations."""
    if params is None:
        return False
    h = np.asarray(hidden_activations(params, data.X, scaled=True)[0])
    return all(np.all(h[m] == h[m[0]]) for m in clusters if m.size > 1)


def _kmeans(
    data: BNNData,
    hidden: tuple[int, ...],
    spec: WeightSpec,
    *,
    formulation: str,
    time_limit: float,
    backend: str,
    warm_start: BNNParams | None,
    threads: int | None,
    seed: int,
    progress: bool,
    opts: dict[str, Any],
    solver_params: dict[str, Any] | None = None,
    n_clusters: int | float = 0.25,
    iteration_fraction: float | None = None,
    max_iterations: int | None = None,
) -> tuple[BNNParams | None, FitReport]:
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int | float | np.integer | np.floating):
        raise TypeError(f"argument `n_clusters`: expected an int >= 1 or a float in (0, 1], got {n_clusters!r}")
    if isinstance(n_clusters, float | np.floating):
        n_clusters = _pos_float("n_clusters", n_clusters, upper=1.0)
    else:
        n_clusters = _pos_int("n_clusters", n_clusters)
    frac = None if iteration_fraction is None else _pos_float("iteration_fraction", iteration_fraction, upper=1.0)
    max_iterations = _pos_int("max_iterations", max_iterations, allow_none=True)
    clock = _Clock(time_limit)
    bar = _Progress(progress, "kmeans")
    history: list[tuple[float, float, float]] = []
    try:
        full_cache: list[BNNModel] = []

        def full() -> BNNModel:
            if not full_cache:
                full_cache.append(build(formulation, data, hidden, spec, **opts))
            return full_cache[0]

        n = data.n
        if hidden:
            ids = _initial_clusters(data, n_clusters, seed)
            clusters = [np.flatnonzero(ids == c) for c in range(int(ids.max()) + 1)]
        else:  # no hidden layer: no activations to share, the method is the exact model
            clusters = [np.array([i]) for i in range(data.n)]
        best, best_v = None, None
        if warm_start is not None and _value(full(), warm_start) is not None:
            best, best_v = warm_start, _value(full(), warm_start)
        incumbent = best
        sizes: list[int] = []
        last: SolveResult | None = None
        last_bm: BNNModel | None = None
        last_model: Any = None
        exact_last = proven = False
        prev_v: float | None = None
        it = 0
        while clock.remaining() > _MIN_SOLVE_TIME and (max_iterations is None or it < max_iterations):
            it += 1
            exact = all(m.size == 1 or _atomic(data, m) for m in clusters)
            bm, model = _cluster_model(formulation, data, hidden, spec, opts, clusters, full)
            sizes.append(len(clusters))
            # Hint: the incumbent if it gives each cluster one pattern, else the trivial network (which does).
            start = incumbent if _respects(incumbent, data, clusters) else None
            if start is None:
                triv = _trivial_params(bm, data, spec, np.random.default_rng(seed))
                start = triv if _respects(triv, data, clusters) else None
            hint = _hint(bm, start)
            r = _solve(
                model,
                engine=backend,
                time_limit=clock.remaining() if exact else clock.share(frac or min(0.5, max(0.1, len(clusters) / n))),
                threads=threads,
                params=solver_params,
                seed=seed,
                hint=hint,
                progress=bar.callback(bm, iteration=it, clusters=len(clusters)),
            )
            last, last_bm, last_model, exact_last = r, bm, model, exact
            p = None
            if r.x is not None:
                p = bm.decode(r.x)
                v = float(bm.objective_value(r.objective))
                incumbent = p
                if best is None or _better(bm.sense, v, best_v):
                    best, best_v = p, v
                history.append((clock.elapsed(), best_v, math.nan))
            bar.step(iteration=it, clusters=len(clusters), status=r.status.name, best=best_v)
            if _reaches(bm, best_v, _ideal(bm)):
                proven = True  # the best conceivable value: no refinement can improve it
                break
            if exact:
                break
            # Refine: split the misclassified clusters (all points of a cluster share one prediction); if the
            # restricted model gave no network, or every cluster is fitted, split every splittable cluster.
            splittable = [m.size > 1 and not _atomic(data, m) for m in clusters]
            to_split: set[int] = set()
            if p is not None and (prev_v is None or _better(bm.sense, best_v, prev_v)):
                wrong = predict(p, data.X, scaled=True) != data.y
                to_split = {i for i, m in enumerate(clusters) if splittable[i] and np.any(wrong[m])}
            if not to_split:  # no network, no progress, or no splittable misclassified cluster: refine them all
                to_split = {i for i in range(len(clusters)) if splittable[i]}
            prev_v = best_v
            new: list[np.ndarray] = []
            for i, m in enumerate(clusters):
                if i in to_split:
                    lab = kmeans_labels(data.X[m].astype(np.float64), 2, seed=seed + it)
                    new += [m[lab == 0], m[lab == 1]]
                else:
                    new.append(m)
            clusters = new
        extra: dict[str, Any] = {
            "iterations": it,
            "clusters_per_iteration": sizes,
            "last_exact": exact_last,
            "ideal_reached": proven,
        }
        if last is not None:
            extra["last_status"] = last.status.name
        bound = math.nan
        if proven and last_bm is not None:
            status, bound = Status.OPTIMAL, float(_ideal(last_bm))
        elif exact_last and last is not None:
            # The last solve was the full model: its status and bound hold for the whole problem.
            if last.status in (Status.OPTIMAL, Status.INFEASIBLE):
                status = last.status
            elif best is not None:
                status = Status.FEASIBLE
            else:
                status = Status.ERROR if last.status == Status.ERROR else Status.NO_SOLUTION
            if math.isfinite(last.bound) and last_bm is not None:
                bound = float(last_bm.objective_value(last.bound))
        else:
            status = Status.FEASIBLE if best is not None else Status.NO_SOLUTION
        msg = (
            f"k-means data splitting: {it} iteration(s), clusters {sizes}; last solve "
            f"{'on the exact model' if exact_last else 'on a restricted model (shared activations)'}: "
            f"{last.status.name if last is not None else 'none'}"
            + ("; optimal: the network attains the best conceivable value" if proven else "")
        )
        rep = _report(
            backend=backend,
            status=status,
            params=best,
            data=data,
            objective=math.nan if best_v is None else best_v,
            bound=bound,
            sense=last_bm.sense if last_bm is not None else _sense(formulation),
            solve_time=clock.elapsed(),
            n_variables=0 if last_model is None else last_model.n_vars,
            n_constraints=0 if last_model is None else last_model.n_rows,
            method="kmeans",
            formulation=formulation,
            history=history,
            message=msg,
            extra=extra,
        )
        return best, rep
    finally:
        bar.close()


# --------------------------------------------------------------------------------------------------------
# batch training (Thorbjarnarson & Yorke-Smith 2021/2023)
# --------------------------------------------------------------------------------------------------------
def _round_to_grid(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, spec: WeightSpec) -> np.ndarray:
    """Nearest point of the weight domain: integers in ``[lo, hi]`` (binary: sign with ``sign(0) = +1``)."""
    if not spec.is_integer:
        return np.clip(values, lo, hi)
    if not spec.allows_zero:
        return np.clip(np.where(values >= 0, 1.0, -1.0), lo, hi)
    return np.clip(np.floor(values + 0.5), lo, hi)  # halves round up, deterministically


def _stratified_holdout(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, validation), keeping at least one training example per class."""
    val = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = min(int(round(fraction * idx.size)), idx.size - 1)
        val += idx[:k].tolist()
    val_a = np.sort(np.asarray(val, np.int64))
    return np.setdiff1d(np.arange(y.size), val_a), val_a


def _batch(
    data: BNNData,
    hidden: tuple[int, ...],
    spec: WeightSpec,
    *,
    formulation: str,
    time_limit: float,
    backend: str,
    warm_start: BNNParams | None,
    threads: int | None,
    seed: int,
    progress: bool,
    opts: dict[str, Any],
    solver_params: dict[str, Any] | None = None,
    batch_size: int = 50,
    epochs: int = 3,
    validation: tuple[Any, Any] | None = None,
    val_fraction: float = 0.0,
    shrink: float = 0.5,
) -> tuple[BNNParams | None, FitReport]:
    batch_size = _pos_int("batch_size", batch_size)
    epochs = _pos_int("epochs", epochs)
    shrink = _pos_float("shrink", shrink, upper=1.0)
    vf = float(val_fraction)
    if not (0.0 <= vf < 1.0):
        raise ValueError(f"argument `val_fraction`: expected a number in [0, 1), got {val_fraction!r}")
    rng = np.random.default_rng(seed)
    n = data.y.size
    if validation is not None:
        if not (isinstance(validation, tuple | list) and len(validation) == 2):
            raise TypeError(f"argument `validation`: expected a pair (X_val, y_val), got {type(validation).__name__}")
        Xv_raw = np.asarray(validation[0], np.float64)
        yv = np.asarray(validation[1]).astype(np.int64).reshape(-1)
        if Xv_raw.ndim != 2 or Xv_raw.shape != (yv.size, data.X.shape[1]):
            raise ValueError(
                f"argument `validation`: expected X_val of shape (m, {data.X.shape[1]}) and y_val of shape (m,), "
                f"got {Xv_raw.shape} and {yv.shape}"
            )
        if np.any((yv < 0) | (yv >= data.n_classes)):
            raise ValueError(f"argument `validation`: expected labels in 0..{data.n_classes - 1}, got {np.unique(yv)}")
        Xv = data.scaling.apply(Xv_raw)
        train_idx, val_name = np.arange(n), "validation set"
    elif vf > 0:
        train_idx, val_idx = _stratified_holdout(data.y, vf, rng)
        Xv, yv, val_name = data.X[val_idx], data.y[val_idx], f"held-out {vf:.0%} of the training set"
    else:
        train_idx = np.arange(n)
        Xv, yv, val_name = data.X, data.y, "training set (no validation set given)"

    def val_acc(p: BNNParams) -> float:
        return float(np.mean(predict(p, Xv, scaled=True) == yv)) if yv.size else _accuracy(p, data)

    n_batches = max(1, math.ceil(train_idx.size / batch_size))
    clock = _Clock(time_limit)
    bar = _Progress(progress, "batch", total=epochs * n_batches)
    history: list[tuple[float, float, float]] = []
    epoch_log: list[dict[str, Any]] = []
    try:
        center = warm_start
        best, best_key = None, None
        if warm_start is not None:
            best, best_key = warm_start, (val_acc(warm_start), _accuracy(warm_start, data))
        radius: float | None = None  # None: the full weight domain (first epoch)
        max_vars = max_rows = 0
        domain: list[tuple[np.ndarray, np.ndarray]] | None = None
        sense = "max"
        solves_left = epochs * n_batches
        for epoch in range(epochs):
            if clock.remaining() <= _MIN_SOLVE_TIME:
                break
            perm = rng.permutation(train_idx)
            nets, accs, statuses = [], [], []
            prev = center
            if prev is None:  # first epoch without a warm start: hint the first batch with a trivial network
                bm0 = build(formulation, data, hidden, spec, examples=perm[:1], **opts)
                prev = _trivial_params(bm0, data, spec, rng)
            for batch in np.array_split(perm, n_batches):
                if clock.remaining() <= _MIN_SOLVE_TIME:
                    break
                bm = build(formulation, data, hidden, spec, examples=np.sort(batch), **opts)
                max_vars, max_rows = max(max_vars, bm.model.n_vars), max(max_rows, bm.model.n_rows)
                sense = bm.sense
                if domain is None:  # the weight domain, before any tightening
                    domain = [(bm.model.lb[i].copy(), bm.model.ub[i].copy()) for i in _weight_idx(bm)]
                if center is not None and radius is not None:
                    for idx, w in zip(_weight_idx(bm), _weight_arrays(center), strict=True):
                        lo0, hi0 = bm.model.lb[idx], bm.model.ub[idx]
                        lo = np.maximum(lo0, np.asarray(w, np.float64) - radius)
                        hi = np.minimum(hi0, np.asarray(w, np.float64) + radius)
                        bm.model.set_bounds(idx, lo, hi)
                # Hint: the current network (later epochs) or the previous batch's (first epoch), so that the
                # batch networks keep their hidden neurons aligned and can be averaged.
                r = _solve(
                    bm.model,
                    engine=backend,
                    time_limit=max(_MIN_SOLVE_TIME, clock.remaining() / max(1, solves_left)),
                    threads=threads,
                    params=solver_params,
                    seed=seed + len(epoch_log),
                    hint=_hint(bm, prev),
                    progress=None,
                )
                solves_left -= 1
                statuses.append(r.status.name)
                if r.x is not None:
                    net = bm.decode(r.x)
                    nets.append(net)
                    accs.append(val_acc(net))
                    prev = net
                bar.step(epoch=epoch + 1, status=r.status.name, val=accs[-1] if accs else math.nan)
            if not nets:
                epoch_log.append({"epoch": epoch + 1, "batches": statuses, "solved": 0})
                continue
            # Average weighted by validation accuracy, round to the grid and clip to the domain.
            wts = np.asarray(accs, np.float64)
            wts = wts / wts.sum() if wts.sum() > 0 else np.full(len(nets), 1.0 / len(nets))
            arrays = [
                np.tensordot(wts, np.stack(group), axes=1) for group in zip(*map(_weight_arrays, nets), strict=True)
            ]
            arrays = [_round_to_grid(a, lo, hi, spec) for a, (lo, hi) in zip(arrays, domain, strict=True)]
            center = _params_from_arrays(arrays, nets[0])
            key = (val_acc(center), _accuracy(center, data))
            if best_key is None or key > best_key:
                best, best_key = center, key
            epoch_log.append(
                {
                    "epoch": epoch + 1,
                    "batches": statuses,
                    "solved": len(nets),
                    "val_accuracy": key[0],
                    "train_accuracy": key[1],
                    "radius": radius,
                }
            )
            # Tighten: in epoch e >= 1 (0-based) each weight stays within r_e = P shrink^(e-1) of the averaged
            # network (rounded up for integer weights).
            r_next = float(spec.hi) * shrink**epoch
            if spec.is_integer:
                r_next = float(max(1, math.ceil(r_next - 1e-9)))
                if not spec.allows_zero:
                    r_next = 2.0  # binary: a radius below 2 would fix every weight; no tightening
            radius = r_next
        extra = {"epochs": epoch_log, "validation": val_name, "n_batches": n_batches, "batch_size": batch_size}
        msg = (
            f"batch training: {len(epoch_log)} epoch(s) of {n_batches} batch(es); networks averaged by accuracy on "
            f"the {val_name}; returned the best averaged network"
            + (" (or the warm start)" if warm_start is not None else "")
            + "; objective not evaluated on the full training set"
        )
        status = Status.FEASIBLE if best is not None else Status.NO_SOLUTION
        rep = _report(
            backend=backend,
            status=status,
            params=best,
            data=data,
            objective=math.nan,
            sense=sense,
            solve_time=clock.elapsed(),
            n_variables=max_vars,
            n_constraints=max_rows,
            method="batch",
            formulation=formulation,
            history=history,
            message=msg,
            extra=extra,
        )
        return best, rep
    finally:
        bar.close()


# --------------------------------------------------------------------------------------------------------
# decomposed (Icarte et al. 2019's stage 2 with activation targets): one small MIP per neuron
# --------------------------------------------------------------------------------------------------------
_NEURON_OBJECTIVES = ("max_margin", "max_margin_mean", "mean_margin", "hinge", "min_weight")
_DECOMPOSED_OUTPUT = ("max_margin", "max_correct", "min_weight")
_ACTIVATIONS = ("ecoc", "warm_start")
_BAGGING = ("duplicates", "all", "none")
_CODES = ("ovr_random", "random")


def _domain(spec: WeightSpec) -> tuple[float, float, float, float]:
    """``(v_lo, v_hi, scale, offset)``: a weight is ``w = scale * v + offset`` with an integer ``v`` in
    ``[v_lo, v_hi]`` (binary weights ``w = 2 v - 1``, ``v`` in {0, 1}; otherwise ``w = v`` in ``[-P, P]``)."""
    if spec.kind == "binary":
        return 0.0, 1.0, 2.0, -1.0
    return float(spec.lo), float(spec.hi), 1.0, 0.0


def ecoc_code(
    n_classes: int, width: int, *, seed: int = 0, n_candidates: int = 200, one_vs_rest: bool = True
) -> np.ndarray:
    r"""An error-correcting output code: a matrix :math:`C \in \{-1, +1\}^{K \times H}` (Dietterich & Bakiri 1995).

    Row ``k`` is the target activation pattern of class ``k`` in a hidden layer of ``H`` neurons. For
    ``K >= 3`` and ``one_vs_rest=True`` the first ``min(K, H)`` columns are one-vs-rest
    (:math:`C_{kj} = +1` iff ``k = j``). Each further
    column is a balanced bipartition of the classes (:math:`\lfloor K/2 \rfloor` classes ``+1``), chosen greedily
    among ``n_candidates`` random ones to maximise the smallest Hamming distance between two rows (ties: the
    larger sum of the row distances), preferring columns not yet used up to sign. For ``K = 2`` every column is
    :math:`(-1, +1)`: the only bipartition (:func:`fit_heuristic`'s ``"decomposed"`` then trains the duplicate
    neurons on bootstrap samples).

    Args:
      n_classes: number of classes ``K >= 2``.
      width: number of columns ``H >= 1``.
      seed: random seed of the candidate columns.
      n_candidates: random candidate columns per greedy step.
      one_vs_rest: start with the one-vs-rest columns (else every column is a balanced bipartition).

    Returns:
      int8 array ``(K, H)`` in {-1, +1}.

    Raises:
      ValueError: if ``n_classes < 2``, ``width < 1`` or ``n_candidates < 1``.
    """
    K = _pos_int("n_classes", n_classes)
    H = _pos_int("width", width)
    n_cand = _pos_int("n_candidates", n_candidates)
    assert K is not None and H is not None and n_cand is not None
    if K < 2:
        raise ValueError(f"argument `n_classes`: expected an integer >= 2, got {n_classes!r}")
    rng = np.random.default_rng(seed)
    cols: list[np.ndarray] = []
    if K == 2:
        return np.tile(np.array([[-1], [1]], np.int8), (1, H))
    for j in range(min(K, H) if one_vs_rest else 0):
        c = -np.ones(K, np.int8)
        c[j] = 1
        cols.append(c)

    def key(c: np.ndarray) -> bytes:
        return (c if c[0] > 0 else -c).tobytes()

    used = {key(c) for c in cols}
    while len(cols) < H:
        C = np.stack(cols, axis=1).astype(np.int64) if cols else np.zeros((K, 0), np.int64)
        dist = (C.shape[1] - C @ C.T) // 2  # row Hamming distances of the current code
        best, best_key = None, None
        for _ in range(n_cand):
            c = -np.ones(K, np.int8)
            c[rng.permutation(K)[: K // 2]] = 1
            d = dist + (np.not_equal.outer(c, c)).astype(np.int64)
            off = d[~np.eye(K, dtype=bool)]
            score = (key(c) not in used, int(off.min()), int(off.sum()))
            if best_key is None or score > best_key:
                best, best_key = c, score
        assert best is not None
        cols.append(best)
        used.add(key(best))
    return np.stack(cols, axis=1).astype(np.int8)


def _neuron_model(
    X: np.ndarray, t: np.ndarray, spec: WeightSpec, objective: str, *, hard: bool = False
) -> tuple[Any, dict[str, Any]]:
    r"""The MIP of one hidden neuron with fixed inputs ``X`` (n, d) and target activations ``t`` in {-1, +1}.

    Pre-activation :math:`a_i = w \cdot x_i + b` with :math:`h_i = +1` iff :math:`a_i \ge 0`. A binary
    :math:`c_i = 1` enforces target ``i`` with margin ``m >= 0``: :math:`a_i \ge m` for :math:`t_i = +1` and
    :math:`a_i \le -1 - m` for :math:`t_i = -1` (``m = 0`` is an exact fit under the sign(0) = +1 rule). The
    objective is lexicographic: first the most targets reproduced :math:`\max \sum_i c_i` (every one when the
    target is realisable), then ``max_margin``: the largest integer ``m`` (its weight in the objective exceeds
    any margin; ``max_margin_mean`` breaks its ties by the balanced mean below), or ``hinge``: ``m = 0`` and the
    smallest class-balanced hinge loss :math:`\sum_i \xi_i / n_{t_i}` at the target margin
    :math:`M = \operatorname{rint}(P\,\overline{\|(x_i, 1)\|_1} / 4)` (:math:`a_i + \xi_i \ge M` for
    :math:`t_i = +1`, :math:`a_i - \xi_i \le -1 - M` for :math:`t_i = -1`), or ``mean_margin``: ``m = 0`` and
    the largest class-balanced mean signed pre-activation
    :math:`\sum_i t_i a_i / n_{t_i}` (:math:`n_{\pm}` the number of targets of each sign; a nearest-centroid
    direction :math:`w \approx \operatorname{sign}(\bar x_+ - \bar x_-)` constrained to reproduce the
    targets), or ``min_weight``: ``m = 0`` and the fewest nonzero weights and bias. With ``hard=True`` every
    ``c_i`` is fixed to 1 (unconditional rows, a stronger model for the solver; infeasible if the target pattern
    is not realisable) and there is no hint.

    Returns ``(model, idx)`` with ``idx`` holding the variable indices ``v`` (``d + 1``, bias last), ``c``,
    ``m`` (or ``None``) and ``nz`` (or ``None``), and ``hint``: a complete feasible point (the constant
    neuron of the majority target), or ``None`` for binary weights.
    """
    from tamejax.backends.bnn_solver import SparseModel

    n, d = X.shape
    vlo, vhi, sc, off = _domain(spec)
    P = max(abs(spec.lo), abs(spec.hi))
    A = np.concatenate([np.asarray(X, np.float64), np.ones((n, 1))], axis=1)  # a_i = A_i . w
    const = off * A.sum(axis=1)  # a_i = sc * A_i . v + const_i
    mdl = SparseModel()
    v = mdl.add_vars(d + 1, vlo, vhi)
    c = mdl.add_vars(n, 0, 1)
    pos = t > 0
    cols = np.broadcast_to(v, (n, d + 1))
    vals = sc * A
    m = nz = xi = None
    M = 0.0
    weight = 1.0  # objective weight of one reproduced target: more than any secondary term can gain
    n_pos, n_neg = int(np.sum(pos)), int(np.sum(~pos))
    wt = np.where(pos, max(n_neg, 1), -max(n_pos, 1)).astype(np.float64)  # t_i n_{-t_i}: balanced mean weights
    r2 = 2.0 * float(np.abs(wt) @ np.abs(A).sum(axis=1)) * P * abs(sc) + 1.0  # exceeds the mean term's range
    if objective in ("max_margin", "max_margin_mean"):
        big = float(np.abs(A).sum(axis=1).max()) * P + 1.0
        m = int(mdl.add_vars(1, 0, big)[0])
        cols = np.concatenate([cols, np.full((n, 1), m)], axis=1)
        vals = np.concatenate([vals, np.where(pos, -1.0, 1.0)[:, None]], axis=1)
        if objective == "max_margin":
            mdl.add_objective(m, -1.0)
            weight = big + 1.0
        else:  # ties among the largest margins broken by the balanced mean (below one unit of m)
            mdl.add_objective(m, -r2)
            mdl.add_objective(v, -sc * (wt @ A))
            weight = r2 * (big + 1.0) + r2
    lo, hi = np.where(pos, -const, -np.inf), np.where(pos, np.inf, -1.0 - const)
    mdl.add_rows(cols, vals, lo, hi, enforce_var=None if hard else c)
    if objective == "min_weight" and spec.allows_zero:
        nz = mdl.add_vars(d + 1, 0, 1)
        ones = np.ones(d + 1)
        mdl.add_rows(np.stack([v, nz], 1), np.stack([ones, -P * ones], 1), -np.inf, 0.0)  # |w_j| <= P nz_j
        mdl.add_rows(np.stack([v, nz], 1), np.stack([-ones, -P * ones], 1), -np.inf, 0.0)
        mdl.add_objective(nz, 1.0)
        weight = d + 2.0
    if objective == "hinge":
        # class-balanced hinge at the target margin M (a fraction of the typical |a| scale):
        # xi_i >= M - t_i (a_i + 1/2) (in integers: +1: a_i + xi_i >= M, -1: a_i - xi_i <= -1 - M)
        M = float(np.rint(0.25 * np.abs(A).sum(axis=1).mean() * P))
        hub = M + float(np.abs(A).sum(axis=1).max()) * P + 1.0
        xi = mdl.add_vars(n, 0, hub)
        mdl.add_rows(
            np.concatenate([np.broadcast_to(v, (n, d + 1)), xi[:, None]], axis=1),
            np.concatenate([sc * A, np.where(pos, 1.0, -1.0)[:, None]], axis=1),
            np.where(pos, M - const, -np.inf),
            np.where(pos, np.inf, -1.0 - M - const),
        )
        mdl.add_objective(xi, np.abs(wt))
        weight = float(np.abs(wt).sum()) * hub + 1.0
    if objective == "mean_margin":
        # maximise the class-balanced mean signed pre-activation sum_i t_i a_i / n_{t_i} (times n_+ n_-, integer)
        mdl.add_objective(v, -sc * (wt @ A))
        weight = r2
    mdl.add_objective(c, -weight)
    hint = None
    if hard:
        mdl.fix(c, 1.0)
    elif spec.allows_zero:  # the constant neuron sign(b): b = 0 gives +1 everywhere, b = -1 gives -1
        b = 0.0 if np.sum(pos) >= np.sum(~pos) else -1.0
        hint = np.zeros(mdl.n_vars)
        hint[v[-1]] = b
        hint[c] = pos if b == 0.0 else ~pos
        if nz is not None:
            hint[nz[-1]] = float(b != 0.0)
    return mdl, {"v": v, "c": c, "m": m, "nz": nz, "xi": xi, "M": M, "hint": hint}


def _weights_of(x: np.ndarray, idx: np.ndarray, spec: WeightSpec) -> np.ndarray:
    _, _, sc, off = _domain(spec)
    return sc * np.rint(x[idx]) + off


def _stratified_bootstrap(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Distinct indices of a bootstrap sample drawn per class (every class keeps at least one example)."""
    out = []
    for k in np.unique(y):
        members = np.flatnonzero(y == k)
        out.append(np.unique(rng.choice(members, size=len(members), replace=True)))
    return np.sort(np.concatenate(out))


def _centred(data: BNNData) -> tuple[BNNData, np.ndarray | None]:
    """``data`` with every integer input column shifted by its rounded training mean ``c_j``.

    The shift moves into the scaling (``shift_j += c_j / scale_j``), so the network sees ``x_int - c`` for raw
    inputs too. Only for unclipped scalings (the quantized ones are already centred on the training range), and
    only when the new map reproduces ``x_int - c`` exactly on the training inputs; otherwise ``data`` unchanged.
    """
    sc = data.scaling
    if math.isfinite(sc.lo) or math.isfinite(sc.hi) or data.n == 0:
        return data, None
    c = np.rint(data.X.mean(axis=0)).astype(np.int64)
    if not np.any(c):
        return data, None
    scale = np.asarray(sc.scale, np.float64)
    shift = tuple(float(v) for v in np.asarray(sc.shift, np.float64) + c / scale)
    new = dataclasses.replace(sc, shift=shift)
    Xc = data.X - c[None, :]
    raw = data.X / scale[None, :] + np.asarray(sc.shift, np.float64)[None, :]  # the raw training inputs
    if not np.array_equal(new.apply(raw), Xc) or not np.array_equal(sc.apply(raw), data.X):
        return data, None
    return dataclasses.replace(data, X=Xc, scaling=new), c


def _centroid_neuron(X: np.ndarray, t: np.ndarray, spec: WeightSpec) -> np.ndarray:
    """A cheap start for one neuron (ternary / integer weights): the sign of the class-balanced centroid
    difference :math:`\bar x_+ - \bar x_-` on its largest entries (a few sparsity levels), with the bias in
    ``{-1, 0, 1}``, or the constant neuron; the candidate reproducing the most targets (bias last)."""
    n, d = X.shape
    Xf = np.asarray(X, np.float64)
    pos = t > 0
    best = np.zeros(d + 1)
    best[d] = 0.0 if np.sum(pos) >= np.sum(~pos) else -1.0
    best_ok = int(np.sum(np.where(best[d] >= 0, 1, -1) == t))
    if not spec.allows_zero or not (np.any(pos) and np.any(~pos)):
        return best
    diff = Xf[pos].mean(axis=0) - Xf[~pos].mean(axis=0)
    for q in (0.0, 0.25, 0.5, 0.75):
        thr = np.quantile(np.abs(diff), q)
        w = np.where(np.abs(diff) > thr, np.sign(diff), 0.0) if q > 0 else np.sign(diff)
        for b in (-1.0, 0.0, 1.0):
            ok = int(np.sum(np.where(Xf @ w + b >= 0, 1, -1) == t))
            if ok > best_ok:
                best, best_ok = np.append(w, b), ok
    return best


def _neuron_hint(mdl: Any, idx: dict[str, Any], X: np.ndarray, t: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The complete point of :func:`_neuron_model` for the ternary / integer weights ``w`` (bias last)."""
    a = np.asarray(X, np.float64) @ w[:-1] + w[-1]
    ok = np.where(a >= 0, 1, -1) == t
    x = np.zeros(mdl.n_vars)
    x[idx["v"]] = w
    x[idx["c"]] = ok
    if idx["m"] is not None:
        x[idx["m"]] = max(0.0, float(np.min(np.where(t > 0, a, -1.0 - a)[ok]))) if ok.any() else 0.0
    if idx["nz"] is not None:
        x[idx["nz"]] = w != 0
    if idx["xi"] is not None:
        x[idx["xi"]] = np.maximum(0.0, np.where(t > 0, idx["M"] - a, a + 1.0 + idx["M"]))
    return x


def _fit_neuron(
    X: np.ndarray,
    t: np.ndarray,
    spec: WeightSpec,
    objective: str,
    *,
    time_limit: float,
    solve_kw: dict[str, Any],
) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Weights ``(d + 1,)`` (bias last) of one neuron fitted to targets ``t`` on ``X`` (:func:`_neuron_model`),
    the solve time and its info (``realised``: every target reproduced; ``errors``: targets missed)."""
    n, d = X.shape
    clock = _Clock(time_limit)
    # 1. every target enforced unconditionally (CP-SAT is much faster on this model than on the indicator one)
    start = _centroid_neuron(X, t, spec)
    mdl, idx = _neuron_model(X, t, spec, objective, hard=True)
    hint = None
    if spec.allows_zero:
        hint = _neuron_hint(mdl, idx, X, t, start)
        hint = hint if hint[idx["c"]].all() else None  # a hint for the hard model only if it reproduces every target
    r = _solve(mdl, hint=hint, time_limit=clock.share(0.6), **solve_kw)
    stages = [r.status.name]
    n_vars, n_rows, wall = mdl.n_vars, mdl.n_rows, r.wall_time
    if r.x is None:
        # 2. not realisable (INFEASIBLE) or nothing found in time: the lexicographic max_correct model, hinted
        mdl, idx = _neuron_model(X, t, spec, objective)
        hint = _neuron_hint(mdl, idx, X, t, start) if spec.allows_zero else None
        r = _solve(mdl, hint=hint, time_limit=clock.share(1.0), **solve_kw)
        stages.append(r.status.name)
        n_vars, n_rows, wall = n_vars + mdl.n_vars, n_rows + mdl.n_rows, wall + r.wall_time
    if r.x is None:  # nothing found (binary weights come without a hint): the all-(+1) neuron
        w = np.full(d + 1, 0.0 if spec.allows_zero else 1.0)
    else:
        w = _weights_of(r.x, idx["v"], spec)
    a = np.asarray(X, np.float64) @ w[:d] + w[d]
    errors = int(np.sum(np.where(a >= 0, 1, -1) != t))
    margin = float(np.min(np.where(t > 0, a, -1.0 - a))) if errors == 0 else math.nan
    info = {
        "status": r.status.name,
        "stages": stages,
        "realised": errors == 0,
        "errors": errors,
        "margin": margin,
        "n": int(n),
        "n_variables": n_vars,
        "n_constraints": n_rows,
    }
    return w, wall, info


def _output_model(
    H: np.ndarray,
    y: np.ndarray,
    K: int,
    spec: WeightSpec,
    objective: str,
    output_margin: int,
    prior: np.ndarray | None = None,
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray | None]:
    r"""The output layer's MIP on fixed activations ``H`` (n, w) in {-1, +1}.

    Scores :math:`s_{ik} = H_i \cdot W_{:k} + b_k`; example ``i`` is correct iff
    :math:`s_{iy} - s_{ik} \ge [k < y] + \mu` for all ``k != y`` (the argmax tie rule, lowest index wins;
    ``mu = output_margin``). ``max_margin`` adds an integer ``m >= 0`` to every right-hand side and maximises
    it, breaking ties toward the kernel ``prior`` (``(w, K)``, e.g. the code's decoder :math:`C^T`) by the secondary
    objective :math:`\max \sum_{jk} \mathrm{prior}_{jk} W_{jk}`, whose range is below one unit of ``m``;
    ``min_weight`` minimises the nonzeros with every example correct; ``max_correct`` enforces the rows of
    example ``i`` by a binary ``c_i`` and maximises :math:`\sum_i c_i`. Returns ``(model, W_idx, b_idx, c_idx)``.
    """
    from tamejax.backends.bnn_solver import SparseModel

    n, w = H.shape
    vlo, vhi, sc, off = _domain(spec)
    mdl = SparseModel()
    W = mdl.add_vars((w, K), vlo, vhi)
    b = mdl.add_vars(K, vlo, vhi)
    ii, kk = np.nonzero(np.arange(K)[None, :] != y[:, None])
    yy = y[ii]
    Hf = np.asarray(H, np.float64)[ii]
    # s_y - s_k = sc * (H . (v_y - v_k) + vb_y - vb_k) (the offsets cancel)
    cols = np.concatenate([W[:, yy].T, W[:, kk].T, b[yy][:, None], b[kk][:, None]], axis=1)
    vals = sc * np.concatenate([Hf, -Hf, np.ones((len(ii), 1)), -np.ones((len(ii), 1))], axis=1)
    rhs = (kk < yy).astype(np.float64) + float(output_margin)
    c_idx = None
    if objective == "max_correct":
        c_idx = mdl.add_vars(n, 0, 1)
        mdl.add_rows(cols, vals, rhs, np.inf, enforce_var=c_idx[ii], enforce_val=1)
        mdl.add_objective(c_idx, -1.0)
        return mdl, W, b, c_idx
    if objective == "max_margin":
        P = max(abs(spec.lo), abs(spec.hi))
        m = mdl.add_vars(1, 0, 2.0 * P * (w + 1) + 1.0)
        cols = np.concatenate([cols, np.full((len(ii), 1), int(m[0]))], axis=1)
        vals = np.concatenate([vals, -np.ones((len(ii), 1))], axis=1)
        if prior is None:
            mdl.add_objective(m, -1.0)
        else:
            pr = np.asarray(prior, np.float64)
            mdl.add_objective(m, -(2.0 * P * float(np.abs(pr).sum()) * abs(sc) + 1.0))
            mdl.add_objective(W.reshape(-1), -sc * pr.reshape(-1))
    mdl.add_rows(cols, vals, rhs, np.inf)
    if objective == "min_weight" and spec.allows_zero:
        P = max(abs(spec.lo), abs(spec.hi))
        allv = np.concatenate([W.reshape(-1), b])
        nz = mdl.add_vars(len(allv), 0, 1)
        ones = np.ones(len(allv))
        mdl.add_rows(np.stack([allv, nz], 1), np.stack([ones, -P * ones], 1), -np.inf, 0.0)
        mdl.add_rows(np.stack([allv, nz], 1), np.stack([-ones, -P * ones], 1), -np.inf, 0.0)
        mdl.add_objective(nz, 1.0)
    return mdl, W, b, c_idx


def _output_correct(H: np.ndarray, y: np.ndarray, Wo: np.ndarray, bo: np.ndarray, output_margin: int) -> np.ndarray:
    s = np.asarray(H, np.int64) @ np.asarray(Wo, np.int64) + np.asarray(bo, np.int64)
    n, K = s.shape
    diff = s[np.arange(n), y][:, None] - s
    need = (np.arange(K)[None, :] < y[:, None]).astype(np.int64) + int(output_margin)
    ok = (diff >= need) | (np.arange(K)[None, :] == y[:, None])
    return ok.all(axis=1)


def _output_value(
    objective: str,
    H: np.ndarray,
    y: np.ndarray,
    Wo: np.ndarray,
    bo: np.ndarray,
    output_margin: int,
    x: np.ndarray,
    c_idx: np.ndarray | None,
) -> float:
    """The output stage's objective of the decoded layer: the smallest score margin beyond the tie rule
    (``max_margin``), the number of examples the solver marks fitted (``max_correct``), or the nonzeros."""
    if objective == "max_correct":
        assert c_idx is not None
        return float(np.sum(np.rint(x[c_idx])))
    if objective == "min_weight":
        return float(np.count_nonzero(Wo) + np.count_nonzero(bo))
    s = np.asarray(H, np.int64) @ np.asarray(Wo, np.int64) + np.asarray(bo, np.int64)
    n, K = s.shape
    diff = s[np.arange(n), y][:, None] - s - (np.arange(K)[None, :] < y[:, None]) - int(output_margin)
    diff[np.arange(n), y] = np.iinfo(np.int64).max
    return float(diff.min())


def _decomposed(
    data: BNNData,
    hidden: tuple[int, ...],
    spec: WeightSpec,
    *,
    formulation: str,
    time_limit: float,
    backend: str,
    warm_start: BNNParams | None,
    threads: int | None,
    seed: int,
    progress: bool,
    opts: dict[str, Any],
    solver_params: dict[str, Any] | None = None,
    activations: str = "ecoc",
    neuron_objective: str = "max_margin",
    hidden_fraction: float = 0.6,
    bagging: str = "duplicates",
    center: bool = False,
    code: str = "ovr_random",
) -> tuple[BNNParams | None, FitReport]:
    if formulation not in _DECOMPOSED_OUTPUT:
        raise ValueError(
            f"argument `formulation`: method 'decomposed' solves the output layer with one of {_DECOMPOSED_OUTPUT}, "
            f"got {formulation!r}"
        )
    if activations not in _ACTIVATIONS:
        raise ValueError(f"argument `activations`: expected one of {_ACTIVATIONS}, got {activations!r}")
    if neuron_objective not in _NEURON_OBJECTIVES:
        raise ValueError(f"argument `neuron_objective`: expected one of {_NEURON_OBJECTIVES}, got {neuron_objective!r}")
    if code not in _CODES:
        raise ValueError(f"argument `code`: expected one of {_CODES}, got {code!r}")
    code_kind = code
    if bagging not in _BAGGING:
        raise ValueError(f"argument `bagging`: expected one of {_BAGGING}, got {bagging!r}")
    frac = _pos_float("hidden_fraction", hidden_fraction, upper=1.0)
    if not spec.is_integer:
        raise ValueError(f"argument `weights`: method 'decomposed' needs integer weights (CP-SAT), got {spec}")
    if activations == "warm_start" and warm_start is None:
        raise ValueError("argument `warm_start`: activations='warm_start' needs a warm start (a BNNParams or 'ste')")
    if opts.get("rho", 0.0) or opts.get("neuron_penalty", 0.0):
        raise ValueError(
            "method 'decomposed' does not support `rho` or `neuron_penalty` (use 'exact' or 'local_search')"
        )
    out_margin = int(opts.get("output_margin", 0))
    clock = _Clock(time_limit)
    targets_ws = hidden_activations(warm_start, data.X, scaled=True) if activations == "warm_start" else None
    centre = None  # the warm start's activations above are on the original integer inputs
    if center:
        data, centre = _centred(data)
    n_neurons = int(sum(hidden))
    bar = _Progress(progress, "decomposed", total=n_neurons + 1)
    rng = np.random.default_rng(seed)
    solve_kw = {"engine": "cpsat", "threads": threads, "seed": seed, "params": solver_params}
    kernels: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    neurons: list[dict[str, Any]] = []
    n_vars = n_rows = 0
    solve_time = 0.0
    hidden_budget = frac * clock.remaining()
    codes = []
    try:
        inp = np.asarray(data.X, np.int64)
        done = 0
        for layer, width in enumerate(hidden):
            if targets_ws is not None:
                T = np.asarray(targets_ws[layer], np.int64)
                code = None
            else:
                code = ecoc_code(data.n_classes, width, seed=seed + layer, one_vs_rest=code_kind == "ovr_random")
                T = code[data.y].astype(np.int64)
                codes.append(code)
            Kl = np.zeros((inp.shape[1], width))
            bl = np.zeros(width)
            seen: set[bytes] = set()
            for j in range(width):
                rows = np.arange(data.n)
                if code is not None:
                    col = code[:, j] if code[0, j] > 0 else -code[:, j]
                    dup = col.tobytes() in seen
                    seen.add(col.tobytes())
                    if bagging == "all" or (bagging == "duplicates" and dup):
                        rows = _stratified_bootstrap(data.y, rng)
                elif bagging == "all":
                    rows = _stratified_bootstrap(data.y, rng)
                spent = clock.elapsed()
                tl = (
                    max(_MIN_SOLVE_TIME, (hidden_budget - spent) / (n_neurons - done))
                    if math.isfinite(time_limit)
                    else math.inf
                )
                w, st, info = _fit_neuron(
                    inp[rows], T[rows, j], spec, neuron_objective, time_limit=tl, solve_kw=solve_kw
                )
                Kl[:, j], bl[j] = w[:-1], w[-1]
                n_vars += info.pop("n_variables")
                n_rows += info.pop("n_constraints")
                solve_time += st
                info.update(layer=layer, neuron=j, bootstrap=bool(len(rows) < data.n))
                neurons.append(info)
                done += 1
                bar.step(layer=layer, neuron=j, realised=info["realised"])
            kernels.append(Kl)
            biases.append(bl)
            # the next layer (or the output) sees the ACTUAL activations of the fitted layer
            inp = np.where(inp @ Kl.astype(np.int64) + bl.astype(np.int64) >= 0, 1, -1)
        # Output layer on the actual hidden activations.
        Hact = inp
        K = data.n_classes
        if codes and Hact.shape[1] == codes[-1].shape[1]:
            Wh, bh = codes[-1].T.astype(np.float64), np.zeros(K)  # ECOC decoding by correlation
        elif warm_start is not None:
            Wh, bh = (
                np.asarray(warm_start.layers[-1]["kernel"], np.float64),
                np.asarray(warm_start.layers[-1]["bias"], np.float64),
            )
        else:
            Wh, bh = np.zeros((Hact.shape[1], K)), np.zeros(K)
        if spec.kind == "binary":
            Wh, bh = np.where(Wh >= 0, 1.0, -1.0), np.where(bh >= 0, 1.0, -1.0)
        stages: list[dict[str, Any]] = []
        Wo, bo = Wh, bh
        objective = math.nan
        for out_obj in [formulation] if formulation == "max_correct" else [formulation, "max_correct"]:
            mdl, W, b, c = _output_model(Hact, data.y, K, spec, out_obj, out_margin, prior=Wh)
            hint = None
            if out_obj == "max_correct":
                vlo, vhi, sc, off = _domain(spec)
                hint = np.full(mdl.n_vars, np.nan)
                hint[W.reshape(-1)] = ((Wh - off) / sc).reshape(-1)
                hint[b] = (bh - off) / sc
                hint[c] = _output_correct(Hact, data.y, Wh, bh, out_margin)
            r = _solve(mdl, hint=hint, time_limit=clock.share(1.0 if out_obj == "max_correct" else 0.5), **solve_kw)
            n_vars += mdl.n_vars
            n_rows += mdl.n_rows
            solve_time += r.wall_time
            stages.append({"objective": out_obj, "status": r.status.name, "time": r.wall_time})
            if r.x is not None:
                Wo, bo = _weights_of(r.x, W.reshape(-1), spec).reshape(W.shape), _weights_of(r.x, b, spec)
                objective = _output_value(out_obj, Hact, data.y, Wo, bo, out_margin, r.x, c)
                stages[-1]["value"] = objective
                break
        bar.step(output=stages[-1]["status"])
        kernels.append(Wo)
        biases.append(bo)
        params = make_params(kernels, biases, data.scaling, spec)
        realised = sum(1 for nr in neurons if nr["realised"])
        errs = sum(nr["errors"] for nr in neurons)
        extra: dict[str, Any] = {
            "activations": activations,
            "neuron_objective": neuron_objective,
            "neurons": neurons,
            "neurons_realised": realised,
            "neuron_target_errors": errs,
            "output_stages": stages,
            "codes": [c.tolist() for c in codes],
            "input_centre": None if centre is None else centre.tolist(),
        }
        msg = (
            f"decomposed ({activations} targets): {realised}/{n_neurons} hidden neurons reproduce their targets "
            f"exactly ({errs} target errors in total); output layer {stages[-1]['objective']} "
            f"{stages[-1]['status']} on the actual hidden activations; no bound for the whole problem"
        )
        rep = _report(
            backend="cpsat",
            status=Status.FEASIBLE,
            params=params,
            data=data,
            objective=objective if stages[-1]["objective"] == formulation else math.nan,
            sense=_sense(formulation),
            solve_time=clock.elapsed(),
            n_variables=n_vars,
            n_constraints=n_rows,
            method="decomposed",
            formulation=formulation,
            history=[(clock.elapsed(), objective, math.nan)],
            message=msg,
            extra=extra,
        )
        return params, rep
    finally:
        bar.close()


# --------------------------------------------------------------------------------------------------------
# dispatcher
# --------------------------------------------------------------------------------------------------------
_METHODS: dict[str, Callable[..., tuple[BNNParams | None, FitReport]]] = {
    "hybrid": _hybrid,
    "local_search": _local_search,
    "kmeans": _kmeans,
    "batch": _batch,
    "decomposed": _decomposed,
}
_OPTIONS = {
    "hybrid": ("stage1_fraction",),
    "local_search": ("granularity", "block_time", "max_rounds", "restarts"),
    "kmeans": ("n_clusters", "iteration_fraction", "max_iterations"),
    "batch": ("batch_size", "epochs", "validation", "val_fraction", "shrink"),
    "decomposed": ("activations", "neuron_objective", "hidden_fraction", "bagging", "center", "code"),
}


def fit_heuristic(
    method: str,
    data: BNNData,
    *,
    hidden: tuple[int, ...] = (16,),
    formulation: str = "max_margin",
    weights: WeightSpec | str | int = "ternary",
    time_limit: float | None = 60.0,
    backend: str = "cpsat",
    warm_start: BNNParams | None = None,
    rho: float = 0.0,
    neuron_penalty: float = 0.0,
    threads: int | None = None,
    seed: int = 0,
    progress: bool = True,
    output_margin: int = 0,
    margin: int = 1,
    solver_params: dict[str, Any] | None = None,
    **kw: Any,
) -> tuple[BNNParams | None, FitReport]:
    r"""Train a network with one of the MIP heuristics (what ``fit_mip(..., method=...)`` calls).

    All methods build their MIPs with :func:`tamejax.bnn.formulations.build` (same formulation, weights,
    ``rho``, ``neuron_penalty``, margins) and solve them with :func:`tamejax.backends.bnn_solver.solve`. The
    overall ``time_limit`` is split across the stages. A warm start is given to every solve as a hint
    (CP-SAT ``AddHint``, SCIP ``SetHint``).

    * ``"hybrid"`` (Icarte et al. 2019, *Training binarized neural networks using MIP and CP*): stage 1 is a
      CP-SAT feasibility solve of the full model with every example fitted and no objective, which takes
      ``stage1_fraction`` of the time. Its network fixes the hidden activations :math:`h_l(x_i)`. Stage 2
      solves the formulation (``"min_weight"`` or ``"max_margin"`` only) with those activations fixed, on
      ``backend``; it is an integer linear program in the weights alone, decomposing by neuron. The better
      of the two networks is returned. Stage 1's infeasibility proves the whole problem infeasible
      (``INFEASIBLE``). Stage 2's optimality holds for the fixed activations only, so the status is
      ``FEASIBLE`` and ``bound`` is ``nan``.
    * ``"local_search"`` (Kurtz & Bah 2021): block-coordinate descent. Starting from ``warm_start`` (e.g. the
      straight-through network, ``fit_mip(warm_start="ste")``) or a random network, each block (output
      layer first, then the hidden layers backwards; ``granularity="layer"``, or one hidden neuron's
      incoming weights and bias with ``"neuron"``) is re-optimised by a MIP in which every other weight, and
      the activations those weights determine, are fixed. A better network replaces the current one. A
      descent stops after a round without improvement (a local optimum if every block solve was optimal).
      With ``restarts=True`` (default) and time left, it then restarts from a fresh random network (iterated
      local search) and keeps the best network. It stops after ``max_rounds`` rounds (which disables
      restarts), at the time limit, or when the network attains the formulation's best conceivable value
      (every example fitted for ``max_correct``, every margin for ``sat_margin``, zero loss for
      ``min_hinge``/``big_m``, without neuron switches), which proves it optimal (status ``OPTIMAL``).
      Each block solve gets ``block_time`` seconds (default: ``time_limit / (2 * #blocks)``). If the start
      is infeasible for the formulation (a hard formulation that must fit every example), a first phase
      maximises the number of fitted examples (``"max_correct"``) until it becomes feasible or stops
      improving. The descent on the formulation itself then starts even from an infeasible network: the
      first block solve that finds a feasible network counts as an improvement. For example, a
      straight-through network with a hidden pre-activation 0 violates ``max_margin``'s :math:`|a| \ge 1`.
    * ``"kmeans"`` (Kurtz & Bah 2021, iterative data splitting): the examples of each class are clustered
      by :func:`kmeans_labels` into ``n_clusters`` clusters (an int per class, or a float fraction of the
      class size). The MIP is built on one representative ``r`` per cluster. Every other member ``i`` adds
      only its first-layer sign rows, enforced by the representative's activation variables:
      :math:`z_{rj} = 1 \Rightarrow x_i W_{:j} + b_j \ge 0` and
      :math:`z_{rj} = 0 \Rightarrow x_i W_{:j} + b_j \le -1`. All later activations and the scores are
      functions of the first layer's, so a cluster shares one activation pattern and one prediction, and its
      representative's objective terms are weighted by the cluster size. The objective is then the full
      training objective, and the model has #clusters (not #examples) x width activation decisions. With
      ``rho > 0`` the full model is used instead, with the first layer's activations tied by equality rows.
      Each solve gets ``iteration_fraction`` of the remaining time (default: #clusters / #examples, clipped
      to [0.1, 0.5], i.e. in proportion to the model's size). Then the misclassified clusters are split in
      two by 2-means (all splittable clusters are split if none is misclassified, or the restricted model
      gave no network or did not improve on the previous one). The model is solved again with the previous
      network as hint, since it satisfies the looser ties. The loop stops when every cluster is a single
      point (or identical points), i.e. the restricted model *is* the exact model, which then gets all the
      remaining time, or at ``max_iterations`` / the time limit. Every network found is feasible for the
      full model. The status is ``OPTIMAL`` (with the bound) only if the last solve was the exact model and
      proved optimal, or if the network attains the formulation's best conceivable value (e.g. every
      example fitted for ``max_correct``), which also stops the loop.
    * ``"batch"`` (Thorbjarnarson & Yorke-Smith 2023, *Optimal training of integer-valued neural networks
      with mixed integer programming*): for ``epochs`` epochs, the training set is shuffled into batches of
      about ``batch_size`` examples and the formulation is solved on each batch (time split evenly, each
      solve hinted with the previous batch's network so the hidden neurons stay aligned). The batch
      networks :math:`W^{(b)}` are averaged weighted by their accuracy :math:`a_b` on the validation set,
      :math:`\bar W = \sum_b a_b W^{(b)} / \sum_b a_b`, and rounded to the weight grid (binary: sign with
      :math:`\operatorname{sign}(0) = +1`). The validation set is ``validation=(X_val, y_val)`` in raw
      units, or ``val_fraction`` of the training set held out per class, or else the whole training set.
      Each later epoch ``e = 1, 2, ...`` bounds every weight to :math:`[\bar w - r_e, \bar w + r_e]` with
      :math:`r_e = \lceil P\,\mathrm{shrink}^{e-1} \rceil` (not rounded for continuous weights; binary weights
      are not tightened, since any :math:`r < 2` would fix them). The best averaged network by (validation,
      training) accuracy is returned; ``objective`` is ``nan`` (the full training objective is not evaluated).

    * ``"decomposed"`` (Icarte et al. 2019's hybrid with the activations fixed *before* any solve, in its
      decomposed form): each hidden neuron ``j`` gets a target activation :math:`T_{ij} \in \{-1, +1\}` for every
      training example. With ``activations="ecoc"`` (default) :math:`T_{ij} = C_{y_i j}` for the error-correcting
      code :math:`C` of :func:`ecoc_code` (``code="ovr_random"``: one-vs-rest columns, then balanced random
      bipartitions with large row distances; ``"random"``: bipartitions only); with ``"warm_start"`` the warm
      start's hidden activations. Neuron ``j`` is then one small MIP over its ``d + 1`` weights: with
      :math:`a_i = w \cdot x_i + b` and :math:`h = +1 \iff a_i \ge 0`, target ``+1`` needs :math:`a_i \ge m`
      and ``-1`` needs :math:`a_i \le -1 - m`; ``neuron_objective="max_margin"`` (default) maximises the
      integer ``m`` (``"max_margin_mean"``: ties broken by the balanced mean below), ``"hinge"`` keeps ``m = 0``
      and minimises a class-balanced hinge loss at a fixed target margin, ``"mean_margin"`` keeps ``m = 0`` and
      maximises the class-balanced mean
      :math:`\sum_i T_{ij} a_i / n_{T_{ij}}`, ``"min_weight"`` keeps ``m = 0`` and minimises the nonzeros. It is
      first solved with every target enforced (hinted with a centroid-sign neuron when that one already
      reproduces them); if that is infeasible (the target pattern is not realisable) or finds nothing in time, a
      lexicographic model maximises first the number of targets reproduced (indicator rows, max_correct), then
      the same objective; the neuron then errs on some examples (``extra["neurons"][j]["errors"]``). Layer
      ``l + 1`` (and the output) takes the *actual* activations of the fitted layer ``l``. The output layer is
      one MIP on those activations with the exact argmax tie rule: ``formulation="max_margin"`` (largest score
      margin, ties broken toward the code's decoder :math:`C^T`; if no output layer fits every example it falls
      back to ``"max_correct"``), ``"max_correct"`` or ``"min_weight"``. Duplicate code columns (always for
      ``K = 2``, where the only bipartition is the class itself) are trained on a stratified bootstrap sample of
      the examples (``bagging="duplicates"``; ``"all"``: every neuron; ``"none"``). ``center=True`` shifts each
      integer input by its rounded training mean inside the scaling (unclipped scalings only). The hidden
      neurons share ``hidden_fraction`` (0.6) of the time limit evenly; the output layer gets the rest. The
      status is ``FEASIBLE`` (no bound for the whole problem); ``objective`` is the output stage's value when
      that stage is ``formulation`` itself (else ``nan``); ``extra`` holds the codes, per-neuron status,
      margin and target errors, and the output stages.

    Args:
      method: one of :data:`HEURISTICS`.
      data: the validated data set (:func:`tamejax.bnn.load_data`), inputs already scaled to integers.
      hidden: widths of the hidden layers.
      formulation: one of ``tamejax.bnn.FORMULATIONS``.
      weights: weight domain (``"binary"``, ``"ternary"``, an int ``P`` or a ``WeightSpec``).
      time_limit: overall wall-clock limit in seconds, shared by all the solves (``None``: no limit; the
        local search then stops after its first descent).
      backend: ``"cpsat"`` or ``"scip"`` (the hybrid's stage 1 always uses CP-SAT for integer weights).
      warm_start: a network to start from and hint every solve with, or ``None``.
      rho: robust perturbation radius (Kurtz & Bah), passed to ``build``.
      neuron_penalty: weight of the neuron switches (Thorbjarnarson & Yorke-Smith), passed to ``build``.
      threads: solver threads (``None``: the solver's default).
      seed: random seed (solver, k-means, shuffling, random start).
      progress: show a tqdm bar over the solves with the incumbent.
      output_margin: score margin of a fitted example, passed to ``build``.
      margin: hinge / satisfaction margin, passed to ``build``.
      solver_params: extra CP-SAT parameters for every solve (``SatParameters`` field names, e.g.
        ``{"symmetry_level": 0}``), or ``None``.
      **kw: method options: hybrid ``stage1_fraction`` (0.75); local_search ``granularity`` ("layer"),
        ``block_time`` (None), ``max_rounds`` (None), ``restarts`` (True); kmeans ``n_clusters`` (0.25),
        ``iteration_fraction`` (None: proportional to #clusters), ``max_iterations`` (None); batch
        ``batch_size`` (50), ``epochs`` (3), ``validation`` (None), ``val_fraction`` (0.0), ``shrink`` (0.5);
        decomposed ``activations`` ("ecoc"), ``neuron_objective`` ("max_margin"), ``hidden_fraction`` (0.6),
        ``bagging`` ("duplicates"), ``center`` (False), ``code`` ("ovr_random").

    Returns:
      ``(params, report)``: the best network found (``None`` if none) and its :class:`FitReport`, in which
      ``train_accuracy`` is recomputed by :func:`tamejax.bnn.predict`, ``objective`` is the formulation's
      objective of ``params`` on the whole training set (``nan`` for ``"batch"``), and ``extra`` holds the
      per-stage / per-iteration details.

    Raises:
      ValueError: on an unknown method, an option of another method, or an invalid option value.
      TypeError: on an option of the wrong type.
    """
    if method not in _METHODS:
        raise ValueError(f"argument `method`: expected one of {HEURISTICS}, got {method!r}")
    unknown = sorted(set(kw) - set(_OPTIONS[method]))
    if unknown:
        raise ValueError(f"method {method!r}: unknown option(s) {unknown}; expected a subset of {_OPTIONS[method]}")
    if not isinstance(data, BNNData):
        raise TypeError(f"argument `data`: expected a BNNData (tamejax.bnn.load_data), got {type(data).__name__}")
    tl = math.inf if time_limit is None else _pos_float("time_limit", time_limit)
    if solver_params is not None and not isinstance(solver_params, dict):
        raise TypeError(f"argument `solver_params`: expected a dict or None, got {type(solver_params).__name__}")
    if backend not in ("cpsat", "scip"):
        raise ValueError(f"argument `backend`: expected 'cpsat' or 'scip', got {backend!r}")
    if warm_start is not None and not isinstance(warm_start, BNNParams):
        raise TypeError(f"argument `warm_start`: expected BNNParams or None, got {type(warm_start).__name__}")
    spec = WeightSpec.parse(weights)
    hidden_t = tuple(int(h) for h in hidden)
    opts = {"rho": rho, "neuron_penalty": neuron_penalty, "output_margin": output_margin, "margin": margin}
    return _METHODS[method](
        data,
        hidden_t,
        spec,
        formulation=formulation,
        time_limit=tl,
        backend=backend,
        warm_start=warm_start,
        threads=threads,
        seed=int(seed),
        progress=bool(progress),
        opts=opts,
        solver_params=solver_params,
        **kw,
    )
