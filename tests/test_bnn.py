"""Tests of tamejax.bnn: MIP training of binarized / integer networks against brute-force enumeration.

Oracle: on tiny data (6-8 points in 2 dimensions, one hidden layer of 1-2 neurons) every
network with weights in {-P..P} is enumerated and evaluated in exact integer arithmetic; the
optimal value of each formulation's objective is computed from those forward passes. The
solver's claimed optimum must equal it, and the returned network's predictions, recomputed by
``predict`` *and* by the Flax ``BinaryDense`` layers of ``to_flax``, must realise the claim.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tamejax import Status
from tamejax.backends.bnn_solver import SparseModel, solve
from tamejax.bnn import (
    FORMULATIONS,
    BNNParams,
    Scaling,
    WeightSpec,
    build,
    fit_mip,
    hidden_activations,
    load_data,
    model_size_bytes,
    predict,
    scores,
    to_flax,
    to_packed,
)
from tamejax.bnn._types import make_params

# ----------------------------------------------------------------------------------------------
# brute force
# ----------------------------------------------------------------------------------------------


def enumerate_nets(d: int, hidden: tuple[int, ...], K: int, P: int) -> list[np.ndarray]:
    """All networks: [K1, b1, K2, b2, ...] each with a leading axis over the networks."""
    dims = (d, *hidden, K)
    shapes = []
    for l_ in range(len(dims) - 1):
        shapes += [(dims[l_], dims[l_ + 1]), (dims[l_ + 1],)]
    npar = sum(math.prod(s) for s in shapes)
    vals = np.arange(-P, P + 1, dtype=np.int8)
    grid = np.stack(np.meshgrid(*([vals] * npar), indexing="ij"), -1).reshape(-1, npar)
    out, o = [], 0
    for s in shapes:
        k = math.prod(s)
        out.append(np.ascontiguousarray(grid[:, o : o + k].reshape((-1, *s)), dtype=np.int32))
        o += k
    return out


def forward(nets: list[np.ndarray], X: np.ndarray) -> list[np.ndarray]:
    """Pre-activations of every layer for every network: (N, n, width)."""
    pre = []
    L = len(nets) // 2
    h = None
    for l_ in range(L):
        W, b = nets[2 * l_], nets[2 * l_ + 1]
        if l_ == 0:
            a = np.einsum("ik,Nkj->Nij", X.astype(np.int32), W)
        else:
            a = np.zeros((W.shape[0], X.shape[0], W.shape[2]), np.int32)
            for k in range(W.shape[1]):
                a += h[:, :, k, None] * W[:, None, k, :]
        a = a + b[:, None, :]
        pre.append(a)
        if l_ < L - 1:
            h = np.where(a >= 0, 1, -1).astype(np.int32)
    return pre


class Brute:
    """Objective of every formulation for every enumerated network."""

    def __init__(self, X: np.ndarray, y: np.ndarray, hidden: tuple[int, ...], K: int, P: int) -> None:
        self.nets = enumerate_nets(X.shape[1], hidden, K, P)
        pre = forward(self.nets, X)
        s = pre[-1]
        n = len(y)
        N = s.shape[0]
        self.correct = (np.argmax(s, 2) == y[None]).sum(1)
        diff = s[:, np.arange(n), y][:, :, None] - s  # (N, n, K): s_y - s_k
        mask = np.ones((n, K), bool)
        mask[np.arange(n), y] = False
        self.fit_all = self.correct == n
        self.nonzeros = sum((p != 0).reshape(N, -1).sum(1) for p in self.nets)
        # max_margin (Icarte et al. 2019, as in Thorbjarnarson's max_m.py): per hidden neuron the margin
        # m = min_i (a if a >= 0 else -a - 1) >= 0, and the output margin is the slack beyond the fitted rule
        margins = np.zeros(N)
        for a in pre[:-1]:
            margins += np.where(a >= 0, a, -a - 1).min(1).sum(1)
        tie = (np.arange(K)[None, :] < y[:, None]).astype(np.int64)  # [k < y]
        dmin = np.where(mask[None], diff - tie[None], np.inf).reshape(N, -1).min(1)
        self.max_margin_ok = self.fit_all  # every fitting network is feasible (margins 0)
        self.margin_value = margins + dmin
        t = 1  # max(margin=1, [k<y])
        self.sat = ((diff >= t) & mask[None]).reshape(N, -1).sum(1)
        self.hinge = np.where(mask[None], np.maximum(0, t - diff), 0).reshape(N, -1).sum(1)

    def optimum(self, formulation: str) -> float | None:
        if formulation == "min_weight":
            return float(self.nonzeros[self.fit_all].min()) if self.fit_all.any() else None
        if formulation == "max_margin":
            ok = self.max_margin_ok
            return float(self.margin_value[ok].max()) if ok.any() else None
        if formulation == "max_correct":
            return float(self.correct.max())
        if formulation == "sat_margin":
            return float(self.sat.max())
        return float(self.hinge.min())  # min_hinge, big_m

    def value(self, formulation: str, idx: int) -> float:
        table = {
            "min_weight": self.nonzeros,
            "max_margin": self.margin_value,
            "max_correct": self.correct,
            "sat_margin": self.sat,
            "min_hinge": self.hinge,
            "big_m": self.hinge,
        }
        return float(table[formulation][idx])

    def params(self, idx: int, weights: str | int = "ternary") -> BNNParams:
        ks = [self.nets[2 * i][idx] for i in range(len(self.nets) // 2)]
        bs = [self.nets[2 * i + 1][idx] for i in range(len(self.nets) // 2)]
        return make_params(ks, bs, Scaling.identity(ks[0].shape[0]), WeightSpec.parse(weights))


def _xor_like() -> tuple[np.ndarray, np.ndarray]:
    # a small 2-D set (min_weight optimum 5 nonzeros with 2 hidden neurons, by enumeration)
    X = np.array([[1, -1], [2, 0], [-2, 1], [0, -2], [-1, 2], [1, 1]])
    y = np.array([1, 1, 0, 0, 0, 0])
    return X, y


def _noisy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.integers(-2, 3, (8, 2))
    y = rng.integers(0, 2, 8)
    y[:2] = [0, 1]
    return X, y


def _margin_data() -> tuple[np.ndarray, np.ndarray]:
    X = np.array([[2, 1], [1, 2], [-1, -2], [-2, -1], [2, -2], [-2, 2]])
    y = np.array([1, 1, 0, 0, 0, 0])
    return X, y


@pytest.fixture(scope="module")
def brutes() -> dict[str, tuple[np.ndarray, np.ndarray, Brute]]:
    out = {}
    for name, fn in (("xor", _xor_like), ("noisy", _noisy), ("margin", _margin_data)):
        X, y = fn()
        out[name] = (X, y, Brute(X, y, (2,), 2, 1))
    return out


def _flax_scores(params: BNNParams, X: np.ndarray) -> np.ndarray:
    module, variables = to_flax(params)
    return np.asarray(module.apply(variables, jnp.asarray(params.scaling.apply(X), jnp.int32)))


def _assert_robust(params: BNNParams, X: np.ndarray, rho: float, n_random: int = 200) -> None:
    """predict is constant on the l_inf ball of radius rho around each raw training input: at every
    corner (the rounded integer inputs are monotone in each coordinate, so the corners reach the extreme
    integer inputs), at corners shrunk by 1e-9, and at random points inside."""
    X = np.asarray(X, np.float64)
    d = X.shape[1]
    base = predict(params, X)
    corners = np.array(np.meshgrid(*([[-1.0, 1.0]] * d), indexing="ij")).reshape(d, -1).T
    rng = np.random.default_rng(0)
    inside = rng.uniform(-1, 1, (n_random, d))
    for offs in (corners * rho, corners * (rho - 1e-9), inside * rho):
        for o in offs:
            np.testing.assert_array_equal(predict(params, X + o), base)


def _check_claim(formulation: str, params: BNNParams, report, X: np.ndarray, y: np.ndarray) -> None:
    """The claim of the objective, recomputed from the network with predict and Flax."""
    s = scores(params, X)
    s_flax = _flax_scores(params, X)
    np.testing.assert_array_equal(s_flax, s.astype(np.float32))
    pred = predict(params, X)
    np.testing.assert_array_equal(np.argmax(s_flax, 1), pred)
    correct = int(np.sum(pred == y))
    assert report.train_accuracy == correct / len(y)
    if formulation in ("min_weight", "max_margin"):
        assert correct == len(y)  # every training example fitted
    if formulation == "min_weight":
        nz = sum(int(np.count_nonzero(lay["kernel"])) + int(np.count_nonzero(lay["bias"])) for lay in params.layers)
        assert nz == report.objective
    if formulation == "max_correct":
        assert correct == report.objective
    n, K = s.shape
    diff = s[np.arange(n), y][:, None] - s
    mask = np.ones((n, K), bool)
    mask[np.arange(n), y] = False
    if formulation == "sat_margin":
        assert int(np.sum((diff >= 1) & mask)) == report.objective
    if formulation in ("min_hinge", "big_m"):
        assert int(np.sum(np.where(mask, np.maximum(0, 1 - diff), 0))) == report.objective
    if formulation == "max_margin":
        pre = X @ np.asarray(params.layers[0]["kernel"]) + np.asarray(params.layers[0]["bias"])
        tie = (np.arange(K)[None, :] < y[:, None]).astype(np.int64)
        value = np.where(pre >= 0, pre, -pre - 1).min(0).sum() + np.where(mask, diff - tie, np.inf).min()
        assert value == report.objective


# ----------------------------------------------------------------------------------------------
# formulations vs enumeration
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize("dataset", ["xor", "noisy", "margin"])
def test_formulation_matches_enumeration(brutes, formulation: str, dataset: str) -> None:
    X, y, brute = brutes[dataset]
    params, rep = fit_mip(
        X, y, hidden=(2,), formulation=formulation, weights="ternary", time_limit=30, threads=1, progress=False
    )
    best = brute.optimum(formulation)
    if best is None:
        assert rep.status == Status.INFEASIBLE and params is None
        assert math.isnan(rep.train_accuracy)
        return
    assert rep.status == Status.OPTIMAL, rep.message
    assert rep.objective == best
    assert rep.gap == 0.0
    values = np.concatenate([np.ravel(lay[key]) for lay in params.layers for key in ("kernel", "bias")])
    assert WeightSpec.parse("ternary").contains(values)
    _check_claim(formulation, params, rep, X, y)


@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_two_hidden_layers_match_enumeration(formulation: str) -> None:
    """hidden=(1, 1): the hidden-to-hidden products are exercised too (3^9 networks)."""
    X, y = _margin_data() if formulation in ("min_weight", "max_margin") else _noisy()
    brute = Brute(X, y, (1, 1), 2, 1)
    params, rep = fit_mip(X, y, hidden=(1, 1), formulation=formulation, time_limit=30, threads=1, progress=False)
    best = brute.optimum(formulation)
    if best is None:
        assert rep.status == Status.INFEASIBLE and params is None
        return
    assert rep.status == Status.OPTIMAL and rep.objective == best
    s = scores(params, X)
    np.testing.assert_array_equal(_flax_scores(params, X), s)
    np.testing.assert_array_equal(np.asarray(to_packed(params)(X)), s)
    assert rep.train_accuracy == np.mean(predict(params, X) == y)


def test_each_formulation_has_a_feasible_dataset(brutes) -> None:
    # guard: every formulation is compared on at least one feasible instance above
    for f in FORMULATIONS:
        assert any(b.optimum(f) is not None for _, _, b in brutes.values()), f


@pytest.mark.parametrize("formulation", ["max_correct", "sat_margin", "min_hinge", "big_m", "min_weight", "max_margin"])
def test_hint_of_every_network_is_feasible_with_its_own_value(brutes, formulation: str) -> None:
    """Semantics of the model: the point built from any network satisfies every row and its
    objective equals the brute-force value of that network (for the hard-fit formulations:
    exactly the networks that fit every example, and satisfy the margin rows)."""
    X, y, brute = brutes["noisy"] if formulation not in ("min_weight", "max_margin") else brutes["margin"]
    data = load_data(X, y)
    bm = build(formulation, data, (2,), "ternary")
    rng = np.random.default_rng(0)
    if formulation == "min_weight":
        candidates = np.flatnonzero(brute.fit_all)
    elif formulation == "max_margin":
        candidates = np.flatnonzero(brute.max_margin_ok)
    else:
        candidates = np.arange(len(brute.correct))
    assert candidates.size > 0
    for idx in rng.choice(candidates, size=min(40, candidates.size), replace=False):
        hint = bm.hint_from_params(brute.params(int(idx)))
        assert not np.any(np.isnan(hint))
        assert bm.model.violations(hint) == 0
        assert bm.objective_value(bm.model.objective_of(hint)) == brute.value(formulation, int(idx))
    if formulation in ("min_weight", "max_margin"):
        bad = np.flatnonzero(~(brute.fit_all if formulation == "min_weight" else brute.max_margin_ok))[:20]
        for idx in bad:
            assert bm.model.violations(bm.hint_from_params(brute.params(int(idx)))) > 0


def test_integer_weights_P2_max_correct_three_classes() -> None:
    """{-2..2} weights, 3 classes, a linear model (no hidden layer): argmax ties to the lowest index."""
    X = np.array([[1, 0], [0, 1], [-1, -1], [1, 1], [2, -1], [-1, 2], [0, 0]])
    y = np.array([0, 1, 2, 2, 0, 1, 1])
    brute = Brute(X, y, (), 3, 1)  # ternary enumeration (3^9 networks)
    params, rep = fit_mip(
        X, y, hidden=(), formulation="max_correct", weights="ternary", time_limit=30, threads=1, progress=False
    )
    assert rep.status == Status.OPTIMAL
    assert rep.objective == brute.optimum("max_correct")
    _check_claim("max_correct", params, rep, X, y)
    # {-2..2} weights, 2 classes, one hidden neuron: 5^7 networks
    X2, y2 = _noisy()
    params2, rep2 = fit_mip(
        X2, y2, hidden=(1,), formulation="max_correct", weights=2, time_limit=30, threads=1, progress=False
    )
    brute2 = Brute(X2, y2, (1,), 2, 2)
    assert rep2.status == Status.OPTIMAL
    assert rep2.objective == brute2.optimum("max_correct")
    values = np.concatenate([np.ravel(v) for lay in params2.layers for v in lay.values()])
    assert WeightSpec.parse(2).contains(values) and np.max(np.abs(values)) <= 2
    _check_claim("max_correct", params2, rep2, X2, y2)


def test_binary_weights_and_neuron_penalty(brutes) -> None:
    X, y, _ = brutes["xor"]
    params, rep = fit_mip(
        X, y, hidden=(2,), formulation="max_correct", weights="binary", time_limit=30, threads=1, progress=False
    )
    assert rep.status == Status.OPTIMAL
    assert all(np.all(np.abs(lay[k]) == 1) for lay in params.layers for k in ("kernel", "bias"))
    brute = brutes["xor"][2]
    is_binary = np.ones(len(brute.correct), bool)
    for p in brute.nets:
        is_binary &= (p != 0).reshape(len(is_binary), -1).all(1)
    assert rep.objective == brute.correct[is_binary].max()
    _check_claim("max_correct", params, rep, X, y)
    # neuron count: objective = correct - alpha * (#neurons used)
    alpha = 0.5
    _, y2, b2 = brutes["noisy"]
    X2 = brutes["noisy"][0]
    params, rep = fit_mip(
        X2, y2, hidden=(2,), formulation="max_correct", neuron_penalty=alpha, time_limit=30, threads=1, progress=False
    )
    K1, b1, K2 = b2.nets[0], b2.nets[1], b2.nets[2]
    used = (np.any(K1 != 0, axis=1) | (b1 != 0) | np.any(K2 != 0, axis=2)).sum(1)
    assert rep.status == Status.OPTIMAL
    assert rep.objective == pytest.approx((b2.correct - alpha * used).max())


def test_robust_first_layer_activations_constant_on_the_ball() -> None:
    X = np.array([[4, 1], [3, 3], [-3, -4], [-4, -2], [4, -3], [-3, 4]])
    y = np.array([1, 1, 0, 0, 0, 0])
    rho = 0.5
    params, rep = fit_mip(
        X, y, hidden=(2,), formulation="big_m", weights="ternary", rho=rho, time_limit=30, threads=1, progress=False
    )
    assert rep.status == Status.OPTIMAL
    K1 = np.asarray(params.layers[0]["kernel"], np.float64)
    a = X @ K1 + np.asarray(params.layers[0]["bias"])
    r = math.ceil(rho) * np.abs(K1).sum(0)  # integer radius ceil(rho * scale), scale 1
    # worst case over the rounded l_inf ball: the sign of a +- r ||W||_1 must not change
    assert np.all(np.where(a >= 0, a - r >= 0, a + r < 0))
    _assert_robust(params, X, rho)
    _check_claim("big_m", params, rep, X, y)
    # without robustness the optimum hinge can only be lower or equal
    _, rep0 = fit_mip(
        X, y, hidden=(2,), formulation="big_m", weights="ternary", time_limit=30, threads=1, progress=False
    )
    assert rep0.objective <= rep.objective


def test_cpsat_and_scip_agree(brutes) -> None:
    X, y, brute = brutes["noisy"]
    for f in ("max_correct", "min_hinge"):
        _, r1 = fit_mip(X, y, hidden=(2,), formulation=f, backend="cpsat", time_limit=30, threads=1, progress=False)
        _, r2 = fit_mip(X, y, hidden=(2,), formulation=f, backend="scip", time_limit=30, threads=1, progress=False)
        assert r1.status == r2.status == Status.OPTIMAL
        assert r1.objective == r2.objective == brute.optimum(f)


def test_scip_continuous_weights_big_m(brutes) -> None:
    X, y, _ = brutes["xor"]
    params, rep = fit_mip(
        X,
        y,
        hidden=(2,),
        formulation="big_m",
        weights=("continuous", 1.0),
        backend="scip",
        time_limit=30,
        progress=False,
    )
    assert rep.status in (Status.OPTIMAL, Status.FEASIBLE)
    assert params.layers[0]["kernel"].dtype == np.float64
    assert WeightSpec.parse(("continuous", 1.0)).contains(params.layers[0]["kernel"])
    # the claimed hinge is the hinge of the returned network (every pair needs s_y - s_k >= 1 = margin)
    s = scores(params, X)
    n, K = s.shape
    diff = s[np.arange(n), y][:, None] - s
    mask = np.ones((n, K), bool)
    mask[np.arange(n), y] = False
    assert rep.objective == pytest.approx(float(np.sum(np.where(mask, np.maximum(0, 1 - diff), 0))), abs=1e-5)
    if rep.objective < 1e-6:  # hinge 0: every example fitted with margin 1, predict must agree
        assert rep.train_accuracy == 1.0
    with pytest.raises(ValueError, match="weights"):
        fit_mip(X, y, hidden=(2,), formulation="big_m", weights=("continuous", 1.0), backend="cpsat", progress=False)


def test_time_limit_returns_feasible_network() -> None:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 17, (80, 16))
    y = rng.integers(0, 4, 80)
    params, rep = fit_mip(
        X, y, hidden=(6,), formulation="max_correct", weights=3, time_limit=2.0, threads=1, progress=False
    )
    assert rep.status == Status.FEASIBLE, rep.message
    assert params is not None
    assert math.isnan(rep.bound) or rep.bound >= rep.objective  # maximisation: the bound is above
    assert math.isnan(rep.gap) or rep.gap > 0
    assert WeightSpec.parse(3).contains(np.concatenate([np.ravel(v) for lay in params.layers for v in lay.values()]))
    # the claimed count of fitted examples is a lower bound on what predict recomputes
    assert rep.train_accuracy * len(y) >= rep.objective
    assert rep.solve_time < 30
    assert rep.history and all(len(h) == 3 for h in rep.history)


def test_infeasible_and_no_solution_statuses() -> None:
    X = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]])
    y = np.array([0, 0, 1, 1])  # XOR: no linear classifier fits it
    for backend in ("cpsat", "scip"):
        params, rep = fit_mip(X, y, hidden=(), formulation="min_weight", backend=backend, time_limit=10, progress=False)
        assert rep.status == Status.INFEASIBLE and params is None and "no network" in rep.message
        assert math.isnan(rep.objective) and math.isnan(rep.train_accuracy)
    params, rep = fit_mip(X, y, hidden=(2,), formulation="min_weight", time_limit=10, threads=1, progress=False)
    assert rep.status == Status.OPTIMAL and rep.train_accuracy == 1.0
    # a hard-fit model hard to find a point of in 0.05 s: NO_SOLUTION without a network (on this machine),
    # or -- on a fast one -- a network that really fits every example; never a fake one
    rng = np.random.default_rng(0)
    Xb = rng.integers(0, 17, (80, 16))
    yb = rng.integers(0, 4, 80)
    params, rep = fit_mip(
        Xb, yb, hidden=(6,), formulation="min_weight", weights=3, time_limit=0.05, threads=1, progress=False
    )
    assert rep.status in (Status.NO_SOLUTION, Status.FEASIBLE, Status.OPTIMAL), rep.message
    if rep.status == Status.NO_SOLUTION:
        assert params is None and math.isnan(rep.objective) and math.isnan(rep.bound)
    else:
        assert params is not None and np.all(predict(params, Xb) == yb)


def test_flax_and_packed_exports(brutes) -> None:
    X, y, brute = brutes["xor"]
    rng = np.random.default_rng(1)
    for idx in rng.choice(len(brute.correct), 20, replace=False):
        params = brute.params(int(idx))
        s = scores(params, X)
        np.testing.assert_array_equal(_flax_scores(params, X), s)
        packed = to_packed(params)
        np.testing.assert_array_equal(np.asarray(packed(X)), s)
        h = hidden_activations(params, X)[0]
        np.testing.assert_array_equal(
            h, np.where(X @ params.layers[0]["kernel"] + params.layers[0]["bias"] >= 0, 1, -1)
        )
    assert model_size_bytes(params) == math.ceil(12 * 2 / 8)
    p2 = make_params(
        [np.full((2, 2), 2), np.ones((2, 2))], [np.zeros(2), np.zeros(2)], Scaling.identity(2), WeightSpec.parse(2)
    )
    with pytest.raises(ValueError, match="layer 1"):
        to_packed(
            make_params(
                [np.ones((2, 2)), np.full((2, 2), 2)],
                [np.zeros(2), np.zeros(2)],
                Scaling.identity(2),
                WeightSpec.parse(2),
            )
        )
    assert to_packed(p2) is not None


def test_warm_start_hint(brutes) -> None:
    X, y, brute = brutes["noisy"]
    best = int(np.argmax(brute.correct))
    params, rep = fit_mip(
        X,
        y,
        hidden=(2,),
        formulation="max_correct",
        warm_start=brute.params(best),
        time_limit=30,
        threads=1,
        progress=False,
    )
    assert rep.status == Status.OPTIMAL and rep.objective == brute.correct[best]
    with pytest.raises(ValueError, match="warm_start"):
        fit_mip(X, y, hidden=(3,), formulation="max_correct", warm_start=brute.params(best), progress=False)


def test_fixed_activations_hybrid_stage(brutes) -> None:
    """Icarte's hybrid: with the activations of a fitting network fixed, the weight MIP is
    feasible, and every solution reproduces those activations."""
    X, y, brute = brutes["xor"]
    idx = int(np.flatnonzero(brute.fit_all)[0])
    teacher = brute.params(idx)
    h = hidden_activations(teacher, X)[0]
    data = load_data(X, y)
    bm = build("min_weight", data, (2,), "ternary", fixed_activations=[h])
    assert bm.act_idx == [None]
    res = solve(bm.model, threads=1, time_limit=30)
    assert res.status == Status.OPTIMAL
    params = bm.decode(res.x)
    np.testing.assert_array_equal(hidden_activations(params, X)[0], h)
    assert np.all(predict(params, X) == y)
    # feasibility only (hybrid stage 1)
    bm1 = build("min_weight", data, (2,), "ternary", objective=False)
    assert not np.any(bm1.model.obj)
    res1 = solve(bm1.model, threads=1, time_limit=30)
    assert res1.status == Status.OPTIMAL and np.all(predict(bm1.decode(res1.x), X) == y)


def test_subset_of_examples(brutes) -> None:
    X, y, _ = brutes["noisy"]
    data = load_data(X, y)
    bm = build("max_correct", data, (2,), "ternary", examples=[0, 1, 2, 3])
    res = solve(bm.model, threads=1, time_limit=30)
    assert res.status == Status.OPTIMAL
    sub = Brute(X[:4], y[:4], (2,), 2, 1)
    assert bm.objective_value(res.objective) == sub.optimum("max_correct")


# ----------------------------------------------------------------------------------------------
# solver layer
# ----------------------------------------------------------------------------------------------


@settings(max_examples=40)
@given(
    st.lists(st.integers(-3, 3), min_size=3, max_size=3),
    st.integers(0, 6),
    st.integers(0, 1),
)
def test_sparse_model_indicator_against_enumeration(c: list[int], cap: int, val: int) -> None:
    """min c.x, x in {0..3}^2 x {0,1}, x0 + x1 <= cap, (z == val) => x0 - x1 >= 2."""
    m = SparseModel()
    x = m.add_vars(2, 0, 3)
    z = m.add_vars(1, 0, 1)
    m.add_row([x[0], x[1]], [1, 1], -np.inf, cap)
    m.add_row([x[0], x[1]], [1, -1], 2, np.inf, enforce_var=int(z[0]), enforce_val=val)
    m.add_objective(np.r_[x, z], c)
    best = math.inf
    for a in range(4):
        for b in range(4):
            for zz in range(2):
                if a + b <= cap and (zz != val or a - b >= 2):
                    best = min(best, c[0] * a + c[1] * b + c[2] * zz)
    for engine in ("cpsat", "scip"):
        r = solve(m, engine=engine, threads=1)
        assert r.status == Status.OPTIMAL
        assert r.objective == best
        assert m.violations(r.x) == 0


def test_fall_back_on_a_checked_hint() -> None:
    from tamejax.backends.bnn_solver import SolveResult, _fall_back_on_hint

    m = SparseModel()
    x = m.add_vars(2, 0, 3)
    m.add_row(x, [1, 1], -np.inf, 4)
    m.add_objective(x, [-1, -1])
    stopped = SolveResult(Status.NO_SOLUTION, None, math.nan, math.nan, 1.0, [], "UNKNOWN")
    r = _fall_back_on_hint(m, stopped, np.array([1.0, 2.0]), None)
    assert r.status == Status.FEASIBLE and r.objective == -3 and np.array_equal(r.x, [1, 2])
    # an infeasible or incomplete hint is never returned as a solution
    assert _fall_back_on_hint(m, stopped, np.array([3.0, 2.0]), None).status == Status.NO_SOLUTION
    assert _fall_back_on_hint(m, stopped, np.array([1.0, np.nan]), None).status == Status.NO_SOLUTION
    better = SolveResult(Status.FEASIBLE, np.array([2.0, 2.0]), -4.0, -6.0, 1.0, [], "FEASIBLE")
    assert _fall_back_on_hint(m, better, np.array([1.0, 2.0]), None) is better


def test_trivial_bound_of_a_stopped_solve() -> None:
    from tamejax.backends.bnn_solver import SolveResult, _trivial_bound

    m = SparseModel()
    x = m.add_vars(3, 0, 1)
    m.add_row(x, [1, 1, 1], -np.inf, 3)
    m.add_objective(x, [-1, -1, 2])  # min over the bounds: -2
    stopped = SolveResult(Status.FEASIBLE, np.array([1.0, 0, 0]), -1.0, math.nan, 1.0, [], "FEASIBLE")
    r = _trivial_bound(m, stopped)
    assert r.status == Status.FEASIBLE and r.bound == -2.0
    at = SolveResult(Status.FEASIBLE, np.array([1.0, 1, 0]), -2.0, math.nan, 1.0, [], "FEASIBLE")
    r = _trivial_bound(m, at)
    assert r.status == Status.OPTIMAL and r.bound == -2.0 and "trivial bound" in r.message
    tighter = SolveResult(Status.FEASIBLE, np.array([1.0, 0, 0]), -1.0, -1.5, 1.0, [], "FEASIBLE")
    assert _trivial_bound(m, tighter) is tighter


def test_solver_errors() -> None:
    m = SparseModel()
    x = m.add_vars(2, 0, 1, integer=False)
    m.add_row(x, [0.5, 1], 0, 1)
    with pytest.raises(ValueError, match="integer"):
        solve(m)
    with pytest.raises(ValueError, match="engine"):
        solve(m, engine="gurobi")
    with pytest.raises(ValueError, match="time_limit"):
        solve(m, engine="scip", time_limit=-1)
    m2 = SparseModel()
    y = m2.add_vars(1, 0, 3)
    m2.add_row(y, [1], 5, 9)
    assert solve(m2).status == Status.INFEASIBLE
    assert solve(m2, engine="scip").status == Status.INFEASIBLE
    with pytest.raises(ValueError, match="enforce_var"):
        m2.add_row(y, [1], 0, 1, enforce_var=int(y[0]))


# ----------------------------------------------------------------------------------------------
# data loading and validation
# ----------------------------------------------------------------------------------------------


def test_csv_input(tmp_path, brutes) -> None:
    X, y, brute = brutes["noisy"]
    path = tmp_path / "train.csv"
    with open(path, "w") as fh:
        fh.write("f0,f1,label\n")
        for row, lab in zip(X, y, strict=True):
            fh.write(f"{row[0] / 10},{row[1] / 10},{lab}\n")
    params, rep = fit_mip(str(path), hidden=(2,), formulation="max_correct", time_limit=30, threads=1, progress=False)
    assert params.scaling.scale == (10.0, 10.0)  # exact scaling of one-decimal data
    assert rep.objective == brute.optimum("max_correct")
    assert np.array_equal(predict(params, X / 10), predict(params, X, scaled=True))
    # label in the first column
    path2 = tmp_path / "first.csv"
    np.savetxt(path2, np.column_stack([y, X]), delimiter=",", fmt="%d")
    data = load_data(str(path2), label_column=0)
    np.testing.assert_array_equal(data.X, X)
    np.testing.assert_array_equal(data.y, y)


def test_scaling_modes() -> None:
    X = np.array([[0.25, 10.0], [0.5, 12.0], [1.0, 30.0]])
    y = np.array([0, 1, 1])
    d = load_data(X, y)
    assert d.scaling.scale == (100.0, 1.0)  # one power of ten per feature
    np.testing.assert_array_equal(d.X, np.rint(X * [100, 1]))
    q = load_data(X, y, scaling=5)
    assert q.X.min() == -2 and q.X.max() == 2
    np.testing.assert_array_equal(q.X[:, 0], [-2, -1, 2])  # 0.25, 0.5, 1.0 on 5 levels of [0.25, 1]
    np.testing.assert_array_equal(q.scaling.apply(X), q.X)
    with pytest.raises(ValueError, match="scaling"):
        load_data(np.array([[math.pi], [1.0]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="scaling"):
        load_data(X, y, scaling="log")


@pytest.mark.parametrize(
    ("X", "y", "field", "pattern"),
    [
        (np.array([[1.0, np.nan], [0, 1]]), [0, 1], "X", "finite"),
        (np.array([[1.0, np.inf], [0, 1]]), [0, 1], "X", "finite"),
        (np.array([1.0, 2.0]), [0, 1], "X", "2-D"),
        (np.ones((3, 2)), [0, 1], "y", "3 labels"),
        (np.ones((2, 2)), [0, 0], "y", "2 distinct"),
        (np.ones((2, 2)), [0, 1.5], "y", "integer"),
        (np.ones((2, 2)), [-1, 1], "y", "0..K-1"),
        (np.ones((2, 2)), [[0, 1]], "y", "1-D"),
        (np.ones((2, 2)), [0, np.nan], "y", "finite"),
    ],
)
def test_bad_inputs(X, y, field: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=f"`{field}`.*{pattern}"):
        fit_mip(X, y, hidden=(2,), progress=False)


def test_bad_options(tmp_path) -> None:
    X, y = _xor_like()
    with pytest.raises(ValueError, match="`y`.*0..2"):
        load_data(X, np.array([0, 3, 0, 1, 2, 0]), n_classes=3)
    with pytest.raises(ValueError, match="formulation"):
        fit_mip(X, y, formulation="magic", progress=False)
    with pytest.raises(ValueError, match="method"):
        fit_mip(X, y, method="magic", progress=False)
    with pytest.raises(ValueError, match="weights"):
        fit_mip(X, y, weights="quaternary", progress=False)
    with pytest.raises(ValueError, match="weights"):
        fit_mip(X, y, weights=0, progress=False)
    with pytest.raises(ValueError, match="hidden"):
        fit_mip(X, y, hidden=(0,), progress=False)
    with pytest.raises(ValueError, match="backend"):
        fit_mip(X, y, backend="gurobi", progress=False)
    with pytest.raises(ValueError, match="time_limit"):
        fit_mip(X, y, time_limit=0, progress=False)
    with pytest.raises(ValueError, match="weights"):
        fit_mip(X, y, formulation="min_weight", weights="binary", progress=False)
    with pytest.raises(ValueError, match="rho"):
        fit_mip(X, y, hidden=(), rho=0.1, progress=False)
    with pytest.raises(TypeError, match="unexpected"):
        fit_mip(X, y, hidden=(2,), bogus=1, progress=False)
    with pytest.raises(ValueError, match="CSV"):
        fit_mip(str(tmp_path / "missing.csv"), progress=False)
    with pytest.raises(ValueError, match="`X`"):
        predict(
            make_params(
                [np.ones((2, 1)), np.ones((1, 2))], [np.ones(1), np.ones(2)], Scaling.identity(2), WeightSpec.parse(1)
            ),
            np.ones((3, 3)),
        )


def test_progress_bar_runs(brutes, capsys) -> None:
    X, y, _ = brutes["xor"]
    _, rep = fit_mip(X, y, hidden=(2,), formulation="max_correct", time_limit=10, threads=1, progress=True)
    assert rep.status == Status.OPTIMAL
    err = capsys.readouterr().err
    assert "incumbent" in err and "gap" in err


def test_params_pytree() -> None:
    import jax

    p = make_params(
        [np.ones((2, 1)), np.ones((1, 2))], [np.ones(1), -np.ones(2)], Scaling.identity(2), WeightSpec.parse("ternary")
    )
    leaves, tree = jax.tree_util.tree_flatten(p)
    assert len(leaves) == 4
    q = jax.tree_util.tree_unflatten(tree, leaves)
    np.testing.assert_array_equal(predict(q, np.eye(2)), predict(p, np.eye(2)))
    with pytest.raises(ValueError, match="layers"):
        make_params([np.full((2, 1), 2)], [np.zeros(1)], Scaling.identity(2), WeightSpec.parse("ternary"))


# ----------------------------------------------------------------------------------------------
# review fixes (regressions)
# ----------------------------------------------------------------------------------------------


def test_fractional_neuron_penalty_is_scaled_exactly(brutes) -> None:
    """0.29 * 100 = 28.999999999999996 in float64: the CP-SAT objective must be built in rationals."""
    from fractions import Fraction

    from tamejax.backends.bnn_solver import objective_integers

    for k in range(1, 200):  # every two-decimal value 0.01 .. 1.99 (16 of them failed before)
        v = k / 100
        iobj, scale = objective_integers(np.array([v, -1.0, 0.0]))
        assert Fraction(int(iobj[0]), scale) == Fraction(k, 100) and iobj[1] == -scale and iobj[2] == 0
    X, y, brute = brutes["noisy"]
    alpha = 0.29
    _, rep = fit_mip(
        X, y, hidden=(2,), formulation="max_correct", neuron_penalty=alpha, time_limit=30, threads=1, progress=False
    )
    K1, b1, K2 = brute.nets[0], brute.nets[1], brute.nets[2]
    used = (np.any(K1 != 0, axis=1) | (b1 != 0) | np.any(K2 != 0, axis=2)).sum(1)
    assert rep.status == Status.OPTIMAL
    assert rep.objective == pytest.approx((brute.correct - alpha * used).max(), abs=1e-9)
    # a value CP-SAT cannot scale exactly: a clear error naming the argument, before any solve
    with pytest.raises(ValueError, match=r"`neuron_penalty`.*3\.14159"):
        fit_mip(X, y, hidden=(2,), formulation="max_correct", neuron_penalty=math.pi, progress=False)
    m = SparseModel()
    x = m.add_vars(1, 0, 1)
    m.add_objective(x, [math.pi])
    with pytest.raises(ValueError, match="objective coefficient 0"):
        solve(m)
    assert solve(m, engine="scip").status == Status.OPTIMAL  # SCIP takes any real


@pytest.mark.parametrize("engine", ["cpsat", "scip"])
def test_rel_gap_is_not_reported_as_optimal(engine: str) -> None:
    """A solve stopped by the relative gap is FEASIBLE unless the bound proves optimality."""
    rng = np.random.default_rng(0)
    m = SparseModel()
    v = m.add_vars(200, 0, 1)
    for _ in range(5):
        w = rng.integers(5, 400, 200)
        m.add_row(v, w, -np.inf, int(w.sum() // 3))
    m.add_objective(v, -rng.integers(5, 400, 200))
    r = solve(m, engine=engine, threads=1, time_limit=20, rel_gap=0.05)
    assert r.status in (Status.OPTIMAL, Status.FEASIBLE)
    assert m.violations(r.x) == 0
    if r.status == Status.OPTIMAL:
        assert r.bound == r.objective
    else:
        assert r.bound <= r.objective and "gap" in r.message
        assert r.objective - r.bound <= 0.05 * abs(r.objective) + 1e-6
    assert solve(m, engine=engine, threads=1, time_limit=20, rel_gap=0.05).status == r.status  # deterministic
    # fit_mip: the gap is computed from objective and bound, never forced to 0
    X, y = _noisy()
    _, rep = fit_mip(X, y, hidden=(2,), formulation="min_hinge", rel_gap=0.5, backend=engine, threads=1, progress=False)
    from tamejax.bnn._types import relative_gap

    assert rep.gap == pytest.approx(relative_gap(rep.objective, rep.bound), nan_ok=True)
    assert rep.status != Status.OPTIMAL or rep.objective == rep.bound


def test_max_margin_allows_zero_preactivation_and_fits_whenever_min_weight_does(brutes) -> None:
    data_sets = [(X, y) for X, y, _ in brutes.values()]
    data_sets.append((np.array([[0, 0], [1, 0], [0, 1], [-1, -1]]), np.array([1, 1, 0, 0])))
    for X, y in data_sets:
        p_w, r_w = fit_mip(X, y, hidden=(2,), formulation="min_weight", time_limit=30, threads=1, progress=False)
        p_m, r_m = fit_mip(X, y, hidden=(2,), formulation="max_margin", time_limit=30, threads=1, progress=False)
        assert (r_w.status == Status.INFEASIBLE) == (r_m.status == Status.INFEASIBLE)
        if p_w is not None:
            assert r_m.status == Status.OPTIMAL and np.all(predict(p_m, X) == y)
            assert r_m.objective >= 0
    # on the last set every fitting (2,)-network has a hidden pre-activation exactly 0 (sign +1): before the
    # fix (margins >= 1) max_margin was INFEASIBLE there; now they are feasible, with a margin 0
    X, y = data_sets[-1]
    brute = Brute(X, y, (2,), 2, 1)
    fits = np.flatnonzero(brute.fit_all)
    assert fits.size and np.all((forward(brute.nets, X)[0] == 0).any((1, 2))[fits])
    bm = build("max_margin", load_data(X, y), (2,), "ternary")
    for i in fits[:20]:
        hint = bm.hint_from_params(brute.params(int(i)))
        assert bm.model.violations(hint) == 0 and np.min(hint[bm.aux["margin"][0]]) == 0


def test_robust_claim_holds_for_predict_rounding() -> None:
    """The review's counterexample: rho = 0.6 must be certified with the integer radius 1, not 0.6."""
    Xr = np.array([[1, 1, 0], [-1, -1, -1]])
    yr = np.array([1, 0])
    data = load_data(Xr, yr)
    bm = build("big_m", data, (1,), "ternary", rho=0.6)
    np.testing.assert_array_equal(bm.aux["radii"], [1, 1, 1])
    p = make_params(
        [np.ones((3, 1)), np.array([[-1, 1]])], [np.zeros(1), np.zeros(2)], data.scaling, WeightSpec.parse("ternary")
    )
    assert not np.array_equal(predict(p, Xr + np.array([[-0.6, -0.6, -0.6], [0, 0, 0]])), predict(p, Xr))
    assert bm.model.violations(bm.hint_from_params(p)) > 0  # not robust: excluded by the model
    # trained robust networks: predict is constant on the ball, for exact and for quantized scaling
    X = np.array([[4, 1], [3, 3], [-3, -4], [-4, -2], [4, -3], [-3, 4]])
    y = np.array([1, 1, 0, 0, 0, 0])
    for scaling, rho in (("exact", 0.6), (9, 0.7)):
        params, rep = fit_mip(
            X, y, hidden=(2,), formulation="max_correct", rho=rho, scaling=scaling, time_limit=30, threads=1,
            progress=False,
        )  # fmt: skip
        assert rep.status == Status.OPTIMAL and rep.objective >= 1
        _assert_robust(params, X, rho)


def test_scip_adds_up_repeated_coefficients() -> None:
    for engine in ("cpsat", "scip"):
        m = SparseModel()
        x = m.add_vars(2, 0, 1)
        m.add_row([x[0], x[0]], [1, 1], 2, np.inf)  # 2 x0 >= 2
        m.add_row([x[1], x[0], x[1]], [1, 1, -1], 0, 0)  # x1 + x0 - x1 = 0 would force x0 = 0: infeasible
        m.add_objective(x, [1, 1])
        assert solve(m, engine=engine, threads=1).status == Status.INFEASIBLE
        m2 = SparseModel()
        x = m2.add_vars(2, 0, 1)
        m2.add_row([x[0], x[0], x[1]], [1, 1, 1], 2, np.inf)
        m2.add_objective(x, [1, 3])
        r = solve(m2, engine=engine, threads=1)
        assert r.status == Status.OPTIMAL and np.array_equal(r.x, [1, 0]) and m2.violations(r.x) == 0
        np.testing.assert_array_equal(m2.vals, [2, 1])  # canonical rows


def test_exact_scaling_per_feature_and_flax_bit_exact() -> None:
    from sklearn.datasets import load_breast_cancer

    Xb, yb = load_breast_cancer(return_X_y=True)
    d = load_data(Xb[:100], yb[:100])
    scale = np.asarray(d.scaling.scale)
    assert len(set(scale.tolist())) > 1  # one power of ten per feature
    for k in range(Xb.shape[1]):  # the smallest power making the column integer
        z = Xb[:100, k] * scale[k]
        assert np.all(np.abs(z - np.rint(z)) <= 4 * np.spacing(np.abs(z)))
        if scale[k] > 1:
            z10 = Xb[:100, k] * (scale[k] / 10)
            assert not np.all(np.abs(z10 - np.rint(z10)) <= 4 * np.spacing(np.abs(z10)))
    assert np.abs(d.X).max() < 2**24
    rng = np.random.default_rng(0)
    for _ in range(4):
        p = make_params(
            [rng.integers(-1, 2, (30, 16)), rng.integers(-1, 2, (16, 2))],
            [rng.integers(-1, 2, 16), rng.integers(-1, 2, 2)],
            d.scaling,
            WeightSpec.parse("ternary"),
        )
        np.testing.assert_array_equal(_flax_scores(p, Xb[:100]), scores(p, Xb[:100]))
    # beyond float32: x_int = 16777217 and a first-layer pre-activation exactly 0 (sign +1)
    X = np.array([[16.777217, 16.777216], [0.0, 1.0]])
    d2 = load_data(X, np.array([1, 0]))
    p = make_params(
        [np.array([[1], [-1]]), np.array([[1, -1]])], [np.array([-1]), np.zeros(2)], d2.scaling, WeightSpec.parse(1)
    )
    s = scores(p, X)
    np.testing.assert_array_equal(s, [[1, -1], [-1, 1]])
    np.testing.assert_array_equal(_flax_scores(p, X), s)
    lin = make_params(
        [np.array([[1, 0], [-1, 1]])], [np.array([-1, 0])], d2.scaling, WeightSpec.parse(1)
    )  # no hidden layer: int32
    np.testing.assert_array_equal(_flax_scores(lin, X), scores(lin, X))
    # no silent rounding of large values; the message names the column and the value
    big = load_data(np.array([[1e9 + 0.25, 0], [2, 1]]), np.array([0, 1]))
    assert big.X[0, 0] == 100000000025 and big.scaling.scale == (100.0, 1.0)
    with pytest.raises(ValueError, match=r"X\[1, 0\] = .*3\.14159"):
        load_data(np.array([[1.0], [math.pi]]), np.array([0, 1]))


def test_report_recomputes_the_claim_from_the_decoded_network(brutes) -> None:
    from tamejax.backends.bnn_solver import SolveResult
    from tamejax.bnn.fit import make_report

    X, y, brute = brutes["noisy"]
    data = load_data(X, y)
    bm = build("max_correct", data, (2,), "ternary")
    idx = int(np.argmax(brute.correct))
    x = bm.hint_from_params(brute.params(idx))
    x[bm.correct_idx] = 0  # a loose solver point: claims 0 fitted examples
    res = SolveResult(Status.FEASIBLE, x, bm.model.objective_of(x), -8.0, 0.1, [], "FEASIBLE")
    params, rep = make_report(bm, res, data, "exact", "cpsat", 0.1)
    assert rep.objective == brute.correct[idx] == rep.train_accuracy * len(y)
    assert "recomputed" in rep.message and rep.gap == pytest.approx((8 - rep.objective) / rep.objective)
    # a claimed OPTIMAL point whose network violates a hard row in exact arithmetic is flagged
    Xm, ym, bm_brute = brutes["margin"]
    data_m = load_data(Xm, ym)
    bmw = build("min_weight", data_m, (2,), "ternary")
    bad = int(np.flatnonzero(~bm_brute.fit_all)[0])
    xb = bmw.hint_from_params(bm_brute.params(bad))
    res = SolveResult(Status.OPTIMAL, xb, bmw.model.objective_of(xb), bmw.model.objective_of(xb), 0.1, [], "OPTIMAL")
    _, rep = make_report(bmw, res, data_m, "exact", "scip", 0.1)
    assert rep.status == Status.FEASIBLE and "not verified" in rep.message


@settings(max_examples=8, deadline=None)
@given(st.lists(st.tuples(st.integers(-2, 2), st.integers(-2, 2), st.integers(0, 1)), min_size=5, max_size=5))
def test_random_tiny_datasets_against_enumeration(rows: list[tuple[int, int, int]]) -> None:
    X = np.array([r[:2] for r in rows])
    y = np.array([r[2] for r in rows])
    if np.unique(y).size < 2:
        y[0] = 1 - y[1]
    brute = Brute(X, y, (1,), 2, 1)
    for f in ("max_correct", "min_hinge", "max_margin"):
        params, rep = fit_mip(X, y, hidden=(1,), formulation=f, time_limit=30, threads=1, progress=False)
        best = brute.optimum(f)
        if best is None:
            assert rep.status == Status.INFEASIBLE
            continue
        assert rep.status == Status.OPTIMAL and rep.objective == best
        _check_claim(f, params, rep, X, y)


def test_quantized_scaling_clips_out_of_range_inputs_and_output_margin() -> None:
    X = np.array([[0.0, 1.0], [0.5, 3.0], [1.0, 2.0], [0.2, 1.5]])
    y = np.array([0, 1, 1, 0])
    params, rep = fit_mip(
        X, y, hidden=(2,), formulation="max_correct", scaling=5, output_margin=1, time_limit=30, threads=1,
        progress=False,
    )  # fmt: skip
    assert rep.status == Status.OPTIMAL
    # output_margin mu = 1: every claimed example has s_y - s_k >= [k < y] + 1, so predict agrees
    assert rep.train_accuracy * len(y) >= rep.objective
    Xo = np.array([[-5.0, 0.0], [9.0, 7.0]])  # outside the training range: clipped to the end levels
    lo, hi = X.min(0), X.max(0)
    np.testing.assert_array_equal(predict(params, Xo), predict(params, np.clip(Xo, lo, hi)))
    np.testing.assert_array_equal(params.scaling.apply(Xo), [[-2, -2], [2, 2]])
