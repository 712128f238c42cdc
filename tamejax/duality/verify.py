"""``verify``: an independent check of a ``Certificate`` against its problem.

Nothing here reuses the code that produced the certificate: the Chvátal function is
re-evaluated from its parameters (in exact rational arithmetic when they are exact, else in
float64 with a guarded round-up), the primal point is checked against the original data, and
reference values ``z`` come from an independent solver (``tamejax.solve``, SCIP by default).
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

from tamejax.backends.base import Status
from tamejax.duality._canonical import Canonical, canonicalize
from tamejax.duality.certificate import Certificate, _check_problem
from tamejax.problem import MIP

__all__ = ["VerificationReport", "verify"]


@dataclasses.dataclass
class VerificationReport:
    """Numbers measured by ``verify``; every violation is ``<= 0`` (or ``None``: not applicable).

    Attributes:
      passed: every applicable check within ``tol``.
      method: the certificate's method.
      status: the certificate's status name.
      dual_feasibility: Gomory: ``max_j F(a_j) - c_j`` over the canonical columns; branch and
        bound: the largest amount by which a leaf's constant exceeds what weak duality allows
        for its slope (``y_ub <= 0`` included).
      recession: continuous columns: largest violation of the recession condition (a leaf's
        reduced cost pushing an unbounded continuous variable); ``None`` without such columns.
      subadditivity: ``max F(d1 + d2) - F(d1) - F(d2)`` over sampled pairs (Gomory; ``None`` for
        branch and bound, whose function need not be subadditive).
      F_zero: ``|F(0)|`` of the canonical function (Gomory; ``None`` for branch and bound).
      coverage: branch and bound: whether the leaves partition the root box (``None`` for Gomory).
      primal_violation: largest constraint, bound or integrality violation of ``x`` (``None``
        without ``x``).
      F_b: ``F(b)`` re-evaluated independently.
      z_b: ``c @ x`` (``nan`` without ``x``).
      gap: ``z_b - F_b``.
      z_ref: optimal value from the reference solver (``None`` if not asked).
      lower_bound: ``max F(b') - z(b')`` over sampled right-hand sides ``b'`` near ``b``
        (``z`` by the reference solver; ``None`` if not asked).
      jax_vs_host: largest ``|F_JAX - F_host|`` (float64 JAX, independent host evaluation) at ``b`` and
        at integer neighbours of ``b``.
      samples: number of sampled pairs / right-hand sides.
      messages: the checks that failed, in words.
    """

    passed: bool
    method: str
    status: str
    dual_feasibility: float | None
    recession: float | None
    subadditivity: float | None
    F_zero: float | None
    coverage: bool | None
    primal_violation: float | None
    F_b: float
    z_b: float
    gap: float
    z_ref: float | None
    lower_bound: float | None
    jax_vs_host: float
    samples: int
    messages: list[str] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        def f(v):
            return "n/a" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))

        return (
            f"verify[{self.method}, {self.status}]: {'PASSED' if self.passed else 'FAILED'}; "
            f"F(b)={f(self.F_b)} z(b)={f(self.z_b)} gap={f(self.gap)} z_ref={f(self.z_ref)}; "
            f"dual feasibility {f(self.dual_feasibility)}, recession {f(self.recession)}, "
            f"subadditivity {f(self.subadditivity)}, |F(0)| {f(self.F_zero)}, coverage {f(self.coverage)}, "
            f"primal {f(self.primal_violation)}, lower bound on {self.samples} neighbours {f(self.lower_bound)}"
            + ("" if self.passed else "; " + "; ".join(self.messages))
        )


# ----------------------------------------------------------------------------- Chvátal evaluation
def _ceil_f(t: float) -> float:
    r = round(t)
    return float(r) if abs(t - r) <= 1e-9 * max(1.0, abs(t)) else float(math.ceil(t))


def _chvatal_host(params: dict, d, exact: bool):
    """``y.d + sum_k w_k g_k(d)`` of the integer-scaled canonical function, evaluated on the host."""
    U, V, y, w = params["U"], params["V"], params["y"], params["w"]
    if exact:
        d = [Fraction(v) for v in d]
        g: list = []
        for k in range(len(U)):
            t = sum((u * x for u, x in zip(U[k], d, strict=True) if u), Fraction(0))
            t += sum((v * g[i] for i, v in V[k].items()), Fraction(0))
            g.append(Fraction(math.ceil(t)))
        return sum((a * b for a, b in zip(y, d, strict=True) if a), Fraction(0)) + sum(
            (a * b for a, b in zip(w, g, strict=True) if a), Fraction(0)
        )
    d = np.asarray(d, dtype=np.float64)
    g = np.zeros(len(U))
    for k in range(len(U)):
        t = float(np.dot(U[k], d)) + sum(v * g[i] for i, v in V[k].items())
        g[k] = _ceil_f(t)
    return float(np.dot(y, d) + np.dot(w, g))


def _float_params(p: dict) -> dict:
    U = np.asarray(p["U"], np.float64)
    V = np.asarray(p["V"], np.float64)
    return {
        "U": U,
        "V": [{i: float(V[k, i]) for i in np.flatnonzero(V[k])} for k in range(U.shape[0])],
        "y": np.asarray(p["y"], np.float64),
        "w": np.asarray(p["w"], np.float64),
    }


# ----------------------------------------------------------------------------- checks
def _primal_violation(data: dict, x: np.ndarray) -> float:
    viol = [0.0]
    if data["A_ub"].shape[0]:
        viol.append(float(np.max(data["A_ub"] @ x - data["b_ub"])))
    if data["A_eq"].shape[0]:
        viol.append(float(np.max(np.abs(data["A_eq"] @ x - data["b_eq"]))))
    viol.append(float(np.max(data["lb"] - x, initial=0.0)))
    viol.append(float(np.max(x - data["ub"], initial=0.0)))
    integ = data["integrality"]
    if integ.any():
        viol.append(float(np.max(np.abs(x[integ] - np.round(x[integ])))))
    return max(viol)


def _coverage(cert: Certificate, data: dict) -> bool:
    integ = data["integrality"]
    lb = np.where(integ & np.isfinite(data["lb"]), np.ceil(data["lb"] - 1e-9), data["lb"])
    ub = np.where(integ & np.isfinite(data["ub"]), np.floor(data["ub"] + 1e-9), data["ub"])
    seen: list[int] = []

    def walk(node, lo, hi) -> bool:
        if "leaf" in node:
            i = node["leaf"]
            seen.append(i)
            lf = cert.leaves[i]
            return bool(np.array_equal(lf.lb, lo) and np.array_equal(lf.ub, hi))
        if "branch" not in node:
            return False
        j, k, left, right = node["branch"]
        if not integ[j]:
            return False
        lhi, rlo = hi.copy(), lo.copy()
        lhi[j] = min(hi[j], k)
        rlo[j] = max(lo[j], k + 1)
        return walk(left, lo, lhi) and walk(right, rlo, hi)

    ok = walk(cert.tree, lb.astype(np.float64), ub.astype(np.float64))
    return ok and sorted(seen) == list(range(len(cert.leaves)))


def _leaf_checks(cert: Certificate, data: dict) -> tuple[float, float | None]:
    """Weak-duality slack of every leaf (recomputed from its slope) and the recession violation."""
    A = np.concatenate([data["A_ub"], data["A_eq"]]).reshape(-1, data["c"].shape[0])
    m_ub = data["A_ub"].shape[0]
    cont = ~data["integrality"]
    worst, rec = -math.inf, None
    for lf in cert.leaves:
        Y = np.asarray(lf.Y, np.float64)
        r = data["c"] - A.T @ Y
        tol = 1e-9 * (1 + np.abs(data["c"]) + np.abs(A).T @ np.abs(Y))
        with np.errstate(invalid="ignore"):
            lo_term = np.where(r > tol, r * lf.lb, 0.0)
            hi_term = np.where(r < -tol, r * lf.ub, 0.0)
        with np.errstate(invalid="ignore"):
            e_hat = float(np.sum(np.nan_to_num(lo_term, nan=-np.inf)) + np.sum(np.nan_to_num(hi_term, nan=-np.inf)))
        v = max(
            lf.e - e_hat if math.isfinite(e_hat) else (0.0 if lf.e == -math.inf else math.inf),
            float(np.max(Y[:m_ub], initial=-math.inf)),
        )
        worst = max(worst, v)
        if cont.any():
            bad_up = np.where(cont & ~np.isfinite(lf.ub) & (r < -tol), -r, 0.0)
            bad_lo = np.where(cont & ~np.isfinite(lf.lb) & (r > tol), r, 0.0)
            rv = float(max(bad_up.max(initial=0.0), bad_lo.max(initial=0.0)))
            rec = rv if rec is None else max(rec, rv)
    return worst, rec


def verify(
    problem: MIP,
    certificate: Certificate,
    *,
    samples: int = 32,
    resolve: bool = True,
    backend: str = "scip",
    seed: int = 0,
    tol: float = 1e-6,
) -> VerificationReport:
    """Check a certificate independently of the code that produced it.

    Checks (each reported with its number):

    * dual feasibility: Gomory: ``F(a_j) <= c_j`` for every column ``a_j`` of the canonical
      standard form (slacks and bound rows included), exactly when the certificate is exact;
      the standard form (columns, costs, the map ``phi``, scale and offset) is rebuilt here
      from the problem's data and the certificate's ``phi`` must match it;
      branch and bound: every leaf's constant is what weak duality allows for its slope
      (``e_t <= sum_j max(r_j,0) l_j - max(-r_j,0) u_j``, ``r = c - A^T Y_t``, ``Y_ub <= 0``);
    * the recession condition for continuous columns (no leaf lets an unbounded continuous
      variable decrease the bound);
    * subadditivity ``F(d1 + d2) <= F(d1) + F(d2)`` on ``samples`` sampled pairs (splits of the
      certified ``d``, random integer and real vectors) and ``F(0) = 0`` (Gomory);
    * the leaves of a branch-and-bound tree partition the root box;
    * primal feasibility of ``x`` and the duality gap ``c @ x - F(b)``;
    * the JAX evaluation of ``F`` (float64) against the host one (exact for exact
      certificates) at ``b`` and at ``samples`` integer neighbours of ``b``;
    * with ``resolve``: the optimal value by ``backend`` at ``b`` and at ``samples`` integer
      perturbations ``b'`` of ``b`` (one batched solve), and ``max F(b') - z(b')``.

    Args:
      problem: the certified ``MIP``.
      certificate: from ``certify(problem)``.
      samples: sampled pairs / neighbouring right-hand sides.
      resolve: re-solve with ``backend`` for reference values.
      backend: reference solver.
      seed: sampling seed.
      tol: absolute tolerance (scaled by ``1 + |value|``) for the float checks.

    Returns:
      A ``VerificationReport``.

    Raises:
      TypeError: ``problem`` is not a concrete ``MIP`` or ``certificate`` not a ``Certificate``.
      ValueError: the certificate's right-hand side has the wrong length.
    """
    data = _check_problem(problem)
    if not isinstance(certificate, Certificate):
        raise TypeError(f"argument `certificate`: expected a Certificate, got {type(certificate).__name__}")
    cert = certificate
    b = np.concatenate([data["b_ub"], data["b_eq"]])
    if cert.b.shape != b.shape:
        raise ValueError(f"argument `certificate`: expected b of shape {b.shape}, got {cert.b.shape}")
    rng = np.random.default_rng(seed)
    msgs: list[str] = []
    scale = 1.0 + float(np.max(np.abs(data["c"]), initial=0.0)) * (1.0 + float(np.max(np.abs(b), initial=0.0)))
    tl = tol * scale
    dual = rec = sub = f0 = cov = None
    prim = None
    z_b = float(cert.objective) if cert.x is not None else math.nan
    if cert.x is not None:
        prim = _primal_violation(data, np.asarray(cert.x, np.float64))
        z_b = float(data["c"] @ cert.x)
        if prim > tl:
            msgs.append(f"x violates the problem by {prim:.3g}")
    if cert.F is None:
        ok_status = cert.status in (Status.INFEASIBLE, Status.UNBOUNDED)
        z_ref = None
        if resolve:
            from tamejax.solve import solve

            sol = solve(problem, backend)
            z_ref = float(sol.objective)
            if int(sol.status) != int(cert.status):
                msgs.append(f"status {cert.status.name} but {backend} says {Status(int(sol.status)).name}")
        return VerificationReport(
            ok_status and not msgs,
            cert.method,
            cert.status.name,
            None,
            None,
            None,
            None,
            None,
            prim,
            math.nan,
            z_b,
            math.nan,
            z_ref,
            None,
            0.0,
            0,
            msgs,
        )
    # Gomory: the standard form is rebuilt from the problem data, not taken from the certificate
    can_v = canonicalize(data, integer_scaled=True, exact=True) if cert.method == "gomory" else None
    # JAX evaluation (float64, whatever the global x64 setting) at b and at integer neighbours of b
    nb = np.random.default_rng(seed + 1).integers(-2, 3, size=(samples, b.shape[0])).astype(np.float64)
    pts = np.concatenate([b[None], b + nb])
    with jax.enable_x64(True):
        F_jax_all = np.asarray(cert.F(jnp.asarray(pts, jnp.float64)), np.float64)
    jvh_nb = float(np.max(np.abs(F_jax_all[1:] - _F_host_many(cert, pts[1:], can_v)), initial=0.0))
    F_jax = float(F_jax_all[0])
    if cert.method == "gomory":
        can = can_v
        exact = cert.exact is not None
        params = cert.exact if exact else _float_params(cert.params)
        cs = can.cost_scale
        mism = _phi_mismatch(cert, can)
        if mism:
            msgs.append(f"the certificate's map phi / scaling differs from the problem's standard form: {mism}")

        def Fc(d):  # canonical, original cost units
            v = _chvatal_host(params, d, exact)
            return float(v) / cs if not exact else v / cs

        cols = can.A_q if exact else can.A.tolist()
        costs = can.c_q  # integer-scaled costs
        N = len(costs)
        dual = max(
            float(Fc([row[j] for row in cols]) - Fraction(costs[j]) / cs)
            if exact
            else Fc([row[j] for row in cols]) - float(costs[j]) / cs
            for j in range(N)
        )
        if dual > (0 if exact else tl):
            msgs.append(f"F(a_j) > c_j by {dual:.3g}")
        m = can.m
        f0 = abs(float(Fc([0] * m)))
        if f0 > (0 if exact else tl):
            msgs.append(f"F(0) = {f0:.3g}")
        d_b = can.d_of_exact(b) if exact else can.d_of(b).tolist()
        sub = -math.inf
        for s in range(samples):
            if s % 3 == 0:  # a split of d_b into two integer parts
                d1 = [int(v) for v in rng.integers(-3, 4, size=m)]
                d2 = [db - a for db, a in zip(d_b, d1, strict=True)]
            elif s % 3 == 1:
                d1 = [int(v) for v in rng.integers(-5, 6, size=m)]
                d2 = [int(v) for v in rng.integers(-5, 6, size=m)]
            else:
                d1 = [Fraction(int(v), 7) for v in rng.integers(-30, 31, size=m)]
                d2 = [Fraction(int(v), 5) for v in rng.integers(-30, 31, size=m)]
            if not exact:
                d1, d2 = [float(v) for v in d1], [float(v) for v in d2]
            d12 = [a + c for a, c in zip(d1, d2, strict=True)]
            sub = max(sub, float(Fc(d12) - Fc(d1) - Fc(d2)))
        if sub > (0 if exact else tl):
            msgs.append(f"subadditivity violated by {sub:.3g}")
        F_b = float(Fc(d_b)) + can.offset
    else:
        dual, rec = _leaf_checks(cert, data)
        if dual > tl:
            msgs.append(f"a leaf's constant exceeds weak duality by {dual:.3g}")
        if rec is not None and rec > tl:
            msgs.append(f"recession condition violated by {rec:.3g}")
        cov = _coverage(cert, data)
        if not cov:
            msgs.append("the leaves do not partition the root box")
        Y = np.stack([np.asarray(lf.Y, np.float64) for lf in cert.leaves])
        e = np.array([lf.e for lf in cert.leaves])
        F_b = float(np.min(Y @ b + e))
    jvh = max(abs(F_jax - F_b), jvh_nb)
    if jvh > tl:
        msgs.append(f"JAX evaluation differs from the host's by {jvh:.3g} (at b or an integer neighbour)")
    gap = z_b - F_b
    if cert.status == Status.OPTIMAL and not (abs(gap) <= tl):
        msgs.append(f"status OPTIMAL but gap {gap:.3g}")
    if gap < -tl:
        msgs.append(f"F(b) exceeds c x by {-gap:.3g}")
    z_ref = lb = None
    if resolve:
        from tamejax.solve import solve

        ref = solve(problem, backend)
        z_ref = float(ref.objective)
        if F_b > z_ref + tl:
            msgs.append(f"F(b) = {F_b:.6g} > z(b) = {z_ref:.6g} by {backend}")
        if cert.status == Status.OPTIMAL and abs(F_b - z_ref) > tl:
            msgs.append(f"F(b) = {F_b:.6g} but {backend} finds z(b) = {z_ref:.6g}")
        if samples:
            m_ub, m_eq = data["b_ub"].shape[0], data["b_eq"].shape[0]
            pert = rng.integers(-2, 3, size=(samples, m_ub + m_eq)).astype(np.float64)
            bs = b + pert
            batch = MIP(
                c=np.broadcast_to(data["c"], (samples,) + data["c"].shape),
                A_ub=np.broadcast_to(data["A_ub"], (samples,) + data["A_ub"].shape),
                b_ub=bs[:, :m_ub],
                A_eq=np.broadcast_to(data["A_eq"], (samples,) + data["A_eq"].shape),
                b_eq=bs[:, m_ub:],
                lb=np.broadcast_to(data["lb"], (samples,) + data["lb"].shape),
                ub=np.broadcast_to(data["ub"], (samples,) + data["ub"].shape),
                integrality=data["integrality"],
            )
            sol = solve(batch, backend)
            z = np.asarray(sol.objective, np.float64)
            st = np.asarray(sol.status)
            Fv = _F_host_many(cert, bs, can_v)
            known = (st == int(Status.OPTIMAL)) | (st == int(Status.INFEASIBLE))
            diff = np.where(known, Fv - np.where(st == int(Status.INFEASIBLE), np.inf, z), -np.inf)
            lb = float(np.max(diff, initial=-math.inf))
            if lb > tl * (1 + float(np.max(np.abs(pert)))):
                msgs.append(f"F(b') > z(b') by {lb:.3g} at a neighbouring right-hand side")
    return VerificationReport(
        not msgs,
        cert.method,
        cert.status.name,
        dual,
        rec,
        sub,
        f0,
        cov,
        prim,
        F_b,
        z_b,
        gap,
        z_ref,
        lb,
        jvh,
        samples,
        msgs,
    )


def _phi_mismatch(cert: Certificate, can: Canonical) -> str:
    """Where the certificate's ``phi``, scale and offset differ from the rebuilt standard form (``""``: nowhere)."""
    p = cert.params
    checks = (
        ("in_matrix", np.asarray(p["in_matrix"], np.float64), np.asarray(can.in_matrix, np.float64)),
        ("in_offset", np.asarray(p["in_offset"], np.float64), np.asarray(can.in_offset, np.float64)),
        ("scale", np.float64(p["scale"]), np.float64(1.0 / can.cost_scale)),
        ("offset", np.float64(p["offset"]), np.float64(can.offset)),
    )
    bad = [k for k, a, b in checks if a.shape != b.shape or not np.allclose(a, b, rtol=1e-12, atol=1e-12)]
    if not np.array_equal(np.asarray(p["in_floor"], bool), np.asarray(can.in_floor, bool)):
        bad.append("in_floor")
    if np.asarray(p["U"]).ndim == 2 and np.asarray(p["U"]).shape[1] != can.m:
        bad.append("U")
    return ", ".join(bad)


def _F_host_many(cert: Certificate, bs: np.ndarray, can: Canonical | None = None) -> np.ndarray:
    """Independent host evaluation of ``F`` at many original right-hand sides (``can``: rebuilt standard form)."""
    if cert.method == "gomory":
        can = can if can is not None else cert.canonical
        exact = cert.exact is not None
        params = cert.exact if exact else _float_params(cert.params)
        out = []
        for bb in bs:
            d = can.d_of_exact(bb) if exact else can.d_of(bb).tolist()
            out.append(float(_chvatal_host(params, d, exact)) / can.cost_scale + can.offset)
        return np.array(out)
    Y = np.stack([np.asarray(lf.Y, np.float64) for lf in cert.leaves])
    e = np.array([lf.e for lf in cert.leaves])
    return np.min(bs @ Y.T + e, axis=-1)
