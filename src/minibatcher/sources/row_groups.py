"""Decoded Parquet row groups: a per-process least-recently-used cache, and how a column decodes
(``column_kind``, decided once from the schema and the footers; ``convert``, per row group).

In: a function that decodes row group ``g`` into columns (``decode(g)``). Out:
:meth:`GroupCache.get`, the decoded columns of a row group. State: none that outlives a process
(a forked child starts empty; see :meth:`GroupCache.here`).

Decoding a row group is the costly part of reading Parquet (decompressing and decoding its pages
costs more CPU than serving all of its rows from memory), so each is decoded once and its rows
served from here, copied into each batch. The cache therefore also serves later epochs: data
whose decoded row groups fit in ``size`` is decoded once, in the first epoch. Memory: ``size``
decoded groups per process, plus ``ahead`` being decoded by read-ahead threads.

Read-ahead threads: :meth:`GroupCache.read_ahead` starts one thread per group to decode (at most
``ahead`` at once); it puts the group in the cache and ends, so no thread outlives one decode
and nothing needs closing. Before a fork, the running ones are joined (``os.register_at_fork``):
no child is made while one holds Arrow's or the allocator's locks.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

_NUMERIC = ("int", "uint", "float", "double", "bool", "halffloat")
_NESTED = ("list", "large_list", "fixed_size_list", "struct", "map", "dictionary")

Columns = dict[str, Any]
"""A decoded row group's columns: name -> NumPy array (numeric) or list (other columns)."""


class _Ahead:
    """A row group being decoded ahead: ``done`` is set when ``columns`` (or nothing, if the
    decode failed) is there."""

    __slots__ = ("columns", "done", "slot")

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.columns: Columns | None = None
        self.done = threading.Event()


class _Local:
    """One process's decoded groups (a forked child makes its own)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.cache: collections.OrderedDict[int, Columns] = collections.OrderedDict()
        self.last: tuple[int, Columns] | None = None  # the group served last: no LRU update
        self.ahead: dict[int, _Ahead] = {}  # groups being decoded by read-ahead threads


_READ_AHEAD_THREAD = "minibatcher-read-ahead"
"""The name of the threads that decode row groups ahead (each lives for one decode)."""

_slot = threading.local()
_running: set[threading.Thread] = set()
_running_lock = threading.Lock()


def reader_slot() -> int | tuple[str, int]:
    """Who is reading, for a source that keeps a reader per reader (a file handle is not
    shared by concurrent reads): the calling thread's id, or ``("ahead", k)`` in the k-th
    read-ahead thread (at most ``read_ahead`` of them run at once, so as many readers)."""
    key: int | tuple[str, int] | None = getattr(_slot, "key", None)
    return threading.get_ident() if key is None else key


def _finish_read_ahead() -> None:
    """Before a fork: wait for the read-ahead threads, so that none is decoding (holding
    Arrow's or the allocator's locks) when the child is made. Each ends within one decode."""
    with _running_lock:
        threads = list(_running)
    for thread in threads:
        with contextlib.suppress(RuntimeError):  # one not started yet has nothing running
            thread.join()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_finish_read_ahead)


class GroupCache:
    """The decoded row groups of one source in this process: the ``size`` most recently used.

    ``decode(group)`` reads and decodes a group (in the calling thread; two threads missing the
    same group at once may both decode it, and one result is kept). :meth:`read_ahead` decodes
    groups in background threads (Arrow releases the GIL while it decodes), at most
    ``ahead`` at once: memory is then bounded by ``size + ahead`` decoded groups.
    """

    def __init__(self, decode: Callable[[int], Columns], size: int, ahead: int = 0) -> None:
        self.decode = decode
        self.size = size
        self.ahead = ahead
        self._local = _Local()

    def here(self) -> _Local:
        """This process's cache (a forked worker starts its own: a lock held at fork time must
        not be shared)."""
        local = self._local
        if local.pid != os.getpid():
            local = self._local = _Local()
        return local

    def get(self, group: int) -> Columns:
        """Row group ``group``, decoded: from the cache, or now."""
        local = self.here()
        last = local.last
        if last is not None and last[0] == group:  # the common case: the same group again
            return last[1]
        cache = local.cache
        hit = cache.get(group)
        if hit is None:
            with local.lock:  # a read-ahead may have just put it there
                hit = cache.get(group)
                pending = None if hit is not None else local.ahead.get(group)
            if pending is not None:
                pending.done.wait()  # bounded: the thread ends after one decode, failed or not
                hit = pending.columns  # None if it failed: decoded again here, errors raised
        if hit is None:
            hit = self.decode(group)
            with local.lock:
                self._keep(local, group, hit)
        else:  # no lock on a hit: a group evicted meanwhile is still whole
            with contextlib.suppress(KeyError):
                cache.move_to_end(group)
        local.last = (group, hit)
        return hit

    def _keep(self, local: _Local, group: int, columns: Columns) -> None:
        """Put a decoded group in the cache, evicting the least recently used (lock held)."""
        local.cache[group] = columns
        local.cache.move_to_end(group)
        while len(local.cache) > self.size:
            local.cache.popitem(last=False)

    def read_ahead(self, groups: list[int]) -> None:
        """Start decoding ``groups`` in background threads, those not already decoded or being
        decoded, while fewer than ``ahead`` decode: :meth:`get` then waits for them instead of
        decoding. Each thread decodes one group and ends; a failed decode is left to
        :meth:`get` (which raises its error in the reading thread)."""
        if not self.ahead:
            return
        local = self.here()
        for group in groups:
            with local.lock:
                if group in local.cache or group in local.ahead:
                    continue
                taken = {pending.slot for pending in local.ahead.values()}
                # no more ahead than the cache holds: a group read ahead is not evicted unused
                free = [k for k in range(min(self.ahead, self.size)) if k not in taken]
                if not free:
                    return
                pending = local.ahead[group] = _Ahead(free[0])
            thread = threading.Thread(
                target=self._decode_ahead, args=(local, group, pending),
                name=_READ_AHEAD_THREAD,  # not a daemon: an exit waits for its one decode
            )
            with _running_lock:
                _running.add(thread)
            try:
                thread.start()
            except RuntimeError:  # no thread to be had (interpreter shutting down): get() decodes
                with _running_lock:
                    _running.discard(thread)
                with local.lock:
                    local.ahead.pop(group, None)
                pending.done.set()
                return

    def _decode_ahead(self, local: _Local, group: int, pending: _Ahead) -> None:
        """A read-ahead thread: decode ``group`` into the cache, then end."""
        _slot.key = ("ahead", pending.slot)
        columns = None
        try:
            columns = self.decode(group)
        except Exception:  # get() decodes it again and raises there
            pass
        finally:
            with local.lock:  # cached and no longer pending at once: its slot is free again
                local.ahead.pop(group, None)
                if columns is not None:
                    self._keep(local, group, columns)
            pending.columns = columns
            pending.done.set()
            with _running_lock:
                _running.discard(threading.current_thread())

    def cached_groups(self) -> list[int]:
        """The groups this process holds decoded, least recently used first."""
        return list(self.here().cache)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_local"]
        del state["decode"]  # the owner's bound method: the owner sets it again when unpickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = _Local()


def column_kind(arrow_type: Any, name: str, metas: list[Any]) -> str:
    """How a column batches: "array" (NumPy), "float" (nullable numeric: float64 + NaN),
    "list" (Python values), or "nested" (lists, structs: collated row by row)."""
    text = str(arrow_type)
    if text.startswith(_NESTED):
        return "nested"
    if not text.startswith(_NUMERIC):
        return "list"
    nullable = _may_hold_nulls(name, metas)
    if not nullable:
        return "array"
    return "list" if text == "bool" else "float"


def _may_hold_nulls(name: str, metas: list[Any]) -> bool:
    """From the footers' statistics: True unless every row group says it has no null there."""
    for meta in metas:
        names = [meta.schema.column(j).name for j in range(meta.num_columns)]
        if name not in names:
            return True
        j = names.index(name)
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(j).statistics
            if stats is None or not stats.has_null_count or stats.null_count > 0:
                return True
    return False


def convert(column: Any, kind: str) -> Any:
    """A decoded column as NumPy (numeric; a view of Arrow's buffer where it can be) or a list.
    Batches are copied out of it, so it is never handed to the user."""
    if kind == "array":
        return column.to_numpy()
    if kind == "float":
        return column.to_numpy().astype(np.float64, copy=False)
    return column.to_pylist()
