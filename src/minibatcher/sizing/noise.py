"""The gradient noise scale B_simple = tr(Sigma) / |G|^2, measured from two batch sizes.

McCandlish et al. 2018 ("An Empirical Model of Large-Batch Training"): with per-example gradient
covariance Sigma and true gradient G, a mean gradient over b items has E|G_b|^2 = |G|^2 +
tr(Sigma) c(b). Two sizes b < B give unbiased estimates of both terms,

    |G|^2 ~ (c(b) |G_B|^2 - c(B) |G_b|^2) / (c(b) - c(B))
    tr(Sigma) ~ (|G_b|^2 - |G_B|^2) / (c(b) - c(B)),

each averaged over batches and divided at the end. For batches drawn with replacement (or from
an infinite stream) c(b) = 1/b. A loader's batches are drawn *without* replacement from N items,
and then c(b) = (N - b) / (b (N - 1)) (the finite-population correction): with it the estimate
is unbiased even when B is half of the data set, and tr(Sigma) is exactly the mean of |g_i|^2
minus |mean g|^2 over the N per-example gradients.

Here b is a micro-batch: every batch of B items is cut into ``micro`` slices; the gradient of
the whole batch is the size-weighted mean of its slices' gradients, so measuring costs one
gradient per item, as training does. Sums are float64 whatever the gradients' dtype.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..loader import DataLoader
from . import _loaders
from ._progress import Bar

DEFAULT_BATCHES = 64
"""Batches measured by :func:`noise_scale` when neither ``batches`` nor ``seconds`` is given."""
INTERVAL = 0.90
BOOTSTRAP_RESAMPLES = 2000


@dataclasses.dataclass(frozen=True)
class NoiseResult:
    """A measured noise scale: ``value`` (B_simple) and its parts."""

    value: float
    """B_simple = trace / gradient_sq_norm (inf where |G|^2 is not measurably above 0)."""
    interval: tuple[float, float]
    """A 90% interval of ``value`` from the spread over batches (bootstrap percentiles)."""
    trace: float
    """tr(Sigma): the summed variance of one example's gradient."""
    gradient_sq_norm: float
    """|G|^2: the squared norm of the true (whole data set) gradient."""
    batches: int
    """Batches (updates) the estimate averages over."""
    batch_size: int
    """B, the items of each measured batch (the last, smaller batch of an epoch included)."""
    micro: int
    """Micro-batches each batch was cut into (b = B / micro)."""
    population: int | None
    """N used in the finite-population correction (None: no correction)."""

    def __str__(self) -> str:
        low, high = self.interval
        n = "no finite-population correction" if self.population is None else (
            f"N={self.population:,}")
        return (f"B_simple = {_num(self.value)} (90% interval {_num(low)} to {_num(high)}; "
                f"{self.batches} batches of {self.batch_size} in {self.micro} micro-batches, "
                f"{n})")


def _num(x: float) -> str:
    return "inf" if math.isinf(x) else "nan" if math.isnan(x) else f"{x:,.4g}"


def _leaves(grad: Any) -> list[Any]:
    if isinstance(grad, Mapping):
        return [leaf for v in grad.values() for leaf in _leaves(v)]
    if isinstance(grad, (list, tuple)):
        return [leaf for v in grad for leaf in _leaves(v)]
    return [] if grad is None else [grad]


def _float64(leaf: Any) -> Any:
    if hasattr(leaf, "detach") and hasattr(leaf, "double"):  # torch: stay on its device
        return leaf.detach().double()
    return np.asarray(leaf, dtype=np.float64)


def _sq_norm(leaves: Sequence[Any]) -> float:
    """The summed squared norm of float64 leaves; torch's are summed on their device and read
    once (one synchronisation per gradient, not one per parameter)."""
    parts: list[Any] = []
    for x in leaves:
        if isinstance(x, np.ndarray):
            flat = x.ravel()
            parts.append(float(np.dot(flat, flat)))
        else:
            parts.append((x * x).sum())
    return float(sum(parts))


class NoiseScale:
    """An online noise-scale estimate, fed with gradients a training loop computes anyway.

    Args:
        population: N, the number of items the batches are drawn from without replacement
            (the finite-population correction); None for an infinite stream or sampling with
            replacement.
        window: keep only the latest ``window`` updates (the noise scale changes as training
            goes; None keeps all).

    Two ways to feed it:

    - :meth:`update` with the micro-batch gradients of one batch (gradient accumulation):
      each the mean loss gradient over its slice, with the slices' sizes;
    - :meth:`update_pair` with a small-batch gradient and a large-batch one that contains it,
      e.g. under DDP each rank's local gradient (``b`` items) and the all-reduced one
      (``world_size * b`` items), read before and after the all-reduce; or
      :meth:`update_sq_norms` with the rank-averaged |local|^2 (less noisy: all ranks count).
    """

    def __init__(self, population: int | None = None, *, window: int | None = None) -> None:
        if population is not None and (isinstance(population, bool) or population < 2):
            raise ConfigError(f"population must be an int >= 2 or None, got {population!r}")
        if window is not None and (isinstance(window, bool) or window < 2):
            raise ConfigError(f"window must be an int >= 2 or None, got {window!r}")
        self.population = population
        self._rows: collections.deque[tuple[float, float, float, float]] = collections.deque(
            maxlen=window)
        self._sizes: collections.Counter[int] = collections.Counter()
        self._micro = 0

    def c(self, size: int) -> float:
        """The variance factor of a mean over ``size`` items: 1/b, corrected for N."""
        n = self.population
        return 1.0 / size if n is None else (n - size) / (size * (n - 1))

    def update(self, micro_grads: Iterable[Any], sizes: Sequence[int]) -> None:
        """One batch: its micro-batch gradients (consumed one at a time) and their sizes."""
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"update needs at least 2 micro-batches of >= 1 item, got {sizes}")
        total = sum(sizes)
        summed: list[Any] | None = None
        small_sq = 0.0
        count = 0
        for grad, size in zip(micro_grads, sizes, strict=False):  # counted below
            leaves = [_float64(leaf) for leaf in _leaves(grad)]
            small_sq += _sq_norm(leaves)  # read now: the next grad() may reuse its buffers
            weight = size / total
            summed = ([leaf * weight for leaf in leaves] if summed is None
                      else [acc + leaf * weight for acc, leaf in zip(summed, leaves, strict=True)])
            count += 1
        if count != len(sizes) or summed is None:
            raise ValueError(f"update got {count} gradients for {len(sizes)} sizes")
        big_sq = _sq_norm(summed)
        c_small = sum(self.c(s) for s in sizes) / len(sizes)
        self._add(small_sq / len(sizes), c_small, big_sq, self.c(total))
        self._sizes[total] += 1
        self._micro = len(sizes)

    def update_pair(self, small: Any, small_size: int, big: Any, big_size: int) -> None:
        """One small-batch gradient (``small_size`` items) and a larger one (``big_size``)."""
        if not 1 <= small_size < big_size:
            raise ValueError(
                f"update_pair needs 1 <= small_size < big_size, got {small_size} and {big_size}")
        small_sq = _sq_norm([_float64(leaf) for leaf in _leaves(small)])
        big_sq = _sq_norm([_float64(leaf) for leaf in _leaves(big)])
        self.update_sq_norms(small_sq, small_size, big_sq, big_size)

    def update_sq_norms(self, small_sq: float, small_size: int, big_sq: float,
                        big_size: int) -> None:
        """Like :meth:`update_pair`, from the squared norms: e.g. under DDP the mean over
        ranks of |local gradient|^2 (one scalar all-reduce) and |all-reduced gradient|^2."""
        if not 1 <= small_size < big_size:
            raise ValueError(
                f"update needs 1 <= small_size < big_size, got {small_size} and {big_size}")
        self._add(float(small_sq), self.c(small_size), float(big_sq), self.c(big_size))
        self._sizes[big_size] += 1
        self._micro = round(big_size / small_size)

    def _add(self, small_sq: float, c_small: float, big_sq: float, c_big: float) -> None:
        self._rows.append((small_sq, c_small, big_sq, c_big))

    def _estimates(self) -> tuple[np.ndarray, np.ndarray]:
        """Per update: unbiased estimates of tr(Sigma) and |G|^2."""
        rows = np.array(self._rows, dtype=np.float64).reshape(-1, 4)
        small, c_small, big, c_big = rows.T
        gap = c_small - c_big
        return (small - big) / gap, (c_small * big - c_big * small) / gap

    @property
    def count(self) -> int:
        """Updates the estimate averages over."""
        return len(self._rows)

    @property
    def trace(self) -> float:
        """The estimate of tr(Sigma)."""
        return float(self._estimates()[0].mean()) if self._rows else math.nan

    @property
    def gradient_sq_norm(self) -> float:
        """The estimate of |G|^2."""
        return float(self._estimates()[1].mean()) if self._rows else math.nan

    @property
    def value(self) -> float:
        """B_simple = trace / gradient_sq_norm (inf where |G|^2 <= 0: noise dominates)."""
        return _ratio(self.trace, self.gradient_sq_norm)

    @property
    def interval(self) -> tuple[float, float]:
        """A 90% bootstrap interval of :attr:`value` over the updates ((nan, nan) below 2)."""
        n = len(self._rows)
        if n < 2:
            return (math.nan, math.nan)
        trace, g2 = self._estimates()
        rng = np.random.default_rng(0)
        resamples = max(200, min(BOOTSTRAP_RESAMPLES, 4_000_000 // n))
        pick = rng.integers(0, n, size=(resamples, n))
        t, g = trace[pick].mean(axis=1), g2[pick].mean(axis=1)
        ratios = np.where(g > 0, t / np.where(g > 0, g, 1.0), np.inf)
        tail = (1 - INTERVAL) / 2 * 100
        low, high = np.percentile(ratios, [tail, 100 - tail])
        return (float(low), float(high))

    def result(self) -> NoiseResult:
        """The estimate so far, as a :class:`NoiseResult`."""
        size = self._sizes.most_common(1)[0][0] if self._sizes else 0
        return NoiseResult(self.value, self.interval, self.trace, self.gradient_sq_norm,
                           self.count, size, self._micro, self.population)

    def __repr__(self) -> str:
        return f"NoiseScale(value={_num(self.value)}, updates={self.count}, N={self.population})"


def _ratio(trace: float, g2: float) -> float:
    if math.isnan(trace) or math.isnan(g2):
        return math.nan
    return trace / g2 if g2 > 0 else math.inf


def noise_scale(
    dl: DataLoader[Any],
    grad: Callable[[Any], Any],
    *,
    micro: int = 8,
    batches: int | None = None,
    seconds: float | None = None,
    correction: bool = True,
    progress: bool = False,
) -> NoiseResult:
    """Measure B_simple on ``dl``'s batches, at the current (fixed) parameters.

    Every batch (B items, shuffled as training sees them, from a copy of ``dl``: the loader
    itself is not iterated) is cut into ``micro`` slices, every leaf along its first axis;
    ``grad(slice)`` returns the mean loss gradient over the slice (a NumPy array, a torch
    tensor, or a list/tuple/dict of them) without changing the parameters.

    Args:
        dl: the training loader (batching by ``batch_size``, with ``batch_size >= micro``;
            shuffled, so that batches are random draws: a warning says so otherwise).
        grad: ``grad(batch) -> gradient``; called once per micro-batch.
        micro: micro-batches per batch (>= 2).
        batches: batches to measure (crossing epochs, each reshuffled); default 64, or as many
            as ``seconds`` allows.
        seconds: stop after this much time (at least 2 batches are measured).
        correction: apply the finite-population correction with N = the items ``dl`` draws
            from (False: treat batches as drawn with replacement, biased when B is a sizeable
            share of N).
        progress: draw a progress bar (needs tqdm; silently none without it).
    """
    dl = _loaders.check_loader(dl)
    if isinstance(micro, bool) or not isinstance(micro, int) or micro < 2:
        raise ConfigError(f"micro must be an int >= 2, got {micro!r}")
    size = dl.options.batch_size or 1
    if size < micro:
        raise ConfigError(f"micro must be at most the batch size: micro={micro}, batch size {size}")
    for name, value in (("batches", batches), ("seconds", seconds)):
        if value is not None and (isinstance(value, bool) or not value > 0):
            raise ConfigError(f"{name} must be positive or None, got {value!r}")
    if not dl.options.shuffle and dl.options.sampler is None:
        warnings.warn(
            "noise_scale: the loader does not shuffle, so its batches are not random draws and "
            "the estimate describes these fixed batches only (pass a loader with shuffle=True)",
            UserWarning, stacklevel=2)
    if batches is None:
        batches = DEFAULT_BATCHES if seconds is None else 2**62
    estimate = NoiseScale(_loaders.population(dl) if correction else None)
    deadline = math.inf if seconds is None else time.perf_counter() + seconds
    bar = Bar(batches if batches < 2**62 else None, "noise scale", progress, "batch")
    try:
        with _loaders.loader_like(dl, size) as copy:
            stream = _loaders.batches_forever(copy)
            try:
                skipped = 0
                for batch in stream:
                    if _loaders.batch_length(batch) < micro:
                        skipped += 1  # the epoch's last batch, too small to cut
                        if skipped > 2 * len(copy):
                            raise ValueError(f"no batch of {dl!r} has >= {micro} items")
                        continue
                    slices, sizes = _loaders.split_batch(batch, micro)
                    estimate.update((grad(s) for s in slices), sizes)
                    bar.update()
                    if bar.active and estimate.count % 16 == 0:
                        bar.note(f"B_simple ~ {_num(estimate.value)}")
                    out_of_time = time.perf_counter() > deadline and estimate.count >= 2
                    if estimate.count >= batches or out_of_time:
                        break
            finally:
                stream.close()
    finally:
        bar.close()
    return estimate.result()
