"""Subadditive duality: Chvátal-function and branch-and-bound certificates against brute force.

Oracles: every integer point of the (bounded) box is enumerated, so the true value function
``z(d)`` is known at every right-hand side of a grid around ``b``; for mixed-integer programs
the continuous part is an independent LP per integer point (``oracles.brute_force``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from oracles import brute_force, host_problem, mip_kwargs  # noqa: E402

import tamejax as tj  # noqa: E402
from tamejax.duality import (  # noqa: E402
    BranchAndBoundFunction,
    Certificate,
    ChvatalFunction,
    certify,
    gomory,
    verify,
)

SETTINGS = settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- brute force
def _points(lb, ub):
    return np.array(list(itertools.product(*[range(int(a), int(b) + 1) for a, b in zip(lb, ub, strict=True)])), float)


def _z_grid(data: dict, bs: np.ndarray) -> np.ndarray:
    """True values z(b') of a pure integer program for each row b' = concat(b_ub, b_eq) of ``bs``."""
    X = _points(data["lb"], data["ub"])
    m_ub = data["A_ub"].shape[0]
    vals = X @ data["c"]
    out = np.empty(len(bs))
    for k, bb in enumerate(bs):
        ok = np.all(X @ data["A_ub"].T <= bb[:m_ub] + 1e-9, axis=1) if m_ub else np.ones(len(X), bool)
        if data["A_eq"].shape[0]:
            ok &= np.all(np.abs(X @ data["A_eq"].T - bb[m_ub:]) <= 1e-9, axis=1)
        out[k] = vals[ok].min() if ok.any() else math.inf
    return out


def _grid(b: np.ndarray, step: float = 1.0, radius: int = 2) -> np.ndarray:
    offs = np.array(list(itertools.product(range(-radius, radius + 1), repeat=b.shape[0])), float) * step
    return b + offs


# ----------------------------------------------------------------------------- strategies
@st.composite
def pure_ips(draw, form: str):
    n = draw(st.integers(2, 3))
    m = draw(st.integers(1, 2))
    den = draw(st.sampled_from([1, 1, 2]))
    coef = st.integers(-3 * den, 4 * den).map(lambda v: v / den)
    A = np.array([[draw(coef) for _ in range(n)] for _ in range(m)])
    lb = np.array([draw(st.sampled_from([0, 0, -1])) for _ in range(n)], float)
    ub = lb + np.array([draw(st.integers(1, 3)) for _ in range(n)], float)
    c = np.array([draw(st.integers(-5, 5)) for _ in range(n)], float)
    x = np.array([draw(st.integers(int(a), int(b))) for a, b in zip(lb, ub, strict=True)], float)
    rhs = A @ x  # feasible at b by construction (some draws below make it infeasible on purpose)
    if form == "ub":
        rhs = rhs + np.array([draw(st.integers(0, 2)) for _ in range(m)], float)
        return dict(c=c, A_ub=A, b_ub=rhs, lb=lb, ub=ub, integrality=True)
    return dict(c=c, A_eq=A, b_eq=rhs, lb=lb, ub=ub, integrality=True)


@st.composite
def tiny_milps(draw):
    n_int = 2
    m = draw(st.integers(1, 2))
    coef = st.integers(-3, 4)
    A = np.array([[draw(coef) for _ in range(n_int + 1)] for _ in range(m)], float)
    A[:, -1] = np.abs(A[:, -1]) + 1  # the continuous column always helps feasibility of <= rows
    ub = np.array([draw(st.integers(1, 3)) for _ in range(n_int)] + [draw(st.sampled_from([2.5, 4.0]))])
    c = np.array([draw(st.integers(-5, 5)) for _ in range(n_int)] + [draw(st.integers(-2, 3))], float)
    rhs = np.array([draw(st.integers(0, 6)) for _ in range(m)], float) + draw(st.sampled_from([0.0, 0.5]))
    return dict(c=c, A_ub=A, b_ub=rhs, lb=np.zeros(3), ub=ub, integrality=[1, 1, 0])


# ----------------------------------------------------------------------------- Gomory
def _check_pure(kw: dict, arithmetic: str, primal: str | None = None) -> None:
    p = tj.MIP(**kw)
    data = p.to_numpy()
    b = np.concatenate([data["b_ub"], data["b_eq"]])
    z_b = _z_grid(data, b[None])[0]
    cert = certify(p, "gomory", arithmetic=arithmetic, primal=primal)
    if z_b == math.inf:
        assert cert.status == tj.Status.INFEASIBLE
        return
    assert cert.status == tj.Status.OPTIMAL, cert.message
    assert isinstance(cert.F, ChvatalFunction)
    # F(b) equals the brute-force optimum, and x attains it
    assert abs(cert.bound - z_b) < 1e-7 and abs(cert.objective - z_b) < 1e-7
    assert abs(float(cert.F(jnp.asarray(b))) - z_b) < 1e-7
    # dual feasibility F(a_j) <= c_j on the canonical columns (slacks and bound rows included)
    can = cert.canonical
    Fa = np.asarray(cert.F.canonical()(jnp.asarray(can.A.T)))
    assert np.all(Fa <= can.c + 1e-7), (Fa, can.c)
    # F is a global under-estimator: F(d) <= z(d) on a grid of right-hand sides around b
    bs = np.concatenate([_grid(b), _grid(b, 0.5, 1)])
    z = _z_grid(data, bs)
    Fd = np.asarray(cert.F(jnp.asarray(bs)))
    assert np.all(Fd <= z + 1e-7), (bs[Fd > z + 1e-7], Fd[Fd > z + 1e-7], z[Fd > z + 1e-7])
    rep = verify(p, cert, samples=12)
    assert rep.passed, str(rep)


@SETTINGS
@given(pure_ips("ub"), st.sampled_from([None, "scip"]))
def test_gomory_inequality_form_exact(kw, primal):
    _check_pure(kw, "exact", primal)


@SETTINGS
@given(pure_ips("eq"), st.sampled_from([None, "scip"]))
def test_gomory_equality_form_exact(kw, primal):
    _check_pure(kw, "exact", primal)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pure_ips("ub"))
def test_gomory_float_arithmetic(kw):
    _check_pure(kw, "float", None)


def test_gomory_textbook_instance():
    """max 5x1 + 4x2, 6x1 + 4x2 <= 24, x1 + 2x2 <= 6: LP optimum 21 at (3, 1.5), IP optimum 20 at (4, 0)."""
    p = tj.MIP(c=[-5, -4], A_ub=[[6, 4], [1, 2]], b_ub=[24, 6], integrality=True)
    cert = certify(p, primal=None)
    assert cert.method == "gomory" and cert.arithmetic == "exact" and cert.closed
    np.testing.assert_allclose(cert.x, [4, 0])
    assert cert.bound == -20 and cert.stats["cuts"] >= 1
    # the certificate is not the LP bound: the LP relaxation gives -21
    assert cert.F.num_cuts >= 1


@pytest.mark.parametrize("method", ["gomory", "branch_and_bound"])
def test_free_and_reflected_variables(method):
    """x1 free (split), x2 with only an upper bound (reflected); z(b') by enumeration on a grid."""
    kw = dict(
        c=[1.0, 1.5],
        A_ub=[[1, -1], [-1, 1], [-1, -1]],
        b_ub=[2, 3, 1.5],
        lb=[-np.inf, -np.inf],
        ub=[np.inf, 4],
        integrality=True,
    )
    p = tj.MIP(**kw)
    cert = certify(p, method, primal=None)
    X = np.array(list(itertools.product(range(-25, 26), range(-25, 5))), float)
    bs = _grid(np.array([2.0, 3.0, 1.5]), 1.0, 1)
    ok = np.all(X @ np.asarray(kw["A_ub"], float).T <= bs[:, None, :] + 1e-9, axis=-1)
    z = np.where(ok, (X @ np.asarray(kw["c"]))[None], np.inf).min(axis=1)
    assert cert.closed and cert.objective == pytest.approx(z[len(bs) // 2]) == -1.5
    assert np.all(np.asarray(cert.F(jnp.asarray(bs))) <= z + 1e-7)
    assert verify(p, cert, samples=8).passed


def test_closed_by_incumbent_is_one_more_round_up():
    """With an incumbent, F = ceil(LP-dual function): still dual feasible, F(b) = z(b)."""
    p = tj.MIP(c=[-5, -4], A_ub=[[6, 4], [1, 2]], b_ub=[24, 6], integrality=True)
    cert = certify(p, "gomory", primal="scip")
    assert cert.closed and cert.message == "closed by the incumbent"
    assert float(cert.F.w[-1]) == 1.0 and np.all(np.asarray(cert.F.y) == 0)
    assert verify(p, cert).passed


def test_gomory_core_exact_on_lists():
    """The host algorithm on the standard form directly: exact Fractions, a valid certificate."""
    from fractions import Fraction

    res = gomory([[2, 2, 1]], [3], [-1, -1, 0], exact=True)
    assert res.status == "optimal" and res.objective == -1
    assert all(isinstance(v, Fraction) for v in res.y)
    assert res.bound == -1


# ----------------------------------------------------------------------------- branch and bound
def _check_milp(kw: dict) -> None:
    p = tj.MIP(**kw)
    hp = host_problem(**{k: v for k, v in kw.items()})
    bf = brute_force(hp)
    cert = certify(p, "branch_and_bound")
    if bf.objective == math.inf:
        assert cert.status == tj.Status.INFEASIBLE
        return
    assert cert.status == tj.Status.OPTIMAL, cert.message
    assert isinstance(cert.F, BranchAndBoundFunction)
    assert abs(cert.bound - bf.objective) < 1e-6 and abs(cert.objective - bf.objective) < 1e-6
    b = np.asarray(kw["b_ub"], float)
    for bb in _grid(b, 0.75, 1):
        z = brute_force(host_problem(**{**kw, "b_ub": bb})).objective
        assert float(cert.F(jnp.asarray(bb))) <= z + 1e-6, (bb, z)
    rep = verify(p, cert, samples=8)
    assert rep.passed, str(rep)
    assert rep.coverage and rep.recession is not None and rep.recession <= 1e-6


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_milps())
def test_branch_and_bound_dual_on_tiny_milps(kw):
    _check_milp(kw)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pure_ips("eq"))
def test_branch_and_bound_dual_on_pure_ips(kw):
    p = tj.MIP(**kw)
    data = p.to_numpy()
    b = np.concatenate([data["b_ub"], data["b_eq"]])
    cert = certify(p, "branch_and_bound")
    z_b = _z_grid(data, b[None])[0]
    if z_b == math.inf:
        assert cert.status == tj.Status.INFEASIBLE
        return
    assert abs(cert.bound - z_b) < 1e-6
    bs = _grid(b)
    assert np.all(np.asarray(cert.F(jnp.asarray(bs))) <= _z_grid(data, bs) + 1e-6)


def test_unbounded_continuous_column_and_recession():
    """A continuous variable with no upper bound: leaves' reduced costs must not push it."""
    p = tj.MIP(c=[-2, 1], A_ub=[[1, -1]], b_ub=[1.5], ub=[3, np.inf], integrality=[1, 0])
    cert = certify(p)
    assert cert.method == "branch_and_bound" and cert.closed
    hp = host_problem(c=[-2, 1], A_ub=[[1, -1]], b_ub=[1.5], ub=[3, np.inf], integrality=[1, 0])
    assert abs(cert.objective - brute_force(hp).objective) < 1e-7
    rep = verify(p, cert)
    assert rep.passed and rep.recession == 0.0, str(rep)


# ----------------------------------------------------------------------------- statuses
@pytest.mark.parametrize("method", ["gomory", "branch_and_bound"])
def test_infeasible_status(method):
    p = tj.MIP(c=[1, 1], A_eq=[[2, 2]], b_eq=[3], ub=5, integrality=True)  # 2(x1 + x2) = 3: no integer point
    cert = certify(p, method)
    assert cert.status == tj.Status.INFEASIBLE and cert.F is None and cert.objective == math.inf
    assert verify(p, cert).passed


@pytest.mark.parametrize("method", ["gomory", "branch_and_bound"])
def test_unbounded_status(method):
    p = tj.MIP(c=[-1, 0], A_eq=[[1, -1]], b_eq=[0], integrality=True)  # x1 = x2 -> -inf
    cert = certify(p, method)
    assert cert.status == tj.Status.UNBOUNDED and cert.objective == -math.inf
    assert verify(p, cert).passed


@pytest.mark.parametrize("method", ["gomory", "branch_and_bound"])
def test_relaxation_unbounded_but_integer_infeasible(method):
    # 2 x1 - 2 x2 = 1 has real solutions along a ray but no integer one
    p = tj.MIP(c=[-1, 0], A_eq=[[2, -2]], b_eq=[1], integrality=True)
    cert = certify(p, method, time_limit=10.0, max_nodes=200)
    assert cert.status in (tj.Status.INFEASIBLE, tj.Status.NO_SOLUTION)
    if method == "gomory":
        assert cert.status == tj.Status.INFEASIBLE


def test_limit_returns_a_valid_bound():
    """With no cuts allowed the loop cannot close: status NO_SOLUTION, F(b) = LP bound <= z(b)."""
    p = tj.MIP(c=[-5, -4], A_ub=[[6, 4], [1, 2]], b_ub=[24, 6], integrality=True)
    cert = certify(p, "gomory", max_cuts=0, primal=None)
    assert cert.status == tj.Status.NO_SOLUTION and not cert.closed
    assert cert.bound == pytest.approx(-21.0) and cert.bound <= -20
    rep = verify(p, cert, samples=8)
    assert rep.passed, str(rep)
    cert2 = certify(p, "branch_and_bound", max_nodes=1)
    assert cert2.status == tj.Status.NO_SOLUTION and cert2.bound <= -20 + 1e-9
    assert verify(p, cert2, samples=8).passed


def test_bad_input():
    p = tj.MIP(c=[1.0, 1.0], A_ub=[[1, 1]], b_ub=[1], integrality=[1, 0])
    with pytest.raises(ValueError, match="gomory"):
        certify(p, "gomory")
    with pytest.raises(ValueError, match="method"):
        certify(p, "simplex")
    with pytest.raises(ValueError, match="arithmetic"):
        certify(p, arithmetic="decimal")
    with pytest.raises(ValueError, match="batch"):
        certify(tj.MIP(c=np.ones((2, 2)), integrality=True))
    with pytest.raises(TypeError, match="MIP"):
        certify({"c": [1]})
    with pytest.raises(TypeError, match="Certificate"):
        verify(p, "not a certificate")


# ----------------------------------------------------------------------------- JAX transformations
@pytest.fixture(scope="module")
def chvatal() -> tuple[ChvatalFunction, Certificate]:
    p = tj.MIP(c=[-3, -2, -4], A_ub=[[3, 2, 5], [1, 3, 2]], b_ub=[11, 7], ub=[3, 3, 2], integrality=True)
    cert = certify(p, primal=None)
    assert cert.closed and cert.F.num_cuts >= 1
    return cert.F, cert


def test_chvatal_jit_vmap_match_eager(chvatal):
    F, cert = chvatal
    rng = np.random.default_rng(0)
    bs = jnp.asarray(cert.b + rng.uniform(-3, 3, size=(64, 2)))
    eager = np.array([float(F(bb)) for bb in bs])
    np.testing.assert_allclose(np.asarray(F(bs)), eager, rtol=0, atol=1e-12)  # batched call
    np.testing.assert_allclose(np.asarray(jax.jit(F)(bs)), eager, atol=1e-12)
    np.testing.assert_allclose(np.asarray(jax.vmap(F)(bs)), eager, atol=1e-12)
    np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(F))(bs)), eager, atol=1e-12)
    # a pytree: flatten / unflatten round trip, and as a jit argument
    leaves, tree = jax.tree_util.tree_flatten(F)
    G = jax.tree_util.tree_unflatten(tree, leaves)
    np.testing.assert_allclose(np.asarray(jax.jit(lambda f, b: f(b))(G, bs)), eager, atol=1e-12)


def test_chvatal_grad_is_the_slope_of_the_piece(chvatal):
    F, cert = chvatal
    rng = np.random.default_rng(1)
    g_eager = []
    for _ in range(8):
        b = jnp.asarray(cert.b + rng.uniform(-2, 2, size=2))
        g = np.asarray(jax.grad(F)(b))
        np.testing.assert_allclose(np.asarray(jax.jit(jax.grad(F))(b)), g, atol=1e-12)
        g_eager.append(g)
        # the slope of the affine piece of the canonical function, pulled back through phi
        expected = float(F.scale) * np.asarray(F.in_matrix).T @ np.asarray(F.y)
        np.testing.assert_allclose(g, expected, atol=1e-12)
    gv = np.asarray(jax.vmap(jax.grad(F))(jnp.asarray(cert.b + rng.uniform(-2, 2, size=(8, 2)))))
    np.testing.assert_allclose(gv, np.stack(g_eager), atol=1e-12)
    # on the canonical function (no floor), the slope is checked by finite differences away from steps
    Fc = F.canonical()
    d0 = np.asarray(F.phi(jnp.asarray(cert.b)))
    checked = 0
    for _ in range(8):
        d = d0 + rng.uniform(-1, 1, size=d0.shape)
        h = 1e-7
        for i in range(d.shape[0]):
            e = np.zeros_like(d)
            e[i] = h
            dp, dm = jnp.asarray(d + e), jnp.asarray(d - e)
            if not np.array_equal(np.asarray(Fc.cuts(dp)), np.asarray(Fc.cuts(dm))):
                continue  # the stencil crosses a step of some round-up (a null set): no derivative there
            fd = (float(Fc(dp)) - float(Fc(dm))) / (2 * h)
            assert fd == pytest.approx(float(jax.grad(Fc)(jnp.asarray(d))[i]), abs=1e-5)
            checked += 1
    assert checked >= 4 * d0.shape[0]


def test_chvatal_grad_wrt_parameters(chvatal):
    """dF/dy = d and dF/dw = g(d) (the pytree leaves are differentiable)."""
    F, cert = chvatal
    b = jnp.asarray(cert.b)
    gy = jax.grad(lambda f: f(b))(F)
    d = F.phi(b)
    np.testing.assert_allclose(np.asarray(gy.y), float(F.scale) * np.asarray(d), atol=1e-12)
    np.testing.assert_allclose(np.asarray(gy.w), float(F.scale) * np.asarray(F.cuts(d)), atol=1e-12)


def test_branch_and_bound_function_transforms():
    p = tj.MIP(c=[-5, -4, 1], A_ub=[[6, 4, -1], [1, 2, 0]], b_ub=[24.5, 6], ub=[10, 3.5, 5], integrality=[1, 1, 0])
    cert = certify(p)
    F = cert.F
    bs = jnp.asarray(cert.b + np.random.default_rng(0).uniform(-3, 3, size=(32, 2)))
    eager = np.array([float(F(bb)) for bb in bs])
    np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(F))(bs)), eager, atol=1e-12)
    g = np.asarray(jax.vmap(jax.grad(F))(bs))
    Y = np.asarray(F.Y)
    active = np.argmin(np.asarray(bs) @ Y.T + np.asarray(F.e), axis=-1)
    np.testing.assert_allclose(g, Y[active], atol=1e-12)
    np.testing.assert_allclose(cert.slope(), np.asarray(jax.grad(F)(jnp.asarray(cert.b))))


def test_chvatal_shape_error(chvatal):
    F, _ = chvatal
    with pytest.raises(ValueError, match="expected b of shape"):
        F(jnp.zeros(3))


# ----------------------------------------------------------------------------- value(gradient="certificate")
def test_value_certificate_gradient():
    p = tj.MIP(
        c=[-5.0, -4.0, 1.0], A_ub=[[6, 4, -1], [1, 2, 0]], b_ub=[24.5, 6], ub=[10, 3.5, 5], integrality=[1, 1, 0]
    )
    cert = certify(p)
    z = tj.value(p, gradient="certificate")
    assert float(z) == pytest.approx(cert.objective, abs=1e-7)
    g = jax.grad(lambda q: tj.value(q, gradient="certificate"))(p)
    np.testing.assert_allclose(np.asarray(g.b_ub), cert.slope(), atol=1e-7)
    np.testing.assert_allclose(np.asarray(g.c), cert.x, atol=1e-7)
    # the active-piece rule agrees here (the optimal leaf's duals are those of the fixed LP)
    ga = jax.grad(lambda q: tj.value(q))(p)
    np.testing.assert_allclose(np.asarray(ga.c), np.asarray(g.c), atol=1e-6)


def test_value_certificate_gradient_pure_ip_under_jit():
    """Pure IP: the active-piece rule gives 0 in b (the fixed LP has no free variable);
    the certificate gives the slope of F's affine piece, under jit and vmap too."""
    p = tj.MIP(c=[-5.0, -4.0], A_ub=[[6, 4], [1, 2]], b_ub=[24.0, 6.0], integrality=True)
    cert = certify(p, primal=None)  # what the "certificate" backend runs
    g_active = jax.grad(lambda b: tj.value(p.replace(b_ub=b)))(p.b_ub)
    g_cert = jax.jit(jax.grad(lambda b: tj.value(p.replace(b_ub=b), gradient="certificate")))(p.b_ub)
    np.testing.assert_allclose(np.asarray(g_active), 0.0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(g_cert), cert.slope(), atol=1e-9)
    bs = p.b_ub + jnp.asarray([[0.0, 0.0], [1.0, 0.0], [-3.0, 1.0]])
    zs = jax.vmap(lambda b: tj.value(p.replace(b_ub=b), gradient="certificate"))(bs)
    ref = np.asarray(
        tj.solve(
            tj.MIP(c=np.broadcast_to(p.c, (3, 2)), A_ub=np.broadcast_to(p.A_ub, (3, 2, 2)), b_ub=bs, integrality=True)
        ).objective
    )
    np.testing.assert_allclose(np.asarray(zs), ref, atol=1e-9)
    with pytest.raises(ValueError, match="gradient"):
        tj.value(p, gradient="exact")


# ----------------------------------------------------------------------------- review regressions
def _two_row_knapsack(index: int) -> tj.MIP:
    """The ``index``-th 2-row knapsack of the review's generator (weights 300-3000, ub 3)."""
    rng = np.random.default_rng(0)
    for _ in range(index + 1):
        w = rng.integers(300, 3000, size=(2, 6)).astype(float)
        c = -rng.integers(10, 200, size=6).astype(float)
        b = np.floor(w.sum(1) * 0.37)
        rng.integers(-50, 50, size=(200, 2))
    return tj.MIP(c=c, A_ub=w, b_ub=b, lb=np.zeros(6), ub=np.full(6, 3.0), integrality=True)


def test_chvatal_refuses_float32_and_verify_uses_float64():
    """Bug 1: with x64 off (JAX's default), F was built and evaluated in float32 and was no lower bound."""
    kw = dict(c=[-5.0, -4.0, -3.0], A_ub=[[2.0, 3.0, 1.0]], b_ub=[5.0], ub=[3.0, 3.0, 3.0], integrality=True)
    with jax.enable_x64(False):
        p = tj.MIP(**kw)
        cert = certify(p, primal=None)
        F32 = cert.F
        assert F32.y.dtype == jnp.float32
        with pytest.raises(TypeError, match="float64"):
            F32(jnp.asarray([5.0]))
        with pytest.raises(TypeError, match="float64"):
            jax.jit(F32)(jnp.asarray([5.0]))
        rep = verify(p, cert, samples=6)  # evaluates F in float64 whatever the global setting
        assert rep.passed, rep
        with jax.enable_x64(True):
            F64 = cert.F
            assert F64.y.dtype == jnp.float64
            assert float(F64(jnp.asarray([5.0]))) == pytest.approx(cert.bound, abs=1e-12)
    # the float64 evaluation is a lower bound on a grid (brute force)
    data = tj.MIP(**kw).to_numpy()
    bs = _grid(cert.b, step=0.5, radius=6)
    bs = bs[bs[:, 0] >= 0]
    assert np.all(np.asarray(cert.F(jnp.asarray(bs))) <= _z_grid(data, bs) + 1e-9)


@pytest.mark.parametrize("index", [1, 9])
def test_float_gomory_self_check(index):
    """Bug 2: float Gomory returned OPTIMAL with F(a_j) > c_j (by 5 and 6) on these instances."""
    p = _two_row_knapsack(index)
    cert = certify(p, method="gomory", arithmetic="float", primal=None, time_limit=20)
    if cert.status == tj.Status.ERROR:
        assert cert.F is None and cert.message
    else:  # a float certificate is only returned when it is dual feasible
        rep = verify(p, cert, samples=8)
        assert rep.passed, rep
    auto = certify(p, method="auto", arithmetic="float", primal=None, time_limit=20)
    assert auto.closed
    rep = verify(p, auto, samples=8)
    assert rep.passed, rep


def test_float_self_check_catches_a_tampered_certificate():
    from tamejax.duality._canonical import canonicalize, rhs_of
    from tamejax.duality.certificate import _float_self_check

    p = tj.MIP(c=[-3, -2, -4], A_ub=[[3, 2, 5], [1, 3, 2]], b_ub=[11, 7], ub=[3, 3, 2], integrality=True)
    data = p.to_numpy()
    can = canonicalize(data, integer_scaled=True, exact=True)
    d = can.d_of(rhs_of(data)).tolist()
    res = gomory(can.A.tolist(), d, [float(v) for v in can.c_q], exact=False)
    assert res.status == "optimal"
    assert _float_self_check(res, can, d) == ""
    bad_y = [v + 1.0 if i == 0 else v for i, v in enumerate(res.y)]  # F(e_slack) = y_0 + 1 > 0 = c
    assert "F(a_j) > c_j" in _float_self_check(dataclasses.replace(res, y=bad_y), can, d)
    if res.w:
        bad_w = [-0.5] + list(res.w[1:])
        assert "negative" in _float_self_check(dataclasses.replace(res, w=bad_w), can, d)


def test_value_certificate_gradient_is_the_lp_price():
    """Bug 3: the backend closed Gomory by SCIP's incumbent, so y = 0 and the gradient was 0.

    Hand computation: min -5x1 - 4x2 - 3x3, 2x1 + 3x2 + x3 <= 5, 0 <= x <= 3. By ratio c_j/a_j
    the LP fills x3 = 3 then x1 = 1: the LP optimum (1, 0, 3) is integral with x1 basic, so the
    LP price of the row is c1/a1 = -5/2. Two unit rows x1 <= 2, x2 <= 3 with c = (-3, -2): y = c.
    """
    p = tj.MIP(c=[-5.0, -4.0, -3.0], A_ub=[[2.0, 3.0, 1.0]], b_ub=[5.0], ub=[3.0, 3.0, 3.0], integrality=True)
    g = jax.jit(jax.grad(lambda b: tj.value(p.replace(b_ub=b), gradient="certificate")))(p.b_ub)
    np.testing.assert_allclose(np.asarray(g), [-2.5], atol=1e-9)
    q = tj.MIP(c=[-3.0, -2.0], A_ub=[[1.0, 0.0], [0.0, 1.0]], b_ub=[2.0, 3.0], integrality=True)
    gq = jax.grad(lambda b: tj.value(q.replace(b_ub=b), gradient="certificate"))(q.b_ub)
    np.testing.assert_allclose(np.asarray(gq), [-3.0, -2.0], atol=1e-9)
    # certify's default (SCIP incumbent) closes by one round-up: linear part 0
    closed = certify(p)
    assert closed.message == "closed by the incumbent"
    np.testing.assert_allclose(closed.slope(), [0.0])


def test_grad_in_b_ub_is_a_price_surrogate_not_a_derivative():
    """Item 4, documented behaviour: F floors b_ub (a step function of it, like z) while jax.grad
    returns the LP price; and F evaluated at unrounded b_ub is not a lower bound of z."""
    p = tj.MIP(c=[-5.0, -4.0, -3.0], A_ub=[[2.0, 3.0, 1.0]], b_ub=[5.0], ub=[3.0, 3.0, 3.0], integrality=True)
    F = certify(p, primal=None).F
    for t in (0.0, 0.25, 0.5, 0.99):
        assert float(F(jnp.asarray([5.0 + t]))) == -14.0
        np.testing.assert_allclose(np.asarray(jax.grad(F)(jnp.asarray([5.0 + t]))), [-2.5])
    q = tj.MIP(c=[-5.0, -4.0], A_ub=[[6.0, 4.0], [1.0, 2.0]], b_ub=[24.0, 6.0], ub=[3.0, 3.0], integrality=True)
    Fq = certify(q, primal=None).F
    unfloored = dataclasses.replace(Fq, in_floor=(False,) * len(Fq.in_floor))
    b2 = np.array([[22.0, 5.25]])
    z = _z_grid(q.to_numpy(), b2)
    assert float(unfloored(jnp.asarray(b2[0]))) > z[0] + 1.0  # not a lower bound without the floor
    assert float(Fq(jnp.asarray(b2[0]))) <= z[0] + 1e-9  # with it, it is


def test_verify_rebuilds_the_standard_form():
    """verify no longer trusts cert.canonical: a certificate whose phi/offset disagree with the problem fails."""
    p = tj.MIP(c=[-3, -2, -4], A_ub=[[3, 2, 5], [1, 3, 2]], b_ub=[11, 7], ub=[3, 3, 2], integrality=True)
    cert = certify(p, primal=None)
    assert verify(p, cert, samples=4, resolve=False).passed
    bad = dataclasses.replace(cert, params={**cert.params, "offset": cert.params["offset"] - 1.0}, _F=None)
    rep = verify(p, bad, samples=4, resolve=False)
    assert not rep.passed and any("phi" in m for m in rep.messages), rep


def test_incumbent_checked_exactly():
    from tamejax.duality.certificate import _exactly_feasible

    p = tj.MIP(
        c=[-1.0, -1.0], A_ub=[[1.0, 1.0]], b_ub=[3.0], A_eq=[[1.0, -1.0]], b_eq=[1.0], ub=[5.0, 5.0], integrality=True
    )
    data = p.to_numpy()
    assert _exactly_feasible(data, np.array([2.0, 1.0]))
    assert not _exactly_feasible(data, np.array([3.0, 1.0]))  # violates the <= row
    assert not _exactly_feasible(data, np.array([1.0, 1.0]))  # violates the equality
    assert not _exactly_feasible(data, np.array([6.0, 5.0]))  # violates ub


# ----------------------------------------------------------------------------- slow
@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["ub", "eq"]).flatmap(pure_ips))
def test_gomory_many_random_instances(kw):
    _check_pure(kw, "exact", None)
    _check_pure(kw, "exact", "scip")


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_milps())
def test_branch_and_bound_many_random_instances(kw):
    _check_milp(kw)


def test_mip_kwargs_roundtrip_helper():
    """The oracle helper describes the same problem (guards the MILP oracle used above)."""
    hp = host_problem(c=[1, 2], A_ub=[[1, 1]], b_ub=[3], ub=[2, 2], integrality=True)
    p = tj.MIP(**mip_kwargs(hp))
    assert certify(p).objective == brute_force(hp).objective
