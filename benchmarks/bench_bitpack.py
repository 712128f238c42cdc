"""Bit-packed XNOR-popcount kernels vs XLA float32 on the same ±1 data: time and weight memory.

Cases (the issue's shapes, ``M x K x N`` for ``(M, K) @ (K, N)``):

* dense: 1x4096x4096 (batch 1), 64x1024x1024, 256x4096x4096, 1024x1024x1024;
* conv: a binary 3x3 convolution, batch 16, 32x32 image, 256 -> 256 channels, stride 1, SAME.

For each case the same random ±1 data are run through

* the baseline, XLA's float32 ``dot`` (``x @ W``) or ``lax.conv_general_dilated`` (NHWC/HWIO,
  SAME zero padding), ``jax.jit``-compiled;
* the packed kernel, ``tamejax.nn.bitpack.xnor_matmul`` on ``pack(x)`` and ``pack(W.T)``, or
  ``xnor_conv2d`` with ``pad_value=0`` (the same zero padding, exact) and with ``pad_value=1``
  (+1 padding, Larq's binary convention; a different function, timed for reference).

The outputs are checked bit-identical first. Then both are timed in alternation, round by round
(``--rounds``, each a ``block_until_ready`` call), and the medians and their ratio
``float32 / packed`` are printed. Packing the activations is not timed (in a packed network the
previous layer emits packed activations); packing the weights is done once, offline. Weight memory
is ``4 * K * N`` bytes in float32 and ``4 * ceil(K / 32) * N`` bytes packed.

The CPU model, its SIMD flags, the load average, the jax/jaxlib versions and ``XLA_FLAGS`` are
recorded with the results: timings from a shared machine are noisy, so the ratio of the minima is
printed and recorded beside the ratio of the medians. For a per-core comparison, run with
``XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" taskset -c 0``.
XLA's float32 convolution on CPU reaches fewer FLOP/s than its float32 dot (both are recorded),
which flatters the conv ratio compared with the dense ones.

Usage::

    python benchmarks/bench_bitpack.py            # 21 timed rounds per case
    python benchmarks/bench_bitpack.py --quick    # 5 rounds per case (a minute or two)

Records go to ``benchmarks/results/bench_bitpack.json``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from jax import lax
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_bridge import write_record  # noqa: E402

from tamejax.nn import bitpack  # noqa: E402

DENSE = [(1, 4096, 4096), (64, 1024, 1024), (256, 4096, 4096), (1024, 1024, 1024)]
CONV = {"batch": 16, "height": 32, "width": 32, "cin": 256, "cout": 256, "window": 3}
# Issue 7 targets (float32 time / packed time) on the 2-core CPU.
TARGETS = {"1x4096x4096": 10.0, "256x4096x4096": 12.0, "1024x1024x1024": 12.0}


def cpu_info() -> dict:
    """CPU model, core count and the SIMD flags that matter for popcount (Linux /proc/cpuinfo)."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and model in ("unknown", "", "x86_64"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:  # pragma: no cover - non-Linux
        pass
    simd = [f for f in ("sse4_2", "popcnt", "avx2", "fma", "avx512f", "avx512bw", "avx512_vpopcntdq") if f in flags]
    return {"model": model, "cores": os.cpu_count(), "simd_flags": simd}


def pm1(rng: np.random.Generator, shape) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def run_case(name: str, runs: dict, rounds: int, bar: tqdm) -> dict:
    """Time each ``label -> (fn, args)`` of ``runs`` in alternation; (medians, minima) in seconds."""
    times: dict[str, list[float]] = {label: [] for label in runs}
    for fn, args in runs.values():  # warm-up (compilation)
        timed(fn, *args)
    for r in range(rounds):
        for label, (fn, args) in runs.items():
            times[label].append(timed(fn, *args))
        bar.set_postfix_str(f"{name} round {r + 1}/{rounds}")
        bar.update(1)
    return {label: statistics.median(ts) for label, ts in times.items()}, {
        label: min(ts) for label, ts in times.items()
    }


def dense_case(m: int, k: int, n: int, rounds: int, bar: tqdm, rng: np.random.Generator) -> dict:
    x, w = pm1(rng, (m, k)), pm1(rng, (k, n))  # Flax layout: kernel (K, N)
    xf, wf = jnp.asarray(x), jnp.asarray(w)
    xp, wp = bitpack.pack(xf, axis=-1), bitpack.pack(wf.T, axis=-1)
    float_dot = jax.jit(lambda a, b: a @ b)
    packed = jax.jit(lambda a, b: bitpack.xnor_matmul(a, b, k))
    ref = np.asarray(float_dot(xf, wf))
    out = np.asarray(packed(xp, wp))
    if not np.array_equal(out, ref.astype(np.int64)):
        raise SystemExit(f"bench_bitpack: xnor_matmul differs from the float32 dot at {m}x{k}x{n}")
    med, best = run_case(f"{m}x{k}x{n}", {"float32": (float_dot, (xf, wf)), "packed": (packed, (xp, wp))}, rounds, bar)
    kw64 = -(-k // 64)
    return {
        "kind": "dense",
        "shape_MxKxN": [m, k, n],
        "median_seconds": med,
        "min_seconds": best,
        "speedup_vs_float32": med["float32"] / med["packed"],
        "speedup_vs_float32_of_minima": best["float32"] / best["packed"],
        "binary_macs_per_second_packed": m * k * n / med["packed"],
        "flops_float32": 2 * m * k * n / med["float32"],
        "weight_bytes": {"float32": 4 * k * n, "packed": int(wp.size * wp.dtype.itemsize)},
        "formulation": bitpack._plan(m, n, kw64),
    }


def conv_case(rounds: int, bar: tqdm, rng: np.random.Generator) -> dict:
    b, h, wd, c, o, kk = (CONV[key] for key in ("batch", "height", "width", "cin", "cout", "window"))
    x, w = pm1(rng, (b, h, wd, c)), pm1(rng, (kk, kk, c, o))  # NHWC, HWIO (flax.linen.Conv)
    xf, wf = jnp.asarray(x), jnp.asarray(w)
    xp, wp = bitpack.pack(xf, axis=-1), bitpack.pack(jnp.transpose(wf, (3, 0, 1, 2)), axis=-1)
    dn = ("NHWC", "HWIO", "NHWC")
    float_conv = jax.jit(lambda a, b: lax.conv_general_dilated(a, b, (1, 1), "SAME", dimension_numbers=dn))
    packed0 = jax.jit(lambda a, b: bitpack.xnor_conv2d(a, b, c, padding="SAME", pad_value=0))
    packed1 = jax.jit(lambda a, b: bitpack.xnor_conv2d(a, b, c, padding="SAME", pad_value=1))
    ref = np.asarray(float_conv(xf, wf))
    if not np.array_equal(np.asarray(packed0(xp, wp)), ref.astype(np.int64)):
        raise SystemExit("bench_bitpack: xnor_conv2d(pad_value=0) differs from the float32 conv")
    # pad_value=1: the same as the float conv of the input padded with +1 by hand (SAME's pads)
    pads = [tuple(p) for p in lax.padtype_to_pads((h, wd), (kk, kk), (1, 1), "SAME")]
    x_plus1 = jnp.pad(xf, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=1.0)
    ref1 = np.asarray(lax.conv_general_dilated(x_plus1, wf, (1, 1), "VALID", dimension_numbers=dn))
    if not np.array_equal(np.asarray(packed1(xp, wp)), ref1.astype(np.int64)):
        raise SystemExit("bench_bitpack: xnor_conv2d(pad_value=1) differs from the float32 conv of the +1-padded input")
    runs = {"float32": (float_conv, (xf, wf)), "packed": (packed0, (xp, wp)), "packed_pad_plus1": (packed1, (xp, wp))}
    med, best = run_case("conv3x3", runs, rounds, bar)
    macs = b * h * wd * o * kk * kk * c
    words32 = kk * kk * -(-c // 32)  # im2col row length in uint32 words
    return {
        "kind": "conv",
        "shape": dict(CONV, stride=1, padding="SAME"),
        "median_seconds": med,
        "min_seconds": best,
        "speedup_vs_float32": med["float32"] / med["packed"],
        "speedup_vs_float32_of_minima": best["float32"] / best["packed"],
        "speedup_vs_float32_pad_plus1": med["float32"] / med["packed_pad_plus1"],
        "binary_macs_per_second_packed": macs / med["packed"],
        "flops_float32": 2 * macs / med["float32"],
        "weight_bytes": {"float32": 4 * kk * kk * c * o, "packed": int(wp.size * wp.dtype.itemsize)},
        "formulation": dict(bitpack._plan(b * h * wd, o, -(-words32 // 2)), im2col="packed, tap-major"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 timed rounds per case (a smoke run)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per case (default 21, 5 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bench_bitpack.json"))
    args = parser.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 21)
    if rounds < 1:
        parser.error(f"--rounds: expected a positive int, got {rounds}")
    jax.config.update("jax_enable_x64", False)  # float32 / int32 as in a deployed model
    rng = np.random.default_rng(args.seed)
    load_before = os.getloadavg()
    records = []
    with tqdm(total=rounds * (len(DENSE) + 1), desc="bench_bitpack", unit="round") as bar:
        for m, k, n in DENSE:
            records.append(dense_case(m, k, n, rounds, bar, rng))
        records.append(conv_case(rounds, bar, rng))
    load_after = os.getloadavg()

    print()
    header = (
        f"{'case':<24} {'float32 ms':>11} {'packed ms':>10} {'speed-up':>9} {'(minima)':>9} {'target':>7} "
        f"{'weights f32/packed':>22}"
    )
    print(header)
    print("-" * len(header))
    for r in records:
        name = "x".join(map(str, r["shape_MxKxN"])) if r["kind"] == "dense" else "conv3x3 16x32x32 256>256"
        wb = r["weight_bytes"]
        target = TARGETS.get(name)
        r["target_speedup"] = target
        print(
            f"{name:<24} {1e3 * r['median_seconds']['float32']:>11.2f} {1e3 * r['median_seconds']['packed']:>10.2f} "
            f"{r['speedup_vs_float32']:>8.2f}x {r['speedup_vs_float32_of_minima']:>8.2f}x "
            f"{'' if target is None else f'{target:.0f}x':>7} "
            f"{wb['float32']:>10} / {wb['packed']:<9} ({wb['float32'] / wb['packed']:.0f}x)"
        )
    conv = records[-1]
    print(
        f"conv with +1 padding (pad_value=1): {1e3 * conv['median_seconds']['packed_pad_plus1']:.2f} ms, "
        f"{conv['speedup_vs_float32_pad_plus1']:.2f}x"
    )
    print(f"load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} on {os.cpu_count()} cores")
    record = {
        "benchmark": "bench_bitpack",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "rounds": rounds,
        "statistic": "median (and min) seconds per call, float32 and packed alternating round by round",
        "cpu": cpu_info(),
        "load_average_1min": {"before": load_before[0], "after": load_after[0]},
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "python": platform.python_version(),
        "cases": records,
    }
    write_record(args.out, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
