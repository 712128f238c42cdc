#!/usr/bin/env python3
"""Set up an environment and run every check: ``python3 scripts/test.py [pytest args]``.

Creates ``./.venv`` (or ``$TAMEJAX_VENV``) with the standard ``venv`` module if it is
missing, installs tamejax with its ``dev`` and ``docs`` extras
(``pip install -e ".[dev,docs]"``), then runs, in order and from the repository root:

1. ``ruff check tamejax tests benchmarks examples scripts`` (lint);
2. ``python -m pytest [args]``: the default run skips tests marked ``slow``; extra
   arguments go to pytest, e.g. ``python3 scripts/test.py -m slow`` or ``-k value``;
3. ``mkdocs build --strict`` into a temporary directory (the documentation site).

Every step runs even if an earlier one failed; the script then names the failed steps and
exits non-zero. ``.ci/run`` calls this script. Works from any directory.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bootstrap import ROOT, banner, ensure_environment, run  # noqa: E402

LINT_PATHS = ("tamejax", "tests", "benchmarks", "examples", "scripts")


def main(pytest_args: list[str]) -> int:
    python = ensure_environment(extras=("dev", "docs"))
    failed: list[str] = []

    def step(name: str, cmd: list[str | Path], env: dict[str, str] | None = None) -> None:
        banner(name)
        code = run(cmd, check=False, env=env)
        if code != 0:
            failed.append(f"{name} (exit status {code})")

    paths = [p for p in LINT_PATHS if (ROOT / p).exists()]
    step("ruff check " + " ".join(paths), [python, "-m", "ruff", "check", *paths])
    step("pytest " + " ".join(pytest_args), [python, "-m", "pytest", *pytest_args])
    with tempfile.TemporaryDirectory(prefix="tamejax-site-") as site:
        step(
            "mkdocs build --strict",
            [python, "-m", "mkdocs", "build", "--strict", "--site-dir", site],
            env={"NO_MKDOCS_2_WARNING": "1"},
        )  # silence mkdocs-material's banner

    if failed:
        print("\nFAILED steps:\n  " + "\n  ".join(failed), file=sys.stderr, flush=True)
        return 1
    print("\nAll checks passed: ruff, pytest, mkdocs build --strict.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
