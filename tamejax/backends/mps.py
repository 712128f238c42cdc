"""MPS import and export for :class:`tamejax.MIP` (host side: NumPy only, no JAX).

Reading goes through OR-Tools' own MPS parser (``ModelBuilderHelper.import_from_mps_string``,
free and fixed format, ``RANGES``, ``OBJSENSE``, integer ``MARKER`` lines and every bound type
``UP LO FX FR MI PL BV LI UI``), and the parsed model is taken from OR-Tools as an
``MPModelProto``. Its rows ``l <= a x <= u`` are mapped to the ``scipy.optimize.milp``
convention of :class:`tamejax.MIP`:

* ``l == u`` (``E`` rows, or ranged rows of width zero): a row of ``A_eq``, ``b_eq = u``;
* ``l = -inf``, ``u`` finite (``L`` rows): a row of ``A_ub``, ``b_ub = u``;
* ``l`` finite, ``u = +inf`` (``G`` rows): negated into ``A_ub``, ``-a x <= -l``;
* both finite, ``l < u`` (ranged rows, ``RANGES`` section): two consecutive rows of ``A_ub``,
  ``a x <= u`` then ``-a x <= -l``;
* both infinite (free ``N`` rows other than the objective): dropped.

Rows keep their file order inside ``A_ub`` and inside ``A_eq``. Variables keep the order of
the ``COLUMNS`` section and their bounds (``±inf`` kept as such). A maximization objective
(``OBJSENSE MAX``) is negated, with a warning, because a ``MIP`` minimizes. An objective
constant (a right-hand side on the objective row) cannot be represented and raises
``ValueError``; so do quadratic objectives, indicator / SOS / general constraints.

Writing does *not* use OR-Tools' exporter: that one prints numbers with 6 significant
digits (``absl::StrCat``), so a written problem would come back rounded. :func:`write_mps`
writes free-format MPS itself, each number in the shortest form that parses back to the same
float64 (``repr``), with explicit bounds on every variable, and OR-Tools' reader (and other
MPS readers) read it back to the identical problem.
"""

from __future__ import annotations

import gzip
import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["read_mps", "write_mps", "mps_string"]

_FIELDS = ("c", "A_ub", "b_ub", "A_eq", "b_eq", "lb", "ub")


def _load_proto(text: str, path: str) -> Any:
    """Parse MPS text with OR-Tools and return the model as an ``MPModelProto``."""
    from ortools.linear_solver.python import model_builder_helper as mbh

    helper = mbh.ModelBuilderHelper()
    if not helper.import_from_mps_string(text):
        raise ValueError(
            f"read_mps: OR-Tools could not parse {path!r} as an MPS file (free or fixed format; "
            "quadratic objectives, SOS sections and semi-continuous bounds are not supported)"
        )
    # The proto is the reliable view of what was parsed (the helper's per-constraint
    # accessors are not safe once indicator constraints are present).
    return mbh.to_mpmodel_proto(helper)


def read_mps(path: str) -> dict[str, Any]:
    """Read an MPS file (free or fixed format, optionally gzip-compressed) through OR-Tools.

    Args:
      path: the file to read.

    Returns:
      Keyword arguments for ``tamejax.MIP(**data)``: float64 arrays ``c`` ``(n,)``,
      ``A_ub`` ``(m_ub, n)``, ``b_ub`` ``(m_ub,)``, ``A_eq`` ``(m_eq, n)``, ``b_eq`` ``(m_eq,)``,
      ``lb``/``ub`` ``(n,)`` (``±inf`` where unbounded) and a boolean ``integrality`` ``(n,)``.
      ``A_ub``/``b_ub`` (``A_eq``/``b_eq``) are ``None`` when there is no such row.

    Row conventions (rows ``l <= a x <= u``): ``l == u`` gives an equality; ``<=`` rows go to
    ``A_ub``; ``>=`` rows are negated into ``A_ub``; ranged rows (``l < u``, both finite)
    become two ``A_ub`` rows (``a x <= u``, then ``-a x <= -l``); free rows are dropped.
    A maximization objective is negated (``warnings.warn`` says so: a ``MIP`` minimizes).
    Note that OR-Tools keeps the lower bound of a variable at ``0`` when it reads a negative
    ``UP`` bound (some other readers set it to ``-inf``); write ``MI`` explicitly.

    Raises:
      FileNotFoundError: ``path`` does not exist (the message names it).
      ValueError: the file cannot be parsed, or holds something a ``MIP`` cannot represent
        (nonzero objective offset, quadratic objective, indicator/SOS/general constraints,
        a variable with lower bound > upper bound, an infinite equality right-hand side);
        the message names ``path``.
    """
    with open(path, "rb") as f:  # FileNotFoundError names the path
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"read_mps: {path!r} looks gzip-compressed but cannot be read: {exc}") from exc
    text = raw.decode("utf-8", errors="replace")
    proto = _load_proto(text, path)
    return _from_proto(proto, path)


def _from_proto(proto: Any, path: str) -> dict[str, Any]:
    """Convert an OR-Tools ``MPModelProto`` to ``MIP`` keyword arguments (see :func:`read_mps`)."""
    if len(proto.general_constraint):
        kinds = sorted({g.WhichOneof("general_constraint") for g in proto.general_constraint})
        raise ValueError(
            f"read_mps: {path!r} has general constraints ({', '.join(map(str, kinds))}), which a MIP cannot represent"
        )
    if proto.HasField("quadratic_objective") and len(proto.quadratic_objective.coefficient):
        raise ValueError(f"read_mps: {path!r} has a quadratic objective, which a MIP cannot represent")
    offset = float(proto.objective_offset)
    if offset != 0.0:
        raise ValueError(
            f"read_mps: {path!r} has a nonzero objective offset {offset!r} (a right-hand side on "
            "the objective row), which a MIP cannot represent; remove it and add it to the value"
        )

    variables = proto.variable
    n = len(variables)
    c = np.array([v.objective_coefficient for v in variables], dtype=np.float64)
    lb = np.array([v.lower_bound for v in variables], dtype=np.float64)
    ub = np.array([v.upper_bound for v in variables], dtype=np.float64)
    integrality = np.array([v.is_integer for v in variables], dtype=bool)
    bad = np.flatnonzero(~(lb <= ub))
    if bad.size:
        j = int(bad[0])
        raise ValueError(
            f"read_mps: {path!r}: variable {variables[j].name!r} (index {j}) has lower bound "
            f"{lb[j]!r} > upper bound {ub[j]!r} (OR-Tools keeps the lower bound 0 under a "
            "negative UP bound; give an explicit MI or LO bound)"
        )

    ub_rows: list[np.ndarray] = []
    ub_rhs: list[float] = []
    eq_rows: list[np.ndarray] = []
    eq_rhs: list[float] = []
    for con in proto.constraint:
        lo, hi = float(con.lower_bound), float(con.upper_bound)
        row = np.zeros(n, dtype=np.float64)
        np.add.at(
            row,
            np.asarray(con.var_index, dtype=np.int64),
            np.asarray(con.coefficient, dtype=np.float64),
        )
        if lo == hi:
            if not math.isfinite(lo):
                raise ValueError(
                    f"read_mps: {path!r}: row {con.name!r} fixes a x to {lo!r}, which a MIP cannot represent"
                )
            eq_rows.append(row)
            eq_rhs.append(lo)
            continue
        if hi == -math.inf or lo == math.inf:
            raise ValueError(
                f"read_mps: {path!r}: row {con.name!r} has bounds [{lo!r}, {hi!r}], which a MIP cannot represent"
            )
        if hi < math.inf:
            ub_rows.append(row)
            ub_rhs.append(hi)
        if lo > -math.inf:
            ub_rows.append(-row)
            ub_rhs.append(-lo)

    if proto.maximize:
        warnings.warn(
            f"read_mps: {path!r} maximizes; its objective was negated (a MIP minimizes, so the "
            "optimal value of the MIP is minus the file's)",
            stacklevel=2,
        )
        c = -c

    def pack(rows: list[np.ndarray], rhs: list[float]) -> tuple[np.ndarray | None, np.ndarray | None]:
        if not rows:
            return None, None
        return np.stack(rows).astype(np.float64), np.asarray(rhs, dtype=np.float64)

    A_ub, b_ub = pack(ub_rows, ub_rhs)
    A_eq, b_eq = pack(eq_rows, eq_rhs)
    return {
        "c": c,
        "A_ub": A_ub,
        "b_ub": b_ub,
        "A_eq": A_eq,
        "b_eq": b_eq,
        "lb": lb,
        "ub": ub,
        "integrality": integrality,
    }


def _num(v: float) -> str:
    """Shortest decimal form that parses back to the same float64."""
    return repr(float(v))


def _arrays(data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Validate and normalize ``MIP.to_numpy()``-style data for writing."""
    if "c" not in data or data["c"] is None:
        raise ValueError("write_mps: data must contain `c`")
    c = np.asarray(data["c"], dtype=np.float64)
    if c.ndim != 1:
        raise ValueError(f"write_mps: expected a single problem, `c` of shape (n,), got shape {c.shape}")
    n = c.shape[0]
    out: dict[str, np.ndarray] = {"c": c}
    for a_name, b_name in (("A_ub", "b_ub"), ("A_eq", "b_eq")):
        A, b = data.get(a_name), data.get(b_name)
        if (A is None) != (b is None):
            raise ValueError(f"write_mps: `{a_name}` and `{b_name}` must both be given or both be None")
        A = np.zeros((0, n)) if A is None else np.asarray(A, dtype=np.float64)
        b = np.zeros((0,)) if b is None else np.asarray(b, dtype=np.float64)
        if A.ndim != 2 or A.shape[1] != n or b.shape != (A.shape[0],):
            raise ValueError(
                f"write_mps: expected `{a_name}` of shape (m, {n}) and `{b_name}` of shape (m,), "
                f"got {A.shape} and {b.shape}"
            )
        out[a_name], out[b_name] = A, b
    for name in ("c", "A_ub", "b_ub", "A_eq", "b_eq"):
        if not np.all(np.isfinite(out[name])):
            raise ValueError(f"write_mps: `{name}` must be finite")
    for name, default in (("lb", 0.0), ("ub", math.inf)):
        v = data.get(name)
        v = np.full(n, default) if v is None else np.broadcast_to(np.asarray(v, dtype=np.float64), (n,))
        if np.any(np.isnan(v)):
            raise ValueError(f"write_mps: `{name}` must not contain NaN")
        out[name] = v
    if np.any(out["lb"] == math.inf) or np.any(out["ub"] == -math.inf) or np.any(out["lb"] > out["ub"]):
        raise ValueError("write_mps: expected -inf <= lb <= ub <= +inf with lb < +inf and ub > -inf")
    integ = data.get("integrality")
    integ = np.zeros(n, dtype=bool) if integ is None else np.broadcast_to(np.asarray(integ, dtype=bool), (n,))
    out["integrality"] = integ
    return out


def mps_string(data: Mapping[str, Any], name: str = "tamejax") -> str:
    """The free-format MPS text of a problem given as ``MIP.to_numpy()`` returns it.

    Variables are named ``x0, x1, ...``, inequality rows ``ub0, ...`` (type ``L``), equality
    rows ``eq0, ...`` (type ``E``), the objective row ``obj`` (minimized). Integer variables
    sit between ``MARKER INTORG``/``INTEND`` lines. Every variable gets explicit bounds
    (``FX``, ``FR``, ``MI``+``UP``, ``LO``+``PL`` or ``LO``+``UP``), since MPS readers
    otherwise default an integer variable to ``[0, 1]``, and appears in ``COLUMNS`` (with an
    explicit zero objective entry if it has no coefficient) so that the variable order survives.
    Numbers are written with full float64 precision.
    """
    if not name or any(ch.isspace() for ch in name):
        raise ValueError(f"write_mps: `name` must be a nonempty string without whitespace, got {name!r}")
    d = _arrays(data)
    c, A_ub, b_ub, A_eq, b_eq = (d[k] for k in ("c", "A_ub", "b_ub", "A_eq", "b_eq"))
    lb, ub, integ = d["lb"], d["ub"], d["integrality"]
    n = c.shape[0]
    rows = [f"ub{i}" for i in range(A_ub.shape[0])] + [f"eq{i}" for i in range(A_eq.shape[0])]
    A = np.concatenate([A_ub, A_eq], axis=0)
    b = np.concatenate([b_ub, b_eq])

    lines = [f"NAME {name}", "ROWS", " N obj"]
    lines += [f" L {r}" for r in rows[: A_ub.shape[0]]]
    lines += [f" E {r}" for r in rows[A_ub.shape[0] :]]
    lines.append("COLUMNS")
    in_int = False
    markers = 0
    for j in range(n):
        if bool(integ[j]) != in_int:
            tag = "INTORG" if not in_int else "INTEND"
            lines.append(f"    M{markers} 'MARKER' '{tag}'")
            markers += 1
            in_int = not in_int
        var = f"x{j}"
        entries = [("obj", c[j])] if c[j] != 0.0 else []
        entries += [(rows[i], A[i, j]) for i in np.flatnonzero(A[:, j])]
        if not entries:
            entries = [("obj", 0.0)]
        lines += [f"    {var} {r} {_num(v)}" for r, v in entries]
    if in_int:
        lines.append(f"    M{markers} 'MARKER' 'INTEND'")
    lines.append("RHS")
    lines += [f"    rhs {r} {_num(v)}" for r, v in zip(rows, b, strict=True) if v != 0.0]
    lines.append("BOUNDS")
    for j in range(n):
        var, lo, hi = f"x{j}", float(lb[j]), float(ub[j])
        if lo == hi:
            lines.append(f" FX bnd {var} {_num(lo)}")
        elif lo == -math.inf and hi == math.inf:
            lines.append(f" FR bnd {var}")
        elif lo == -math.inf:
            lines += [f" MI bnd {var}", f" UP bnd {var} {_num(hi)}"]
        elif hi == math.inf:
            lines += [f" LO bnd {var} {_num(lo)}", f" PL bnd {var}"]
        else:
            lines += [f" LO bnd {var} {_num(lo)}", f" UP bnd {var} {_num(hi)}"]
    lines.append("ENDATA")
    return "\n".join(lines) + "\n"


def write_mps(path: str, data: Mapping[str, Any], name: str = "tamejax") -> None:
    """Write a problem (as ``MIP.to_numpy()`` returns it) to a free-format MPS file.

    The file reads back (through :func:`read_mps`, i.e. OR-Tools) to identical arrays:
    full float64 precision, infinite bounds as ``MI``/``PL``/``FR``, variable and row order
    kept (inequality rows first, as ``L`` rows, then equality rows, as ``E`` rows). See
    :func:`mps_string` for the layout. OR-Tools' own exporter is not used because it rounds
    numbers to 6 significant digits. A ``path`` ending in ``.gz`` is gzip-compressed.

    Raises:
      ValueError: batched or malformed data, non-finite ``c``/``A``/``b``, or a ``name``
        containing whitespace.
    """
    text = mps_string(data, name=name)
    payload = text.encode("ascii")
    if os.fspath(path).endswith(".gz"):
        payload = gzip.compress(payload)
    with open(path, "wb") as f:
        f.write(payload)
