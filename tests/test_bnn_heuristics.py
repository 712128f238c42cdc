"""Tests of tamejax.bnn.heuristics: hybrid, local search, k-means splitting, batch training, warm starts.

Oracles: brute-force enumeration of every ternary network of a tiny architecture (d=2 inputs, one hidden
neuron, 2 classes: 3**7 = 2187 networks), the exact model solved directly, and the recomputation of every
claim by ``predict`` and by the Flax layers (``to_flax``).
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tamejax import Status
from tamejax.backends.bnn_solver import solve
from tamejax.bnn import heuristics
from tamejax.bnn._data import load_data
from tamejax.bnn._types import make_params, predict, scores, to_flax
from tamejax.bnn.formulations import build
from tamejax.bnn.heuristics import HEURISTICS, fit_heuristic, kmeans_labels

# ----------------------------------------------------------------------------------------------------------
# data and the enumeration oracle
# ----------------------------------------------------------------------------------------------------------
X_TINY = np.array([[2, 1], [1, -1], [-1, 2], [0, 0], [-2, -1], [1, 2], [-1, -2], [2, -2]], float)
Y_TINY = np.array([1, 1, 0, 0, 0, 1, 0, 1])  # x0 > 0 except one point -> needs the hidden neuron well chosen

X_MARGIN = np.array([[2, 1], [1, -1], [-1, 2], [-2, 0], [-1, -1], [2, 2], [1, 0]], float)
Y_MARGIN = np.array([1, 1, 0, 0, 0, 1, 1])  # y = [x0 > 0], x0 never 0: a hidden margin of 1 is possible

X_XOR = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]], float)
Y_XOR = np.array([0, 0, 1, 1])


def _enumerate(X: np.ndarray, y: np.ndarray, hidden: int = 1) -> dict[str, np.ndarray]:
    """Every ternary network (d=2, `hidden` neurons, K=2): fitted flags, #correct, #nonzeros, margins."""
    d, K = X.shape[1], 2
    sizes = [d * hidden, hidden, hidden * K, K]
    vals = np.array(list(itertools.product((-1, 0, 1), repeat=sum(sizes))), float)  # (N, 7)
    o = np.cumsum([0, *sizes])
    K1 = vals[:, o[0] : o[1]].reshape(-1, d, hidden)
    b1 = vals[:, o[1] : o[2]]
    K2 = vals[:, o[2] : o[3]].reshape(-1, hidden, K)
    b2 = vals[:, o[3] : o[4]]
    a = np.einsum("id,ndh->nih", X, K1) + b1[:, None, :]  # (N, n, h)
    h = np.where(a >= 0, 1.0, -1.0)
    s = np.einsum("nih,nhk->nik", h, K2) + b2[:, None, :]  # (N, n, K)
    pred = np.argmax(s, axis=2)  # ties -> lowest index
    correct = pred == y[None, :]
    other = 1 - y
    diff = np.take_along_axis(s, y[None, :, None], 2)[..., 0] - np.take_along_axis(s, other[None, :, None], 2)[..., 0]
    fits_all = correct.all(axis=1)
    hid_margin = np.min(np.abs(a), axis=1).sum(axis=1)  # sum over neurons of min_i |a|
    return {
        "n_correct": correct.sum(axis=1),
        "fits_all": fits_all,
        "nnz": (vals != 0).sum(axis=1),
        "margin": hid_margin + np.min(diff, axis=1),
        "hid_ok": np.min(np.abs(a), axis=(1, 2)) >= 1,
        # max_margin's objective (sign(0) = +1): hidden margins min_i (a if a >= 0 else -1 - a) per neuron, plus
        # the output margin min_i (s_y - s_k - [k < y])
        "margin0": np.where(a >= 0, a, -1 - a).min(axis=1).sum(axis=1) + np.min(diff - (other < y)[None, :], axis=1),
    }


@pytest.fixture(scope="module")
def tiny():
    return load_data(X_TINY, Y_TINY)


@pytest.fixture(scope="module")
def oracle():
    return _enumerate(X_TINY.astype(float), Y_TINY)


def _check_network(params, report, X, y):
    """Claims of a report recomputed: weights in range, predict == Flax layers, accuracy as reported."""
    params.check()  # every kernel/bias value inside the weight set
    pred = predict(params, X)
    assert report.train_accuracy == pytest.approx(float(np.mean(pred == y)))
    module, variables = to_flax(params)
    s_flax = np.asarray(module.apply(variables, params.scaling.apply(X)))
    np.testing.assert_array_equal(s_flax, scores(params, X))
    np.testing.assert_array_equal(np.argmax(s_flax, axis=1), pred)
    assert report.model_size_bytes > 0
    assert report.status in (Status.OPTIMAL, Status.FEASIBLE)
    return pred


def _check_status_claim(method, formulation, rep, pred, y):
    """OPTIMAL only with a proof for the whole problem: the exact model (k-means) or the ideal value."""
    if rep.status != Status.OPTIMAL:
        assert math.isnan(rep.bound) or (method == "kmeans" and rep.extra["last_exact"])
        return
    assert method in ("kmeans", "local_search")
    ideal = rep.extra.get("ideal_reached") or method == "local_search"
    if method == "kmeans" and not rep.extra["ideal_reached"]:
        assert rep.extra["last_exact"]
        return
    assert ideal and rep.bound == rep.objective
    if formulation == "max_correct":
        assert rep.objective == len(y) and np.all(pred == y)
    if formulation == "min_hinge":
        assert rep.objective == 0 and np.all(pred == y)


def _nnz(params) -> int:
    return int(sum(np.count_nonzero(lay["kernel"]) + np.count_nonzero(lay["bias"]) for lay in params.layers))


# ----------------------------------------------------------------------------------------------------------
# every method: valid networks whose claims recompute
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "formulation", "kw"),
    [
        ("hybrid", "min_weight", {}),
        ("local_search", "max_correct", {}),
        ("local_search", "min_hinge", {"granularity": "neuron"}),
        ("kmeans", "max_correct", {"n_clusters": 1}),
        ("batch", "max_correct", {"batch_size": 4, "epochs": 2}),
    ],
)
@pytest.mark.parametrize("weights", ["ternary", 2])
def test_methods_return_valid_networks(tiny, method, formulation, kw, weights):
    params, rep = fit_heuristic(
        method,
        tiny,
        hidden=(2,),
        formulation=formulation,
        weights=weights,
        time_limit=3 if method == "local_search" else 10,  # local search restarts until the limit
        threads=1,
        progress=False,
        **kw,
    )
    assert params is not None, rep.message
    pred = _check_network(params, rep, X_TINY, Y_TINY)
    assert rep.method == method and rep.formulation == formulation
    lo, hi = (-1, 1) if weights == "ternary" else (-2, 2)
    for lay in params.layers:
        assert lo <= lay["kernel"].min() and lay["kernel"].max() <= hi
    if formulation == "max_correct" and method != "batch":
        # a max_correct incumbent never claims more fitted examples than predict recomputes
        assert rep.objective <= int(np.sum(pred == Y_TINY)) + 1e-9
    if method == "hybrid":
        assert rep.train_accuracy == 1.0  # stage 1 fits every example, stage 2 keeps its activations
        assert rep.objective == _nnz(params)  # min_weight: the number of non-zero weights and biases
    _check_status_claim(method, formulation, rep, pred, Y_TINY)


def test_progress_bar_runs(tiny, capsys):
    params, rep = fit_heuristic("kmeans", tiny, hidden=(2,), formulation="max_correct", time_limit=5, threads=1)
    assert params is not None
    assert "bnn kmeans" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# oracles: enumeration
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("formulation", ["min_weight", "max_correct"])
def test_kmeans_one_cluster_per_point_is_the_exact_model(tiny, oracle, formulation):
    params, rep = fit_heuristic(
        "kmeans", tiny, hidden=(1,), formulation=formulation, time_limit=20, threads=1, progress=False, n_clusters=1.0
    )
    assert rep.extra["iterations"] == 1 and rep.extra["last_exact"]
    assert rep.status == Status.OPTIMAL
    # the exact model solved directly
    bm = build(formulation, tiny, (1,), "ternary")
    r = solve(bm.model, time_limit=20, threads=1)
    assert r.status == Status.OPTIMAL
    assert rep.objective == pytest.approx(bm.objective_value(r.objective))
    # and by enumeration of all 3**7 ternary networks
    if formulation == "min_weight":
        assert rep.objective == oracle["nnz"][oracle["fits_all"]].min() == _nnz(params)
    else:
        assert rep.objective == oracle["n_correct"].max() == int(np.sum(predict(params, X_TINY) == Y_TINY))
    _check_network(params, rep, X_TINY, Y_TINY)


@pytest.mark.parametrize("formulation", ["max_correct", "min_hinge", "max_margin", "min_weight"])
def test_cluster_model_claims_the_full_objective(formulation):
    """The restricted model (representatives + members' first-layer rows) only admits networks that give a
    cluster one activation pattern, and its objective equals the full model's at such a network."""
    data = load_data(X_MARGIN, Y_MARGIN)
    clusters = [np.array([0, 5]), np.array([1, 6]), np.array([2]), np.array([3, 4])]
    spec = tiny_spec()
    full = build(formulation, data, (1,), spec)
    bm, model = heuristics._cluster_model(
        formulation,
        data,
        (1,),
        spec,
        {"rho": 0.0, "neuron_penalty": 0.0, "output_margin": 0, "margin": 1},
        clusters,
        lambda: full,
    )
    assert bm.examples.tolist() == [0, 1, 2, 3]
    # completeness: every network giving each cluster one first-layer pattern is feasible, at its full value
    rng = np.random.default_rng(0)
    n_respecting = 0
    for _ in range(200):
        net = make_params(
            [rng.integers(-1, 2, (2, 1)), rng.integers(-1, 2, (1, 2))],
            [rng.integers(-1, 2, 1), rng.integers(-1, 2, 2)],
            data.scaling,
            spec,
        )
        if not heuristics._respects(net, data, clusters) or heuristics._value(full, net) is None:
            continue
        n_respecting += 1
        x = bm.hint_from_params(net)
        assert model.violations(x) == 0
        if formulation in ("max_correct", "min_hinge", "min_weight"):
            assert bm.objective_value(model.objective_of(x)) == pytest.approx(heuristics._value(full, net))
    assert n_respecting > 0 or formulation == "max_margin"
    r = solve(model, time_limit=20, threads=1)
    r_full = solve(full.model, time_limit=20, threads=1)
    assert r_full.status == Status.OPTIMAL
    if r.x is None:
        assert r.status == Status.INFEASIBLE
        return
    p = bm.decode(r.x)
    assert heuristics._respects(p, data, clusters)
    v_full = heuristics._value(full, p)
    assert v_full is not None  # feasible for the full model
    claimed = bm.objective_value(r.objective)
    optimum = full.objective_value(r_full.objective)
    if formulation in ("max_correct", "min_hinge"):
        assert claimed == pytest.approx(v_full)  # the weighted objective is the full training objective
    # a restricted optimum is never better than the full optimum
    assert (claimed <= optimum + 1e-9) if bm.sense == "max" else (claimed >= optimum - 1e-9)


@pytest.mark.parametrize("n_clusters", [1, 0.5])
def test_kmeans_refines_to_the_optimum(tiny, oracle, n_clusters):
    params, rep = fit_heuristic(
        "kmeans",
        tiny,
        hidden=(1,),
        formulation="min_weight",
        time_limit=30,
        threads=1,
        progress=False,
        n_clusters=n_clusters,
    )
    sizes = rep.extra["clusters_per_iteration"]
    assert sizes == sorted(sizes) and sizes[0] <= len(Y_TINY)
    best = oracle["nnz"][oracle["fits_all"]].min()
    assert rep.objective >= best and rep.objective == _nnz(params)
    if rep.extra["last_exact"] and rep.status == Status.OPTIMAL:
        assert rep.objective == best and rep.bound == best


def test_hybrid_against_enumeration(tiny, oracle):
    params, rep = fit_heuristic("hybrid", tiny, hidden=(1,), formulation="min_weight", time_limit=10, progress=False)
    assert rep.status == Status.FEASIBLE  # never OPTIMAL: stage 2 is optimal for fixed activations only
    assert math.isnan(rep.bound) and math.isnan(rep.gap)
    assert rep.extra["stage1_status"] == "OPTIMAL"
    assert oracle["nnz"][oracle["fits_all"]].min() <= rep.objective == _nnz(params)
    _check_network(params, rep, X_TINY, Y_TINY)


@pytest.mark.parametrize("X", [X_TINY, X_MARGIN])
def test_hybrid_max_margin_against_enumeration(X):
    y = Y_TINY if X is X_TINY else Y_MARGIN
    oracle = _enumerate(X, y)
    feasible = oracle["fits_all"]  # max_margin admits every fitting network (margin m >= 0, sign(0) = +1)
    params, rep = fit_heuristic(
        "hybrid", load_data(X, y), hidden=(1,), formulation="max_margin", time_limit=10, progress=False
    )
    assert feasible.any()
    assert rep.status == Status.FEASIBLE
    assert 0 <= rep.objective <= oracle["margin0"][feasible].max()
    assert rep.train_accuracy == 1.0
    _check_network(params, rep, X, y)


def test_hybrid_reports_proven_infeasibility():
    # XOR has no linear ternary classifier (hidden=()): stage 1, the full feasibility model, proves it.
    assert not _enumerate_linear(X_XOR, Y_XOR).any()
    params, rep = fit_heuristic(
        "hybrid", load_data(X_XOR, Y_XOR), hidden=(), formulation="min_weight", time_limit=10, progress=False
    )
    assert params is None and rep.status == Status.INFEASIBLE
    assert math.isnan(rep.train_accuracy)


def _enumerate_linear(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    vals = np.array(list(itertools.product((-1, 0, 1), repeat=X.shape[1] * 2 + 2)), float)
    K = vals[:, : X.shape[1] * 2].reshape(-1, X.shape[1], 2)
    s = np.einsum("id,ndk->nik", X, K) + vals[:, None, X.shape[1] * 2 :]
    return (np.argmax(s, axis=2) == y[None]).all(axis=1)


def test_local_search_from_warm_start_never_worsens(tiny, oracle):
    rng = np.random.default_rng(3)
    for _ in range(3):
        ws = make_params(
            [rng.integers(-1, 2, (2, 1)), rng.integers(-1, 2, (1, 2))],
            [rng.integers(-1, 2, 1), rng.integers(-1, 2, 2)],
            load_data(X_TINY, Y_TINY).scaling,
            tiny_spec(),
        )
        start = int(np.sum(predict(ws, X_TINY) == Y_TINY))
        params, rep = fit_heuristic(
            "local_search", tiny, hidden=(1,), formulation="max_correct", time_limit=3, warm_start=ws, progress=False
        )
        got = int(np.sum(predict(params, X_TINY) == Y_TINY))
        assert start <= rep.objective <= got <= oracle["n_correct"].max()
        assert rep.extra["start"] == "warm_start" and rep.extra["start_value"] == start
        assert rep.status == (Status.OPTIMAL if got == len(Y_TINY) else Status.FEASIBLE)


def tiny_spec():
    from tamejax.bnn._types import WeightSpec

    return WeightSpec.parse("ternary")


def test_local_search_hard_formulation_starts_with_a_fitting_phase(tiny, oracle):
    params, rep = fit_heuristic(
        "local_search", tiny, hidden=(2,), formulation="min_weight", time_limit=3, progress=False
    )
    if params is None:
        assert rep.status == Status.NO_SOLUTION
        return
    assert rep.train_accuracy == 1.0 and rep.objective == _nnz(params)


def test_local_search_restarts(tiny):
    t0 = time.perf_counter()
    _, rep = fit_heuristic(
        "local_search", tiny, hidden=(2,), formulation="min_hinge", time_limit=30, progress=False, restarts=False
    )
    assert rep.extra["descents"] == 1 and time.perf_counter() - t0 < 25  # one descent, stops at its local optimum
    _, rep = fit_heuristic("local_search", tiny, hidden=(2,), formulation="max_correct", time_limit=30, progress=False)
    # restarts go on until the best conceivable value (all 8 examples fitted, reachable with 2 hidden neurons)
    assert rep.status == Status.OPTIMAL and rep.objective == rep.bound == len(Y_TINY)


# ----------------------------------------------------------------------------------------------------------
# batch training
# ----------------------------------------------------------------------------------------------------------
def test_batch_with_validation_and_holdout(tiny):
    Xv, yv = X_TINY[:4] + 0.0, Y_TINY[:4]
    params, rep = fit_heuristic(
        "batch",
        tiny,
        hidden=(2,),
        formulation="min_hinge",
        weights=3,
        time_limit=10,
        progress=False,
        batch_size=3,
        epochs=3,
        validation=(Xv, yv),
    )
    assert params is not None and rep.extra["validation"] == "validation set"
    epochs = rep.extra["epochs"]
    assert len(epochs) >= 1 and epochs[0]["radius"] is None  # first epoch: the full weight domain
    if len(epochs) >= 2:
        assert epochs[1]["radius"] == 3.0 and (len(epochs) < 3 or epochs[2]["radius"] == 2.0)  # ceil(3 * 0.5**e)
    _check_network(params, rep, X_TINY, Y_TINY)
    assert math.isnan(rep.objective)
    _, rep2 = fit_heuristic(
        "batch", tiny, hidden=(2,), formulation="max_correct", time_limit=5, progress=False, val_fraction=0.25
    )
    assert rep2.extra["validation"].startswith("held-out")


def test_batch_round_to_grid():
    from tamejax.bnn._types import WeightSpec

    lo, hi = np.full(5, -2.0), np.full(5, 2.0)
    v = np.array([-2.6, -0.5, 0.49, 0.5, 1.7])
    np.testing.assert_array_equal(heuristics._round_to_grid(v, lo, hi, WeightSpec.parse(2)), [-2, 0, 0, 1, 2])
    lo, hi = np.full(5, -1.0), np.full(5, 1.0)
    np.testing.assert_array_equal(heuristics._round_to_grid(v, lo, hi, WeightSpec.parse("binary")), [-1, -1, 1, 1, 1])


# ----------------------------------------------------------------------------------------------------------
# time limits (loose: wall < 5 x limit + overhead; the machine is shared)
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", HEURISTICS)
def test_time_limit_is_honoured(method):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 5, (60, 8)).astype(float)
    y = (X[:, :4].sum(1) > X[:, 4:].sum(1)).astype(int) + (X[:, 0] > 3)
    data = load_data(X, y)
    formulation = "max_margin" if method == "hybrid" else "max_correct"
    limit = 1.0
    t0 = time.perf_counter()
    params, rep = fit_heuristic(
        method, data, hidden=(6,), formulation=formulation, time_limit=limit, threads=1, progress=False
    )
    wall = time.perf_counter() - t0
    assert wall < 5 * limit + 10.0
    assert rep.solve_time <= wall + 1e-6
    if params is None:
        assert rep.status in (Status.NO_SOLUTION, Status.INFEASIBLE)
    else:
        _check_network(params, rep, X, y)
        _check_status_claim(method, formulation, rep, predict(params, X), y)


# ----------------------------------------------------------------------------------------------------------
# warm starts through fit_mip (CP-SAT hint, SCIP start)
# ----------------------------------------------------------------------------------------------------------
def _good_network(data):
    """A hand-made ternary network fitting X_TINY: h = sign(x0 - 0) ... then scores from h."""
    spec = tiny_spec()
    return make_params(
        [np.array([[1], [0]]), np.array([[-1, 1]])], [np.array([0]), np.array([0, 0])], data.scaling, spec
    )


@pytest.mark.parametrize("backend", ["cpsat", "scip"])
def test_fit_mip_warm_start_is_used(tiny, backend):
    fit_mip = pytest.importorskip("tamejax.bnn.fit").fit_mip
    ws = _good_network(tiny)
    start = int(np.sum(predict(ws, X_TINY) == Y_TINY))
    X = np.repeat(X_TINY, 6, axis=0)  # 48 rows: a larger exact model, same points
    y = np.repeat(Y_TINY, 6)
    params, rep = fit_mip(
        X,
        y,
        hidden=(1,),
        formulation="max_correct",
        method="exact",
        time_limit=0.2,
        backend=backend,
        threads=1,
        warm_start=ws,
        progress=False,
    )
    assert params is not None, rep.message
    got = int(np.sum(predict(params, X) == y))
    assert rep.objective >= 6 * start - 1e-9 and got >= 6 * start


def test_heuristics_take_the_warm_start(tiny):
    ws = _good_network(tiny)
    start = int(np.sum(predict(ws, X_TINY) == Y_TINY))
    for method in ("local_search", "kmeans", "batch"):
        params, rep = fit_heuristic(
            method, tiny, hidden=(1,), formulation="max_correct", time_limit=2, warm_start=ws, progress=False
        )
        assert int(np.sum(predict(params, X_TINY) == Y_TINY)) >= start, method


# ----------------------------------------------------------------------------------------------------------
# k-means clustering
# ----------------------------------------------------------------------------------------------------------
def test_kmeans_labels_separates_blobs():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [10, 0], [0, 10]], float)
    pts = np.concatenate([c + rng.normal(0, 0.5, (15, 2)) for c in centers])
    lab = kmeans_labels(pts, 3, seed=1)
    groups = [set(lab[i * 15 : (i + 1) * 15]) for i in range(3)]
    assert all(len(g) == 1 for g in groups) and len(set.union(*groups)) == 3


@given(
    st.lists(st.tuples(st.integers(-3, 3), st.integers(-3, 3)), min_size=1, max_size=25),
    st.integers(1, 8),
    st.integers(0, 5),
)
def test_kmeans_labels_properties(points, k, seed):
    pts = np.array(points, float)
    lab = kmeans_labels(pts, k, seed=seed)
    n_distinct = len({tuple(p) for p in points})
    assert lab.shape == (len(points),)
    assert set(lab.tolist()) == set(range(min(k, n_distinct)))  # every label used, none beyond k
    for i, j in itertools.combinations(range(len(points)), 2):  # identical points share a cluster
        if points[i] == points[j]:
            assert lab[i] == lab[j]
    if k >= n_distinct:  # one cluster per distinct point
        assert len(set(lab.tolist())) == n_distinct


# ----------------------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------------------
def test_bad_input(tiny):
    with pytest.raises(ValueError, match="method"):
        fit_heuristic("annealing", tiny)
    with pytest.raises(ValueError, match="unknown option"):
        fit_heuristic("kmeans", tiny, batch_size=3)
    with pytest.raises(ValueError, match="hybrid"):
        fit_heuristic("hybrid", tiny, formulation="max_correct", progress=False)
    with pytest.raises(ValueError, match="n_clusters"):
        fit_heuristic("kmeans", tiny, n_clusters=0, progress=False)
    with pytest.raises(ValueError, match="n_clusters"):
        fit_heuristic("kmeans", tiny, n_clusters=1.5, progress=False)
    with pytest.raises(ValueError, match="granularity"):
        fit_heuristic("local_search", tiny, granularity="weight", progress=False)
    with pytest.raises(ValueError, match="time_limit"):
        fit_heuristic("batch", tiny, time_limit=0)
    with pytest.raises(ValueError, match="val_fraction"):
        fit_heuristic("batch", tiny, val_fraction=1.0, progress=False)
    with pytest.raises(ValueError, match="validation"):
        fit_heuristic("batch", tiny, validation=(np.zeros((3, 5)), np.zeros(3)), progress=False)
    with pytest.raises(TypeError, match="data"):
        fit_heuristic("batch", (X_TINY, Y_TINY))
    with pytest.raises(TypeError, match="warm_start"):
        fit_heuristic("local_search", tiny, warm_start="ste")
    with pytest.raises(ValueError, match="`k`"):
        kmeans_labels(np.zeros((3, 2)), 0)
    with pytest.raises(ValueError, match="points"):
        kmeans_labels(np.array([[np.nan, 0.0]]), 1)


def test_no_time_limit_and_solver_params(tiny, oracle):
    # time_limit=None: k-means refines down to the exact model, which is then solved to optimality
    params, rep = fit_heuristic(
        "kmeans",
        tiny,
        hidden=(1,),
        formulation="min_weight",
        time_limit=None,
        progress=False,
        n_clusters=1,
        solver_params={"symmetry_level": 0},
    )
    assert rep.status == Status.OPTIMAL and rep.objective == oracle["nnz"][oracle["fits_all"]].min()
    # the local search stops after its first descent (no restarts without a limit)
    _, rep = fit_heuristic("local_search", tiny, hidden=(1,), formulation="min_hinge", time_limit=None, progress=False)
    assert rep.extra["descents"] == 1
    with pytest.raises(TypeError, match="solver_params"):
        fit_heuristic("kmeans", tiny, solver_params=[("symmetry_level", 0)])


@pytest.mark.parametrize("method", HEURISTICS)
def test_fit_mip_dispatches_to_the_heuristics(method):
    from tamejax.bnn import METHODS, fit_mip

    if method not in METHODS:  # fit.METHODS is owned elsewhere; the one-line change is requested
        pytest.skip(f"tamejax.bnn.fit.METHODS does not list {method!r} yet")

    formulation = "min_weight" if method == "hybrid" else "max_correct"
    params, rep = fit_mip(
        X_TINY, Y_TINY, hidden=(2,), formulation=formulation, method=method, time_limit=3, threads=1, progress=False
    )
    assert rep.method == method and params is not None
    _check_network(params, rep, X_TINY, Y_TINY)


@pytest.mark.slow
def test_fit_mip_local_search_from_the_ste_network():
    from tamejax.bnn import fit_mip

    params, rep = fit_mip(
        X_TINY,
        Y_TINY,
        hidden=(2,),
        formulation="max_correct",
        method="local_search",
        time_limit=5,
        warm_start="ste",
        threads=1,
        progress=False,
    )
    assert rep.extra["start"] == "warm_start"
    assert rep.objective >= rep.extra["start_value"]  # never worse than the straight-through network
    _check_network(params, rep, X_TINY, Y_TINY)


# ----------------------------------------------------------------------------------------------------------
# decomposed: one MIP per hidden neuron (targets: an error-correcting code or the warm start's activations)
# ----------------------------------------------------------------------------------------------------------
def _brute_neuron(X: np.ndarray, t: np.ndarray) -> dict[str, float]:
    """Every ternary neuron (w, b) on X: is the target pattern t realisable, its best margin, fewest nonzeros,
    and the most targets any neuron reproduces (the soft fallback's optimum)."""
    d = X.shape[1]
    W = np.array(list(itertools.product((-1, 0, 1), repeat=d + 1)), float)  # (N, d+1), bias last
    a = X @ W[:, :d].T + W[:, d]  # (n, N)
    h = np.where(a >= 0, 1, -1)
    ok = (h == t[:, None]).all(axis=0)
    margin = np.min(np.where(t[:, None] > 0, a, -1 - a), axis=0)
    nnz = (W != 0).sum(axis=1)
    n_pos, n_neg = int(np.sum(t > 0)), int(np.sum(t < 0))
    mean = (np.where(t > 0, max(n_neg, 1), -max(n_pos, 1))[:, None] * a).sum(axis=0)  # balanced, times n+ n-
    best_m = margin[ok].max() if ok.any() else math.nan
    M = np.rint(0.25 * (np.abs(X).sum(axis=1) + 1).mean())
    xi = np.maximum(0, np.where(t[:, None] > 0, M - a, a + 1 + M))
    hinge = (np.where(t > 0, max(n_neg, 1), max(n_pos, 1))[:, None] * xi).sum(axis=0)
    return {
        "hinge": float(hinge[ok].min()) if ok.any() else math.nan,
        "mean_margin": float(mean[ok].max()) if ok.any() else math.nan,
        "max_margin_mean": float(mean[ok & (margin == best_m)].max()) if ok.any() else math.nan,
        "realisable": bool(ok.any()),
        "max_margin": float(margin[ok].max()) if ok.any() else math.nan,
        "min_weight": float(nnz[ok].min()) if ok.any() else math.nan,
        "max_correct": float((h == t[:, None]).sum(axis=0).max()),
    }


@given(
    X=st.lists(st.tuples(*[st.integers(-2, 2)] * 2), min_size=3, max_size=7),
    bits=st.lists(st.booleans(), min_size=7, max_size=7),
    objective=st.sampled_from(["max_margin", "max_margin_mean", "mean_margin", "hinge", "min_weight"]),
)
def test_decomposed_neuron_against_enumeration(X, bits, objective):
    from tamejax.bnn._types import WeightSpec

    Xa = np.array(X, float)
    t = np.where(np.array(bits[: len(X)]), 1, -1)
    oracle = _brute_neuron(Xa, t)
    w, _, info = heuristics._fit_neuron(
        Xa, t, WeightSpec.parse("ternary"), objective, time_limit=10.0, solve_kw={"engine": "cpsat", "threads": 1}
    )
    assert set(np.unique(w)) <= {-1.0, 0.0, 1.0}
    a = Xa @ w[:-1] + w[-1]
    h = np.where(a >= 0, 1, -1)
    assert info["status"] == "OPTIMAL"  # a tiny model: the lexicographic optimum is proven
    assert info["realised"] == oracle["realisable"]
    assert info["errors"] == int(np.sum(h != t)) == len(t) - oracle["max_correct"]
    if oracle["realisable"]:
        np.testing.assert_array_equal(h, t)  # every target reproduced, sign(0) = +1
        n_pos, n_neg = int(np.sum(t > 0)), int(np.sum(t < 0))
        mean = float(np.sum(np.where(t > 0, max(n_neg, 1), -max(n_pos, 1)) * a))
        if objective in ("max_margin", "max_margin_mean"):
            assert info["margin"] == oracle["max_margin"] == np.min(np.where(t > 0, a, -1 - a))
        if objective in ("max_margin_mean", "mean_margin"):
            assert mean == oracle[objective]  # lexicographic tie-break / objective, proven by enumeration
        if objective == "min_weight":
            assert np.count_nonzero(w) == oracle["min_weight"]
        if objective == "hinge":
            M = np.rint(0.25 * (np.abs(Xa).sum(axis=1) + 1).mean())
            xi = np.maximum(0, np.where(t > 0, M - a, a + 1 + M))
            assert float(np.sum(np.where(t > 0, max(n_neg, 1), max(n_pos, 1)) * xi)) == oracle["hinge"]


def _three_class():
    rng = np.random.default_rng(3)
    centres = np.array([[3, 0, 0], [0, 3, 0], [0, 0, 3]])
    y = np.repeat(np.arange(3), 5)
    X = centres[y] + rng.integers(-1, 2, (15, 3))
    return X.astype(float), y


@pytest.mark.parametrize(
    ("weights", "kw"),
    [
        ("ternary", {}),
        ("ternary", {"neuron_objective": "min_weight", "bagging": "all"}),
        ("binary", {}),
        (2, {"bagging": "none"}),
    ],
)
def test_decomposed_returns_valid_networks(weights, kw):
    X, y = _three_class()
    data = load_data(X, y)
    params, rep = fit_heuristic(
        "decomposed", data, hidden=(5,), weights=weights, time_limit=10, threads=1, progress=False, **kw
    )
    pred = _check_network(params, rep, X, y)
    assert rep.status == Status.FEASIBLE and math.isnan(rep.bound) and rep.method == "decomposed"
    lo, hi = {"ternary": (-1, 1), "binary": (-1, 1), 2: (-2, 2)}[weights]
    for lay in params.layers:
        for v in (lay["kernel"], lay["bias"]):
            assert lo <= v.min() and v.max() <= hi
            if weights == "binary":
                assert np.all(v != 0)
    # the hidden neurons reproduce their code targets on every example they were trained on
    code = np.array(rep.extra["codes"][0])
    acts = np.asarray(heuristics.hidden_activations(params, X)[0])
    for nr in rep.extra["neurons"]:
        j = nr["neuron"]
        if nr["realised"] and not nr["bootstrap"]:
            np.testing.assert_array_equal(acts[:, j], code[y, j])
    assert rep.extra["neurons_realised"] == sum(nr["realised"] for nr in rep.extra["neurons"])
    # the output stage's claim holds on the actual hidden activations
    out = rep.extra["output_stages"][-1]
    if out["objective"] == "max_margin":
        # every example fitted with the reported margin beyond the argmax tie rule
        assert np.all(pred == y) and rep.objective == out["value"] >= 0
        s = scores(params, X)
        gap = s[np.arange(len(y)), y][:, None] - s - (np.arange(3)[None, :] < y[:, None])
        gap[np.arange(len(y)), y] = 10**9
        assert gap.min() == rep.objective


def test_decomposed_ecoc_targets_and_max_correct_claim():
    X, y = _three_class()
    data = load_data(X, y)
    params, rep = fit_heuristic(
        "decomposed",
        data,
        hidden=(3,),
        formulation="max_correct",
        time_limit=10,
        threads=1,
        progress=False,
        bagging="none",
    )
    pred = _check_network(params, rep, X, y)
    assert rep.extra["codes"][0] == (2 * np.eye(3, dtype=int) - 1).tolist()  # one-vs-rest for H = K
    assert all(nr["realised"] for nr in rep.extra["neurons"])  # the blobs are linearly separable
    np.testing.assert_array_equal(np.asarray(heuristics.hidden_activations(params, X)[0]), 2 * np.eye(3)[y] - 1)
    assert rep.extra["output_stages"][-1]["status"] == "OPTIMAL"
    assert rep.objective == np.sum(pred == y) == len(y)


def test_decomposed_unrealisable_neuron_falls_back_to_max_correct():
    # XOR: no single ternary neuron separates the classes; the output layer cannot fit all either
    data = load_data(X_XOR, Y_XOR)
    params, rep = fit_heuristic("decomposed", data, hidden=(1,), time_limit=10, threads=1, progress=False)
    _check_network(params, rep, X_XOR, Y_XOR)
    nr = rep.extra["neurons"][0]
    assert not nr["realised"] and nr["errors"] == 1 and nr["status"] == "OPTIMAL"
    assert [s["objective"] for s in rep.extra["output_stages"]] == ["max_margin", "max_correct"]
    assert rep.extra["output_stages"][0]["status"] == "INFEASIBLE"
    assert math.isnan(rep.objective)  # the max_margin objective is not met; the message says what happened
    assert rep.train_accuracy == 0.75


def test_decomposed_warm_start_activations(tiny):
    ws = _good_network(tiny)
    params, rep = fit_heuristic(
        "decomposed", tiny, hidden=(1,), warm_start=ws, activations="warm_start", time_limit=10, progress=False
    )
    _check_network(params, rep, X_TINY, Y_TINY)
    target = np.asarray(heuristics.hidden_activations(ws, X_TINY)[0])
    if rep.extra["neurons"][0]["realised"]:
        np.testing.assert_array_equal(np.asarray(heuristics.hidden_activations(params, X_TINY)[0]), target)
    with pytest.raises(ValueError, match="warm_start"):
        fit_heuristic("decomposed", tiny, hidden=(1,), activations="warm_start", progress=False)


def test_decomposed_bad_options(tiny):
    with pytest.raises(ValueError, match="formulation"):
        fit_heuristic("decomposed", tiny, formulation="min_hinge", progress=False)
    with pytest.raises(ValueError, match="activations"):
        fit_heuristic("decomposed", tiny, activations="random", progress=False)
    with pytest.raises(ValueError, match="neuron_objective"):
        fit_heuristic("decomposed", tiny, neuron_objective="max_correct", progress=False)
    with pytest.raises(ValueError, match="bagging"):
        fit_heuristic("decomposed", tiny, bagging="some", progress=False)
    with pytest.raises(ValueError, match="rho"):
        fit_heuristic("decomposed", tiny, rho=0.5, progress=False)


@given(K=st.integers(2, 12), H=st.integers(1, 20), seed=st.integers(0, 3))
def test_ecoc_code_properties(K, H, seed):
    C = heuristics.ecoc_code(K, H, seed=seed)
    assert C.shape == (K, H) and set(np.unique(C)) <= {-1, 1}
    if K == 2:
        assert np.all(C[0] == -1) and np.all(C[1] == 1)
        return
    m = min(K, H)
    np.testing.assert_array_equal(C[:, :m], (2 * np.eye(K, dtype=int) - 1)[:, :m])
    for j in range(m, H):
        assert np.sum(C[:, j] == 1) == K // 2  # balanced bipartitions
    if H >= K:
        assert len({r.tobytes() for r in C}) == K  # distinct code words
    np.testing.assert_array_equal(C, heuristics.ecoc_code(K, H, seed=seed))  # seeded


def test_decomposed_two_hidden_layers_and_no_time_limit():
    X, y = _three_class()
    params, rep = fit_heuristic(
        "decomposed", load_data(X, y), hidden=(4, 3), time_limit=None, threads=1, progress=False, bagging="none"
    )
    _check_network(params, rep, X, y)
    assert params.hidden == (4, 3) and len(rep.extra["codes"]) == 2
    # layer 2 is fitted on the ACTUAL activations of layer 1: its realised neurons reproduce their code
    acts = heuristics.hidden_activations(params, X)
    code2 = np.array(rep.extra["codes"][1])
    for nr in rep.extra["neurons"]:
        if nr["layer"] == 1 and nr["realised"]:
            np.testing.assert_array_equal(np.asarray(acts[1])[:, nr["neuron"]], code2[y, nr["neuron"]])
