"""Sequential, random, subset and subset-random samplers: each epoch's order is f(seed, epoch)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from minibatcher import DataLoader
from minibatcher.samplers import (
    RandomSampler,
    SequentialSampler,
    SubsetRandomSampler,
    SubsetSampler,
)


def loader_order(dl: DataLoader[np.ndarray]) -> list[int]:
    return [int(i) for b in dl for i in b]


def test_sequential_sampler() -> None:
    sampler = SequentialSampler(5)
    assert len(sampler) == 5
    assert list(sampler) == [0, 1, 2, 3, 4]
    assert list(SequentialSampler([10, 20, 30])) == [0, 1, 2]


def test_sequential_sampler_in_a_loader() -> None:
    dl = DataLoader(range(100, 105), batch_size=2, sampler=SequentialSampler(5))
    assert loader_order(dl) == [100, 101, 102, 103, 104]


def test_random_sampler_is_a_permutation_fixed_by_seed_and_epoch() -> None:
    sampler = RandomSampler(50, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(50))
    assert first != list(range(50))
    assert list(RandomSampler(50, seed=3)) == first
    assert list(RandomSampler(50, seed=4)) != first
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(second) == list(range(50))
    assert second != first
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_random_sampler_without_seed_uses_the_loaders_seed() -> None:
    a = DataLoader(range(30), batch_size=4, sampler=RandomSampler(30), seed=11)
    b = DataLoader(range(30), batch_size=4, sampler=RandomSampler(30), seed=11)
    c = DataLoader(range(30), batch_size=4, shuffle=True, seed=11)
    assert loader_order(a) == loader_order(b) == loader_order(c)


def test_random_sampler_with_its_own_seed_overrides_the_loaders() -> None:
    a = DataLoader(range(30), batch_size=4, sampler=RandomSampler(30, seed=5), seed=1)
    b = DataLoader(range(30), batch_size=4, sampler=RandomSampler(30, seed=5), seed=2)
    assert loader_order(a) == loader_order(b)


def test_random_sampler_new_order_every_loader_epoch() -> None:
    dl = DataLoader(range(40), batch_size=8, sampler=RandomSampler(40), seed=0)
    first, second = loader_order(dl), loader_order(dl)
    assert sorted(first) == sorted(second) == list(range(40))
    assert first != second


def test_random_sampler_with_replacement() -> None:
    sampler = RandomSampler(5, replacement=True, num_samples=200, seed=0)
    drawn = list(sampler)
    assert len(sampler) == len(drawn) == 200
    assert set(drawn) == set(range(5))  # with 200 draws of 5, every value appears
    assert max(Counter(drawn).values()) > 1


def test_random_sampler_num_samples_below_n() -> None:
    drawn = list(RandomSampler(100, num_samples=10, seed=1))
    assert len(drawn) == 10
    assert len(set(drawn)) == 10
    assert all(0 <= i < 100 for i in drawn)


def test_random_sampler_num_samples_above_n_without_replacement() -> None:
    drawn = list(RandomSampler(4, num_samples=10, seed=1))
    assert len(drawn) == 10
    assert sorted(drawn[:4]) == [0, 1, 2, 3]
    assert sorted(drawn[4:8]) == [0, 1, 2, 3]
    assert max(Counter(drawn).values()) == 3


def test_random_sampler_num_samples_sets_the_loader_length() -> None:
    dl = DataLoader(range(10), batch_size=4, sampler=RandomSampler(10, num_samples=25), seed=0)
    assert len(dl) == 7
    assert len(loader_order(dl)) == 25


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_samples": 0}, "num_samples must be a positive int, got 0"),
        ({"replacement": 1}, "replacement must be a bool, got 1"),
        ({"seed": -1}, "seed must be a non-negative int or None, got -1"),
    ],
)
def test_random_sampler_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RandomSampler(10, **kwargs)  # type: ignore[arg-type]


def test_sampler_length_argument_must_be_sized() -> None:
    with pytest.raises(TypeError, match="data_source must be an int or have len"):
        SequentialSampler(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data_source must be a non-negative int"):
        SequentialSampler(-3)


def test_subset_sampler_keeps_the_given_order() -> None:
    sampler = SubsetSampler([7, 2, 9])
    assert list(sampler) == [7, 2, 9]
    dl = DataLoader(range(100, 110), batch_size=2, sampler=sampler)
    assert loader_order(dl) == [107, 102, 109]
    assert loader_order(dl) == [107, 102, 109]


def test_subset_random_sampler_permutes_the_subset_each_epoch() -> None:
    indices = [1, 3, 5, 7, 9, 11, 13, 15]
    dl = DataLoader(range(20), batch_size=3, sampler=SubsetRandomSampler(indices), seed=2)
    first, second = loader_order(dl), loader_order(dl)
    assert sorted(first) == sorted(second) == indices
    assert first != second


@pytest.mark.parametrize(
    ("indices", "message"),
    [([[1, 2]], "1-D sequence of ints"), ([0.5], "1-D sequence of ints"), ([-1, 2], "non-neg")],
)
def test_subset_samplers_refuse_bad_indices(indices: list[object], message: str) -> None:
    for kind in (SubsetSampler, SubsetRandomSampler):
        with pytest.raises(ValueError, match=message):
            kind(indices)  # type: ignore[arg-type]


def test_sampler_reaching_past_the_data_is_an_index_error() -> None:
    dl = DataLoader(range(5), batch_size=2, sampler=SubsetSampler([0, 4, 8]))
    with pytest.raises(IndexError, match="up to 8, out of range for data of length 5"):
        list(dl)
    dl = DataLoader(range(5), batch_size=2, sampler=RandomSampler(9))
    with pytest.raises(IndexError, match="up to 8, out of range for data of length 5"):
        list(dl)


def test_samplers_print_compactly() -> None:
    assert repr(RandomSampler(10, seed=1)) == (
        "RandomSampler(n=10, replacement=False, num_samples=None, seed=1)"
    )
    assert "len=3" in repr(SubsetSampler([1, 2, 3]))
