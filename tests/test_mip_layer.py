"""Tests of ``tamejax.nn.mip_layer``: the MIP as a Flax layer (Linen and NNX).

Oracles:

* a two-variable MILP (``x`` integer, ``y`` continuous) whose value is locally affine in its data,
  so every gradient of ``output="value"`` is checked against central finite differences of the
  layer itself and against its closed form (``dz/dc = x*``, ``dz/db = y``, ``dz/dA = -y x*^T``);
* a 5-item binary knapsack, enumerated by brute force: ``dz/dc = x*``, and ``0`` in ``A`` and
  ``b`` for the active-piece rule of a pure integer program (checked by finite differences too,
  at a right-hand side inside a step of the value function);
* the simplex / top-k polytope (integral LP vertices, solved by GLOP) for the estimators and the
  optax training loops.
"""

from __future__ import annotations

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

import tamejax
from tamejax.nn.mip_layer import MIPLayer, NNXMIPLayer, build_problem, mip_layer_apply

jax.config.update("jax_enable_x64", True)

KEY = jax.random.PRNGKey(0)


@pytest.fixture(autouse=True, scope="module")
def _in_process_solves():
    """Tiny problems: solve in the test process (no worker start-up on a shared 2-core machine)."""
    before = tamejax.get_workers()
    tamejax.set_workers(0)
    yield
    tamejax.set_workers(before)


# ----------------------------------------------------------------------------- problems
def milp(sense: str = "max") -> tamejax.MIP:
    """``opt s*(x + 3y)`` s.t. ``x + y <= 2.5``, ``y <= 1.8``, ``x in {0..3}`` integer, ``y >= 0``.

    For ``max``: ``x* = 1, y* = 1.5`` (value 5.5; ``x = 0, y = 1.8`` gives 5.4, ``x = 2, y = 0.5``
    gives 3.5), row 1 binding with dual 3, row 2 slack. ``min`` uses the negated cost (value -5.5).
    """
    s = 1.0 if sense == "max" else -1.0
    return tamejax.MIP(
        c=[s * 1.0, s * 3.0],
        A_ub=[[1.0, 1.0], [0.0, 1.0]],
        b_ub=[2.5, 1.8],
        ub=[3.0, np.inf],
        integrality=[True, False],
    )


KNAP_W = np.array([3.0, 4.0, 2.0, 5.0, 3.0])
KNAP_V = np.array([4.0, 5.0, 3.0, 6.0, 2.5])


def knapsack(cap: float = 8.5) -> tamejax.MIP:
    return tamejax.MIP(c=KNAP_V, A_ub=KNAP_W[None, :], b_ub=[cap], ub=1.0, integrality=True)


def knapsack_brute(c: np.ndarray, cap: float) -> tuple[float, np.ndarray]:
    best, arg = -np.inf, None
    for bits in itertools.product((0.0, 1.0), repeat=5):
        x = np.array(bits)
        if KNAP_W @ x <= cap and c @ x > best:
            best, arg = float(c @ x), x
    return best, arg


def topk_lp(n: int, k: int) -> tamejax.MIP:
    """``{0 <= x <= 1, sum x = k}``: its vertices are the k-subsets (GLOP returns one)."""
    return tamejax.MIP(np.zeros(n), A_eq=np.ones((1, n)), b_eq=[float(k)], ub=1.0)


def topk(theta: np.ndarray, k: int) -> np.ndarray:
    x = np.zeros_like(theta)
    idx = np.argsort(-theta, axis=-1)[..., :k]
    np.put_along_axis(x, idx, 1.0, axis=-1)
    return x


def linen_value(layer: MIPLayer, params: dict, inputs=None):
    return layer.apply({"params": params}, inputs)


def central_fd(f, params: dict, name: str, eps: float = 1e-3) -> np.ndarray:
    base = np.asarray(params[name], dtype=np.float64)
    out = np.zeros_like(base)
    for idx in np.ndindex(base.shape):
        plus, minus = base.copy(), base.copy()
        plus[idx] += eps
        minus[idx] -= eps
        fp = float(f({**params, name: jnp.asarray(plus)}))
        fm = float(f({**params, name: jnp.asarray(minus)}))
        out[idx] = (fp - fm) / (2 * eps)
    return out


# ----------------------------------------------------------------------------- value gradients
@pytest.mark.parametrize("sense", ["max", "min"])
def test_value_gradients_milp_closed_form_and_finite_differences(sense):
    t = milp(sense)
    layer = MIPLayer(t, learnable=("c", "A_ub", "b_ub"), output="value", sense=sense)
    params = layer.init(KEY)["params"]
    assert set(params) == {"c", "A_ub", "b_ub"}

    def f(p):
        return linen_value(layer, p)

    z = float(f(params))
    assert z == pytest.approx(5.5 if sense == "max" else -5.5, abs=1e-9)
    g = jax.jit(jax.grad(f))(params)
    x = np.array([1.0, 1.5])
    y = np.array([3.0, 0.0]) if sense == "max" else np.array([-3.0, 0.0])  # dz/db_ub
    np.testing.assert_allclose(g["c"], x, atol=1e-7)
    np.testing.assert_allclose(g["b_ub"], y, atol=1e-7)
    np.testing.assert_allclose(g["A_ub"], -np.outer(y, x), atol=1e-7)
    assert np.any(np.asarray(g["b_ub"]) != 0) and np.any(np.asarray(g["A_ub"]) != 0)
    for name in ("c", "A_ub", "b_ub"):
        np.testing.assert_allclose(g[name], central_fd(f, params, name), atol=1e-5, err_msg=name)


def test_value_pure_integer_program_zero_gradient_in_constraints():
    cap = 8.5  # inside a step of z(b): z is constant on [8, 9) since the weights are integers
    layer = MIPLayer(knapsack(cap), learnable=("A_ub", "b_ub"), output="value", sense="max", gradient="active")
    params = layer.init(KEY, jnp.asarray(KNAP_V))["params"]

    def f(p, c):
        return layer.apply({"params": p}, c)

    z_star, x_star = knapsack_brute(KNAP_V, cap)
    assert float(f(params, KNAP_V)) == pytest.approx(z_star)
    gp, gc = jax.grad(f, argnums=(0, 1))(params, jnp.asarray(KNAP_V))
    np.testing.assert_array_equal(gp["b_ub"], 0.0)
    np.testing.assert_array_equal(gp["A_ub"], 0.0)
    np.testing.assert_allclose(gc, x_star)
    # the finite difference agrees: the value is locally constant in b
    fd = central_fd(lambda p: f(p, KNAP_V), params, "b_ub", eps=0.2)
    np.testing.assert_array_equal(fd, 0.0)


def test_value_certificate_gradient_on_milp_equals_active_duals():
    layer = MIPLayer(
        milp("max"),
        learnable=("b_ub",),
        input_field="c",
        output="value",
        sense="max",
        gradient="certificate",
        solver_options={"time_limit": 20.0},
    )
    params = layer.init(KEY, jnp.array([1.0, 3.0]))["params"]
    g = jax.grad(lambda p: layer.apply({"params": p}, jnp.array([1.0, 3.0])))(params)
    np.testing.assert_allclose(g["b_ub"], [3.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("sense", ["max", "min"])
def test_value_and_solution_duals_are_value_derivatives(sense):
    layer = MIPLayer(milp(sense), learnable=("b_ub",), output="value_and_solution", sense=sense)
    c = jnp.asarray(milp(sense).c)
    params = layer.init(KEY, c)["params"]
    z, sol = layer.apply({"params": params}, c)
    assert int(sol.status) == int(tamejax.Status.OPTIMAL)
    np.testing.assert_allclose(sol.x, [1.0, 1.5], atol=1e-7)
    assert float(sol.objective) == pytest.approx(float(z))
    g = jax.grad(lambda p: layer.apply({"params": p}, c)[0])(params)
    np.testing.assert_allclose(sol.dual_ub, g["b_ub"], atol=1e-7)


def test_inputs_in_the_right_hand_side_get_the_duals_as_gradient():
    lay = NNXMIPLayer(milp("max"), input_field="b_ub", output="value_and_solution", sense="max")
    bs = jnp.array([[2.5, 1.8], [2.2, 1.0], [3.5, 0.4]])  # each with a unique optimum
    (z, sol), g = nnx.jit(lambda m, b: (m(b), jax.grad(lambda b: m(b)[0].sum())(b)))(lay, bs)
    assert z.shape == (3,) and sol.x.shape == (3, 2)
    np.testing.assert_allclose(g, sol.dual_ub, atol=1e-9)
    assert np.any(np.asarray(g) != 0)
    for i in range(3):  # finite differences of the value in each right-hand side
        for r in range(2):
            e = jnp.zeros(2).at[r].set(1e-3)
            fd = (lay(bs[i] + e)[0] - lay(bs[i] - e)[0]) / 2e-3
            assert float(fd) == pytest.approx(float(g[i, r]), abs=1e-6)


def test_infeasible_instance_is_a_status_not_an_exception():
    t = tamejax.MIP(c=[1.0, 1.0], A_ub=[[1.0, 1.0]], b_ub=[1.0], ub=1.0, integrality=True)
    layer = MIPLayer(t, learnable=("b_ub",), output="value_and_solution", sense="max")
    params = {"b_ub": jnp.array([-1.0])}  # x >= 0 cannot satisfy x1 + x2 <= -1
    z, sol = jax.jit(lambda p: layer.apply({"params": p}, jnp.array([1.0, 1.0])))(params)
    assert float(z) == -np.inf and int(sol.status) == int(tamejax.Status.INFEASIBLE)
    g = jax.grad(lambda p: layer.apply({"params": p}, jnp.array([1.0, 1.0]))[0])(params)
    np.testing.assert_array_equal(g["b_ub"], 0.0)


# ----------------------------------------------------------------------------- transformations
def test_linen_jit_vmap_grad_and_batch_axes_agree():
    layer = MIPLayer(knapsack(), learnable=("b_ub",), output="value", sense="max")
    cs = jax.random.uniform(jax.random.PRNGKey(3), (2, 3, 5), minval=0.5, maxval=6.0)
    params = layer.init(KEY, cs)["params"]

    def f(p, c):
        return layer.apply({"params": p}, c)

    batched = f(params, cs)
    assert batched.shape == (2, 3)
    vm = jax.jit(jax.vmap(jax.vmap(f, (None, 0)), (None, 0)))(params, cs)
    np.testing.assert_allclose(vm, batched)
    for i, j in itertools.product(range(2), range(3)):
        z, _ = knapsack_brute(np.asarray(cs[i, j]), 8.5)
        assert float(batched[i, j]) == pytest.approx(z)
    gc = jax.jit(jax.grad(lambda c: f(params, c).sum()))(cs)
    for i, j in itertools.product(range(2), range(3)):
        np.testing.assert_allclose(gc[i, j], knapsack_brute(np.asarray(cs[i, j]), 8.5)[1])
    gv = jax.vmap(jax.grad(f, argnums=1), (None, 0))(params, cs[0])
    np.testing.assert_allclose(gv, gc[0])


def test_nnx_jit_vmap_grad_and_equal_to_linen():
    t = milp("max")
    kw = dict(learnable=("A_ub", "b_ub"), output="value", sense="max")
    lin = MIPLayer(t, **kw)
    mod = NNXMIPLayer(t, **kw)
    cs = jnp.array([[1.0, 3.0], [1.0, 0.9], [2.0, 0.5]])  # unique optima (no tie between x = 1 and 2)
    params = lin.init(KEY, cs)["params"]
    for k in params:
        np.testing.assert_array_equal(params[k], mod.params[k][...])

    def lin_loss(p):
        return jnp.sum(lin.apply({"params": p}, cs) ** 2)

    @nnx.jit
    def nnx_loss_and_grad(m):
        return nnx.value_and_grad(lambda m: jnp.sum(m(cs) ** 2))(m)

    lv, lg = jax.jit(jax.value_and_grad(lin_loss))(params)
    nv, ng = nnx_loss_and_grad(mod)
    assert float(lv) == pytest.approx(float(nv))
    for k in params:
        np.testing.assert_allclose(ng["params"][k][...], lg[k], atol=1e-12)
        assert np.any(np.asarray(lg[k]) != 0)
    # vmap of the NNX module over inputs equals the batched call
    out = nnx.vmap(lambda m, c: m(c), in_axes=(None, 0))(mod, cs)
    np.testing.assert_allclose(out, mod(cs))


def _custom_estimator(oracle, theta, key, *, sigma=1.0):
    """A user estimator: the layer passes ``key`` because the signature has it."""
    return tamejax.estimators.perturbed(oracle, theta, key, num_samples=4, sigma=sigma)


_DIRECT = {
    "perturbed": tamejax.estimators.perturbed,
    "imle": tamejax.estimators.imle,
    "interpolation": tamejax.estimators.interpolation,
    "identity": tamejax.estimators.identity,
    _custom_estimator: _custom_estimator,
}


@pytest.mark.parametrize(
    ("estimator", "options", "sense"),
    [
        ("perturbed", {"num_samples": 4, "sigma": 0.5}, "max"),
        ("perturbed", {"num_samples": 3, "sigma": 0.7, "noise": "gumbel"}, "min"),
        ("imle", {"num_samples": 2, "lam": 5.0}, "min"),
        ("interpolation", {"lam": 5.0}, "max"),
        ("identity", {}, "min"),
        (_custom_estimator, {"sigma": 1.0}, "max"),
    ],
)
def test_solution_estimators_equal_the_direct_estimator_call(estimator, options, sense):
    """Forward value and gradient of the layer (Linen and NNX) equal those of the estimator called on
    ``tamejax.Oracle(template, sense)``: options, sense and key are passed through unchanged."""
    n, k = 5, 2
    t = topk_lp(n, k)
    kw = dict(estimator=estimator, estimator_options=options, sense=sense, backend="glop")
    lin = MIPLayer(t, **kw)
    mod = NNXMIPLayer(t, **kw)
    theta = jax.random.normal(jax.random.PRNGKey(5), (3, n))
    target = jnp.asarray(topk(np.asarray(jax.random.normal(jax.random.PRNGKey(6), (3, n))), k))
    rk = jax.random.PRNGKey(7)
    oracle = tamejax.Oracle(t, sense, "glop")
    fn = _DIRECT[estimator]
    needs_key = estimator in ("perturbed", "imle") or estimator is _custom_estimator

    def direct(th):
        return fn(oracle, th, rk, **options) if needs_key else fn(oracle, th, **options)

    def loss(f):
        return lambda th: jnp.sum((f(th) - target) ** 2)

    @jax.jit
    def run(th):
        outs = []
        for f in (direct, lambda th: lin.apply({}, th, key=rk), lambda th: mod(th, key=rk)):
            outs.append((f(th), jax.grad(loss(f))(th)))
        return outs, mod(th, deterministic=True)

    ((xd, gd), (xl, gl), (xn, gn)), x_exact = run(theta)
    assert xd.shape == (3, n)
    for x, g in ((xl, gl), (xn, gn)):
        np.testing.assert_allclose(x, xd, atol=1e-12)
        np.testing.assert_allclose(g, gd, atol=1e-12)
    best = topk(np.asarray(theta if sense == "max" else -theta), k)
    np.testing.assert_allclose(x_exact, best)  # deterministic evaluation: the exact solution
    if estimator in ("interpolation", "identity"):
        np.testing.assert_allclose(xl, best)
    if estimator == "identity":  # backward: +I for max, -I for min (Sahoo et al. 2023)
        np.testing.assert_allclose(gl, (1.0 if sense == "max" else -1.0) * 2 * (xl - target))
    if estimator == "perturbed":  # a mean of vertices: within the polytope, k ones in total
        np.testing.assert_allclose(np.sum(xl, -1), k, atol=1e-9)
        assert np.all((np.asarray(xl) >= -1e-9) & (np.asarray(xl) <= 1 + 1e-9))


def test_min_sense_solution_path_against_brute_force():
    """``sense="min"`` on the knapsack (SCIP) with costs ``-v``: the exact solution, the identity
    estimator's forward pass and ``value_and_solution`` equal brute-force maximization of ``v``."""
    cs = -jax.random.uniform(jax.random.PRNGKey(11), (3, 5), minval=0.5, maxval=6.0)
    w = jnp.arange(1.0, 6.0)
    lay = NNXMIPLayer(knapsack(), estimator="identity", sense="min", backend="scip")
    x = lay(cs)
    g = jax.grad(lambda c: jnp.sum(lay(c) * w))(cs)
    vlay = MIPLayer(knapsack(), output="value_and_solution", sense="min", backend="scip")
    z, sol = vlay.apply({}, cs)
    for i in range(3):
        best, arg = knapsack_brute(-np.asarray(cs[i]), 8.5)
        np.testing.assert_allclose(x[i], arg)
        np.testing.assert_allclose(sol.x[i], arg)
        assert float(z[i]) == pytest.approx(-best)
    np.testing.assert_allclose(g, -np.broadcast_to(w, (3, 5)))  # identity for "min": -I
    stoch = MIPLayer(knapsack(), estimator="perturbed", sense="min", backend="scip", deterministic=True)
    xs = stoch.apply({}, cs, rngs={"mip": KEY})  # the attribute: exact, even with a stream
    np.testing.assert_allclose(xs, x)


def test_linen_perturbed_uses_the_rng_stream():
    t = topk_lp(4, 1)
    lin = MIPLayer(t, estimator="perturbed", estimator_options={"num_samples": 3}, sense="max", backend="glop")
    theta = jnp.array([0.1, 0.0, -0.1, 0.05])
    a = lin.apply({}, theta, rngs={"mip": jax.random.PRNGKey(1)})
    b = lin.apply({}, theta, key=jax.random.PRNGKey(1))
    np.testing.assert_allclose(a, b)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        lin.apply({}, theta)


# ----------------------------------------------------------------------------- builders
def test_builder_with_input_ndim_matches_template_and_differentiates_its_params():
    def builder(u, p):
        return tamejax.MIP(c=u * p["w"], A_ub=KNAP_W[None, :], b_ub=[8.5], ub=1.0, integrality=True)

    w0 = np.array([1.0, 0.5, 2.0, 1.0, 1.5])
    b = MIPLayer(builder, learnable={"w": w0}, input_ndim=1, output="value", sense="max")
    nb = NNXMIPLayer(builder, learnable={"w": w0}, input_ndim=1, output="value", sense="max")
    u = jax.random.uniform(jax.random.PRNGKey(2), (4, 5), minval=0.5, maxval=4.0)
    params = b.init(KEY, u)["params"]
    z = b.apply({"params": params}, u)
    assert z.shape == (4,)
    gw = jax.grad(lambda p: b.apply({"params": p}, u).sum())(params)["w"]
    expect = np.zeros(5)
    for i in range(4):
        zi, xi = knapsack_brute(np.asarray(u[i]) * w0, 8.5)
        assert float(z[i]) == pytest.approx(zi)
        expect += np.asarray(u[i]) * xi  # d/dw (u * w) . x* = u * x*
    np.testing.assert_allclose(gw, expect)
    np.testing.assert_allclose(nb(u), z)
    built = b.apply({"params": params}, u, method="build")
    assert isinstance(built, tamejax.MIP) and built.batch_shape == (4,)
    np.testing.assert_allclose(build_problem(b, params, u).c, built.c)
    np.testing.assert_allclose(mip_layer_apply(b, params, u), z)


def test_builder_params_in_constraints_get_zero_gradient_from_a_solution_estimator():
    # documented: the estimators differentiate with respect to the cost only
    def builder(u, p):
        return tamejax.MIP(c=u, A_eq=jnp.ones((1, 4)), b_eq=p["k"], ub=1.0)

    lay = MIPLayer(builder, learnable={"k": np.array([2.0])}, estimator="identity", sense="max", backend="glop")
    params = lay.init(KEY, jnp.zeros(4))["params"]
    u = jnp.array([0.3, -0.2, 0.9, 0.1])
    g = jax.grad(lambda p: jnp.sum(lay.apply({"params": p}, u)))(params)
    np.testing.assert_array_equal(g["k"], 0.0)


# ----------------------------------------------------------------------------- training
@pytest.mark.slow  # ~13 s; the loss itself is checked against the direct function in the NNX test below
def test_linen_model_trains_with_optax_and_fenchel_young():
    n, k, d, m = 6, 2, 3, 16
    rng = np.random.default_rng(0)
    W = rng.normal(size=(d, n))
    feats = rng.normal(size=(m, d))
    targets = jnp.asarray(topk(feats @ W, k))

    class Model(nn.Module):
        """A cost network with the MIP layer as a submodule."""

        def setup(self):
            self.dense = nn.Dense(n, use_bias=False)
            self.mip = MIPLayer(
                topk_lp(n, k),
                estimator="perturbed",
                estimator_options={"num_samples": 3, "sigma": 0.5},
                sense="max",
                backend="glop",
            )

        def __call__(self, f, deterministic=None):
            return self.mip(self.dense(f), deterministic=deterministic)

        def loss(self, f, x_true):
            return jnp.mean(self.mip.fenchel_young_loss(self.dense(f), x_true))

    model = Model()
    params = jax.jit(model.init)({"params": KEY, "mip": KEY}, feats)
    opt = optax.adam(0.1)
    state = opt.init(params)

    def loss_fn(p, key):
        return model.apply(p, feats, targets, method="loss", rngs={"mip": key})

    @jax.jit
    def step(p, s, key):
        loss, g = jax.value_and_grad(loss_fn)(p, key)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, loss

    @jax.jit
    def evaluate(p, key):
        x = model.apply(p, feats, deterministic=True)  # exact solutions of the predicted costs
        return loss_fn(p, key), jnp.mean(jnp.all(x == targets, axis=-1))

    eval_key = jax.random.PRNGKey(123)
    loss0, acc0 = (float(v) for v in evaluate(params, eval_key))
    for i in range(20):
        params, state, _ = step(params, state, jax.random.PRNGKey(i))
    loss1, acc1 = (float(v) for v in evaluate(params, eval_key))
    assert loss1 < loss0 - 0.1, (loss0, loss1)
    assert acc1 > acc0 and acc1 >= 0.75, (acc0, acc1)


def test_nnx_learnable_cost_trains_with_optax():
    n, k = 6, 3
    target = jnp.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    t = topk_lp(n, k).replace(c=np.array([0.3, 0.2, 0.1, 0.0, -0.1, -0.2]))
    mod = NNXMIPLayer(
        t,
        learnable=("c",),
        estimator="perturbed",
        estimator_options={"num_samples": 4, "sigma": 0.3},
        sense="max",
        backend="glop",
        rngs=nnx.Rngs(0, mip=1),
    )
    optimizer = nnx.Optimizer(mod, optax.adam(0.05), wrt=nnx.Param)

    def loss_fn(m):
        return jnp.sum((m() - target) ** 2)

    @nnx.jit
    def step(m, o):
        loss, g = nnx.value_and_grad(loss_fn)(m)
        o.update(m, g)
        return loss

    assert not np.array_equal(mod(deterministic=True), target)
    losses = [float(step(mod, optimizer)) for _ in range(30)]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    np.testing.assert_array_equal(mod(deterministic=True), target)


# ----------------------------------------------------------------------------- errors
def test_learnable_constraints_with_a_solution_estimator_are_refused():
    for cls in (MIPLayer, NNXMIPLayer):
        with pytest.raises(ValueError, match=r"field `b_ub` would receive no gradient with output='solution'"):
            cls(milp(), learnable=("b_ub",), output="solution")


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        (dict(learnable=("Q",)), ValueError, r"expected MIP fields among .* got 'Q'"),
        (
            dict(learnable={"b_ub": np.zeros(3)}, output="value"),
            ValueError,
            r"field `b_ub`: expected an initial value of shape \(2,\).*got shape \(3,\)",
        ),
        (dict(output="argmin"), ValueError, r"argument `output`: expected one of .* got 'argmin'"),
        (dict(estimator="magic"), ValueError, r"argument `estimator`: expected one of .* got 'magic'"),
        (dict(estimator_options={"bogus": 1}), ValueError, r"estimator_options.*got \['bogus'\]"),
        (dict(gradient="certificate"), ValueError, r"argument `gradient`: 'certificate' applies to output='value'"),
        (dict(gradient="exact", output="value"), ValueError, r"argument `gradient`: expected one of"),
        (dict(sense="maximize"), ValueError, r"argument `sense`: expected 'min' or 'max', got 'maximize'"),
        (dict(solver_options={"threads": 1, "foo": 2}), ValueError, r"solver_options.*got \['foo'\]"),
        (dict(input_field="A"), ValueError, r"argument `input_field`: expected a MIP field .* got 'A'"),
        (dict(input_field="b_ub", learnable=("b_ub",), output="value"), ValueError, r"field `b_ub` is also learnable"),
        (dict(initializers={"c": nn.initializers.zeros}), ValueError, r"argument `initializers`: expected keys"),
        (dict(input_ndim=1), ValueError, r"argument `input_ndim`: only for a builder"),
    ],
)
def test_bad_arguments_raise_named_errors(kwargs, err, match):
    for cls in (MIPLayer, NNXMIPLayer):
        with pytest.raises(err, match=match):
            cls(milp(), **kwargs)


def test_bad_problems_and_builders_raise_named_errors():
    with pytest.raises(TypeError, match=r"argument `problem`: expected a tamejax.MIP template or a callable"):
        MIPLayer(42)
    batched = tamejax.MIP(c=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"expected an unbatched tamejax.MIP template .* batch_shape \(2,\)"):
        NNXMIPLayer(batched)
    with pytest.raises(TypeError, match=r"a builder needs a mapping"):
        MIPLayer(lambda u, p: None, learnable=("c",))

    def bad_builder(u, p):
        return {"c": u}

    lay = MIPLayer(bad_builder, output="value")
    with pytest.raises(TypeError, match=r"builder `bad_builder`\(inputs, params\) must return a tamejax.MIP, got dict"):
        lay.init(KEY, jnp.zeros(3))
    with pytest.raises(ValueError, match=r"argument `inputs`: expected None .* learnable"):
        MIPLayer(milp(), learnable=("c",), output="value").init(KEY, jnp.zeros(2))
    lay = NNXMIPLayer(milp(), learnable=("b_ub",), output="value")
    with pytest.raises(ValueError, match=r"parameter `b_ub`: expected shape \(2,\), got shape \(3,\)"):
        mip_layer_apply(lay, {"b_ub": jnp.zeros(3)}, jnp.ones(2))
    with pytest.raises(ValueError, match=r"missing \['b_ub'\]"):
        mip_layer_apply(lay, {}, jnp.ones(2))


@settings(max_examples=10, deadline=None)
@given(
    field=st.sampled_from(["c", "b_ub", "A_ub"]),
    bad=st.lists(st.integers(1, 4), min_size=1, max_size=3),
)
def test_inputs_of_the_wrong_shape_name_the_field(field, bad):
    t = milp()
    core = tuple(getattr(t, field).shape)
    shape = tuple(bad)
    if len(shape) >= len(core) and shape[len(shape) - len(core) :] == core:
        shape = shape + (7,)  # make it wrong
    lay = NNXMIPLayer(t, input_field=field, output="value")
    with pytest.raises(ValueError, match=rf"argument `inputs` \(MIP field `{field}`\): expected shape .* got shape"):
        lay(jnp.ones(shape))


# ----------------------------------------------------------------------------- constraint inputs, solution output
def rhs_lp() -> tamejax.MIP:
    """``opt s*(x + 3y)`` s.t. ``x + y <= b1``, ``y <= b2``, ``0 <= x, y <= 3`` (an LP)."""
    return tamejax.MIP(c=[1.0, 3.0], A_ub=[[1.0, 1.0], [0.0, 1.0]], b_ub=[2.5, 1.8], ub=[3.0, 3.0])


RHS = jnp.array([[2.5, 1.8], [2.2, 1.0], [3.4, 0.4]])


def rhs_lp_max(b: np.ndarray) -> np.ndarray:
    """Closed form for ``max x + 3y``: ``y = min(b1, b2, 3)``, then ``x = min(b1 - y, 3)``."""
    y = np.minimum(np.minimum(b[..., 0], b[..., 1]), 3.0)
    return np.stack([np.minimum(b[..., 0] - y, 3.0), y], axis=-1)


@pytest.mark.parametrize(
    ("estimator", "options"),
    [
        ("perturbed", {"num_samples": 1, "sigma": 0.01}),
        ("perturbed", {"num_samples": 2, "sigma": 0.01}),
        pytest.param("imle", {"num_samples": 2, "sigma": 0.01}, marks=pytest.mark.slow),  # ~10 s
        ("interpolation", {}),
        ("identity", {}),
    ],
)
def test_constraint_inputs_with_solution_output_solve_each_instance(estimator, options):
    """``input_field="b_ub"`` batches the feasible set: one cost per instance, not a mean over the batch."""
    exact = rhs_lp_max(np.asarray(RHS))
    kw = dict(input_field="b_ub", estimator=estimator, estimator_options=options, sense="max", backend="glop")
    mod = NNXMIPLayer(rhs_lp(), **kw)
    x = mod(RHS, key=jax.random.PRNGKey(2))
    assert x.shape == (3, 2)
    np.testing.assert_allclose(x, exact, atol=1e-9)  # sigma = 0.01 keeps every vertex optimal
    np.testing.assert_allclose(mod(RHS, deterministic=True), exact, atol=1e-9)
    # a learnable cost shared by the batch: the Linen layer equals the direct estimator on the
    # batched feasible set with the cost broadcast per instance
    lin = MIPLayer(rhs_lp(), learnable=("c",), **kw)
    params = lin.init(KEY, RHS)["params"]
    rk = jax.random.PRNGKey(4)
    w = jnp.array([1.0, -2.0])

    def f(p):
        return jnp.sum(lin.apply({"params": p}, RHS, key=rk) * w)

    feas = tamejax.MIP(c=np.zeros(2), A_ub=[[1.0, 1.0], [0.0, 1.0]], b_ub=RHS, ub=[3.0, 3.0])
    fn = getattr(tamejax.estimators, estimator)
    needs_key = estimator in ("perturbed", "imle")

    def direct(c):
        th = jnp.broadcast_to(c, (3, 2))
        out = (
            fn(tamejax.Oracle(feas, "max", "glop"), th, rk, **options)
            if needs_key
            else fn(tamejax.Oracle(feas, "max", "glop"), th, **options)
        )
        return jnp.sum(out * w)

    v, g = jax.value_and_grad(f)(params)
    dv, dg = jax.value_and_grad(direct)(jnp.asarray(params["c"]))
    assert float(v) == pytest.approx(float(dv)) == pytest.approx(float(np.sum(exact * np.asarray(w))))
    np.testing.assert_allclose(g["c"], dg, atol=1e-9)
    if estimator == "identity":  # max: +I per instance, summed over the batch
        np.testing.assert_allclose(g["c"], 3 * w)
    # the Fenchel-Young loss is per instance too
    fy = lin.apply({"params": params}, RHS, jnp.asarray(exact), method="fenchel_young_loss", key=rk)
    assert fy.shape == (3,)


# ----------------------------------------------------------------------------- failed instances
@pytest.mark.parametrize(
    ("estimator", "options"),
    [
        ("perturbed", {"num_samples": 8, "sigma": 2.0}),
        ("imle", {"num_samples": 4, "sigma": 2.0, "lam": 2.0}),
        pytest.param("imle", {"num_samples": 4, "sigma": 2.0, "lam": 2.0, "two_sided": True}, marks=pytest.mark.slow),
    ],
)
def test_failed_instance_contributes_zero_not_nan_to_the_gradient(estimator, options):
    """One infeasible instance (NaN row, status INFEASIBLE) must not poison a shared parameter: its
    samples contribute zero, so the gradient equals that of the same batch with the failed instance
    replaced by a feasible one whose output the loss ignores (same noise)."""
    w = jnp.array([-1.0, 1.0])

    def builder(u, p):
        return tamejax.MIP(c=p["c"], A_ub=[[1.0, 1.0]], b_ub=u, ub=3.0)

    lay = MIPLayer(
        builder,
        learnable={"c": np.array([1.0, 1.5])},
        estimator=estimator,
        estimator_options=options,
        sense="max",
        backend="glop",
    )
    bad = jnp.array([[2.5], [-1.0]])  # x >= 0 cannot satisfy x1 + x2 <= -1
    ok = jnp.array([[2.5], [2.0]])
    params = lay.init(KEY, ok)["params"]
    rk = jax.random.PRNGKey(9)
    x = lay.apply({"params": params}, bad, key=rk)
    assert np.all(np.isfinite(x[0])) and np.all(np.isnan(x[1]))
    g_bad = jax.grad(lambda p: jnp.nansum(lay.apply({"params": p}, bad, key=rk) * w))(params)["c"]
    g_ref = jax.grad(lambda p: jnp.sum(lay.apply({"params": p}, ok, key=rk)[0] * w))(params)["c"]
    assert np.all(np.isfinite(g_bad))
    assert np.any(np.asarray(g_ref) != 0)
    np.testing.assert_allclose(g_bad, g_ref, atol=1e-12)


# ----------------------------------------------------------------------------- NNX loss, build, parameters
def test_nnx_fenchel_young_loss_and_build_equal_the_direct_functions():
    n, k = 5, 2
    t = topk_lp(n, k)
    opts = {"num_samples": 4, "sigma": 0.5}
    mod = NNXMIPLayer(t, estimator="perturbed", estimator_options=opts, sense="max", backend="glop")
    lin = MIPLayer(t, estimator="perturbed", estimator_options=opts, sense="max", backend="glop")
    theta = jax.random.normal(jax.random.PRNGKey(5), (3, n))
    x_true = jnp.asarray(topk(np.asarray(jax.random.normal(jax.random.PRNGKey(6), (3, n))), k))
    rk = jax.random.PRNGKey(8)
    oracle = tamejax.Oracle(t, "max", "glop")
    ref, gref = jax.value_and_grad(
        lambda th: jnp.sum(tamejax.estimators.fenchel_young_loss(oracle, th, x_true, rk, **opts))
    )(theta)
    val, g = jax.value_and_grad(lambda th: jnp.sum(mod.fenchel_young_loss(th, x_true, key=rk)))(theta)
    lval = lin.apply({}, theta, x_true, method="fenchel_young_loss", key=rk)
    assert float(val) == pytest.approx(float(ref)) == pytest.approx(float(jnp.sum(lval)))
    np.testing.assert_allclose(g, gref, atol=1e-12)
    # Danskin: the gradient is x_bar - x_true (max), x_bar the perturbed mean solution of the same noise
    x_bar = tamejax.estimators.perturbed(oracle, theta, rk, **opts)
    np.testing.assert_allclose(g, x_bar - x_true, atol=1e-12)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        mod.fenchel_young_loss(theta, x_true)
    # any solution layer keeps the stream of `rngs` for the loss (identity is not stochastic)
    ident = NNXMIPLayer(t, estimator="identity", sense="max", backend="glop", rngs=nnx.Rngs(mip=3))
    a, b = ident.fenchel_young_loss(theta, x_true), ident.fenchel_young_loss(theta, x_true)
    assert a.shape == (3,) and np.all(np.isfinite(a)) and not np.allclose(a, b)  # fresh keys per call

    # build: NNX equals Linen and differentiates in the parameters
    vl = NNXMIPLayer(milp("max"), learnable=("b_ub",), output="value", sense="max")
    vlin = MIPLayer(milp("max"), learnable=("b_ub",), output="value", sense="max")
    cs = jnp.array([[1.0, 3.0], [2.0, 0.5]])
    built = vl.build(cs)
    lbuilt = vlin.apply({"params": {"b_ub": jnp.array([2.5, 1.8])}}, cs, method="build")
    assert built.batch_shape == (2,)
    np.testing.assert_allclose(built.c, cs)
    np.testing.assert_allclose(built.b_ub, [[2.5, 1.8], [2.5, 1.8]])
    for name in ("c", "A_ub", "b_ub", "ub"):
        np.testing.assert_allclose(getattr(built, name), getattr(lbuilt, name))
    gb = nnx.grad(lambda m: jnp.sum(m.build(cs).b_ub * jnp.array([2.0, -1.0])))(vl)
    np.testing.assert_allclose(gb["params"]["b_ub"][...], [4.0, -2.0])  # summed over the batch of 2
    # the data as built: maximizing c.x over it (the layer) = minus tamejax.solve of -c
    z = vl(cs)
    neg = tamejax.MIP(
        c=-built.c, A_ub=built.A_ub, b_ub=built.b_ub, lb=built.lb, ub=built.ub, integrality=built.integrality
    )
    sol = tamejax.solve(neg, "scip")
    np.testing.assert_allclose(z, -sol.objective, atol=1e-9)


def test_initializers_and_param_dtype_in_both_apis():
    t = tamejax.MIP(c=[1.0, 3.0], A_ub=np.zeros((2, 2)), b_ub=[0.0, 0.0], ub=[3.0, np.inf], integrality=[True, False])
    init = {
        "A_ub": lambda k, s, d: jnp.asarray([[1.0, 1.0], [0.0, 1.0]], d),
        "b_ub": lambda k, s, d: jax.random.uniform(k, s, d, 10.0, 11.0),
    }
    kw = dict(learnable=("A_ub", "b_ub"), output="value", sense="max", initializers=init, param_dtype=jnp.float32)
    lin = MIPLayer(t, **kw)
    params = lin.init(KEY, jnp.array([1.0, 3.0]))["params"]
    mod = NNXMIPLayer(t, **kw, rngs=nnx.Rngs(params=0))
    for p in (params, {k: v[...] for k, v in mod.params.items()}):
        assert p["A_ub"].dtype == jnp.float32 and p["b_ub"].dtype == jnp.float32
        np.testing.assert_allclose(p["A_ub"], [[1.0, 1.0], [0.0, 1.0]])
        b = np.asarray(p["b_ub"], np.float64)
        assert np.all((b >= 10.0) & (b <= 11.0))
    # the initialized constraints are the ones solved: y <= b2 <= b1 - y... closed form of the MILP
    for p, z in ((params, lin.apply({"params": params}, jnp.array([1.0, 3.0]))), (None, mod(jnp.array([1.0, 3.0])))):
        b = np.asarray(params["b_ub"] if p is not None else mod.params["b_ub"][...], np.float64)
        best = max(x + 3 * min(b[1], b[0] - x) for x in range(4) if b[0] - x >= 0)
        assert float(z) == pytest.approx(best, rel=1e-6)
    with pytest.raises(
        ValueError, match=r"argument `rngs`: the initializer of `A_ub` needs a PRNG key|argument `rngs`"
    ):
        NNXMIPLayer(t, **kw)
    defaults = NNXMIPLayer(t, learnable=("b_ub",), output="value")
    assert defaults.params["b_ub"][...].dtype == jnp.float64  # the template's dtype (x64 on)


def test_deterministic_attribute_eval_and_view_give_exact_solutions():
    t = topk_lp(4, 1)
    th = jnp.array([0.1, 0.0, -0.1, 0.05])
    exact = np.array([1.0, 0.0, 0.0, 0.0])
    opts = {"num_samples": 2, "sigma": 1.0}

    class Model(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.drop = nnx.Dropout(0.5, rngs=rngs)
            self.mip = NNXMIPLayer(
                t, estimator="perturbed", estimator_options=opts, sense="max", backend="glop", rngs=rngs
            )

        def __call__(self, x):
            return self.mip(x + 0.0 * self.drop(x))

    m = Model(nnx.Rngs(0))
    train = np.stack([np.asarray(m(th)) for _ in range(4)])
    assert not np.all(train == exact)  # sigma = 1 >> the gaps: the noise moves the argmax
    ev = nnx.view(m, deterministic=True)
    assert ev.mip.deterministic and not m.mip.deterministic
    for _ in range(3):
        np.testing.assert_allclose(ev(th), exact)
    m.eval()
    assert m.mip.deterministic
    for _ in range(3):
        np.testing.assert_allclose(m(th), exact)
    m.train()
    assert not m.mip.deterministic
    with pytest.raises(ValueError, match=r"argument `deterministic`: expected True, False or None, got 'yes'"):
        m.mip.set_view(deterministic="yes")
    # Linen attribute, and its validation
    lin = MIPLayer(t, estimator="perturbed", estimator_options=opts, sense="max", backend="glop", deterministic=True)
    for i in range(3):
        np.testing.assert_allclose(lin.apply({}, th, rngs={"mip": jax.random.PRNGKey(i)}), exact)
    with pytest.raises(ValueError, match=r"argument `deterministic`: expected True, False or None, got 'yes'"):
        MIPLayer(t, deterministic="yes")


class _SpyBackend:
    """Records the ``SolveOptions`` it receives and delegates to GLOP."""

    def __init__(self) -> None:
        self.options: list = []

    def solve(self, problem, options, cache):
        self.options.append(options)
        return tamejax.backends.get_backend("glop").solve(problem, options, cache)

    def __getattr__(self, name):  # everything else (static checks, capabilities): GLOP's
        return getattr(tamejax.backends.get_backend("glop"), name)


def test_solver_options_reach_the_backend(monkeypatch):
    import tamejax.backends as tb

    spy = _SpyBackend()
    monkeypatch.setitem(tb._REGISTRY, "spy_mip_layer", "tamejax.backends.ortools_linear:glop")
    monkeypatch.setitem(tb._INSTANCES, "spy_mip_layer", spy)
    opts = {"time_limit": 7.5, "threads": 1, "seed": 3, "rel_gap": 0.25}
    t = topk_lp(4, 1)
    th = jnp.array([0.1, 0.0, -0.1, 0.05])
    for output in ("solution", "value"):
        spy.options.clear()
        lay = NNXMIPLayer(
            t,
            output=output,
            estimator="identity" if output == "solution" else "perturbed",
            sense="max",
            backend="spy_mip_layer",
            solver_options=opts,
        )
        out = lay(th)
        assert spy.options, "the backend was not called"
        for o in spy.options:
            assert (o.time_limit, o.threads, o.seed, o.rel_gap) == (7.5, 1, 3, 0.25)
        expected = [1.0, 0.0, 0.0, 0.0] if output == "solution" else 0.1
        np.testing.assert_allclose(out, expected)


def test_custom_rng_collection_in_both_apis():
    t = topk_lp(4, 1)
    th = jnp.array([0.1, 0.0, -0.1, 0.05])
    kw = dict(estimator="perturbed", estimator_options={"num_samples": 3}, sense="max", backend="glop")
    lin = MIPLayer(t, rng_collection="noise", **kw)
    k = jax.random.PRNGKey(1)
    np.testing.assert_allclose(lin.apply({}, th, rngs={"noise": k}), lin.apply({}, th, key=k))
    with pytest.raises(ValueError, match="needs a PRNG key"):
        lin.apply({}, th, rngs={"mip": k})  # the default stream name is not used
    mod = NNXMIPLayer(t, rng_collection="noise", rngs=nnx.Rngs(noise=1), **kw)
    a, b = mod(th), mod(th)
    assert a.shape == (4,) and float(jnp.sum(a)) == pytest.approx(1.0) and not np.allclose(a, b)
    with pytest.raises(ValueError, match=r"argument `rngs`: .* needs the stream 'noise' .* got streams \['params'\]"):
        NNXMIPLayer(t, rng_collection="noise", rngs=nnx.Rngs(params=0), **kw)


def test_unexpected_parameters_are_refused_by_name():
    lay = NNXMIPLayer(milp(), learnable=("b_ub",), output="value", sense="max")
    c = jnp.array([1.0, 3.0])
    with pytest.raises(
        ValueError, match=r"argument `params`: expected exactly .*\['b_ub'\], got unexpected \['A_ub'\]"
    ):
        mip_layer_apply(lay, {"b_ub": jnp.array([2.5, 1.8]), "A_ub": jnp.ones((2, 2))}, c)
    with pytest.raises(ValueError, match=r"got unexpected \['b_up'\]"):
        build_problem(lay, {"b_ub": jnp.array([2.5, 1.8]), "b_up": jnp.ones(2)}, c)
    with pytest.raises(TypeError, match=r"argument `params`: expected a mapping"):
        mip_layer_apply(lay, [jnp.ones(2)], c)
    with pytest.raises(ValueError, match=r"argument `input_ndim`: only for a builder .* got 1"):
        MIPLayer(milp(), input_ndim=1)
    with pytest.raises(ValueError, match=r"argument `input_field`: only for a template .* got 'c'"):
        MIPLayer(lambda u, p: milp(), input_field="c")
    lay = NNXMIPLayer(lambda u, p: tamejax.MIP(c=u[0], b_ub=u[1], A_ub=np.eye(2)), output="value", input_ndim=1)
    with pytest.raises(TypeError, match=r"argument `inputs`: input_ndim = 1 needs a single array .* got a tuple"):
        lay((jnp.ones((3, 2)), jnp.ones((3, 2))))
