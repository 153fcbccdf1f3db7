"""Step time against batch size: t(B) = alpha + beta B, measured on the loader's real batches.

At each size a copy of the loader (same data, transforms, collate, seed, workers) feeds
``step``; the first ``warmup`` steps are dropped (lazy allocation, caches, kernel selection),
the next ones timed one by one and their median kept. The clock covers what a training loop
waits for per batch: taking the next batch from the loader and the step. On CUDA the device is
synchronised around the clock, so queued kernels are counted where they run. ``alpha`` (the
per-step fixed cost) and ``beta`` (the cost per item) are fitted by least squares on relative
errors, so small and large sizes count alike.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..errors import ConfigError
from ..loader import DataLoader
from . import _loaders
from ._progress import Bar
from ._state import preserved

DEFAULT_REPEATS = 5
DEFAULT_WARMUP = 2
MAX_REPEATS = 200


class ThroughputPoint(NamedTuple):
    """One measured batch size."""

    batch_size: int
    seconds: float
    """Median seconds per step (taking the batch and running ``step``)."""
    items_per_s: float


@dataclasses.dataclass(frozen=True)
class ThroughputCurve:
    """Measured step times and the fit ``seconds(B) = alpha + beta * B``."""

    points: list[ThroughputPoint]
    alpha: float
    """Fixed seconds per step (>= 0)."""
    beta: float
    """Seconds per item (>= 0; 0 where bigger batches cost no measurable extra time)."""
    device: str

    def seconds(self, batch_size: float) -> float:
        """The fitted seconds per step at ``batch_size``."""
        return self.alpha + self.beta * batch_size

    def __str__(self) -> str:
        rows = [f"{'batch size':>10} {'ms/step':>9} {'items/s':>11}"]
        rows += [f"{p.batch_size:>10} {p.seconds * 1e3:>9.3f} {p.items_per_s:>11,.0f}"
                 for p in self.points]
        rows.append(f"fit: {self.alpha * 1e3:.4g} ms + {self.beta * 1e6:.4g} us/item "
                    f"({self.device})")
        return "\n".join(rows)


def powers_of_two(upper: int, lower: int = 8, most: int = 10) -> list[int]:
    """Powers of two from ``lower`` to ``upper`` (and ``upper`` itself), at most ``most``."""
    upper = max(1, int(upper))
    lower = max(1, min(lower, upper))
    sizes = [2**k for k in range(math.ceil(math.log2(lower)), int(math.log2(upper)) + 1)]
    if not sizes or sizes[-1] != upper:
        sizes.append(upper)
    if len(sizes) > most:  # keep both ends, thin the middle evenly
        keep = np.unique(np.linspace(0, len(sizes) - 1, most).round().astype(int))
        sizes = [sizes[i] for i in keep]
    return sizes


def cuda_synchronizer(device: Any) -> Callable[[], None]:
    """``torch.cuda.synchronize`` where CUDA is in use (``device`` or an initialised CUDA),
    else a no-op; never imports torch."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return lambda: None
    on_cuda = device is not None and str(device).startswith("cuda")
    if not on_cuda and not torch.cuda.is_initialized():
        return lambda: None
    target = device if on_cuda else None
    return lambda: torch.cuda.synchronize(target)


def fit_line(sizes: Sequence[float], seconds: Sequence[float]) -> tuple[float, float]:
    """``(alpha, beta)`` minimising the relative error of ``alpha + beta B``, both >= 0."""
    b, t = np.asarray(sizes, np.float64), np.asarray(seconds, np.float64)
    if len(b) == 1 or np.ptp(b) == 0:
        return float(t.mean()), 0.0
    weights = 1.0 / t
    design = np.stack([np.ones_like(b), b], axis=1) * weights[:, None]
    alpha, beta = np.linalg.lstsq(design, t * weights, rcond=None)[0]
    if beta <= 0:
        return float(np.median(t)), 0.0
    if alpha < 0:  # through the origin: time proportional to the items
        return 0.0, float(np.median(t / b))
    return float(alpha), float(beta)


def throughput_curve(
    dl: DataLoader[Any],
    step: Callable[[Any], Any],
    *,
    sizes: Sequence[int] | None = None,
    state: Any = None,
    device: Any = None,
    repeats: int = DEFAULT_REPEATS,
    warmup: int = DEFAULT_WARMUP,
    seconds: float | None = None,
    progress: bool = False,
) -> ThroughputCurve:
    """Time ``step`` at each batch size on ``dl``'s batches; fit ``alpha + beta B``.

    Args:
        dl: the training loader (its copies at each size are measured; it is not iterated).
        step: ``step(batch)``: one optimiser step.
        sizes: batch sizes (default: powers of two from 8 up to the data set's size, at most 10
            of them). Sizes above the data set's size are skipped.
        state: what ``step`` mutates (see :mod:`minibatcher.sizing`): restored after each size,
            so measuring never trains the user's model.
        device: the device ``step`` runs on (CUDA is synchronised around the clock; None:
            synchronised wherever CUDA is initialised).
        repeats: timed steps per size (more, up to 200, while ``seconds`` allows).
        warmup: untimed steps per size before the timed ones.
        seconds: a time budget shared by the sizes.
        progress: draw a progress bar (tqdm, when installed).
    """
    dl = _loaders.check_loader(dl)
    for name, value, least in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"{name} must be an int >= {least}, got {value!r}")
    n = _loaders.population(dl)
    if sizes is None:
        sizes = powers_of_two(n if n is not None else 4096)
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ConfigError(f"sizes must be positive ints, got {list(sizes)!r}")
    chosen = sorted({int(s) for s in sizes if n is None or s <= n})
    if not chosen:
        raise ConfigError(f"every size in {list(sizes)} is above the data set's {n} items")
    sync = cuda_synchronizer(device if device is not None else dl.options.device)
    budget = math.inf if seconds is None else seconds / len(chosen)
    points = []
    bar = Bar(len(chosen), "throughput", progress, "size")
    try:
        with preserved(state) as snapshot:
            for size in chosen:
                median = _time_size(dl, step, size, sync, repeats, warmup, budget)
                snapshot.restore()
                points.append(ThroughputPoint(size, median, size / median))
                bar.update()
                bar.note(f"{size}: {size / median:,.0f} items/s")
    finally:
        bar.close()
    alpha, beta = fit_line([p.batch_size for p in points], [p.seconds for p in points])
    where = str(device if device is not None else dl.options.device or "cpu")
    return ThroughputCurve(points, alpha, beta, where)


def _time_size(dl: DataLoader[Any], step: Callable[[Any], Any], size: int,
               sync: Callable[[], None], repeats: int, warmup: int, budget: float) -> float:
    """The median seconds of one step at ``size`` (full batches only)."""
    times: list[float] = []
    clock = time.perf_counter
    with _loaders.loader_like(dl, size, drop_last=True) as copy:
        stream = _loaders.batches_forever(copy)
        try:
            started = clock()
            for _ in range(warmup):
                step(next(stream))
            sync()
            while len(times) < MAX_REPEATS:
                begin = clock()
                step(next(stream))
                sync()
                times.append(clock() - begin)
                if len(times) >= repeats and (budget == math.inf or clock() - started > budget):
                    break  # without a budget: ``repeats``; with one: more while it lasts
        finally:
            stream.close()
    return float(np.median(times))

