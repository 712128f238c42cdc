"""Problem builders and data generators: the benchmarks of predict-then-optimize.

Each builder returns an ``Oracle`` (``tamejax.oracle``): the solution map
``theta -> argmin/argmax { theta . x : x in X }`` of a fixed feasible set ``X`` with the right
objective sense and a sensible default backend (``backend=`` and the solver options of
``Oracle`` override it). The data generators reproduce PyEPO's published formulas bit for bit
(same NumPy ``RandomState`` draws, same dtypes), and the variable orders are PyEPO's, so
PyEPO's cost vectors and solutions carry over unchanged.

Builders:

* ``shortest_path(grid)``: source-to-sink path on a grid, arcs right/down (LP, ``"glop"``).
* ``knapsack(weights, capacities)``: multi-dimensional 0-1 knapsack, maximized (``"scip"``).
* ``tsp(num_nodes, formulation)``: symmetric TSP on the edges ``i < j`` (``"scip"``); a
  ``SlicedOracle`` hides the auxiliary variables of the compact formulations.
* ``assignment(n)``: ``n x n`` linear assignment, row-major (LP, ``"glop"``).
* ``set_cover(incidence)``: minimum-cost set cover (``"scip"``).
* ``sudoku(n, givens)``: Sudoku (``n = 4, 9, ...``) as a 0-1 program, maximizing scores over the valid
  completions (``"scip"``); ``sudoku_mip`` the bare ``MIP``; ``sudoku_soft`` / ``sudoku_soft_mip`` with
  soft, weighted constraint groups (rows, columns, boxes, diagonals, disjoint groups) for learning the rules.
* ``maxsat(clauses, num_vars)``: weighted MaxSAT, clause weights in, satisfied clauses out (a
  ``SlicedOracle``, ``"scip"``); ``maxsat_mip`` the ``MIP`` (min ``-w . z``) for ``tamejax.value``.

Data generators (PyEPO's ``genData``): ``shortest_path_data``, ``knapsack_data``, ``tsp_data``;
``static_constraints_data`` (CombOptNet's static constraints, Paulus et al. 2021); ``sudoku_puzzles``;
``random_kcnf``.

Helpers: ``shortest_path_arcs``, ``tsp_edges``, ``tsp_tour``. Sudoku: ``check_sudoku``,
``board_to_onehot``, ``onehot_to_board``, ``sudoku_units``, ``sudoku_constraints``, ``sudoku_violations``,
``sudoku_soft_encode``, ``solve_sudoku``, ``count_sudoku_solutions``, ``SUDOKU_GROUPS``, ``SUDOKU_RULES``.
MaxSAT: ``clause_satisfaction``, ``maxsat_assign``, ``maxsat_brute_force``. Constraint learning:
``solve_binary_enumeration``, ``StaticConstraintsData``.

Reference:
  Tang, B. & Khalil, E. B. (2022). PyEPO: A PyTorch-based end-to-end predict-then-optimize
  library for linear and integer programming. arXiv:2206.14234.
"""

from tamejax.problems.assignment import assignment
from tamejax.problems.knapsack import knapsack, knapsack_data
from tamejax.problems.maxsat import (
    clause_satisfaction,
    maxsat,
    maxsat_assign,
    maxsat_brute_force,
    maxsat_mip,
    random_kcnf,
)
from tamejax.problems.set_cover import set_cover
from tamejax.problems.shortest_path import shortest_path, shortest_path_arcs, shortest_path_data
from tamejax.problems.static_constraints import (
    StaticConstraintsData,
    solve_binary_enumeration,
    static_constraints_data,
)
from tamejax.problems.sudoku import (
    SUDOKU_GROUPS,
    SUDOKU_RULES,
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
from tamejax.problems.tsp import SlicedOracle, tsp, tsp_data, tsp_edges, tsp_tour

__all__ = [
    "SUDOKU_GROUPS",
    "SUDOKU_RULES",
    "SlicedOracle",
    "StaticConstraintsData",
    "assignment",
    "board_to_onehot",
    "check_sudoku",
    "clause_satisfaction",
    "count_sudoku_solutions",
    "knapsack",
    "knapsack_data",
    "maxsat",
    "maxsat_assign",
    "maxsat_brute_force",
    "maxsat_mip",
    "onehot_to_board",
    "random_kcnf",
    "set_cover",
    "shortest_path",
    "shortest_path_arcs",
    "shortest_path_data",
    "solve_binary_enumeration",
    "solve_sudoku",
    "static_constraints_data",
    "sudoku",
    "sudoku_constraints",
    "sudoku_mip",
    "sudoku_puzzles",
    "sudoku_soft",
    "sudoku_soft_encode",
    "sudoku_soft_mip",
    "sudoku_units",
    "sudoku_violations",
    "tsp",
    "tsp_data",
    "tsp_edges",
    "tsp_tour",
]
