"""``solve`` and ``value`` under JAX transformations: jit, vmap (nested, partial), grad inside
jit inside vmap, jacrev, batched problems, status-as-data for traced bad instances, the
``Solution`` pytree, and sharding (shard_map / NamedSharding on 4 forced host devices, in a
subprocess: ``tests/shard_check.py``).

The oracle everywhere is an eager Python loop over the problems, each solved on its own.
Instances are random with continuous data, hence (almost surely) a unique optimum with unique
duals, so every path must give the same numbers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import tamejax as tj  # noqa: E402

EXACT = 1e-9
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
FIELDS = ("c", "A_ub", "b_ub", "A_eq", "b_eq", "lb", "ub")
INTEGRALITY = (True, True, False, False, False)


def random_problems(seed: int, batch_shape: tuple[int, ...] = ()) -> tj.MIP:
    """Feasible, bounded MILPs (2 integer variables in {0,1,2}, 3 continuous ones in finite
    boxes, 3 inequality rows, 1 equality), with batch shape ``batch_shape``."""
    rng = np.random.default_rng(seed)
    n, m_ub, m_eq = len(INTEGRALITY), 3, 1
    integ = np.array(INTEGRALITY)
    shape = (*batch_shape, n)
    lb = np.where(integ, 0.0, rng.uniform(-1.0, -0.2, shape))
    ub = np.where(integ, 2.0, rng.uniform(0.5, 1.5, shape))
    A_ub = rng.uniform(-1.0, 1.0, (*batch_shape, m_ub, n))
    A_eq = rng.uniform(-1.0, 1.0, (*batch_shape, m_eq, n))
    x0 = np.where(integ, rng.integers(0, 3, shape), 0.5 * rng.uniform(lb, ub))
    b_ub = np.einsum("...mn,...n->...m", A_ub, x0) + rng.uniform(0.1, 0.6, (*batch_shape, m_ub))
    b_eq = np.einsum("...mn,...n->...m", A_eq, x0)
    c = rng.uniform(-1.0, 1.0, shape)
    return tj.MIP(c=c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, lb=lb, ub=ub, integrality=integ)


def loop(f: Callable, batch: tj.MIP) -> object:
    """Eager oracle: ``f`` applied to each problem of a batch (any batch shape), stacked."""
    shape = batch.batch_shape
    outs = [f(batch[idx]) for idx in np.ndindex(*shape)]
    return jax.tree.map(lambda *v: np.stack([np.asarray(a) for a in v]).reshape(shape + np.shape(v[0])), *outs)


def assert_tree_close(got: object, want: object, atol: float = 1e-6) -> None:
    """Same tree structure, shapes and numbers. Raw MIP solutions are compared within the
    solver's feasibility tolerance (default ``atol``): SCIP's x may differ by ~1e-7 between
    two solves of the same problem from different model states in the workers. Values and
    gradients (polished by an exact simplex solve of the fixed LP) use ``atol=EXACT``."""
    g_leaves, g_def = jax.tree.flatten(got)
    w_leaves, w_def = jax.tree.flatten(want)
    assert g_def == w_def, (g_def, w_def)
    for a, b in zip(g_leaves, w_leaves, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, (a.shape, b.shape)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=atol)


def solution_numbers(sol: tj.Solution) -> tuple[jax.Array, ...]:
    return sol.x, sol.objective, sol.bound, sol.status


def grad_value(p: tj.MIP) -> tj.MIP:
    return jax.grad(lambda q: tj.value(q))(p)


@pytest.fixture
def host_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the batches that reach the host solver, one entry per callback."""
    bridge = sys.modules["tamejax.solve"]  # the module (``tamejax.solve`` is the function)
    inner = bridge.solve_many
    calls: list[int] = []

    def wrapped(backend, problems, options):
        calls.append(len(problems))
        return inner(backend, problems, options)

    monkeypatch.setattr(bridge, "solve_many", wrapped)
    return calls


@pytest.fixture(scope="module")
def batch() -> tj.MIP:
    return random_problems(0, (5,))


@pytest.fixture(scope="module")
def eager_solutions(batch: tj.MIP) -> tuple[np.ndarray, ...]:
    out = loop(lambda p: solution_numbers(tj.solve(p)), batch)
    assert np.all(np.asarray(out[3]) == tj.Status.OPTIMAL)
    return out


# ----------------------------------------------------------------------------- jit
@pytest.mark.parametrize("backend", ["scip", "highs", "cbc"])
def test_jit_solve_matches_eager(batch: tj.MIP, backend: str) -> None:
    p = batch[0]
    eager = tj.solve(p, backend)
    jitted = jax.jit(lambda q: tj.solve(q, backend))(p)
    assert_tree_close(solution_numbers(jitted), solution_numbers(eager))
    assert jitted.status.dtype == jnp.int32
    # value under jit, with duals
    z, sol = jax.jit(lambda q: tj.value_and_solution(q, backend))(p)
    z0, sol0 = tj.value_and_solution(p, backend)
    assert_tree_close((z, sol), (z0, sol0), atol=EXACT)


def test_batched_problem_matches_loop(batch, eager_solutions, host_calls) -> None:
    """A batched MIP (leading axis) passed directly: one host call, same numbers."""
    assert_tree_close(solution_numbers(tj.solve(batch)), eager_solutions)
    assert host_calls == [batch.batch_shape[0]]
    assert_tree_close(tj.value(batch), eager_solutions[1])


# ----------------------------------------------------------------------------- vmap
def test_vmap_over_c(batch, host_calls) -> None:
    p = batch[0]
    cs = batch.c
    got = jax.vmap(lambda c: solution_numbers(tj.solve(p.replace(c=c))))(cs)
    want = loop(lambda q: solution_numbers(tj.solve(q)), p.replace(c=cs))
    assert_tree_close(got, want)
    assert host_calls[0] == cs.shape[0]  # the whole vmapped batch in one callback
    assert len(host_calls) == 1 + cs.shape[0]


def test_vmap_over_b_ub_non_leading_axis(batch) -> None:
    """vmap over b_ub, given with the batch on axis 1 (in_axes=1, out_axes=1)."""
    p = batch[1]
    b = p.b_ub[None, :] + jnp.linspace(-0.05, 0.3, 4)[:, None]  # (4, m_ub)
    got = jax.vmap(lambda bb: tj.solve(p.replace(b_ub=bb)).x, in_axes=1, out_axes=1)(b.T)
    want = loop(lambda q: tj.solve(q).x, p.replace(b_ub=b))
    assert_tree_close(got, np.asarray(want).T)


def test_vmap_over_whole_pytree(batch, eager_solutions, host_calls) -> None:
    got = jax.vmap(lambda q: solution_numbers(tj.solve(q)), in_axes=0)(batch)
    assert_tree_close(got, eager_solutions)
    assert host_calls == [batch.batch_shape[0]]


def test_vmap_some_fields_batched(batch, host_calls) -> None:
    """in_axes as a MIP of 0/None: c and b_ub batched, the rest shared (the host gets
    size-1 axes for the shared fields, ``expand_dims``, and broadcasts them)."""
    p = batch[2]
    in_axes = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(p), [0, None, 0, None, None, None, None])
    partial = jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(p), [batch.c, p.A_ub, batch.b_ub, p.A_eq, p.b_eq, p.lb, p.ub]
    )
    f = jax.vmap(lambda q: (*solution_numbers(tj.solve(q)), tj.value(q)), in_axes=(in_axes,))
    got = f(partial)
    assert host_calls[:2] == [5, 5]
    full = p.replace(c=batch.c, b_ub=batch.b_ub)  # the constructor broadcasts the rest
    want = loop(lambda q: (*solution_numbers(tj.solve(q)), tj.value(q)), full)
    assert_tree_close(got, want)
    # Same through in_axes on separate arguments.
    got2 = jax.vmap(lambda c, b: tj.solve(p.replace(c=c, b_ub=b)).x, in_axes=(0, 0))(batch.c, batch.b_ub)
    assert_tree_close(got2, want[0])


def test_nested_vmap_two_levels(host_calls) -> None:
    big = random_problems(7, (2, 3))
    f = jax.vmap(jax.vmap(lambda q: (tj.solve(q).x, tj.value(q))))
    got = f(big)
    assert host_calls[:2] == [6, 6]  # both levels reach the host in one callback each
    want = loop(lambda q: (tj.solve(q).x, tj.value(q)), big)
    assert_tree_close(got, want)
    # vmap over an already batched problem (vmap axis + the problem's own leading axis).
    got_mixed = jax.vmap(lambda q: tj.value(q))(big)
    assert_tree_close(got_mixed, want[1], atol=EXACT)
    # nested vmap of a cost-only batch: outer over rows of a (2, 3, n) c, inner over columns.
    p = big[0, 0]
    cs = big.c
    got_c = jax.vmap(jax.vmap(lambda c: tj.solve(p.replace(c=c)).x))(cs)
    assert_tree_close(got_c, loop(lambda q: tj.solve(q).x, p.replace(c=cs)))


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), size=st.integers(1, 4))
def test_jit_vmap_grad_value_matches_loop(seed: int, size: int) -> None:
    """jit(vmap(grad(value))) over every field equals the eager per-problem gradients."""
    problems = random_problems(seed, (size,))
    got = jax.jit(jax.vmap(grad_value))(problems)
    want = loop(grad_value, problems)
    assert_tree_close(got, want, atol=EXACT)
    # and the gradient of the batched value's sum is the same
    assert_tree_close(jax.grad(lambda q: tj.value(q).sum())(problems), want, atol=EXACT)


def test_grad_inside_jit_inside_vmap(batch) -> None:
    p = batch[3]
    cs, bs = batch.c, batch.b_ub

    @jax.jit
    def g(c, b):
        return jax.grad(lambda c, b: tj.value(p.replace(c=c, b_ub=b)), argnums=(0, 1))(c, b)

    got = jax.vmap(g)(cs, bs)
    full = p.replace(c=cs, b_ub=bs)
    want = loop(lambda q: (grad_value(q).c, grad_value(q).b_ub), full)
    assert_tree_close(got, want, atol=EXACT)
    # gradient wrt c is the solution, whatever the transformation stack
    assert_tree_close(got[0], loop(lambda q: tj.solve(q).x, full))


def test_jacrev_of_value_wrt_c_is_solution(batch) -> None:
    p = batch[4]
    jac = jax.jacrev(lambda c: tj.value(p.replace(c=c)))(p.c)
    np.testing.assert_allclose(np.asarray(jac), np.asarray(tj.solve(p).x), atol=1e-6)
    # jacrev of a vmapped value: (B, B, n), diagonal blocks are the x*'s
    J = jax.jacrev(jax.vmap(lambda c: tj.value(p.replace(c=c))))(batch.c)
    X = loop(lambda q: tj.solve(q).x, p.replace(c=batch.c))
    B = batch.c.shape[0]
    expect = np.zeros((B, B, p.n))
    expect[np.arange(B), np.arange(B)] = X
    np.testing.assert_allclose(np.asarray(J), expect, atol=1e-6)


# ----------------------------------------------------------------------------- status as data
def test_traced_bad_instance_under_jit_is_error_status(batch) -> None:
    """lb > ub (or NaN) produced inside jit cannot be validated at construction: the host
    reports status ERROR (NaN objective, zero gradient) instead of raising."""
    p = batch[0]

    @jax.jit
    def f(shift):
        q = p.replace(lb=p.ub + shift)  # lb > ub when shift > 0 (traced: no eager check)
        return tj.solve(q), tj.value(q)

    sol, z = f(1.0)
    assert int(sol.status) == tj.Status.ERROR
    assert np.isnan(float(sol.objective)) and np.all(np.isnan(np.asarray(sol.x)))
    assert np.isnan(float(z))
    ok_sol, _ = f(-1e-12 - (p.ub - p.lb).min())  # lb = ub - (ub - lb)min <= ub: fine
    assert int(ok_sol.status) in (tj.Status.OPTIMAL, tj.Status.INFEASIBLE)

    # A NaN cost made inside jit: ERROR and a zero (not NaN) gradient. (dc/ds = p.c is
    # finite, so a NaN here could only come from value's own backward rule.)
    g = jax.jit(jax.grad(lambda s: tj.value(p.replace(c=p.c * s + jnp.where(s > 0, jnp.nan, 0.0)))))
    assert float(g(1.0)) == 0.0
    grads = jax.jit(jax.grad(lambda q: tj.value(q.replace(lb=q.ub + 1.0))))(p)
    for f_ in FIELDS:
        np.testing.assert_array_equal(np.asarray(getattr(grads, f_)), 0.0)

    # Eagerly the same data raise a ValueError naming the fields.
    with pytest.raises(ValueError, match="lb"):
        p.replace(lb=p.ub + 1.0)


def test_bad_member_of_vmapped_batch(batch) -> None:
    """Inside vmap, only the bad problem gets ERROR; the others are solved normally."""
    shifts = jnp.array([0.0, 5.0, 0.0])
    sub = jax.tree.map(lambda v: v[:3], batch)

    def f(q, s):
        return tj.solve(q.replace(lb=jnp.where(s > 0, q.ub + s, q.lb)))

    sol = jax.jit(jax.vmap(f))(sub, shifts)
    assert sol.status_names().tolist() == ["OPTIMAL", "ERROR", "OPTIMAL"]
    want = loop(lambda q: tj.solve(q).x, sub)
    np.testing.assert_allclose(np.asarray(sol.x)[[0, 2]], np.asarray(want)[[0, 2]], atol=1e-6)


# ----------------------------------------------------------------------------- pytree
def test_solution_is_a_pytree(batch) -> None:
    sol = tj.solve(batch)
    assert len(jax.tree.leaves(sol)) == 4  # duals are None unless asked for
    doubled = jax.tree.map(lambda a: a * 2, sol)
    assert isinstance(doubled, tj.Solution)
    np.testing.assert_array_equal(np.asarray(doubled.x), 2 * np.asarray(sol.x))
    _, with_duals = tj.value_and_solution(batch)
    assert len(jax.tree.leaves(with_duals)) == 7
    first = jax.tree.map(lambda a: a[0], with_duals)
    assert first.x.shape == (batch.n,) and first.dual_ub.shape == (batch.m_ub,)
    # flatten / unflatten round trip, and stacking a list of solutions
    leaves, treedef = jax.tree.flatten(with_duals)
    assert jax.tree.unflatten(treedef, leaves).status.dtype == jnp.int32
    stacked = jax.tree.map(lambda *v: jnp.stack(v), *[tj.solve(batch[i]) for i in range(2)])
    np.testing.assert_allclose(np.asarray(stacked.x), np.asarray(sol.x[:2]), atol=1e-6)
    # a Solution can cross jit boundaries in both directions
    back = jax.jit(lambda s: jax.tree.map(lambda a: a, s))(sol)
    assert_tree_close(back, sol)


# ----------------------------------------------------------------------------- sharding
def test_shard_map_and_named_sharding_on_4_devices() -> None:
    """shard_map over a 4-device mesh and jit on NamedSharding-placed inputs give the eager
    numbers (x, value, grad). A subprocess, since the device count is fixed at JAX start."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, os.path.join(TESTS_DIR, "shard_check.py")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    out = proc.stdout + "\n" + proc.stderr[-5000:]
    assert proc.returncode == 0, out
    assert "4 devices" in proc.stdout and "ALL OK" in proc.stdout, out
    assert "MISMATCH" not in proc.stdout, out
