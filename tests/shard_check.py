"""Sharding check, run as a script (``tests/test_transforms.py`` runs it in a subprocess).

The number of host devices must be fixed before JAX initializes, so this cannot run inside
the pytest process. On 4 forced CPU devices, a batch of 8 MILPs (with continuous and integer
variables) is solved

* (a) inside ``jax.shard_map`` with the batch sharded over a 4-device mesh (2 problems per
  device), computing ``solve(...).x``, ``value`` and ``grad(value)`` per shard;
* (b) by ``jax.jit`` on inputs placed with a ``NamedSharding`` over the 4 devices;

and both are compared with an eager Python loop over the problems. Prints the numbers and
exits non-zero on any mismatch.
"""

from __future__ import annotations

import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import tamejax as tj  # noqa: E402

try:  # jax >= 0.6 exposes jax.shard_map; older versions only the experimental module
    shard_map = jax.shard_map
    _SHARD_MAP = "jax.shard_map"
except AttributeError:  # pragma: no cover - depends on the installed jax
    from jax.experimental.shard_map import shard_map  # type: ignore[no-redef]

    _SHARD_MAP = "jax.experimental.shard_map.shard_map"

BATCH = 8
N_DEVICES = 4


def make_batch(seed: int = 0) -> tj.MIP:
    """8 feasible, bounded MILPs (2 integer + 3 continuous variables, 3 rows, 1 equality)."""
    rng = np.random.default_rng(seed)
    n, m_ub, m_eq = 5, 3, 1
    integ = np.array([True, True, False, False, False])
    lb = np.where(integ, 0.0, rng.uniform(-1.0, -0.2, (BATCH, n)))
    ub = np.where(integ, 2.0, rng.uniform(0.5, 1.5, (BATCH, n)))
    A_ub = rng.uniform(-1.0, 1.0, (BATCH, m_ub, n))
    A_eq = rng.uniform(-1.0, 1.0, (BATCH, m_eq, n))
    x0 = np.where(integ, rng.integers(0, 3, (BATCH, n)), 0.5 * rng.uniform(lb, ub))
    b_ub = np.einsum("bmn,bn->bm", A_ub, x0) + rng.uniform(0.1, 0.6, (BATCH, m_ub))
    b_eq = np.einsum("bmn,bn->bm", A_eq, x0)
    c = rng.uniform(-1.0, 1.0, (BATCH, n))
    return tj.MIP(c=c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, lb=lb, ub=ub, integrality=integ)


def per_shard(problem: tj.MIP) -> tuple[jax.Array, ...]:
    """What each device computes on its slice of the batch."""
    x = tj.solve(problem).x
    z = tj.value(problem)
    g = jax.grad(lambda p: tj.value(p).sum())(problem)
    return x, z, g.c, g.b_ub, g.A_ub


NAMES = ("x", "value", "grad_c", "grad_b_ub", "grad_A_ub")


def eager(batch: tj.MIP) -> list[np.ndarray]:
    """Reference: a Python loop over the problems, each solved on its own."""
    outs = []
    for i in range(BATCH):
        p = batch[i]
        x = tj.solve(p).x
        z = tj.value(p)
        g = jax.grad(lambda q: tj.value(q))(p)
        outs.append((x, z, g.c, g.b_ub, g.A_ub))
    return [np.stack([np.asarray(o[k]) for o in outs]) for k in range(len(NAMES))]


def compare(label: str, got: tuple[jax.Array, ...], ref: list[np.ndarray]) -> bool:
    ok = True
    for name, a, b in zip(NAMES, got, ref, strict=True):
        a = np.asarray(a)
        # Raw MIP solutions agree within the solver's feasibility tolerance; values and
        # gradients come from an exact simplex solve of the fixed LP.
        atol = 1e-6 if name == "x" else 1e-9
        same = a.shape == b.shape and np.allclose(a, b, rtol=1e-9, atol=atol)
        print(f"[{label}] {name}: {'ok' if same else 'MISMATCH'} shape={a.shape}")
        if not same:
            print(f"  got:\n{a}\n  expected:\n{b}")
        ok &= same
    return ok


def main() -> int:
    devices = jax.devices()
    print(f"jax {jax.__version__}, {len(devices)} devices: {devices}, using {_SHARD_MAP}")
    assert len(devices) == N_DEVICES, f"expected {N_DEVICES} devices, got {len(devices)}"
    mesh = Mesh(np.array(devices), ("d",))
    batch = make_batch()
    ref = eager(batch)
    record_batch_sizes()
    print("eager value:", ref[1])
    assert np.all(np.isfinite(ref[1])), "every instance should be feasible and bounded"

    # (a) shard_map: each device solves (and differentiates) its 2 problems.
    sharded = jax.jit(shard_map(per_shard, mesh=mesh, in_specs=P("d"), out_specs=P("d")))
    out_a = sharded(batch)
    shardings = {str(o.sharding.spec) for o in out_a}
    print("shard_map outputs sharded as", shardings, "on", len(out_a[0].sharding.device_set), "devices")
    ok = len(out_a[0].sharding.device_set) == N_DEVICES
    ok &= compare("shard_map", out_a, ref)

    # (b) jit on inputs placed with a NamedSharding over the 4 devices.
    placed = jax.device_put(batch, NamedSharding(mesh, P("d")))
    assert len(placed.c.sharding.device_set) == N_DEVICES
    assert placed.c.addressable_shards[0].data.shape == (BATCH // N_DEVICES, batch.n)
    out_b = jax.jit(per_shard)(placed)
    ok &= compare("jit+NamedSharding", out_b, ref)

    # (c) vmap inside shard_map (per-device batch axis added by vmap, not by the problem).
    vm = jax.jit(shard_map(lambda p: jax.vmap(per_shard_single)(p), mesh=mesh, in_specs=P("d"), out_specs=P("d")))
    ok &= compare("shard_map+vmap", vm(batch), ref)

    # (d) the same without varying-manual-axes type checking.
    unchecked = jax.jit(shard_map(per_shard, mesh=mesh, in_specs=P("d"), out_specs=P("d"), check_vma=False))
    ok &= compare("shard_map(check_vma=False)", unchecked(batch), ref)

    # (e) only c sharded, the rest of one problem replicated (mixed varying/invariant inputs).
    base = batch[0]
    cs = batch.c
    ref_e = eager(base.replace(c=cs))  # the constructor broadcasts the other fields
    mixed = jax.jit(
        shard_map(lambda c, p: per_shard(p.replace(c=c)), mesh=mesh, in_specs=(P("d"), P()), out_specs=P("d"))
    )
    # The gradient wrt a *replicated* field is, as for any JAX function under shard_map, the
    # sum of every device's contribution (the transpose of pvary is psum): row i of each
    # shard holds sum_k grad[2 k + i].
    for k in (3, 4):  # grad_b_ub, grad_A_ub
        per_dev = ref_e[k].reshape(N_DEVICES, BATCH // N_DEVICES, *ref_e[k].shape[1:])
        ref_e[k] = np.concatenate([per_dev.sum(0)] * N_DEVICES)
    ok &= compare("shard_map(c sharded, rest replicated)", mixed(cs, base), ref_e)

    # Each device's callback saw only its own shard: 2 problems per host call.
    print("host batch sizes seen by the solver:", sorted(set(BATCH_SIZES)))
    ok &= bool(BATCH_SIZES) and 2 in BATCH_SIZES

    print("ALL OK" if ok else "FAILED")
    return 0 if ok else 1


BATCH_SIZES: list[int] = []


def record_batch_sizes() -> None:
    """Record how many problems each host callback receives (wraps the pool's entry)."""
    bridge = sys.modules["tamejax.solve"]  # the module (``tamejax.solve`` is the function)
    inner = bridge.solve_many

    def wrapped(backend, problems, options):
        BATCH_SIZES.append(len(problems))
        return inner(backend, problems, options)

    bridge.solve_many = wrapped


def per_shard_single(problem: tj.MIP) -> tuple[jax.Array, ...]:
    """Per-problem version of ``per_shard`` (to be vmapped)."""
    x = tj.solve(problem).x
    z = tj.value(problem)
    g = jax.grad(lambda p: tj.value(p))(problem)
    return x, z, g.c, g.b_ub, g.A_ub


if __name__ == "__main__":
    sys.exit(main())
