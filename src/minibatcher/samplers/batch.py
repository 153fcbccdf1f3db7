"""From an order of indices to an epoch's batches of indices.

In: an :class:`IndexOrder` (our samplers) or any iterable of indices / of index lists (the
user's). Out: an :class:`EpochPlan`, the epoch's batches as int64 arrays, from any batch number
on (so a resumed epoch starts where it stopped without producing what came before). State: none.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Iterable, Iterator, Sized
from typing import Any

import numpy as np

from .._typing import IndexArray, IndexOrder
from .base import Sampler, check_positive_int


class BatchSampler:
    """Groups the indices of ``sampler`` into lists of ``batch_size`` (torch's BatchSampler).

    Inside a loader, a BatchSampler over one of minibatcher's samplers is sliced, not iterated,
    so it costs nothing per index.
    """

    def __init__(self, sampler: Sampler | Iterable[int], batch_size: int, drop_last: bool) -> None:
        self.sampler = sampler
        self.batch_size = int(check_positive_int(batch_size, "batch_size") or 0)
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last must be a bool, got {drop_last!r}")
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[int]]:
        it = iter(self.sampler)
        while batch := list(itertools.islice(it, self.batch_size)):
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch

    def __len__(self) -> int:
        if not isinstance(self.sampler, Sized):
            raise TypeError(f"the sampler of this BatchSampler has no len(): {self.sampler!r}")
        return batch_count(len(self.sampler), self.batch_size, self.drop_last)

    def __repr__(self) -> str:
        return (
            f"BatchSampler({self.sampler!r}, batch_size={self.batch_size}, "
            f"drop_last={self.drop_last})"
        )


def batch_count(items: int, batch_size: int, drop_last: bool) -> int:
    """The number of batches of ``batch_size`` that ``items`` make."""
    return items // batch_size if drop_last else -(-items // batch_size)


class EpochPlan(abc.ABC):
    """The batches of one epoch, as arrays of indices."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """The number of batches (TypeError where it is not known in advance)."""

    @abc.abstractmethod
    def batches(self, start: int = 0) -> Iterator[IndexArray]:
        """The batches from batch number ``start`` on."""


class SlicedPlan(EpochPlan):
    """Consecutive slices of ``batch_size`` positions of an order."""

    def __init__(self, order: IndexOrder, batch_size: int, drop_last: bool) -> None:
        self.order = order
        self.batch_size = batch_size
        self.num_batches = batch_count(len(order), batch_size, drop_last)

    def __len__(self) -> int:
        return self.num_batches

    def batches(self, start: int = 0) -> Iterator[IndexArray]:
        size = self.batch_size
        firsts = range(start * size, self.num_batches * size, size)
        stops = range(start * size + size, self.num_batches * size + size, size)
        array = getattr(self.order, "array", None)
        if array is not None:  # a materialised order: a slice is a view, the cheapest batch
            return map(array.__getitem__, map(slice, firsts, stops))  # in C: no frame per batch
        return map(self.order.slice, firsts, stops)


class IterablePlan(EpochPlan):
    """Batches read from the user's iterable of index lists, checked against the data's length."""

    def __init__(self, batches: Iterable[Any], data_length: int, length: int | None) -> None:
        self._batches = batches
        self._data_length = data_length
        self._length = length

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError(
                "the sampler (or batch_sampler) has no len(), so the number of batches is unknown"
            )
        return self._length

    def batches(self, start: int = 0) -> Iterator[IndexArray]:
        n = self._data_length
        for batch in itertools.islice(self._batches, start, None):
            array = _index_batch(batch)
            if array.size and (array.min() < 0 or array.max() >= n):
                bad = int(array[(array < 0) | (array >= n)][0])
                raise IndexError(
                    f"the sampler yielded index {bad}, out of range for data of length {n}"
                )
            yield array


def _index_batch(batch: Any) -> IndexArray:
    """``batch`` (a list of indices from the user's sampler) as int64, refusing what is not an
    int (``1.7`` would otherwise read item 1, silently) or does not fit in int64."""
    raw = np.asarray(batch)
    if raw.ndim == 0:  # batch_sampler=[5, 6]: each "batch" a single index
        raise TypeError(
            f"the batch_sampler yielded {batch!r} (a {type(batch).__name__}): each batch must be "
            "a list of indices (pass sampler= for a sampler of single indices)"
        )
    if raw.dtype.kind in "iu" and isinstance(batch, (list, tuple)):
        kinds = set(map(type, batch))  # NumPy reads a bool among ints as 0 or 1: refused
        if bool in kinds or np.bool_ in kinds:
            value = next(v for v in batch if type(v) in (bool, np.bool_))
            raise TypeError(
                f"the sampler yielded {value!r} (a {type(value).__name__}) among its indices: "
                "indices must be ints"
            )
    if raw.dtype.kind in "iu" or raw.size == 0:
        if raw.dtype.kind == "u" and raw.size and raw.max() > np.iinfo(np.int64).max:
            raise IndexError(f"the sampler yielded index {int(raw.max())}, beyond the int64 range")
        return raw.astype(np.int64, copy=False).reshape(-1)
    values = list(batch) if isinstance(batch, (list, tuple)) else raw.reshape(-1).tolist()
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(
                f"the sampler yielded {value!r} (a {type(value).__name__}): indices must be ints"
            )
    big = max(values, key=abs)
    raise IndexError(f"the sampler yielded index {big}, beyond the int64 range")


def chunked(indices: Iterable[int], batch_size: int, drop_last: bool) -> Iterator[list[int]]:
    """The user's sampler cut into lists of ``batch_size`` indices."""
    return iter(BatchSampler(indices, batch_size, drop_last))
