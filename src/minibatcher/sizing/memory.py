"""The memory ceiling: the largest batch that fits, found without running out of memory on CPU.

On CPU an out-of-memory error is not an exception: the kernel kills the process. So nothing
large is tried. The peak allocation of loading a batch and running ``step`` is measured at a few
small sizes, fitted as ``fixed + per_item * B``, and solved for the budget (default: a fraction
of the memory available to this process, cgroup limits respected, shared by the ranks of one
machine; under ``torch.distributed`` the minimum over ranks). The peak is the larger of
two measures: ``tracemalloc`` (Python and NumPy allocations) and the process's resident-set
high-water mark, reset before each step where Linux allows it (``/proc/self/clear_refs``;
it sees torch's CPU allocations and anything else). On CUDA see ``_cuda.py``: peak memory from
``torch.cuda.max_memory_allocated``, fitted, then verified by a real step. Where items vary in
length, the measured batches are made of the loader's largest items. Never above the data set's
size.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import sys
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..loader import DataLoader
from . import _loaders
from ._progress import Bar
from ._state import preserved

CPU_FRACTION = 0.5
"""Default share of the available memory a CPU batch may use (the rest: everything else)."""
CUDA_FRACTION = 0.8
"""Default share of the free device memory (as YOLOv5's AutoBatch)."""


@dataclasses.dataclass(frozen=True)
class MemoryCeiling:
    """The largest batch that fits, and the fit it was solved from."""

    batch_size: int
    fixed_bytes: float
    """Peak bytes a step needs whatever the batch size (0 where not measurable)."""
    per_item_bytes: float
    """Peak bytes per item of the batch (0: memory does not grow measurably with it)."""
    budget_bytes: float
    """The bytes the ceiling was solved for."""
    points: list[tuple[int, int]]
    """Measured ``(batch size, peak bytes)``."""
    device: str
    limited_by: str
    """``"memory"`` or ``"data set size"``; on CUDA ``", verified"`` is appended when a real step
    ran at the ceiling, and ``"verified"`` alone means bisected by real steps after an OOM."""

    def peak(self, batch_size: float) -> float:
        """The predicted peak bytes of a step at ``batch_size``."""
        return self.fixed_bytes + self.per_item_bytes * batch_size

    def __str__(self) -> str:
        return (f"memory ceiling {self.batch_size:,} items on {self.device} (limited by "
                f"{self.limited_by}; {_mib(self.fixed_bytes)} + {_mib(self.per_item_bytes)}/item "
                f"against a budget of {_mib(self.budget_bytes)})")


def _mib(n: float) -> str:
    return f"{n / 2**20:,.3g} MiB"


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int:
    """Bytes this process may still allocate: the least of the system's available memory and
    its cgroup's headroom (v2 ``memory.max`` or v1 ``limit_in_bytes``, minus usage)."""
    candidates = []
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        cap, used = _read_int(limit), _read_int(usage)
        if cap is not None and used is not None and cap < 2**60:  # v1 "no limit" is ~2^63
            candidates.append(max(0, cap - used))
    if not candidates:
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            candidates.append(2**30)
    return min(candidates)


def _rss_peak_reset() -> bool:
    """Reset the resident-set high-water mark (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def min_over_ranks(value: int, device: Any = "cpu") -> int:
    """The minimum of ``value`` over the ranks of an initialised ``torch.distributed`` group
    (``value`` itself otherwise; torch is never imported here)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return value
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    where = device if dist.get_backend() == "nccl" else "cpu"  # gloo reduces host tensors
    t = torch.tensor([value], dtype=torch.int64, device=where)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def _local_ranks() -> int:
    """Processes sharing this machine's memory (torchrun's ``LOCAL_WORLD_SIZE``), at least 1."""
    text = os.environ.get("LOCAL_WORLD_SIZE", "1")
    return max(1, int(text)) if text.isdigit() else 1


def fit_memory(points: Sequence[tuple[int, int]]) -> tuple[float, float]:
    """``(fixed, per_item)`` by least squares, both >= 0."""
    b = np.array([p[0] for p in points], np.float64)
    m = np.array([p[1] for p in points], np.float64)
    if len(b) < 2 or np.ptp(b) == 0:
        return float(m.max(initial=0.0)), 0.0
    per_item, fixed = np.polyfit(b, m, 1)
    if per_item <= 0:
        return float(m.max()), 0.0
    if fixed < 0:
        return 0.0, float((m / b).max())
    return float(fixed), float(per_item)


def solve(fixed: float, per_item: float, budget: float, n: int | None) -> tuple[int, str]:
    """The largest B with ``fixed + per_item * B <= budget``, capped at ``n``; and why."""
    fits = math.inf if per_item <= 0 else (budget - fixed) / per_item
    if n is not None and fits >= n:
        return n, "data set size"
    if math.isinf(fits):
        return 2**31 - 1, "memory"
    return max(1, math.floor(fits)), "memory"


def device_kind(device: Any, dl: DataLoader[Any], state: Any) -> str:
    """``"cuda..."`` where the step runs on CUDA (``device``, the loader's, or ``state``'s
    parameters), else ``"cpu"``."""
    for candidate in (device, dl.options.device):
        if candidate is not None:
            return str(candidate)
    for obj in state if isinstance(state, (list, tuple)) else [state]:
        parameters = getattr(obj, "parameters", None)
        if callable(parameters):
            for p in parameters():
                return str(p.device)
    return "cpu"


def memory_ceiling(
    dl: DataLoader[Any],
    step: Callable[[Any], Any],
    *,
    state: Any = None,
    device: Any = None,
    budget: float | None = None,
    fraction: float | None = None,
    sizes: Sequence[int] | None = None,
    progress: bool = False,
) -> MemoryCeiling:
    """The largest batch size whose step fits in ``budget`` bytes (never above the data set).

    Args:
        dl: the training loader (copies of it are measured).
        step: ``step(batch)``: one optimiser step.
        state: what ``step`` mutates; restored after every measured step.
        device: where ``step`` runs (default: the loader's ``device``, or ``state``'s
            parameters' device, else CPU).
        budget: bytes a step may use (default: ``fraction`` of the available memory: on CPU
            :func:`available_memory`, on CUDA the free device memory).
        fraction: the default budget's share (CPU 0.5, CUDA 0.8).
        sizes: the small batch sizes measured (default: 4 sizes up to 64 or the batch size).
        progress: draw a progress bar (tqdm, when installed).
    """
    dl = _loaders.check_loader(dl)
    if budget is not None and (isinstance(budget, bool) or not budget > 0):
        raise ConfigError(f"budget must be a positive number of bytes or None, got {budget!r}")
    if fraction is not None and (isinstance(fraction, bool) or not 0 < fraction <= 1):
        raise ConfigError(f"fraction must be in (0, 1] or None, got {fraction!r}")
    n = _loaders.population(dl)
    top = max(8, min(dl.options.batch_size or 1, 64))
    if n is not None:
        top = min(top, n)
    if sizes is None:
        sizes = sorted({max(1, top // 8), max(1, top // 4), max(1, top // 2), top})
    if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise ConfigError(f"sizes must be positive ints, got {sizes!r}")
    kind = device_kind(device, dl, state)
    if kind.startswith("cuda"):
        from ._cuda import cuda_ceiling

        return cuda_ceiling(dl, step, state=state, device=kind, budget=budget,
                            fraction=CUDA_FRACTION if fraction is None else fraction,
                            sizes=sizes, population=n, progress=progress)
    if budget is None:  # ranks on one machine share its memory
        share = CPU_FRACTION if fraction is None else fraction
        budget = share * available_memory() / _local_ranks()
    points = []
    bar = Bar(len(sizes) + 1, "memory", progress, "size")
    try:
        with preserved(state) as snapshot:
            _cpu_peak(dl, step, min(sizes), None)  # warm-up: lazy one-off allocations
            snapshot.restore()
            bar.update()
            for size in sorted(sizes):
                points.append((size, _cpu_peak(dl, step, size, _loaders.largest_items(dl, size))))
                snapshot.restore()
                bar.update()
    finally:
        bar.close()
    fixed, per_item = fit_memory(points)
    ceiling, why = solve(fixed, per_item, budget, n)
    ceiling = min_over_ranks(ceiling)
    return MemoryCeiling(ceiling, fixed, per_item, float(budget), points, "cpu", why)


def _cpu_peak(dl: DataLoader[Any], step: Callable[[Any], Any], size: int,
              largest: list[int] | None) -> int:
    """Peak bytes above the starting point while a batch of ``size`` is loaded and stepped."""
    changes: dict[str, Any] = {"sampler": largest} if largest is not None else {}
    with _loaders.loader_like(dl, size, **changes) as copy:
        gc.collect(1)  # young garbage only: a full collection costs ~0.4 s once torch is loaded
        tracing = tracemalloc.is_tracing()
        if not tracing:
            tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            traced_base = tracemalloc.get_traced_memory()[0]
            rss_base = _status_bytes("VmRSS:")
            rss_ok = rss_base is not None and _rss_peak_reset()
            stream = _loaders.batches_forever(copy)
            try:
                step(next(stream))
            finally:
                stream.close()
            traced_peak = tracemalloc.get_traced_memory()[1] - traced_base
            high = _status_bytes("VmHWM:") if rss_ok else None
        finally:
            if not tracing:
                tracemalloc.stop()
    rss_peak = 0 if high is None or rss_base is None else high - rss_base
    return max(traced_peak, rss_peak, 0)
