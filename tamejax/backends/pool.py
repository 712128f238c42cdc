"""A pool of solver worker processes.

OR-Tools solvers hold the GIL, so threads give no speed-up: a batch is spread over worker
*processes*. Each worker is a fresh ``python -m tamejax.backends.worker`` (not a fork of a
process that runs JAX threads, and independent of the user's ``__main__``), talks over its
stdin/stdout pipes with length-prefixed pickles, and keeps a cache of built models
(structure -> model), so repeated solves of the same structure only update coefficients.

Dispatch: problems travel in guided chunks (at most ``MAX_CHUNK``, about a quarter of what
remains per worker, down to single problems at the end), which amortizes the pipe round trip
for small problems and still balances the load.

Failure handling: a worker that dies (or, when a time limit is set, exceeds the hard deadline
``time_limit * chunk size + grace``, doubled with duals since the fixed LP has its own time
limit) is replaced. The problems of its chunk are requeued to be solved one by one, without
counting the failure against them; a problem that fails a worker on its own is retried once on
a fresh worker, and a second failure gives status ``ERROR`` for that problem only. ``map``
always returns one result per problem, in order. A batch interrupted in the parent
(``KeyboardInterrupt``) kills the workers still busy, so no stale answer can reach a later
batch; workers ignore SIGINT.
"""

from __future__ import annotations

import atexit
import math
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from multiprocessing.connection import wait

import numpy as np

from tamejax.backends import _BUILTIN, _REGISTRY, HostProblem, HostResult, SolveOptions, Status, solve_host
from tamejax.backends.base import structure_key

__all__ = ["WorkerPool", "get_pool", "set_workers", "get_workers"]

_HEADER = struct.Struct("<Q")
GRACE_SECONDS = 30.0
MAX_CHUNK = 16  # problems per message to a worker (at most, unless the problems are cheap)
MIN_CHUNK_SECONDS = 0.005  # cheap problems (known from past solves) travel in chunks of ~this much work
PIPELINE_BELOW_SECONDS = 0.005  # problems cheaper than this: a second chunk waits in each worker's pipe
# ... provided its frame fits in the pipe's buffer (64 KiB on Linux) with room to spare: the
# parent must never block writing to a worker that is itself blocked writing its answer.
PIPELINE_MAX_FRAME = 32 * 1024
MAX_ADAPTIVE_CHUNK = 256  # cheap problems: at most this many per chunk
IN_PROCESS_BELOW_SECONDS = 0.008  # a batch needing less solver time than this: solved in-process


def write_frame(stream, obj, data: bytes | None = None) -> None:
    """Write one length-prefixed pickle (of ``obj``, or the bytes ``data`` already pickled),
    looping over partial writes of unbuffered streams."""
    if data is None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        written = stream.write(view)
        view = view[written if written is not None else len(view) :]
    stream.flush()


_PROBLEM_FIELDS = ("c", "A_ub", "b_ub", "A_eq", "b_eq", "lb", "ub", "integrality", "input_dtype", "checked")


def pack_problems(problems: list[HostProblem]) -> tuple:
    """A compact wire form of a chunk: a field that is one object for the whole chunk travels
    once (and stays one object on arrival, which lets backends skip re-loading it), the others
    as one stacked array. Much cheaper to pickle than a list of dataclasses."""
    fields = {}
    for name in _PROBLEM_FIELDS:
        first = getattr(problems[0], name)
        if all(getattr(p, name) is first for p in problems):
            fields[name] = ("shared", first)
        elif isinstance(first, np.ndarray) and all(getattr(p, name).shape == first.shape for p in problems):
            fields[name] = ("stacked", np.stack([getattr(p, name) for p in problems]))
        else:
            fields[name] = ("list", [getattr(p, name) for p in problems])
    return len(problems), fields


def unpack_problems(packed: tuple) -> list[HostProblem]:
    """Inverse of ``pack_problems``."""
    k, fields = packed
    cols = {}
    for name, (kind, v) in fields.items():
        cols[name] = [v] * k if kind == "shared" else list(v)
    return [HostProblem(**{name: cols[name][i] for name in _PROBLEM_FIELDS}) for i in range(k)]


def pack_results(results: list[HostResult]) -> tuple:
    """A compact wire form of a chunk's results (stacked arrays instead of dataclasses)."""
    xs = [r.x for r in results]
    x = np.stack(xs) if all(v.shape == xs[0].shape for v in xs) else xs
    scalars = np.array([(r.objective, r.bound, float(int(r.status)), r.solve_time) for r in results], np.float64)
    duals = {}
    for name in ("dual_ub", "dual_eq", "reduced_cost"):
        vals = [getattr(r, name) for r in results]
        same = all(v is not None and v.shape == vals[0].shape for v in vals)
        duals[name] = np.stack(vals) if same else vals
    return x, scalars, duals, [r.message for r in results]


def unpack_results(packed: tuple) -> list[HostResult]:
    """Inverse of ``pack_results``."""
    x, scalars, duals, messages = packed
    out = []
    for i in range(len(x)):
        obj, bound, status, t = scalars[i]
        out.append(
            HostResult(
                x[i],
                float(obj),
                float(bound),
                Status(int(status)),
                *(duals[name][i] for name in ("dual_ub", "dual_eq", "reduced_cost")),
                solve_time=float(t),
                message=messages[i],
            )
        )
    return out


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int):
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size))
    return pickle.loads(_read_exact(fd, size))


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env.setdefault("OMP_NUM_THREADS", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tamejax.backends.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            bufsize=0,
        )
        self.fd = self.proc.stdout.fileno()
        # Chunks sent and not answered yet, in order (the worker solves them first in, first
        # out): the head is being solved; the others wait in the pipe, which hides the round
        # trip between two chunks of cheap problems.
        self.tasks: list[list[int]] = []
        self.started = 0.0  # when the head chunk started

    @property
    def task(self) -> list[int] | None:
        """The chunk being solved (``None`` when idle)."""
        return self.tasks[0] if self.tasks else None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, data: bytes) -> None:
        write_frame(self.proc.stdin, None, data)

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:  # pragma: no cover
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        for s in (self.proc.stdin, self.proc.stdout):
            try:
                s.close()
            except OSError:  # pragma: no cover
                pass


class WorkerPool:
    """``size`` solver processes; ``map`` solves a list of problems, one result each."""

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"WorkerPool: expected size >= 1, got {size!r}")
        self.size = size
        self.workers: list[_Worker] = []
        self.lock = threading.Lock()
        self.restarts = 0
        # Seconds per problem seen recently, per backend and structure (exponential moving average): lets
        # cheap problems (small LPs) travel in larger chunks, since a round trip to a worker
        # costs more than solving one of them.
        self.cost: dict[tuple, float] = {}

    def _ensure(self) -> None:
        self.workers = [w for w in self.workers if w.proc.poll() is None]
        while len(self.workers) < self.size:
            self.workers.append(_Worker())

    def pids(self) -> list[int]:
        """Process ids of the live workers (starting them if needed)."""
        with self.lock:
            self._ensure()
            return [w.pid for w in self.workers]

    def map(self, backend: str, problems: list[HostProblem], options: SolveOptions) -> list[HostResult]:
        """Solve ``problems`` (one result each, in order); thread-safe, calls are serialized."""
        with self.lock:
            try:
                return self._map(backend, problems, options)
            except BaseException:
                # Interrupted (e.g. KeyboardInterrupt inside the JAX callback): workers still
                # busy would later answer with this batch's results. Replace them.
                for w in [w for w in self.workers if w.tasks]:
                    w.kill()
                    self.workers.remove(w)
                raise

    def _map(self, backend: str, problems: list[HostProblem], options: SolveOptions) -> list[HostResult]:
        self._ensure()
        results: list[HostResult | None] = [None] * len(problems)
        attempts = [0] * len(problems)  # crashes of a worker that held this problem alone
        pending = list(range(len(problems)))[::-1]  # pop() from the end = in order
        # The registry target travels with the task, so that backends registered in this
        # process (register_backend) work in workers too.
        target = _REGISTRY.get(backend)
        cost_key = (backend, structure_key(problems[0])) if problems else None
        singles: set[int] = set()  # problems to send alone (their chunk crashed a worker)
        # Hard deadline per problem: the solve and, with duals, the fixed-LP solve, each with
        # its own time limit. Without a time limit a solve may legitimately take any time.
        deadline = None if options.time_limit is None else options.time_limit * (2 if options.duals else 1)
        while pending or any(w.tasks for w in self.workers):
            est = self.cost.get(cost_key)
            # Cheap problems (known from past solves): one chunk queued behind the one being
            # solved. Expensive ones: one at a time, which keeps the end of a batch balanced.
            depth = 2 if est is not None and est < PIPELINE_BELOW_SECONDS else 1
            for w in self.workers:
                while len(w.tasks) < depth and pending:
                    # Guided chunks: large while much work remains (amortizes the pipe round
                    # trip), down to single problems at the end (balances the load).
                    # Problems requeued after a crash go alone.
                    size = max(1, min(MAX_CHUNK, len(pending) // (2 * len(self.workers))))
                    if est is not None:  # at least MIN_CHUNK_SECONDS of work, at most a fair share
                        fair = -(-len(pending) // (depth * len(self.workers)))
                        by_time = math.ceil(MIN_CHUNK_SECONDS / max(est, 1e-6))
                        size = max(size, min(fair, by_time, MAX_ADAPTIVE_CHUNK))
                    chunk = [pending.pop()]
                    while len(chunk) < size and pending and chunk[0] not in singles and pending[-1] not in singles:
                        chunk.append(pending.pop())
                    msg = (chunk, backend, target, pack_problems([problems[i] for i in chunk]), options)
                    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
                    if w.tasks and len(data) > PIPELINE_MAX_FRAME:
                        pending.extend(chunk[::-1])  # too big to queue behind a running chunk
                        break
                    if not w.tasks:
                        w.started = time.monotonic()
                    w.tasks.append(chunk)
                    try:
                        w.send(data)
                    except (BrokenPipeError, OSError):
                        break  # noticed below as a dead worker
            busy = [w for w in self.workers if w.tasks]
            timeout = 1.0  # wake up in time for the nearest deadline
            if deadline is not None and busy:
                due = min(w.started + deadline * len(w.task) + GRACE_SECONDS for w in busy)
                timeout = min(timeout, max(0.01, due - time.monotonic()))
            ready = wait([w.fd for w in busy], timeout=timeout)
            now = time.monotonic()
            for w in busy:
                failed = False
                if w.fd in ready:
                    try:
                        chunk, packed = read_frame(w.fd)
                        if chunk != w.task:  # pragma: no cover - a protocol violation
                            raise pickle.UnpicklingError(f"worker answered {chunk}, expected {w.task}")
                        chunk_results = unpack_results(packed)
                        for i, r in zip(chunk, chunk_results, strict=True):
                            results[i] = r
                        mean = sum(r.solve_time for r in chunk_results) / len(chunk_results)
                        old = self.cost.get(cost_key)
                        self.cost[cost_key] = mean if old is None else 0.7 * old + 0.3 * mean
                        w.tasks.pop(0)
                        w.started = now
                        continue
                    except (EOFError, OSError, pickle.UnpicklingError):
                        failed = True
                elif w.proc.poll() is not None:
                    # Dead: but answers it wrote before dying may still be in the pipe (a
                    # queued chunk may be the culprit). Its pipe is readable (data or end of
                    # file): the next round reads them, and blames the chunk it stopped at.
                    failed = not wait([w.fd], timeout=0)
                elif deadline is not None and now - w.started > deadline * len(w.task) + GRACE_SECONDS:
                    failed = True
                if failed:
                    # The worker solves its chunks in order: the head one was running. The
                    # chunks behind it were not started: requeue them as they were.
                    for later in w.tasks[:0:-1]:
                        pending.extend(later[::-1])
                    self._replace(w, w.tasks[0], problems, attempts, pending, singles, results)
        return results  # type: ignore[return-value]

    def _replace(
        self,
        w: _Worker,
        chunk: list[int],
        problems: list[HostProblem],
        attempts: list[int],
        pending: list[int],
        singles: set[int],
        results: list[HostResult | None],
    ) -> None:
        """A worker died (or overran): replace it and requeue its problems fairly.

        Problems of a multi-problem chunk are requeued to be solved one by one, without
        counting the crash against them (any of them may have caused it); a problem that was
        alone on the worker is retried once, then reported with status ``ERROR``.
        """
        w.kill()
        self.restarts += 1
        self.workers.remove(w)
        self.workers.append(_Worker())
        if len(chunk) > 1:
            pending.extend(chunk[::-1])
            singles.update(chunk)
            return
        (i,) = chunk
        attempts[i] += 1
        if attempts[i] < 2:
            pending.append(i)
        else:
            results[i] = HostResult.failed(
                problems[i].n, Status.ERROR, "solver worker crashed (or overran its deadline) twice on this problem"
            )

    def close(self) -> None:
        with self.lock:
            for w in self.workers:
                try:
                    w.proc.stdin.close()
                except OSError:  # pragma: no cover
                    pass
            for w in self.workers:
                try:
                    w.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    w.kill()
            self.workers = []


class ModelCache(OrderedDict):
    """Least-recently-used cache of built solver models (structure -> model), bounded."""

    def __init__(self, maxsize: int = 64) -> None:
        super().__init__()
        self.maxsize = maxsize

    def get(self, key, default=None):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.maxsize:
            self.popitem(last=False)


_POOL: WorkerPool | None = None
_WORKERS: int = max(1, min(os.cpu_count() or 1, 8))
_IN_PROCESS_CACHE = ModelCache()
_IN_PROCESS_LOCK = threading.Lock()  # callbacks may run concurrently (shard_map)
_GLOBAL_LOCK = threading.Lock()


def set_workers(n: int) -> None:
    """Set the number of solver worker processes (``0``: solve in the calling process).

    The default is the number of CPU cores (at most 8). ``0`` avoids process start-up and
    pickling, at the price of no crash isolation and no parallelism.
    """
    global _WORKERS, _POOL
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"set_workers: expected an integer >= 0, got {n!r}")
    with _GLOBAL_LOCK:
        if _POOL is not None and _POOL.size != n:
            _POOL.close()
            _POOL = None
        _WORKERS = n


def get_workers() -> int:
    """The configured number of worker processes."""
    return _WORKERS


def get_pool() -> WorkerPool | None:
    """The process-wide pool (created on first use), or ``None`` when ``set_workers(0)``."""
    global _POOL
    with _GLOBAL_LOCK:
        if _WORKERS == 0:
            return None
        if _POOL is None:
            _POOL = WorkerPool(_WORKERS)
        return _POOL


def _solve_in_process(backend: str, problems: list[HostProblem], options: SolveOptions) -> list[HostResult]:
    with _IN_PROCESS_LOCK:  # the cached models are not thread-safe
        return [solve_host(backend, p, options, _IN_PROCESS_CACHE) for p in problems]


def solve_many(backend: str, problems: list[HostProblem], options: SolveOptions) -> list[HostResult]:
    """Solve a list of problems with the configured pool (or in-process).

    A batch of cheap problems, known from earlier solves of the same structure by one of the
    built-in backends to take less than ``IN_PROCESS_BELOW_SECONDS`` of solver time in all, is
    solved in the calling process: the round trips to the workers would cost more than the
    solves (e.g. 32 small LPs of a training step).
    """
    pool = get_pool()
    if pool is None:
        return _solve_in_process(backend, problems, options)
    if problems and _REGISTRY.get(backend) == _BUILTIN.get(backend) and options.time_limit is None:
        key = (backend, structure_key(problems[0]))
        est = pool.cost.get(key)
        if est is not None and est * len(problems) < IN_PROCESS_BELOW_SECONDS:
            results = _solve_in_process(backend, problems, options)
            mean = sum(r.solve_time for r in results) / len(results)
            pool.cost[key] = 0.7 * est + 0.3 * mean
            return results
    return pool.map(backend, problems, options)


@atexit.register
def _shutdown() -> None:
    if _POOL is not None:
        _POOL.close()


def _after_fork_in_child() -> None:
    # A forked child must not share the parent's worker pipes: it starts its own pool.
    global _POOL, _GLOBAL_LOCK, _IN_PROCESS_LOCK
    _POOL = None
    _GLOBAL_LOCK = threading.Lock()
    _IN_PROCESS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
