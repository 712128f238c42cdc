"""``fit_mip``: train a binarized / integer-valued network by mixed-integer programming."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from fractions import Fraction
from typing import Any

import numpy as np

from tamejax.backends.base import Status
from tamejax.backends.bnn_solver import ENGINES, solve
from tamejax.bnn._data import BNNData, load_data
from tamejax.bnn._types import BNNParams, FitReport, WeightSpec, make_params, model_size_bytes, predict, relative_gap
from tamejax.bnn.formulations import FORMULATIONS, build

__all__ = ["fit_mip", "make_report", "trivial_network", "METHODS"]

METHODS = ("exact", "hybrid", "local_search", "kmeans", "batch", "decomposed")


class _Progress:
    """A tqdm bar over the time limit, ticking twice a second, with incumbent / bound / gap."""

    def __init__(self, enabled: bool, time_limit: float | None, desc: str, sense: str) -> None:
        self.enabled = enabled
        self.sense = sense
        self.bar = None
        if not enabled:
            return
        from tqdm.auto import tqdm

        total = float(time_limit) if time_limit is not None else None
        self.bar = tqdm(total=total, desc=desc, unit="s", bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt}s {postfix}")
        self.t0 = time.perf_counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True)
        self.thread.start()

    def _tick(self) -> None:
        while not self.stop.wait(0.5):
            self._set_time()

    def _set_time(self) -> None:
        t = time.perf_counter() - self.t0
        if self.bar.total is not None:
            t = min(t, self.bar.total)
        self.bar.n = round(t, 1)
        self.bar.refresh()

    def __call__(self, t: float, incumbent: float, bound: float) -> None:
        if self.bar is None:
            return
        inc = -incumbent if self.sense == "max" else incumbent
        bnd = -bound if self.sense == "max" else bound
        self.bar.set_postfix(incumbent=f"{inc:g}", bound=f"{bnd:g}", gap=f"{relative_gap(inc, bnd):.3g}")

    def close(self) -> None:
        if self.bar is None:
            return
        self.stop.set()
        self.thread.join()
        self._set_time()
        self.bar.close()


def _resolve_warm_start(
    warm_start: Any, data: BNNData, hidden: tuple[int, ...], spec: WeightSpec, seed: int, ste_kwargs: dict | None
) -> BNNParams | None:
    if warm_start is None:
        return None
    if isinstance(warm_start, str) and warm_start == "ste":
        from tamejax.bnn.gradient import train_ste

        ws = train_ste(data.X, data.y, hidden, spec, n_classes=data.n_classes, seed=seed, **(ste_kwargs or {}))
        return dataclasses.replace(ws, scaling=data.scaling)
    if isinstance(warm_start, BNNParams):
        dims = (warm_start.n_features, *warm_start.hidden, warm_start.n_classes)
        want = (data.d, *hidden, data.n_classes)
        if dims != want:
            raise ValueError(f"argument `warm_start`: expected a network with layer widths {want}, got {dims}")
        return warm_start
    raise ValueError(f"argument `warm_start`: expected None, 'ste' or a BNNParams, got {warm_start!r}")


def trivial_network(bm: Any) -> BNNParams:
    """The all-zero network (all-ones for binary weights): a feasible point of every soft formulation.

    Args:
      bm: a built :class:`tamejax.bnn.formulations.BNNModel`.

    Returns:
      The network (constant scores), used as the default hint so that a time-limited solve
      always has an incumbent.
    """
    fill = 0.0 if bm.weights.allows_zero else 1.0
    kernels = [np.full((bm.dims[i], bm.dims[i + 1]), fill) for i in range(len(bm.dims) - 1)]
    biases = [np.full(bm.dims[i + 1], fill) for i in range(len(bm.dims) - 1)]
    return make_params(kernels, biases, bm.data.scaling, bm.weights)


def fit_mip(
    X: Any,
    y: Any = None,
    hidden: tuple[int, ...] | int = (16,),
    *,
    formulation: str = "max_margin",
    method: str = "exact",
    weights: Any = "ternary",
    time_limit: float | None = 60.0,
    backend: str = "cpsat",
    warm_start: Any = None,
    rho: float = 0.0,
    neuron_penalty: float = 0.0,
    threads: int | None = None,
    seed: int = 0,
    progress: bool = True,
    scaling: Any = "exact",
    label_column: int = -1,
    n_classes: int | None = None,
    output_margin: float = 0,
    margin: float = 1,
    rel_gap: float | None = None,
    log: bool = False,
    ste_kwargs: dict | None = None,
    solver_params: dict | None = None,
    **kw: Any,
) -> tuple[BNNParams | None, FitReport]:
    """Train a network with binary/ternary/integer weights by mixed-integer programming.

    The inputs are scaled to integers exactly (:func:`tamejax.bnn.load_data`, recorded in
    ``params.scaling``), the model of ``formulation`` (:mod:`tamejax.bnn.formulations`: Icarte
    et al. 2019, Thorbjarnarson & Yorke-Smith 2023, Kurtz & Bah 2021) is built and solved by
    CP-SAT (default) or SCIP within ``time_limit``; the best network found is returned with
    its status, objective, proven bound and gap. ``train_accuracy`` is recomputed by
    :func:`tamejax.bnn.predict` on the training set, never taken from the solver.

    Args:
      X: inputs ``(n, d)`` or the path of a CSV file (features and a label column).
      y: labels ``(n,)`` in ``0..K-1`` (``None`` with a CSV path).
      hidden: hidden layer widths.
      formulation: one of ``FORMULATIONS`` (see :mod:`tamejax.bnn.formulations`).
      method: ``"exact"`` (one solve) or a heuristic of :mod:`tamejax.bnn.heuristics`
        (``"hybrid"``, ``"local_search"``, ``"kmeans"``, ``"batch"``, ``"decomposed"``).
      weights: ``"binary"``, ``"ternary"``, an integer ``P`` ({-P..P}) or ``("continuous", B)``
        (SCIP only).
      time_limit: wall-clock limit in seconds (``None``: none).
      backend: ``"cpsat"`` or ``"scip"``.
      warm_start: ``None``, a :class:`BNNParams` of the same architecture (its kernels, with the
        activations its forward pass gives, become a CP-SAT hint / SCIP start), or ``"ste"``
        (first train by straight-through gradient, :func:`tamejax.bnn.gradient.train_ste`).
      rho: robustness radius (l_inf, raw input units) of the first layer (Kurtz & Bah); the
        integer radii ``ceil(rho * scale_k)`` make it hold for ``predict``'s rounding.
      neuron_penalty: objective weight ``alpha`` of the neuron switches (Thorbjarnarson &
        Yorke-Smith); with CP-SAT a rational ``p/q``, ``q <= 10**6`` (scaled exactly to integers).
      threads: solver threads (``None``: the solver's default).
      seed: random seed (solver and warm start).
      progress: show a tqdm bar with the elapsed time, incumbent, bound and gap.
      scaling: input scaling: ``"exact"``, a number of levels, or a :class:`Scaling`.
      label_column: label column of a CSV file.
      n_classes: number of classes (default ``max(y) + 1``).
      output_margin: ``mu`` of the fitted rule (see :mod:`tamejax.bnn.formulations`).
      margin: margin of ``sat_margin``, ``min_hinge`` and ``big_m``.
      rel_gap: stop at this relative gap (``None``: prove optimality); a run stopped by it is
        ``FEASIBLE`` unless the bound proves optimality.
      log: print the solver's log.
      ste_kwargs: extra keyword arguments of ``train_ste`` for ``warm_start="ste"``.
      solver_params: extra CP-SAT parameters (e.g. ``{"symmetry_level": 0}``), CP-SAT only.
      **kw: options of the heuristic methods (an error for ``method="exact"``).

    Returns:
      ``(params, report)``. For the soft formulations (``max_correct``, ``sat_margin``,
      ``min_hinge``, ``big_m``) the all-zero network (all-ones for binary weights), or the warm
      start, is given as a hint, so a time-limited run returns a network (``FEASIBLE``) even
      when the solver found none -- except when that hint violates a hard row: binary weights
      with ``rho > 0`` (the all-ones network is not robust) or a warm start contradicting
      ``rho``; then a short limit can give ``NO_SOLUTION``. ``report.objective`` is recomputed
      from the decoded network (see ``make_report``). The time limit covers the solve only;
      building the model (about 1 s per 50,000 rows) comes on top of it in ``solve_time``.
      ``params`` is ``None`` when no network was found (status
      ``INFEASIBLE``, ``NO_SOLUTION`` or ``ERROR``; ``report.message`` says why); nothing is
      raised for solver outcomes.

    Raises:
      ValueError: on invalid data (naming the field) or options, e.g. a ``neuron_penalty`` CP-SAT
        cannot scale exactly (before anything is built or solved).
      TypeError: on unknown keyword arguments for ``method="exact"``.
    """
    if method not in METHODS:
        raise ValueError(f"argument `method`: expected one of {METHODS}, got {method!r}")
    if formulation not in FORMULATIONS:
        raise ValueError(f"argument `formulation`: expected one of {FORMULATIONS}, got {formulation!r}")
    if backend not in ENGINES:
        raise ValueError(f"argument `backend`: expected one of {ENGINES}, got {backend!r}")
    if time_limit is not None and not (
        isinstance(time_limit, int | float | np.integer | np.floating)
        and not isinstance(time_limit, bool)
        and math.isfinite(time_limit)
        and time_limit > 0
    ):
        raise ValueError(f"argument `time_limit`: expected a positive number of seconds or None, got {time_limit!r}")
    spec = WeightSpec.parse(weights)
    if backend == "cpsat" and not spec.is_integer:
        raise ValueError(
            f"argument `weights`: CP-SAT needs integer weights, got {spec}; use backend='scip' for continuous weights"
        )
    if backend == "cpsat" and isinstance(neuron_penalty, int | float | np.integer | np.floating):
        # CP-SAT needs an exact integer objective: alpha must be a rational p/q (q <= 1e6) exactly
        fr = Fraction(float(neuron_penalty)).limit_denominator(10**6)
        if math.isfinite(float(neuron_penalty)) and float(fr) != float(neuron_penalty):
            raise ValueError(
                "argument `neuron_penalty`: CP-SAT needs a rational value p/q with q <= 10**6 (e.g. 0.29 or 1/3), "
                f"got {neuron_penalty!r}; use backend='scip' for arbitrary reals"
            )
    data = load_data(X, y, label_column=label_column, scaling=scaling, n_classes=n_classes)
    from tamejax.bnn.formulations import _check_hidden

    hidden_t = _check_hidden(hidden)
    ws = _resolve_warm_start(warm_start, data, hidden_t, spec, seed, ste_kwargs)
    if method != "exact":
        from tamejax.bnn import heuristics

        return heuristics.fit_heuristic(
            method,
            data,
            hidden=hidden_t,
            formulation=formulation,
            weights=spec,
            time_limit=time_limit,
            backend=backend,
            warm_start=ws,
            rho=rho,
            neuron_penalty=neuron_penalty,
            threads=threads,
            seed=seed,
            progress=progress,
            output_margin=output_margin,
            margin=margin,
            solver_params=solver_params,
            **kw,
        )
    if kw:
        raise TypeError(f"fit_mip() got unexpected keyword arguments for method='exact': {sorted(kw)}")
    t0 = time.perf_counter()
    bm = build(
        formulation,
        data,
        hidden_t,
        spec,
        rho=rho,
        neuron_penalty=neuron_penalty,
        output_margin=output_margin,
        margin=margin,
    )
    if ws is None and formulation not in ("min_weight", "max_margin"):
        ws = trivial_network(bm)  # always feasible for the soft formulations: a first incumbent at once
    hint = bm.hint_from_params(ws) if ws is not None else None
    bar = _Progress(progress, time_limit, f"fit_mip[{formulation}/{backend}]", bm.sense)
    try:
        res = solve(
            bm.model,
            engine=backend,
            time_limit=time_limit,
            threads=threads,
            seed=seed,
            hint=hint,
            progress=bar,
            rel_gap=rel_gap,
            log=log,
            params=solver_params,
        )
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    params, rep = make_report(bm, res, data, "exact", backend, elapsed)
    if isinstance(warm_start, BNNParams) and (warm_start.scaling != data.scaling or warm_start.weights != spec):
        rep.extra["warm_start_note"] = (
            "the warm start has a different input scaling or weight set: its hint was computed on this data's "
            "scaled inputs with its weights clipped to the weight set"
        )
    return params, rep


def make_report(
    bm: Any, res: Any, data: BNNData, method: str, backend: str, elapsed: float
) -> tuple[BNNParams | None, FitReport]:
    """Turn one solve of a built model into ``(params, FitReport)`` (for ``fit_mip`` and the heuristics).

    Args:
      bm: the :class:`tamejax.bnn.formulations.BNNModel` solved.
      res: the :class:`tamejax.backends.bnn_solver.SolveResult`.
      data: the full training set (accuracy is recomputed on it by ``predict``).
      method: the method name for the report.
      backend: the engine name for the report.
      elapsed: wall seconds to report.

    Returns:
      ``(params or None, report)``. The objective is recomputed from the decoded network when
      its forward-pass point satisfies every row of ``bm.model`` exactly; otherwise the
      solver's value is kept, ``OPTIMAL`` is downgraded to ``FEASIBLE`` and the message says
      so. ``gap`` is always ``relative_gap(objective, bound)``.
    """
    history = [(t, bm.objective_value(i), bm.objective_value(b)) for t, i, b in res.history]
    n_vars, n_rows = bm.model.n_vars, bm.model.n_rows
    if res.x is None or not Status(res.status).has_solution:
        rep = FitReport(
            status=Status(res.status),
            objective=math.nan,
            bound=bm.objective_value(res.bound) if math.isfinite(res.bound) else math.nan,
            gap=math.nan,
            train_accuracy=math.nan,
            solve_time=elapsed,
            model_size_bytes=0,
            n_variables=n_vars,
            n_constraints=n_rows,
            method=method,
            formulation=bm.formulation,
            history=history,
            message=f"no network: {res.message}",
            sense=bm.sense,
            backend=backend,
        )
        return None, rep
    params = bm.decode(res.x)
    acc = float(np.mean(predict(params, data.X, scaled=True) == data.y))
    obj = bm.objective_value(res.objective)
    bnd = bm.objective_value(res.bound) if not math.isnan(res.bound) else math.nan
    status, message = Status(res.status), res.message
    status, obj, bnd, message = _verify_claim(bm, params, status, obj, bnd, message)
    gap = relative_gap(obj, bnd)
    rep = FitReport(
        status=status,
        objective=obj,
        bound=bnd,
        gap=gap,
        train_accuracy=acc,
        solve_time=elapsed,
        model_size_bytes=model_size_bytes(params),
        n_variables=n_vars,
        n_constraints=n_rows,
        method=method,
        formulation=bm.formulation,
        history=history,
        message=message,
        sense=bm.sense,
        backend=backend,
    )
    return params, rep


def _verify_claim(
    bm: Any, params: BNNParams, status: Status, obj: float, bnd: float, message: str
) -> tuple[Status, float, float, str]:
    """Recompute the objective from the decoded network, so the claim is what ``predict`` realises.

    The point ``bm.hint_from_params(params)`` (activations, indicators, slacks and margins from
    the exact forward pass) is checked against every row of ``bm.model`` (tolerance 1e-9). If it
    is feasible, its objective -- the best the model allows *for this network* -- is reported
    (it differs from the solver's value only when the solver's indicators were not tight, or by
    the solver's tolerances). If it is not (e.g. SCIP's tolerances accepted a sign row that the
    exact forward pass violates), the solver's value is kept, ``OPTIMAL`` becomes ``FEASIBLE``
    and ``message`` says that the claim could not be verified.
    """
    try:
        x = bm.hint_from_params(params)
    except ValueError as err:  # pragma: no cover - decode always gives the model's architecture
        return status, obj, bnd, f"{message}; claim not verified: {err}"
    if np.any(np.isnan(x)):
        return status, obj, bnd, f"{message}; claim not verified (the model has variables the network does not set)"
    if bm.model.violations(x, tol=1e-9) != 0:
        note = (
            f"{message}; WARNING: the decoded network violates the model's rows in exact arithmetic (solver "
            "tolerance): the objective is the solver's claim, not verified"
        )
        if status == Status.OPTIMAL:
            status, note = Status.FEASIBLE, note + "; status downgraded from OPTIMAL"
        return status, obj, bnd, note
    rec = bm.objective_value(bm.model.objective_of(x))
    if abs(rec - obj) > 1e-9 * max(1.0, abs(obj)):
        message = f"{message}; objective recomputed from the decoded network: {rec:g} (solver reported {obj:g})"
        if status == Status.OPTIMAL and bnd == obj:
            bnd = rec
        obj = rec
    return status, obj, bnd, message
