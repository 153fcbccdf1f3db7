"""The memory ceiling on CUDA: fitted from peak memory, verified by a real step, bisected on OOM.

1. At a few small sizes: ``torch.cuda.reset_peak_memory_stats``, load a batch, run ``step``,
   read ``torch.cuda.max_memory_allocated`` minus what was allocated before; fit
   ``fixed + per_item * B``.
2. Solve for ``fraction`` of the memory this process can still get: the driver's free memory
   plus what torch's caching allocator holds but has not handed out.
3. Verify with one real step at that size. On ``torch.cuda.OutOfMemoryError`` (the exception
   type, never its message) free the batch, the gradients and the cache, and bisect between the
   largest size that ran and the one that failed.
4. Under ``torch.distributed`` every decision is the minimum over ranks (an all-reduce), so all
   ranks try the same sizes and return the same ceiling. A rank that runs out of memory inside a
   collective of ``step`` (DDP's gradient all-reduce) while the others do not cannot be
   recovered by any library; the fit aims below the limit so that the verification rarely fails.

NOT YET RUN ON A GPU: no CUDA device was available where this was written.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from typing import Any

from ..loader import DataLoader
from . import _loaders
from ._progress import Bar
from ._state import preserved
from .memory import MemoryCeiling, fit_memory, min_over_ranks, solve

MAX_BISECTIONS = 12


def cuda_ceiling(
    dl: DataLoader[Any],
    step: Callable[[Any], Any],
    *,
    state: Any,
    device: str,
    budget: float | None,
    fraction: float,
    sizes: Sequence[int],
    population: int | None,
    progress: bool,
) -> MemoryCeiling:
    """See the module docstring."""
    import torch

    dev = torch.device(device)
    if dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())

    def free_everything() -> None:
        gc.collect()
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()

    def peak(size: int) -> int | None:
        """Peak bytes of one step at ``size``, or None after an out-of-memory error."""
        largest = _loaders.largest_items(dl, size)
        changes: dict[str, Any] = {"sampler": largest} if largest is not None else {}
        failed = False
        with _loaders.loader_like(dl, size, **changes) as copy:
            free_everything()
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
            stream = _loaders.batches_forever(copy)
            try:
                step(next(stream))
                torch.cuda.synchronize(dev)
            except torch.cuda.OutOfMemoryError:
                failed = True  # the traceback (and the batch it holds) is released here
            finally:
                stream.close()
            used = torch.cuda.max_memory_allocated(dev) - base
        snapshot.restore()  # the gradients and optimizer state back to what they were
        free_everything()
        return None if failed else max(0, int(used))

    points: list[tuple[int, int]] = []
    bar = Bar(len(sizes) + 2, "memory", progress, "try")
    try:
        with preserved(state) as snapshot:
            peak(min(sizes))  # warm-up: cuBLAS workspaces, lazy optimizer state
            bar.update()
            for size in sorted(sizes):
                used = peak(size)
                ok = min_over_ranks(0 if used is None else 1, dev)
                if not ok:
                    break  # even a small size does not fit: the ceiling is below it
                worst = -min_over_ranks(-(used or 0), dev)  # the maximum over ranks
                points.append((size, worst))
                bar.update()
            if not points:
                return MemoryCeiling(max(1, min(sizes) // 2), 0.0, 0.0, 0.0, [], str(dev),
                                     "memory")
            if budget is None:
                free, _total = torch.cuda.mem_get_info(dev)
                cached = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
                budget = fraction * (free + cached)
            fixed, per_item = fit_memory(points)
            target, why = solve(fixed, per_item, budget, population)
            target = min_over_ranks(target, dev)
            good = max(p[0] for p in points)
            if target > good:
                target, why = _verify(lambda s: peak(s) is not None, good, target, why,
                                      lambda v: min_over_ranks(v, dev), bar)
            else:
                target = max(1, target)
    finally:
        bar.close()
    return MemoryCeiling(target, fixed, per_item, float(budget), points, str(dev), why)


def _verify(fits: Callable[[int], bool], good: int, target: int, why: str,
            agree: Callable[[int], int], bar: Bar) -> tuple[int, str]:
    """``target`` if a real step fits there, else the bisected largest size that fits
    (``good`` is known to fit); every answer agreed over ranks by ``agree`` (a minimum)."""
    if agree(int(fits(target))):
        return target, f"{why}, verified"

    bar.note(f"{target} ran out of memory: bisecting")
    low, high = good, target  # low fits, high does not
    for _ in range(MAX_BISECTIONS):
        if high - low <= max(1, low // 64):  # within ~1.5%: close enough
            break
        middle = (low + high) // 2
        if agree(int(fits(middle))):
            low = middle
        else:
            high = middle
        bar.update()
    return low, "verified"  # bisected by real steps
