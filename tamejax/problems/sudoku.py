"""Sudoku as a 0-1 program: builders, a puzzle generator, one-hot helpers and a checker.

A board of size ``n = b^2`` (``b >= 2``: 4x4 boards have ``b = 2``, 9x9 boards ``b = 3``) is a
NumPy integer array ``(n, n)`` with digits ``1..n`` and ``0`` for an empty cell. Its 0-1
encoding has ``n^3`` variables, row-major in (row, column, digit):

$$x_{rcd} = x[(r n + c) n + d] = 1 \\iff \\text{cell } (r, c) \\text{ holds digit } d + 1,$$

and the rules are linear equalities: one digit per cell, and each digit exactly once in every
*unit* of a constraint group. The classic groups are ``"row"``, ``"column"`` and ``"box"``
(the ``b x b`` boxes); ``"diagonal"`` (the two long diagonals, X-Sudoku) and ``"disjoint"``
(cells at the same position inside each box, "disjoint groups" Sudoku) are variants, used as
*distractors* when the rules themselves are learned (``sudoku_soft``):

$$\\sum_{d} x_{rcd} = 1 \\;\\;\\forall (r, c), \\qquad
\\sum_{(r, c) \\in u} x_{rcd} = 1 \\;\\;\\forall u \\in \\mathcal{U}_g,\\ \\forall d,
\\ \\forall g \\in \\text{groups}.$$

Builders: ``sudoku_mip`` (the ``MIP``), ``sudoku`` (an ``Oracle``: scores ``theta`` over the
``n^3`` variables, maximized over the valid boards that keep the givens) and ``sudoku_soft``
(every group a *soft* rule whose violations cost a learnable weight, for learning which
groups are rules). The puzzle generator ``sudoku_puzzles`` and the reference solver
``solve_sudoku`` / ``count_sudoku_solutions`` are plain Python (bit-mask backtracking with the
minimum-remaining-values rule), independent of the MIP solvers, so they also serve as test
oracles.

References:
  Simonis, H. (2005). Sudoku as a constraint problem. CP Workshop on Modeling and Reformulating
  Constraint Satisfaction Problems.
  Bartlett, A., Chartier, T., Langville, A. & Rankin, T. (2008). An integer programming model
  for the Sudoku problem. Journal of Online Mathematics and its Applications 8.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral
from typing import Any

import numpy as np

from tamejax.oracle import Oracle
from tamejax.problem import MIP
from tamejax.problems._common import as_array, check_int
from tamejax.problems.tsp import SlicedOracle

__all__ = [
    "SUDOKU_GROUPS",
    "SUDOKU_RULES",
    "board_to_onehot",
    "check_sudoku",
    "count_sudoku_solutions",
    "onehot_to_board",
    "solve_sudoku",
    "sudoku",
    "sudoku_constraints",
    "sudoku_mip",
    "sudoku_puzzles",
    "sudoku_soft",
    "sudoku_soft_encode",
    "sudoku_soft_mip",
    "sudoku_units",
    "sudoku_violations",
]

#: Every constraint group known to the builders (rules and variants).
SUDOKU_GROUPS: tuple[str, ...] = ("row", "column", "box", "diagonal", "disjoint")
#: The classic rules of Sudoku.
SUDOKU_RULES: tuple[str, ...] = ("row", "column", "box")


# ---------------------------------------------------------------------------- validation
def _check_size(where: str, n: Any) -> int:
    """``n`` as a perfect square ``>= 4`` (box size ``b = sqrt(n) >= 2``)."""
    if not isinstance(n, Integral) or isinstance(n, bool) or n < 4 or math.isqrt(int(n)) ** 2 != n:
        raise ValueError(f"{where} argument `n`: expected a perfect square >= 4 (4, 9, 16, ...), got {n!r}")
    return int(n)


def _check_groups(where: str, groups: Any) -> tuple[str, ...]:
    if isinstance(groups, str):
        groups = (groups,)
    try:
        groups = tuple(groups)
    except TypeError:
        raise ValueError(
            f"{where} argument `groups`: expected a sequence of names from {SUDOKU_GROUPS}, got {groups!r}"
        ) from None
    for g in groups:
        if g not in SUDOKU_GROUPS:
            raise ValueError(f"{where} argument `groups`: expected names from {SUDOKU_GROUPS}, got {g!r}")
    if len(set(groups)) != len(groups):
        raise ValueError(f"{where} argument `groups`: expected distinct names, got {groups!r}")
    return groups


def _check_board(where: str, name: str, board: Any, n: int | None = None, empty_ok: bool = True) -> np.ndarray:
    """``board`` as an ``int64`` array ``(..., n, n)`` of digits ``0..n`` (``1..n`` if not ``empty_ok``)."""
    arr = as_array(where, name, board)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{where} argument `{name}`: expected an integer array, got dtype {arr.dtype}")
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"{where} argument `{name}`: expected a square board of shape (..., n, n), got {arr.shape}")
    size = arr.shape[-1]
    if n is not None and size != n:
        raise ValueError(f"{where} argument `{name}`: expected shape (..., {n}, {n}), got {arr.shape}")
    if size < 4 or math.isqrt(size) ** 2 != size:
        raise ValueError(
            f"{where} argument `{name}`: expected a board of side n a perfect square >= 4 (4, 9, ...), "
            f"got shape {arr.shape}"
        )
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{where} argument `{name}`: expected an integer array, got dtype {arr.dtype}")
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(arr.astype(np.float64)) | (arr != np.round(arr))
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{where} argument `{name}`: expected integer digits, got {arr[idx]!r} at index {idx}")
    arr = arr.astype(np.int64)
    low = 0 if empty_ok else 1
    out = (arr < low) | (arr > size)
    if np.any(out):
        idx = tuple(int(i) for i in np.argwhere(out)[0])
        raise ValueError(
            f"{where} argument `{name}`: expected digits in [{low}, {size}]"
            f"{' (0 = empty cell)' if empty_ok else ''}, got {arr[idx]} at index {idx}"
        )
    return arr


# ---------------------------------------------------------------------------- structure
def sudoku_units(n: int, group: str) -> list[np.ndarray]:
    """The units (cell sets) of one constraint group, as flat cell indices ``r * n + c``.

    Args:
      n: board side, a perfect square ``>= 4``.
      group: one of ``SUDOKU_GROUPS``: ``"row"``, ``"column"``, ``"box"`` (``n`` units each),
        ``"diagonal"`` (the main and the anti-diagonal: 2 units), ``"disjoint"`` (the ``n``
        sets of cells sharing their position inside their box).

    Returns:
      A list of ``int64`` arrays of ``n`` cell indices each.

    Raises:
      ValueError: a bad ``n`` or an unknown ``group``.
    """
    n = _check_size("sudoku_units", n)
    if not isinstance(group, str) or group not in SUDOKU_GROUPS:
        raise ValueError(f"sudoku_units argument `group`: expected one of {SUDOKU_GROUPS}, got {group!r}")
    b = math.isqrt(n)
    idx = np.arange(n * n).reshape(n, n)
    if group == "row":
        return [idx[r] for r in range(n)]
    if group == "column":
        return [idx[:, c] for c in range(n)]
    if group == "box":
        return [idx[i * b : (i + 1) * b, j * b : (j + 1) * b].ravel() for i in range(b) for j in range(b)]
    if group == "diagonal":
        return [np.diagonal(idx).copy(), np.diagonal(idx[:, ::-1]).copy()]
    return [idx[i::b, j::b].ravel() for i in range(b) for j in range(b)]  # disjoint


def sudoku_constraints(n: int = 9, groups: Sequence[str] = SUDOKU_RULES) -> tuple[np.ndarray, np.ndarray]:
    """The equality rows ``A x = 1`` of a Sudoku's 0-1 program.

    First the ``n^2`` cell rows ``sum_d x_{rcd} = 1``, then, group after group (in the order
    given) and unit after unit, the ``n`` rows ``sum_{(r,c) in u} x_{rcd} = 1`` (digit ``d``).

    Args:
      n: board side, a perfect square ``>= 4``.
      groups: names from ``SUDOKU_GROUPS``; default the classic rules.

    Returns:
      ``(A_eq, b_eq)``: a 0/1 ``float64`` matrix ``(n^2 + n * U, n^3)`` (``U`` units in all) and
      a vector of ones.

    Raises:
      ValueError: a bad ``n`` or group name.
    """
    n = _check_size("sudoku_constraints", n)
    groups = _check_groups("sudoku_constraints", groups)
    rows = [np.arange(cell * n, (cell + 1) * n) for cell in range(n * n)]
    for g in groups:
        for unit in sudoku_units(n, g):
            rows.extend(unit * n + d for d in range(n))
    A = np.zeros((len(rows), n**3))
    for i, cols in enumerate(rows):
        A[i, cols] = 1.0
    return A, np.ones(len(rows))


def _givens_bounds(where: str, n: int, givens: Any) -> np.ndarray | None:
    """Lower bounds ``(..., n^3)`` fixing the given digits (``x = 1``), or ``None``."""
    if givens is None:
        return None
    g = _check_board(where, "givens", givens, n)
    return board_to_onehot(g)


# ---------------------------------------------------------------------------- builders
def sudoku_mip(
    n: int = 9,
    givens: Any = None,
    *,
    groups: Sequence[str] = SUDOKU_RULES,
    cost: Any = None,
) -> MIP:
    """The 0-1 program of a Sudoku: ``min cost . x`` over the boards obeying ``groups``.

    $$\\min_{x \\in \\{0,1\\}^{n^3}} \\mathrm{cost}^\\top x \\quad\\text{s.t.}\\quad
    \\sum_d x_{rcd} = 1,\\quad \\sum_{(r,c) \\in u} x_{rcd} = 1\\ (u \\in \\mathcal{U}_g,
    g \\in \\text{groups}),\\quad x_{rcd} = 1 \\text{ where the givens say } (r,c) = d + 1.$$

    The givens are fixed through the lower bounds (``lb = 1``), so a batch of puzzles is a
    batched ``MIP`` (one problem per board; its constraint matrix is broadcast to the batch).

    Args:
      n: board side, a perfect square ``>= 4``.
      givens: ``None`` (empty board) or boards ``(..., n, n)`` of digits ``0..n`` (``0``:
        empty cell).
      groups: names from ``SUDOKU_GROUPS``; default the classic rules row, column, box.
      cost: ``None`` (zeros: any valid board) or costs of shape ``(..., n^3)``.

    Returns:
      A ``MIP`` with ``n^3`` binary variables (order of the module docstring).

    Raises:
      ValueError: a bad ``n``, group name, board shape or digit, or cost shape.
    """
    where = "sudoku_mip"
    n = _check_size(where, n)
    A, b = sudoku_constraints(n, _check_groups(where, groups))
    lb = _givens_bounds(where, n, givens)
    if cost is None:
        c = np.zeros(n**3) if lb is None else np.zeros(lb.shape)
    else:
        c = cost
        shape = c.shape if hasattr(c, "shape") else np.shape(c)
        if len(shape) < 1 or shape[-1] != n**3:
            raise ValueError(f"{where} argument `cost`: expected shape (..., {n**3}) (n^3), got {tuple(shape)}")
    return MIP(c, A_eq=A, b_eq=b, lb=0.0 if lb is None else lb, ub=1.0, integrality=True)


def sudoku(
    n: int = 9,
    givens: Any = None,
    *,
    groups: Sequence[str] = SUDOKU_RULES,
    sense: str = "max",
    backend: str = "scip",
    **options: Any,
) -> Oracle:
    """The oracle of a Sudoku: ``x*(theta) = argmax theta . x`` over the valid completions.

    $$x^*(\\theta) \\in \\operatorname{argmax}_{x \\in X(\\text{givens})} \\theta^\\top x,$$

    ``X`` being the 0-1 encodings of the boards that obey ``groups`` and keep the givens
    (``sudoku_mip``). ``theta`` reads as per-cell digit scores (logits of a network, say):
    the oracle returns the best-scoring valid board. With unique-solution puzzles any
    ``theta`` gives the solution.

    Args:
      n: board side, a perfect square ``>= 4``.
      givens: ``None`` or boards ``(..., n, n)`` (``0``: empty); batched givens make a batched
        problem, solved for a batch of ``theta`` of the same batch shape.
      groups: names from ``SUDOKU_GROUPS``; default row, column, box.
      sense: ``"max"`` (default: scores) or ``"min"`` (costs).
      backend: a MIP solver; default ``"scip"`` (``"cpsat"`` works for rational ``theta``).
      **options: solver options of ``Oracle`` (``time_limit``, ``rel_gap``, ``threads``, ``seed``).

    Returns:
      An ``Oracle`` over ``n^3`` binary variables.

    Raises:
      ValueError: as ``sudoku_mip``, and an unknown sense, backend or option.
    """
    return Oracle(sudoku_mip(n, givens, groups=groups), sense=sense, backend=backend, **options)


def _soft_slacks(n: int, groups: tuple[str, ...]) -> list[tuple[int, np.ndarray, int]]:
    """The slacks of ``sudoku_soft_mip`` in order: (group index, unit cells, digit)."""
    return [(k, unit, d) for k, g in enumerate(groups) for unit in sudoku_units(n, g) for d in range(n)]


def sudoku_soft_mip(
    n: int = 9,
    groups: Sequence[str] = SUDOKU_GROUPS,
    *,
    givens: Any = None,
    cost: Any = None,
) -> MIP:
    """The 0-1 program of Sudoku with *soft* constraint groups (see ``sudoku_soft``), minimized.

    Variables ``(x, v, s)``: the ``n^3`` cell-digit indicators ``x``, one total violation
    ``v_g`` per group (``len(groups)``) and one slack ``s_{g,u,d}`` per group, unit and digit
    (group after group, unit after unit, digit after digit); all integer, ``x`` binary,
    ``0 <= s_{g,u,d} <= |u| - 1``, ``0 <= v_g <= sum_{u,d} (|u| - 1)``. Rows: ``sum_d x_{rcd} = 1``
    (cells), ``v_g - sum_{u,d} s_{g,u,d} = 0`` (groups), ``sum_{(r,c) in u} x_{rcd} - s_{g,u,d} <= 1``.

    Args:
      n: board side, a perfect square ``>= 4``.
      groups: names from ``SUDOKU_GROUPS`` (default all of them), in the order of ``v``.
      givens: optional boards ``(..., n, n)`` whose digits are fixed by bounds (hard givens).
      cost: ``None`` (zeros) or costs ``(..., N)`` over all ``N = n^3 + G + S`` variables.

    Returns:
      A ``MIP`` (minimization of ``cost . (x, v, s)``).

    Raises:
      ValueError: a bad ``n``, group name, board or cost shape.
    """
    where = "sudoku_soft_mip"
    n = _check_size(where, n)
    groups = _check_groups(where, groups)
    if not groups:
        raise ValueError(f"{where} argument `groups`: expected at least one group name, got ()")
    nx, ng = n**3, len(groups)
    slacks = _soft_slacks(n, groups)
    ns = len(slacks)
    nv = nx + ng + ns
    A_ub = np.zeros((ns, nv))
    A_eq = np.zeros((n * n + ng, nv))
    for cell in range(n * n):
        A_eq[cell, cell * n : (cell + 1) * n] = 1.0
    b_eq = np.concatenate([np.ones(n * n), np.zeros(ng)])
    ub = np.ones(nv)
    for j, (k, unit, d) in enumerate(slacks):
        A_ub[j, unit * n + d] = 1.0
        A_ub[j, nx + ng + j] = -1.0
        A_eq[n * n + k, nx + ng + j] = -1.0
        ub[nx + ng + j] = len(unit) - 1
    for k in range(ng):
        A_eq[n * n + k, nx + k] = 1.0
        ub[nx + k] = sum(len(unit) - 1 for (kk, unit, _) in slacks if kk == k)
    lb: Any = 0.0
    fixed = _givens_bounds(where, n, givens)
    if fixed is not None:
        lb = np.concatenate([fixed, np.zeros(fixed.shape[:-1] + (nv - nx,))], axis=-1)
    if cost is None:
        c = np.zeros(nv)
    else:
        c = cost
        shape = c.shape if hasattr(c, "shape") else np.shape(c)
        if len(shape) < 1 or shape[-1] != nv:
            raise ValueError(
                f"{where} argument `cost`: expected shape (..., {nv}) (n^3 + groups + slacks), got {tuple(shape)}"
            )
    return MIP(c, A_ub=A_ub, b_ub=np.ones(ns), A_eq=A_eq, b_eq=b_eq, lb=lb, ub=ub, integrality=True)


def sudoku_soft(
    n: int = 9,
    groups: Sequence[str] = SUDOKU_GROUPS,
    *,
    givens: Any = None,
    backend: str = "scip",
    **options: Any,
) -> SlicedOracle:
    """Sudoku with *soft* constraint groups, each violation costing a (learnable) weight.

    One digit per cell stays hard; every group ``g`` becomes soft: ``s_{g,u,d} >= sum_{(r,c)
    in u} x_{rcd} - 1`` counts the excess copies of digit ``d`` in unit ``u``, and ``v_g =
    sum_{u,d} s_{g,u,d}`` the group's total violation (``0`` iff every unit of ``g`` holds each
    digit at most once, i.e. exactly once). The oracle maximizes over ``(x, v)``

    $$\\max_{x, v, s}\\; \\theta_x^\\top x + \\theta_v^\\top v \\quad\\text{s.t.}\\quad
    \\sum_d x_{rcd} = 1,\\quad s_{g,u,d} \\ge \\sum_{(r,c) \\in u} x_{rcd} - 1,\\quad
    v_g = \\sum_{u,d} s_{g,u,d},\\quad 0 \\le s_{g,u,d} \\le |u| - 1,$$

    with ``theta = (theta_x, theta_v)``: ``theta_v = -w`` puts the penalty ``w_g >= 0`` on the
    violations of group ``g`` (then ``v_g`` is the true violation count at the optimum); the
    givens are typically rewarded in ``theta_x`` (``alpha`` on their one-hot entries) rather than
    fixed, so that a model may also learn how much to trust them. Because ``w`` enters the
    objective linearly through ``v``, a Fenchel-Young or perturbed loss in ``theta`` (targets
    ``sudoku_soft_encode(board)``, ``tamejax.estimators``) learns the weights from solved boards
    (Berthet et al. 2020): the groups the boards obey get large weights.

    Args:
      n: board side, a perfect square ``>= 4``.
      groups: names from ``SUDOKU_GROUPS`` (default all of them), in the order of ``v``.
      givens: optional boards ``(..., n, n)`` whose digits are fixed by bounds (hard givens).
      backend: a MIP solver; default ``"scip"`` (every variable is integer, so ``"cpsat"``
        works for rational ``theta``).
      **options: solver options of ``Oracle``.

    Returns:
      A ``SlicedOracle`` (sense ``"max"``) over the ``n^3 + len(groups)`` costed variables
      ``(x, v)`` of ``sudoku_soft_mip``; the slacks ``s`` are hidden auxiliaries (cost 0).

    Raises:
      ValueError: a bad ``n``, group name, board, backend or option.
    """
    groups = _check_groups("sudoku_soft", groups)
    problem = sudoku_soft_mip(n, groups, givens=givens)
    return SlicedOracle(problem, n**3 + len(groups), sense="max", backend=backend, **options)


def sudoku_soft_encode(board: Any, groups: Sequence[str] = SUDOKU_GROUPS) -> np.ndarray:
    """The point ``(x, v, s)`` of ``sudoku_soft_mip`` that a complete board stands for.

    ``x = board_to_onehot(board)``, ``s_{g,u,d} = max(0, count_u(d) - 1)`` (the least feasible
    slacks) and ``v = sudoku_violations(board, groups)``: the target of a Fenchel-Young loss
    over every variable of the soft model.

    Args:
      board: integer boards ``(..., n, n)``, digits ``0..n``.
      groups: names from ``SUDOKU_GROUPS`` (default all), as given to ``sudoku_soft_mip``.

    Returns:
      A ``float64`` array ``(..., n^3 + G + S)``.

    Raises:
      ValueError: a bad board or group name.
    """
    where = "sudoku_soft_encode"
    b = _check_board(where, "board", board)
    groups = _check_groups(where, groups)
    n = b.shape[-1]
    flat = b.reshape(b.shape[:-2] + (n * n,))
    s = [np.maximum((flat[..., unit] == d + 1).sum(axis=-1) - 1, 0) for (_, unit, d) in _soft_slacks(n, groups)]
    parts = [board_to_onehot(b), sudoku_violations(b, groups), np.stack(s, axis=-1).astype(np.float64)]
    return np.concatenate(parts, axis=-1)


# ---------------------------------------------------------------------------- encodings
def board_to_onehot(board: Any) -> np.ndarray:
    """The 0-1 encoding ``x`` of boards: ``x[(r n + c) n + d] = 1`` iff cell ``(r, c)`` holds ``d + 1``.

    Args:
      board: integer boards ``(..., n, n)``, digits ``0..n`` (``0``: empty, all-zero entries).

    Returns:
      A ``float64`` array ``(..., n^3)``.

    Raises:
      ValueError: a non-square or non-integer board, ``n`` not a perfect square ``>= 4``, a
        digit outside ``[0, n]``.
    """
    b = _check_board("board_to_onehot", "board", board)
    n = b.shape[-1]
    onehot = (b[..., None] == np.arange(1, n + 1)).astype(np.float64)
    return onehot.reshape(b.shape[:-2] + (n**3,))


def onehot_to_board(x: Any, n: int | None = None, threshold: float | None = 0.5) -> np.ndarray:
    """Boards from 0-1 encodings or scores: the arg-max digit of each cell.

    With the default ``threshold = 0.5`` (for 0-1 encodings, e.g. solver output with round-off), a
    cell whose largest entry is ``<= threshold`` is empty (``0``); with ``threshold=None`` every
    cell gets its arg-max digit (for scores or logits of any sign).

    Args:
      x: arrays ``(..., n^3)`` (NumPy or JAX), e.g. ``Oracle`` solutions; ``NaN`` entries (no
        solution) count as ``0``, so ``NaN`` rows give all-zero boards unless ``threshold=None``.
      n: board side; default inferred from ``x.shape[-1] = n^3``.
      threshold: a cell is empty where its largest entry is ``<= threshold``; ``None``: never empty.

    Returns:
      An ``int64`` array ``(..., n, n)`` of digits ``0..n``.

    Raises:
      ValueError: ``x.shape[-1]`` not a cube ``n^3`` of a perfect square ``n >= 4``.
    """
    where = "onehot_to_board"
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 1:
        raise ValueError(f"{where} argument `x`: expected shape (..., n^3), got {arr.shape}")
    if n is None:
        n = round(arr.shape[-1] ** (1 / 3))
    n = _check_size(where, n)
    if arr.shape[-1] != n**3:
        raise ValueError(f"{where} argument `x`: expected shape (..., {n**3}) (n^3 for n = {n}), got {arr.shape}")
    cells = np.nan_to_num(arr, nan=0.0).reshape(arr.shape[:-1] + (n, n, n))
    digit = cells.argmax(axis=-1) + 1
    if threshold is None:
        return digit.astype(np.int64)
    return np.where(cells.max(axis=-1) > float(threshold), digit, 0).astype(np.int64)


def sudoku_violations(board: Any, groups: Sequence[str] = SUDOKU_GROUPS) -> np.ndarray:
    """Total violation of each group: ``v_g = sum_{u in U_g} sum_d max(0, count_u(d) - 1)``.

    The quantity ``v`` of ``sudoku_soft`` for a given board (empty cells count for no digit).

    Args:
      board: integer boards ``(..., n, n)``, digits ``0..n``.
      groups: names from ``SUDOKU_GROUPS`` (default all), in the order of the output.

    Returns:
      A ``float64`` array ``(..., len(groups))``.

    Raises:
      ValueError: a bad board or group name.
    """
    where = "sudoku_violations"
    b = _check_board(where, "board", board)
    groups = _check_groups(where, groups)
    n = b.shape[-1]
    flat = b.reshape(b.shape[:-2] + (n * n,))
    out = []
    for g in groups:
        total = np.zeros(flat.shape[:-1])
        for unit in sudoku_units(n, g):
            counts = (flat[..., unit, None] == np.arange(1, n + 1)).sum(axis=-2)
            total = total + np.maximum(counts - 1, 0).sum(axis=-1)
        out.append(total)
    return np.stack(out, axis=-1).astype(np.float64)


def check_sudoku(board: Any, givens: Any = None, groups: Sequence[str] = SUDOKU_RULES) -> np.ndarray:
    """Whether boards are complete valid solutions that keep the givens.

    A board passes iff every cell holds a digit ``1..n``, each digit appears exactly once in
    every unit of every group in ``groups``, and every non-zero given is in place.

    Args:
      board: integer boards ``(..., n, n)``, digits ``0..n`` (a ``0`` fails).
      givens: optional puzzles of the same shape (``0``: empty).
      groups: the rules checked; default row, column, box.

    Returns:
      A boolean array of shape ``(...)`` (a NumPy ``bool_`` for one board).

    Raises:
      ValueError: a bad board, givens of another shape, a bad group name.
    """
    where = "check_sudoku"
    b = _check_board(where, "board", board)
    groups = _check_groups(where, groups)
    ok = np.all(b.reshape(b.shape[:-2] + (-1,)) > 0, axis=-1)
    if groups:
        ok &= np.all(sudoku_violations(b, groups) == 0, axis=-1)
    if givens is not None:
        g = _check_board(where, "givens", givens, b.shape[-1])
        try:
            keep = (g == 0) | (g == b)
        except ValueError:
            raise ValueError(
                f"{where} argument `givens`: expected shape {b.shape} (that of `board`), got {g.shape}"
            ) from None
        ok &= np.all(keep.reshape(keep.shape[:-2] + (-1,)), axis=-1)
    return ok


# ---------------------------------------------------------------------------- reference solver
class _Search:
    """Bit-mask backtracking over one board (minimum remaining values), plain Python."""

    def __init__(self, board: np.ndarray) -> None:
        n = board.shape[0]
        b = math.isqrt(n)
        self.n, self.full = n, (1 << n) - 1
        self.cells = [(r, c, (r // b) * b + c // b) for r in range(n) for c in range(n)]
        self.rows, self.cols, self.boxes = [0] * n, [0] * n, [0] * n
        self.grid = [int(v) for v in board.ravel()]
        self.consistent = True
        for i, v in enumerate(self.grid):
            if v:
                r, c, k = self.cells[i]
                bit = 1 << (v - 1)
                if (self.rows[r] | self.cols[c] | self.boxes[k]) & bit:
                    self.consistent = False
                self.rows[r] |= bit
                self.cols[c] |= bit
                self.boxes[k] |= bit

    def _pick(self) -> tuple[int, int]:
        best, best_free, best_count = -1, 0, 99
        for i, v in enumerate(self.grid):
            if v == 0:
                r, c, k = self.cells[i]
                free = self.full & ~(self.rows[r] | self.cols[c] | self.boxes[k])
                count = free.bit_count()
                if count < best_count:
                    best, best_free, best_count = i, free, count
                    if count <= 1:
                        break
        return best, best_free

    def run(self, limit: int, rng: np.random.Generator | None) -> tuple[int, list[int] | None]:
        """Count solutions up to ``limit``; also return the first one found."""
        if not self.consistent:
            return 0, None
        found: list[list[int]] = []
        count = 0

        def rec() -> bool:
            nonlocal count
            i, free = self._pick()
            if i < 0:
                count += 1
                if not found:
                    found.append(list(self.grid))
                return count >= limit
            digits = [d for d in range(self.n) if free >> d & 1]
            if rng is not None:
                rng.shuffle(digits)
            r, c, k = self.cells[i]
            for d in digits:
                bit = 1 << d
                self.grid[i] = d + 1
                self.rows[r] |= bit
                self.cols[c] |= bit
                self.boxes[k] |= bit
                stop = rec()
                self.rows[r] ^= bit
                self.cols[c] ^= bit
                self.boxes[k] ^= bit
                self.grid[i] = 0
                if stop:
                    return True
            return False

        rec()
        return count, (found[0] if found else None)


def solve_sudoku(puzzle: Any) -> np.ndarray | None:
    """A solution of one puzzle (rules row, column, box) by backtracking, or ``None`` if none exists.

    Plain Python (bit masks, minimum-remaining-values branching), independent of the MIP
    solvers: a reference for tests. Fast for 4x4 and 9x9 puzzles.

    Args:
      puzzle: one board ``(n, n)``, digits ``0..n`` (``0``: empty).

    Returns:
      The first solution found (``int64`` ``(n, n)``), or ``None``.

    Raises:
      ValueError: a bad board (or a batch of boards).
    """
    p = _check_board("solve_sudoku", "puzzle", puzzle)
    if p.ndim != 2:
        raise ValueError(f"solve_sudoku argument `puzzle`: expected one board (n, n), got shape {p.shape}")
    _, sol = _Search(p).run(1, None)
    return None if sol is None else np.asarray(sol, dtype=np.int64).reshape(p.shape)


def count_sudoku_solutions(puzzle: Any, limit: int = 2) -> int:
    """The number of solutions of one puzzle (rules row, column, box), counted up to ``limit``.

    Args:
      puzzle: one board ``(n, n)``, digits ``0..n``.
      limit: stop counting at this many (``>= 1``); ``2`` decides uniqueness.

    Returns:
      ``min(#solutions, limit)``.

    Raises:
      ValueError: a bad board or ``limit``.
    """
    p = _check_board("count_sudoku_solutions", "puzzle", puzzle)
    if p.ndim != 2:
        raise ValueError(f"count_sudoku_solutions argument `puzzle`: expected one board (n, n), got shape {p.shape}")
    limit = check_int("count_sudoku_solutions", "limit", limit, minimum=1)
    return _Search(p).run(limit, None)[0]


def sudoku_puzzles(
    num: int,
    n: int = 9,
    num_givens: int | None = None,
    *,
    unique: bool = True,
    seed: Any = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Random puzzles and their solutions, deterministic given ``seed``.

    Each solved board is drawn by randomized backtracking (digits tried in a random order from
    an empty board), so boards are not restricted to the shuffles of one pattern. Cells are
    then emptied in a random order until ``num_givens`` remain. With ``unique=True`` (default)
    a cell is emptied only if the puzzle keeps a *unique* solution (checked by
    ``count_sudoku_solutions``); when no further cell can go, the puzzle keeps more than
    ``num_givens`` givens (it is then minimal). With ``unique=False`` exactly ``num_givens``
    cells are kept and the puzzle may have several solutions (``solutions`` holds the board
    it was cut from).

    Args:
      num: number of puzzles ``>= 1``.
      n: board side, a perfect square ``>= 4``.
      num_givens: givens to keep, in ``[0, n^2]``; default ``n^2 // 2`` (8 for 4x4, 40 for 9x9).
      unique: keep every puzzle's solution unique (default ``True``).
      seed: seed of ``numpy.random.default_rng``.

    Returns:
      ``(puzzles, solutions)``: ``int64`` arrays ``(num, n, n)``; ``0`` marks an empty cell.

    Raises:
      ValueError: a bad count, size, number of givens or seed.
    """
    where = "sudoku_puzzles"
    num = check_int(where, "num", num, minimum=1)
    n = _check_size(where, n)
    if num_givens is None:
        num_givens = n * n // 2
    num_givens = check_int(where, "num_givens", num_givens, minimum=0)
    if num_givens > n * n:
        raise ValueError(f"{where} argument `num_givens`: expected an integer in [0, {n * n}], got {num_givens}")
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} argument `seed`: expected None or a non-negative integer, got {seed!r}") from exc
    puzzles = np.zeros((num, n, n), np.int64)
    solutions = np.zeros((num, n, n), np.int64)
    for t in range(num):
        _, sol = _Search(np.zeros((n, n), np.int64)).run(1, rng)
        board = np.asarray(sol, np.int64).reshape(n, n)
        puzzle = board.copy().ravel()
        kept = n * n
        for cell in rng.permutation(n * n):
            if kept <= num_givens:
                break
            digit = puzzle[cell]
            puzzle[cell] = 0
            if unique and _Search(puzzle.reshape(n, n)).run(2, None)[0] != 1:
                puzzle[cell] = digit
            else:
                kept -= 1
        puzzles[t] = puzzle.reshape(n, n)
        solutions[t] = board
    return puzzles, solutions
