"""The ``MIP`` pytree: validation, pytree structure, batching, indexing, replace, repr."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tamejax
from tamejax import MIP


def _base(n: int = 3, m_ub: int = 2, m_eq: int = 1) -> dict:
    return dict(
        c=np.arange(1.0, n + 1),
        A_ub=np.ones((m_ub, n)),
        b_ub=np.full(m_ub, 4.0),
        A_eq=np.ones((m_eq, n)),
        b_eq=np.full(m_eq, 1.0),
        lb=np.zeros(n),
        ub=np.full(n, 5.0),
        integrality=[True] + [False] * (n - 1),
    )


def _raises_naming(field: str, **kwargs):
    """``MIP(**(_base() | kwargs))`` must raise a ValueError naming ``field``; its message."""
    data = _base() | kwargs
    with pytest.raises(ValueError, match=re.escape(f"`{field}`")) as info:
        MIP(**data)
    return str(info.value)


# ------------------------------------------------------------------ validation: shapes


def test_valid_problem_has_expected_fields():
    p = MIP(**_base())
    assert (p.n, p.m_ub, p.m_eq, p.batch_shape) == (3, 2, 1, ())
    assert p.integrality == (True, False, False)
    assert p.is_mip
    np.testing.assert_array_equal(p.c, [1.0, 2.0, 3.0])
    assert p.c.dtype == jnp.float64  # conftest enables x64


def test_defaults_follow_scipy():
    p = MIP(c=[1, 2])
    assert (p.m_ub, p.m_eq) == (0, 0)
    assert p.A_ub.shape == (0, 2) and p.b_ub.shape == (0,)
    assert p.A_eq.shape == (0, 2) and p.b_eq.shape == (0,)
    np.testing.assert_array_equal(p.lb, [0.0, 0.0])
    np.testing.assert_array_equal(p.ub, [np.inf, np.inf])
    assert p.integrality == (False, False)
    assert not p.is_mip
    assert jnp.issubdtype(p.c.dtype, jnp.floating)  # integer input becomes floating


def test_c_zero_dimensional():
    with pytest.raises(ValueError, match=r"`c`.*ndim >= 1.*shape \(\)"):
        MIP(c=1.0)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("A_ub", np.ones((2, 4)), "(..., m, 3)"),
        ("A_ub", np.ones(3), "(..., m, 3)"),
        ("b_ub", np.ones(3), "(..., 2)"),
        ("A_eq", np.ones((1, 2)), "(..., m, 3)"),
        ("b_eq", np.ones(2), "(..., 1)"),
        ("lb", np.zeros(4), "(..., 3)"),
        ("ub", np.ones(2), "(..., 3)"),
    ],
)
def test_wrong_shapes_name_field_expected_and_received(field, value, expected):
    msg = _raises_naming(field, **{field: value})
    assert expected in msg
    received = "(" + ", ".join(map(str, value.shape)) + ("," if value.ndim == 1 else "") + ")"
    assert received in msg


@pytest.mark.parametrize("integrality", [[True, False], [1, 0, 1, 0], np.ones((3, 1), bool)])
def test_integrality_wrong_length(integrality):
    msg = _raises_naming("integrality", integrality=integrality)
    assert "(3,)" in msg


@pytest.mark.parametrize("integrality", [[2, 0, 1], [0, 1, 3], [0.5, 0, 0], ["a", "b", "c"]])
def test_integrality_wrong_values(integrality):
    _raises_naming("integrality", integrality=integrality)


@pytest.mark.parametrize("integrality", [True, 1, [1, 0, 1], np.array([True, False, True])])
def test_integrality_accepted_forms(integrality):
    p = MIP(**(_base() | {"integrality": integrality}))
    expected = (True,) * 3 if np.ndim(integrality) == 0 else tuple(bool(v) for v in integrality)
    assert p.integrality == expected
    assert all(type(v) is bool for v in p.integrality)


@pytest.mark.parametrize(("given", "missing"), [("A_ub", "b_ub"), ("b_ub", "A_ub"), ("A_eq", "b_eq"), ("b_eq", "A_eq")])
def test_matrix_and_rhs_come_together(given, missing):
    data = {"c": np.ones(3), given: _base()[given]}
    pattern = re.escape(f"`{missing}`") + ".*" + re.escape(f"`{given}`")
    with pytest.raises(ValueError, match=pattern):
        MIP(**data)


def test_non_numeric_data_rejected():
    with pytest.raises(ValueError, match="`c`"):
        MIP(c=["a", "b"])
    with pytest.raises(ValueError, match="`b_ub`"):
        MIP(**(_base() | {"b_ub": np.array([1 + 1j, 2])}))


# ------------------------------------------------------------------ validation: values


@pytest.mark.parametrize("field", ["c", "A_ub", "b_ub", "A_eq", "b_eq"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_data_rejected(field, bad):
    value = np.array(_base()[field], dtype=np.float64)
    value.flat[-1] = bad
    msg = _raises_naming(field, **{field: value})
    assert "finite" in msg
    idx = np.unravel_index(value.size - 1, value.shape)
    assert str(tuple(int(i) for i in idx)) in msg  # the index of the bad entry


@pytest.mark.parametrize("field", ["lb", "ub"])
def test_nan_bounds_rejected(field):
    value = np.array(_base()[field], dtype=np.float64)
    value[1] = np.nan
    msg = _raises_naming(field, **{field: value})
    assert "nan" in msg and "(1,)" in msg


def test_lb_greater_than_ub_shows_values():
    msg = _raises_naming("lb", lb=np.array([0.0, 3.5, 0.0]), ub=np.array([5.0, 1.25, 5.0]))
    assert "`ub`" in msg
    assert "3.5" in msg and "1.25" in msg and "(1,)" in msg


def test_lb_plus_inf_and_ub_minus_inf_rejected():
    msg = _raises_naming("lb", lb=np.array([0.0, np.inf, 0.0]), ub=np.inf)
    assert "inf" in msg
    msg = _raises_naming("ub", lb=-np.inf, ub=np.array([1.0, 1.0, -np.inf]))
    assert "-inf" in msg


def test_infinite_bounds_allowed():
    p = MIP(**(_base() | {"lb": -np.inf, "ub": np.array([np.inf, 2.0, np.inf])}))
    np.testing.assert_array_equal(p.lb, [-np.inf] * 3)
    np.testing.assert_array_equal(p.ub, [np.inf, 2.0, np.inf])
    p = MIP(c=[1.0], lb=[-math.inf], ub=[math.inf])
    assert p.n == 1


def test_equal_bounds_allowed():
    p = MIP(**(_base() | {"lb": 2.0, "ub": 2.0}))
    np.testing.assert_array_equal(p.lb, p.ub)


def test_traced_data_skip_value_checks_but_keep_shape_checks():
    """Inside ``jit`` values are unknown: construction succeeds, shapes are still checked."""

    @jax.jit
    def build(c):
        return MIP(c=c, A_ub=jnp.ones((1, 2)), b_ub=jnp.ones(1)).c

    np.testing.assert_array_equal(build(jnp.array([jnp.nan, 1.0])), [np.nan, 1.0])

    @jax.jit
    def bad(c):
        return MIP(c=c, A_ub=jnp.ones((1, 3)), b_ub=jnp.ones(1)).c

    with pytest.raises(ValueError, match="`A_ub`"):
        bad(jnp.ones(2))


# ------------------------------------------------------------------ pytree


def test_flatten_unflatten_round_trip():
    p = MIP(**_base())
    leaves, treedef = jax.tree_util.tree_flatten(p)
    assert len(leaves) == 7
    q = jax.tree_util.tree_unflatten(treedef, leaves)
    assert isinstance(q, MIP)
    assert q.integrality == p.integrality
    for name in ("c", "A_ub", "b_ub", "A_eq", "b_eq", "lb", "ub"):
        np.testing.assert_array_equal(getattr(q, name), getattr(p, name))
    doubled = jax.tree_util.tree_map(lambda v: 2 * v, p)
    np.testing.assert_array_equal(doubled.c, 2 * p.c)
    assert doubled.integrality == p.integrality


def test_integrality_is_static():
    p = MIP(**_base())
    q = MIP(**(_base() | {"integrality": [False, True, True]}))
    leaves, treedef = jax.tree_util.tree_flatten(p)
    # Not a leaf: every leaf is a float array of the numeric fields...
    assert all(jnp.issubdtype(v.dtype, jnp.floating) for v in leaves)
    assert not any(v.dtype == jnp.bool_ for v in leaves)
    # ...but part of the tree structure.
    assert treedef != jax.tree_util.tree_structure(q)
    assert "True, False, False" in str(treedef)

    traces = []

    @jax.jit
    def f(problem):
        traces.append(problem.integrality)
        return problem.c.sum()

    f(p)
    f(jax.tree_util.tree_map(lambda v: v + 1, p))  # same structure: no retrace
    f(q)  # different integrality: retrace
    assert traces == [p.integrality, q.integrality]


def test_grad_flows_through_leaves():
    p = MIP(**_base())
    g = jax.grad(lambda prob: jnp.sum(prob.c * prob.ub) + jnp.sum(prob.A_ub))(p)
    assert isinstance(g, MIP)
    np.testing.assert_array_equal(g.c, p.ub)
    np.testing.assert_array_equal(g.A_ub, np.ones((2, 3)))
    np.testing.assert_array_equal(g.b_eq, np.zeros(1))


# ------------------------------------------------------------------ batching


def test_batched_construction_broadcasts_unbatched_fields():
    c = np.arange(12.0).reshape(4, 3)
    p = MIP(c=c, A_ub=np.ones((2, 3)), b_ub=np.array([1.0, 2.0]), lb=-1.0, ub=np.full(3, 7.0))
    assert p.batch_shape == (4,)
    assert p.A_ub.shape == (4, 2, 3) and p.b_ub.shape == (4, 2)
    assert p.A_eq.shape == (4, 0, 3) and p.b_eq.shape == (4, 0)
    assert p.lb.shape == (4, 3) and p.ub.shape == (4, 3)
    np.testing.assert_array_equal(p.lb, -np.ones((4, 3)))
    np.testing.assert_array_equal(p.b_ub[2], [1.0, 2.0])
    assert (p.n, p.m_ub, p.m_eq) == (3, 2, 0)


def test_batched_matrix_with_unbatched_cost():
    A = np.arange(2 * 3 * 2.0).reshape(2, 3, 2)
    p = MIP(c=[1.0, -1.0], A_ub=A, b_ub=np.ones(3))
    assert p.batch_shape == (2,)
    assert p.c.shape == (2, 2)
    np.testing.assert_array_equal(p.c[1], [1.0, -1.0])
    np.testing.assert_array_equal(p.b_ub, np.ones((2, 3)))


def test_incompatible_batch_axes_rejected():
    with pytest.raises(ValueError, match="batch"):
        MIP(c=np.ones((4, 3)), A_ub=np.ones((5, 2, 3)), b_ub=np.ones(2))


def test_value_checks_cover_every_batch_member():
    ub = np.full((3, 2), 5.0)
    ub[2, 1] = -1.0
    with pytest.raises(ValueError, match=r"lb = 0\.0 > ub = -1\.0 at index \(2, 1\)"):
        MIP(c=np.ones((3, 2)), ub=ub)


def test_getitem_indexes_batch():
    c = np.arange(12.0).reshape(4, 3)
    b = np.arange(8.0).reshape(4, 2)
    p = MIP(c=c, A_ub=np.ones((2, 3)), b_ub=b, integrality=[1, 0, 1])
    q = p[2]
    assert q.batch_shape == ()
    assert q.integrality == (True, False, True)
    np.testing.assert_array_equal(q.c, c[2])
    np.testing.assert_array_equal(q.b_ub, b[2])
    np.testing.assert_array_equal(q.A_ub, np.ones((2, 3)))
    r = p[1:3]
    assert r.batch_shape == (2,)
    np.testing.assert_array_equal(r.c, c[1:3])
    with pytest.raises(IndexError):
        q[0]


def test_nested_batch_and_vmap_agree():
    c = np.arange(24.0).reshape(2, 4, 3)
    p = MIP(c=c, ub=10.0)
    assert p.batch_shape == (2, 4)
    np.testing.assert_array_equal(p[1, 3].c, c[1, 3])
    sums = jax.vmap(jax.vmap(lambda prob: prob.c @ prob.ub))(p)
    np.testing.assert_allclose(sums, c.sum(-1) * 10.0)


# ------------------------------------------------------------------ replace, repr, numpy


def test_replace_returns_validated_copy():
    p = MIP(**_base())
    q = p.replace(c=np.array([-1.0, 0.0, 1.0]), ub=3.0)
    np.testing.assert_array_equal(q.c, [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(q.ub, [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(p.c, [1.0, 2.0, 3.0])  # original untouched
    np.testing.assert_array_equal(q.A_ub, p.A_ub)
    assert q.integrality == p.integrality
    assert p.replace(integrality=True).integrality == (True, True, True)
    with pytest.raises(ValueError, match="`lb`"):
        p.replace(lb=6.0)
    with pytest.raises(ValueError, match="`A_ub`"):
        p.replace(A_ub=np.ones((2, 4)))
    with pytest.raises(TypeError):
        p.replace(d=1.0)


def test_repr():
    p = MIP(**_base())
    assert repr(p) == "MIP(n=3, integer=1, m_ub=2, m_eq=1)"
    b = MIP(c=np.ones((5, 2)), integrality=True)
    assert repr(b) == "MIP(n=2, integer=2, m_ub=0, m_eq=0, batch_shape=(5,))"


def test_to_numpy():
    p = MIP(**_base())
    d = p.to_numpy()
    assert set(d) == {"c", "A_ub", "b_ub", "A_eq", "b_eq", "lb", "ub", "integrality"}
    assert d["c"].dtype == np.float64 and d["integrality"].dtype == np.bool_
    np.testing.assert_array_equal(d["integrality"], [True, False, False])


def test_float32_follows_jax_default_when_given():
    p = MIP(c=np.ones(2, np.float32), A_ub=np.ones((1, 2), np.float32), b_ub=np.ones(1, np.float32))
    assert p.c.dtype == jnp.float32


# ------------------------------------------------------------------ property test


@st.composite
def _shapes(draw):
    n = draw(st.integers(1, 5))
    m_ub = draw(st.integers(0, 3))
    m_eq = draw(st.integers(0, 3))
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    # each field independently batched or not (unbatched ones are broadcast)
    batched = {k: draw(st.booleans()) for k in ("A_ub", "b_ub", "A_eq", "b_eq", "lb", "ub")}
    return n, m_ub, m_eq, batch, batched


@settings(max_examples=60, deadline=None)
@given(
    _shapes(),
    st.sampled_from(["none", "c", "A_ub", "b_ub", "A_eq", "b_eq", "lb", "ub", "integrality"]),
    st.data(),
)
def test_shapes_property(shapes, break_field, data):
    """Every consistent combination of shapes builds; breaking one core axis names that field."""
    n, m_ub, m_eq, batch, batched = shapes
    rng = np.random.default_rng(0)

    def arr(name, core):
        shape = (batch if (name == "c" or batched[name]) else ()) + core
        return rng.integers(-3, 4, size=shape).astype(np.float64)

    fields = {
        "c": arr("c", (n,)),
        "A_ub": arr("A_ub", (m_ub, n)),
        "b_ub": arr("b_ub", (m_ub,)),
        "A_eq": arr("A_eq", (m_eq, n)),
        "b_eq": arr("b_eq", (m_eq,)),
        "lb": arr("lb", (n,)) - 10.0,
        "ub": arr("ub", (n,)) + 10.0,
        "integrality": data.draw(st.lists(st.booleans(), min_size=n, max_size=n)),
    }
    if break_field == "none":
        p = MIP(**fields)
        assert (p.n, p.m_ub, p.m_eq, p.batch_shape) == (n, m_ub, m_eq, batch)
        expected = {
            "c": (n,),
            "A_ub": (m_ub, n),
            "b_ub": (m_ub,),
            "A_eq": (m_eq, n),
            "b_eq": (m_eq,),
            "lb": (n,),
            "ub": (n,),
        }
        for name, core in expected.items():
            assert getattr(p, name).shape == batch + core, name
        assert p.integrality == tuple(fields["integrality"])
        leaves, treedef = jax.tree_util.tree_flatten(p)
        assert jax.tree_util.tree_unflatten(treedef, leaves).batch_shape == batch
        if batch:
            first = p[(0,) * len(batch)]
            assert first.batch_shape == ()
            np.testing.assert_array_equal(first.c, fields["c"][(0,) * len(batch)])
        return
    if break_field == "integrality":
        fields["integrality"] = fields["integrality"] + [True]
    else:
        v = fields[break_field]  # grow the last (core) axis by one
        fields[break_field] = np.pad(v, [(0, 0)] * (v.ndim - 1) + [(0, 1)])
    with pytest.raises(ValueError) as info:
        MIP(**fields)
    # Growing c's last axis changes n: the first field checked against the new n is named.
    if break_field != "c":
        assert f"`{break_field}`" in str(info.value)
    else:
        assert re.search(r"`(A_ub|A_eq|lb|ub|integrality)`", str(info.value))


def test_public_api_exports():
    assert tamejax.MIP is MIP
    assert {"MIP", "solve", "value", "Status", "set_workers"} <= set(tamejax.__all__)
