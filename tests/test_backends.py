"""Solver backends against oracles: brute-force enumeration, independent LPs, closed forms.

Most tests call ``tamejax.backends.solve_host`` directly (no JAX, no worker processes: fast);
a subset goes through ``tamejax.solve`` (the JAX bridge and the worker pool).
"""

from __future__ import annotations

import dataclasses
import math
import re

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from oracles import (
    assert_feasible,
    brute_force,
    host_problem,
    lp_oracle,
    market_split,
    mip_kwargs,
    tiny_programs,
)

import tamejax
from tamejax import MIP, Status
from tamejax.backends import HostProblem, SolveOptions, available_backends, solve_host

MIP_BACKENDS = ("scip", "cpsat", "highs", "cbc")
LINEAR_MIP_BACKENDS = ("scip", "highs", "cbc")  # accept continuous variables
LP_BACKENDS = ("glop", "pdlp")
ALL_BACKENDS = MIP_BACKENDS + LP_BACKENDS
EXACT_LP_BACKENDS = ("glop", "scip", "highs", "cbc")
_FIELDS = ("c", "A_ub", "b_ub", "A_eq", "b_eq", "lb", "ub")

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _tol(z: float, rel: float = 1e-7) -> float:
    return 1e-6 + rel * abs(z)


def _check_against_oracle(p: HostProblem, r, oracle, backend: str, rel: float = 1e-7) -> None:
    """The result ``r`` of ``backend`` has the oracle's status and value, and a feasible ``x``."""
    if oracle.status == Status.INFEASIBLE:
        assert r.status == Status.INFEASIBLE, (backend, r.status, r.message)
        assert r.objective == math.inf
        assert np.all(np.isnan(r.x))
        return
    assert r.status == Status.OPTIMAL, (backend, r.status, r.message, oracle.objective)
    assert abs(r.objective - oracle.objective) <= _tol(oracle.objective, rel), (
        backend,
        r.objective,
        oracle.objective,
        r.x,
        oracle.x,
    )
    assert_feasible(p, r.x)
    assert abs(float(p.c @ r.x) - r.objective) <= _tol(r.objective, rel), (backend, r.x)


def test_registry_lists_every_backend():
    assert set(ALL_BACKENDS) <= set(available_backends())
    assert set(available_backends()) == set(tamejax.available_backends())


# ------------------------------------------------------------------ integer programs


@settings(max_examples=300, **SETTINGS)
@given(tiny_programs(integer="all"))
def test_integer_programs_match_enumeration(p):
    oracle = brute_force(p)
    event(oracle.status.name)
    for backend in MIP_BACKENDS:
        r = solve_host(backend, p, SolveOptions(), {})
        _check_against_oracle(p, r, oracle, backend)


@settings(max_examples=30, **SETTINGS)
@given(tiny_programs(integer="all", rational=False, box=2), st.sampled_from(MIP_BACKENDS))
def test_integer_programs_with_threads_and_seed(p, backend):
    """Options do not change the optimum (threads, seed, an explicit zero gap)."""
    oracle = brute_force(p)
    r = solve_host(backend, p, SolveOptions(threads=1, seed=3, rel_gap=0.0), {})
    _check_against_oracle(p, r, oracle, backend)


def _same_shape_batch(rng: np.random.Generator, size: int, n: int = 3) -> list[HostProblem]:
    """Tiny integer programs of one structure (rational data, bounds in [-2, 2])."""
    out = []
    for _ in range(size):
        lb = rng.integers(-2, 1, size=n).astype(float)
        ub = lb + rng.integers(0, 3, size=n)
        A_ub = rng.integers(-3, 4, size=(2, n)) / rng.choice([1.0, 2.0, 3.0])
        b_ub = rng.integers(-3, 5, size=2).astype(float)
        A_eq = rng.integers(-2, 3, size=(1, n)).astype(float)
        b_eq = A_eq @ rng.integers(lb, ub + 1) + rng.choice([0.0, 0.0, 1.0])
        c = rng.integers(-4, 5, size=n) / rng.choice([1.0, 2.0, 4.0])
        out.append(host_problem(c, A_ub, b_ub, A_eq, b_eq, lb, ub, np.ones(n, bool)))
    return out


@pytest.mark.parametrize("backend", MIP_BACKENDS)
def test_bridge_batch_matches_enumeration(backend):
    """A batched ``MIP`` through ``tamejax.solve`` (one host call, the worker pool)."""
    problems = _same_shape_batch(np.random.default_rng(42), 10)
    oracles = [brute_force(p) for p in problems]
    assert {o.status for o in oracles} == {Status.OPTIMAL, Status.INFEASIBLE}  # both occur
    stacked = {k: np.stack([getattr(p, k) for p in problems]) for k in _FIELDS}
    batch = MIP(**stacked, integrality=True)
    sol = tamejax.solve(batch, backend)
    assert sol.x.shape == (10, 3) and sol.status.shape == (10,)
    for i, (p, o) in enumerate(zip(problems, oracles, strict=True)):
        if o.status == Status.INFEASIBLE:
            assert int(sol.status[i]) == Status.INFEASIBLE
            assert float(sol.objective[i]) == math.inf
            assert np.all(np.isnan(np.asarray(sol.x[i])))
        else:
            assert int(sol.status[i]) == Status.OPTIMAL
            assert abs(float(sol.objective[i]) - o.objective) <= 1e-6
            assert_feasible(p, np.asarray(sol.x[i]))
    assert list(sol.status_names()) == [Status(int(s)).name for s in sol.status]
    np.testing.assert_array_equal(sol.ok, [o.status == Status.OPTIMAL for o in oracles])


def test_bridge_jit_and_vmap_match_eager():
    problems = _same_shape_batch(np.random.default_rng(7), 6)
    stacked = {k: np.stack([getattr(p, k) for p in problems]) for k in _FIELDS}
    eager = tamejax.solve(MIP(**stacked, integrality=True), "scip")

    @jax.jit
    def solve_one(c, A_ub, b_ub, A_eq, b_eq, lb, ub):
        return tamejax.solve(MIP(c, A_ub, b_ub, A_eq, b_eq, lb, ub, integrality=True), "highs")

    vm = jax.vmap(solve_one)(*(stacked[k] for k in _FIELDS))
    np.testing.assert_array_equal(vm.status, eager.status)
    np.testing.assert_allclose(vm.objective, eager.objective, atol=1e-6)
    for i, p in enumerate(problems):
        o = brute_force(p)
        np.testing.assert_allclose(float(vm.objective[i]), o.objective, atol=1e-6)


# ------------------------------------------------------------------ linear programs


@settings(max_examples=150, **SETTINGS)
@given(tiny_programs(integer="none"))
def test_lp_backends_agree(p):
    oracle = lp_oracle(p.c, p.A_ub, p.b_ub, p.A_eq, p.b_eq, p.lb, p.ub)
    event(oracle.status.name)
    for backend in EXACT_LP_BACKENDS:
        r = solve_host(backend, p, SolveOptions(), {})
        _check_against_oracle(p, r, oracle, backend)
    r = solve_host("pdlp", p, SolveOptions(), {})
    if oracle.status == Status.INFEASIBLE:
        # PDLP runs after GLOP's presolve, and an undecided PDLP is settled by GLOP: without
        # both, PDLP needed 10^7+ iterations on some tiny infeasible LPs.
        assert r.status == Status.INFEASIBLE, (r.status, r.message)
        return
    assert r.status == Status.OPTIMAL, (r.status, r.message)
    assert abs(r.objective - oracle.objective) <= 1e-4 * (1 + abs(oracle.objective))
    assert_feasible(p, r.x, tol=1e-4)


@settings(max_examples=100, **SETTINGS)
@given(tiny_programs(integer="mixed", box=2))
def test_mixed_integer_programs_match_enumeration_plus_lp(p):
    """Integer part enumerated, continuous part solved as an LP (independent solver)."""
    oracle = brute_force(p)
    event(oracle.status.name)
    for backend in LINEAR_MIP_BACKENDS:
        r = solve_host(backend, p, SolveOptions(), {})
        # the default relative MIP gap of OR-Tools' linear solvers is 1e-4
        _check_against_oracle(p, r, oracle, backend, rel=2e-4)
    for backend in LINEAR_MIP_BACKENDS:
        r = solve_host(backend, p, SolveOptions(rel_gap=0.0), {})
        _check_against_oracle(p, r, oracle, backend)


# ------------------------------------------------------------------ statuses


_INFEASIBLE = dict(c=[1.0, 1.0], A_ub=[[1.0, 1.0]], b_ub=[-1.0], ub=[3.0, 3.0])
# LP-feasible (x0 + x1 = 1/2) but no integer point
_INTEGER_INFEASIBLE = dict(c=[1.0, 0.0], A_eq=[[2.0, 2.0]], b_eq=[1.0], lb=-3.0, ub=3.0)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_infeasible(backend):
    integer = backend in MIP_BACKENDS
    cases = [_INFEASIBLE] + ([_INTEGER_INFEASIBLE] if integer else [])
    for case in cases:
        p = host_problem(**case, integrality=integer)
        r = solve_host(backend, p, SolveOptions(), {})
        assert r.status == Status.INFEASIBLE, (case, r.status, r.message)
        assert r.objective == math.inf
        assert np.all(np.isnan(r.x))
        sol = tamejax.solve(MIP(**case, integrality=integer), backend)
        assert int(sol.status) == Status.INFEASIBLE
        assert float(sol.objective) == math.inf
        assert np.all(np.isnan(np.asarray(sol.x)))
        assert not bool(sol.ok)


# x0 - x1 <= 2, x0 free, x1 >= 0: min -x0 - x1 is unbounded (x1 -> inf, x0 = x1 + 2), while
# min -x0 + x1 = -2 on the same feasible set.
_ROWS = dict(A_ub=[[1.0, -1.0]], b_ub=[2.0], lb=[-math.inf, 0.0])


@pytest.mark.parametrize("backend", ("scip", "highs", "cbc", "glop", "pdlp"))
def test_unbounded_lp(backend):
    r = solve_host(backend, host_problem(c=[-1.0, -1.0], **_ROWS), SolveOptions(), {})
    assert r.status == Status.UNBOUNDED, (r.status, r.message)
    assert r.objective == -math.inf
    assert np.all(np.isnan(r.x))
    bounded = solve_host(backend, host_problem(c=[-1.0, 1.0], **_ROWS), SolveOptions(), {})
    assert bounded.status == Status.OPTIMAL and abs(bounded.objective + 2.0) <= 1e-4


@pytest.mark.parametrize("backend", ("scip", "highs", "cbc"))
def test_unbounded_mip(backend):
    p = host_problem(c=[-1.0, -1.0], **_ROWS, integrality=[True, False])
    r = solve_host(backend, p, SolveOptions(), {})
    assert r.status == Status.UNBOUNDED, (r.status, r.message)
    assert r.objective == -math.inf
    sol = tamejax.solve(MIP(**mip_kwargs(p)), backend)
    assert int(sol.status) == Status.UNBOUNDED and float(sol.objective) == -math.inf


def test_highs_presolve_solve_error_is_retried():
    """HiGHS 1.12's presolve reduces this infeasible program to an empty one and then rejects
    its own solution ("solve error"); the backend re-solves without presolve: INFEASIBLE."""
    p = host_problem(
        c=[0.0, 0.0, 0.0, 0.0],
        A_eq=[[0.0, 1.0, 1.0, -1.75]],
        b_eq=[0.0],
        lb=[0.0, 0.0, 0.0, 1.0],
        ub=[0.0, 0.0, 2.0, 1.0],
        integrality=True,
    )
    assert brute_force(p).status == Status.INFEASIBLE
    cache: dict = {}
    for _ in range(2):  # the retry restores presolve: the cached model behaves the same again
        r = solve_host("highs", p, SolveOptions(), cache)
        assert r.status == Status.INFEASIBLE, (r.status, r.message)
    feasible = dataclasses.replace(p, ub=np.array([0.0, 0.0, 2.0, 2.0]), lb=np.zeros(4))
    r = solve_host("highs", feasible, SolveOptions(), cache)
    assert r.status == Status.OPTIMAL and r.objective == 0.0


def test_cpsat_unbounded_is_error_not_a_number():
    """CP-SAT replaces infinite bounds by artificial ones: it cannot prove unboundedness, so
    a solution at an artificial bound is reported as ``ERROR`` (documented), never a value."""
    p = host_problem(c=[-1.0, -1.0], **_ROWS, integrality=True)
    r = solve_host("cpsat", p, SolveOptions(), {})
    assert r.status == Status.ERROR
    assert math.isnan(r.objective) and np.all(np.isnan(r.x))
    assert "bound" in r.message


def test_cpsat_one_sided_infinite_bounds_are_fine():
    """A variable resting at its real finite bound, with the other bound infinite, is optimal."""
    p = host_problem(c=[1.0, 1.0], A_ub=[[-1.0, -1.0]], b_ub=[-1.0], integrality=True)  # ub = inf
    r = solve_host("cpsat", p, SolveOptions(), {})
    assert r.status == Status.OPTIMAL and r.objective == 1.0
    p = host_problem(c=[-1.0], lb=[-math.inf], ub=[2.5], integrality=True)
    r = solve_host("cpsat", p, SolveOptions(), {})
    assert r.status == Status.OPTIMAL and r.objective == -2.0


@pytest.mark.parametrize(
    ("backend", "integer_slacks"),
    [("scip", False), ("cbc", False), ("highs", False), ("cpsat", True)],
)
def test_time_limit_never_fakes_optimality(backend, integer_slacks):
    """A market split instance (optimum > 0, LP bound 0) cannot be closed in 50 ms."""
    p = market_split(4, seed=0, integer_slacks=integer_slacks)
    r = solve_host(backend, p, SolveOptions(time_limit=0.05, threads=1), {})
    assert r.status != Status.OPTIMAL, r.objective
    if backend in ("scip", "cbc", "cpsat"):
        assert r.status in (Status.FEASIBLE, Status.NO_SOLUTION), (r.status, r.message)
    else:  # HiGHS through pywraplp reports an unknown status at a limit: no number is made up
        assert r.status in (Status.FEASIBLE, Status.NO_SOLUTION, Status.ERROR), r.message
    if r.status == Status.FEASIBLE:
        assert_feasible(p, r.x)
        assert abs(float(p.c @ r.x) - r.objective) <= 1e-6
        assert r.bound <= r.objective + 1e-9
        assert r.objective > 0  # the optimum is positive, so the incumbent is too
    else:
        assert math.isnan(r.objective) and np.all(np.isnan(r.x))


def test_time_limit_through_bridge():
    p = market_split(4, seed=1)
    sol = tamejax.solve(MIP(**mip_kwargs(p)), "scip", time_limit=0.05)
    assert int(sol.status) in (Status.FEASIBLE, Status.NO_SOLUTION)
    if int(sol.status) == Status.FEASIBLE:
        assert_feasible(p, np.asarray(sol.x))
        assert float(sol.bound) <= float(sol.objective)


# ------------------------------------------------------------------ CP-SAT data


def test_cpsat_scales_rational_data_exactly():
    third = 1.0 / 3.0
    kw = dict(
        c=[0.5, -third, -0.25, 0.1],
        A_ub=[[third, 0.5, 1.0, 0.0], [-1.0, third, -0.5, 0.2]],
        b_ub=[1.5, 2.0 / 3.0],
        A_eq=[[0.5, 0.5, 0.0, 0.1]],
        b_eq=[0.6],
        lb=[-3, -3, -3, -3],
        ub=[3, 3, 3, 3],
        integrality=True,
    )
    p = host_problem(**kw)
    oracle = brute_force(p)
    assert oracle.status == Status.OPTIMAL
    for backend in ("cpsat", "scip"):
        _check_against_oracle(p, solve_host(backend, p, SolveOptions(), {}), oracle, backend)
    sol = tamejax.solve(MIP(**kw), "cpsat")
    ref = tamejax.solve(MIP(**kw), "scip")
    assert int(sol.status) == int(ref.status) == Status.OPTIMAL
    assert abs(float(sol.objective) - float(ref.objective)) <= 1e-9
    assert abs(float(sol.objective) - oracle.objective) <= 1e-9


@pytest.mark.parametrize(
    ("field", "index", "value", "where"),
    [
        ("c", (0,), np.pi, "c[0]"),
        ("A_ub", (1, 2), 1e-9 + 0.1234567891, "A_ub[1, 2]"),
        ("b_ub", (1,), math.sqrt(2.0), "b_ub[1]"),
        ("A_eq", (0, 1), math.e, "A_eq[0, 1]"),
        ("b_eq", (0,), 1.0 / 7919.0 / 7907.0, "b_eq[0]"),
    ],
)
def test_cpsat_rejects_non_rational_data(field, index, value, where):
    kw = dict(
        c=[1.0, 2.0, 3.0],
        A_ub=np.ones((2, 3)),
        b_ub=[3.0, 3.0],
        A_eq=np.ones((1, 3)),
        b_eq=[1.0],
        ub=3.0,
        integrality=True,
    )
    arr = np.array(kw[field], dtype=np.float64)
    arr[index] = value
    kw[field] = arr
    with pytest.raises(ValueError, match=r"cpsat.*" + re.escape(where)):
        tamejax.solve(MIP(**kw), "cpsat")
    # on the host the same problem is an ERROR status, never a rounded solve
    r = solve_host("cpsat", host_problem(**kw), SolveOptions(), {})
    assert r.status == Status.ERROR and "ValueError" in r.message


def test_cpsat_rejects_continuous_variables():
    with pytest.raises(ValueError, match="`integrality`") as info:
        tamejax.solve(MIP(c=[1.0, 1.0], ub=1.0, integrality=[True, False]), "cpsat")
    assert "variable 1" in str(info.value)


@pytest.mark.parametrize("backend", LP_BACKENDS)
def test_lp_backends_reject_integer_variables(backend):
    with pytest.raises(ValueError, match="`integrality`"):
        tamejax.solve(MIP(c=[1.0, 1.0], ub=1.0, integrality=[False, True]), backend)
    r = solve_host(backend, host_problem(c=[1.0], ub=[1.0], integrality=True), SolveOptions(), {})
    assert r.status == Status.ERROR


# ------------------------------------------------------------------ argument validation


def test_unknown_backend_lists_names():
    with pytest.raises(ValueError, match="`backend`") as info:
        tamejax.solve(MIP(c=[1.0], ub=1.0), "gurobi")
    for name in ALL_BACKENDS:
        assert name in str(info.value)
    assert "gurobi" in str(info.value)
    with pytest.raises(ValueError, match="`backend`"):
        tamejax.value(MIP(c=[1.0], ub=1.0), "xpress")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("time_limit", -1.0),
        ("time_limit", 0.0),
        ("time_limit", math.inf),
        ("time_limit", math.nan),
        ("threads", 0),
        ("threads", 1.5),
        ("rel_gap", -0.1),
        ("rel_gap", math.inf),
        ("seed", -1),
    ],
)
def test_bad_options(option, value):
    p = MIP(c=[1.0], ub=1.0)
    with pytest.raises(ValueError, match=f"`{option}`"):
        tamejax.solve(p, "scip", **{option: value})
    with pytest.raises(ValueError, match=f"`{option}`"):
        tamejax.value(p, "scip", **{option: value})
    with pytest.raises(ValueError, match=f"`{option}`"):
        SolveOptions(**{option: value})


def test_unknown_option_to_value():
    with pytest.raises(ValueError, match="time_lim"):
        tamejax.value(MIP(c=[1.0], ub=1.0), "scip", time_lim=1.0)


def test_solve_rejects_non_mip():
    with pytest.raises(ValueError, match="`problem`"):
        tamejax.solve({"c": [1.0]}, "scip")


def test_invalid_host_data_is_an_error_status():
    """Data that were traced at construction are re-checked on the host: ERROR, no exception."""
    p = host_problem(c=[np.nan, 1.0], ub=[1.0, 1.0])
    for backend in ALL_BACKENDS:
        r = solve_host(backend, p, SolveOptions(), {})
        assert r.status == Status.ERROR and "invalid" in r.message

    @jax.jit
    def f(c):
        return tamejax.solve(MIP(c=c, ub=1.0), "glop")

    sol = f(np.array([np.nan, 1.0]))
    assert int(sol.status) == Status.ERROR and np.isnan(float(sol.objective))


# ------------------------------------------------------------------ model cache


def _solve_both(backend: str, instances: list[HostProblem], options: SolveOptions | None = None):
    """Solve each instance with one shared cache and with a fresh one; compare."""
    options = SolveOptions() if options is None else options
    shared: dict = {}
    for p in instances:
        a = solve_host(backend, p, options, shared)
        b = solve_host(backend, p, options, {})
        assert a.status == b.status, (backend, a.status, b.status, a.message, b.message)
        if a.status.has_solution:
            tol = 1e-4 * (1 + abs(b.objective)) if backend == "pdlp" else _tol(b.objective)
            assert abs(a.objective - b.objective) <= tol, (backend, a.objective, b.objective)
            assert_feasible(p, a.x, tol=1e-4 if backend == "pdlp" else 1e-6)
        else:
            assert a.objective == b.objective or math.isnan(a.objective) and math.isnan(b.objective)
    return shared


def _structure_sequence(integer: np.ndarray) -> list[HostProblem]:
    """Instances of one structure whose coefficients go to zero and back, and whose bounds
    become infinite (on continuous variables) and finite again."""
    n = len(integer)
    base = dict(
        c=np.array([1.0, -2.0, 0.5, -1.0]),
        A_ub=np.array([[1.0, 1.0, 1.0, 1.0], [2.0, -1.0, 0.0, 1.0]]),
        b_ub=np.array([4.0, 3.0]),
        A_eq=np.array([[1.0, -1.0, 1.0, 0.0]]),
        b_eq=np.array([0.0]),
        lb=np.full(n, -2.0),
        ub=np.full(n, 3.0),
        integrality=integer,
    )
    seq = [base]
    s = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in base.items()}
    s["A_ub"][0, 1] = 0.0  # nonzero -> zero
    s["c"][0] = 0.0
    s["A_eq"][0, 0] = 0.0
    seq.append(s)
    s = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
    cont = ~integer
    s["ub"] = np.where(cont, np.inf, s["ub"])  # finite -> +inf (continuous only)
    s["lb"] = np.where(cont, -np.inf, s["lb"])  # finite -> -inf
    s["A_ub"][1, 2] = -3.0  # zero -> nonzero
    s["b_ub"] = np.array([2.0, -1.0])
    seq.append(s)
    s = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in base.items()}
    s["b_eq"] = np.array([7.5])  # infeasible if x0, x1, x2 are all integer
    s["A_ub"][:] = 0.0  # every row coefficient to zero
    seq.append(s)
    seq.append(base)  # and back to the start
    return [host_problem(**kw) for kw in seq]


@pytest.mark.parametrize("backend", ("scip", "highs", "cbc", "glop", "pdlp", "cpsat"))
def test_model_cache_updates_match_fresh_models(backend):
    if backend in LP_BACKENDS:
        integer = np.zeros(4, bool)
    elif backend == "cpsat":
        integer = np.ones(4, bool)
    else:
        integer = np.array([True, False, True, False])
    seq = _structure_sequence(integer)
    _solve_both(backend, seq)
    if backend != "pdlp":
        shared = _solve_both(backend, seq, SolveOptions(duals=True))
        assert len(shared) >= 1
    # the bounded instances also match the oracle
    for p in seq:
        if np.all(np.isfinite(p.lb)) and np.all(np.isfinite(p.ub)):
            oracle = brute_force(p)
            r = solve_host(backend, p, SolveOptions(), {})
            _check_against_oracle(p, r, oracle, backend, rel=1e-4 if backend == "pdlp" else 1e-7)


_SEQ_VALUES = [-2.0, -1.0, -0.5, 0.0, 0.0, 0.0, 1.0 / 3.0, 1.0, 2.0]


@st.composite
def _instance_sequences(draw):
    """2-5 integer programs of one structure; entries often switch between zero and nonzero."""
    first = draw(tiny_programs(integer="all", box=2))
    seq = [first]
    for _ in range(draw(st.integers(1, 4))):
        fields = {}
        for k in ("c", "A_ub", "A_eq"):
            shape = getattr(first, k).shape
            vals = draw(
                st.lists(st.sampled_from(_SEQ_VALUES), min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))
            )
            fields[k] = np.array(vals, dtype=np.float64).reshape(shape)
        for k in ("b_ub", "b_eq"):
            m = getattr(first, k).shape[0]
            fields[k] = np.array([draw(st.integers(-3, 3)) for _ in range(m)], dtype=np.float64)
        lb = np.array([draw(st.integers(-2, 2)) for _ in range(first.n)], dtype=np.float64)
        ub = lb + np.array([draw(st.integers(0, 2)) for _ in range(first.n)])
        seq.append(HostProblem(**fields, lb=lb, ub=ub, integrality=first.integrality))
    return seq


@settings(max_examples=80, **SETTINGS)
@given(_instance_sequences())
def test_model_cache_property(seq):
    """Random sequences of one structure: a shared cache equals fresh caches, and the oracle."""
    shared = {backend: {} for backend in MIP_BACKENDS}
    for p in seq:
        oracle = brute_force(p)
        for backend in MIP_BACKENDS:
            r = solve_host(backend, p, SolveOptions(), shared[backend])
            _check_against_oracle(p, r, oracle, backend)


# ------------------------------------------------------------------ duals


def _dual_lp_1() -> tuple[HostProblem, float, np.ndarray, np.ndarray]:
    """min -x0 - x1 s.t. x0 + 2 x1 <= 4, 3 x0 + x1 <= 6, x >= 0.

    Vertex x = (8/5, 6/5), z = -14/5; A_B^T y = c gives y = (-2/5, -1/5) = dz/db.
    """
    p = host_problem(c=[-1.0, -1.0], A_ub=[[1.0, 2.0], [3.0, 1.0]], b_ub=[4.0, 6.0])
    return p, -14.0 / 5.0, np.array([-0.4, -0.2]), np.zeros(0)


def _dual_lp_2(x1_ub: float) -> tuple[HostProblem, float, np.ndarray, np.ndarray]:
    """min -x0 - 2 x1 + x2 s.t. x0 + x1 + x2 <= b_ub = 4, x0 - x1 = b_eq = 1, x >= 0, x1 <= u.

    With x0 = b_eq + x1 the value is -b_eq - 3 x1 + x2 and the row gives x1 <= (b_ub - b_eq)/2.
    * u = inf: x1 = 3/2, z = -1.5 b_ub + 0.5 b_eq = -5.5, y_ub = -1.5, y_eq = 0.5.
    * u = 1: x1 = 1 (bound active, row slack), z = -b_eq - 3 = -4, y_ub = 0, y_eq = -1,
      reduced costs r = c - A^T y = (0, -3, 1): dz/du = -3.
    """
    p = host_problem(
        c=[-1.0, -2.0, 1.0],
        A_ub=[[1.0, 1.0, 1.0]],
        b_ub=[4.0],
        A_eq=[[1.0, -1.0, 0.0]],
        b_eq=[1.0],
        ub=[np.inf, x1_ub, np.inf],
    )
    if math.isinf(x1_ub):
        return p, -5.5, np.array([-1.5]), np.array([0.5])
    return p, -4.0, np.array([0.0]), np.array([-1.0])


@pytest.mark.parametrize("backend", ("glop", "highs", "scip", "cbc", "pdlp"))
@pytest.mark.parametrize("case", ["two_rows", "eq_row", "bound_active"])
def test_duals_closed_form(backend, case):
    p, z, y_ub, y_eq = {
        "two_rows": _dual_lp_1,
        "eq_row": lambda: _dual_lp_2(np.inf),
        "bound_active": lambda: _dual_lp_2(1.0),
    }[case]()
    tol = 1e-4 if backend == "pdlp" else 1e-7
    r = solve_host(backend, p, SolveOptions(duals=True), {})
    assert r.status == Status.OPTIMAL
    assert abs(r.objective - z) <= tol
    np.testing.assert_allclose(r.dual_ub, y_ub, atol=tol)
    np.testing.assert_allclose(r.dual_eq, y_eq, atol=tol)
    assert np.all(r.dual_ub <= tol)  # <= rows of a minimization: dz/db <= 0
    rc = p.c - p.A_ub.T @ y_ub - p.A_eq.T @ y_eq
    np.testing.assert_allclose(r.reduced_cost, rc, atol=tol)
    if case == "bound_active":
        np.testing.assert_allclose(r.reduced_cost, [0.0, -3.0, 1.0], atol=tol)
    # dual = d value / d rhs, checked by finite differences with GLOP
    h = 1e-3
    for name, y in (("b_ub", y_ub), ("b_eq", y_eq)):
        for i in range(len(y)):
            vals = []
            for sign in (1.0, -1.0):
                b = getattr(p, name).copy()
                b[i] += sign * h
                q = dataclasses.replace(p, **{name: b})
                vals.append(solve_host("glop", q, SolveOptions(), {}).objective)
            np.testing.assert_allclose((vals[0] - vals[1]) / (2 * h), y[i], atol=1e-6)


def test_duals_through_bridge():
    p, z, y_ub, y_eq = _dual_lp_2(np.inf)
    for backend in ("glop", "scip"):
        sol = tamejax.solve(MIP(**mip_kwargs(p)), backend, duals=True)
        assert int(sol.status) == Status.OPTIMAL
        np.testing.assert_allclose(sol.objective, z, atol=1e-7)
        np.testing.assert_allclose(sol.dual_ub, y_ub, atol=1e-7)
        np.testing.assert_allclose(sol.dual_eq, y_eq, atol=1e-7)
    sol = tamejax.solve(MIP(**mip_kwargs(p)), "glop")
    assert sol.dual_ub is None and sol.dual_eq is None and sol.reduced_cost is None


@pytest.mark.parametrize("backend", MIP_BACKENDS)
@pytest.mark.parametrize("rel_gap", (None, 0.05))
def test_bound_is_a_proven_lower_bound(backend, rel_gap):
    """``bound`` never exceeds the true optimum, whatever the gap (HiGHS's own "best bound"
    through OR-Tools is its incumbent: tamejax derives a proven bound from the gap rule)."""
    rng = np.random.default_rng(3)
    n = 30
    w = rng.integers(1, 60, size=n).astype(float)
    v = rng.integers(1, 60, size=n).astype(float)
    p = host_problem(c=-v, A_ub=[w], b_ub=[np.floor(w.sum() / 2)], ub=np.ones(n), integrality=True)
    exact = solve_host("scip", p, SolveOptions(rel_gap=0.0), {})
    assert exact.status == Status.OPTIMAL
    r = solve_host(backend, p, SolveOptions(rel_gap=rel_gap), {})
    assert r.status == Status.OPTIMAL, (r.status, r.message)
    assert r.bound <= exact.objective + 1e-9
    assert r.objective >= exact.objective - 1e-9
    assert r.bound <= r.objective
    gap = 1e-4 if rel_gap is None else rel_gap
    assert r.objective - exact.objective <= gap * abs(exact.objective) + 1e-6
