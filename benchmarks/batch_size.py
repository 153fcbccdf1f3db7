"""Does the suggested batch size reach a target loss soonest? Measured on the demo's model.

``minibatcher.sizing.suggest_batch_size`` predicts, from a noise scale and a throughput curve
measured at the initial weights, the batch size B* that minimises the time to a target loss.
This script checks the prediction by training: the demo's NumPy MLP on scikit-learn's digits,
from the same initial weights, with every power of two from 8 to 1024, the whole training set
(1,437 items: here "the largest batch that fits", since the memory ceiling is the data set) and
B*; learning rates by the demo's rule lr = min(0.01 B, 0.8) for every size alike. The clock runs
over the training loop only (loader and SGD steps); the training loss over the whole training set
is evaluated every ~128 items off the clock. Sizes run round-robin, one seed per round.
Reported: the median over seeds of the seconds to reach the target loss, and each size's ratio
to the best power of two.

    python benchmarks/batch_size.py [--target 0.1] [--seeds 3] [--seconds 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from minibatcher import DataLoader, demo
from minibatcher.sizing import noise_scale

EVAL_ITEMS = 128
MAX_EPOCHS = 400


def time_to_target(batch_size: int, data: tuple[np.ndarray, ...], params: dict[str, np.ndarray],
                   target: float, seed: int, model: demo.NumpyMLP | None = None,
                   ) -> tuple[float, int]:
    """Seconds of training (and steps) until the training-set loss is <= ``target``."""
    x, y = data[0], data[1]
    model = demo.NumpyMLP(params) if model is None else model
    lr = demo.learning_rate(batch_size)
    dl = DataLoader({"x": x, "y": y}, batch_size=batch_size, shuffle=True, seed=seed)
    every = max(1, EVAL_ITEMS // batch_size)
    clock, steps = 0.0, 0
    for _ in range(MAX_EPOCHS):
        start = time.perf_counter()
        for batch in dl:
            model.step(batch["x"], batch["y"], lr)
            steps += 1
            if steps % every == 0:
                clock += time.perf_counter() - start
                if model.gradients(x, y)[0] <= target:
                    return clock, steps
                start = time.perf_counter()
        clock += time.perf_counter() - start
        if model.gradients(x, y)[0] <= target:
            return clock, steps
    return float("inf"), steps


def main() -> None:
    """Suggest, then train every size and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.1, help="training loss to reach")
    parser.add_argument("--seeds", type=int, default=3, help="training runs per size")
    parser.add_argument("--seconds", type=float, default=10.0, help="suggestion's budget")
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args()
    data = demo.load_digits_split(0)
    params = demo.NumpyMLP.init(data[0].shape[1], args.hidden, 10, 0)
    suggestion = demo.suggest(hidden=args.hidden, seed=0, seconds=args.seconds, progress=False)
    print(suggestion, "\n", flush=True)
    b_star = suggestion.batch_size
    full = len(data[0])
    sizes = sorted({*(2**k for k in range(3, 11)), full, b_star})
    runs: dict[int, list[tuple[float, int]]] = {size: [] for size in sizes}
    with demo._one_blas_thread():
        # Round-robin over the sizes, a new seed each round: a busy spell of the machine then
        # slows every size alike instead of the few that happen to run during it.
        for seed in range(args.seeds):
            for size in sizes:
                runs[size].append(time_to_target(size, data, params, args.target, seed))
            print(f"  round {seed + 1}/{args.seeds} done", flush=True)
    rows = [(size, statistics.median(r[0] for r in runs[size]),
             int(statistics.median(r[1] for r in runs[size]))) for size in sizes]
    powers = [r for r in rows if r[0] & (r[0] - 1) == 0]
    best = min(powers, key=lambda r: r[1])
    print(f"\nTime to a training loss of {args.target} (median of {args.seeds} seeds; "
          f"lr = min(0.01 B, 0.8)):\n")
    print(f"{'batch size':>12} {'lr':>6} {'steps':>7} {'seconds':>8} {'vs best 2^k':>11}")
    for size, seconds, steps in rows:
        tags = " B* (suggested)" if size == b_star else ""
        tags += " the whole set (the largest that fits)" if size == full else ""
        print(f"{size:>12} {demo.learning_rate(size):>6.3g} {steps:>7} {seconds:>8.3f} "
              f"{seconds / best[1]:>10.2f}x{tags}")
    star = next(r for r in rows if r[0] == b_star)
    largest = next(r for r in rows if r[0] == full)
    print(f"\nB* = {b_star}: {star[1] / best[1]:.2f}x the best power of two ({best[0]}); the "
          f"whole set: {largest[1] / best[1]:.2f}x.")
    # The noise scale grows as the loss falls: measured again where the target is reached.
    trained = demo.NumpyMLP(params)
    with demo._one_blas_thread():
        time_to_target(64, data, params, args.target, 0, trained)
        later = noise_scale(
            DataLoader({"x": data[0], "y": data[1]}, batch_size=64, shuffle=True, seed=0),
            lambda b: trained.gradients(b["x"], b["y"])[1], micro=8, batches=400)
    print(f"B_simple at the initial weights: {suggestion.noise.value:.1f}; at a training loss "
          f"of {args.target} (batch size 64): {later.value:.1f} "
          f"(90% interval {later.interval[0]:.1f} to {later.interval[1]:.1f}).")


if __name__ == "__main__":
    main()
