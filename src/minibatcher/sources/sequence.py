"""Sources for anything indexable with ``len()``: lists, tuples, ranges, map-style datasets
(including torch Datasets, duck-typed so torch is never imported here), NumPy arrays and torch
tensors.

In: indices (int64 arrays). Out: items, or a whole batch for ranges, arrays and tensors. State:
none (the data does not change between epochs).
"""

from __future__ import annotations

import sys
from operator import itemgetter
from typing import Any

import numpy as np

from .._typing import Allocator, IndexArray
from .base import IndexedSource


class SequenceSource(IndexedSource):
    """Any object with ``__len__`` and ``__getitem__(int)``; uses ``__getitems__`` when present.

    ``__getitems__(list_of_ints)`` (the torch convention) returns the list of items in one call,
    which a dataset can implement to read a batch at once.
    """

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self._getitem = data.__getitem__
        self._getitems = getattr(data, "__getitems__", None)

    def __len__(self) -> int:
        return len(self.data)

    def fetch_items(self, indices: IndexArray) -> list[Any]:
        positions = indices.tolist()
        if self._getitems is not None:
            items = list(self._getitems(positions))
            if len(items) != len(positions):
                raise ValueError(
                    f"{type(self.data).__name__}.__getitems__ returned {len(items)} items for "
                    f"{len(positions)} indices; it must return one item per index, in order"
                )
            return items
        if len(positions) > 1:  # itemgetter loops in C: about twice as fast per item
            return list(itemgetter(*positions)(self.data))
        return [self._getitem(i) for i in positions]


class RangeSource(IndexedSource):
    """A ``range``: the batch is computed, not fetched (``start + step * indices``)."""

    batched = True

    def __init__(self, data: range) -> None:
        super().__init__(data)
        self._start = data.start
        self._step = data.step
        self._len = len(data)

    def __len__(self) -> int:
        return self._len

    def fetch_items(self, indices: IndexArray) -> list[Any]:
        data = self.data
        return [data[i] for i in indices.tolist()]

    def fetch_batch(self, indices: IndexArray, allocate: Allocator | None = None) -> Any:
        if self._start == 0 and self._step == 1:
            values = indices
        else:
            values = indices * self._step + self._start
        if allocate is None:
            # The batch is the user's to modify: never a view of the order (or of a sampler's).
            return values.copy() if values is indices else values
        out = allocate(values.shape, values.dtype)
        out[...] = values
        return out


class ArraySource(IndexedSource):
    """A NumPy array indexed along its first axis: a batch is one ``np.take``."""

    batched = True

    def __init__(self, data: np.ndarray) -> None:
        if data.ndim == 0:
            raise ValueError("data must have at least one dimension, got a 0-d NumPy array")
        super().__init__(data)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def fetch_items(self, indices: IndexArray) -> list[Any]:
        data = self.data
        return [data[i] for i in indices.tolist()]

    def fetch_batch(self, indices: IndexArray, allocate: Allocator | None = None) -> Any:
        data = self.data
        if allocate is None:
            return data[indices]
        out = allocate((len(indices), *data.shape[1:]), data.dtype)
        np.take(data, indices, axis=0, out=out)
        return out


class TensorSource(IndexedSource):
    """A torch tensor indexed along its first dimension, or a ``TensorDataset`` (tensors)."""

    batched = True

    def __init__(self, data: Any, tensors: tuple[Any, ...] | None = None) -> None:
        super().__init__(data)
        self._tensors = tensors  # set for TensorDataset: items are tuples

    def __len__(self) -> int:
        return len(self.data)

    def fetch_items(self, indices: IndexArray) -> list[Any]:
        data = self.data
        return [data[i] for i in indices.tolist()]

    def fetch_batch(self, indices: IndexArray, allocate: Allocator | None = None) -> Any:
        torch = sys.modules["torch"]
        index = torch.from_numpy(np.ascontiguousarray(indices))
        if self._tensors is not None:
            return tuple(_take_tensor(torch, t, index, allocate) for t in self._tensors)
        return _take_tensor(torch, self.data, index, allocate)


def _take_tensor(torch: Any, tensor: Any, index: Any, allocate: Allocator | None) -> Any:
    numpy_dtype = None if allocate is None else _numpy_dtype(torch, tensor)
    if allocate is None or numpy_dtype is None:  # the given memory may not change the result
        return tensor.index_select(0, index)
    out = torch.from_numpy(allocate((len(index), *tensor.shape[1:]), numpy_dtype))
    torch.index_select(tensor, 0, index, out=out)
    return out


def _numpy_dtype(torch: Any, tensor: Any) -> Any:
    """The NumPy dtype to take ``tensor``'s rows into given memory with, or None where
    ``index_select`` must allocate itself: autograd (``out=`` refuses it), other devices or
    layouts, dtypes NumPy lacks (bfloat16, float8, ...)."""
    if tensor.requires_grad or tensor.device.type != "cpu" or tensor.layout is not torch.strided:
        return None
    try:
        return torch.empty((), dtype=tensor.dtype).numpy().dtype
    except (TypeError, RuntimeError):
        return None
