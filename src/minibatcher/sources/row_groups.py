"""Decoded Parquet row groups: a per-process least-recently-used cache, and the rows lent.

In: a function that decodes row group ``g`` into columns (``decode(g)``). Out:
:meth:`GroupCache.get`, a :class:`Decoded` row group. State: none that outlives a process (a
forked child starts empty; see :meth:`GroupCache.here`).

Decoding a row group is the costly part of reading Parquet (decompressing and decoding its pages
takes about as long as serving all of its rows from memory), so each is decoded once and served
from here. Memory: ``size`` decoded groups per process, plus the groups of the batches the user
still holds (a batch of consecutive rows is a view of its group).
"""

from __future__ import annotations

import bisect
import collections
import os
import threading
from collections.abc import Callable
from typing import Any

Columns = dict[str, Any]
"""A decoded row group's columns: name -> NumPy array (numeric, writable) or list (others)."""


class Decoded:
    """A decoded row group: its columns, and the row ranges lent out as views.

    A batch of consecutive rows is handed out as views of the columns (no copy). Each range is
    lent once: the user may modify a batch, so rows already lent are never served again from
    the same decoded copy (:meth:`lend` refuses them; the group is then decoded afresh). Reading
    in order lends one growing range; the ranges are kept merged, sorted and disjoint.
    """

    __slots__ = ("_lock", "_starts", "_stops", "columns")

    def __init__(self, columns: Columns) -> None:
        self.columns = columns
        self._starts: list[int] = []
        self._stops: list[int] = []
        self._lock = threading.Lock()

    def lend(self, lo: int, hi: int) -> bool:
        """Mark rows ``lo .. hi - 1`` lent; False (nothing marked) if any of them already is."""
        with self._lock:
            starts, stops = self._starts, self._stops
            i = bisect.bisect_right(starts, lo)
            if (i and stops[i - 1] > lo) or (i < len(starts) and starts[i] < hi):
                return False
            joins_left = bool(i) and stops[i - 1] == lo
            joins_right = i < len(starts) and starts[i] == hi
            if joins_left and joins_right:
                stops[i - 1] = stops[i]
                del starts[i], stops[i]
            elif joins_left:
                stops[i - 1] = hi
            elif joins_right:
                starts[i] = lo
            else:
                starts.insert(i, lo)
                stops.insert(i, hi)
            return True

    def lent(self, lo: int, hi: int) -> bool:
        """Whether any of rows ``lo .. hi - 1`` has been lent (their values may have changed)."""
        starts, stops = self._starts, self._stops
        if not starts:
            return False
        with self._lock:
            i = bisect.bisect_right(starts, lo)
            return (bool(i) and stops[i - 1] > lo) or (i < len(starts) and starts[i] < hi)

class Decoded:
    """A decoded row group: its columns, and the row ranges lent out as views.

    A batch of consecutive rows is handed out as views of the columns (no copy). Each range is
    lent once: the user may modify a batch, so rows already lent are never served again from
    the same decoded copy (:meth:`lend` refuses them; the group is then decoded afresh). Reading
    in order lends one growing range; the ranges are kept merged, sorted and disjoint.
    """

    __slots__ = ("_lock", "_starts", "_stops", "columns")

    def __init__(self, columns: Columns) -> None:
        self.columns = columns
        self._starts: list[int] = []
        self._stops: list[int] = []
        self._lock = threading.Lock()

    def lend(self, lo: int, hi: int) -> bool:
        """Mark rows ``lo .. hi - 1`` lent; False (nothing marked) if any of them already is."""
        with self._lock:
            starts, stops = self._starts, self._stops
            i = bisect.bisect_right(starts, lo)
            if (i and stops[i - 1] > lo) or (i < len(starts) and starts[i] < hi):
                return False
            joins_left = bool(i) and stops[i - 1] == lo
            joins_right = i < len(starts) and starts[i] == hi
            if joins_left and joins_right:
                stops[i - 1] = stops[i]
                del starts[i], stops[i]
            elif joins_left:
                stops[i - 1] = hi
            elif joins_right:
                starts[i] = lo
            else:
                starts.insert(i, lo)
                stops.insert(i, hi)
            return True

    def lent(self, lo: int, hi: int) -> bool:
        """Whether any of rows ``lo .. hi - 1`` has been lent (their values may have changed)."""
        starts, stops = self._starts, self._stops
        if not starts:
            return False
        with self._lock:
            i = bisect.bisect_right(starts, lo)
            return (bool(i) and stops[i - 1] > lo) or (i < len(starts) and starts[i] < hi)

READ_AHEAD_READER = -1
"""The reader key of read-ahead threads (one at a time per process: one reader per file)."""


class _Local:
    """One process's decoded groups and read-ahead (a forked child makes its own)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.cache: collections.OrderedDict[int, Decoded] = collections.OrderedDict()
        self.last: tuple[int, Decoded] | None = None  # the group served last: no LRU update


class GroupCache:
    """The decoded row groups of one source in this process: the ``size`` most recently used.

    ``decode(group)`` reads and decodes a group (in the calling thread)."""

    def __init__(self, decode: Callable[[int], Columns], size: int) -> None:
        self.decode = decode
        self.size = size
        self._local = _Local()

    def here(self) -> _Local:
        """This process's cache (a forked worker starts its own: a lock held at fork time must not
        be shared)."""
        local = self._local
        if local.pid != os.getpid():
            local = self._local = _Local()
        return local

    def get(self, group: int) -> Decoded:
        """Row group ``group``, decoded: from the cache, or now."""
        local = self.here()
        last = local.last
        if last is not None and last[0] == group:  # the common case: the same group again
            return last[1]
        cache = local.cache
        hit = cache.get(group)
        if hit is not None:  # no lock on a hit: a group evicted meanwhile is still whole
            try:
                cache.move_to_end(group)
            except KeyError:
                pass
            local.last = (group, hit)
            return hit
        return self._miss(local, group)

    def _miss(self, local: _Local, group: int) -> Decoded:
        decoded = Decoded(self.decode(group))
        with local.lock:
            local.cache[group] = decoded
            while len(local.cache) > self.size:
                local.cache.popitem(last=False)
            local.last = (group, decoded)
        return decoded

    def fresh(self, group: int) -> Decoded:
        """Row group ``group`` decoded again, replacing the cached copy (whose rows were lent)."""
        decoded = Decoded(self.decode(group))
        local = self.here()
        with local.lock:
            if group in local.cache:
                local.cache[group] = decoded
            if local.last is not None and local.last[0] == group:
                local.last = (group, decoded)
        return decoded

    def cached_groups(self) -> list[int]:
        """The groups this process holds decoded, least recently used first (for tests)."""
        return list(self.here().cache)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_local"]
        del state["decode"]  # the owner's bound method: the owner sets it again when unpickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = _Local()
