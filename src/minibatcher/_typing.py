"""Protocols shared by the stages: what a source, an index order and an allocator look like."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

IndexArray = npt.NDArray[np.int64]
"""A 1-D int64 array of indices (or positions)."""


class Allocator(Protocol):
    """Returns an uninitialised array of ``shape`` and ``dtype`` for a batch to be written into.

    The default is ``np.empty``; process workers pass one that allocates in shared memory, so a
    stacked batch is written once, where the main process will read it.
    """

    def __call__(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray: ...


@runtime_checkable
class IndexOrder(Protocol):
    """The order of one epoch: ``len`` positions, each mapped to an index.

    Orders are views (a materialised permutation, a lazy permutation, one rank's share): they
    give any slice of positions without producing the rest.
    """

    def __len__(self) -> int: ...

    def slice(self, start: int, stop: int) -> IndexArray:
        """The indices at positions ``start:stop``."""
        ...

    def take(self, positions: IndexArray) -> IndexArray:
        """The indices at the given positions."""
        ...


@runtime_checkable
class Stateful(Protocol):
    """A source that can save and restore its own reading position (for unsized iterables)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
