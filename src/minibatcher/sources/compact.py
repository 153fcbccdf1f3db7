"""Compact storage for Python-list datasets read by process workers (the copy-on-read fix).

A forked worker shares the parent's memory pages until it writes to them, and merely *reading*
a Python object writes to it: the reference count lives in the object's header. A worker that
reads every item of a list of a million small dicts therefore copies, page by page, most of the
list into its own memory; with N workers the dataset exists N+1 times (W7 of BENCHMARKS.md).

:class:`CompactSequence` keeps the items instead as one NumPy byte buffer of pickles plus an
int64 array of offsets: two objects, whatever the length, whose pages are only ever read. A
worker unpickles the items of its batch, which are new, private, short-lived objects. Under
spawn/forkserver it also makes the dataset cheaper to send (two buffers instead of a million
objects). The loader uses it automatically for a plain ``list``/``tuple`` dataset of at least
:data:`COMPACT_MIN_ITEMS` items when workers are processes; items that cannot be pickled keep
the list as it is. Items come back equal to the originals, as copies (as with any process
worker).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import IndexedSource
from .sequence import SequenceSource

COMPACT_MIN_ITEMS = 10_000
"""Smaller lists are not worth converting: the copy-on-read growth is at most a few MiB."""


class CompactSequence:
    """A read-only sequence stored as one buffer of pickles and their offsets."""

    def __init__(self, items: Sequence[Any]) -> None:
        dumps, protocol = pickle.dumps, pickle.HIGHEST_PROTOCOL
        blobs = [dumps(item, protocol) for item in items]
        lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))
        self.offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        self.buffer = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        self._view = memoryview(self.buffer)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> Any:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for a sequence of length {n}")
        start, stop = self.offsets[index : index + 2].tolist()
        return pickle.loads(self._view[start:stop])

    def __getitems__(self, indices: list[int]) -> list[Any]:
        """The items at ``indices`` (one vectorised lookup of their offsets)."""
        positions = np.asarray(indices, dtype=np.int64)
        starts = self.offsets[positions].tolist()
        stops = self.offsets[positions + 1].tolist()
        view, loads = self._view, pickle.loads
        return [loads(view[a:b]) for a, b in zip(starts, stops, strict=True)]

    def __getstate__(self) -> dict[str, Any]:
        return {"offsets": self.offsets, "buffer": self.buffer}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.offsets = state["offsets"]
        self.buffer = state["buffer"]
        self._view = memoryview(self.buffer)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"CompactSequence(len={len(self)}, bytes={self.buffer.nbytes})"


def compact_source(source: IndexedSource) -> IndexedSource | None:
    """A compact copy of ``source`` if it is a large plain list or tuple of picklable items."""
    data: Any = getattr(source, "data", None)
    if type(source) is not SequenceSource or type(data) not in (list, tuple):
        return None
    if len(data) < COMPACT_MIN_ITEMS:
        return None
    try:
        return SequenceSource(CompactSequence(data))
    except Exception:  # unpicklable items: keep the list (fork still works)
        return None
