"""Shared helpers of ``scripts/demo.py`` and ``scripts/test.py`` (standard library only).

Both scripts create a virtual environment if it is missing (``./.venv`` at the repository
root, or the path in the ``TAMEJAX_VENV`` environment variable), install tamejax into it in
editable mode with the extras they need, and run commands with that environment's Python.
The installation is skipped when ``pyproject.toml`` has not changed since the last one made
by these scripts and the extras asked for were already installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import venv
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAMP = ".tamejax-install.json"
MIN_PYTHON = (3, 11)


def banner(text: str) -> None:
    """Print a visible step header (flushed before a subprocess writes)."""
    print(f"\n==> {text}", flush=True)


def venv_path() -> Path:
    """``$TAMEJAX_VENV`` if set, otherwise ``<repository root>/.venv``."""
    env = os.environ.get("TAMEJAX_VENV")
    return Path(env).expanduser().resolve() if env else ROOT / ".venv"


def venv_python(path: Path) -> Path:
    """The interpreter of the virtual environment at ``path`` (POSIX layout)."""
    return path / "bin" / "python"


def run(cmd: Sequence[str | os.PathLike[str]], *, check: bool = True, env: dict[str, str] | None = None) -> int:
    """Run ``cmd`` from the repository root, streaming its output; return its exit status.

    ``env`` adds variables to (or overrides them in) the current environment.
    """
    args = [str(a) for a in cmd]
    print("$ " + shlex.join(args), flush=True)
    code = subprocess.call(args, cwd=ROOT, env=None if env is None else {**os.environ, **env})
    if check and code != 0:
        print(f"error: command failed with exit status {code}: {shlex.join(args)}", file=sys.stderr, flush=True)
        sys.exit(code)
    return code


def _check_python() -> None:
    if sys.version_info < MIN_PYTHON:
        need = ".".join(map(str, MIN_PYTHON))
        have = ".".join(map(str, sys.version_info[:3]))
        sys.exit(f"error: tamejax needs Python >= {need}; this is Python {have} ({sys.executable})")


def _create_venv(path: Path) -> None:
    banner(f"creating virtual environment {path}")
    try:
        venv.EnvBuilder(with_pip=True, upgrade_deps=False).create(path)
    except Exception as exc:  # noqa: BLE001 - report any failure with a hint
        sys.exit(
            f"error: could not create a virtual environment at {path}: {exc}\n"
            "hint: on Debian/Ubuntu install the venv module (e.g. `apt install python3-venv`)"
        )


def _read_stamp(path: Path) -> dict:
    try:
        return json.loads((path / STAMP).read_text())
    except (OSError, ValueError):
        return {}


def ensure_environment(extras: Sequence[str] = ()) -> Path:
    """Create the environment if needed and install tamejax with ``extras``; return its Python."""
    _check_python()
    path = venv_path()
    python = venv_python(path)
    if not python.exists():
        _create_venv(path)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = _read_stamp(path)
    installed = set(stamp.get("extras", [])) if stamp.get("pyproject") == digest else None
    if installed is not None and set(extras) <= installed:
        print(f"==> tamejax already installed in {path} (pyproject.toml unchanged)", flush=True)
        return python
    banner("upgrading pip")
    run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    target = "." + (f"[{','.join(extras)}]" if extras else "")
    banner(f"installing tamejax (editable) into {path}: pip install -e {target!r}")
    run([python, "-m", "pip", "install", "--quiet", "-e", target])
    done = sorted(set(extras) | (installed or set()))
    (path / STAMP).write_text(json.dumps({"pyproject": digest, "extras": done}) + "\n")
    return python
