"""ShardShuffleSampler: shuffle shards, then items through a seeded buffer (data read by shard).

In: the sizes of the groups that hold consecutive indices (tar shards, Parquet row groups), a
seed and an epoch. Out: an :class:`ArrayOrder` of all indices: the groups in a random order, their
indices concatenated and passed through a shuffle buffer of ``buffer_size`` (each output is drawn
uniformly from the buffer, which the next index then refills), all a pure function of
``(seed, epoch)``. State: none; sliced, sharded and resumed like every sampler here.

This is WebDataset's shuffle (shard order plus a buffer), computed on indices in the main process
instead of on samples in each worker: the loader still decides every batch, so the batches are
the same whatever the workers, and resume is exact. Reads stay near the shards being read, so a
source that decodes a group at a time (a Parquet row group) keeps few groups cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np

from .._seed import ORDER_STREAM, generator
from .._typing import IndexOrder
from ..sources import shuffle_buffer
from .base import ArrayOrder, Sampler, check_positive_int
from .order import permutation


class ShardShuffleSampler(Sampler):
    """Indices grouped in shards, shuffled by shard order plus a seeded buffer each epoch.

    Args:
        shard_sizes: the number of items in each group of consecutive indices (group 0 holds
            indices ``0 .. shard_sizes[0] - 1``, and so on).
        buffer_size: items held by the shuffle buffer (1: shards shuffled, items in order).
        seed: overrides the loader's seed when set.
    """

    def __init__(
        self, shard_sizes: Sequence[int] | np.ndarray, buffer_size: int = 1000,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed)
        sizes = np.asarray(shard_sizes)
        if sizes.ndim != 1 or (sizes.size and (sizes.dtype.kind not in "iu" or sizes.min() < 0)):
            raise ValueError(
                f"shard_sizes must be a 1-D sequence of non-negative ints, got {shard_sizes!r}"
            )
        self.shard_sizes = sizes.astype(np.int64)
        self.buffer_size = int(check_positive_int(buffer_size, "buffer_size") or 1)
        self._starts = np.concatenate([[0], np.cumsum(self.shard_sizes)]).astype(np.int64)
        self._cached: tuple[int, int, ArrayOrder] | None = None  # a loader asks more than once

    def __len__(self) -> int:
        return int(self._starts[-1])

    def order(self, seed: int, epoch: int) -> IndexOrder:
        cached = self._cached
        if cached is not None and cached[:2] == (seed, epoch):
            return cached[2]
        order = self._draw(seed, epoch)
        self._cached = (seed, epoch, order)
        return order

    def _draw(self, seed: int, epoch: int) -> ArrayOrder:
        rng = generator(seed, epoch, ORDER_STREAM)
        shards: list[int] = permutation(rng, len(self.shard_sizes)).tolist()
        starts, stops = self._starts[:-1], self._starts[1:]
        pieces = [np.arange(starts[s], stops[s], dtype=np.int64) for s in shards]
        grouped = np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)
        if self.buffer_size <= 1:
            return ArrayOrder(grouped)
        pairs = shuffle_buffer(zip(grouped.tolist(), repeat(None)), self.buffer_size, rng)
        drawn = np.fromiter((i for i, _ in pairs), dtype=np.int64, count=len(grouped))
        return ArrayOrder(drawn)

    def __repr__(self) -> str:
        return (
            f"ShardShuffleSampler(shards={len(self.shard_sizes)}, n={len(self)}, "
            f"buffer_size={self.buffer_size}, seed={self.seed})"
        )
