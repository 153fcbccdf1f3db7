"""First-batch time and per-item cost of a large Python list through 2 process workers.

The compact copy of ``sources/compact.py`` (issue 8): 100,000 variable-length int32 arrays (or,
with ``dicts``, 100,000 small dicts, which are compacted by columns; with ``nested``, 100,000
dicts holding a list, which are compacted as pickles), batch size 64, ``collate_fn=list``
(or ``pad``: ``minibatcher.pad_collate``), against torch's DataLoader with the same workers and
against minibatcher's thread workers. Each loader is built anew per epoch (non-persistent
workers, as by default); medians of 3 epochs::

    .venv/bin/python benchmarks/compact_list.py LOADER [arrays|dicts|nested] [list|pad] [--rounds R]

with LOADER one of torch, threads, processes, or ``all`` (the three interleaved in one process,
one epoch each per round, so that they share the machine's load; ratios to torch's first batch).
Besides wall time, the CPU time of all processes per item (the main process, the workers and,
under fork, the encoder of the compact copy: ``transport/compact_stage.py``).

``refresh [N]``: what keeping the copy exact costs per epoch (NOTE [ Compact copies stay
current ] in ``sources/compact.py``), on W7's rows (``{"id", "label", "weight"}``, N = 2,000,000
by default): the encoding, the per-epoch refresh of the records layout and of the pickled
layout (the same rows as lists, which can change in place, so are re-pickled and compared), against
one epoch (shuffle, default collate, bs 64, 2 fresh workers) of torch and of minibatcher::

    .venv/bin/python benchmarks/compact_list.py refresh [2000000]
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
        lengths = rng.integers(1, 64, N).tolist()
        return [{"id": i, "name": f"n{i}", "len": k} for i, k in enumerate(lengths)]
    if kind == "nested":
        lengths = rng.integers(1, 8, N).tolist()
        return [{"id": i, "tokens": list(range(k))} for i, k in enumerate(lengths)]
    return [np.arange(k, dtype=np.int32) for k in rng.integers(1, 64, N)]


def as_list(items: list[Any]) -> list[Any]:
    return items


def epoch(make: Callable[[], Any]) -> tuple[float, float, float]:
    """First-batch and epoch seconds (wall), and the CPU seconds of the epoch in every process
    (ours and our reaped children's: the workers and their encoder)."""
    cpu = _cpu()
    start = time.perf_counter()
    batches = iter(make())
    next(batches)
    first = time.perf_counter() - start
    for _ in batches:
        pass
    total = time.perf_counter() - start
    del batches
    return first, total, _cpu() - cpu


def _cpu() -> float:
    import resource

    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def maker(loader: str, data: list[Any], collate: str) -> Callable[[], Any]:
    from minibatcher import DataLoader, pad_collate

    collate_fn: Any = as_list if collate == "list" else pad_collate
    if loader == "torch":
        import torch.utils.data as tud

        return lambda: tud.DataLoader(
            data, batch_size=BATCH, num_workers=WORKERS, collate_fn=collate_fn
        )
    worker_type = "thread" if loader == "threads" else "process"
    return lambda: DataLoader(
        data, batch_size=BATCH, num_workers=WORKERS, worker_type=worker_type,
        collate_fn=collate_fn,
    )


def main(loader: str, kind: str = "arrays", collate: str = "list", rounds: int = 3) -> None:
    """``loader`` one of torch, processes, threads, or ``all``: the three interleaved, one
    epoch of each per round (the same machine load for all), each epoch with a new loader."""
    data = make_data(kind)
    loaders = ["torch", "processes", "threads"] if loader == "all" else [loader]
    makers = {name: maker(name, data, collate) for name in loaders}
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in loaders}
    for _ in range(rounds):
        for name in loaders:
            runs[name].append(epoch(makers[name]))
    firsts = {name: statistics.median(r[0] for r in rs) for name, rs in runs.items()}
    for name, rs in runs.items():
        first = firsts[name]
        total = statistics.median(r[1] for r in rs)
        cpu = statistics.median(r[2] for r in rs)
        ratio = f" ({first / firsts['torch']:.2f}x torch's)" if "torch" in firsts else ""
        print(
            f"{name:9s} {kind:6s} {collate:4s} first batch {first * 1e3:7.1f} ms{ratio}, epoch "
            f"{total * 1e3:7.1f} ms = {total / N * 1e6:5.2f} us/item wall, "
            f"{cpu / N * 1e6:5.2f} us/item CPU (all processes; median of {rounds} epochs; "
            f"first batches {', '.join(f'{r[0] * 1e3:.0f}' for r in rs)} ms)"
        )


def timed(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def refresh_cost(size: str = "2000000") -> None:
    from minibatcher import DataLoader
    from minibatcher.sources.compact import CompactSequence
    from minibatcher.sources.compact_records import CompactRecords

    n = int(size)
    rows = [{"id": i, "label": i % 10, "weight": i * 0.5} for i in range(n)]
    lists = [[i, i % 10, i * 0.5] for i in range(n)]
    records = CompactRecords.encode(rows)
    assert records is not None
    pickled = CompactSequence(lists)
    costs = {
        "records: encode": timed(lambda: CompactRecords.encode(rows)),
        "records: refresh (per epoch)": statistics.median(
            timed(lambda: records.refresh(rows)) for _ in range(3)
        ),
        "pickles: encode": timed(lambda: CompactSequence(lists)),
        "pickles: refresh (per epoch)": timed(lambda: pickled.refresh(lists)),
    }

    def one_epoch(make: Callable[..., Any]) -> float:
        loader = make(rows, batch_size=BATCH, shuffle=True, num_workers=WORKERS)
        return timed(lambda: [None for _ in loader])

    import torch.utils.data as tud

    epochs = {"torch": one_epoch(tud.DataLoader), "minibatcher": one_epoch(DataLoader)}
    for name, cost in costs.items():
        ratios = ", ".join(f"{cost / t:.1%} of {k}'s epoch" for k, t in epochs.items())
        print(f"{name:30s} {cost * 1e3:8.1f} ms = {cost / n * 1e9:5.0f} ns/item ({ratios})")
    for name, t in epochs.items():
        print(f"{name} epoch: {t * 1e3:.0f} ms = {t / n * 1e6:.2f} us/item")


if __name__ == "__main__":
    if sys.argv[1:2] == ["refresh"]:
        refresh_cost(*sys.argv[2:])
    else:
        args = sys.argv[1:]
        rounds = 3
        if "--rounds" in args:
            at = args.index("--rounds")
            rounds = int(args[at + 1])
            del args[at : at + 2]
        main(*args, rounds=rounds)
