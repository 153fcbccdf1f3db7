"""The sampler protocol: an epoch's order of indices as a pure function of (seed, epoch).

In: a seed and an epoch. Out: an :class:`~minibatcher._typing.IndexOrder`, a view that gives any
slice of the epoch's positions without producing the rest. State: none; the position within the
epoch is kept by the loader, so a checkpoint is a few integers and a permutation is recomputed,
never stored.

A sampler iterated directly (``for i in sampler``) behaves like torch's: each iteration is the
epoch set by :meth:`Sampler.set_epoch` (default 0), with the sampler's own seed.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np

from .._seed import check_seed, draw_seed
from .._typing import IndexArray, IndexOrder


class ArrayOrder:
    """An order held as an int64 array (a materialised permutation or index list)."""

    __slots__ = ("array",)

    def __init__(self, array: IndexArray) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def slice(self, start: int, stop: int) -> IndexArray:
        return self.array[start:stop]

    def take(self, positions: IndexArray) -> IndexArray:
        return self.array[positions]


class RangeOrder:
    """The identity order ``0, 1, ..., n-1``, computed per slice (no memory)."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def slice(self, start: int, stop: int) -> IndexArray:
        return np.arange(start, min(stop, self.length), dtype=np.int64)

    def take(self, positions: IndexArray) -> IndexArray:
        return np.asarray(positions, dtype=np.int64)


class Sampler(abc.ABC):
    """Base class of minibatcher's samplers.

    Subclasses implement ``__len__`` and :meth:`order`. A sampler's ``seed`` (if given) overrides
    the loader's; with ``seed=None`` a sampler inside a loader uses the loader's seed.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = None if seed is None else check_seed(seed)
        self._epoch = 0
        self._own_seed = self.seed  # drawn at the first direct iteration if None (see __iter__)

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def order(self, seed: int, epoch: int) -> IndexOrder:
        """The order of ``epoch`` drawn from ``seed`` (pure: same arguments, same order)."""

    @property
    def num_indices(self) -> int:
        """The size of the index space the sampler draws from (for bounds and state checks)."""
        return len(self)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch used when the sampler is iterated directly."""
        self._epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if self.seed is None and self._own_seed is None:
            # Drawn only when iterated directly: inside a loader the loader's seed is used, and
            # building a sampler must not advance the user's global generator.
            self._own_seed = draw_seed()
        seed = self._own_seed if self.seed is None else self.seed
        assert seed is not None
        order = self.order(seed, self._epoch)
        return iter(order.slice(0, len(order)).tolist())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(len={len(self)}, seed={self.seed})"


def sized_length(data_source: Sized | int, name: str = "data_source") -> int:
    """``len(data_source)``, or the int itself; raises naming the argument."""
    if isinstance(data_source, (int, np.integer)) and not isinstance(data_source, bool):
        if data_source < 0:
            raise ValueError(
                f"{name} must be a non-negative int or a sized object, got {data_source}"
            )
        return int(data_source)
    try:
        return len(data_source)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{name} must be an int or have len(), got {type(data_source).__name__}"
        ) from None


def check_positive_int(value: Any, name: str, allow_none: bool = False) -> int | None:
    """Return ``value`` if it is a positive int; else raise naming ``name`` and the value."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)
