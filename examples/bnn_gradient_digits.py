"""A binarized MLP on scikit-learn's digits, trained by gradient with every binary quantizer and with Bop.

``sign`` is the argmax of the tiny MIP ``max_{s in {-1, 1}} s x``; each quantizer of
``tamejax.nn.quantizers`` is an estimator of its derivative (straight-through, Bi-Real's
ApproxSign, SignSwish, Gaussian and Gumbel perturbations, XNOR-Net's magnitude-aware sign), and
Bop (Helwegen et al. 2019) does without latent weights altogether. This script trains the same
network with each of them and compares the test accuracies.

The network (Larq's usual recipe: real first and last layers, binary hidden layers, batch norm),
with the defaults ``--first 128 --hidden 128 --depth 6``:

    x (64 pixels) -> Dense(first) -> BatchNorm
                  -> BinaryDense(hidden, q_in, q_k, no bias) -> BatchNorm      (x depth)
                  -> Dense(10)

The binary hidden layers binarize both their inputs and their kernels (1-bit weights and 1-bit
activations: an XNOR-popcount layer at inference). Latent weights are trained with Adam and
clipped to [-1, 1] (``clip_latent_weights``), or flipped by Bop (``binary_optimizer(bop(...),
adam)``, kernels initialized to +-1 by ``pm1_init``). A baseline ("frozen") keeps the binary kernels at
their random +-1 initialization and trains only the rest, to show what training the binary weights
adds. The default depth is chosen for that comparison: with two wide (256) binary layers the random
+-1 layers act as random features and the frozen baseline is as good as the trained methods; a stack
of six 128-wide binary layers loses information unless its weights are trained. Data: the 1797 8x8
digit images, pixels scaled to [0, 1], a stratified 80/20 split with a fixed seed.

The perturbed methods (``gaussian``, ``gumbel``) train on sampled forward passes ``sign(v + noise)``,
independent noise per entry and per step, and are evaluated with the deterministic ``sign`` (the noise
at its mean / mode). The noise must be on the scale of what it perturbs. The inputs of a binary layer
are batch-normalised (unit scale): ``--sigma 0.5`` / ``--tau 0.5``. The latent kernels keep the scale
``1/sqrt(fan_in)`` of their LeCun-normal initialization (median ``|w|`` about 0.07 for 128 inputs, after
training too), so their noise is ``--kernel-noise 0.5`` times that (``sigma = 0.5/sqrt(128)``, about
0.044). An absolute ``sigma = 0.5`` on the kernels flips about 43% of the weight signs at every step: the
six-layer stack then trains on noise (training loss stays at ``ln 10``, train accuracy at chance in
train and eval mode alike) -- ``--kernel-noise 5.66`` reproduces it. With two 256-wide layers the same
setting looked fine only because random binary layers already make good random features (see ``frozen``).
Each training step is one ``jax.jit``-compiled function.

    python examples/bnn_gradient_digits.py            # all methods, 40 epochs (about 2 minutes on CPU)
    python examples/bnn_gradient_digits.py --quick    # smoke run: 1 epoch, 2 binary layers
    python examples/bnn_gradient_digits.py --methods ste_sign,bop,frozen --hidden 64 --depth 3 --seed 1
    python examples/bnn_gradient_digits.py --methods gaussian,gumbel --sigma 0.25 --kernel-noise 0.25

Prints a table (test accuracy, 1-bit / 32-bit parameter counts, model size in bytes), writes
``examples/out/bnn_gradient_digits.png`` (test accuracy and training loss per epoch) and
``examples/out/bnn_gradient_digits.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from tamejax.nn.bop import binary_kernel_paths, binary_optimizer, bop, clip_latent_weights, pm1_init
from tamejax.nn.layers import BinaryDense
from tamejax.nn.quantizers import gaussian_sign, gumbel_sign, magnitude_aware_sign, ste_sign

DEFAULT_OUT = Path(__file__).parent / "out" / "bnn_gradient_digits.png"
HIDDEN = 128
NUM_BINARY = 6
FIRST = 128
EPOCHS = 40
SIGMA = 0.5  # Gaussian noise scale on the (batch-normalised, unit-scale) inputs of the binary layers
TAU = 0.5  # Gumbel temperature on the same inputs
KERNEL_NOISE = 0.5  # noise scale on the latent kernels, relative to their init std 1 / sqrt(fan_in)

# method -> (input quantizer, kernel quantizer, optimizer of the binary kernels); the perturbed
# methods' quantizers depend on the noise scales (``perturbed_quantizers``) and are filled in by ``methods``
METHODS: dict[str, tuple[Any, Any, str]] = {
    "ste_sign": ("ste_sign", "ste_sign", "adam"),
    "approx_sign": ("approx_sign", "approx_sign", "adam"),
    "swish_sign": ("swish_sign", "swish_sign", "adam"),
    "gaussian": (gaussian_sign, gaussian_sign, "adam"),
    "gumbel": (gumbel_sign, gumbel_sign, "adam"),
    "magnitude_aware": ("ste_sign", magnitude_aware_sign, "adam"),
    "bop": ("ste_sign", ste_sign, "bop"),
    "frozen": ("ste_sign", ste_sign, "frozen"),
}
"""``frozen`` is the baseline: the binary kernels stay at their random ``±1`` initialization
(``pm1_init``, ``optax.set_to_zero``) and only the float layers and batch norms are trained (Adam),
showing what training the binary weights adds."""


def _fan_in_scaled(quantizer: Any, scale_name: str, relative: float) -> Any:
    """``quantizer`` (``gaussian_sign`` or ``gumbel_sign``) applied to a latent kernel ``w`` of shape
    ``(*window, fan_in, out)`` with its noise scale set to ``relative / sqrt(fan_in)``: the standard
    deviation of the LeCun-normal initialization of ``w``, so that ``relative`` is the noise scale in
    units of the latent weights (as ``--sigma`` / ``--tau`` are in units of the batch-normalised inputs)."""

    def q(w: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        scale = relative / math.sqrt(math.prod(w.shape[:-1]))
        return quantizer(w, **{scale_name: scale}, key=key)

    return q


def perturbed_quantizers(sigma: float, tau: float, kernel_noise: float) -> dict[str, tuple[Any, Any]]:
    """Input and kernel quantizers of the ``gaussian`` and ``gumbel`` methods.

    The inputs of a binary layer come out of a batch norm (unit scale), so the noise on them has the
    absolute scale ``sigma`` (``tau``); the latent kernels have the scale ``1 / sqrt(fan_in)`` of their
    initialization (about 0.09 for 128 inputs, and they stay there: Adam's steps are small and
    ``clip_latent_weights`` bounds them by 1), so their noise is ``kernel_noise / sqrt(fan_in)``. An absolute
    ``sigma = 0.5`` on the kernels flips the sign of almost half the weights at every forward pass
    (``P(flip) = Phi(-|w| / sigma)``, about 0.43): a deep stack then trains on noise and stays at chance.
    """
    return {
        "gaussian": (
            functools.partial(gaussian_sign, sigma=sigma),
            _fan_in_scaled(gaussian_sign, "sigma", kernel_noise),
        ),
        "gumbel": (functools.partial(gumbel_sign, tau=tau), _fan_in_scaled(gumbel_sign, "tau", kernel_noise)),
    }


class BinaryMLP(nn.Module):
    """A real first layer of width ``first``, ``num_binary`` binary hidden layers of width ``hidden``,
    batch norm after each, and a real last layer."""

    input_quantizer: Any
    kernel_quantizer: Any
    kernel_init: Any = nn.initializers.lecun_normal()
    hidden: int = HIDDEN
    num_binary: int = NUM_BINARY
    first: int = FIRST

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.Dense(self.first)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        for i in range(self.num_binary):
            x = BinaryDense(
                self.hidden,
                use_bias=False,
                input_quantizer=self.input_quantizer,
                kernel_quantizer=self.kernel_quantizer,
                deterministic=not train,
                kernel_init=self.kernel_init,
                name=f"binary{i}",
            )(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        return nn.Dense(10)(x)


def load_digits_split(seed: int) -> tuple[np.ndarray, ...]:
    """The digits, pixels in [0, 1], stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int32)
    return tuple(train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed))


def parameter_counts(params: Any, batch_stats: Any, binary_paths: frozenset, magnitude_aware: bool) -> dict[str, int]:
    """1-bit parameters (binary kernels), 32-bit ones (everything else, batch-norm statistics and
    XNOR scales included) and the deployed size in bytes (1 bit each, 4 bytes each)."""
    one_bit = 0
    full = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        names = tuple(str(k.key) for k in path)
        if names in binary_paths:
            one_bit += leaf.size
            if magnitude_aware:
                full += leaf.shape[-1]  # one scale per output channel
        else:
            full += leaf.size
    full += sum(leaf.size for leaf in jax.tree.leaves(batch_stats))
    size = -(-one_bit // 8) + 4 * full
    return {
        "one_bit": int(one_bit),
        "float32": int(full),
        "bytes": int(size),
        "bytes_all_float32": 4 * (one_bit + full),
    }


def train_one(name: str, data: tuple, args: argparse.Namespace, bar: Any) -> dict[str, Any]:
    """Train the network with one method; per-epoch test accuracy and mean training loss."""
    x_tr, x_te, y_tr, y_te = data
    q_in, q_k, opt = METHODS[name]
    if name in ("gaussian", "gumbel"):
        q_in, q_k = perturbed_quantizers(args.sigma, args.tau, args.kernel_noise)[name]
    # Bop works on the binary weights themselves, and the frozen baseline keeps them: start from +-1
    # (latent weights: Flax's LeCun normal)
    shape = {"hidden": args.hidden, "num_binary": args.depth, "first": args.first}
    if opt in ("bop", "frozen"):
        model = BinaryMLP(q_in, q_k, kernel_init=pm1_init(), **shape)
    else:
        model = BinaryMLP(q_in, q_k, **shape)
    key = jax.random.key(args.seed)
    k_init, k_noise = jax.random.split(key)
    variables = model.init({"params": k_init, "quantizer": k_init}, x_tr[:2], train=False)
    params, batch_stats = variables["params"], variables["batch_stats"]
    paths = binary_kernel_paths(model, x_tr[:2], train=False)

    steps_per_epoch = len(x_tr) // args.batch_size
    schedule = optax.cosine_decay_schedule(args.lr, args.epochs * steps_per_epoch)
    adam = optax.adam(schedule)
    if opt == "bop":
        tx = binary_optimizer(bop(threshold=args.bop_threshold, gamma=args.bop_gamma), adam, is_binary=paths)
    elif opt == "frozen":
        tx = binary_optimizer(optax.set_to_zero(), adam, is_binary=paths)
    else:
        tx = binary_optimizer(optax.chain(optax.adam(schedule), clip_latent_weights(1.0)), adam, is_binary=paths)
    opt_state = tx.init(params)
    initial_kernels = {p: np.asarray(params[p[0]][p[1]]) for p in paths}

    @jax.jit
    def step(params, batch_stats, opt_state, xb, yb, key):
        def loss_fn(p):
            logits, updates = model.apply(
                {"params": p, "batch_stats": batch_stats},
                xb,
                train=True,
                rngs={"quantizer": key},
                mutable=["batch_stats"],
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), updates["batch_stats"]

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state, loss

    @jax.jit
    def accuracy(params, batch_stats, x, y):
        logits = model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
        return jnp.mean(jnp.argmax(logits, -1) == y)

    rng = np.random.default_rng(args.seed)
    test_acc, train_loss = [], []
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        perm = rng.permutation(len(x_tr))
        losses = []
        for i in range(steps_per_epoch):
            idx = perm[i * args.batch_size : (i + 1) * args.batch_size]
            k_noise, k = jax.random.split(k_noise)
            params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state, x_tr[idx], y_tr[idx], k)
            losses.append(float(loss))
        train_loss.append(float(np.mean(losses)))
        test_acc.append(float(accuracy(params, batch_stats, x_te, y_te)))
        bar.set_postfix(method=name, acc=f"{test_acc[-1]:.3f}")
        bar.update(1)
    seconds = time.perf_counter() - t0
    if opt == "frozen":  # the baseline really kept its random +-1 kernels
        for p, w0 in initial_kernels.items():
            if not np.array_equal(np.asarray(params[p[0]][p[1]]), w0):
                raise AssertionError(f"frozen baseline: the binary kernel {p} changed during training")

    # sanity: the binary kernels used at inference are +-1 (times a per-channel scale for XNOR)
    counts = parameter_counts(params, batch_stats, paths, magnitude_aware=(q_k is magnitude_aware_sign))
    return {
        "method": name,
        "optimizer": opt,
        "test_accuracy": test_acc[-1],
        "best_test_accuracy": max(test_acc),
        "test_accuracy_per_epoch": test_acc,
        "train_loss_per_epoch": train_loss,
        "train_seconds": seconds,
        **counts,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"training epochs per method (default {EPOCHS})")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {list(METHODS)}")
    parser.add_argument("--hidden", type=int, default=HIDDEN, help=f"width of the binary layers (default {HIDDEN})")
    parser.add_argument(
        "--depth", type=int, default=None, help=f"number of binary layers (default {NUM_BINARY}; 2 with --quick)"
    )
    parser.add_argument("--first", type=int, default=FIRST, help=f"width of the real first layer (default {FIRST})")
    parser.add_argument("--batch-size", type=int, default=64, help="minibatch size (default 64)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate, cosine-decayed (default 3e-3)")
    parser.add_argument("--bop-threshold", type=float, default=1e-6, help="Bop threshold tau (default 1e-6)")
    parser.add_argument("--bop-gamma", type=float, default=1e-3, help="Bop adaptivity rate gamma (default 1e-3)")
    parser.add_argument(
        "--sigma", type=float, default=SIGMA, help=f"gaussian: noise scale on the binary inputs (default {SIGMA})"
    )
    parser.add_argument("--tau", type=float, default=TAU, help=f"gumbel: temperature on the inputs (default {TAU})")
    parser.add_argument(
        "--kernel-noise",
        type=float,
        default=KERNEL_NOISE,
        help="gaussian/gumbel: noise scale on the latent kernels in units of their init std 1/sqrt(fan_in), i.e. "
        f"sigma (tau) = kernel_noise / sqrt(fan_in) (default {KERNEL_NOISE})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the initialization and the noise")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 epoch, 2 binary layers unless --depth")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"plot file (default {DEFAULT_OUT}); JSON beside it")
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {unknown}, expected a subset of {list(METHODS)}")
    if args.depth is None:
        args.depth = 2 if args.quick else NUM_BINARY
    if args.quick:
        args.epochs = 1
    for field in ("epochs", "hidden", "depth", "first", "batch_size"):
        if getattr(args, field) < 1:
            parser.error(f"--{field.replace('_', '-')}: expected >= 1, got {getattr(args, field)}")
    for field in ("sigma", "tau", "kernel_noise"):
        value = getattr(args, field)
        if not (math.isfinite(value) and value > 0):
            parser.error(f"--{field.replace('_', '-')}: expected a positive finite number, got {value}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Train every method, print the table, save the plot and the JSON."""
    args = parse_args(argv)
    data = load_digits_split(args.seed)
    print(f"digits: {len(data[0])} train / {len(data[1])} test images, 64 pixels, 10 classes")
    print(
        f"network: Dense({args.first}) -> BN -> {args.depth} x [BinaryDense({args.hidden}) -> BN] -> Dense(10); "
        f"{args.epochs} epochs, batch {args.batch_size}, lr {args.lr:g}, Bop threshold {args.bop_threshold:g} "
        f"gamma {args.bop_gamma:g}, gaussian sigma {args.sigma:g} / gumbel tau {args.tau:g} on inputs and "
        f"{args.kernel_noise:g}/sqrt(fan_in) on kernels, seed {args.seed}"
    )
    results = []
    with tqdm(total=len(args.methods) * args.epochs, unit="epoch", desc="training", file=sys.stderr) as bar:
        for name in args.methods:
            results.append(train_one(name, data, args, bar))

    header = (
        f"{'method':<16} {'optimizer':<9} {'test acc':>8} {'best':>6} {'1-bit':>8} {'32-bit':>7} {'bytes':>7} "
        f"{'fp32 bytes':>10} {'s':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['method']:<16} {r['optimizer']:<9} {r['test_accuracy']:>8.4f} {r['best_test_accuracy']:>6.3f} "
            f"{r['one_bit']:>8d} {r['float32']:>7d} {r['bytes']:>7d} {r['bytes_all_float32']:>10d} "
            f"{r['train_seconds']:>6.1f}"
        )
    best = max(results, key=lambda r: r["test_accuracy"])
    print(f"best: {best['method']} ({best['test_accuracy']:.4f} test accuracy after {args.epochs} epochs)")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k != "out"}
    out.with_suffix(".json").write_text(json.dumps({"config": config, "results": results}, indent=2))
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot")
        return 0
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = np.arange(1, args.epochs + 1)
    for r in results:
        ax1.plot(epochs, r["test_accuracy_per_epoch"], label=r["method"])
        ax2.plot(epochs, r["train_loss_per_epoch"], label=r["method"])
    ax1.set(xlabel="epoch", ylabel="test accuracy", title="Binary MLP on digits: test accuracy")
    ax2.set(xlabel="epoch", ylabel="training loss", yscale="log", title="training loss (cross-entropy)")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
