"""What every source offers the later stages.

A source is the user's collection, classified once at construction into one of two shapes:

- :class:`IndexedSource`: ``len`` and fetch by index. The loader decides the order; a fetch takes
  an array of indices and returns the items (``fetch_items``) or, where the data allows it, the
  already-collated batch in one vectorised call (``fetch_batch``, the fast path).
- :class:`StreamSource` (``sources/iterable.py``): an iterable read in order, once per epoch.
"""

from __future__ import annotations

import abc
from typing import Any

from .._typing import Allocator, IndexArray


class IndexedSource(abc.ABC):
    """A collection with ``len()`` whose items are fetched by index.

    ``batched`` says whether :meth:`fetch_batch` exists and gives exactly what the default
    collate would make of :meth:`fetch_items` (tests hold every source to that).
    """

    batched: bool = False

    def __init__(self, data: Any) -> None:
        self.data = data

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def fetch_items(self, indices: IndexArray) -> list[Any]:
        """The items at ``indices``, in that order."""

    def fetch_batch(self, indices: IndexArray, allocate: Allocator | None = None) -> Any:
        """The collated batch of the items at ``indices`` (only where ``batched`` is true)."""
        raise NotImplementedError(f"{type(self).__name__} has no batched fetch")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(len={len(self)}, data={type(self.data).__name__})"
