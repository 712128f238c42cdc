"""The solver worker pool: order, crash recovery, retries, in-process mode, validation.

Every call that could hang on a broken pool runs in a daemon thread joined with a timeout, so
a regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from crash_backend import CRASH_MARKER
from oracles import brute_force, host_problem

import tamejax
import tamejax.backends as backends
from tamejax import MIP, Status
from tamejax.backends import HostProblem, SolveOptions
from tamejax.backends.pool import WorkerPool, get_pool

TIMEOUT = 120.0  # generous: a healthy run takes a few seconds; only a hang reaches it


def run_with_timeout(fn: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """``fn()`` in a daemon thread; fail (instead of hanging) if it does not return in time."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"call did not return within {timeout} s: the pool hangs")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _problem(k: int) -> HostProblem:
    """min -x0 - 2 x1 s.t. x0 + x1 <= k, 0 <= x <= k, integer: unique optimum (0, k), -2k."""
    return host_problem(c=[-1.0, -2.0], A_ub=[[1.0, 1.0]], b_ub=[float(k)], ub=[k, k], integrality=True)


def _crash_problem() -> HostProblem:
    return host_problem(c=[CRASH_MARKER, 1.0], ub=[1.0, 1.0], integrality=True)


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    p = WorkerPool(2)
    try:
        yield p
    finally:
        run_with_timeout(p.close, 30)


@pytest.fixture
def test_backends() -> Iterator[None]:
    """Register the test-only ``crash`` and ``slow`` backends (``tests/crash_backend.py``)."""
    backends.register_backend("crash", "crash_backend:factory")
    backends.register_backend("slow", "crash_backend:slow")
    try:
        yield
    finally:
        for name in ("crash", "slow"):
            backends._REGISTRY.pop(name, None)
            backends._INSTANCES.pop(name, None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------------ basics


def test_map_returns_one_result_per_problem_in_order(pool):
    problems = [_problem(k) for k in range(12)]
    results = run_with_timeout(lambda: pool.map("scip", problems, SolveOptions()))
    assert len(results) == 12
    for k, r in enumerate(results):
        assert r.status == Status.OPTIMAL, r.message
        assert r.objective == -2.0 * k
        np.testing.assert_array_equal(r.x, [0.0, k])
    assert pool.restarts == 0
    assert run_with_timeout(lambda: pool.map("scip", [], SolveOptions())) == []


def test_map_mixes_backends_and_structures(pool):
    """One pool (and each worker's model cache) serves several backends and structures."""
    problems = [_problem(k) for k in range(4)] + [
        host_problem(c=[1.0, -1.0, 2.0], A_eq=[[1.0, 1.0, 1.0]], b_eq=[2.0], ub=2.0, integrality=True)
    ]
    oracles = [brute_force(p) for p in problems]
    for backend in ("cpsat", "highs", "scip", "cbc"):
        results = run_with_timeout(lambda b=backend: pool.map(b, problems, SolveOptions()))
        for r, o in zip(results, oracles, strict=True):
            assert r.status == Status.OPTIMAL
            assert abs(r.objective - o.objective) <= 1e-9


def test_pids_and_close(pool):
    pids = pool.pids()
    assert len(pids) == 2 and len(set(pids)) == 2
    assert os.getpid() not in pids
    assert all(_alive(pid) for pid in pids)
    assert pool.pids() == pids  # live workers are kept
    run_with_timeout(pool.close, 30)
    assert not any(_alive(pid) for pid in pids)
    # a closed pool starts fresh workers when used again
    results = run_with_timeout(lambda: pool.map("scip", [_problem(3)], SolveOptions()))
    assert results[0].objective == -6.0


def test_concurrent_maps_are_serialized(pool):
    out: dict[int, list] = {}

    def work(i: int) -> None:
        out[i] = pool.map("scip", [_problem(k + i) for k in range(5)], SolveOptions())

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive(), "concurrent map calls hang"
    for i in range(3):
        assert [r.objective for r in out[i]] == [-2.0 * (k + i) for k in range(5)]


def test_pool_size_validated():
    for bad in (0, -1, 1.5, "2", None):
        with pytest.raises(ValueError, match="size"):
            WorkerPool(bad)


# ------------------------------------------------------------------ crashes


def test_killed_worker_mid_batch_is_replaced_and_problem_retried(pool, test_backends):
    problems = [_problem(k) for k in range(8)]  # 8 x 0.4 s on 2 workers: >= 1.6 s of work
    pids = pool.pids()  # start the workers before the batch (pids() waits for map's lock)
    box: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: box.setdefault("results", pool.map("slow", problems, SolveOptions())),
        daemon=True,
    )
    thread.start()
    # wait until the victim holds a task (it then sleeps 0.4 s in the backend), then kill it
    victim = next(w for w in pool.workers if w.pid == pids[0])
    waited = 0.0
    while victim.task is None and waited < TIMEOUT:
        time.sleep(0.01)
        waited += 0.01
    assert victim.task is not None, "the batch never reached the worker"
    os.kill(pids[0], signal.SIGKILL)
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "map hangs after a worker was killed"
    results = box["results"]
    assert len(results) == 8
    for k, r in enumerate(results):
        assert r.status == Status.OPTIMAL, (k, r.status, r.message)
        assert r.objective == -2.0 * k
    assert pool.restarts >= 1
    new_pids = pool.pids()
    assert pids[0] not in new_pids and len(new_pids) == 2


def test_crashing_backend_gives_error_after_one_retry(pool, test_backends):
    problems = [_problem(1), _crash_problem(), _problem(2), _problem(3), _problem(4)]
    results = run_with_timeout(lambda: pool.map("crash", problems, SolveOptions()))
    statuses = [r.status for r in results]
    ok, err = Status.OPTIMAL, Status.ERROR
    assert statuses == [ok, err, ok, ok, ok]
    assert [results[i].objective for i in (0, 2, 3, 4)] == [-2.0, -4.0, -6.0, -8.0]
    bad = results[1]
    assert math.isnan(bad.objective) and np.all(np.isnan(bad.x))
    assert "crashed" in bad.message
    assert pool.restarts == 2  # first attempt and the one retry
    # the pool is healthy afterwards
    again = run_with_timeout(lambda: pool.map("scip", [_problem(5)], SolveOptions()))
    assert again[0].objective == -10.0


def test_crash_inside_a_chunk_blames_only_the_culprit(pool, test_backends):
    """A large batch travels in multi-problem chunks; a crash requeues the chunk's problems
    one by one without counting it against them, so only the culprit ends in ERROR."""
    problems = [_problem(k % 7 + 1) for k in range(60)]
    problems[23] = _crash_problem()
    results = run_with_timeout(lambda: pool.map("crash", problems, SolveOptions()))
    assert len(results) == 60
    for k, r in enumerate(results):
        if k == 23:
            assert r.status == Status.ERROR and "crashed" in r.message
        else:
            assert r.status == Status.OPTIMAL, (k, r.status, r.message)
            assert r.objective == -2.0 * (k % 7 + 1)
    # one crash with the chunk, then two alone (first attempt and the retry)
    assert pool.restarts == 3


def test_crash_through_solve_bridge(test_backends):
    """Through ``tamejax.solve`` and the process-wide pool: one ERROR, the rest solved."""
    assert tamejax.get_workers() >= 1
    c = np.array([[-1.0, -2.0], [CRASH_MARKER, 1.0], [-1.0, -2.0]])
    problem = MIP(c=c, A_ub=[[1.0, 1.0]], b_ub=[3.0], ub=3.0, integrality=True)
    sol = run_with_timeout(lambda: tamejax.solve(problem, "crash"))
    assert list(sol.status_names()) == ["OPTIMAL", "ERROR", "OPTIMAL"]
    np.testing.assert_array_equal(np.asarray(sol.objective)[[0, 2]], [-6.0, -6.0])
    assert np.isnan(float(sol.objective[1]))
    assert np.all(np.isnan(np.asarray(sol.x[1])))
    pool = get_pool()
    assert pool is not None and pool.restarts >= 2


# ------------------------------------------------------------------ in-process mode


@pytest.fixture
def restore_workers() -> Iterator[None]:
    before = tamejax.get_workers()
    try:
        yield
    finally:
        tamejax.set_workers(before)


def _batch() -> tuple[MIP, list[HostProblem]]:
    problems = [_problem(k) for k in range(6)] + [
        host_problem(c=[1.0, 1.0], A_ub=[[-1.0, -1.0]], b_ub=[-5.0], ub=[2.0, 2.0], integrality=True)
    ]  # the last one is infeasible
    stacked = {
        k: np.stack([getattr(p, k) for p in problems]) for k in ("c", "A_ub", "b_ub", "A_eq", "b_eq", "lb", "ub")
    }
    return MIP(**stacked, integrality=True), problems


def test_in_process_mode_gives_same_results(restore_workers):
    problem, problems = _batch()
    tamejax.set_workers(2)
    pooled = run_with_timeout(lambda: tamejax.solve(problem, "scip"))
    assert get_pool() is not None and get_pool().size == 2
    tamejax.set_workers(0)
    assert tamejax.get_workers() == 0
    assert get_pool() is None
    local = tamejax.solve(problem, "scip")
    np.testing.assert_array_equal(local.status, pooled.status)
    np.testing.assert_array_equal(local.objective, pooled.objective)
    np.testing.assert_array_equal(local.x, pooled.x)
    expected = [brute_force(p).objective for p in problems]
    np.testing.assert_array_equal(local.objective, expected)
    assert list(local.status_names())[-1] == "INFEASIBLE"
    # in-process value() works too
    np.testing.assert_array_equal(tamejax.value(problem, "scip"), expected)


def test_set_workers_resizes_pool(restore_workers):
    tamejax.set_workers(1)
    assert tamejax.get_workers() == 1
    pool = get_pool()
    assert pool is not None and pool.size == 1
    problem, problems = _batch()
    sol = run_with_timeout(lambda: tamejax.solve(problem, "cbc"))
    np.testing.assert_array_equal(sol.objective, [brute_force(p).objective for p in problems])
    tamejax.set_workers(2)
    assert get_pool() is not pool and get_pool().size == 2


@pytest.mark.parametrize("bad", [-1, 1.5, "2", None, [2]])
def test_set_workers_validates(bad, restore_workers):
    before = tamejax.get_workers()
    with pytest.raises(ValueError, match="set_workers"):
        tamejax.set_workers(bad)
    assert tamejax.get_workers() == before


# ------------------------------------------------------------------ interruption, deadlines


def test_interrupted_map_does_not_leak_results(pool, test_backends):
    """A KeyboardInterrupt inside ``map`` (Ctrl-C during a JAX callback) must not let the
    interrupted batch's answers reach the next batch."""
    slow_batch = [_problem(k) for k in range(100, 108)]

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)  # mid-batch: each slow solve takes 0.4 s
        with pytest.raises(KeyboardInterrupt):
            pool.map("slow", slow_batch, SolveOptions())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    results = run_with_timeout(lambda: pool.map("scip", [_problem(k) for k in range(1, 5)], SolveOptions()))
    assert [r.objective for r in results] == [-2.0, -4.0, -6.0, -8.0]


def test_overrunning_worker_is_killed_then_error(pool, test_backends, monkeypatch):
    """With a time limit, a worker past ``time_limit * chunk + grace`` is killed like a crash:
    the problem is retried once, then reported ERROR, and the batch returns."""
    import tamejax.backends.pool as pool_module

    monkeypatch.setattr(pool_module, "GRACE_SECONDS", 0.05)
    options = SolveOptions(time_limit=0.01)  # the slow backend sleeps 0.4 s before solving
    t0 = time.monotonic()
    results = run_with_timeout(lambda: pool.map("slow", [_problem(3)], options))
    assert results[0].status == Status.ERROR
    assert "deadline" in results[0].message
    assert pool.restarts == 2
    assert time.monotonic() - t0 < 10.0


def test_in_process_solving_is_thread_safe(restore_workers):
    """``set_workers(0)``: concurrent callbacks (as under shard_map) share the cached models,
    so they are serialized; every thread gets its own correct answers."""
    tamejax.set_workers(0)
    problems = {t: [_problem(k) for k in range(1 + t, 9 + t)] for t in range(4)}
    out: dict[int, list[float]] = {}

    def work(t: int) -> None:
        for _ in range(3):
            rs = backends.pool.solve_many("scip", problems[t], SolveOptions())
            out[t] = [r.objective for r in rs]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(TIMEOUT)
    for t in range(4):
        assert out[t] == [-2.0 * k for k in range(1 + t, 9 + t)]


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # the child does not use JAX
def test_forked_child_starts_its_own_pool(restore_workers):
    """A forked child must not talk to the parent's workers through shared pipes."""
    tamejax.set_workers(1)
    parent_pool = get_pool()
    parent_pool.pids()
    pid = os.fork()
    if pid == 0:  # child: a fresh pool, correct answers, parent's workers untouched
        code = 1
        try:
            child_pool = get_pool()
            ok = child_pool is not parent_pool
            r = child_pool.map("scip", [_problem(2)], SolveOptions())
            code = 0 if ok and r[0].objective == -4.0 else 2
            child_pool.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert parent_pool.map("scip", [_problem(3)], SolveOptions())[0].objective == -6.0


def test_model_cache_is_bounded():
    from tamejax.backends.pool import ModelCache

    cache = ModelCache(maxsize=3)
    for k in range(5):
        cache[k] = k
    assert list(cache) == [2, 3, 4]
    assert cache.get(2) == 2  # a hit refreshes the entry
    cache[5] = 5
    assert list(cache) == [4, 2, 5]


# ---------------------------------------------------------------------------- wire format and batch validation
def test_pack_problems_round_trip_keeps_shared_fields_shared():
    from tamejax.backends.pool import pack_problems, unpack_problems

    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 4))
    probs = [
        HostProblem(
            rng.normal(size=4),
            A,
            np.ones(3),
            np.zeros((0, 4)),
            np.zeros(0),
            np.zeros(4),
            np.ones(4),
            np.array([True, False, True, False]),
            "float32",
            checked=bool(i % 2),
        )
        for i in range(5)
    ]
    import pickle

    back = unpack_problems(pickle.loads(pickle.dumps(pack_problems(probs))))
    assert len(back) == 5
    for p, q in zip(probs, back, strict=True):
        for f in ("c", "A_ub", "b_ub", "A_eq", "b_eq", "lb", "ub", "integrality"):
            np.testing.assert_array_equal(getattr(p, f), getattr(q, f))
        assert (p.input_dtype, p.checked) == (q.input_dtype, q.checked)
    assert all(q.A_ub is back[0].A_ub for q in back)  # one object after the trip: backends skip reloading it
    # Problems of different shapes (e.g. pool.map over mixed structures) travel as lists.
    mixed = probs[:2] + [
        HostProblem(
            np.ones(2),
            np.ones((1, 2)),
            np.ones(1),
            np.zeros((0, 2)),
            np.zeros(0),
            np.zeros(2),
            np.ones(2),
            np.zeros(2, bool),
        )
    ]
    back = unpack_problems(pack_problems(mixed))
    np.testing.assert_array_equal(back[2].c, np.ones(2))


def test_pack_results_round_trip():
    from tamejax.backends import HostResult
    from tamejax.backends.pool import pack_results, unpack_results

    rs = [
        HostResult(np.arange(3.0), 1.5, 1.0, Status.OPTIMAL, np.ones(2), np.zeros(0), np.ones(3), 0.25, "a"),
        HostResult.failed(3, Status.INFEASIBLE, "no"),
    ]
    back = unpack_results(pack_results(rs))
    assert back[0].status == Status.OPTIMAL and back[0].objective == 1.5 and back[0].message == "a"
    np.testing.assert_array_equal(back[0].dual_ub, np.ones(2))
    assert back[1].status == Status.INFEASIBLE and back[1].objective == math.inf and back[1].dual_ub is None
    assert np.isnan(back[1].x).all()


def test_batch_validation_agrees_with_invalid_reason():
    from tamejax.solve import _host_problems

    rng = np.random.default_rng(1)
    B, n, m = 12, 3, 2
    arrays = {
        "c": rng.normal(size=(B, n)),
        "A_ub": rng.normal(size=(1, m, n)),
        "b_ub": rng.normal(size=(B, m)),
        "A_eq": np.zeros((1, 0, n)),
        "b_eq": np.zeros((1, 0)),
        "lb": np.zeros((B, n)),
        "ub": np.ones((B, n)),
    }
    arrays["c"][1, 0] = np.nan
    arrays["b_ub"][2, 1] = np.inf
    arrays["lb"][3, 2] = 2.0  # lb > ub
    arrays["lb"][4, 0] = np.inf
    arrays["ub"][5, 1] = -np.inf
    arrays["ub"][6, 1] = np.nan
    arrays["ub"][7, 2] = np.inf  # fine
    arrays["lb"][8, 0] = -np.inf  # fine
    _, probs = _host_problems(arrays, np.zeros(n, bool), "float64")
    for p in probs:
        assert p.checked == (p.invalid_reason() is None)
    assert [p.checked for p in probs] == [True, False, False, False, False, False, False, True, True, True, True, True]
    assert all(p.A_ub is probs[0].A_ub for p in probs)  # a field shared by the batch is one array


# ---------------------------------------------------------------------------- pipelined chunks (cheap problems)
def test_pipelined_chunks_with_large_frames_do_not_deadlock():
    # Cheap LPs with 1000 variables: adaptive chunks would exceed the pipe buffer; a second
    # chunk must only be queued behind a running one when its frame is small (no deadlock).
    n, B = 1000, 300
    base = np.linspace(-1.0, 1.0, n)
    probs = []
    for i in range(B):
        c = base.copy()
        c[i % n] = 5.0
        probs.append(host_problem(c=c, ub=np.ones(n)))
    pool = WorkerPool(1)
    try:
        for _ in range(2):  # the second batch runs with a cost estimate, hence pipelined
            results = run_with_timeout(lambda: pool.map("glop", probs, SolveOptions()), 60)
            assert all(r.status == Status.OPTIMAL for r in results)
            for p, r in zip(probs, results, strict=True):
                np.testing.assert_array_equal(r.x, (p.c < 0).astype(float))
    finally:
        run_with_timeout(pool.close, 30)


def test_crash_in_a_queued_chunk_is_blamed_on_it(pool, test_backends):
    warm = [_problem(k % 5) for k in range(60)]
    run_with_timeout(lambda: pool.map("crash", warm, SolveOptions()))  # learns that they are cheap
    assert pool.cost, "the pool should have a cost estimate after a batch"
    problems = [_problem(k % 5) for k in range(60)]
    problems[41] = _crash_problem()
    results = run_with_timeout(lambda: pool.map("crash", problems, SolveOptions()))
    for k, r in enumerate(results):
        if k == 41:
            assert r.status == Status.ERROR and "crashed" in r.message
        else:
            assert r.status == Status.OPTIMAL, (k, r.status, r.message)
            assert r.objective == -2.0 * (k % 5)
    assert 2 <= pool.restarts <= 3  # the chunk holding it, then it alone (and its retry)


def test_cheap_small_batches_are_solved_in_process(monkeypatch):
    from tamejax.backends import pool as pool_module

    pool = get_pool()
    assert pool is not None
    probs = [_problem(k % 5) for k in range(40)]
    run_with_timeout(lambda: pool_module.solve_many("scip", probs, SolveOptions()))  # learns their cost
    key = ("scip", backends.base.structure_key(probs[0]))
    pool.cost[key] = 1e-5  # cheap for sure, whatever this machine's speed
    calls = []
    monkeypatch.setattr(pool, "map", lambda *a: calls.append(a) or [])
    results = pool_module.solve_many("scip", probs[:8], SolveOptions())
    assert not calls and [r.objective for r in results] == [-2.0 * (k % 5) for k in range(8)]
    # ... but not with a time limit (there is no deadline in-process).
    pool_module.solve_many("scip", probs[:8], SolveOptions(time_limit=5.0))
    assert len(calls) == 1
