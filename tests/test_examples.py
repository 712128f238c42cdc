"""Smoke tests of the runnable examples: each runs in a subprocess (its own JAX configuration and
solver pool, as a user would run it), exits 0 and writes its plot."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(script: str, *args: str, returncode: int = 0, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run ``examples/<script>`` with ``args`` from the repository root; fail with its output unless it
    exits with ``returncode``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == returncode, (
        f"{script} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    )
    return proc


def test_predict_then_optimize_quick(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "pto.png"
    proc = run_example("predict_then_optimize.py", "--quick", "--out", str(out))
    assert out.is_file() and out.stat().st_size > 0
    assert f"plot saved to {out}" in proc.stdout
    # the final table: one row per method, a finite non-negative regret in percent
    rows = re.findall(r"^(.+?)\s+(\S+) %\s+\S+\s+\S+$", proc.stdout, flags=re.MULTILINE)
    names = [name.strip() for name, _ in rows]
    assert names == ["2-stage (MSE)", "SPO+", "PFYL", "DBB", "DPO", "NID (identity)", "I-MLE"], proc.stdout
    for name, value in rows:
        assert math.isfinite(float(value)) and float(value) >= 0, (name, value)


def test_predict_then_optimize_rejects_unknown_method():
    proc = run_example("predict_then_optimize.py", "--methods", "spo+,bogus", returncode=2)
    assert "--methods" in proc.stderr and "bogus" in proc.stderr


def test_value_landscape(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "landscape.png"
    proc = run_example("value_landscape.py", "--points", "60", "--out", str(out))
    assert out.is_file() and out.stat().st_size > 0
    assert "plot saved to" in proc.stdout


def test_bnn_gradient_digits_quick(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    out = tmp_path / "bnn.png"
    proc = run_example("bnn_gradient_digits.py", "--quick", "--out", str(out), timeout=300.0)
    assert out.is_file() and out.stat().st_size > 0
    record = json.loads(out.with_suffix(".json").read_text())
    names = [r["method"] for r in record["results"]]
    assert names == ["ste_sign", "approx_sign", "swish_sign", "gaussian", "gumbel", "magnitude_aware", "bop", "frozen"]
    cfg = record["config"]
    for r in record["results"]:
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["one_bit"] == cfg["depth"] * cfg["hidden"] ** 2
    assert "best:" in proc.stdout


def test_bnn_gradient_digits_rejects_unknown_method():
    proc = run_example("bnn_gradient_digits.py", "--methods", "ste_sign,bogus", returncode=2)
    assert "bogus" in proc.stderr


def test_duality_value_function_quick(tmp_path):
    # exits non-zero when F(d) > z(d) somewhere on the grid or F(b) != z(b)
    pytest.importorskip("matplotlib")
    out = tmp_path / "dvf.png"
    proc = run_example("duality_value_function.py", "--quick", "--out", str(out), timeout=240.0)
    assert out.is_file() and out.stat().st_size > 0
    assert f"plot saved to {out}" in proc.stdout


def test_duality_two_stage_quick(tmp_path):
    # exits non-zero unless the cut loop reaches the optimum found by enumeration
    pytest.importorskip("matplotlib")
    out = tmp_path / "two_stage.png"
    proc = run_example("duality_two_stage.py", "--quick", "--out", str(out), timeout=240.0)
    assert out.is_file() and out.stat().st_size > 0
    assert f"plot saved to {out}" in proc.stdout


def test_bnn_mip_digits_quick(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    out = tmp_path / "bnn_mip.png"
    proc = run_example("bnn_mip_digits.py", "--quick", "--out", str(out), timeout=300.0)
    assert out.is_file() and out.stat().st_size > 0 and out.with_suffix(".json").is_file()
    assert "predictions agree with the MIP network on 100.0%" in proc.stdout, proc.stdout
    assert "scores identical: True" in proc.stdout, proc.stdout


def test_bnn_mip_digits_rejects_bad_formulation():
    proc = run_example("bnn_mip_digits.py", "--formulation", "bogus", returncode=2)
    assert "--formulation" in proc.stderr


def test_learn_constraints_quick(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "learn_constraints.png"
    proc = run_example("learn_constraints.py", "--quick", "--out", str(out), timeout=300.0)
    assert out.is_file() and out.stat().st_size > 0
    assert "MIPLayer agrees" in proc.stdout, proc.stdout
    assert f"plot written to {out}" in proc.stdout, proc.stdout


def test_sudoku_mip_layer_quick(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "sudoku.png"
    proc = run_example("sudoku_mip_layer.py", "--quick", "--out", str(out), timeout=300.0)
    assert out.is_file() and out.stat().st_size > 0
    assert f"plot saved to {out}" in proc.stdout
    row4 = re.search(r"^4x4\s+\d+\s+(\S+)%\s+(\S+)%\s+(\S+)%$", proc.stdout, flags=re.MULTILINE)
    row9 = re.search(r"^9x9\s+\d+\s+-\s+-\s+(\S+)%$", proc.stdout, flags=re.MULTILINE)
    assert row4 and row9, proc.stdout
    for value in (*row4.groups(), *row9.groups()):
        assert 0.0 <= float(value) <= 100.0, proc.stdout


def test_maxsat_weights_quick(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "maxsat.png"
    proc = run_example("maxsat_weights.py", "--quick", "--out", str(out), timeout=300.0)
    assert out.is_file() and out.stat().st_size > 0
    assert f"plot saved to {out}" in proc.stdout
    rows = re.findall(
        r"^(unweighted \(all 1\)|Fenchel-Young|optimality gap)\s+(\S+)%\s+(\S+)%", proc.stdout, flags=re.MULTILINE
    )
    assert [name for name, _, _ in rows] == ["unweighted (all 1)", "Fenchel-Young", "optimality gap"], proc.stdout
    for _, reproduced, equal in rows:
        assert 0.0 <= float(equal) <= float(reproduced) <= 100.0, proc.stdout
