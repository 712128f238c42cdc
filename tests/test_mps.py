"""MPS import/export (tamejax/backends/mps.py, MIP.from_mps / MIP.to_mps).

Oracles: exact round trips (write -> OR-Tools reader -> identical float64 arrays), arrays
worked out by hand from a hand-written MPS file, brute-force enumeration, and the same
optimal value from SCIP on the original and on the re-read problem.
"""

from __future__ import annotations

import itertools
import re
import textwrap
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

jax.config.update("jax_enable_x64", True)

import tamejax  # noqa: E402
from tamejax.backends.mps import mps_string, read_mps, write_mps  # noqa: E402

INF = np.inf
FIELDS = ("c", "A_ub", "b_ub", "A_eq", "b_eq", "lb", "ub", "integrality")


def _write(tmp_path: Path, text: str, name: str = "p.mps") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    for k in FIELDS:
        assert a[k].shape == b[k].shape, (k, a[k].shape, b[k].shape)
        assert a[k].dtype == b[k].dtype, (k, a[k].dtype, b[k].dtype)
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ---------------------------------------------------------------- round trip (hypothesis)

_coef = st.one_of(
    st.just(0.0),
    st.integers(-5, 5).map(float),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, allow_subnormal=True),
)


@st.composite
def _problems(draw: st.DrawFn) -> tamejax.MIP:
    n = draw(st.integers(1, 5))
    m_ub = draw(st.integers(0, 3))
    m_eq = draw(st.integers(0, 2))
    vec = st.lists(_coef, min_size=n, max_size=n)
    c = np.array(draw(vec))
    A_ub = np.array([draw(vec) for _ in range(m_ub)]).reshape(m_ub, n)
    b_ub = np.array(draw(st.lists(_coef, min_size=m_ub, max_size=m_ub)))
    A_eq = np.array([draw(vec) for _ in range(m_eq)]).reshape(m_eq, n)
    b_eq = np.array(draw(st.lists(_coef, min_size=m_eq, max_size=m_eq)))
    lb = np.array(draw(st.lists(st.one_of(st.just(-INF), _coef), min_size=n, max_size=n)))
    width = st.one_of(st.just(INF), st.just(0.0), st.floats(0.0, 1e3, allow_nan=False))
    ub = np.array([lo + draw(width) if lo > -INF else draw(st.one_of(st.just(INF), _coef)) for lo in lb])
    integrality = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    # None (no rows at all) and zero-row arrays are both "empty"; exercise both spellings.
    kw = {}
    if m_ub or draw(st.booleans()):
        kw.update(A_ub=A_ub, b_ub=b_ub)
    if m_eq or draw(st.booleans()):
        kw.update(A_eq=A_eq, b_eq=b_eq)
    return tamejax.MIP(c, lb=lb, ub=ub, integrality=integrality, **kw)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=_problems())
def test_round_trip_is_exact(tmp_path: Path, problem: tamejax.MIP) -> None:
    path = tmp_path / "rt.mps"
    problem.to_mps(path)
    back = tamejax.MIP.from_mps(path)
    _assert_same(problem.to_numpy(), back.to_numpy())


def test_round_trip_gzip_and_name(tmp_path: Path) -> None:
    p = tamejax.MIP(
        np.array([1 / 3, -2.0, 0.0]),
        A_eq=np.array([[0.1, 0.2, 0.3]]),
        b_eq=np.array([0.6]),
        lb=np.array([-INF, 0.0, -1.5]),
        ub=np.array([INF, 7.0, -1.5]),
        integrality=[False, True, False],
    )
    path = tmp_path / "p.mps.gz"
    p.to_mps(path, name="my_model")
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    _assert_same(p.to_numpy(), tamejax.MIP.from_mps(path).to_numpy())
    assert mps_string(p.to_numpy(), name="my_model").startswith("NAME my_model\n")
    with pytest.raises(ValueError, match="whitespace"):
        p.to_mps(tmp_path / "q.mps", name="two words")


def test_write_rejects_batches_and_bad_data(tmp_path: Path) -> None:
    batch = tamejax.MIP(np.ones((2, 3)))
    with pytest.raises(ValueError, match="single problem"):
        batch.to_mps(tmp_path / "b.mps")
    with pytest.raises(ValueError, match="single problem"):
        write_mps(str(tmp_path / "b.mps"), {"c": np.ones((2, 3))})
    with pytest.raises(ValueError, match="finite"):
        write_mps(str(tmp_path / "b.mps"), {"c": np.array([1.0, np.nan])})


# ---------------------------------------------------------------- a hand-written file

HAND = """
NAME          handmade
ROWS
 N  cost
 G  ge1
 L  rng
 E  eq1
 N  freerow
 L  le2
COLUMNS
    MARKER                 'MARKER'                 'INTORG'
    x         cost         1.0   ge1          1.0
    x         rng          1.0   freerow      1.0
    y         cost         2.0   ge1          1.0
    y         eq1          1.0
    v         cost         1.0   le2          1.0
    MARKER                 'MARKER'                 'INTEND'
    z         cost        -1.0   rng          2.0
    z         eq1          1.0   le2         -0.5
    w         cost        -3.0   ge1         -1.0
    b         cost        -2.0   eq1          1.0
RHS
    RHS       ge1          1.0   rng          6.0
    RHS       eq1          3.0   le2          2.5
RANGES
    RNG       rng          4.0
BOUNDS
 UP BND       x            4.0
 LO BND       y           -3.0
 FR BND       z
 MI BND       w
 UP BND       w            5.0
 BV BND       b
ENDATA
"""

# variables in COLUMNS order: x, y, v, z, w, b
HAND_EXPECTED = {
    "c": np.array([1.0, 2.0, 1.0, -1.0, -3.0, -2.0]),
    # ge1: x + y - w >= 1 -> -x - y + w <= -1
    # rng: 2 <= x + 2 z <= 6 (L row, range 4) -> x + 2z <= 6, -x - 2z <= -2
    # le2: v - 0.5 z <= 2.5
    "A_ub": np.array(
        [
            [-1.0, -1.0, 0.0, 0.0, 1.0, 0.0],
            [1.0, 0.0, 0.0, 2.0, 0.0, 0.0],
            [-1.0, 0.0, 0.0, -2.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, -0.5, 0.0, 0.0],
        ]
    ),
    "b_ub": np.array([-1.0, 6.0, -2.0, 2.5]),
    # eq1: y + z + b = 3
    "A_eq": np.array([[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]]),
    "b_eq": np.array([3.0]),
    # v: integer with no bound -> [0, 1] (MPS convention, kept by OR-Tools)
    "lb": np.array([0.0, -3.0, 0.0, -INF, -INF, 0.0]),
    "ub": np.array([4.0, INF, 1.0, INF, 5.0, 1.0]),
    "integrality": np.array([True, True, True, False, False, True]),
}


def test_hand_written_file(tmp_path: Path) -> None:
    path = _write(tmp_path, HAND)
    data = read_mps(str(path))
    _assert_same({k: np.asarray(v) for k, v in data.items()}, HAND_EXPECTED)
    # Through MIP.from_mps, and the solver agrees with the problem built by hand.
    read = tamejax.MIP.from_mps(path)
    built = tamejax.MIP(**HAND_EXPECTED)
    s_read, s_built = tamejax.solve(read), tamejax.solve(built)
    assert int(s_read.status) == tamejax.Status.OPTIMAL
    np.testing.assert_allclose(float(s_read.objective), float(s_built.objective), atol=1e-7)


def test_equality_and_ranged_equality_rows(tmp_path: Path) -> None:
    # RANGES on an E row: R > 0 -> [rhs, rhs + R]; R < 0 -> [rhs + R, rhs]; no RHS -> 0.
    path = _write(
        tmp_path,
        """
        NAME t
        ROWS
         N obj
         E e1
         E e2
         E e3
        COLUMNS
            x obj 1 e1 1
            x e2 2 e3 3
        RHS
            rhs e1 1 e2 5
        RANGES
            rng e1 2 e2 -4
        ENDATA
    """,
    )
    d = read_mps(str(path))
    np.testing.assert_array_equal(d["A_ub"], [[1.0], [-1.0], [2.0], [-2.0]])
    np.testing.assert_array_equal(d["b_ub"], [3.0, -1.0, 5.0, -1.0])
    np.testing.assert_array_equal(d["A_eq"], [[3.0]])
    np.testing.assert_array_equal(d["b_eq"], [0.0])


def test_reads_or_tools_own_export(tmp_path: Path) -> None:
    """A file written by OR-Tools' exporter (LI/UI bounds, its marker lines) reads back."""
    from ortools.linear_solver.python import model_builder_helper as mbh

    h = mbh.ModelBuilderHelper()
    # (its exporter lists integer variables first: keep them first so that the order holds)
    lbs, ubs = [0.0, -INF, -2.0, -INF], [INF, 4.0, 3.5, INF]
    for j, (lo, hi, integ) in enumerate(zip(lbs, ubs, [True, True, False, False], strict=True)):
        v = h.add_var()
        h.set_var_lower_bound(v, lo)
        h.set_var_upper_bound(v, hi)
        h.set_var_integrality(v, integ)
        h.set_var_name(v, f"v{j}")
        h.set_var_objective_coefficient(v, float(j) - 1.5)
    r = h.add_linear_constraint()
    h.set_constraint_lower_bound(r, -1.0)
    h.set_constraint_upper_bound(r, INF)
    for j in range(4):
        h.add_term_to_constraint(r, j, 0.25 * (j + 1))
    opts = mbh.MPModelExportOptions()
    opts.show_unused_variables = True
    path = _write(tmp_path, h.export_to_mps_string(opts))
    d = read_mps(str(path))
    np.testing.assert_array_equal(d["c"], [-1.5, -0.5, 0.5, 1.5])
    np.testing.assert_array_equal(d["A_ub"], [[-0.25, -0.5, -0.75, -1.0]])
    np.testing.assert_array_equal(d["b_ub"], [1.0])
    assert d["A_eq"] is None and d["b_eq"] is None
    np.testing.assert_array_equal(d["lb"], lbs)
    np.testing.assert_array_equal(d["ub"], ubs)
    np.testing.assert_array_equal(d["integrality"], [True, True, False, False])


# ---------------------------------------------------------------- solving agrees


def _random_feasible(rng: np.random.Generator, n: int, m_ub: int, m_eq: int, integrality: np.ndarray) -> tamejax.MIP:
    lb = rng.integers(-3, 1, n).astype(float)
    ub = lb + rng.integers(0, 5, n)
    x0 = rng.integers(lb, ub + 1).astype(float)  # an integer point: feasible by construction
    A_ub = np.round(rng.normal(size=(m_ub, n)), 3)
    b_ub = A_ub @ x0 + rng.uniform(0, 2, m_ub)
    A_eq = rng.integers(-2, 3, (m_eq, n)).astype(float)
    b_eq = A_eq @ x0
    c = np.round(rng.normal(size=n), 3)
    return tamejax.MIP(c, A_ub, b_ub, A_eq, b_eq, lb, ub, integrality)


def test_solving_the_read_problem_gives_the_same_optimum(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, m_ub, m_eq = 5, 3, 1
    integrality = np.array([True, False, True, True, False])
    originals = [_random_feasible(rng, n, m_ub, m_eq, integrality) for _ in range(6)]
    reread = []
    for k, p in enumerate(originals):
        path = tmp_path / f"p{k}.mps"
        p.to_mps(path)
        reread.append(tamejax.MIP.from_mps(path))
    stack = lambda ps: jax.tree_util.tree_map(lambda *xs: np.stack(xs), *ps)  # noqa: E731
    s0 = tamejax.solve(stack(originals), backend="scip")
    s1 = tamejax.solve(stack(reread), backend="scip")
    assert np.all(np.asarray(s0.status) == tamejax.Status.OPTIMAL)
    np.testing.assert_array_equal(np.asarray(s1.status), np.asarray(s0.status))
    np.testing.assert_allclose(np.asarray(s1.objective), np.asarray(s0.objective), atol=1e-7)


# ---------------------------------------------------------------- objective sense and offset

MAX_PROBLEM = """
NAME maxi
OBJSENSE
    MAX
ROWS
 N obj
 L cap
COLUMNS
    MARKER 'MARKER' 'INTORG'
    x obj 1 cap 1
    y obj 1 cap 2
    MARKER 'MARKER' 'INTEND'
RHS
    rhs cap 4
BOUNDS
 UP bnd x 3
 UP bnd y 3
ENDATA
"""


def test_maximization_warns_and_negates(tmp_path: Path) -> None:
    path = _write(tmp_path, MAX_PROBLEM)
    with pytest.warns(UserWarning, match="maximi"):
        p = tamejax.MIP.from_mps(path)
    np.testing.assert_array_equal(np.asarray(p.c), [-1.0, -1.0])
    # Brute force: max x + y s.t. x + 2y <= 4, x, y in {0..3}.
    best = max(x + y for x, y in itertools.product(range(4), repeat=2) if x + 2 * y <= 4)
    sol = tamejax.solve(p, backend="scip")
    np.testing.assert_allclose(float(sol.objective), -best, atol=1e-9)


def test_minimization_does_not_warn(tmp_path: Path) -> None:
    path = _write(tmp_path, MAX_PROBLEM.replace("    MAX", "    MIN"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = read_mps(str(path))
    np.testing.assert_array_equal(d["c"], [1.0, 1.0])


def test_objective_offset_raises(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        MAX_PROBLEM.replace("OBJSENSE\n    MAX\n", "").replace("rhs cap 4", "rhs cap 4 obj 2.5"),
    )
    with pytest.raises(ValueError, match="offset"):
        read_mps(str(path))


# ---------------------------------------------------------------- errors


def test_missing_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "missing.mps"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        tamejax.MIP.from_mps(path)


def test_unparsable_file_raises(tmp_path: Path) -> None:
    path = _write(tmp_path, "this is not\nan MPS file at all\n", name="junk.mps")
    with pytest.raises(ValueError, match=re.escape(repr(str(path)))):
        read_mps(str(path))


def test_unsupported_content_raises(tmp_path: Path) -> None:
    base = """
    NAME t
    ROWS
     N obj
     L r1
    COLUMNS
        M 'MARKER' 'INTORG'
        x obj 1 r1 1
        z obj 1
        M 'MARKER' 'INTEND'
    RHS
        rhs r1 5
    BOUNDS
     UP bnd x -1
     BV bnd z
    ENDATA
    """
    # OR-Tools keeps lb = 0 under a negative UP bound: the error says so, naming the variable.
    with pytest.raises(ValueError, match="'x'.*lower bound"):
        read_mps(str(_write(tmp_path, base)))
    indicator = base.replace(" UP bnd x -1\n", "").replace("    ENDATA", "    INDICATORS\n     IF r1 z 1\n    ENDATA")
    with pytest.raises(ValueError, match="indicator"):
        read_mps(str(_write(tmp_path, indicator, name="ind.mps")))
