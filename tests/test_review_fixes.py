"""Regression tests for issues found in review: CP-SAT artificial bounds and rational
recovery in float32, unbounded problems under a time limit, dtype handling, batch indexing,
and float32 end to end (JAX's default dtype)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest
from oracles import host_problem

import tamejax as tj
from tamejax import MIP, Status
from tamejax.backends import SolveOptions, solve_host

# ------------------------------------------------------------------ CP-SAT artificial bounds


def test_cpsat_artificial_box_never_claims_optimal():
    """The optimum lies beyond any artificial bound: CP-SAT must not call its box optimum optimal."""
    p = host_problem(
        c=[-1.0, 0.0], A_ub=[[1.0, -(2.0**42)], [-1.0, 2.0**41]], b_ub=[5.0, 0.0], ub=[math.inf, 1.0], integrality=True
    )
    exact = solve_host("scip", p, SolveOptions(), {})
    assert exact.status == Status.OPTIMAL and exact.objective < -(2.0**41)
    r = solve_host("cpsat", p, SolveOptions(), {})
    assert r.status != Status.OPTIMAL, r
    if r.status == Status.FEASIBLE:
        assert r.bound == -math.inf and r.objective >= exact.objective


def test_cpsat_artificial_box_never_claims_infeasible():
    """x >= 2**41 with no upper bound is feasible: at worst NO_SOLUTION, never INFEASIBLE."""
    p = host_problem(c=[1.0], A_ub=[[-1.0]], b_ub=[-(2.0**41)], integrality=True)
    r = solve_host("cpsat", p, SolveOptions(), {})
    assert r.status in (Status.NO_SOLUTION, Status.ERROR), r


def test_cpsat_objective_cutoff_proves_optimality_with_infinite_bounds():
    """min x0 + x1 s.t. x0 + x1 >= 3, x >= 0 (ub = inf): the cutoff c x <= 3 bounds the box."""
    p = host_problem(c=[1.0, 1.0], A_ub=[[-1.0, -1.0]], b_ub=[-3.0], integrality=True)
    r = solve_host("cpsat", p, SolveOptions(), {})
    assert r.status == Status.OPTIMAL and r.objective == 3.0 and r.bound == 3.0


def test_cpsat_bound_propagation_proves_infeasibility():
    p = host_problem(c=[1.0, 1.0], A_ub=[[1.0, 1.0], [-1.0, -1.0]], b_ub=[2.0, -3.0], integrality=True)
    assert solve_host("cpsat", p, SolveOptions(), {}).status == Status.INFEASIBLE


def test_cpsat_float32_refuses_irrational_and_accepts_simple_fractions():
    f32 = np.float32
    bad = MIP(
        c=jnp.asarray([-1.0, -1.0], f32),
        A_ub=jnp.asarray([[np.pi, 1.0]], f32),
        b_ub=jnp.asarray([4.0], f32),
        ub=jnp.asarray([5.0, 5.0], f32),
        integrality=True,
    )
    with pytest.raises(ValueError, match=r"A_ub\[0, 0\]"):
        tj.solve(bad, "cpsat")
    good = bad.replace(A_ub=jnp.asarray([[0.1, 2.5]], f32))
    assert good.c.dtype == jnp.float32
    a, b = tj.solve(good, "cpsat"), tj.solve(good, "scip")
    assert int(a.status) == Status.OPTIMAL == int(b.status)
    # CP-SAT reads float32 0.1 as 1/10 exactly; compare with SCIP on the exact data (float64)
    exact = tj.solve(
        good.replace(
            **{
                k: jnp.asarray(v, jnp.float64)
                for k, v in {
                    "c": [-1.0, -1.0],
                    "A_ub": [[0.1, 2.5]],
                    "b_ub": [4.0],
                    "lb": [0.0, 0.0],
                    "ub": [5.0, 5.0],
                }.items()
            }
        ),
        "scip",
    )
    assert float(a.objective) == float(exact.objective)


# ------------------------------------------------------------------ unbounded under a time limit


@pytest.mark.parametrize("backend", ("glop", "highs", "scip", "cbc"))
def test_unbounded_lp_with_time_limit_is_not_called_infeasible(backend):
    p = host_problem(c=[-1.0, -1.0], A_ub=[[1.0, -1.0]], b_ub=[1.0], lb=[0.0, 0.0], ub=[math.inf, math.inf])
    r = solve_host(backend, p, SolveOptions(time_limit=10.0), {})
    assert r.status == Status.UNBOUNDED, (r.status, r.message)
    assert r.objective == -math.inf


def test_unbounded_mip_with_time_limit_is_not_called_infeasible():
    p = host_problem(c=[-1.0, -1.0], A_ub=[[1.0, -1.0]], b_ub=[1.0], integrality=[True, False])
    r = solve_host("highs", p, SolveOptions(time_limit=10.0), {})
    assert r.status == Status.UNBOUNDED, (r.status, r.message)


# ------------------------------------------------------------------ dtypes and indexing


def test_leaves_share_one_dtype():
    p = MIP(c=jnp.asarray([1.0, 2.0], jnp.float32), A_ub=[[1.0, 1.0]], b_ub=[3.0], ub=10.0)
    dtypes = {str(leaf.dtype) for leaf in (p.c, p.A_ub, p.b_ub, p.A_eq, p.b_eq, p.lb, p.ub)}
    assert len(dtypes) == 1


def test_float32_conversion_of_integers_warns():
    """Without x64, 16777217 cannot be stored: the user is told (subprocess: x64 is on here)."""
    code = textwrap.dedent(
        """
        import warnings, numpy as np, tamejax as tj
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            tj.MIP(c=np.array([16777217.0, 1.0]))
        assert any("16777217" in str(x.message) and "`c`" in str(x.message) for x in w), [str(x.message) for x in w]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            tj.MIP(c=np.array([0.1, 3.0]))  # ordinary rounding of non-integers: no warning
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_indexing_past_the_batch_axes_is_refused():
    p = MIP(c=np.ones((3, 2)), A_ub=np.ones((3, 1, 2)), b_ub=np.ones((3, 1)))
    assert p[1].batch_shape == () and p[1:].batch_shape == (2,)
    for index in ((slice(None), 0), Ellipsis, None):
        with pytest.raises(IndexError):
            p[index]


# ------------------------------------------------------------------ float32 end to end


def test_float32_solve_value_and_grad():
    """JAX's default dtype: solve, value and gradients all stay float32 and are right."""
    import jax

    f32 = jnp.float32
    c = jnp.asarray([-1.0, -2.0], f32)
    p = MIP(
        c=c,
        A_ub=jnp.asarray([[1.0, 1.0], [0.0, 1.0]], f32),
        b_ub=jnp.asarray([3.5, 2.0], f32),
        ub=jnp.asarray([10.0, 10.0], f32),
        integrality=[True, False],
    )
    sol = tj.solve(p)
    assert sol.x.dtype == f32 and int(sol.status) == Status.OPTIMAL
    np.testing.assert_allclose(np.asarray(sol.x), [1.0, 2.0], atol=1e-6)
    z, g = jax.value_and_grad(lambda q: tj.value(q))(p)
    assert z.dtype == f32 and g.c.dtype == f32 and g.b_ub.dtype == f32
    np.testing.assert_allclose(np.asarray(g.c), [1.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(g.b_ub), [0.0, -2.0], atol=1e-6)
