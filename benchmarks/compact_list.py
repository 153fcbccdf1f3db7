"""First-batch time and per-item cost of a large Python list through 2 process workers.

The compact copy of ``sources/compact.py`` (issue 8): 100,000 variable-length int32 arrays (or,
with ``dicts``, 100,000 small dicts, which are compacted), batch size 64, ``collate_fn=list``
(or ``pad``: ``minibatcher.pad_collate``), against torch's DataLoader with the same workers and
against minibatcher's thread workers. Each loader is built anew per epoch (non-persistent
workers, as by default); medians of 3 epochs::

    .venv/bin/python benchmarks/compact_list.py torch|threads|processes [arrays|dicts] [list|pad]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

N, BATCH, WORKERS = 100_000, 64, 2


def make_data(kind: str) -> list[Any]:
    rng = np.random.default_rng(0)
    if kind == "dicts":
        return [{"id": i, "name": f"n{i}", "len": int(k)} for i, k in enumerate(rng.integers(1, 64, N))]
    return [np.arange(k, dtype=np.int32) for k in rng.integers(1, 64, N)]


def as_list(items: list[Any]) -> list[Any]:
    return items


def epoch(make: Callable[[], Any]) -> tuple[float, float]:
    start = time.perf_counter()
    batches = iter(make())
    next(batches)
    first = time.perf_counter() - start
    for _ in batches:
        pass
    return first, time.perf_counter() - start


def main(loader: str, kind: str = "arrays", collate: str = "list") -> None:
    from minibatcher import DataLoader, pad_collate

    data = make_data(kind)
    collate_fn: Any = as_list if collate == "list" else pad_collate
    if loader == "torch":
        import torch.utils.data as tud

        def make() -> Any:
            return tud.DataLoader(data, batch_size=BATCH, num_workers=WORKERS, collate_fn=collate_fn)
    else:
        worker_type = "thread" if loader == "threads" else "process"

        def make() -> Any:
            return DataLoader(
                data, batch_size=BATCH, num_workers=WORKERS, worker_type=worker_type,
                collate_fn=collate_fn,
            )

    runs = [epoch(make) for _ in range(3)]
    first = statistics.median(r[0] for r in runs)
    total = statistics.median(r[1] for r in runs)
    print(
        f"{loader:9s} {kind:6s} {collate:4s} first batch {first * 1e3:7.1f} ms, epoch "
        f"{total * 1e3:7.1f} ms = {total / N * 1e6:5.2f} us/item (median of 3 epochs)"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
