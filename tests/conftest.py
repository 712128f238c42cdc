"""Shared test configuration.

* 64-bit JAX numbers (the oracles compare objectives to ~1e-6, beyond float32).
* The tests directory is put on ``sys.path`` (before any solver worker starts, so the
  workers, which inherit ``sys.path`` through ``PYTHONPATH``, can import test-only backends
  such as ``crash_backend``) and ``oracles`` is importable from every test module.
* Hypothesis: no per-example deadline (solver start-up times vary on a loaded machine).
"""

from __future__ import annotations

import os
import sys

import jax
from hypothesis import settings

jax.config.update("jax_enable_x64", True)

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

settings.register_profile("tamejax", deadline=None, print_blob=True)
settings.load_profile("tamejax")
