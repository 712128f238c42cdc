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

Data generators (PyEPO's ``genData``): ``shortest_path_data``, ``knapsack_data``, ``tsp_data``.

Helpers: ``shortest_path_arcs``, ``tsp_edges``, ``tsp_tour``.

Reference:
  Tang, B. & Khalil, E. B. (2022). PyEPO: A PyTorch-based end-to-end predict-then-optimize
  library for linear and integer programming. arXiv:2206.14234.
"""

from tamejax.problems.assignment import assignment
from tamejax.problems.knapsack import knapsack, knapsack_data
from tamejax.problems.set_cover import set_cover
from tamejax.problems.shortest_path import shortest_path, shortest_path_arcs, shortest_path_data
from tamejax.problems.tsp import SlicedOracle, tsp, tsp_data, tsp_edges, tsp_tour

__all__ = [
    "SlicedOracle",
    "assignment",
    "knapsack",
    "knapsack_data",
    "set_cover",
    "shortest_path",
    "shortest_path_arcs",
    "shortest_path_data",
    "tsp",
    "tsp_data",
    "tsp_edges",
    "tsp_tour",
]
