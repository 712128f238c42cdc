"""Entry point of a solver worker process: ``python -m tamejax.backends.worker``.

Reads ``(task_ids, backend, target, packed problems, SolveOptions)`` frames (a chunk of
problems, ``pool.pack_problems``) on stdin and writes ``(task_ids, packed results)``
frames on stdout until stdin closes. File descriptor 1 is redirected to stderr first, so that a solver printing to
stdout cannot corrupt the protocol.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    # Ctrl-C in a terminal reaches the whole process group: the parent handles it (and
    # replaces busy workers); an idle worker must not die of it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # solver chatter on fd 1 goes to stderr
    sys.stdout = sys.stderr
    from tamejax.backends import _REGISTRY, register_backend, solve_host
    from tamejax.backends.pool import ModelCache, pack_results, read_frame, unpack_problems, write_frame

    cache = ModelCache()
    fd = sys.stdin.buffer.fileno()
    while True:
        try:
            task_ids, backend, target, packed, options = read_frame(fd)
        except EOFError:
            return
        if target is not None and _REGISTRY.get(backend) != target:
            register_backend(backend, target)  # registered in the parent process
        problems = unpack_problems(packed)
        write_frame(out, (task_ids, pack_results([solve_host(backend, p, options, cache) for p in problems])))


if __name__ == "__main__":
    main()
