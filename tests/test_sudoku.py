"""Tests of ``tamejax.problems.sudoku``: the 0-1 program, the generator, the helpers, bad input.

Oracles: every 4x4 Sudoku (288 boards) enumerated row by row; a plain-Python backtracking
solver independent of the MIP solvers; the rules checked cell by cell.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tamejax import Status
from tamejax.problems.sudoku import (
    SUDOKU_GROUPS,
    board_to_onehot,
    check_sudoku,
    count_sudoku_solutions,
    onehot_to_board,
    solve_sudoku,
    sudoku,
    sudoku_constraints,
    sudoku_mip,
    sudoku_puzzles,
    sudoku_soft,
    sudoku_soft_encode,
    sudoku_soft_mip,
    sudoku_units,
    sudoku_violations,
)


def _all_4x4() -> np.ndarray:
    """Every valid 4x4 Sudoku, by brute force over row permutations (288 boards)."""
    perms = list(itertools.permutations(range(1, 5)))
    boards = []

    def rec(rows):
        if len(rows) == 4:
            boards.append(np.array(rows))
            return
        for p in perms:
            b = np.array(rows + [p])
            cols_ok = all(len(set(b[:, c])) == len(b) for c in range(4))
            boxes_ok = True
            if len(b) % 2 == 0:
                r0 = len(b) - 2
                boxes_ok = all(len(set(b[r0 : r0 + 2, c0 : c0 + 2].ravel())) == 4 for c0 in (0, 2))
            if cols_ok and boxes_ok:
                rec(rows + [p])

    rec([])
    return np.array(boards)


ALL_4X4 = _all_4x4()


def _rules_hold(board: np.ndarray) -> bool:
    """The rules, checked directly (independent of ``check_sudoku``)."""
    n = board.shape[0]
    b = int(round(n**0.5))
    digits = set(range(1, n + 1))
    rows = all(set(board[r]) == digits for r in range(n))
    cols = all(set(board[:, c]) == digits for c in range(n))
    boxes = all(set(board[i : i + b, j : j + b].ravel()) == digits for i in range(0, n, b) for j in range(0, n, b))
    return rows and cols and boxes


# ---------------------------------------------------------------------------- structure
def test_brute_force_count_and_checker():
    assert len(ALL_4X4) == 288
    assert np.all(check_sudoku(ALL_4X4))
    assert all(_rules_hold(b) for b in ALL_4X4[:20])
    bad = ALL_4X4[0].copy()
    bad[0, 0], bad[0, 1] = bad[0, 1], bad[0, 0]  # columns now repeat a digit
    assert not check_sudoku(bad)
    assert check_sudoku(bad, groups=("row",))
    incomplete = ALL_4X4[0].copy()
    incomplete[2, 2] = 0
    assert not check_sudoku(incomplete)
    givens = np.zeros((4, 4), int)
    givens[0, 0] = ALL_4X4[0][0, 0] % 4 + 1  # a different digit
    assert not check_sudoku(ALL_4X4[0], givens)


def test_units_and_constraints_shapes():
    for n in (4, 9):
        for g in SUDOKU_GROUPS:
            units = sudoku_units(n, g)
            assert len(units) == (2 if g == "diagonal" else n)
            assert all(len(u) == n and len(set(u.tolist())) == n for u in units)
        A, b = sudoku_constraints(n)
        assert A.shape == (n * n + 3 * n * n, n**3) and np.all(b == 1)
        # every valid board satisfies every row; column sums: each variable in 4 rows
        assert np.all(A.sum(axis=0) == 4)
    A, b = sudoku_constraints(4)
    assert A.shape == (4 * 16, 64)
    X = board_to_onehot(ALL_4X4)
    np.testing.assert_array_equal(X @ A.T, np.ones((288, len(b))))


@given(st.lists(st.integers(0, 4), min_size=16, max_size=16))
def test_onehot_round_trip(cells):
    board = np.array(cells).reshape(4, 4)
    x = board_to_onehot(board)
    assert x.shape == (64,)
    assert np.all(x.reshape(16, 4).sum(axis=1) == (board.ravel() > 0))
    np.testing.assert_array_equal(onehot_to_board(x), board)


def test_violations_and_soft_encoding_are_feasible():
    boards = ALL_4X4[:10]
    v = sudoku_violations(boards)
    assert v.shape == (10, len(SUDOKU_GROUPS))
    assert np.all(v[:, :3] == 0)  # rows, columns, boxes hold
    row_bad = np.array([[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3], [4, 4, 4, 4]])
    np.testing.assert_array_equal(sudoku_violations(row_bad, ("row", "column")), [12.0, 0.0])
    p = sudoku_soft_mip(4).to_numpy()
    for board in list(boards[:3]) + [row_bad]:
        y = sudoku_soft_encode(board)
        assert y.shape == (p["c"].shape[0],)
        assert np.all(p["A_ub"] @ y <= p["b_ub"] + 1e-9)
        np.testing.assert_allclose(p["A_eq"] @ y, p["b_eq"])
        assert np.all((p["lb"] <= y) & (y <= p["ub"]))


def test_16x16_model_structure():
    """n = 16: units against the closed-form labels, and the 0-1 program's shape."""
    n, b = 16, 4
    r, c = np.divmod(np.arange(n * n), n)
    labels = {
        "row": r,
        "column": c,
        "box": (r // b) * b + c // b,
        "disjoint": (r % b) * b + c % b,
    }
    for g, lab in labels.items():
        units = sudoku_units(n, g)
        assert len(units) == n and all(len(u) == n for u in units)
        cover = np.concatenate(units)
        assert sorted(cover.tolist()) == list(range(n * n))  # a partition of the cells
        assert all(len(set(lab[u].tolist())) == 1 for u in units)  # each unit is one label class
    diag = sudoku_units(n, "diagonal")
    np.testing.assert_array_equal(diag[0], np.arange(n) * (n + 1))
    np.testing.assert_array_equal(diag[1], np.arange(n) * (n - 1) + n - 1)
    A, rhs = sudoku_constraints(n)
    assert A.shape == (4 * n * n, n**3) and np.all(rhs == 1)
    assert np.all(A.sum(axis=0) == 4)
    problem = sudoku_mip(n)
    assert problem.n == n**3 and problem.m_eq == 4 * n * n


def test_soft_oracle_accepts_a_single_group_name():
    """Regression: ``groups="row"`` is one group (65 costed variables on 4x4), not three letters."""
    oracle = sudoku_soft(4, groups="row", threads=1)
    assert oracle.n == 64 + 1
    assert oracle.n == sudoku_soft(4, groups=("row",), threads=1).n
    theta = np.concatenate([board_to_onehot(ALL_4X4[0]), [-1.0]])
    x = np.asarray(oracle(theta))
    assert x.shape == (65,)
    np.testing.assert_array_equal(onehot_to_board(x[:64]), ALL_4X4[0])
    assert x[64] == pytest.approx(0.0, abs=1e-6)


def test_onehot_to_board_threshold():
    x = -0.1 * np.ones(64) + 0.3 * np.eye(64)[1]  # scores: cell 0 prefers digit 2, every entry <= 0.5
    assert onehot_to_board(x)[0, 0] == 0  # default threshold 0.5: empty
    board = onehot_to_board(x, threshold=None)  # pure arg-max
    assert board[0, 0] == 2 and np.all(board.ravel()[1:] == 1)
    assert onehot_to_board(x, threshold=0.1)[0, 0] == 2


# ---------------------------------------------------------------------------- generator
def test_generator_is_deterministic_and_valid():
    p1, s1 = sudoku_puzzles(6, 4, num_givens=5, seed=3)
    p2, s2 = sudoku_puzzles(6, 4, num_givens=5, seed=3)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(s1, s2)
    assert np.all(check_sudoku(s1, p1))
    assert np.all((p1 == 0) | (p1 == s1))
    assert np.all((p1 > 0).sum(axis=(1, 2)) >= 5)
    assert all(count_sudoku_solutions(p) == 1 for p in p1)  # unique=True
    p3, _ = sudoku_puzzles(6, 4, num_givens=5, seed=4)
    assert not np.array_equal(p1, p3)
    loose, sol = sudoku_puzzles(4, 4, num_givens=2, unique=False, seed=0)
    assert np.all((loose > 0).sum(axis=(1, 2)) == 2)
    assert np.all(check_sudoku(sol, loose))


def test_4x4_puzzles_unique_by_enumeration():
    """Independent of the generator's search: each puzzle matches exactly one of the 288 boards."""
    puzzles, solutions = sudoku_puzzles(60, 4, num_givens=4, seed=9)
    for puzzle, solution in zip(puzzles, solutions, strict=True):
        mask = puzzle > 0
        matches = ALL_4X4[np.all((ALL_4X4 == puzzle) | ~mask, axis=(1, 2))]
        assert len(matches) == 1
        np.testing.assert_array_equal(matches[0], solution)


def test_reference_solver_matches_generator_and_counts():
    # (solve_sudoku and the generator share the backtracking code: only the 288 count is independent)
    p, s = sudoku_puzzles(3, 9, num_givens=30, seed=1)
    for puzzle, solution in zip(p, s, strict=True):
        np.testing.assert_array_equal(solve_sudoku(puzzle), solution)
    contradictory = np.zeros((4, 4), int)
    contradictory[0, :2] = 1
    assert solve_sudoku(contradictory) is None
    assert count_sudoku_solutions(np.zeros((4, 4), int), limit=1000) == 288


# ---------------------------------------------------------------------------- the MIP
def test_4x4_oracle_maximizes_over_every_sudoku():
    """Empty board, random scores: the oracle's optimum equals the best of the 288 boards."""
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(6, 64))
    sol = sudoku(4, threads=1).solve(theta)
    assert np.all(np.asarray(sol.status) == Status.OPTIMAL)
    values = theta @ board_to_onehot(ALL_4X4).T
    np.testing.assert_allclose(np.asarray(sol.objective), values.max(axis=1), atol=1e-6)
    boards = onehot_to_board(sol.x)
    assert np.all(check_sudoku(boards))
    assert all(_rules_hold(b) for b in boards)


def test_4x4_puzzles_keep_givens():
    puzzles, solutions = sudoku_puzzles(5, 4, num_givens=4, seed=7)
    theta = np.random.default_rng(1).normal(size=(5, 64))
    x = sudoku(4, puzzles, threads=1)(theta)
    boards = onehot_to_board(x)
    assert np.all(check_sudoku(boards, puzzles))
    np.testing.assert_array_equal(boards, solutions)  # unique solutions


def test_9x9_solve():
    puzzles, solutions = sudoku_puzzles(1, 9, num_givens=28, seed=11)
    problem = sudoku_mip(9, puzzles[0])
    assert problem.n == 729 and problem.m_eq == 4 * 81
    sol = sudoku(9, puzzles[0], threads=1).solve(np.zeros(729))
    assert int(sol.status) == Status.OPTIMAL
    board = onehot_to_board(sol.x)
    assert _rules_hold(board)
    assert check_sudoku(board, puzzles[0])
    np.testing.assert_array_equal(board, solutions[0])


def test_9x9_cross_backend():
    """An independent 9x9 check: CP-SAT and SCIP, random objectives, rules checked cell by cell."""
    puzzles, solutions = sudoku_puzzles(1, 9, num_givens=30, seed=12)
    theta = np.random.default_rng(3).integers(-5, 6, size=(1, 729)).astype(np.float64)
    boards = {}
    for backend in ("cpsat", "scip"):
        sol = sudoku(9, puzzles, backend=backend, threads=1).solve(theta)
        assert np.all(np.asarray(sol.status) == Status.OPTIMAL)
        boards[backend] = onehot_to_board(sol.x)
        assert all(_rules_hold(b) for b in boards[backend])
        assert np.all((puzzles == 0) | (boards[backend] == puzzles))
    np.testing.assert_array_equal(boards["cpsat"], boards["scip"])
    np.testing.assert_array_equal(boards["cpsat"], solutions)


def test_soft_model_reports_violations_and_follows_weights():
    puzzles, solutions = sudoku_puzzles(3, 4, num_givens=6, seed=5)
    oracle = sudoku_soft(4, threads=1)
    assert oracle.n == 64 + len(SUDOKU_GROUPS)
    # rules weighted, distractors free: the unique solution (all givens kept, no rule broken)
    w = np.array([3.0, 3.0, 3.0, 0.0, 0.0])
    theta = np.concatenate([board_to_onehot(puzzles), np.broadcast_to(-w, (3, 5))], axis=1)
    x = np.asarray(oracle(theta))
    boards = onehot_to_board(x[:, :64])
    np.testing.assert_array_equal(boards, solutions)
    np.testing.assert_allclose(x[:, 64:69][:, :3], 0.0)
    # the reported violations are the boards' own (positive weights make the slacks tight)
    w = np.array([3.0, 3.0, 3.0, 0.1, 0.1])
    theta = np.concatenate([board_to_onehot(puzzles), np.broadcast_to(-w, (3, 5))], axis=1)
    x = np.asarray(oracle(theta))
    np.testing.assert_allclose(x[:, 64:], sudoku_violations(onehot_to_board(x[:, :64])), atol=1e-6)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: sudoku_mip(5), "`n`: expected a perfect square"),
        (lambda: sudoku_mip(1), "`n`"),
        (lambda: sudoku_mip(4, np.zeros((4, 5), int)), "`givens`: expected a square board"),
        (lambda: sudoku_mip(4, np.zeros((9, 9), int)), r"`givens`: expected shape \(\.\.\., 4, 4\)"),
        (lambda: sudoku_mip(4, np.full((4, 4), 5)), r"`givens`: expected digits in \[0, 4\]"),
        (lambda: sudoku_mip(4, np.full((4, 4), -1)), "`givens`: expected digits"),
        (lambda: sudoku_mip(4, np.full((4, 4), 1.5)), "`givens`: expected integer digits"),
        (lambda: sudoku_mip(4, cost=np.zeros(63)), "`cost`: expected shape"),
        (lambda: sudoku_mip(4, groups=("row", "knight")), "`groups`"),
        (lambda: sudoku_soft(4, groups=()), "`groups`: expected at least one"),
        (lambda: board_to_onehot(np.zeros(16, int)), "`board`: expected a square board"),
        (lambda: board_to_onehot(np.zeros((6, 6), int)), "`board`: expected a board of side n a perfect square"),
        (lambda: onehot_to_board(np.zeros(65)), "`x`"),
        (lambda: check_sudoku(np.ones((4, 4), int), np.ones((9, 9), int)), "`givens`"),
        (lambda: check_sudoku(np.full((4, 4), 9)), "`board`: expected digits"),
        (lambda: sudoku_puzzles(0, 4), "`num`"),
        (lambda: sudoku_puzzles(2, 4, num_givens=17), "`num_givens`"),
        (lambda: sudoku_puzzles(2, 4, seed=-1), "`seed`"),
        (lambda: count_sudoku_solutions(np.zeros((4, 4), int), limit=0), "`limit`"),
        (lambda: solve_sudoku(np.zeros((2, 4, 4), int)), "`puzzle`: expected one board"),
        (lambda: sudoku_units(4, "diag"), r"sudoku_units argument `group`: expected one of \(.*\), got 'diag'"),
        (lambda: sudoku_units(4, ["row"]), r"sudoku_units argument `group`: expected one of \(.*\), got \['row'\]"),
        (lambda: sudoku_soft(4, groups="knight"), "sudoku_soft argument `groups`"),
    ],
)
def test_bad_input_names_the_field(call, match):
    with pytest.raises(ValueError, match=match):
        call()
