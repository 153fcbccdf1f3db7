"""BucketBatchSampler: batches of items of similar lengths, by count or by a token budget.

In: the items' lengths, a seed and an epoch. Out: the epoch's batches of indices, a pure function
of ``(seed, epoch)``: a fresh permutation is cut into windows of ``window`` batches' worth of
items, each window is sorted by length and cut into batches (``batch_size`` items each, or as
many as fit ``batch size x longest <= max_tokens``), and the batches are shuffled. State: none;
inside a loader the position is the number of batches delivered, as for every sampler here.

Padding falls with the window: sorting a window of ``window`` batches leaves neighbours of
similar lengths, and a wider window trades randomness of the batches' composition for less
padding (on W10's long-tailed lengths, 100 batches of 64 pad about 6%, against 86% unbucketed).

Sharding across ranks is by batch: rank ``r`` of ``W`` gets batches ``r, r + W, ...`` of the
epoch (so every rank takes the same number of steps, with the loader's ``uneven`` policy for the
last, partial group), and a resumed epoch continues at the next undelivered batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .._seed import ORDER_STREAM, check_seed, draw_seed, generator
from .._typing import IndexArray
from .base import RangeOrder, check_positive_int
from .batch import EpochPlan
from .order import permutation
from .shard import ShardedOrder, ShardSpec

DEFAULT_WINDOW = 100
"""Batches' worth of items sorted together (the fairseq / lhotse default range is 50-1000)."""


class BucketBatchSampler:
    """Batches of similar lengths for ``DataLoader(data, batch_sampler=...)``.

    Args:
        lengths: the length of each item (e.g. its number of tokens), one int per index.
        batch_size: items per batch; with ``max_tokens`` too, the most items a batch may hold.
        max_tokens: a token budget per batch: each batch holds as many items as fit
            ``len(batch) * longest item <= max_tokens`` (the batch size varies).
        shuffle: a new random grouping and batch order every epoch; ``False`` sorts all items by
            length once and yields the batches shortest first (for evaluation).
        seed: overrides the loader's seed when set (a loader passes its own otherwise).
        drop_last: drop the last batch if it holds fewer than ``batch_size`` items (only with a
            fixed ``batch_size``).
        window: how many batches' worth of items are sorted together.

    Raises:
        ValueError: naming the argument, for bad values, or the first item longer than
            ``max_tokens`` (it could never be batched).

    Example::

        >>> lengths = [5, 1, 9, 2, 8, 3]
        >>> sampler = BucketBatchSampler(lengths, batch_size=2, shuffle=False)
        >>> list(sampler)
        [[1, 3], [5, 0], [4, 2]]
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int | None = None,
        *,
        max_tokens: int | None = None,
        shuffle: bool = True,
        seed: int | None = None,
        drop_last: bool = False,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self.lengths = _lengths(lengths)
        self.batch_size = check_positive_int(batch_size, "batch_size", allow_none=True)
        self.max_tokens = check_positive_int(max_tokens, "max_tokens", allow_none=True)
        if self.batch_size is None and self.max_tokens is None:
            raise ValueError("BucketBatchSampler needs batch_size or max_tokens, got neither")
        for name, flag in (("shuffle", shuffle), ("drop_last", drop_last)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be a bool, got {flag!r}")
        if drop_last and self.max_tokens is not None:
            raise ValueError(
                "drop_last=True applies to a fixed batch_size; with max_tokens every batch is "
                "as full as the budget allows, so there is no partial batch to drop"
            )
        self.window = int(check_positive_int(window, "window") or DEFAULT_WINDOW)
        if self.max_tokens is not None and len(self.lengths):
            too_long = np.flatnonzero(self.lengths > self.max_tokens)
            if len(too_long):
                i = int(too_long[0])
                raise ValueError(
                    f"max_tokens must hold every item: lengths[{i}] = {int(self.lengths[i])} "
                    f"exceeds max_tokens={self.max_tokens} (filter or truncate long items)"
                )
        self.shuffle = shuffle
        self.seed = None if seed is None else check_seed(seed)
        self.drop_last = drop_last
        self._own_seed = draw_seed() if seed is None else self.seed
        self._epoch = 0
        self._cached: tuple[int, int, list[IndexArray]] | None = None

    # -- the epoch's batches ---------------------------------------------------------------
    def batches(self, seed: int, epoch: int) -> list[IndexArray]:
        """All batches of ``epoch`` drawn from ``seed`` (pure: same arguments, same batches)."""
        cached = self._cached
        if cached is not None and cached[:2] == (seed, epoch):
            return cached[2]
        result = self._make_batches(seed, epoch)
        self._cached = (seed, epoch, result)
        return result

    def _make_batches(self, seed: int, epoch: int) -> list[IndexArray]:
        n = len(self.lengths)
        if n == 0:
            return []
        rng = generator(seed, epoch, ORDER_STREAM) if self.shuffle else None
        order = permutation(rng, n) if rng is not None else np.arange(n, dtype=np.int64)
        span = n if rng is None else self._window_items()
        out: list[IndexArray] = []
        for first in range(0, n, span):
            chunk = order[first : first + span]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            out.extend(self._cut(chunk))
        if self.drop_last and self.batch_size is not None and len(out[-1]) < self.batch_size:
            out.pop()
        if rng is not None and out:
            out = [out[i] for i in rng.permutation(len(out)).tolist()]
        return out

    def _window_items(self) -> int:
        """Items per sorted window: ``window`` batches of the (typical) batch size."""
        if self.max_tokens is None:
            assert self.batch_size is not None
            return self.window * self.batch_size
        typical = max(1, self.max_tokens // max(1, int(np.median(self.lengths))))
        if self.batch_size is not None:
            typical = min(typical, self.batch_size)
        return self.window * typical

    def _cut(self, chunk: IndexArray) -> list[IndexArray]:
        """Cut a chunk sorted by length into batches (by count, or greedily by the budget)."""
        size = self.batch_size
        if self.max_tokens is None:
            assert size is not None
            return [chunk[i : i + size] for i in range(0, len(chunk), size)]
        budget, cap = self.max_tokens, size or len(chunk)
        lengths = self.lengths[chunk].tolist()  # ascending: the newest item is the longest
        cuts, start = [], 0
        for i, length in enumerate(lengths):
            if (i - start + 1) * length > budget or i - start >= cap:
                cuts.append(i)
                start = i
        bounds = [0, *cuts, len(chunk)]
        return [chunk[a:b] for a, b in itertools.pairwise(bounds)]

    def plan(
        self, seed: int, epoch: int, spec: ShardSpec | None = None, data_length: int | None = None
    ) -> EpochPlan:
        """The epoch's batches as a loader plan: this rank's share (by batch) when sharded.

        Raises IndexError if there are more lengths than ``data_length`` items of data."""
        if data_length is not None and len(self.lengths) > data_length:
            raise IndexError(
                f"the BucketBatchSampler has {len(self.lengths)} lengths, more than the "
                f"{data_length} items of the data: lengths must have one entry per item"
            )
        return BatchListPlan(self.batches(seed, epoch), spec)

    # -- torch's sampler protocol ------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Set the epoch used when the sampler is iterated directly (or its len() taken)."""
        self._epoch = epoch

    def _seed_now(self) -> int:
        seed = self._own_seed if self.seed is None else self.seed
        assert seed is not None
        return seed

    def __iter__(self) -> Iterator[list[int]]:
        return (b.tolist() for b in self.batches(self._seed_now(), self._epoch))

    def __len__(self) -> int:
        """The number of batches (with ``max_tokens``: of the epoch set by :meth:`set_epoch`)."""
        if self.max_tokens is None:
            assert self.batch_size is not None
            n, size = len(self.lengths), self.batch_size
            return n // size if self.drop_last else -(-n // size)
        return len(self.batches(self._seed_now(), self._epoch))

    def padding(self, seed: int = 0, epoch: int = 0) -> float:
        """The fraction of padding tokens (pad / all) in ``epoch``'s batches padded to their
        longest item: what bucketing saves, measured."""
        batches = self.batches(seed, epoch)
        real = padded = 0
        for batch in batches:
            lengths = self.lengths[batch]
            real += int(lengths.sum())
            padded += int(lengths.max()) * len(lengths) if len(lengths) else 0
        return 0.0 if padded == 0 else 1.0 - real / padded

    def __repr__(self) -> str:
        return (
            f"BucketBatchSampler(n={len(self.lengths)}, batch_size={self.batch_size}, "
            f"max_tokens={self.max_tokens}, shuffle={self.shuffle}, seed={self.seed}, "
            f"drop_last={self.drop_last}, window={self.window})"
        )


class BatchListPlan(EpochPlan):
    """An epoch given as a list of batches; sharded by batch (rank ``r``: ``r, r + W, ...``)."""

    def __init__(self, batches: list[IndexArray], spec: ShardSpec | None) -> None:
        self._batches = batches
        whole = RangeOrder(len(batches))
        self._order: Any = whole if spec is None else ShardedOrder(whole, spec)

    def __len__(self) -> int:
        return len(self._order)

    def batches(self, start: int = 0) -> Iterator[IndexArray]:
        picks = self._order.slice(start, len(self._order)).tolist()
        return map(self._batches.__getitem__, picks)


def _lengths(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    try:
        array = np.asarray(lengths)
    except (TypeError, ValueError):
        array = np.empty(0, dtype=object)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(
            f"lengths must be a 1-D sequence of non-negative ints, got {type(lengths).__name__} "
            f"of shape {array.shape} and dtype {array.dtype}"
        )
    if array.size and array.min() < 0:
        raise ValueError(f"lengths must be non-negative, got {int(array.min())}")
    return array.astype(np.int64, copy=False)
