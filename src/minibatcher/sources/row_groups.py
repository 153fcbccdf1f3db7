"""Decoded Parquet row groups: a per-process least-recently-used cache, and how a column decodes
(``column_kind``, decided once from the schema and the footers; ``convert``, per row group).

In: a function that decodes row group ``g`` into columns (``decode(g)``). Out:
:meth:`GroupCache.get`, the decoded columns of a row group. State: none that outlives a process
(a forked child starts empty; see :meth:`GroupCache.here`).

Decoding a row group is the costly part of reading Parquet (decompressing and decoding its pages
costs more CPU than serving all of its rows from memory), so each is decoded once and its rows
served from here, copied into each batch. The cache therefore also serves later epochs: data
whose decoded row groups fit in ``size`` is decoded once, in the first epoch. Memory: ``size``
decoded groups per process.
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


class _Local:
    """One process's decoded groups (a forked child makes its own)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.cache: collections.OrderedDict[int, Columns] = collections.OrderedDict()
        self.last: tuple[int, Columns] | None = None  # the group served last: no LRU update


class GroupCache:
    """The decoded row groups of one source in this process: the ``size`` most recently used.

    ``decode(group)`` reads and decodes a group (in the calling thread; two threads missing the
    same group at once may both decode it, and one result is kept)."""

    def __init__(self, decode: Callable[[int], Columns], size: int) -> None:
        self.decode = decode
        self.size = size
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
            hit = self.decode(group)
            with local.lock:
                cache[group] = hit
                while len(cache) > self.size:
                    cache.popitem(last=False)
        else:  # no lock on a hit: a group evicted meanwhile is still whole
            with contextlib.suppress(KeyError):
                cache.move_to_end(group)
        local.last = (group, hit)
        return hit

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
