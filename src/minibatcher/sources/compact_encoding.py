"""How :class:`~minibatcher.sources.compact.CompactSequence` encodes one item, and which items
can never change in place (the encodings and the helpers of ``sources/compact.py``)."""

from __future__ import annotations

import contextlib
import pickle
from itertools import repeat
from typing import Any

import numpy as np

MAX_NDIM = 8
"""Arrays with more dimensions than this are pickled."""
PICKLED, RAW, PICKLED5 = 0, 1, 2
"""Item encodings: a protocol-3 pickle, raw array bytes, a protocol-5 pickle (NOTE below)."""
SPLICE_PROTOCOL = 3
SPLICE_HEAD, SPLICE_TAIL = b"\x80\x03(", b"l."
"""NOTE [ One unpickling per batch ]: a protocol-3 pickle is ``PROTO 3``, a body, ``STOP``,
and its body refers to its memo by explicit indices (``BINPUT n``/``BINGET n``: protocol 4+
numbers memo entries implicitly, so their bodies cannot be spliced). The bodies of a batch's
items between ``PROTO 3 MARK`` and ``LIST STOP`` therefore form one pickle of the list of
items: an item's memo entries overwrite earlier items' only after those are built. One
``pickle.loads`` per batch instead of one per item. Items that protocol 3 cannot pickle are
stored with protocol 5 and unpickled one by one."""


def raw_array(item: Any) -> bool:
    return (
        type(item) is np.ndarray
        and item.flags.c_contiguous
        and not item.dtype.hasobject
        and item.ndim <= MAX_NDIM
    )


_SCALARS = frozenset({int, float, complex, bool, str, bytes, type(None), range})
"""Exact types whose values cannot change (immutable, and holding nothing mutable)."""
_NESTING = frozenset({tuple, frozenset})
"""Immutable containers: frozen if what they hold is."""
FROZEN_DEPTH = 4
"""Tuples and frozensets nested deeper than this are treated as mutable (re-encoded)."""


def encode_items(items: list[Any]) -> tuple[list[bytes], bool]:
    """Each item's encoding (a raw array's bytes, else its pickle), and whether all are
    protocol-3 pickles."""
    if not any(map(isinstance, items, repeat(np.ndarray))):  # no arrays: one C loop
        with contextlib.suppress(Exception):  # else item by item, protocol 5 where needed
            return list(map(pickle.dumps, items, repeat(SPLICE_PROTOCOL))), True
    return [item.tobytes() if raw_array(item) else pickle_item(item) for item in items], False


def pickle_item(item: Any) -> bytes:
    try:
        return pickle.dumps(item, SPLICE_PROTOCOL)
    except Exception:  # e.g. an object over 4 GiB, or a __reduce_ex__ needing protocol 4+
        return pickle.dumps(item, pickle.HIGHEST_PROTOCOL)


def pickle_kind(chunk: bytes) -> int:
    """The kind of a pickle made by :func:`pickle_item` (raw arrays' bytes are marked after)."""
    return PICKLED if chunk[1:2] == b"\x03" else PICKLED5


def frozen_flags(items: list[Any]) -> np.ndarray:
    """Which items can never change in place: scalars, tuples and frozensets of them."""
    types = list(map(type, items))
    flags = np.fromiter(map(_SCALARS.__contains__, types), dtype=bool, count=len(items))
    nested = np.fromiter(map(_NESTING.__contains__, types), dtype=bool, count=len(items))
    for i in np.flatnonzero(nested).tolist():
        flags[i] = deeply_frozen(items[i], 1)
    return flags


def deeply_frozen(item: Any, depth: int) -> bool:
    kind = type(item)
    if kind in _SCALARS:
        return True
    if kind in _NESTING and depth <= FROZEN_DEPTH:
        return all(deeply_frozen(x, depth + 1) for x in item)
    return False
