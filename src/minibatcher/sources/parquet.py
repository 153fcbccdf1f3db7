"""Parquet on disk: a ``pyarrow.parquet.ParquetFile``, a ``pyarrow.dataset`` of Parquet files,
or paths, read by row with random access, never materialised whole.

In: indices. Out: a batch ``{column: values}`` as for an in-memory Arrow table (numeric columns
as NumPy arrays, nullable numeric ones as float64 with NaN for nulls, others as Python lists);
an item is one row ``{column: value}``. State: none.

What the files say is enough to index them: the footer of each file gives its row groups and
their row counts, read once in the main process at construction. A batch's rows are grouped by
row group; each needed row group is read and decoded whole (the unit Parquet compresses), kept in
a small least-recently-used cache of ``cache_row_groups`` decoded groups per process
(``row_groups.py``), and the rows copied from it: consecutive rows of one group (reading in
order) as one slice per column, others gathered. Memory is bounded by that cache, whatever the
file's size (plus the group being read, and ``read_ahead`` groups being decoded).

Reading in order, a batch that reaches a new group starts decoding the ``read_ahead`` groups
after it in background threads (``GroupCache.read_ahead``: one thread per decode, ending with
it), while this group's batches are served: Arrow decodes without the GIL, so decoding overlaps
serving even with ``num_workers=0``. Shuffled reads (non-consecutive rows) guess nothing.

Workers open the files themselves: a pickled source carries paths (and the pyarrow filesystem),
never open readers. A ``ParquetFile`` object has no path, so its reader is shared by threads and
forked workers (both safe: reads are positioned) but cannot be sent to spawned workers (an error
says to pass the path instead).

Random access costs a row group decode per miss: with ``shuffle=True`` over a file of many row
groups most batches touch many groups. ``streaming=True`` keeps the reads local instead: the
loader's shuffle then puts the row groups in a random order and shuffles rows within blocks of
``shuffle_buffer`` positions (:class:`~minibatcher.samplers.ShardShuffleSampler`, computed per
batch, nothing per row materialised), and a cache of ``shuffle_buffer / rows per group + 2``
groups decodes each group once per epoch.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np

from .._typing import Allocator, IndexArray
from .base import IndexedSource
from .parquet_files import Readers, files_of
from .row_groups import Columns, GroupCache, column_kind, convert, reader_slot


class ParquetSource(IndexedSource):
    """Rows of Parquet files read by row group, with a bounded cache of decoded groups.

    Args:
        data: a ``pyarrow.parquet.ParquetFile``, a ``pyarrow.dataset`` dataset of Parquet files,
            a path or a list of paths.
        columns: the columns to read (default: all of the first file's).
        cache_row_groups: decoded row groups kept per process (the memory bound).
        read_ahead: row groups decoded ahead, in background threads, when reading in order
            (0: none; at most ``cache_row_groups``).
        streaming: read the rows as a stream of row groups: with the loader's
            ``shuffle=True``, each epoch puts the row groups in a random order and shuffles
            the rows within blocks of ``shuffle_buffer`` positions
            (:class:`~minibatcher.samplers.ShardShuffleSampler`), computed per batch: memory
            does not grow with the number of rows, and reads stay within a few row groups.
            Without it, ``shuffle=True`` is a uniform shuffle of all rows.

    Attributes:
        row_group_sizes: the row count of every row group, in row order (files in order).
        shard_sizes: ``row_group_sizes`` with ``streaming=True`` (the groups the loader's
            shuffle keeps together), else None.
    """

    batched = True

    def __init__(
        self,
        data: Any,
        *,
        columns: Iterable[str] | None = None,
        cache_row_groups: int = 8,
        streaming: bool = False,
        read_ahead: int = 1,
    ) -> None:
        super().__init__(data)
        if isinstance(cache_row_groups, bool) or not isinstance(cache_row_groups, int) or (
            cache_row_groups < 1
        ):
            raise ValueError(f"cache_row_groups must be a positive int, got {cache_row_groups!r}")
        if not isinstance(streaming, bool):
            raise ValueError(f"streaming must be a bool, got {streaming!r}")
        if isinstance(read_ahead, bool) or not isinstance(read_ahead, int) or read_ahead < 0:
            raise ValueError(f"read_ahead must be a non-negative int, got {read_ahead!r}")
        self.read_ahead = read_ahead
        self.cache_row_groups = cache_row_groups
        self.streaming = streaming
        self._handle, self._paths, self._filesystem = files_of(data)
        self._readers = Readers()
        metas = [self._open(i).metadata for i in range(len(self._paths))]
        schema = self._open(0).schema_arrow
        self.columns = list(schema.names) if columns is None else list(columns)
        missing = [c for c in self.columns if c not in schema.names]
        if missing:
            raise ValueError(f"columns must be columns of the files, got unknown {missing}")
        groups = [(f, g, m.row_group(g).num_rows) for f, m in enumerate(metas)
                  for g in range(m.num_row_groups)]
        self._groups = [(f, g) for f, g, _ in groups]
        self.row_group_sizes = [rows for _, _, rows in groups]
        self.shard_sizes = self.row_group_sizes if streaming else None
        self._starts = np.concatenate([[0], np.cumsum(self.row_group_sizes)]).astype(np.int64)
        self._bounds: list[int] = self._starts.tolist()
        self._kinds = {name: column_kind(schema.field(name).type, name, metas)
                       for name in self.columns}
        self.batched = not any(kind == "nested" for kind in self._kinds.values())
        self._cache = GroupCache(self._decode, cache_row_groups, read_ahead)
        self._all_arrays = all(kind in ("array", "float") for kind in self._kinds.values())
        self._hot: _Hot = _NO_GROUP

    def __len__(self) -> int:
        return int(self._starts[-1])

    def fetch_items(self, indices: IndexArray) -> list[Any]:
        batch = self.fetch_batch(indices)
        return [{name: col[i] for name, col in batch.items()} for i in range(len(indices))]

    def fetch_batch(self, indices: IndexArray, allocate: Allocator | None = None) -> Any:
        """The batch of rows ``indices``: consecutive rows of one row group are copied from a
        slice of it, other rows gathered, from the decoded groups they are in."""
        if not len(indices):
            return self._gather(indices, allocate)
        hot = self._hot  # the group last read: (start, stop, group, row numbers, columns)
        if hot[0] <= indices.item(0) < hot[1]:
            return self._read(indices, hot, allocate)
        return self._enter(indices, allocate)

    def _read(self, indices: IndexArray, hot: _Hot, allocate: Allocator | None) -> Any:
        """The batch, ``hot`` being the group of its first row."""
        first, n = indices.item(0), len(indices)
        start, stop, group, rows, columns = hot
        lo, hi, last = first - start, first - start + n, indices.item(-1)
        if (
            first + n <= stop
            and last == first + n - 1
            and (n < 3 or _consecutive(indices, rows or self._numbers(hot), lo, hi))
        ):  # consecutive: rows lo .. hi - 1 of the group (reading in order: the common case)
            if columns is None:
                columns = self._columns(hot)
            if allocate is None and self._all_arrays:  # copies: the batch is the user's
                return {name: column[lo:hi].copy() for name, column in columns.items()}
            return self._slice_one(columns, lo, hi, allocate)
        local = indices - start
        # one reduction checks both ends: a negative offset is huge as unsigned
        if int(local.view(np.uint64).max()) < stop - start:
            return self._gather_one(group, local, allocate)
        batch = self._gather(indices, allocate)
        if self.read_ahead and last >= stop:  # ran into a later group: read ahead?
            self._read_ahead(None, indices)
        return batch

    def _enter(self, indices: IndexArray, allocate: Allocator | None) -> Any:
        """:meth:`fetch_batch` of a batch whose first row is in another group than the last
        batch's: that group becomes the one read; then perhaps the next are read ahead."""
        before, hot = self._hot, self._group_of(indices.item(0))
        self._hot = hot
        batch = self._read(indices, hot, allocate)
        if self.read_ahead:
            self._read_ahead((before, hot), indices)
        return batch

    def _read_ahead(self, entered: tuple[_Hot, _Hot] | None, indices: IndexArray) -> None:
        """After a batch that reached a new group: if it reads in order (consecutive rows;
        having ``entered`` a new group ``(before, now)``: from the group before it, from
        where the one before ended, or from row 0), decode the ``read_ahead`` groups after
        its last row's group in background threads: the next batches need them. Other reads
        (shuffles) guess nothing."""
        first, last, n = indices.item(0), indices.item(-1), len(indices)
        if last != first + n - 1:
            return
        if entered is not None:
            before, now = entered
            if not (now[2] == before[2] + 1 or first in (0, before[1])):
                return
        after = bisect.bisect_right(self._bounds, last)  # the group after the last row's
        self._cache.read_ahead(list(range(after, min(after + self.read_ahead, len(self._groups)))))

    def _gather(self, indices: IndexArray, allocate: Allocator | None) -> Any:
        """Rows of any groups: each group's rows gathered from it into their places."""
        n = len(indices)
        groups = np.searchsorted(self._starts, indices, side="right") - 1
        out: dict[str, Any] = {}
        for name, kind in self._kinds.items():
            out[name] = None if kind in ("array", "float") else [None] * n
        for group in np.unique(groups).tolist():
            where = np.flatnonzero(groups == group)
            local = indices[where] - self._starts[group]
            for name, column in self._cache.get(group).items():
                if isinstance(column, np.ndarray):
                    if out[name] is None:
                        shape = (n, *column.shape[1:])
                        out[name] = np.empty(shape, column.dtype) if allocate is None else (
                            allocate(shape, column.dtype)
                        )
                    out[name][where] = column[local]
                else:
                    target = out[name]
                    for position, row in zip(where.tolist(), local.tolist(), strict=True):
                        target[position] = column[row]
        return out

    def _group_of(self, row: int) -> _Hot:
        """The :data:`_Hot` tuple of the group holding ``row``, its row numbers' bytes (see
        :func:`_consecutive`) and columns to be filled in by :meth:`_numbers` and
        :meth:`_columns` when first needed, so shuffled reads that move between groups at
        every batch never pay for them."""
        group = bisect.bisect_right(self._bounds, row) - 1
        return self._bounds[group], self._bounds[group + 1], group, b"", None

    def _numbers(self, hot: _Hot) -> bytes:
        """The bytes of the int64 row numbers of group ``hot`` from its start, kept with it
        (made once per group read in order; the tuple is replaced whole, so a thread reading
        another group meanwhile never sees one group's numbers with another's bounds)."""
        start, stop, group, _, columns = hot
        numbers = np.arange(start, min(stop, start + _ROWS_COMPARED), dtype=np.int64).tobytes()
        if self._hot is hot:
            self._hot = (start, stop, group, numbers, columns)
        return numbers

    def _columns(self, hot: _Hot) -> Columns:
        """The decoded columns of group ``hot``, kept with it while it is the group read (so
        that reading it in order costs no cache look-up per batch)."""
        start, stop, group, numbers, _ = hot
        columns = self._cache.get(group)
        if self._hot is hot:
            self._hot = (start, stop, group, numbers, columns)
        return columns

    def _slice_one(
        self, columns: Columns, lo: int, hi: int, allocate: Allocator | None
    ) -> dict[str, Any]:
        """Rows ``lo .. hi - 1`` of one group's ``columns``: copies of slices (a memcpy;
        copies, so that the batch is the user's and the cache serves later epochs)."""
        out: dict[str, Any] = {}
        for name, column in columns.items():
            if type(column) is list:
                out[name] = column[lo:hi]
            elif allocate is None:
                out[name] = column[lo:hi].copy()
            else:
                out[name] = allocate((hi - lo, *column.shape[1:]), column.dtype)
                out[name][...] = column[lo:hi]
        return out

    def _gather_one(
        self, group: int, local: IndexArray, allocate: Allocator | None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, column in self._cache.get(group).items():
            if isinstance(column, np.ndarray):
                if allocate is None:
                    out[name] = column[local]
                else:
                    out[name] = allocate((len(local), *column.shape[1:]), column.dtype)
                    np.take(column, local, axis=0, out=out[name])
            else:
                out[name] = [column[i] for i in local.tolist()]
        return out

    def _decode(self, group: int) -> Columns:
        """Row group ``group`` read and decoded into columns (NumPy arrays or lists). In the
        reading thread, Arrow decodes the columns in parallel on its own threads (the GIL is
        free meanwhile); in a read-ahead thread, which already runs beside the reading one,
        in that thread alone (Arrow's threads cost ~20% more CPU for a row group)."""
        file_index, row_group = self._groups[group]
        reader = self._open(file_index)
        threads = not isinstance(reader_slot(), tuple)
        if self._handle is not None:  # the user's one reader: shared, so reads take turns
            with _HANDLE_LOCK:
                table = reader.read_row_group(row_group, columns=self.columns, use_threads=threads)
        else:
            table = reader.read_row_group(row_group, columns=self.columns, use_threads=threads)
        return {name: convert(table.column(name), self._kinds[name]) for name in self.columns}

    def _open(self, file_index: int) -> Any:
        """This process's reader of file ``file_index`` (opened on first use)."""
        if self._handle is not None:
            return self._handle
        return self._readers.here().open(self._paths, self._filesystem, file_index)

    def __getstate__(self) -> dict[str, Any]:
        if self._handle is not None:
            raise TypeError(
                "a pyarrow ParquetFile cannot be sent to a spawned worker (it has no path): pass "
                "the path instead, ParquetSource(path) or pyarrow.dataset.dataset(path), or use "
                "fork or thread workers"
            )
        state = dict(self.__dict__)
        del state["_readers"]
        state["_hot"] = _NO_GROUP
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._readers = Readers()
        self._cache.decode = self._decode  # the unpickled cache's bound method is this copy's

    def __repr__(self) -> str:
        return (
            f"ParquetSource(files={max(1, len(self._paths))}, rows={len(self)}, "
            f"row_groups={len(self.row_group_sizes)}, columns={self.columns}"
            f"{', streaming=True' if self.streaming else ''})"
        )


_HANDLE_LOCK = threading.Lock()

_Hot = tuple[int, int, int, bytes, "Columns | None"]
"""The group being read: ``(first row, stop row, group, bytes of its row numbers or b"",
decoded columns or None)``, kept per source (see :meth:`ParquetSource.fetch_batch`)."""

_NO_GROUP: _Hot = (0, 0, 0, b"", None)
_ROWS_COMPARED = 1 << 17
"""Row numbers of the group being read kept as bytes per process (1 MiB), for _consecutive."""


def _consecutive(indices: IndexArray, numbers: bytes, lo: int, hi: int) -> bool:
    """Whether ``indices`` are the rows ``lo .. hi - 1`` of a group whose row numbers (from its
    first) are ``numbers`` as int64 bytes, given its first and last are: one memcmp, cheaper
    than any NumPy reduction over a batch; past ``numbers``, a check that they increase."""
    if hi * 8 <= len(numbers):
        return indices.tobytes() == numbers[lo * 8 : hi * 8]
    return bool((indices[1:] > indices[:-1]).all())
