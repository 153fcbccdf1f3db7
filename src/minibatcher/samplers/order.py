"""Samplers that order a range of indices: sequential, random (with or without replacement)
and subsets. Each epoch's order is ``f(seed, epoch)``: see ``samplers/base.py``."""

from __future__ import annotations

from collections.abc import Sequence, Sized

import numpy as np

from .._seed import ORDER_STREAM, generator
from .._typing import IndexOrder
from .base import ArrayOrder, RangeOrder, Sampler, check_positive_int, sized_length
from .permutation import LAZY_THRESHOLD, LazyPermutation


class SequentialSampler(Sampler):
    """``0, 1, ..., n-1`` every epoch."""

    def __init__(self, data_source: Sized | int) -> None:
        super().__init__(seed=0)
        self.length = sized_length(data_source)

    def __len__(self) -> int:
        return self.length

    def order(self, seed: int, epoch: int) -> IndexOrder:
        return RangeOrder(self.length)


class RandomSampler(Sampler):
    """A new random order of ``range(n)`` every epoch.

    Args:
        data_source: the dataset (its ``len``) or the number of items ``n``.
        replacement: draw with replacement (``num_samples`` independent uniform draws).
        num_samples: how many indices per epoch (default ``n``). Without replacement a value
            above ``n`` concatenates fresh permutations.
        seed: overrides the loader's seed when set.
        lazy_threshold: above this many indices, a permutation without replacement is computed
            per position by a keyed bijection instead of materialised (O(1) memory).
    """

    def __init__(
        self,
        data_source: Sized | int,
        replacement: bool = False,
        num_samples: int | None = None,
        seed: int | None = None,
        lazy_threshold: int = LAZY_THRESHOLD,
    ) -> None:
        super().__init__(seed)
        if not isinstance(replacement, bool):
            raise ValueError(f"replacement must be a bool, got {replacement!r}")
        self.n = sized_length(data_source)
        self.replacement = replacement
        self.num_samples = check_positive_int(num_samples, "num_samples", allow_none=True)
        self.lazy_threshold = lazy_threshold

    def __len__(self) -> int:
        return self.n if self.num_samples is None else self.num_samples

    @property
    def num_indices(self) -> int:
        return self.n

    def order(self, seed: int, epoch: int) -> IndexOrder:
        count = len(self)
        if self.n == 0:
            return ArrayOrder(np.empty(0, dtype=np.int64))
        if not self.replacement and count == self.n and self.n > self.lazy_threshold:
            return LazyPermutation(self.n, seed, epoch)
        rng = generator(seed, epoch, ORDER_STREAM)
        if self.replacement:
            return ArrayOrder(rng.integers(0, self.n, size=count, dtype=np.int64))
        rounds = -(-count // self.n)
        if rounds == 1:  # the usual case: one permutation, no concatenated copy
            perm = permutation(rng, self.n)[:count]
        else:
            perm = np.concatenate([permutation(rng, self.n) for _ in range(rounds)])[:count]
        return ArrayOrder(perm.astype(np.int64, copy=False))

    def __repr__(self) -> str:
        return (
            f"RandomSampler(n={self.n}, replacement={self.replacement}, "
            f"num_samples={self.num_samples}, seed={self.seed})"
        )


class SubsetSampler(Sampler):
    """The given indices, in the given order, every epoch."""

    def __init__(self, indices: Sequence[int] | np.ndarray) -> None:
        super().__init__(seed=0)
        self.indices = _index_array(indices)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def num_indices(self) -> int:
        return _index_space(self.indices)

    def order(self, seed: int, epoch: int) -> IndexOrder:
        return ArrayOrder(self.indices)


class SubsetRandomSampler(Sampler):
    """The given indices in a new random order every epoch."""

    def __init__(self, indices: Sequence[int] | np.ndarray, seed: int | None = None) -> None:
        super().__init__(seed)
        self.indices = _index_array(indices)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def num_indices(self) -> int:
        return _index_space(self.indices)

    def order(self, seed: int, epoch: int) -> IndexOrder:
        rng = generator(seed, epoch, ORDER_STREAM)
        return ArrayOrder(self.indices[permutation(rng, len(self.indices))])


def permutation(rng: np.random.Generator, n: int) -> np.ndarray:
    """``rng.permutation(n)`` as int64: the same values, drawn about twice as fast.

    NumPy's shuffle makes the same draws whatever the dtype; on int32 (where ``n`` fits) it
    scatters over half the memory, and the random accesses are what it costs.
    """
    if n >= 2**31:
        return rng.permutation(n)
    perm = np.arange(n, dtype=np.int32)
    rng.shuffle(perm)
    return perm.astype(np.int64)


def _index_space(indices: np.ndarray) -> int:
    """The size of the index space a subset draws from: its largest index + 1."""
    return int(indices.max()) + 1 if indices.size else 0


def _index_array(indices: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(indices)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(f"indices must be a 1-D sequence of ints, got {indices!r:.80}")
    if array.size and array.min() < 0:
        raise ValueError(f"indices must be non-negative, got {int(array.min())}")
    return array.astype(np.int64)
