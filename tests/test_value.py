"""Gradients of ``tamejax.value`` against finite differences, closed forms and each other.

The optimal value of a MILP is piecewise linear in ``c``, ``b`` and the bounds (and smooth in
``A``) on each piece where the optimal integer assignment is unique and the LP left by fixing
it has a unique, non-degenerate vertex. The instances below are random, and an independent
oracle (SciPy's HiGHS LP on every integer assignment, plus our own KKT check of the active
set) *proves* each accepted instance sits strictly inside such a piece, with margins much
larger than the finite-difference step. There the conservative gradient that ``value``
returns is the gradient, so it must equal central finite differences of ``value`` itself.
"""

from __future__ import annotations

import itertools
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from scipy.optimize import linprog  # noqa: E402

import tamejax as tj  # noqa: E402

MIP_BACKENDS = ("scip", "highs", "cbc")
FIELDS = ("c", "A_ub", "b_ub", "A_eq", "b_eq", "lb", "ub")
H = 1e-5  # finite-difference step: far below every margin certified by `mixed_instance`
SETTINGS = settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# ----------------------------------------------------------------------------- instances
def _fixed_lp(data: dict[str, np.ndarray], xi: np.ndarray) -> Any:
    """SciPy/HiGHS solve of the LP left when the integer variables are fixed at ``xi``."""
    integ = data["integrality"]
    I, C = integ, ~integ
    m_eq = data["A_eq"].shape[0]
    return linprog(
        data["c"][C],
        A_ub=data["A_ub"][:, C],
        b_ub=data["b_ub"] - data["A_ub"][:, I] @ xi,
        A_eq=data["A_eq"][:, C] if m_eq else None,
        b_eq=(data["b_eq"] - data["A_eq"][:, I] @ xi) if m_eq else None,
        bounds=list(zip(data["lb"][C], data["ub"][C], strict=True)),
        method="highs",
    )


def mixed_instance(
    seed: int,
    n_int: int = 2,
    n_c: int = 3,
    m_ub: int = 3,
    m_eq: int = 1,
    box: int = 2,
    margin: float = 0.05,
    tol: float = 0.02,
) -> tuple[dict[str, np.ndarray], float, np.ndarray] | None:
    """A random feasible, bounded MILP with continuous variables, or ``None`` if degenerate.

    Integer variables live in ``{0..box}``, continuous ones in finite boxes ``[lb, ub]``
    around 0. Accepted only if (by brute force over every integer assignment, each fixed LP
    solved by SciPy) the best assignment beats the second best by ``margin``, and the fixed
    LP at the optimum has exactly ``n_c`` linearly independent active constraints (rows,
    equalities and bounds, smallest singular value >= ``tol``), every inactive one has
    slack >= ``tol`` and every active inequality a KKT multiplier >= ``tol``: a unique,
    primal and dual non-degenerate optimum. Returns ``(data, z*, x*)`` from the oracle.
    """
    if n_int == 0 and n_c == 0:
        return None
    rng = np.random.default_rng(seed)
    n = n_int + n_c
    integ = np.array([True] * n_int + [False] * n_c)
    lb = np.where(integ, 0.0, rng.uniform(-1.0, -0.2, n))
    ub = np.where(integ, float(box), rng.uniform(0.5, 1.5, n))
    A_ub = rng.uniform(-1.0, 1.0, (m_ub, n))
    A_eq = rng.uniform(-1.0, 1.0, (m_eq, n))
    x0 = np.where(integ, rng.integers(0, box + 1, n), rng.uniform(0.5 * lb, 0.5 * ub))
    b_ub = A_ub @ x0 + rng.uniform(0.1, 0.6, m_ub)
    b_eq = A_eq @ x0
    c = rng.uniform(-1.0, 1.0, n)
    data = dict(c=c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, lb=lb, ub=ub, integrality=integ)

    cands = []
    for xi in itertools.product(range(box + 1), repeat=n_int):
        xi = np.array(xi, dtype=float)
        res = _fixed_lp(data, xi)
        if res.status == 0:
            cands.append((float(res.fun + c[integ] @ xi), xi, res.x))
    cands.sort(key=lambda t: t[0])
    if not cands or (len(cands) > 1 and cands[1][0] - cands[0][0] < margin):
        return None
    z, xi, xc = cands[0]
    C = ~integ
    # The fixed LP as G x_C <= h (rows, then -x <= -lb, then x <= ub) plus equalities E x_C = e.
    G = np.vstack([A_ub[:, C], -np.eye(n_c), np.eye(n_c)])
    h = np.concatenate([b_ub - A_ub[:, integ] @ xi, -lb[C], ub[C]])
    slack = h - G @ xc
    active = slack < 1e-7
    if np.any(~active & (slack < tol)):
        return None
    M = np.vstack([G[active], A_eq[:, C]])
    if M.shape[0] != n_c:
        return None
    if n_c and np.linalg.svd(M, compute_uv=False).min() < tol:
        return None
    if n_c:
        mult = np.linalg.solve(M.T, -c[C])  # KKT: c_C + M^T mult = 0
        if np.any(mult[: int(active.sum())] < tol):
            return None
    x = np.zeros(n)
    x[integ] = xi
    x[C] = xc
    return data, z, x


def to_mip(data: dict[str, np.ndarray]) -> tj.MIP:
    return tj.MIP(**{k: jnp.asarray(v) for k, v in data.items() if k != "integrality"}, integrality=data["integrality"])


def stack(problems: list[tj.MIP]) -> tj.MIP:
    """A batched MIP (leading axis) from problems of the same structure."""
    return jax.tree.map(lambda *v: jnp.stack(v), *problems)


def grads_of_value(problem: tj.MIP, backend: str = "scip") -> tj.MIP:
    """``jax.grad`` of the value with respect to every numeric field (a MIP of gradients)."""
    return jax.grad(lambda p: tj.value(p, backend))(problem)


def fd_check(
    problem: tj.MIP,
    grads: tj.MIP,
    backend: str,
    fields=FIELDS,
    h: float = H,
    coords: dict[str, np.ndarray] | None = None,
    decimals: int | None = None,
) -> int:
    """Central finite differences of ``tj.value`` (one batched re-solve of every perturbed
    problem) against ``grads``, for every coordinate of ``fields`` (or the masks in
    ``coords``). ``decimals`` rounds the perturbed data (CP-SAT wants exact decimals).
    Returns the number of coordinates checked."""
    perturbed, where = [], []
    for f in fields:
        base = np.asarray(getattr(problem, f))
        mask = np.ones(base.shape, bool) if coords is None or f not in coords else coords[f]
        for idx in zip(*np.nonzero(mask), strict=True):
            for sign in (1.0, -1.0):
                v = base.copy()
                v[idx] += sign * h
                if decimals is not None:
                    v = np.round(v, decimals)
                perturbed.append(problem.replace(**{f: jnp.asarray(v)}))
            where.append((f, idx))
    if not where:
        return 0
    z = np.asarray(tj.value(stack(perturbed), backend)).reshape(-1, 2)
    fd = (z[:, 0] - z[:, 1]) / (2 * h)
    got = np.array([np.asarray(getattr(grads, f))[idx] for f, idx in where])
    bad = ~np.isclose(got, fd, rtol=1e-5, atol=1e-5)
    assert not bad.any(), [(where[i], got[i], fd[i]) for i in np.flatnonzero(bad)]
    return len(where)


def continuous_bounds(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Mask of the finite bounds of continuous variables (the differentiable bounds)."""
    cont = ~data["integrality"]
    return {"lb": cont & np.isfinite(data["lb"]), "ub": cont & np.isfinite(data["ub"])}


shapes = st.tuples(
    st.integers(1, 2),  # integer variables
    st.integers(1, 3),  # continuous variables
    st.integers(1, 3),  # inequality rows
    st.integers(0, 1),  # equality rows
)


# ----------------------------------------------------------------------------- mixed MILPs
@settings(SETTINGS, max_examples=15)
@given(seed=st.integers(0, 2**31 - 1), shape=shapes, backend=st.sampled_from(MIP_BACKENDS))
def test_value_gradient_matches_finite_differences_milp(seed: int, shape: tuple[int, ...], backend: str) -> None:
    """Every partial derivative (c, A_ub, b_ub, A_eq, b_eq, continuous lb/ub) equals the
    central difference of ``value`` at a certified non-degenerate MILP optimum."""
    n_int, n_c, m_ub, m_eq = shape
    inst = mixed_instance(seed, n_int, n_c, m_ub, m_eq)
    assume(inst is not None)
    data, z_oracle, x_oracle = inst
    p = to_mip(data)
    z, sol = tj.value_and_solution(p, backend)
    assert int(sol.status) == tj.Status.OPTIMAL
    np.testing.assert_allclose(float(z), z_oracle, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(np.asarray(sol.x), x_oracle, atol=1e-6)
    g = grads_of_value(p, backend)
    # dz/dc is x*, exactly (the same solve's solution).
    np.testing.assert_array_equal(np.asarray(g.c), np.asarray(sol.x))
    checked = fd_check(p, g, backend, coords=continuous_bounds(data))
    assert checked == p.n + (p.n + 1) * (p.m_ub + p.m_eq) + 2 * n_c


def test_fd_instances_exercise_every_field() -> None:
    """The certified family is not trivial: over a few seeds, the gradient is non-zero in
    every field (active rows, active equalities, active lower and upper bounds)."""
    nonzero = {f: False for f in FIELDS}
    seen = 0
    for seed in range(40):
        inst = mixed_instance(seed)
        if inst is None:
            continue
        seen += 1
        g = grads_of_value(to_mip(inst[0]))
        for f in FIELDS:
            nonzero[f] |= bool(np.any(np.asarray(getattr(g, f)) != 0))
        if all(nonzero.values()) and seen >= 3:
            break
    assert all(nonzero.values()), nonzero


def test_value_gradient_dual_closed_form() -> None:
    """dz/dA = -y x*^T and dz/db = y with y the duals returned by ``value_and_solution``;
    continuous bounds get max(r, 0) / min(r, 0), integer bounds 0."""
    data, _, _ = mixed_instance(3) or mixed_instance(4) or mixed_instance(5)
    p = to_mip(data)
    _, sol = tj.value_and_solution(p)
    g = grads_of_value(p)
    x, y_ub, y_eq, r = (np.asarray(v) for v in (sol.x, sol.dual_ub, sol.dual_eq, sol.reduced_cost))
    np.testing.assert_allclose(np.asarray(g.b_ub), y_ub)
    np.testing.assert_allclose(np.asarray(g.b_eq), y_eq)
    np.testing.assert_allclose(np.asarray(g.A_ub), -np.outer(y_ub, x))
    np.testing.assert_allclose(np.asarray(g.A_eq), -np.outer(y_eq, x))
    integ = data["integrality"]
    np.testing.assert_array_equal(np.asarray(g.lb)[integ], 0.0)
    np.testing.assert_array_equal(np.asarray(g.ub)[integ], 0.0)
    np.testing.assert_allclose(np.asarray(g.lb)[~integ], np.maximum(r, 0)[~integ])
    np.testing.assert_allclose(np.asarray(g.ub)[~integ], np.minimum(r, 0)[~integ])
    assert np.all(y_ub <= 1e-12)  # y = dz/db: relaxing a <= row cannot increase a minimum


@pytest.mark.parametrize("backend", ["glop", "highs", "scip"])
def test_lp_value_gradient_matches_finite_differences(backend: str) -> None:
    """Pure LPs (no integer variables): the gradient is the LP's duals, checked by FD."""
    count = 0
    for seed in range(100):
        inst = mixed_instance(seed, n_int=0, n_c=4, m_ub=4, m_eq=1)
        if inst is None:
            continue
        data, z_oracle, x_oracle = inst
        p = to_mip(data)
        z, sol = tj.value_and_solution(p, backend)
        assert int(sol.status) == tj.Status.OPTIMAL
        np.testing.assert_allclose(float(z), z_oracle, rtol=1e-7, atol=1e-7)
        g = grads_of_value(p, backend)
        np.testing.assert_allclose(np.asarray(g.c), x_oracle, atol=1e-7)
        fd_check(p, g, backend, coords=continuous_bounds(data))
        count += 1
        if count == 2:
            break
    assert count == 2


def test_mip_backends_agree_on_gradients() -> None:
    """SCIP, HiGHS and CBC return the same value and gradient (every field) on certified
    mixed instances; the batched call solves several instances at once."""
    insts = [i for i in (mixed_instance(s, 2, 3, 3, 1) for s in range(20)) if i is not None][:4]
    batch = stack([to_mip(d) for d, _, _ in insts])
    ref_z = np.array([z for _, z, _ in insts])
    results = {}
    for backend in MIP_BACKENDS:
        z, grad = jax.value_and_grad(lambda p, b=backend: tj.value(p, b).sum())(batch)
        np.testing.assert_allclose(np.asarray(z), ref_z.sum(), rtol=1e-7)
        results[backend] = grad
    for backend in MIP_BACKENDS[1:]:
        for f in FIELDS:
            np.testing.assert_allclose(
                np.asarray(getattr(results[backend], f)),
                np.asarray(getattr(results["scip"], f)),
                atol=1e-7,
                err_msg=f"{backend} vs scip, field {f}",
            )


# ----------------------------------------------------------------------------- pure integer
def integer_instance(seed: int, n: int = 4, m: int = 2, box: int = 3) -> tuple[tj.MIP, float, np.ndarray] | None:
    """A pure integer program with integer ``A``, half-integer ``b`` and decimal ``c``
    (rational, so CP-SAT takes it). ``A x`` is an integer, so the value is constant for
    ``b`` within 0.5 of its value: no breakpoint nearby. ``None`` unless the optimum is
    unique (by enumeration) with a margin of 0.05."""
    rng = np.random.default_rng(seed)
    A = rng.integers(-2, 5, (m, n)).astype(float)
    b = rng.integers(2, 3 * n, m) + 0.5
    c = -rng.integers(1, 50, n) / 10.0
    best = []
    for x in itertools.product(range(box + 1), repeat=n):
        x = np.array(x, dtype=float)
        if np.all(A @ x <= b):
            best.append((float(c @ x), x))
    best.sort(key=lambda t: t[0])
    if len(best) < 2 or best[1][0] - best[0][0] < 0.05:
        return None
    p = tj.MIP(c=c, A_ub=A, b_ub=b, ub=float(box), integrality=True)
    return p, best[0][0], best[0][1]


@pytest.mark.parametrize("backend", [*MIP_BACKENDS, "cpsat"])
def test_pure_integer_value_is_piecewise_constant_in_b(backend: str) -> None:
    """Pure IP: dz/db == 0 and dz/dA == 0 exactly, FD with steps inside the flat piece agree;
    dz/dc == x*, the enumerated optimum (and FD in c agrees: z is linear in c there)."""
    insts = [i for i in (integer_instance(s) for s in range(30)) if i is not None][:2]
    assert len(insts) == 2
    for p, z_oracle, x_oracle in insts:
        z, sol = tj.value_and_solution(p, backend)
        assert int(sol.status) == tj.Status.OPTIMAL
        np.testing.assert_allclose(float(z), z_oracle, rtol=1e-9, atol=1e-9)
        g = grads_of_value(p, backend)
        np.testing.assert_array_equal(np.asarray(g.b_ub), 0.0)
        np.testing.assert_array_equal(np.asarray(g.A_ub), 0.0)
        np.testing.assert_array_equal(np.asarray(g.c), x_oracle)
        # A x is an integer and b +- 0.25 stays strictly between the same integers: same piece.
        fd_check(p, g, backend, fields=("b_ub",), h=0.25)
        fd_check(p, g, backend, fields=("c",), h=1e-3, decimals=6)


def test_pure_integer_backends_agree() -> None:
    """CP-SAT, SCIP, HiGHS and CBC: same value and gradient on a batch of pure IPs."""
    insts = [i for i in (integer_instance(s) for s in range(60)) if i is not None][:5]
    batch = stack([p for p, _, _ in insts])
    ref = np.array([z for _, z, _ in insts])
    grads = {}
    for backend in (*MIP_BACKENDS, "cpsat"):
        z = tj.value(batch, backend)
        np.testing.assert_allclose(np.asarray(z), ref, rtol=1e-9)
        grads[backend] = jax.grad(lambda p, b=backend: tj.value(p, b).sum())(batch)
    for backend in grads:
        for f in FIELDS:
            np.testing.assert_array_equal(
                np.asarray(getattr(grads[backend], f)),
                np.asarray(getattr(grads["scip"], f)),
                err_msg=f"{backend} vs scip, field {f}",
            )


# ----------------------------------------------------------------------------- inf values
def _assert_zero_grads(g: tj.MIP) -> None:
    for f in FIELDS:
        v = np.asarray(getattr(g, f))
        assert np.all(np.isfinite(v)), (f, v)
        np.testing.assert_array_equal(v, 0.0, err_msg=f)


@pytest.mark.parametrize("backend", [*MIP_BACKENDS, "cpsat", "glop"])
def test_infeasible_value_is_plus_inf_with_zero_gradient(backend: str) -> None:
    integrality = backend != "glop"
    # x1 + x2 >= 7.5 with x in [0, 3]^2: infeasible (for integers and reals alike).
    p = tj.MIP(c=[1.0, 2.0], A_ub=[[-1.0, -1.0]], b_ub=[-7.5], ub=3.0, integrality=integrality)
    z, sol = tj.value_and_solution(p, backend)
    assert float(z) == np.inf
    assert int(sol.status) == tj.Status.INFEASIBLE
    _assert_zero_grads(grads_of_value(p, backend))


@pytest.mark.parametrize(
    ("backend", "integrality"),
    [("scip", [1, 0]), ("highs", [1, 0]), ("cbc", [1, 0]), ("glop", [0, 0]), ("scip", [0, 0])],
)
def test_unbounded_value_is_minus_inf_with_zero_gradient(backend: str, integrality: list) -> None:
    # minimize -x1 - x2 with x1 - x2 <= 1 and no upper bounds: unbounded.
    p = tj.MIP(c=[-1.0, -1.0], A_ub=[[1.0, -1.0]], b_ub=[1.0], integrality=integrality)
    z, sol = tj.value_and_solution(p, backend)
    assert float(z) == -np.inf
    assert int(sol.status) == tj.Status.UNBOUNDED
    _assert_zero_grads(grads_of_value(p, backend))


def test_batch_with_infeasible_member_keeps_other_gradients() -> None:
    """One infeasible problem in a batch: its gradient is 0, the others' are untouched."""
    data, _, x = mixed_instance(3) or mixed_instance(4)
    good = to_mip(data)
    bad = good.replace(b_ub=good.b_ub.at[0].set(-1e3))  # a row no point in the box satisfies
    batch = stack([good, bad, good])
    z, sol = tj.value_and_solution(batch)
    assert np.asarray(z)[1] == np.inf and np.all(np.isfinite(np.asarray(z)[[0, 2]]))
    assert sol.status_names().tolist() == ["OPTIMAL", "INFEASIBLE", "OPTIMAL"]
    g = jax.grad(lambda p: tj.value(p).sum())(batch)
    g_good = grads_of_value(good)
    for f in FIELDS:
        v = np.asarray(getattr(g, f))
        np.testing.assert_array_equal(v[1], 0.0)
        np.testing.assert_allclose(v[0], np.asarray(getattr(g_good, f)), atol=1e-12)
        np.testing.assert_allclose(v[2], np.asarray(getattr(g_good, f)), atol=1e-12)


# ----------------------------------------------------------------------------- batching
def test_jacrev_of_batched_value_is_block_diagonal() -> None:
    """``jax.jacrev`` of the value of a batched problem (leading axis) wrt c and b_ub: the
    (B, B, ...) Jacobian is zero off the diagonal and the per-problem gradient on it."""
    insts = [i for i in (mixed_instance(s) for s in range(20)) if i is not None][:3]
    problems = [to_mip(d) for d, _, _ in insts]
    batch = stack(problems)
    B = len(problems)
    jac = jax.jacrev(lambda p: tj.value(p))(batch)
    for f in ("c", "b_ub", "A_ub", "lb"):
        J = np.asarray(getattr(jac, f))
        assert J.shape == (B, B, *getattr(problems[0], f).shape)
        for i in range(B):
            gi = np.asarray(getattr(grads_of_value(problems[i]), f))
            for j in range(B):
                np.testing.assert_allclose(J[i, j], gi if i == j else 0.0, atol=1e-12)
    # jacrev wrt c alone is x* per problem.
    Jc = jax.jacrev(lambda c: tj.value(batch.replace(c=c)))(batch.c)
    sol = tj.solve(batch)
    np.testing.assert_allclose(np.einsum("iij->ij", np.asarray(Jc)), np.asarray(sol.x), atol=1e-9)
