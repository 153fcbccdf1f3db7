"""Data without indexing (generators, iterators, sets, custom iterables): read lazily, in order,
or through a seeded shuffle buffer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from minibatcher import DataLoader


class Reiterable:
    """An iterable whose every __iter__ starts again, counting how many items it produced."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.produced = 0

    def __iter__(self) -> Iterator[int]:
        for i in range(self.n):
            self.produced += 1
            yield i


def values(dl: DataLoader[Any]) -> list[int]:
    return [int(v) for b in dl for v in np.atleast_1d(b)]


def test_generator_is_read_in_order() -> None:
    dl = DataLoader((i * 10 for i in range(7)), batch_size=3)
    assert [b.tolist() for b in dl] == [[0, 10, 20], [30, 40, 50], [60]]


def test_iterator_with_drop_last() -> None:
    dl = DataLoader(iter(range(7)), batch_size=3, drop_last=True)
    assert [b.tolist() for b in dl] == [[0, 1, 2], [3, 4, 5]]


def test_generator_is_read_lazily() -> None:
    data = Reiterable(1000)
    it = iter(DataLoader(data, batch_size=4))
    next(it)
    assert data.produced < 100  # never materialised up front


def test_structured_items_from_a_generator() -> None:
    gen = ((i, f"s{i}") for i in range(5))
    ids, names = next(iter(DataLoader(gen, batch_size=5)))
    assert ids.tolist() == [0, 1, 2, 3, 4]
    assert names == ["s0", "s1", "s2", "s3", "s4"]


def test_unsized_iterable_has_no_len() -> None:
    dl = DataLoader((i for i in range(5)), batch_size=2)
    with pytest.raises(TypeError, match=r"generator.*no len"):
        len(dl)


def test_set_is_a_sized_iterable() -> None:
    data = {3, 1, 4, 15, 9, 2, 6}
    dl = DataLoader(data, batch_size=3)
    assert len(dl) == 3
    assert sorted(values(dl)) == sorted(data)
    assert len(DataLoader(data, batch_size=3, drop_last=True)) == 2


def test_reiterable_gives_every_epoch() -> None:
    dl = DataLoader(Reiterable(5), batch_size=2)
    assert values(dl) == [0, 1, 2, 3, 4]
    assert values(dl) == [0, 1, 2, 3, 4]


def test_single_pass_generator_read_twice_is_a_clear_error() -> None:
    dl = DataLoader((i for i in range(5)), batch_size=2)
    assert values(dl) == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError, match=r"single-pass iterator.*already read"):
        list(dl)


def test_unbatched_stream() -> None:
    dl = DataLoader((i for i in range(3)), batch_size=None)
    assert list(dl) == [0, 1, 2]


def test_shuffle_buffer_covers_every_item_once_and_replays() -> None:
    def run(seed: int, epoch: int = 0) -> list[int]:
        dl = DataLoader(Reiterable(500), batch_size=16, shuffle=True, shuffle_buffer=64, seed=seed)
        dl.set_epoch(epoch)
        return values(dl)

    first = run(seed=7)
    assert sorted(first) == list(range(500))
    assert first != list(range(500))
    assert run(seed=7) == first
    assert run(seed=8) != first
    assert run(seed=7, epoch=1) != first


def test_shuffle_buffer_larger_than_the_data() -> None:
    dl = DataLoader(Reiterable(10), batch_size=3, shuffle=True, shuffle_buffer=1000, seed=0)
    out = values(dl)
    assert sorted(out) == list(range(10))


def test_shuffle_buffer_moves_items_at_most_a_buffer_earlier() -> None:
    dl = DataLoader(Reiterable(300), batch_size=10, shuffle=True, shuffle_buffer=20, seed=1)
    for position, value in enumerate(values(dl)):
        assert value <= position + 20  # documented: approximate shuffling


def test_sampler_needs_indexable_data() -> None:
    with pytest.raises(ValueError, match="sampler needs data with len\\(\\) and indexing"):
        DataLoader((i for i in range(3)), sampler=[0, 1])


def test_rng_transform_on_a_stream_is_keyed_by_stream_position() -> None:
    def noisy(item: int, rng: np.random.Generator) -> float:
        return item + float(rng.random())

    def run(shuffle: bool) -> dict[int, float]:
        dl = DataLoader(
            Reiterable(50), batch_size=8, transform=noisy, shuffle=shuffle, seed=3,
            shuffle_buffer=8,
        )
        return {int(v): float(v) for b in dl for v in b}

    assert run(shuffle=False) == run(shuffle=True)


def test_a_torch_iterable_dataset_with_len_is_iterated() -> None:
    """torch's IterableDataset inherits a __getitem__ that raises NotImplementedError: one that
    defines __len__ too must still be read as a stream, as torch reads it."""
    import torch

    class Counting(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
        def __iter__(self) -> Iterator[int]:
            return iter(range(5))

        def __len__(self) -> int:
            return 5

    assert [b.tolist() for b in DataLoader(Counting(), batch_size=2)] == [[0, 1], [2, 3], [4]]
