"""ShardShuffleSampler: shuffle shards, then items within blocks (data read by shard).

In: the sizes of the groups that hold consecutive indices (tar shards, Parquet row groups), a
seed and an epoch. Out: a :class:`ShardShuffleOrder`, computed per slice: the groups in a random
order, their indices concatenated, then cut into blocks of ``buffer_size`` positions, each block
shuffled by its own generator, so an index moves less than ``buffer_size`` places. All a pure
function of ``(seed, epoch)``. State: none; sliced, sharded and resumed like every sampler.

Nothing per index is materialised: the order holds the groups' permutation and their running
sizes (O(groups)), and a slice of positions costs the permutations of the blocks it touches
(O(buffer_size) each, a few kept). So a data set of billions of rows costs the memory of its
row-group table, not of its rows, and a resumed epoch starts at once at any batch.

This is WebDataset's shuffle (shard order plus a buffer) and MosaicML Streaming's block shuffle,
computed on indices in the main process instead of on samples in each worker: the loader still
decides every batch, so the batches are the same whatever the workers, sharding across ranks
takes each position exactly once, and resume is exact. Reads stay near the shards being read: a
block touches at most ``buffer_size / group size + 2`` groups, so a source that decodes a group
at a time (a Parquet row group) keeps few groups cached.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np

from .._seed import BLOCK_STREAM, ORDER_STREAM, generator
from .._typing import IndexArray, IndexOrder
from .base import Sampler, check_positive_int
from .order import permutation

_BLOCKS_KEPT = 4
"""Block permutations an order keeps (consecutive slices reuse the block they are in)."""


class ShardShuffleOrder:
    """One epoch's shard-shuffled order, evaluated per position (an IndexOrder view)."""

    __slots__ = ("_blocks", "_cum", "_epoch", "_firsts", "_seed", "block", "length")

    def __init__(
        self, starts: IndexArray, sizes: IndexArray, block: int, seed: int, epoch: int
    ) -> None:
        rng = generator(seed, epoch, ORDER_STREAM)
        shards = permutation(rng, len(sizes))
        ordered = sizes[shards]
        keep = ordered > 0  # empty groups take no positions
        self._firsts = starts[shards][keep]  # the first index of each group, in epoch order
        self._cum = np.concatenate([[0], np.cumsum(ordered[keep])]).astype(np.int64)
        self.length = int(self._cum[-1])
        self.block = block
        self._seed, self._epoch = seed, epoch
        self._blocks: collections.OrderedDict[int, IndexArray] = collections.OrderedDict()

    def __len__(self) -> int:
        return self.length

    def _block(self, b: int) -> IndexArray:
        """The permutation of block ``b``'s positions (its own generator: any block at once)."""
        perm = self._blocks.get(b)
        if perm is None:
            size = min(self.block, self.length - b * self.block)
            perm = permutation(generator(self._seed, self._epoch, BLOCK_STREAM, b), size)
            self._blocks[b] = perm
            if len(self._blocks) > _BLOCKS_KEPT:
                self._blocks.popitem(last=False)
        return perm

    def take(self, positions: IndexArray) -> IndexArray:
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size and (positions.min() < 0 or positions.max() >= self.length):
            raise IndexError(f"positions must lie in [0, {self.length})")
        if self.block > 1 and positions.size:
            size = self.block
            blocks = positions // size
            shuffled = np.empty_like(positions)
            edges = np.flatnonzero(np.diff(blocks)) + 1  # runs of one block (slices: few)
            for lo, hi in zip([0, *edges.tolist()], [*edges.tolist(), len(positions)],
                              strict=True):
                b = int(blocks[lo])
                shuffled[lo:hi] = b * size + self._block(b)[positions[lo:hi] - b * size]
            positions = shuffled
        group = np.searchsorted(self._cum, positions, side="right") - 1
        return self._firsts[group] + (positions - self._cum[group])

    def slice(self, start: int, stop: int) -> IndexArray:
        return self.take(np.arange(start, min(stop, self.length), dtype=np.int64))

    def __repr__(self) -> str:
        return f"ShardShuffleOrder(len={self.length}, block={self.block})"


class ShardShuffleSampler(Sampler):
    """Indices grouped in shards, shuffled by shard order, then within blocks, each epoch.

    Args:
        shard_sizes: the number of items in each group of consecutive indices (group 0 holds
            indices ``0 .. shard_sizes[0] - 1``, and so on).
        buffer_size: the positions shuffled together (1: shards shuffled, items in order);
            an item moves less than ``buffer_size`` places.
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
        self._cached: tuple[int, int, ShardShuffleOrder] | None = None  # asked more than once

    def __len__(self) -> int:
        return int(self._starts[-1])

    def order(self, seed: int, epoch: int) -> IndexOrder:
        cached = self._cached
        if cached is not None and cached[:2] == (seed, epoch):
            return cached[2]
        order = ShardShuffleOrder(
            self._starts[:-1], self.shard_sizes, self.buffer_size, seed, epoch
        )
        self._cached = (seed, epoch, order)
        return order

    def __repr__(self) -> str:
        return (
            f"ShardShuffleSampler(shards={len(self.shard_sizes)}, n={len(self)}, "
            f"buffer_size={self.buffer_size}, seed={self.seed})"
        )
