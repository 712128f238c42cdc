"""Learning the rules of Sudoku from solved boards with a MIP layer, then solving unseen puzzles.

**What is learned.** A candidate set of constraint groups is offered: the three real rules
(``row``, ``column``, ``box``: each digit once per unit) and two distractors that ordinary
Sudoku boards do *not* obey (``diagonal``: each digit once on both long diagonals, X-Sudoku;
``disjoint``: each digit once among the cells at the same position inside every box). Every
group is a *soft* constraint of the 0-1 program ``tamejax.problems.sudoku_soft_mip``, whose
violations ``v_g`` (excess copies of a digit in a unit, summed over the group) cost a
learnable weight ``w_g >= 0``; the givens of a puzzle are rewarded by a learnable bonus
``alpha >= 0``. One digit per cell is the encoding and stays hard. The layer solves

$$\\max_{x, v, s} \\; \\alpha\\, g^\\top x - w^\\top v \\quad \\text{s.t. one digit per cell},\\
s_{g,u,d} \\ge \\textstyle\\sum_{(r,c) \\in u} x_{rcd} - 1,\\ v_g = \\sum_{u,d} s_{g,u,d},$$

(``g``: one-hot givens). The parameters ``(alpha, w)`` (6 numbers, all starting at 1, the
distractors included) are trained from *(puzzle, solved board)* pairs with the perturbed
Fenchel-Young loss (Berthet et al. 2020) of ``tamejax.nn.mip_layer.MIPLayer`` (multiplicative
Gaussian noise: it perturbs the weights and the bonus and leaves the zero costs alone), Adam.
The weights of the real rules grow, those of the distractors shrink toward 0.

**What is given.** The candidate groups (their units), the one-digit-per-cell encoding and
the givens' positions. Not given: which groups are rules, how strongly to trust the givens.
(A modest alternative, learning only to keep the givens with the rules known, is *not* what
is done here.)

**Evaluation.** Unseen puzzles with a unique solution, solved exactly (no noise) by the layer
with the learned parameters: the fraction whose solution equals the true board, before and
after training. The 4x4 model is trained on 4x4 boards; its six numbers are then used
unchanged in a 9x9 layer (the rules do not depend on the size), and the 9x9 puzzles are solved
by the soft model too. Finally the groups whose learned weight is at least half the largest one are
kept as *hard* rules (``tamejax.problems.sudoku``) and the puzzles solved again.

**Baseline.** The counting baseline keeps as hard rules the groups that *no* training board
breaks (no solver in the loop). On clean boards it finds {row, column, box} too and scores the
same: this setup is easy. With ``--corrupt F`` a fraction ``F`` of the training boards has one
non-given cell changed to a wrong digit, so every group is broken by some board; the counting
baseline then keeps nothing, while the learned weights only have to rank the groups.

    python examples/sudoku_mip_layer.py                 # 4x4: 160 train / 200 test; 9x9: 10 test
    python examples/sudoku_mip_layer.py --corrupt 0.25  # a quarter of the training boards corrupted
    python examples/sudoku_mip_layer.py --quick         # smoke run (< 1 min)

Prints the fractions solved and writes ``examples/out/sudoku_mip_layer.png`` (weights during
training; solved fractions).

References:
  Berthet, Q., Blondel, M., Teboul, O., Cuturi, M., Vert, J.-P. & Bach, F. (2020). Learning with
  differentiable perturbed optimizers. NeurIPS.
  Bartlett, A., Chartier, T., Langville, A. & Rankin, T. (2008). An integer programming model
  for the Sudoku problem. Journal of Online Mathematics and its Applications 8.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import tamejax as tj
from tamejax.nn.mip_layer import MIPLayer
from tamejax.problems.sudoku import (
    SUDOKU_GROUPS,
    board_to_onehot,
    check_sudoku,
    onehot_to_board,
    sudoku,
    sudoku_puzzles,
    sudoku_soft_encode,
    sudoku_soft_mip,
)

DEFAULT_OUT = Path(__file__).parent / "out" / "sudoku_mip_layer.png"
GROUPS = SUDOKU_GROUPS  # ("row", "column", "box", "diagonal", "disjoint")


def inv_softplus(y: float) -> float:
    """``softplus^{-1}(y)`` for ``y > 0``."""
    return float(np.log(np.expm1(y)))


def make_layer(n: int, time_limit: float | None = None) -> MIPLayer:
    """The soft Sudoku of side ``n`` as a Linen MIP layer; inputs: one-hot givens ``(..., n^3)``."""
    template = sudoku_soft_mip(n, GROUPS)
    extra = template.n - n**3  # the v and s variables

    def builder(givens: jax.Array, params: dict) -> tj.MIP:
        alpha = jax.nn.softplus(params["alpha"])
        w = jax.nn.softplus(params["rho"])
        batch = givens.shape[:-1]
        cost_vs = jnp.concatenate([-w, jnp.zeros(extra - len(GROUPS))]).astype(givens.dtype)
        theta = jnp.concatenate([alpha * givens, jnp.broadcast_to(cost_vs, batch + (extra,))], axis=-1)
        return template.replace(c=theta)

    init = {"alpha": jnp.asarray(inv_softplus(1.0)), "rho": jnp.full((len(GROUPS),), inv_softplus(1.0))}
    return MIPLayer(
        builder,
        learnable=init,
        output="solution",
        estimator="perturbed",
        estimator_options={"num_samples": 1, "sigma": 1.0, "multiplicative": True},
        sense="max",
        backend="scip",
        solver_options={"threads": 1} if time_limit is None else {"threads": 1, "time_limit": time_limit},
    )


def solved_fraction(layer: MIPLayer, params: dict, puzzles: np.ndarray, solutions: np.ndarray, chunk: int = 8):
    """Fraction of puzzles whose exact (noise-free) layer solution is the true board, and whose is valid."""
    n = puzzles.shape[-1]
    boards = []
    for i in range(0, len(puzzles), chunk):
        g = jnp.asarray(board_to_onehot(puzzles[i : i + chunk]), jnp.float32)
        x = layer.apply({"params": params}, g, deterministic=True)
        boards.append(onehot_to_board(np.asarray(x)[:, : n**3], n))
    boards = np.concatenate(boards)
    exact = np.all(boards == solutions, axis=(1, 2))
    valid = check_sudoku(boards, puzzles)
    return float(exact.mean()), float(valid.mean())


def hard_solved(puzzles: np.ndarray, solutions: np.ndarray, groups: tuple[str, ...]) -> float:
    """Fraction of puzzles whose exact solve with ``groups`` as hard rules is the true board."""
    n = puzzles.shape[-1]
    oracle = sudoku(n, puzzles, groups=groups, threads=1)
    boards = onehot_to_board(np.asarray(oracle(np.zeros((len(puzzles), n**3)))), n)
    return float(np.mean(np.all(boards == solutions, axis=(1, 2))))


def corrupt_boards(puzzles: np.ndarray, solutions: np.ndarray, fraction: float, rng: np.random.Generator):
    """Copies of ``solutions`` where a ``fraction`` of the boards has one non-given cell set to a wrong digit."""
    boards = solutions.copy()
    n = boards.shape[-1]
    k = int(round(fraction * len(boards)))
    for i in rng.choice(len(boards), k, replace=False):
        r, c = divmod(int(rng.choice(np.flatnonzero(puzzles[i].ravel() == 0))), n)
        boards[i, r, c] = rng.choice([d for d in range(1, n + 1) if d != boards[i, r, c]])
    return boards


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (``argv=None``: ``sys.argv``), validated."""
    parser = argparse.ArgumentParser(description="learn which constraint groups are Sudoku rules with a MIP layer")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs on the 4x4 boards (default 3)")
    parser.add_argument("--train", type=int, default=160, help="4x4 training puzzles (default 160)")
    parser.add_argument("--test", type=int, default=200, help="4x4 test puzzles (default 200)")
    parser.add_argument("--test9", type=int, default=10, help="9x9 test puzzles (default 10; 0 skips 9x9)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 64 train, 64 test 4x4, 5 test 9x9 (hard rules only), 3 epochs"
    )
    parser.add_argument(
        "--time-limit", type=float, default=10.0, help="seconds per 9x9 soft solve (default 10; then the incumbent)"
    )
    parser.add_argument(
        "--corrupt",
        type=float,
        default=0.0,
        help="fraction of training boards with one non-given cell changed to a wrong digit (default 0: clean boards)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the puzzles and of the noise")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"plot file (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    for name in ("epochs", "train", "test"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: expected an integer >= 1, got {getattr(args, name)}")
    if not 0.0 <= args.corrupt <= 1.0:
        parser.error(f"--corrupt: expected a fraction in [0, 1], got {args.corrupt}")
    if args.test9 < 0:
        parser.error(f"--test9: expected an integer >= 0, got {args.test9}")
    if args.quick:
        args.epochs, args.train, args.test, args.test9 = min(args.epochs, 3), 64, 64, min(args.test9, 5)
    return args


def main(argv: list[str] | None = None) -> int:
    """Train on 4x4 boards, evaluate on 4x4 and 9x9 puzzles, save the plot; returns the exit status."""
    args = parse_args(argv)
    batch_size, lr = 8, 0.1
    n = 4
    # Unique-solution puzzles, disjoint seeds for training and test (the generator is deterministic).
    p_train, s_train = sudoku_puzzles(args.train, n, num_givens=6, seed=args.seed)
    p_test, s_test = sudoku_puzzles(args.test, n, num_givens=6, seed=args.seed + 1000)
    b_train = corrupt_boards(p_train, s_train, args.corrupt, np.random.default_rng(args.seed + 3))
    g_train = board_to_onehot(p_train).astype(np.float32)
    y_train = sudoku_soft_encode(b_train, GROUPS).astype(np.float32)  # target (x, v, s) of every variable
    v_train = y_train[:, n**3 : n**3 + len(GROUPS)]
    print(
        f"4x4: {args.train} train / {args.test} test puzzles (unique solutions, >= 6 givens); "
        f"{100 * args.corrupt:.0f} % of the training boards corrupted (one wrong cell)\n"
        "mean violations of the training boards per group: "
        + ", ".join(f"{g} {v:.2f}" for g, v in zip(GROUPS, v_train.mean(axis=0), strict=True))
        + "\nfraction of training boards breaking each group: "
        + ", ".join(f"{g} {v:.2f}" for g, v in zip(GROUPS, (v_train > 0).mean(axis=0), strict=True))
    )
    # The counting baseline (no solver in the loop): the groups that no training board breaks.
    baseline = tuple(g for g, v in zip(GROUPS, v_train.max(axis=0), strict=True) if v == 0)

    layer = make_layer(n)
    params = layer.init(jax.random.key(args.seed), jnp.asarray(g_train[:batch_size]))["params"]
    optimizer = optax.adam(lr)
    opt_state = optimizer.init(params)

    def loss_fn(p, g, y, key):
        fy = layer.apply({"params": p}, g, y, method="fenchel_young_loss", rngs={"mip": key})
        return jnp.mean(fy)

    @jax.jit
    def step(p, state, g, y, key):
        loss, grads = jax.value_and_grad(loss_fn)(p, g, y, key)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, loss

    def weights(p):
        return np.concatenate([[float(jax.nn.softplus(p["alpha"]))], np.asarray(jax.nn.softplus(p["rho"]))])

    t0 = time.perf_counter()
    before4 = solved_fraction(layer, params, p_test, s_test)
    history = [weights(params)]
    key = jax.random.key(args.seed + 1)
    rng = np.random.default_rng(args.seed)
    steps = args.train // batch_size
    bar = tqdm(total=args.epochs * steps, unit="step", desc="training (4x4)")
    epoch_loss = []
    for _ in range(args.epochs):
        order = rng.permutation(args.train)
        losses = []
        for b in range(steps):
            idx = order[b * batch_size : (b + 1) * batch_size]
            key, sub = jax.random.split(key)
            params, opt_state, loss = step(params, opt_state, g_train[idx], y_train[idx], sub)
            history.append(weights(params))
            losses.append(float(loss))
            bar.set_postfix(loss=f"{float(loss):.3g}", w=" ".join(f"{v:.2f}" for v in history[-1][1:]))
            bar.update()
        epoch_loss.append(float(np.mean(losses)))
    bar.close()
    print("mean Fenchel-Young training loss per epoch: " + ", ".join(f"{v:.3f}" for v in epoch_loss))
    train_s = time.perf_counter() - t0
    after4 = solved_fraction(layer, params, p_test, s_test)
    learned = history[-1]
    print(
        f"learned: alpha (givens' bonus) {learned[0]:.2f}; weights "
        + ", ".join(f"{g} {w:.2f}" for g, w in zip(GROUPS, learned[1:], strict=True))
    )
    rules = tuple(g for g, w in zip(GROUPS, learned[1:], strict=True) if w >= 0.5 * learned[1:].max())
    print(f"groups kept as hard rules (weight >= half the largest): {rules}")
    results = {"4x4": (before4, after4)}

    hard = {"4x4": hard_solved(p_test, s_test, rules)}
    base = {"4x4": hard_solved(p_test, s_test, baseline)}

    if args.test9:
        p9, s9 = sudoku_puzzles(args.test9, 9, num_givens=30, seed=args.seed + 2000)
        hard["9x9"] = hard_solved(p9, s9, rules)
        base["9x9"] = hard_solved(p9, s9, baseline)
        if not args.quick:  # the soft 9x9 program is slow (seconds per solve): not in the smoke run
            layer9 = make_layer(9, time_limit=args.time_limit)
            init9 = {"alpha": jnp.asarray(inv_softplus(1.0)), "rho": jnp.full((len(GROUPS),), inv_softplus(1.0))}
            with tqdm(total=2, desc="9x9 soft solves", unit="eval") as bar9:
                before9 = solved_fraction(layer9, init9, p9, s9, chunk=2)
                bar9.update()
                after9 = solved_fraction(layer9, params, p9, s9, chunk=2)
                bar9.update()
            results["9x9"] = (before9, after9)
        else:
            results["9x9"] = ((float("nan"), float("nan")), (float("nan"), float("nan")))
    total_s = time.perf_counter() - t0

    print(f"\n{'board':<6} {'puzzles':>7}  {'solved (init)':>13}  {'solved (learned)':>16}  {'hard learned rules':>18}")

    def pct(v: float, width: int) -> str:
        return f"{'-':>{width}} " if np.isnan(v) else f"{100 * v:{width}.1f}%"

    for size, (before, after) in results.items():
        count = args.test if size == "4x4" else args.test9
        print(f"{size:<6} {count:>7}  {pct(before[0], 12)}  {pct(after[0], 15)}  {pct(hard[size], 17)}")
    print(
        f"baseline (hard rules = the groups no training board breaks: {baseline}): "
        + ", ".join(f"{size} {100 * v:.1f}%" for size, v in base.items())
    )
    if args.quick and args.test9:
        print("(--quick: the 9x9 puzzles are solved with the learned hard rules only)")
    print("(solved = the layer's exact solution equals the true board; init = every weight and the bonus at 1)")
    print(f"time: {train_s:.1f} s training (4x4), {total_s:.1f} s in all")

    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot")
        return 0
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = np.asarray(history)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(hist[:, 0], "k--", label="alpha (givens' bonus)")
    for k, g in enumerate(GROUPS):
        ax1.plot(hist[:, k + 1], "-" if k < 3 else ":", lw=2, label=f"w[{g}]")
    ax1.set(xlabel="Adam step", ylabel="weight", title="learned weights (4x4 boards)")
    ax1.grid(True, alpha=0.3)
    ax1.legend(fontsize=8)
    labels = list(results)
    pos = np.arange(len(labels))
    ax2.bar(pos - 0.27, [100 * np.nan_to_num(results[s][0][0]) for s in labels], 0.27, label="initial weights (all 1)")
    ax2.bar(pos, [100 * np.nan_to_num(results[s][1][0]) for s in labels], 0.27, label="learned weights (soft)")
    ax2.bar(pos + 0.27, [100 * hard[s] for s in labels], 0.27, label="learned rules (hard)")
    ax2.set_xticks(pos, labels)
    ax2.set(ylabel="test puzzles solved exactly (%)", ylim=(0, 105), title="held-out puzzles")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"plot saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
