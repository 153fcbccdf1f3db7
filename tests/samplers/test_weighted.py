"""WeightedRandomSampler: indices drawn with probability proportional to their weight."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from minibatcher import DataLoader
from minibatcher.samplers import WeightedRandomSampler


def test_zero_weight_is_never_drawn_and_heavy_weights_dominate() -> None:
    sampler = WeightedRandomSampler([0.0, 1.0, 9.0], num_samples=2000, seed=0)
    counts = Counter(sampler)
    assert len(sampler) == 2000
    assert 0 not in counts
    assert counts[2] > 5 * counts[1]


def test_without_replacement_draws_distinct_indices() -> None:
    drawn = list(WeightedRandomSampler([1, 1, 1, 1, 5], num_samples=5, replacement=False, seed=3))
    assert sorted(drawn) == [0, 1, 2, 3, 4]


def test_in_a_loader_reproducible_from_the_loader_seed() -> None:
    def order(seed: int) -> list[int]:
        sampler = WeightedRandomSampler(np.arange(1, 11), num_samples=30)
        dl = DataLoader(range(10), batch_size=7, sampler=sampler, seed=seed)
        return [int(i) for b in dl for i in b]

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert len(order(1)) == 30


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": [], "num_samples": 1}, "non-empty 1-D"),
        ({"weights": [1.0, -1.0], "num_samples": 1}, "non-negative"),
        ({"weights": [0.0, 0.0], "num_samples": 1}, "not all zero"),
        ({"weights": [1.0, float("nan")], "num_samples": 1}, "finite"),
        ({"weights": [1.0], "num_samples": 0}, "num_samples must be a positive int, got 0"),
        ({"weights": [1.0, 0.0], "num_samples": 2, "replacement": False}, "at most the number"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WeightedRandomSampler(**kwargs)  # type: ignore[arg-type]
