#!/usr/bin/env python3
"""Set up an environment and run the tamejax demo: ``python3 scripts/demo.py``.

Creates ``./.venv`` (or ``$TAMEJAX_VENV``) with the standard ``venv`` module if it is
missing, installs tamejax into it (``pip install -e .``), then runs
``python -m tamejax demo``: a small MIP solved by SCIP, its value, gradient and status,
and a batch solved under ``jax.jit(jax.vmap(...))``. Extra arguments are passed to the
demo, e.g. ``python3 scripts/demo.py --backend highs``. Works from any directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bootstrap import banner, ensure_environment, run  # noqa: E402


def main(argv: list[str]) -> int:
    python = ensure_environment(extras=())
    banner("running the demo: python -m tamejax demo " + " ".join(argv))
    return run([python, "-m", "tamejax", "demo", *argv], check=False)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
