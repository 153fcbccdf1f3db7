"""Rank sharding: each of ``world_size`` ranks takes a disjoint share of every epoch.

In: an epoch's order (an :class:`IndexOrder`, or any iterable for streams and the user's
samplers), the rank and world size. Out: this rank's share, again a view. State: none; the
loader records how far each rank got, and :func:`remaining_after` turns the records of all ranks
into the part of the epoch still to deliver (elastic resume).

Every rank computes the same order (a pure function of ``(seed, epoch)``) and takes the positions
``rank, rank + W, rank + 2W, ...`` of it (interleaved, torch's ``DistributedSampler`` split), so
ranks that advance together have delivered a *prefix* of the epoch between them, and what is left
is (almost) a suffix. When ``n`` does not divide by ``W``:

- ``"pad"`` (default): positions ``n, n+1, ...`` wrap around to the start of the order, the
  fewest needed (at most ``W - 1``), so every rank yields the same number of batches (a rank with
  one batch less would deadlock the next collective);
- ``"drop"``: the last ``n % W`` positions are dropped;
- ``"allow"``: ranks ``< n % W`` get one item more.

Elastic resume (W ranks -> W' ranks). The part of an epoch a job still has to deliver is a
:class:`Domain`: a start position ``P`` of the epoch's order and a short sorted list of positions
beyond ``P`` that were already delivered (by ranks that ran ahead, or batches handed out of
order). It is computed from the saved states of *all* old ranks (:func:`remaining_after`); every
new rank computes the same domain, takes ``RemainderOrder`` of it and shards that over W'. The
domain is itself stored in the checkpoint, so a resumed epoch can be resumed again (W' -> W'').
The reference for this is MosaicML Streaming's elastic resumption.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from .._typing import IndexArray, IndexOrder
from .base import ArrayOrder, RangeOrder
from .batch import batch_count

T = TypeVar("T")

UNEVEN_POLICIES = ("pad", "drop", "allow")


@dataclasses.dataclass(frozen=True, slots=True)
class ShardSpec:
    """This process's place among the ranks: resolved once, at the loader's construction."""

    rank: int
    world_size: int
    uneven: str = "pad"

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(
                f"rank must satisfy 0 <= rank < world_size, got rank={self.rank}, "
                f"world_size={self.world_size}"
            )
        if self.uneven not in UNEVEN_POLICIES:
            raise ValueError(f"uneven must be 'pad', 'drop' or 'allow', got {self.uneven!r}")

    def __str__(self) -> str:
        return f"Shard({self.rank}/{self.world_size}, uneven={self.uneven})"


def shard_count(n: int, rank: int, world_size: int, uneven: str) -> int:
    """How many of ``n`` positions rank ``rank`` gets."""
    if n <= 0:
        return 0
    if uneven == "pad":
        return -(-n // world_size)
    if uneven == "drop":
        return n // world_size
    return len(range(rank, n, world_size))


def shard_length(length: int | None, spec: ShardSpec | None) -> int | None:
    """This rank's share of ``length`` items (unchanged without sharding or without a length)."""
    if spec is None or length is None:
        return length
    return shard_count(length, spec.rank, spec.world_size, spec.uneven)


@dataclasses.dataclass(frozen=True)
class Domain:
    """The positions of an epoch's order still to deliver: ``[start, n)`` minus ``excluded``.

    ``excluded`` is sorted, unique and lies in ``(start, n)``.
    """

    start: int = 0
    excluded: tuple[int, ...] = ()

    @property
    def is_full(self) -> bool:
        """Whether the domain is the whole epoch (nothing delivered yet)."""
        return self.start == 0 and not self.excluded

    def size(self, n: int) -> int:
        """The number of positions left out of an epoch of ``n``."""
        return max(0, n - self.start) - len(self.excluded)

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "excluded": list(self.excluded)}


class RemainderOrder:
    """The positions of ``domain`` of ``base``, renumbered ``0 .. size-1`` (an IndexOrder view).

    Position ``j`` is the ``j``-th position of ``[start, n)`` that is not excluded: found by a
    binary search over the (short) excluded list, never by materialising the rest.
    """

    __slots__ = ("_adjusted", "_start", "base", "length")

    def __init__(self, base: IndexOrder, domain: Domain) -> None:
        self.base = base
        self._start = domain.start
        excluded = np.asarray(domain.excluded, dtype=np.int64)
        # adjusted[k]: how many kept positions precede the k-th excluded one
        self._adjusted = excluded - domain.start - np.arange(len(excluded), dtype=np.int64)
        self.length = domain.size(len(base))

    def __len__(self) -> int:
        return self.length

    def positions(self, offsets: IndexArray) -> IndexArray:
        """The base positions of ``offsets`` (monotone: larger offsets, larger positions)."""
        offsets = np.asarray(offsets, dtype=np.int64)
        if not len(self._adjusted):
            return offsets + self._start
        return offsets + self._start + np.searchsorted(self._adjusted, offsets, side="right")

    def take(self, positions: IndexArray) -> IndexArray:
        return self.base.take(self.positions(positions))

    def slice(self, start: int, stop: int) -> IndexArray:
        return self.take(np.arange(start, min(stop, self.length), dtype=np.int64))

    def __repr__(self) -> str:
        return f"RemainderOrder(len={self.length}, start={self._start}, of={self.base!r})"


class ShardedOrder:
    """Rank ``rank``'s share of ``base``: positions ``rank, rank + W, ...`` (an IndexOrder view)."""

    __slots__ = ("base", "length", "spec")

    def __init__(self, base: IndexOrder, spec: ShardSpec) -> None:
        self.base = base
        self.spec = spec
        self.length = shard_count(len(base), spec.rank, spec.world_size, spec.uneven)

    def __len__(self) -> int:
        return self.length

    def coordinates(self, positions: IndexArray) -> IndexArray:
        """Positions of the base order for local ``positions`` (pad positions wrapped)."""
        coords = np.asarray(positions, dtype=np.int64) * self.spec.world_size + self.spec.rank
        n = len(self.base)
        if self.spec.uneven == "pad" and coords.size and coords.max() >= n:
            coords = np.where(coords >= n, (coords - n) % max(n, 1), coords)
        return coords

    def take(self, positions: IndexArray) -> IndexArray:
        """The indices at this rank's ``positions``."""
        return self.base.take(self.coordinates(positions))

    def slice(self, start: int, stop: int) -> IndexArray:
        """The indices at this rank's positions ``start:stop``."""
        return self.take(np.arange(start, min(stop, self.length), dtype=np.int64))

    def __repr__(self) -> str:
        return f"ShardedOrder({self.spec}, len={self.length}, of={self.base!r})"


READ_AHEAD = 1 << 16
"""Positions a lazily computed order evaluates at once (512 KiB of int64)."""


class ReadAhead:
    """Serves consecutive slices of a computed order from chunks of :data:`READ_AHEAD` positions.

    A lazy permutation costs a few NumPy calls per evaluation whatever its size: evaluated one
    batch of 64 at a time it spends most of its time in call overhead; evaluated 65,536 at a
    time it costs about 2x a materialised permutation per index, with O(chunk) memory.
    """

    __slots__ = ("_cache", "_first", "base", "chunk")

    def __init__(self, base: IndexOrder, chunk: int = READ_AHEAD) -> None:
        self.base = base
        self.chunk = chunk
        self._first = 0
        self._cache = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.base)

    def slice(self, start: int, stop: int) -> IndexArray:
        stop = min(stop, len(self.base))
        first = self._first
        if not (first <= start and stop <= first + len(self._cache)):
            self._first = first = start
            self._cache = self.base.slice(start, start + max(self.chunk, stop - start))
        return self._cache[start - first : stop - first]

    def take(self, positions: IndexArray) -> IndexArray:
        return self.base.take(positions)

    def __repr__(self) -> str:
        return f"ReadAhead({self.base!r}, chunk={self.chunk})"


def shard_order(base: IndexOrder, spec: ShardSpec | None, domain: Domain | None) -> IndexOrder:
    """``base`` restricted to ``domain`` (if any), then sharded by ``spec`` (if any); an order
    computed per position (not an array or a range) is then read ahead in chunks."""
    order = base
    if domain is not None and not domain.is_full:
        order = RemainderOrder(order, domain)
    if spec is not None:
        order = ShardedOrder(order, spec)
    if not isinstance(base, (ArrayOrder, RangeOrder)):
        order = ReadAhead(order)
    return order


def shard_iter(items: Iterable[T], spec: ShardSpec) -> Iterator[T]:
    """Rank ``spec.rank``'s share of an iterable of unknown length, read in groups of W.

    The same rule as :class:`ShardedOrder`: under "pad" the last, partial group is completed with
    the first items of the stream (so only the first W items are held), under "drop" it is
    dropped, under "allow" the ranks past its end get nothing.
    """
    rank, world, uneven = spec.rank, spec.world_size, spec.uneven
    it = iter(items)
    first: list[T] | None = None
    while group := list(itertools.islice(it, world)):
        if first is None:
            first = group
        if len(group) == world:
            yield group[rank]
            continue
        if rank < len(group):
            if uneven != "drop":
                yield group[rank]
        elif uneven == "pad":
            yield first[(rank - len(group)) % len(first)]
        return


@dataclasses.dataclass(frozen=True)
class RankProgress:
    """How far one old rank got in an epoch: batches ``< next_batch`` and ``above`` delivered
    (``finished``: the rank delivered its whole share and moved on to the next epoch)."""

    rank: int
    next_batch: int
    above: tuple[int, ...] = ()
    finished: bool = False


def remaining_after(
    n: int,
    domain: Domain,
    world_size: int,
    uneven: str,
    batch_size: int,
    drop_last: bool,
    progress: Sequence[RankProgress],
) -> Domain:
    """The domain still to deliver after ``progress`` of all ranks of a world of ``world_size``.

    ``n`` is the length of the epoch's order, ``domain`` the part the old world was splitting,
    ``batch_size``/``drop_last`` those of the old ranks. A pad position (a repeat) that reached
    the user counts as a delivery of the item it repeats, so that item is not delivered again.
    Items that the old world would have dropped (``drop``, ``drop_last``) and did not deliver
    stay in the domain; the new world drops by its own rule.

    Memory and time are proportional to how far the ranks are apart (and the batches delivered
    out of order), never to the epoch: the common prefix is described by one integer.
    """
    base = RemainderOrder(_Length(n), domain)
    size = len(base)
    counts = [shard_count(size, p.rank, world_size, uneven) for p in progress]
    dones = []
    for p, count in zip(progress, counts, strict=True):
        batches = batch_count(count, batch_size, drop_last) if p.finished else p.next_batch
        dones.append(min(batches * batch_size, count))
    # coordinates below first_open are all delivered: each rank's first undelivered one
    first_open = min(
        [d * world_size + p.rank for p, d in zip(progress, dones, strict=True)] + [size]
    )
    delivered: list[IndexArray] = []
    for p, count, done in zip(progress, counts, dones, strict=True):
        lowest = max(0, -(-(first_open - p.rank) // world_size))  # first local position >= it
        extra = [np.arange(lowest, done, dtype=np.int64)]
        for seq in p.above:
            lo = seq * batch_size
            extra.append(np.arange(lo, min(lo + batch_size, count), dtype=np.int64))
        delivered.append(np.concatenate(extra) * world_size + p.rank)
    coords = np.concatenate(delivered) if delivered else np.empty(0, dtype=np.int64)
    if size:
        coords = np.where(coords >= size, (coords - size) % size, coords)  # pad repeats
    coords = np.unique(coords[coords >= first_open])
    # a repeat may have delivered the first open coordinates too: skip their run
    run = int(np.searchsorted(coords - np.arange(len(coords)), first_open, side="right"))
    first_open, coords = first_open + run, coords[run:]
    if first_open >= size:
        return Domain(start=n)
    start = int(base.positions(np.array([first_open], dtype=np.int64))[0])
    newly = base.positions(coords)
    old = np.asarray(domain.excluded, dtype=np.int64)
    excluded = np.union1d(old[old > start], newly)
    return Domain(start=start, excluded=tuple(int(x) for x in excluded))


class _Length:
    """A stand-in order of ``n`` positions, for computing with positions only."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def take(self, positions: IndexArray) -> IndexArray:
        return positions

    def slice(self, start: int, stop: int) -> IndexArray:
        return np.arange(start, min(stop, self.n), dtype=np.int64)
