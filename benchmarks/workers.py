"""The worker workloads of ``../shared/BENCHMARKS.md``: W4-W7 and W1 through persistent workers.

Each workload runs minibatcher and PyTorch's ``torch.utils.data.DataLoader`` with the same
number of workers, batch size and shuffle, side by side, through the harness of ``bench.py``
(each cell in a fresh subprocess, a warm-up, the median of the timed repetitions). ``bench.py``
picks up :data:`WORKLOADS`; this script runs only them::

    .venv/bin/python benchmarks/workers.py            # full sizes
    .venv/bin/python benchmarks/workers.py --quick    # smaller sizes (labelled QUICK)
    .venv/bin/python benchmarks/workers.py --rounds 3 # interleaved rounds, medians (noisy hosts)

Workloads (both loaders fork their workers, the Linux default of both here):

- W4 cpu-bound: 20,000 items, each ~0.2 ms of deterministic Python work to fetch, bs 32; 2
  workers, and ours with 0 workers for the scaling ratio. Workers are started every epoch.
  "NumPy limit" here: two plain forked processes running half the items each, per epoch.
- W5 transport: 2,048 uint8 (3, 224, 224) arrays made in the worker, bs 32, 2 persistent workers:
  MB/s delivered to the main process; "NumPy limit" is the machine's memcpy of the same bytes.
- W6 start-up: ms from creating the loader to its first batch (2 workers), and with persistent
  workers, ms from ``iter()`` of a later epoch to its first batch (lower is better).
- W1w: W1 (``range(1M)``, bs 64, shuffle) read through 2 persistent workers.
- W7 memory: a list of 2,000,000 small dicts, 2 workers, one epoch: the growth of the workers'
  USS (unique set size, summed over workers) from their first batch to the epoch's end, MiB
  (lower is better). USS counts exactly the pages a worker copied (copy-on-read).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from harness import (
    Cell,
    Config,
    Target,
    Workload,
    drain,
    first_batch_ms,
    loader_epochs,
    median_ms,
    our_loader,
    plain_processes,
    rate,
    torch_loader,
)

WORKERS = 2
W4_FULL, W4_QUICK, W4_BATCH, W4_ROUNDS = 20_000, 4_000, 32, 900
W5_ITEMS, W5_QUICK, W5_BATCH, W5_SHAPE = 2_048, 512, 32, (3, 224, 224)
W1_FULL, W1_QUICK, W1_BATCH = 1_000_000, 200_000, 64
W7_FULL, W7_QUICK, W7_BATCH = 2_000_000, 200_000, 64


class CpuBound:
    """W4's dataset: item i costs ~0.2 ms of deterministic pure-Python work (holds the GIL);
    ``rounds`` sets the cost (torch_compat.py's W4 uses more)."""

    def __init__(self, n: int, rounds: int = W4_ROUNDS) -> None:
        self.n = n
        self.rounds = rounds

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        x = i
        for _ in range(self.rounds):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        return x


class Images:
    """W5's dataset: item i is a uint8 (3, 224, 224) array made in the worker."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        return np.full(W5_SHAPE, i % 256, dtype=np.uint8)








# -- W4 -----------------------------------------------------------------------------------------
def _w4(make: Callable[..., Any], workers: int) -> Callable[[Config], float]:
    def run(config: Config) -> float:
        n = config.size(W4_FULL, W4_QUICK)
        loader = make(CpuBound(n), batch_size=W4_BATCH, shuffle=True, num_workers=workers)
        return loader_epochs(loader, n, config)

    return run


def w4_limit(config: Config) -> float:
    """W4's limit: two plain forked processes running the same items (half each) per epoch."""
    n = config.size(W4_FULL, W4_QUICK)
    data = CpuBound(n)

    def share(worker: int) -> None:
        for i in range(worker, n, WORKERS):
            data[i]

    return rate(lambda _e: plain_processes(share, WORKERS), n, config)


# -- W5 -----------------------------------------------------------------------------------------
def _w5(make: Callable[..., Any]) -> Callable[[Config], float]:
    def run(config: Config) -> float:
        n = config.size(W5_ITEMS, W5_QUICK)
        loader = make(Images(n), batch_size=W5_BATCH, num_workers=WORKERS,
                      persistent_workers=True)
        return loader_epochs(loader, n, config) * int(np.prod(W5_SHAPE)) / 1e6

    return run


def w5_memcpy(config: Config) -> float:
    """MB/s of copying W5's batches once (the bandwidth a zero-copy transport saves)."""
    n = config.size(W5_ITEMS, W5_QUICK)
    source = np.ones((W5_BATCH, *W5_SHAPE), dtype=np.uint8)
    target = np.empty_like(source)

    def epoch(_e: int) -> None:
        for _ in range(n // W5_BATCH):
            np.copyto(target, source)

    return rate(epoch, n, config) * int(np.prod(W5_SHAPE)) / 1e6


# -- W6 -----------------------------------------------------------------------------------------


def _w6_fresh(make: Callable[..., Any]) -> Callable[[Config], float]:
    def run(config: Config) -> float:
        return first_batch_ms(lambda: make(Images(W5_ITEMS), batch_size=W5_BATCH, shuffle=True,
                                           num_workers=WORKERS), config)

    return run


def _w6_persistent(make: Callable[..., Any]) -> Callable[[Config], float]:
    def run(config: Config) -> float:
        loader = make(Images(256), batch_size=W5_BATCH, shuffle=True, num_workers=WORKERS,
                      persistent_workers=True)
        drain(loader)  # epoch 1 starts the workers

        def once() -> float:
            start = time.perf_counter()
            it = iter(loader)
            next(it)
            elapsed = time.perf_counter() - start
            drain(it)
            return elapsed

        try:
            return median_ms(once, config)
        finally:
            close = getattr(loader, "close", None)
            if callable(close):
                close()

    return run


# -- W1 through 2 persistent workers ----------------------------------------------------------
def _w1w(make: Callable[..., Any]) -> Callable[[Config], float]:
    def run(config: Config) -> float:
        n = config.size(W1_FULL, W1_QUICK)
        loader = make(range(n), batch_size=W1_BATCH, shuffle=True, num_workers=WORKERS,
                      persistent_workers=True)
        return loader_epochs(loader, n, config)

    return run


# -- W7 -----------------------------------------------------------------------------------------
def w7_dicts(n: int) -> list[dict[str, Any]]:
    """W7's dataset: small dicts."""
    return [{"id": i, "label": i % 10, "weight": i * 0.5} for i in range(n)]


def _uss_mib(pids: list[int]) -> float:
    import psutil

    total = 0
    for pid in pids:
        total += psutil.Process(pid).memory_full_info().uss
    return total / 2**20


def w7(make: Callable[..., Any]) -> Callable[[Config], float]:
    """Workers' USS growth over one epoch, MiB (one measurement: an epoch is the unit)."""

    def run(config: Config) -> float:
        import psutil

        n = config.size(W7_FULL, W7_QUICK)
        data = w7_dicts(n)
        loader = make(data, batch_size=W7_BATCH, shuffle=True, num_workers=WORKERS)
        me = psutil.Process()
        it = iter(loader)
        next(it)
        pids = [c.pid for c in me.children() if "forkserver" not in " ".join(c.cmdline())]
        before = after = _uss_mib(pids)
        batches = 1
        total = len(data) // W7_BATCH + (len(data) % W7_BATCH > 0)
        for _ in it:
            batches += 1
            if batches == total - 1:  # the workers are still alive: measure now
                after = _uss_mib(pids)
        del it
        return after - before

    return run


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        id="W4",
        title="cpu-bound 20k items x 0.2 ms, bs 32, 2 workers",
        cells=(
            Cell(competitor="NumPy limit", run=w4_limit),
            Cell(competitor="minibatcher", run=_w4(our_loader, WORKERS)),
            Cell(competitor="minibatcher 0 workers", run=_w4(our_loader, 0)),
            Cell(competitor="torch", run=_w4(torch_loader, WORKERS), requires=("torch",)),
            Cell(competitor="torch 0 workers", run=_w4(torch_loader, 0), requires=("torch",)),
        ),
        targets=(
            Target(numerator="minibatcher", denominator="NumPy limit", at_least=0.95),
            Target(numerator="torch", denominator="NumPy limit"),
            Target(numerator="minibatcher", denominator="minibatcher 0 workers", at_least=1.85),
            Target(numerator="minibatcher", denominator="torch", at_least=1.15),
        ),
    ),
    Workload(
        id="W5",
        title="2,048 uint8 (3,224,224) made in workers, bs 32, 2 persistent workers",
        unit="MB/s",
        cells=(
            Cell(competitor="NumPy limit", run=w5_memcpy),
            Cell(competitor="minibatcher", run=_w5(our_loader)),
            Cell(competitor="torch", run=_w5(torch_loader), requires=("torch",)),
        ),
        targets=(Target(numerator="minibatcher", denominator="torch", at_least=3.0),),
    ),
    Workload(
        id="W6",
        title="create -> first batch, 2 workers",
        unit="ms",
        higher_is_better=False,
        cells=(
            Cell(competitor="minibatcher", run=_w6_fresh(our_loader)),
            Cell(competitor="torch", run=_w6_fresh(torch_loader), requires=("torch",)),
        ),
        targets=(Target(numerator="minibatcher", denominator="torch", at_most=0.7),),
    ),
    Workload(
        id="W6p",
        title="persistent workers: iter() of a later epoch -> first batch",
        unit="ms",
        higher_is_better=False,
        cells=(
            Cell(competitor="minibatcher", run=_w6_persistent(our_loader)),
            Cell(competitor="torch", run=_w6_persistent(torch_loader), requires=("torch",)),
        ),
        targets=(Target(numerator="minibatcher", denominator="torch", at_most=0.7),),
    ),
    Workload(
        id="W1w",
        title="range(N), bs 64, shuffle, through 2 persistent workers",
        cells=(
            Cell(competitor="minibatcher", run=_w1w(our_loader)),
            Cell(competitor="torch", run=_w1w(torch_loader), requires=("torch",)),
        ),
        targets=(Target(numerator="minibatcher", denominator="torch", at_least=10.0),),
    ),
    Workload(
        id="W7",
        title="2M small dicts, 2 workers, one epoch: workers' USS growth",
        unit="MiB",
        higher_is_better=False,
        cells=(
            Cell(competitor="minibatcher", run=w7(our_loader)),
            Cell(competitor="torch", run=w7(torch_loader), requires=("torch",)),
        ),
        targets=(Target(numerator="minibatcher", denominator="torch", at_most=0.1),),
    ),
)
"""The worker workloads, for ``bench.py``."""


def main(argv: list[str] | None = None) -> int:
    """Run only the worker workloads through ``bench.py``'s runner (same options)."""
    import bench

    args = list(sys.argv[1:] if argv is None else argv)
    if "--only" not in args and "--cell" not in args:
        args += ["--only", ",".join(w.id for w in WORKLOADS)]
    return bench.main(args)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
