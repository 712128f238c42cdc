"""Bop, latent-weight clipping and the binary/real optimizer split."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tamejax.nn.bop import (
    BopState,
    binary_kernel_paths,
    binary_labels,
    binary_optimizer,
    bop,
    clip_latent_weights,
    pm1_init,
)
from tamejax.nn.layers import BinaryDense, NNXBinaryLinear

F32 = jnp.float32


def test_bop_flips_exactly_the_hand_made_entries():
    tx = bop(threshold=0.1, gamma=0.5)
    w = jnp.asarray([1, 1, -1, -1, 1, -1, -1], F32)
    m0 = jnp.asarray([0.0, 0.3, -0.3, 0.3, 0.05, -0.05, -0.5], F32)
    g = jnp.asarray([1.0, 0.1, -0.1, 1.0, 0.1, 0.0, 1.0], F32)
    # m1 = m0/2 + g/2 = [0.5, 0.2, -0.2, 0.65, 0.075, -0.025, 0.25]
    #  0: |m|>0.1, m>0, w>0 -> flip     1: 0.2 > 0.1, same sign -> flip    2: -0.2, w=-1 -> flip
    #  3: 0.65 but w=-1 (opposite sign) -> keep   4, 5: |m| <= 0.1 -> keep   6: m>0, w=-1 -> keep
    updates, state = tx.update(g, BopState(momentum=m0), w)
    np.testing.assert_allclose(np.asarray(state.momentum), [0.5, 0.2, -0.2, 0.65, 0.075, -0.025, 0.25], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(updates), [-2, -2, 2, 0, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(optax.apply_updates(w, updates)), [-1, -1, 1, -1, 1, -1, -1])
    # second step with zero gradient: momentum halves, entries 0..2 now disagree in sign with w -> kept;
    # entry 3 (m = 0.325 > 0.1, w = -1) still disagrees -> kept; nothing flips
    w1 = optax.apply_updates(w, updates)
    updates2, state2 = tx.update(jnp.zeros(7, F32), state, w1)
    np.testing.assert_allclose(np.asarray(state2.momentum), np.asarray(state.momentum) / 2, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(updates2), np.zeros(7))


def test_bop_threshold_is_strict_and_sign0_is_plus():
    tx = bop(threshold=0.25, gamma=0.5)
    w = jnp.asarray([1.0, 1.0, 0.0, -1.0], F32)
    m0 = jnp.asarray([0.25, 0.25, 0.5, -0.5], F32)
    g = jnp.asarray([0.25, 0.5, 0.5, -0.5], F32)  # m1 = [0.25 (= threshold), 0.375, 0.5, -0.5]
    updates, _ = tx.update(g, BopState(momentum=m0), w)
    # 0: |m| == threshold: no flip; 1: flip; 2: w = 0 counts as +1 and m > 0: flip to -1; 3: flip to +1
    np.testing.assert_array_equal(np.asarray(optax.apply_updates(w, updates)), [1, -1, -1, 1])


def test_bop_projects_real_weights_to_pm1():
    tx = bop(threshold=1e-3, gamma=1.0)
    w = jnp.asarray([0.3, -0.2, 0.7, -0.01, 0.001], F32)
    g = jnp.asarray([1.0, 1.0, -1.0, -1.0, 0.5], F32)  # gamma = 1: m = g
    updates, _ = tx.update(g, tx.init(w), w)
    new = np.asarray(optax.apply_updates(w, updates))
    # flip iff |m| > tau and sign(m) = sign(w): 0.3 (m > 0) -> -1; -0.2 (m > 0) keeps -1; 0.7 (m < 0) keeps +1;
    # -0.01 (m < 0) -> +1; 0.001 (m = 0.5 > 0) -> -1
    np.testing.assert_allclose(new, [-1, -1, 1, 1, -1], rtol=1e-6)  # +-1 up to one rounding (see docstring)


def test_bop_differs_from_larq_only_on_non_pm1_weights():
    # Larq's Bop: w <- sign(-sign(w m - tau) w), i.e. it compares w m (not |m|) with tau
    w, m, tau = 0.001, 0.5, 0.01
    tx = bop(threshold=tau, gamma=1.0)
    updates, _ = tx.update(jnp.asarray([m], F32), tx.init(jnp.asarray([w], F32)), jnp.asarray([w], F32))
    ours = float(np.sign(np.asarray(optax.apply_updates(jnp.asarray([w], F32), updates))[0]))
    larq = float(np.sign(-np.sign(w * m - tau) * w))
    assert (ours, larq) == (-1.0, 1.0)  # |m| > tau flips; w m = 5e-4 < tau does not (documented in `bop`)


@given(
    hnp.arrays(np.float32, 16, elements=st.sampled_from([-1.0, 1.0])),
    hnp.arrays(np.float32, 16, elements=st.floats(-1, 1, width=32).filter(lambda v: abs(v) != 0.05)),
)
@settings(max_examples=25, deadline=None)
def test_bop_matches_larq_rule_on_pm1_weights(w, m):
    tau = 0.05
    tx = bop(threshold=tau, gamma=1.0)  # gamma = 1: m = g
    updates, _ = tx.update(jnp.asarray(m), tx.init(jnp.asarray(w)), jnp.asarray(w))
    new = np.asarray(optax.apply_updates(jnp.asarray(w), updates))
    larq = np.sign(-np.sign(w.astype(np.float64) * m - tau) * w)  # w m != tau: never sign(0)
    np.testing.assert_array_equal(new, larq)


@given(
    hnp.arrays(np.float32, 12, elements=st.sampled_from([-1.0, 1.0])),
    hnp.arrays(np.float32, 12, elements=st.floats(-1, 1, width=32)),
    hnp.arrays(np.float32, 12, elements=st.floats(-1, 1, width=32)),
)
@settings(max_examples=25, deadline=None)
def test_bop_rule_property(w, m0, g):
    tx = bop(threshold=0.05, gamma=0.3)
    updates, state = jax.jit(tx.update)(jnp.asarray(g), BopState(momentum=jnp.asarray(m0)), jnp.asarray(w))
    m = np.asarray(state.momentum)
    np.testing.assert_allclose(m, 0.7 * m0 + 0.3 * g, rtol=1e-5, atol=1e-7)
    flipped = np.asarray(updates) != 0
    np.testing.assert_array_equal(flipped, (np.abs(m) > 0.05) & (np.sign(m) == w))
    np.testing.assert_array_equal(np.asarray(updates)[flipped], -2 * w[flipped])


def test_bop_on_a_pytree_under_jit():
    params = {"a": jnp.ones((2, 3), F32), "b": -jnp.ones((4,), F32)}
    tx = bop(threshold=0.0, gamma=1.0)
    state = tx.init(params)
    grads = {"a": jnp.asarray([[1, -1, 0], [2, 0, -3]], F32), "b": jnp.asarray([-1, 1, -2, 0], F32)}
    updates, _ = jax.jit(tx.update)(grads, state, params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(np.asarray(new["a"]), [[-1, 1, 1], [-1, 1, 1]])
    np.testing.assert_array_equal(np.asarray(new["b"]), [1, -1, 1, -1])


def test_pm1_init():
    w = pm1_init()(jax.random.key(0), (64, 32))
    assert w.shape == (64, 32) and w.dtype == F32
    assert set(np.unique(np.asarray(w))) == {-1.0, 1.0}
    assert abs(float(w.mean())) < 0.1
    np.testing.assert_array_equal(np.asarray(pm1_init(jax.nn.initializers.ones)(jax.random.key(0), (3,))), [1, 1, 1])
    with pytest.raises(TypeError, match="base_init"):
        pm1_init(3)


def test_clip_latent_weights():
    w = jnp.asarray([0.5, -0.9, 0.2, 1.0], F32)
    u = jnp.asarray([0.7, -0.3, 0.1, 0.5], F32)
    tx = clip_latent_weights(1.0)
    out, _ = tx.update(u, tx.init(w), w)
    np.testing.assert_allclose(np.asarray(optax.apply_updates(w, out)), [1.0, -1.0, 0.3, 1.0], rtol=1e-6)
    chained = optax.chain(optax.sgd(10.0), clip_latent_weights(0.5))
    out, _ = chained.update(jnp.asarray([1.0, -1.0, 0.0, 0.0], F32), chained.init(w), w)
    np.testing.assert_allclose(np.asarray(optax.apply_updates(w, out)), [-0.5, 0.5, 0.2, 0.5], rtol=1e-6)


class _Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(4)(x)
        x = BinaryDense(4, input_quantizer="ste_sign", kernel_quantizer="ste_sign")(x)
        x = BinaryDense(3, input_quantizer="ste_sign", kernel_quantizer="ste_sign", name="custom")(x)
        return nn.Dense(2)(x)


def test_labels_and_binary_optimizer_route_linen_params():
    net, x = _Net(), jnp.ones((5, 6), F32)
    params = net.init(jax.random.key(0), x)["params"]
    labels = binary_labels(params)  # default: Linen's automatic names only
    assert labels["BinaryDense_0"] == {"kernel": "binary", "bias": "other"}
    assert labels["custom"]["kernel"] == "other" and labels["Dense_0"]["kernel"] == "other"
    paths = binary_kernel_paths(net, x)
    assert paths == frozenset({("BinaryDense_0", "kernel"), ("custom", "kernel")})
    assert binary_labels({"params": params}, paths)["params"]["custom"]["kernel"] == "binary"

    tx = binary_optimizer(bop(threshold=0.0, gamma=1.0), optax.sgd(0.1), is_binary=paths)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    for path in (("BinaryDense_0", "kernel"), ("custom", "kernel")):
        w = np.asarray(params[path[0]][path[1]])
        # gamma = 1, threshold 0: m = g = 0.5 > 0. The (LeCun-normal, real) weights with sign +1 flip to -1,
        # those with sign -1 keep it and are projected to -1: every new weight is -1
        assert (w >= 0).any() and (w < 0).any()
        expected = -1.0 - w
        np.testing.assert_allclose(np.asarray(updates[path[0]][path[1]]), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(updates["Dense_0"]["kernel"]), -0.05, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(updates["BinaryDense_0"]["bias"]), -0.05, rtol=1e-6)


def test_binary_optimizer_with_nnx_flips_exactly_the_expected_weights():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.first = nnx.Linear(3, 4, rngs=rngs)
            self.hidden = NNXBinaryLinear(
                4, 4, input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_init=pm1_init(), rngs=rngs
            )
            self.blocks = nnx.List(
                [NNXBinaryLinear(4, 4, kernel_quantizer="ste_sign", kernel_init=pm1_init(), rngs=rngs)]
            )

        def __call__(self, x):
            return self.blocks[0](self.hidden(self.first(x)))

    for use_model in (False, True):
        model = Net(nnx.Rngs(0))
        paths = binary_kernel_paths(model)
        assert paths == frozenset({("hidden", "kernel"), ("blocks", "0", "kernel")})
        labels = binary_labels(nnx.state(model, nnx.Param), paths)
        assert labels["hidden"]["kernel"].get_value() == "binary" and labels["first"]["kernel"].get_value() == "other"
        assert jax.tree.leaves(binary_labels(nnx.state(model, nnx.Param), model=model)) == jax.tree.leaves(labels)
        routing = {"model": model} if use_model else {"is_binary": paths}
        opt = nnx.Optimizer(
            model, binary_optimizer(bop(threshold=0.0, gamma=1.0), optax.sgd(0.0), **routing), wrt=nnx.Param
        )
        before = {
            "first": np.asarray(model.first.kernel[...]),
            "hidden": np.asarray(model.hidden.kernel[...]),
            "block": np.asarray(model.blocks[0].kernel[...]),
        }
        grads = nnx.grad(lambda m: jnp.sum(m(jnp.ones((2, 3), F32))))(model)
        g = {"hidden": np.asarray(grads.hidden.kernel[...]), "block": np.asarray(grads.blocks[0].kernel[...])}
        opt.update(model, grads)
        after = {"hidden": np.asarray(model.hidden.kernel[...]), "block": np.asarray(model.blocks[0].kernel[...])}
        for name in ("hidden", "block"):
            # gamma = 1, threshold 0: m = g; flip iff m != 0 and sign(m) = w
            w0 = before[name]
            expected = np.where((np.abs(g[name]) > 0) & (np.where(g[name] < 0, -1.0, 1.0) == w0), -w0, w0)
            assert (expected != w0).any(), f"{name}: the check needs at least one flip"
            np.testing.assert_array_equal(after[name], expected)
        np.testing.assert_array_equal(np.asarray(model.first.kernel[...]), before["first"])  # sgd(0): unchanged


class _CustomNamed(nn.Module):
    @nn.compact
    def __call__(self, x):
        return BinaryDense(4, kernel_quantizer="ste_sign", name="hidden")(x)


class BinaryDenseHead(nn.Module):  # a float module whose automatic name starts with "BinaryDense"
    @nn.compact
    def __call__(self, x):
        return x @ self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], 3))


class _FloatHead(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = BinaryDense(4, kernel_quantizer="ste_sign")(x)
        return BinaryDenseHead()(x)


def test_default_labels_are_exact_and_refuse_to_label_nothing():
    x = jnp.ones((1, 3), F32)
    # a float module named BinaryDenseHead_0 is not a binary layer; BinaryDense_0 is
    params = _FloatHead().init(jax.random.key(0), x)["params"]
    labels = binary_labels(params)
    assert labels["BinaryDenseHead_0"]["kernel"] == "other" and labels["BinaryDense_0"]["kernel"] == "binary"
    assert binary_labels(params, binary_kernel_paths(_FloatHead(), x)) == labels
    # a custom-named Linen binary layer is not found by name: an error, not a silent all-"other"
    params = _CustomNamed().init(jax.random.key(0), x)["params"]
    with pytest.raises(ValueError, match="binary_kernel_paths"):
        binary_labels(params)
    assert binary_labels(params, binary_kernel_paths(_CustomNamed(), x))["hidden"]["kernel"] == "binary"
    tx = binary_optimizer(bop(), optax.adam(1e-3))
    with pytest.raises(ValueError, match="binary kernel"):
        tx.init(params)
    # NNX with the default: nothing recognized by name -> error; model= finds the layers
    model = NNXBinaryLinear(4, 4, kernel_quantizer="ste_sign", rngs=nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    with pytest.raises(ValueError, match="binary kernel"):
        binary_labels(state)
    with pytest.raises(ValueError, match="binary kernel"):
        binary_labels(state, frozenset())
    assert binary_labels(state, model=model)["kernel"].get_value() == "binary"
    with pytest.raises(ValueError, match="at most one"):
        binary_labels(state, frozenset({("kernel",)}), model=model)
    with pytest.raises(TypeError, match="binary_kernel_paths"):
        binary_labels(params, model=_CustomNamed())
    with pytest.raises(TypeError, match="model"):
        binary_optimizer(bop(), optax.adam(1e-3), model=3)


def test_bad_input_errors():
    for kwargs, field in (
        ({"threshold": -1.0}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": 1.5}, "gamma"),
        ({"gamma": "0.1"}, "gamma"),
    ):
        with pytest.raises(ValueError, match=field):
            bop(**kwargs)
    with pytest.raises(ValueError, match="params"):
        bop().update(jnp.ones(2), bop().init(jnp.ones(2)))
    for bad in (0.0, -1.0, float("inf"), True):
        with pytest.raises(ValueError, match="clip_value"):
            clip_latent_weights(bad)
    with pytest.raises(ValueError, match="params"):
        clip_latent_weights().update(jnp.ones(2), optax.EmptyState())
    with pytest.raises(TypeError, match="binary_tx"):
        binary_optimizer("adam", optax.adam(1e-3))
    with pytest.raises(TypeError, match="is_binary"):
        binary_optimizer(bop(), optax.adam(1e-3), is_binary=3)
    with pytest.raises(ValueError, match="kernel"):
        binary_labels({"a": jnp.ones(2)}, {("a", "bias")})
    with pytest.raises(TypeError, match="model"):
        binary_kernel_paths(object())
