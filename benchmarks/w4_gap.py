"""Where W4's gap to its limit goes: the start, the end and the main process's CPU, per epoch.

W4 (``workers.py``) compares minibatcher's 2 process workers with its limit, two plain forked
processes running the same item function (half the items each). Throughput alone mixes the
loader's costs with the machine's load; this script times, in the same run and interleaved
epoch by epoch, what the loader adds at each end of an epoch and in between:

- ``first``: ms from the epoch's start (``iter()``, or the limit's first fork) to the first item
  begun in each of the two processes (the later of the two is shown after the slash);
- ``tail``: ms from the end of the epoch's last item to the end of the epoch (results handed
  over, workers gone);
- ``main CPU``: the main process's CPU time per epoch (``time.process_time``), which the
  2 cores share with the workers; and the rate of each, with ours / limit.

Items carry their own timestamps (``time.monotonic`` is system-wide on Linux), so nothing in
the loader is patched::

    PYTHONPATH=src python benchmarks/w4_gap.py [--items 4000] [--epochs 8]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from typing import Any

import numpy as np

from workers import W4_BATCH, CpuBound


class Stamped(CpuBound):
    """W4's item, returned with when it began and ended and in which process."""

    def __getitem__(self, i: int) -> Any:
        began = time.monotonic()
        x = super().__getitem__(i)
        return x, began, time.monotonic(), os.getpid()


def limit_epoch(data: Stamped) -> tuple[list[float], float, float]:
    """Two forked processes, half the items each: (first item begun per process, last item
    ended, epoch end), as monotonic times."""
    context = multiprocessing.get_context("fork")
    out = context.SimpleQueue()

    def share(w: int) -> None:
        first = last = None
        for i in range(w, data.n, 2):
            _, began, ended, _ = data[i]
            first = began if first is None else first
            last = ended
        out.put((first, last))

    procs = [context.Process(target=share, args=(w,)) for w in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    end = time.monotonic()
    marks = [out.get() for _ in procs]
    return [m[0] for m in marks], max(m[1] for m in marks), end


def loader_epoch(loader: Any) -> tuple[list[float], float, float]:
    """One epoch of ``loader``: the same three marks."""
    firsts: dict[int, float] = {}
    last = 0.0
    for _x, began, ended, pid in loader:
        for b, p in zip(np.asarray(began).tolist(), np.asarray(pid).tolist(), strict=True):
            firsts.setdefault(p, b)
        last = max(last, float(np.max(ended)))
    return list(firsts.values()), last, time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    from minibatcher import DataLoader

    data = Stamped(args.items)
    loader = DataLoader(data, batch_size=W4_BATCH, shuffle=True, num_workers=2)
    cells = {"limit": lambda: limit_epoch(data), "minibatcher": lambda: loader_epoch(loader)}
    rows: dict[str, list[tuple[float, float, float, float, float]]] = {k: [] for k in cells}
    for run in cells.values():  # warm-up
        run()
    for epoch in range(args.epochs):
        order = list(cells) if epoch % 2 else list(cells)[::-1]
        for name in order:
            start, cpu = time.monotonic(), time.process_time()
            firsts, last, end = cells[name]()
            cpu = time.process_time() - cpu
            firsts = sorted(firsts)
            rows[name].append(((firsts[0] - start) * 1e3, (firsts[-1] - start) * 1e3,
                               (end - last) * 1e3, cpu * 1e3, end - start))
    print(f"W4 gap: {args.items} items, bs {W4_BATCH}, 2 workers, {args.epochs} epochs each, "
          f"medians; load average {os.getloadavg()[0]:.1f}")
    rates = {}
    for name, values in rows.items():
        med = [statistics.median(column) for column in zip(*values, strict=True)]
        rates[name] = args.items / med[4]
        print(f"  {name:12s} first {med[0]:6.1f}/{med[1]:6.1f} ms  tail {med[2]:6.1f} ms  "
              f"main CPU {med[3]:6.1f} ms  rate {rates[name]:8.0f} items/s")
    print(f"  minibatcher / limit: {rates['minibatcher'] / rates['limit']:.2f}x")


if __name__ == "__main__":
    main()
