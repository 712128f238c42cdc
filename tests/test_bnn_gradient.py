"""Tests of tamejax.bnn.gradient: the straight-through baseline of the MIP networks.

Oracles: the exact integer forward pass of tamejax.bnn (``predict`` / ``scores``) against the float32
quantized forward pass used in training (``ste_scores``), closed forms of the quantizers and their
straight-through derivatives, and a linearly separable toy set that the network must fit.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tamejax.bnn import BNNParams, WeightSpec, predict, scores
from tamejax.bnn.gradient import STEReport, fit_ste, quantize_ste, ste_scores, train_ste

# small, fixed shapes so that the tests share compiled functions
FAST = {"lrs": (1e-2, 3e-2), "epochs": 40, "restarts": 2}


def _toy(n: int = 24, d: int = 5, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.integers(-4, 5, size=(n, d))
    y = np.arange(n) % classes
    return X, y


# ---------------------------------------------------------------------------- exactness
@pytest.mark.parametrize(
    ("weights", "hidden"),
    [
        ("ternary", (4,)),
        ("binary", (4,)),
        (2, (4,)),
        (("continuous", 1.0), (4,)),
        pytest.param("ternary", (3, 4), marks=pytest.mark.slow),
        pytest.param("ternary", (), marks=pytest.mark.slow),
    ],
)
def test_predict_equals_quantized_forward(weights, hidden):
    X, y = _toy()
    params, rep = fit_ste(X, y, hidden, weights, seed=1, **FAST)
    assert isinstance(params, BNNParams) and isinstance(rep, STEReport)
    s_train = np.asarray(ste_scores(rep.latent, X, weights, threshold=rep.threshold, norms=rep.norms))
    # the same integer network: identical scores (float32 is exact for these magnitudes) and labels
    np.testing.assert_array_equal(s_train, scores(params, X, scaled=True).astype(np.float64))
    np.testing.assert_array_equal(np.argmax(s_train, -1), predict(params, X, scaled=True))
    # on unseen inputs as well
    X_new = np.random.default_rng(7).integers(-6, 7, size=(50, X.shape[1]))
    s_new = np.asarray(ste_scores(rep.latent, X_new, weights, threshold=rep.threshold, norms=rep.norms))
    np.testing.assert_array_equal(np.argmax(s_new, -1), predict(params, X_new, scaled=True))
    assert rep.train_accuracy == pytest.approx(float(np.mean(predict(params, X, scaled=True) == y)))
    assert params.hidden == tuple(hidden) and params.n_classes == 3 and params.n_features == X.shape[1]


def test_ties_and_sign_zero_follow_the_integer_rule():
    # a hand-made latent network whose pre-activations and scores hit exact ties
    latent = (
        {"kernel": np.array([[1.0], [-1.0]], np.float32), "bias": np.array([0.0], np.float32)},
        {"kernel": np.array([[1.0, 1.0, -1.0]], np.float32), "bias": np.array([0.0, 0.0, 0.0], np.float32)},
    )
    X = np.array([[2, 2], [1, 3], [3, 1]])  # a = 0 (sign +1), a < 0, a > 0
    s = np.asarray(ste_scores(latent, X, "ternary"))
    np.testing.assert_array_equal(s, [[1, 1, -1], [-1, -1, 1], [1, 1, -1]])
    layers = tuple({"kernel": lay["kernel"].astype(np.int32), "bias": lay["bias"].astype(np.int32)} for lay in latent)
    from tamejax.bnn import Scaling

    params = BNNParams(layers, Scaling.identity(2), WeightSpec.parse("ternary"))
    np.testing.assert_array_equal(predict(params, X, scaled=True), np.argmax(s, -1))
    np.testing.assert_array_equal(predict(params, X, scaled=True), [0, 2, 0])  # ties to the lowest index


# ---------------------------------------------------------------------------- ranges
@pytest.mark.parametrize("weights", ["binary", "ternary", 2])
def test_weights_stay_in_range(weights):
    X, y = _toy()
    params = train_ste(X, y, (4,), weights, seed=3, **FAST)
    spec = WeightSpec.parse(weights)
    params.check()
    for lay in params.layers:
        for v in (lay["kernel"], lay["bias"]):
            assert v.dtype == np.int32
            assert np.all(np.abs(v) <= spec.P)
            if spec.kind == "binary":
                assert np.all(v != 0)


def test_quantizers_closed_forms_and_gradients():
    w = jnp.array([-2.0, -1.2, -0.6, -0.5, -0.2, 0.0, 0.3, 0.5, 0.51, 1.0, 1.4, 2.6])
    np.testing.assert_array_equal(quantize_ste(w, "binary"), np.where(np.asarray(w) < 0, -1, 1))
    np.testing.assert_array_equal(quantize_ste(w, "ternary"), [-1, -1, -1, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(quantize_ste(w, "ternary", threshold=0.25), [-1, -1, -1, -1, 0, 0, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(quantize_ste(w, 2), np.clip(np.round(np.asarray(w)), -2, 2))
    c = np.asarray(quantize_ste(jnp.array([0.3, -0.7, 1.2]), ("continuous", 1.0)))
    np.testing.assert_array_equal(c, [round(0.3 * 256) / 256, round(-0.7 * 256) / 256, 1.0])
    # straight-through: identity inside the window, zero outside
    g_ter = jax.grad(lambda v: jnp.sum(quantize_ste(v, "ternary")))(w)
    np.testing.assert_array_equal(g_ter, (np.abs(np.asarray(w)) <= 1.0).astype(np.float32))
    g_int = jax.grad(lambda v: jnp.sum(quantize_ste(v, 2)))(w)
    np.testing.assert_array_equal(g_int, (np.abs(np.asarray(w)) <= 2.5).astype(np.float32))


# ---------------------------------------------------------------------------- learning
def test_learns_a_linearly_separable_set():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 9, size=(80, 4))
    margin = X[:, 0] - X[:, 1]
    keep = np.abs(margin) >= 2
    X, y = X[keep], (margin[keep] > 0).astype(np.int64)
    Xtr, ytr, Xte, yte = X[:40], y[:40], X[40:], y[40:]
    params, rep = fit_ste(Xtr, ytr, (4,), "ternary", seed=0, lrs=(1e-2, 3e-2), epochs=200, restarts=2)
    assert rep.train_accuracy >= 0.95
    assert np.mean(predict(params, Xte, scaled=True) == yte) >= 0.9


def test_deterministic_and_seed_dependent():
    X, y = _toy()
    a = train_ste(X, y, (4,), "ternary", seed=5, **FAST)
    b = train_ste(X, y, (4,), "ternary", seed=5, **FAST)
    for la, lb in zip(a.layers, b.layers, strict=True):
        np.testing.assert_array_equal(la["kernel"], lb["kernel"])
        np.testing.assert_array_equal(la["bias"], lb["bias"])
    c = train_ste(X, y, (4,), "ternary", seed=6, **FAST)
    assert any(not np.array_equal(la["kernel"], lc["kernel"]) for la, lc in zip(a.layers, c.layers, strict=True))


def test_validation_protocol():
    X, y = _toy(n=6, classes=3)  # two examples per class: one held out per class
    _, rep = fit_ste(X, y, (4,), "ternary", **FAST)
    assert rep.validation == "holdout" and rep.n_validation == 3 and rep.refit
    assert rep.val_accuracy.shape == (2, 2, 10) and rep.lr in FAST["lrs"] and rep.epochs in rep.checkpoints
    assert rep.restart in (0, 1)
    X1, y1 = X[:3], y[:3]  # one example per class: nothing can be held out
    _, rep1 = fit_ste(X1, y1, (4,), "ternary", **FAST)
    assert rep1.validation == "train" and rep1.n_validation == 0 and not rep1.refit
    _, rep0 = fit_ste(X, y, (4,), "ternary", val_fraction=0.0, **FAST)
    assert rep0.validation == "train"


def test_scaling_can_be_swapped_in():
    from tamejax.bnn import load_data

    rng = np.random.default_rng(1)
    raw = rng.integers(0, 30, size=(24, 5)) / 10.0  # the shapes of _toy(): the compiled training is reused
    y = np.arange(24) % 3
    data = load_data(raw, y)
    params = train_ste(data.X, data.y, (4,), "ternary", n_classes=data.n_classes, **FAST)
    full = dataclasses.replace(params, scaling=data.scaling)
    np.testing.assert_array_equal(predict(full, raw), predict(params, data.X, scaled=True))


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "exc", "field"),
    [
        ({"X_int": np.array([[0.5, 1.0], [1.0, 2.0]])}, ValueError, "X_int"),
        ({"X_int": np.array([[np.nan, 1.0], [1.0, 2.0]])}, ValueError, "X_int"),
        ({"X_int": np.array([1, 2])}, ValueError, "X_int"),
        ({"X_int": np.array([["a", "b"], ["c", "d"]])}, TypeError, "X_int"),
        ({"y": np.array([0, 1, 1])}, ValueError, "y"),
        ({"y": np.array([0, 0])}, ValueError, "y"),
        ({"y": np.array([0, -1])}, ValueError, "y"),
        ({"y": np.array([0, 3]), "n_classes": 3}, ValueError, "y"),
        ({"n_classes": 1}, ValueError, "n_classes"),
        ({"hidden": (4, 0)}, ValueError, "hidden"),
        ({"weights": "quaternary"}, ValueError, "weights"),
        ({"weights": 0}, ValueError, "weights"),
        ({"lrs": ()}, ValueError, "lrs"),
        ({"lrs": (1e-2, -1.0)}, ValueError, "lrs"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"val_fraction": 1.0}, ValueError, "val_fraction"),
        ({"threshold": 1.0}, ValueError, "threshold"),
        ({"restarts": 0}, ValueError, "restarts"),
        ({"init_scale": 0.0}, ValueError, "init_scale"),
        ({"logit_scale": -1.0}, ValueError, "logit_scale"),
        ({"seed": 1.5}, ValueError, "seed"),
    ],
)
def test_bad_input_raises(kwargs, exc, field):
    args = {"X_int": np.array([[0, 1], [2, 3]]), "y": np.array([0, 1]), "hidden": (4,), "weights": "ternary"}
    args.update(kwargs)
    with pytest.raises(exc, match=f"`{field}`"):
        fit_ste(args.pop("X_int"), args.pop("y"), args.pop("hidden"), args.pop("weights"), **args)


def test_ste_scores_bad_input():
    latent = ({"kernel": np.zeros((2, 3), np.float32), "bias": np.zeros(3, np.float32)},)
    with pytest.raises(ValueError, match="`latent\\[0\\]`"):
        ste_scores(latent, np.zeros((4, 5)))
    with pytest.raises(ValueError, match="`norms`"):
        ste_scores(latent, np.zeros((4, 2)), norms=(1.0,))
    with pytest.raises(TypeError, match="`w`"):
        quantize_ste(jnp.arange(3), "ternary")
