"""WeightedRandomSampler: indices drawn with probabilities proportional to given weights."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._seed import ORDER_STREAM, generator
from .._typing import IndexOrder
from .base import ArrayOrder, Sampler, check_positive_int


class WeightedRandomSampler(Sampler):
    """``num_samples`` indices of ``range(len(weights))`` drawn with ``p ∝ weights`` each epoch.

    Without replacement, ``num_samples`` must not exceed the number of non-zero weights.
    """

    def __init__(
        self,
        weights: Sequence[float] | np.ndarray,
        num_samples: int,
        replacement: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed)
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"weights must be a non-empty 1-D sequence, got shape {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        self.num_samples = int(check_positive_int(num_samples, "num_samples") or 0)
        if not isinstance(replacement, bool):
            raise ValueError(f"replacement must be a bool, got {replacement!r}")
        if not replacement and self.num_samples > int(np.count_nonzero(w)):
            raise ValueError(
                f"num_samples must be at most the number of non-zero weights "
                f"({np.count_nonzero(w)}) without replacement, got {self.num_samples}"
            )
        self.weights = w
        self.replacement = replacement

    def __len__(self) -> int:
        return self.num_samples

    @property
    def num_indices(self) -> int:
        return len(self.weights)

    def order(self, seed: int, epoch: int) -> IndexOrder:
        rng = generator(seed, epoch, ORDER_STREAM)
        p = self.weights / self.weights.sum()
        drawn = rng.choice(len(p), size=self.num_samples, replace=self.replacement, p=p)
        return ArrayOrder(drawn.astype(np.int64))

    def __repr__(self) -> str:
        return (
            f"WeightedRandomSampler(n={len(self.weights)}, num_samples={self.num_samples}, "
            f"replacement={self.replacement}, seed={self.seed})"
        )
