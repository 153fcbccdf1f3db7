"""Cost per index of the lazy (Feistel) permutation against a materialised NumPy permutation.

    .venv/bin/python benchmarks/permutation.py            # n = 10^7
    .venv/bin/python benchmarks/permutation.py --n 1000000 --repeats 3

A materialised permutation pays once per epoch (time and n * 8 bytes on every rank); the lazy
one pays per index read, holds nothing, and can start anywhere in the epoch at once. Rows:

- ``np.random.permutation`` / ``Generator.permutation``: build the whole epoch's order.
- ``materialised, read per batch``: the build plus slicing it batch by batch (what the loader does).
- ``lazy, whole epoch in chunks of C``: ``LazyPermutation.slice`` over the epoch, C at a time.
- ``lazy, per batch, read ahead``: what the loader does: batches served from chunks of 65,536
  (``samplers/shard.py: ReadAhead``; evaluating 64 positions per call would pay NumPy's call
  overhead ~20 times per batch, about 100x slower).
- ``lazy, first batch``: time to the first batch (a resumed or sharded epoch starts here).

Memory is the peak of NumPy allocations seen by ``tracemalloc`` in one extra run of the row
(not timed). Timings are the median of ``--repeats`` untraced rounds, each round running every
row in turn; machines are shared and noisy, so read the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from minibatcher.samplers import LazyPermutation
from minibatcher.samplers.shard import ReadAhead


def peak_bytes(fn: Callable[[], object]) -> int:
    """Peak traced bytes of one run of ``fn`` (tracing slows every allocation: never timed)."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10**7, help="items in the epoch")
    parser.add_argument("--batch", type=int, default=64, help="batch size for per-batch rows")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, batch, repeats = args.n, args.batch, args.repeats

    def materialised_per_batch() -> None:
        perm = np.random.default_rng(0).permutation(n)
        for first in range(0, n, batch):
            perm[first : first + batch]

    def lazy_chunks(chunk: int, read_ahead: bool = False) -> Callable[[], None]:
        def run() -> None:
            perm = LazyPermutation(n, 0, 0)
            order = ReadAhead(perm) if read_ahead else perm
            for first in range(0, n, chunk):
                order.slice(first, first + chunk)

        return run

    rows: list[tuple[str, Callable[[], object], int]] = [
        ("np.random.permutation(n)", lambda: np.random.permutation(n), n),
        ("Generator.permutation(n)", lambda: np.random.default_rng(0).permutation(n), n),
        (f"materialised, read per batch of {batch}", materialised_per_batch, n),
        ("lazy, whole epoch in chunks of 65536", lazy_chunks(65536), n),
        (f"lazy, per batch of {batch}, read ahead (loader)", lazy_chunks(batch, True), n),
        (
            f"lazy, time to first batch of {batch}",
            lambda: LazyPermutation(n, 0, 0).slice(0, batch),
            batch,
        ),
        (
            "lazy, a batch at position n/2 of n=10^10",
            lambda: LazyPermutation(10**10, 0, 0).slice(5 * 10**9, 5 * 10**9 + batch),
            batch,
        ),
    ]
    # Rounds run every row once, in turn, so a load change on a shared machine hits all rows.
    times: list[list[float]] = [[] for _ in rows]
    for _ in range(repeats):
        for i, (_, fn, _) in enumerate(rows):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    print(f"n = {n:,} items, batch = {batch}, median of {repeats} interleaved rounds\n")
    header = f"{'method':<44} {'total s':>9} {'ns/index':>9} {'x numpy':>8} {'peak MiB':>9}"
    print(header)
    print("-" * len(header))
    base_per_index = None
    for (name, fn, count), runs in zip(rows, times, strict=True):
        seconds = statistics.median(runs)
        per_index = seconds / count * 1e9
        if base_per_index is None:
            base_per_index = per_index
        print(
            f"{name:<44} {seconds:>9.4f} {per_index:>9.1f} {per_index / base_per_index:>8.2f} "
            f"{peak_bytes(fn) / 2**20:>9.2f}"
        )


if __name__ == "__main__":
    main()
