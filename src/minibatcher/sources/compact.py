"""Compact storage for Python-list datasets read by process workers (the copy-on-read fix).

A forked worker shares the parent's memory pages until it writes to them, and merely *reading*
a Python object writes to it: the reference count lives in the object's header. A worker that
reads every item of a list of a million small dicts therefore copies, page by page, most of the
list into its own memory; with N workers the dataset exists N+1 times (W7 of BENCHMARKS.md).

:class:`CompactSequence` keeps the items instead in one NumPy byte buffer plus a few NumPy
tables (offsets, kinds, dtypes, shapes): a handful of objects, whatever the length, whose pages
are only ever read. Two encodings, chosen per item:

- a plain C-contiguous NumPy array (any dtype without Python objects, either byte order) is
  stored as its raw bytes, with its dtype and shape in the tables (decoding is a slice and a
  copy, against ~10 us for unpickling an array);
- anything else is stored as its pickle.

(A list of records, flat dicts with the same keys and scalar values, is stored column by column
instead: ``sources/compact_records.py``.) A worker decodes the items of its batch, which are
new, private, short-lived objects. Under
spawn/forkserver it also makes the dataset cheaper to send. The loader uses it automatically
for a plain ``list``/``tuple`` dataset of at least :data:`COMPACT_MIN_ITEMS` items when workers
are processes, and only where it pays (:func:`_compacting_pays`: not for lists of arrays or
tensors, whose buffers copy-on-read leaves shared); items that cannot be pickled keep the list
as it is. Items come back equal to the
originals, as copies (as with any process worker).

Under fork (the default on Linux) the copy is made in the background, by a process of its own,
while the workers serve their first tasks from the list (NOTE [ Compact copy in the background ]
in ``transport/compact_stage.py``): it is then the list exactly as the workers inherited it, and
the refresh below is not needed. (The encodings live in ``sources/compact_encoding.py``.)

NOTE [ Compact copies stay current ]: each epoch sees the list as it is at ``iter()``, as with
0 workers, threads and torch. Under spawn and forkserver the loader keeps one compact copy per
loader and, before each epoch's workers start, refreshes it (:meth:`CompactSequence.refresh`,
exact, no sampling):

- items replaced, added, removed or reordered are found by identity (``is``: the copy holds a
  reference to every item it encoded, in the main process only, so an identity cannot be
  reused by a new object): ~10 ns an item;
- items that can change in place without a new identity (anything but scalars, ``str``,
  ``bytes`` and tuples or frozensets of them) are re-encoded and compared with their stored
  bytes: a dict's value set, a list appended to, a nested container changed, an array written
  into (or reshaped) are all seen. This costs what encoding costs, about a pickle per item;
- lists of records stored by columns (``sources/compact_records.py``): dict rows are
  re-encoded, a C loop per column; tuple and scalar rows are checked by identity.

Changed items are re-encoded (a full rebuild when more than a quarter changed). Persistent
workers are the exception, like torch's: they were forked (or sent the data) once, and keep
serving the list as it was when they started, whatever happens to it later.
"""

from __future__ import annotations

import operator
import pickle
from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np

from .._typing import IndexArray
from .base import IndexedSource
from .compact_encoding import (
    PICKLED,
    PICKLED5,
    RAW,
    SPLICE_HEAD,
    SPLICE_TAIL,
    encode_items,
    frozen_flags,
    pickle_kind,
    raw_array,
)
from .compact_records import CompactRecords

__all__ = ["PICKLED", "PICKLED5", "RAW", "CompactSequence", "compact_source", "refresh_source"]
from .sequence import SequenceSource

COMPACT_MIN_ITEMS = 10_000
"""Smaller lists are not worth converting: the copy-on-read growth is at most a few MiB."""
PAYS_SAMPLE = 64
"""How many items :func:`_compacting_pays` looks at."""
class CompactSequence:
    """A read-only sequence stored as one byte buffer and tables describing each item."""

    def __init__(self, items: Sequence[Any]) -> None:
        self._dtypes: list[np.dtype[Any]] = []
        self._dtype_codes: dict[str, int] = {}
        self._encode_all(items)

    # -- encoding (main process) ----------------------------------------------------------
    def _encode_all(self, items: Sequence[Any]) -> None:
        n = len(items)
        self._refs: list[Any] = list(items)  # main process only (NOTE above)
        self._dtypes, self._dtype_codes = [], {}
        self.kinds = np.zeros(n, dtype=np.uint8)
        self.dtype_index = np.zeros(n, dtype=np.int16)
        self.ndims = np.zeros(n, dtype=np.int8)
        self.dims = np.zeros((n, 1), dtype=np.int64)
        self._frozen = np.zeros(n, dtype=bool)  # main process only (NOTE above)
        chunks = self._encode(self._refs, np.arange(n))
        sizes = np.fromiter(map(len, chunks), dtype=np.int64, count=n)
        self._set_buffer(np.frombuffer(b"".join(chunks), dtype=np.uint8))
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        self.starts = offsets[:-1].copy()  # where item i's bytes start and stop in ``buffer``
        self.stops = offsets[1:].copy()

    def _encode(self, items: list[Any], positions: np.ndarray) -> list[bytes]:
        """The bytes of each item; fills the tables at ``positions``."""
        chunks, spliceable = encode_items(items)
        self._frozen[positions] = frozen_flags(items)
        arrays = map(isinstance, items, repeat(np.ndarray))
        candidates = np.flatnonzero(np.fromiter(arrays, dtype=bool, count=len(items))).tolist()
        raw = [i for i in candidates if raw_array(items[i])]
        if spliceable:
            kinds = np.full(len(chunks), PICKLED, dtype=np.uint8)
        else:
            kinds = np.fromiter(map(pickle_kind, chunks), dtype=np.uint8, count=len(chunks))
        kinds[raw] = RAW
        self.kinds[positions] = kinds
        if not raw:
            return chunks
        shapes = [items[i].shape for i in raw]
        width = max(1, max(map(len, shapes)))
        if width > self.dims.shape[1]:
            grown = np.zeros((len(self.dims), width), dtype=np.int64)
            grown[:, : self.dims.shape[1]] = self.dims
            self.dims = grown
        for i, shape in zip(raw, shapes, strict=True):
            position = int(positions[i])
            self.ndims[position] = len(shape)
            self.dims[position, : len(shape)] = shape
            self.dtype_index[position] = self._dtype_code(items[i].dtype)
        return chunks

    def _dtype_code(self, dtype: np.dtype[Any]) -> int:
        key = dtype.str if dtype.fields is None else repr(dtype.descr)
        code = self._dtype_codes.get(key)
        if code is None:
            code = self._dtype_codes[key] = len(self._dtypes)
            self._dtypes.append(dtype)
        return code

    def _set_buffer(self, buffer: np.ndarray) -> None:
        self.buffer = buffer
        self._view = memoryview(buffer)  # type: ignore[arg-type]

    def refresh(self, items: Sequence[Any]) -> None:
        """Bring the copy up to date with ``items`` (NOTE [ Compact copies stay current ])."""
        refs, n = self._refs, len(items)
        common = min(n, len(refs))
        replaced = np.fromiter(map(operator.is_not, items, refs), dtype=bool, count=common)
        suspects = np.flatnonzero(~replaced & ~self._frozen[:common])
        if len(suspects):  # may have been changed in place: compare their encodings
            replaced[suspects[self._stale(suspects)]] = True
        changed = np.flatnonzero(replaced)
        added = n - common
        if len(changed) + max(added, 0) > n // 4 or n < len(refs):
            self._encode_all(items)
            return
        if not len(changed) and not added:
            return
        self._grow(n)
        positions = np.concatenate([changed, np.arange(common, n)]).astype(np.int64)
        new = [items[i] for i in positions.tolist()]
        chunks = self._encode(new, positions)
        lengths = np.fromiter(map(len, chunks), dtype=np.int64, count=len(chunks))
        ends = len(self.buffer) + np.cumsum(lengths)
        self.starts[positions] = ends - lengths
        self.stops[positions] = ends
        self._set_buffer(np.frombuffer(self.buffer.tobytes() + b"".join(chunks), dtype=np.uint8))
        for i, item in zip(positions.tolist(), new, strict=True):
            if i < len(refs):
                refs[i] = item
            else:
                refs.append(item)

    def _stale(self, positions: np.ndarray) -> np.ndarray:
        """Which of the (unreplaced) items at ``positions`` no longer encode as stored (C loops
        over the items; a Python step only for arrays, whose dtype and shape are compared)."""
        refs = self._refs
        items = [refs[i] for i in positions.tolist()]
        slices = map(slice, self.starts[positions].tolist(), self.stops[positions].tolist())
        stored = map(self._view.__getitem__, slices)
        count = len(items)
        chunks = encode_items(items)[0]
        stale = ~np.fromiter(map(operator.eq, stored, chunks), dtype=bool, count=count)
        arrays = np.fromiter(map(isinstance, items, repeat(np.ndarray)), dtype=bool, count=count)
        for k in np.flatnonzero(arrays | (self.kinds[positions] == RAW)).tolist():
            i, item = int(positions[k]), items[k]
            if not raw_array(item):
                stale[k] |= self.kinds[i] == RAW
            else:  # same bytes: the dtype or shape may have been set in place
                stale[k] |= self.kinds[i] != RAW or (
                    self._dtypes[self.dtype_index[i]] != item.dtype
                    or self.dims[i, : self.ndims[i]].tolist() != list(item.shape)
                )
        return stale

    def _grow(self, n: int) -> None:
        """Room in the tables for ``n`` items (the new rows are filled by the caller)."""
        old = len(self.kinds)
        if n == old:
            return
        self.kinds = np.resize(self.kinds, n)
        self.dtype_index = np.resize(self.dtype_index, n)
        self.ndims = np.resize(self.ndims, n)
        self.dims = np.concatenate([self.dims, np.zeros((n - old, self.dims.shape[1]), np.int64)])
        self.starts = np.resize(self.starts, n)
        self.stops = np.resize(self.stops, n)
        self._frozen = np.resize(self._frozen, n)

    # -- decoding (workers) ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.kinds)

    def _decode(self, index: int, start: int, stop: int) -> Any:
        if self.kinds[index] != RAW:
            return pickle.loads(self._view[start:stop])
        dtype = self._dtypes[self.dtype_index[index]]
        shape = self.dims[index, : self.ndims[index]].tolist()
        return self.buffer[start:stop].view(dtype).reshape(shape).copy()

    def __getitem__(self, index: int) -> Any:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for a sequence of length {n}")
        return self._decode(index, int(self.starts[index]), int(self.stops[index]))

    def __getitems__(self, indices: list[int]) -> list[Any]:
        """The items at ``indices``: one vectorised lookup of their places, then one unpickling
        for the whole batch when all are protocol-3 pickles (NOTE [ One unpickling per batch ])."""
        positions = np.asarray(indices, dtype=np.int64)
        if not self.kinds[positions].any():
            starts = (self.starts[positions] + 2).tolist()  # after PROTO 3
            stops = (self.stops[positions] - 1).tolist()  # before STOP
            view = self._view
            bodies = [view[a:b] for a, b in zip(starts, stops, strict=True)]
            batch: list[Any] = pickle.loads(b"".join([SPLICE_HEAD, *bodies, SPLICE_TAIL]))
            return batch
        starts = self.starts[positions].tolist()
        stops = self.stops[positions].tolist()
        decode = self._decode
        return [decode(i, a, b) for i, a, b in zip(indices, starts, stops, strict=True)]

    def __getstate__(self) -> dict[str, Any]:
        local = ("_refs", "_view", "_dtype_codes", "_frozen")  # main process only, or rebuilt
        return {k: v for k, v in self.__dict__.items() if k not in local}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._refs = []
        self._frozen = np.zeros(0, dtype=bool)
        self._dtype_codes = {}
        self._set_buffer(self.buffer)

    def __repr__(self) -> str:
        return f"CompactSequence(len={len(self)}, bytes={self.buffer.nbytes})"


class CompactRecordsSource(SequenceSource):
    """A :class:`CompactRecords` as a source: the batch's index array goes to it as it is."""

    def fetch_items(self, indices: IndexArray) -> list[Any]:
        return self.data.rows(indices)


def compact_source(source: IndexedSource) -> IndexedSource | None:
    """A compact copy of ``source`` if it is a large plain list or tuple of picklable items."""
    data: Any = getattr(source, "data", None)
    if type(source) is not SequenceSource or type(data) not in (list, tuple):
        return None
    if len(data) < COMPACT_MIN_ITEMS or not _compacting_pays(data):
        return None
    records = CompactRecords.encode(data)
    if records is not None:
        return CompactRecordsSource(records)
    try:
        return SequenceSource(CompactSequence(data))
    except Exception:  # unpicklable items: keep the list (fork still works)
        return None


def _compacting_pays(data: Sequence[Any]) -> bool:
    """Whether a compact copy saves memory: not when the items hold NumPy arrays or tensors
    (judged on :data:`PAYS_SAMPLE` evenly spaced items, two levels deep).

    Reading an item writes to its objects' headers only, never to an array's buffer: a worker
    reading a list of arrays copies ~95 bytes an item (measured: 9.3 MiB for 100,000 int32
    arrays, whether of 128 bytes or of 2.4 KiB each), while their compact copy would hold all
    their data once more (~150 bytes of pickle header each, besides) and cost a decode per item.
    Small dicts, tuples and strings are the opposite: each worker would copy ~125 bytes an item
    and their pickles take ~30 (W7), so the copy pays from one worker on.
    """
    step = max(1, len(data) // PAYS_SAMPLE)
    return not any(_holds_buffers(data[i]) for i in range(0, len(data), step)[:PAYS_SAMPLE])


def _holds_buffers(item: Any, depth: int = 0) -> bool:
    """Whether ``item`` is, or holds two levels deep, a NumPy array or torch tensor."""
    if isinstance(item, np.ndarray):
        return not item.dtype.hasobject
    if type(item).__module__.split(".")[0] == "torch" and hasattr(item, "storage"):
        return True
    if depth >= 2:
        return False
    if isinstance(item, dict):
        item = list(item.values())
    elif not isinstance(item, (tuple, list)):
        return False
    return any(_holds_buffers(x, depth + 1) for x in item)


def refresh_source(compacted: IndexedSource, source: IndexedSource | None) -> bool:
    """Update ``compacted`` (made by :func:`compact_source` from ``source``) to ``source``'s
    current items; False if it cannot be (the caller then compacts anew)."""
    compact = getattr(compacted, "data", None)
    data: Any = getattr(source, "data", None)
    if type(data) not in (list, tuple) or len(data) < COMPACT_MIN_ITEMS:
        return False
    if isinstance(compact, CompactRecords):
        return compact.refresh(data)
    if not isinstance(compact, CompactSequence):
        return False
    try:
        compact.refresh(data)
    except Exception:  # e.g. an unpicklable item was added
        return False
    return True
