"""Compact storage for a list of records: rows of scalars with the same layout.

The commonest large Python lists in training code are rows such as
``{"id": 7, "label": 3, "weight": 0.5, "path": "a/b.png"}``, ``("a/b.png", 3)``, or plain
file names. :class:`CompactRecords` stores them column by column, in objects that forked workers
only ever read (see ``sources/compact.py`` for why a list of objects is not read as it is):

- ``int`` (within int64), ``float`` and ``bool`` columns as int64, float64 and bool arrays;
- ``str`` and ``bytes`` columns as one ``str`` (or ``bytes``) holding all the rows' values back
  to back, and a NumPy array of offsets (one object: a worker that slices it writes only to
  its header's page);
- a column that is ``None`` in every row as nothing at all.

Three row layouts qualify: every item exactly a ``dict`` with the same ``str`` keys in the same
order; every item exactly a ``tuple`` of the same length (at most :data:`TUPLE_WIDTH`); every
item a scalar (one column). And every column must hold values of one of these exact types
(:meth:`CompactRecords.encode` returns None otherwise, and the list is stored as pickles). A
decoded row is a new dict (or tuple) equal to the original, with the same key order and exact
value types (``True`` stays a bool, ``1`` an int, ``-0.0`` and NaN payloads keep their bits).

Why a layout of its own: every step is a C loop over a column instead of a pickle per item.
Encoding (made in the background under fork, before the workers start under spawn) is about
2-2.5x faster than pickling each row, and decoding a batch is a gather per column and a C loop
per column to fill the rows, about as fast as unpickling the batch in one piece
(``benchmarks/compact_list.py``).

Exact refresh (NOTE [ Compact copies stay current ] in ``sources/compact.py``):
:meth:`CompactRecords.refresh` checks rows that cannot change in place (tuples, scalars) by
identity, ~10 ns a row; dict rows can, so they are re-encoded before each epoch. The encoding
is the complete content of every row, so a value set in place (``data[i]["label"] = 3``), a key
added or removed, or a row replaced is always seen, at the encoding's cost: a C loop per column,
about 0.1-0.3 us per value.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from itertools import repeat
from operator import is_not, itemgetter, setitem
from typing import Any

import numpy as np

NUMERIC_DTYPES: dict[type, type] = {int: np.int64, float: np.float64, bool: np.bool_}
"""Exact value type -> the NumPy dtype its column is stored as."""
NONE_TYPE = type(None)
SCALAR_TYPES = frozenset({*NUMERIC_DTYPES, str, bytes, NONE_TYPE})
"""The exact types a column may hold."""


class Column:
    """One key's values: a NumPy array (numbers), or one ``str``/``bytes`` holding every row's
    value back to back with the offsets where each starts (strings and bytes)."""

    __slots__ = ("kind", "offsets", "values")

    def __init__(self, kind: type, values: Any, offsets: np.ndarray | None) -> None:
        self.kind = kind
        self.values = values  # a NumPy array, or one str or bytes object
        self.offsets = offsets  # row i's value is values[offsets[i]:offsets[i + 1]]

    def take(self, positions: np.ndarray, count: int) -> list[Any]:
        """The values at ``positions`` (non-negative, in range) as Python objects."""
        if self.offsets is None:
            if self.kind is NONE_TYPE:
                return [None] * count
            return self.values[positions].tolist()
        offsets, values = self.offsets, self.values
        starts = offsets[:-1][positions].tolist()
        stops = offsets[1:][positions].tolist()
        return [values[a:b] for a, b in zip(starts, stops, strict=True)]  # faster than map(slice)

    @property
    def nbytes(self) -> int:
        """Bytes held (values and offsets)."""
        held = self.values.nbytes if isinstance(self.values, np.ndarray) else len(self.values)
        return held + (0 if self.offsets is None else self.offsets.nbytes)

    def __getstate__(self) -> tuple[type, Any, np.ndarray | None]:
        return (self.kind, self.values, self.offsets)

    def __setstate__(self, state: tuple[type, Any, np.ndarray | None]) -> None:
        self.kind, self.values, self.offsets = state


def encode_column(values: list[Any]) -> Column | None:
    """``values`` as a column, or None when they are not all of one supported exact type."""
    kinds = set(map(type, values))
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    n = len(values)
    if kind in NUMERIC_DTYPES:
        try:
            return Column(kind, np.fromiter(values, NUMERIC_DTYPES[kind], n), None)
        except OverflowError:  # an int beyond int64
            return None
    if kind is NONE_TYPE:
        return Column(kind, None, None)
    if kind is str:
        joined: str | bytes = "".join(values)
    elif kind is bytes:
        joined = b"".join(values)
    else:
        return None
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.fromiter(map(len, values), np.int64, n), out=offsets[1:])
    return Column(kind, joined, offsets)


TUPLE_WIDTH = 64
"""Tuples wider than this are not stored by columns (a column each would not pay)."""


def encode_columns(items: Sequence[Any]) -> tuple[type, tuple[str, ...], list[Column]] | None:
    """The row type, keys (dict rows) and columns of ``items``, or None if they are not
    records (module doc)."""
    if not len(items):
        return None
    types = set(map(type, items))
    if len(types) != 1:
        return None
    row_type = types.pop()
    first = items[0]
    values = first.values() if row_type is dict else first if row_type is tuple else (first,)
    if not set(map(type, values)) <= SCALAR_TYPES:  # rejected at once, on the first row
        return None
    if row_type is dict:
        keys = tuple(first)
        if not keys or set(map(type, keys)) != {str}:
            return None
        if not all(map(keys.__eq__, map(tuple, items))):
            return None
        getters = list(map(itemgetter, keys))
    elif row_type is tuple:
        widths = set(map(len, items))
        width = widths.pop()
        if widths or not 0 < width <= TUPLE_WIDTH:
            return None
        keys, getters = (), list(map(itemgetter, range(width)))
    else:  # rows that are scalars: one column
        column = encode_column(list(items))
        return None if column is None else (NONE_TYPE, (), [column])
    columns = []
    for getter in getters:
        column = encode_column(list(map(getter, items)))
        if column is None:
            return None
        columns.append(column)
    return row_type, keys, columns


class CompactRecords:
    """A read-only list of records (module doc) stored column by column."""

    def __init__(
        self, row_type: type, keys: tuple[str, ...], columns: list[Column], items: Sequence[Any]
    ) -> None:
        self.row_type = row_type  # dict, tuple, or NoneType for rows that are scalars
        self.keys = keys
        self.columns = columns
        self.length = len(items)
        self.all_none = all(column.kind is NONE_TYPE for column in columns)  # nothing to gather
        # Rows that cannot change in place are checked by identity (main process only).
        self._refs = list(items) if row_type is not dict else []

    @classmethod
    def encode(cls, items: Sequence[Any]) -> CompactRecords | None:
        """The compact copy of ``items``, or None if they are not records."""
        encoded = encode_columns(items)
        return None if encoded is None else cls(*encoded, items)

    def refresh(self, items: Sequence[Any]) -> bool:
        """Bring the copy up to date with ``items`` (module doc: exact); False if they are no
        longer records."""
        refs = self._refs
        if refs and len(refs) == len(items) and not any(map(is_not, items, refs)):
            return True  # the same immutable rows (scalars, tuples of scalars)
        encoded = encode_columns(items)
        if encoded is None:
            return False
        self.__init__(*encoded, items)  # type: ignore[misc]
        return True

    def __len__(self) -> int:
        return self.length

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """The rows at ``indices`` (see :meth:`rows`)."""
        return self.rows(np.asarray(indices, dtype=np.int64))

    def rows(self, positions: np.ndarray) -> list[Any]:
        """The rows at ``positions`` (an int array; negative ones count from the end): a
        gather per column, then the rows made from the columns' values (for dicts, each
        column's values set into the rows: a C loop per column, faster than one
        ``dict(zip(keys, row))`` per row). Out of range: IndexError (NumPy's, from the
        gather)."""
        count = len(positions)
        n = self.length
        if self.all_none and count and not -n <= min(positions) <= max(positions) < n:
            raise IndexError(f"index out of range for a sequence of length {self.length}")
        if self.row_type is not dict:
            values = [column.take(positions, count) for column in self.columns]
            return values[0] if self.row_type is NONE_TYPE else list(zip(*values, strict=True))
        rows: list[dict[str, Any]] = [{} for _ in range(count)]
        for key, column in zip(self.keys, self.columns, strict=True):
            deque(map(setitem, rows, repeat(key), column.take(positions, count)), maxlen=0)
        return rows

    def __getitem__(self, index: int) -> Any:
        return self.__getitems__([index])[0]

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_refs"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._refs = []

    def __repr__(self) -> str:
        size = sum(column.nbytes for column in self.columns)
        rows: dict[type, str] = {dict: f"keys={list(self.keys)}", tuple: "tuples"}
        layout = rows.get(self.row_type, "scalars")
        return f"CompactRecords(len={self.length}, {layout}, bytes={size})"
