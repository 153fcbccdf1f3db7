"""ShardShuffleSampler: shuffle shards, then items within a seeded window (data read by shard).

In: the sizes of the groups that hold consecutive indices (tar shards, Parquet row groups), a
seed and an epoch. Out: an :class:`ArrayOrder` of all indices: the groups in a random order, their
indices concatenated, then shuffled locally: the index at position ``p`` goes where
``p + U(0, buffer_size)`` sorts, so each index moves at most ``buffer_size`` places, as through a
shuffle buffer of that size (but with a bounded reach, and computed in one vectorised sort). All
a pure function of ``(seed, epoch)``. State: none; sliced, sharded and resumed like every sampler.

This is WebDataset's shuffle (shard order plus a buffer), computed on indices in the main process
instead of on samples in each worker: the loader still decides every batch, so the batches are
the same whatever the workers, and resume is exact. Reads stay near the shards being read, so a
source that decodes a group at a time (a Parquet row group) keeps few groups cached.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._seed import ORDER_STREAM, generator
from .._typing import IndexOrder
from .base import ArrayOrder, Sampler, check_positive_int
from .order import permutation


class ShardShuffleSampler(Sampler):
    """Indices grouped in shards, shuffled by shard order, then locally, each epoch.

    Args:
        shard_sizes: the number of items in each group of consecutive indices (group 0 holds
            indices ``0 .. shard_sizes[0] - 1``, and so on).
        buffer_size: how far an item may move from its place in the shard order (1: shards
            shuffled, items in order).
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
        # A local shuffle: position p sorts by p + U(0, buffer), so an index moves at most
        # buffer_size places either way (a shuffle buffer whose reach is bounded: vectorised,
        # and a reader's cache of decoded groups need only cover about two buffers).
        keys = np.arange(len(grouped), dtype=np.float64)
        keys += rng.uniform(0.0, float(self.buffer_size), len(grouped))
        return ArrayOrder(grouped[np.argsort(keys, kind="stable")])

    def __repr__(self) -> str:
        return (
            f"ShardShuffleSampler(shards={len(self.shard_sizes)}, n={len(self)}, "
            f"buffer_size={self.buffer_size}, seed={self.seed})"
        )
