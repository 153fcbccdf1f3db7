"""The benchmark harness: workloads, cells, targets, timing, and the side-by-side table.

A :class:`Workload` (W1, W2, ...) has one :class:`Cell` per competitor (minibatcher, torch, the
NumPy limit, ...). ``bench.py`` runs every cell in a fresh subprocess (``bench.py --cell W1
torch``), so no cell inherits another's imports, caches or heap, and prints one table whose
ratios were all measured in the same invocation (see ``../shared/BENCHMARKS.md``).

To add workloads (the worker workloads W4-W7, say), write a module ``benchmarks/workers.py`` that
imports this one and defines ``WORKLOADS``, a sequence of :class:`Workload`; ``bench.py`` picks it
up when present. A cell's ``run(config)`` returns one number in the workload's ``unit``; use
:func:`rate` for "items per second over epochs" and ``higher_is_better=False`` for latencies.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

# Column order of the table; competitors not listed here follow in order of appearance.
COLUMNS = (
    "NumPy limit",
    "minibatcher",
    "torch",
    "torch batched fetch",
    "fastai",
    "grain",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """How big and how long: ``quick`` shrinks every workload (the table says so)."""

    quick: bool = False
    epochs: int = 5
    warmup: int = 1

    def size(self, full: int, quick: int) -> int:
        """The number of items of a workload: ``full`` normally, ``quick`` in quick mode."""
        return quick if self.quick else full


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cell:
    """One competitor on one workload: ``run(config)`` returns the measurement."""

    competitor: str
    run: Callable[[Config], float]
    requires: tuple[str, ...] = ()
    """Modules the competitor needs; the cell is left out when one is not installed."""

    def available(self) -> bool:
        """Whether every module in ``requires`` is installed."""
        return all(importlib.util.find_spec(name) is not None for name in self.requires)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Target:
    """A goal on the ratio ``numerator / denominator`` of two cells of one workload."""

    numerator: str
    denominator: str
    at_least: float | None = None
    at_most: float | None = None

    def met(self, ratio: float) -> bool:
        """Whether ``ratio`` meets the goal."""
        low_ok = self.at_least is None or ratio >= self.at_least
        high_ok = self.at_most is None or ratio <= self.at_most
        return low_ok and high_ok

    @property
    def informative(self) -> bool:
        """A ratio shown for information only (no bound)."""
        return self.at_least is None and self.at_most is None

    def rule(self) -> str:
        """The goal in words, e.g. ``>= 8x torch`` (``—`` for an informative ratio)."""
        if self.informative:
            return "—"
        bound = f">= {self.at_least:g}x" if self.at_least is not None else f"<= {self.at_most:g}x"
        return f"{bound} {self.denominator}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Workload:
    """A workload of ``../shared/BENCHMARKS.md`` and its competitors."""

    id: str
    title: str
    cells: tuple[Cell, ...]
    unit: str = "items/s"
    higher_is_better: bool = True
    targets: tuple[Target, ...] = ()

    def cell(self, competitor: str) -> Cell:
        """The cell of ``competitor`` (KeyError naming the choices if there is none)."""
        for cell in self.cells:
            if cell.competitor == competitor:
                return cell
        names = [c.competitor for c in self.cells]
        raise KeyError(f"{self.id} has no competitor {competitor!r}; it has {names}")


def rate(run_epoch: Callable[[int], object], items: int, config: Config) -> float:
    """Items per second: the median over ``config.epochs`` timed epochs after the warm-up.

    ``run_epoch(epoch)`` runs one whole epoch (its permutation included) of ``items`` items.
    """
    for epoch in range(config.warmup):
        run_epoch(epoch)
    seconds = []
    for epoch in range(config.warmup, config.warmup + config.epochs):
        start = time.perf_counter()
        run_epoch(epoch)
        seconds.append(time.perf_counter() - start)
    return items / statistics.median(seconds)


def drain(iterable: Iterable[object]) -> int:
    """Consume ``iterable`` (one epoch of a loader) and return how many batches it gave."""
    count = 0
    for _ in iterable:
        count += 1
    return count


def format_value(value: float, unit: str) -> str:
    """``8_740_000, 'items/s'`` -> ``8.74M``; other units keep three significant digits."""
    if unit.endswith("/s"):
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if value >= scale:
                return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def columns_of(workloads: Sequence[Workload]) -> list[str]:
    """The table's competitor columns: those installed (fastai and grain only where they are),
    the known ones in order, then any others."""
    seen = [c.competitor for w in workloads for c in w.cells if c.available()]
    known = [name for name in COLUMNS if name in seen]
    extra = [name for name in dict.fromkeys(seen) if name not in COLUMNS]
    return known + extra


def results_table(
    workloads: Sequence[Workload], results: dict[tuple[str, str], float | str]
) -> str:
    """The side-by-side markdown table (a cell's value, or its error/absence in words)."""
    columns = columns_of(workloads)
    lines = [
        "| workload | unit | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for w in workloads:
        row = []
        for name in columns:
            value = results.get((w.id, name))
            if value is None:
                row.append("—")
            elif isinstance(value, str):
                row.append(value)
            else:
                row.append(format_value(value, w.unit))
        lines.append(f"| {w.id} {w.title} | {w.unit} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def targets_table(
    workloads: Sequence[Workload], results: dict[tuple[str, str], float | str]
) -> tuple[str, bool]:
    """The ratios and whether each target is met; also whether all of them are."""
    lines = ["| workload | ratio | measured | target | met |", "|---|---|---|---|---|"]
    all_met = True
    for w in workloads:
        for t in w.targets:
            num, den = results.get((w.id, t.numerator)), results.get((w.id, t.denominator))
            label = f"{t.numerator} / {t.denominator}"
            if not isinstance(num, float) or not isinstance(den, float) or den == 0:
                lines.append(f"| {w.id} | {label} | n/a | {t.rule()} | n/a |")
                all_met = all_met and t.informative
                continue
            ratio = num / den
            ok = t.met(ratio)
            all_met = all_met and ok
            verdict = "—" if t.informative else ("yes" if ok else "NO")
            lines.append(f"| {w.id} | {label} | {ratio:.2f}x | {t.rule()} | {verdict} |")
    return "\n".join(lines), all_met


# -- helpers the workload modules share ----------------------------------------------------------
BENCH_DATA = os.path.join(tempfile.gettempdir(), "minibatcher-bench")
"""Where workloads write the data they make (files kept between cells and runs)."""


def torch_loader(data: Any, **kwargs: Any) -> Any:
    """``torch.utils.data.DataLoader(data, **kwargs)`` (typed loosely: torch wants a Dataset)."""
    import torch.utils.data as tud

    return tud.DataLoader(data, **kwargs)


def our_loader(data: Any, **kwargs: Any) -> Any:
    """``minibatcher.DataLoader(data, **kwargs)``."""
    from minibatcher import DataLoader

    return DataLoader(data, **kwargs)


def loader_epochs(loader: Any, items: int, config: Config) -> float:
    """Items/s over whole epochs of ``loader`` (then its persistent workers are stopped)."""
    try:
        return rate(lambda _e: drain(loader), items, config)
    finally:
        close = getattr(loader, "close", None)
        if callable(close):
            close()


def median_ms(measure: Callable[[], float], config: Config) -> float:
    """The median of ``config.epochs`` calls of ``measure()`` (seconds), in ms, after warm-ups."""
    for _ in range(config.warmup):
        measure()
    return 1000 * statistics.median(measure() for _ in range(config.epochs))


def first_batch_ms(make_loader: Callable[[], Any], config: Config) -> float:
    """The median ms from building a loader (``make_loader()``) to holding its first batch;
    stopping its workers afterwards is not timed."""

    def once() -> float:
        start = time.perf_counter()
        loader = make_loader()
        it = iter(loader)
        next(it)
        elapsed = time.perf_counter() - start
        del it, loader
        return elapsed

    return median_ms(once, config)


def plain_processes(run_share: Callable[[int], object], workers: int) -> None:
    """Run ``run_share(w)`` for ``w < workers`` in as many forked processes, and wait: the limit
    of a parallel loader (the same work, split evenly, no loader at all)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=run_share, args=(w,)) for w in range(workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
