"""BatchSampler and user iterables as sampler / batch_sampler."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from minibatcher import DataLoader
from minibatcher.samplers import BatchSampler, RandomSampler, SequentialSampler


def as_lists(dl: DataLoader[Any]) -> list[list[int]]:
    return [b.tolist() for b in dl]


def test_batch_sampler_iterates_like_torchs() -> None:
    assert list(BatchSampler(range(7), 3, drop_last=False)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(BatchSampler(range(7), 3, drop_last=True)) == [[0, 1, 2], [3, 4, 5]]
    assert len(BatchSampler(range(7), 3, drop_last=False)) == 3
    assert len(BatchSampler(range(7), 3, drop_last=True)) == 2


def test_batch_sampler_over_an_unsized_sampler_has_no_len() -> None:
    sampler = BatchSampler(iter(range(4)), 2, drop_last=False)
    with pytest.raises(TypeError, match="has no len"):
        len(sampler)
    assert list(sampler) == [[0, 1], [2, 3]]


@pytest.mark.parametrize(
    ("args", "message"),
    [((0, False), "batch_size must be a positive int, got 0"),
     ((2, None), "drop_last must be a bool, got None")],
)
def test_batch_sampler_bad_arguments(args: tuple[Any, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchSampler(range(3), *args)


def test_batch_sampler_in_a_loader() -> None:
    dl = DataLoader(range(10, 17), batch_sampler=BatchSampler(SequentialSampler(7), 3, True))
    assert as_lists(dl) == [[10, 11, 12], [13, 14, 15]]
    assert len(dl) == 2


def test_batch_sampler_over_a_random_sampler_matches_shuffle() -> None:
    sampled = DataLoader(
        range(20), batch_sampler=BatchSampler(RandomSampler(20), 6, drop_last=False), seed=4
    )
    shuffled = DataLoader(range(20), batch_size=6, shuffle=True, seed=4)
    assert as_lists(sampled) == as_lists(shuffled)
    assert as_lists(sampled) == as_lists(shuffled)  # and the next epoch too


def test_list_as_sampler() -> None:
    dl = DataLoader(range(100, 110), batch_size=2, sampler=[9, 0, 5])
    assert as_lists(dl) == [[109, 100], [105]]
    assert len(dl) == 2


def test_list_of_lists_as_batch_sampler() -> None:
    dl = DataLoader(range(100, 110), batch_sampler=[[3, 1], [7], [0, 2, 4]])
    assert as_lists(dl) == [[103, 101], [107], [100, 102, 104]]
    assert len(dl) == 3


def test_torch_samplers_work_as_sampler_and_batch_sampler() -> None:
    tud = pytest.importorskip("torch.utils.data")
    dl = DataLoader(range(6), batch_size=4, sampler=tud.SequentialSampler(range(6)))
    assert as_lists(dl) == [[0, 1, 2, 3], [4, 5]]
    batch_sampler = tud.BatchSampler(tud.SequentialSampler(range(6)), 4, drop_last=True)
    assert as_lists(DataLoader(range(6), batch_sampler=batch_sampler)) == [[0, 1, 2, 3]]


class EpochAware:
    """A user sampler with torch's set_epoch convention."""

    def __init__(self) -> None:
        self.epoch = -1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        yield from ([0, 1, 2] if self.epoch % 2 == 0 else [2, 1, 0])

    def __len__(self) -> int:
        return 3


def test_user_sampler_is_told_the_epoch() -> None:
    dl = DataLoader(range(3), batch_size=3, sampler=EpochAware())
    assert as_lists(dl) == [[0, 1, 2]]
    assert as_lists(dl) == [[2, 1, 0]]
    dl.set_epoch(4)
    assert as_lists(dl) == [[0, 1, 2]]


def test_unsized_user_sampler_makes_len_unknown() -> None:
    dl = DataLoader(range(5), batch_size=2, sampler=(i for i in [4, 3, 2]))
    with pytest.raises(TypeError):
        len(dl)
    assert as_lists(dl) == [[4, 3], [2]]


@pytest.mark.parametrize("bad", [7, -1])
def test_sampler_index_out_of_range_names_the_index(bad: int) -> None:
    dl = DataLoader(range(5), batch_size=2, sampler=[0, 1, bad])
    with pytest.raises(IndexError, match=f"index {bad}, out of range for data of length 5"):
        list(dl)


def test_batch_sampler_index_out_of_range_names_the_index() -> None:
    dl = DataLoader(np.arange(5), batch_sampler=[[0, 1], [2, 12]])
    with pytest.raises(IndexError, match="index 12, out of range for data of length 5"):
        list(dl)


@pytest.mark.parametrize(
    ("sampler", "error", "says"),
    [
        ([0, 1.7], TypeError, "yielded 1.7 (a float)"),
        ([0, "2"], TypeError, "yielded '2' (a str)"),
        ([2**70], IndexError, f"index {2**70}, beyond the int64 range"),
        ([np.uint64(2**63 + 1)], IndexError, "beyond the int64 range"),
        ([np.int64(3), True], TypeError, "yielded True (a bool)"),
        ([3, False], TypeError, "yielded False (a bool)"),
        ([np.int64(1), np.bool_(True)], TypeError, "True_ (a bool)"),
    ],
)
def test_a_sampler_yielding_a_non_int_is_refused_naming_it(
    sampler: list[Any], error: type[Exception], says: str
) -> None:
    """``1.7`` used to read item 1 silently, as did ``True`` among ints; ints beyond int64 gave
    a confusing message."""
    with pytest.raises(error, match=re.escape(says)):
        list(DataLoader(range(5), sampler=sampler))
    with pytest.raises(error, match=re.escape(says)):
        list(DataLoader(range(5), batch_sampler=[sampler]))


def test_a_batch_sampler_of_single_indices_is_refused() -> None:
    """torch refuses it too: each batch of a batch_sampler is a list of indices."""
    with pytest.raises(TypeError, match=r"the batch_sampler yielded 5 \(a int\).*sampler="):
        list(DataLoader(list(range(10)), batch_sampler=[5, 6]))
    assert [b.tolist() for b in DataLoader(list(range(10)), batch_sampler=[[5], [6, 7]])] == [
        [5], [6, 7]]
