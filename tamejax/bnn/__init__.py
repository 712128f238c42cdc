"""Training binarized and integer-valued neural networks as mixed-integer programs.

``fit_mip(X, y, hidden=(16,), formulation=..., weights="ternary" | P, time_limit=..., backend="cpsat" | "scip")``
returns ``(params, report)``: a :class:`BNNParams` network with weights in {-1, 1}, {-1, 0, 1},
{-P..P} (or bounded reals with SCIP) and a :class:`FitReport` (status, objective, bound, gap,
training accuracy recomputed by :func:`predict`, solve time, model size). Formulations
(:mod:`tamejax.bnn.formulations`): ``min_weight`` and ``max_margin`` (Icarte et al. 2019),
``max_correct``, ``sat_margin``, ``min_hinge`` (Thorbjarnarson & Yorke-Smith 2023), ``big_m``
(Kurtz & Bah 2021). Networks load into :class:`tamejax.nn.BinaryDense` layers (:func:`to_flax`)
and export to bit-packed inference (:func:`to_packed`). OR-Tools is used only through
:mod:`tamejax.backends.bnn_solver`.
"""

from tamejax.bnn._data import BNNData, load_data
from tamejax.bnn._types import (
    BNNParams,
    FitReport,
    PackedBNN,
    Scaling,
    WeightSpec,
    hidden_activations,
    model_size_bytes,
    predict,
    scores,
    to_flax,
    to_packed,
)
from tamejax.bnn.fit import METHODS, fit_mip
from tamejax.bnn.formulations import FORMULATIONS, BNNModel, build

__all__ = [
    "BNNData",
    "BNNModel",
    "BNNParams",
    "FORMULATIONS",
    "FitReport",
    "METHODS",
    "PackedBNN",
    "Scaling",
    "WeightSpec",
    "build",
    "fit_mip",
    "hidden_activations",
    "load_data",
    "model_size_bytes",
    "predict",
    "scores",
    "to_flax",
    "to_packed",
]
