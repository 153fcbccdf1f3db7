"""A sampler or batch sampler that is its own iterator (a generator, ``iter(list)``, ``map``)
can be read once: a later epoch over it must be an error, never an empty epoch, silently."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from minibatcher import DataLoader

pytestmark = pytest.mark.timeout(60)

DATA = np.arange(10)


def sampler_kwargs() -> list[Callable[[], dict[str, Any]]]:
    def pairs() -> Iterator[list[int]]:
        return (list(range(i, i + 2)) for i in range(0, 10, 2))

    return [
        lambda: {"batch_size": 2, "sampler": (i for i in range(10))},
        lambda: {"batch_size": 2, "sampler": iter([3, 1, 2])},
        lambda: {"batch_size": 2, "sampler": map(int, "0123")},
        lambda: {"batch_sampler": pairs()},
    ]


@pytest.mark.parametrize("make", sampler_kwargs())
@pytest.mark.parametrize("workers", [{}, {"num_workers": 2, "worker_type": "thread"}])
def test_a_second_epoch_over_a_read_single_pass_sampler_is_an_error(
    make: Callable[[], dict[str, Any]], workers: dict[str, Any]
) -> None:
    """It gave zero batches: a training loop's later epochs silently trained on nothing."""
    kwargs = make()
    with DataLoader(DATA, **kwargs, **workers) as dl:
        first = list(dl)
        assert first
        with pytest.raises(RuntimeError, match=r"single-pass iterator .* read to its end"):
            list(dl)


def test_what_a_break_or_one_batch_left_unread_is_still_read() -> None:
    dl = DataLoader(DATA, batch_size=2, sampler=iter(range(10)))
    assert dl.one_batch().tolist() == [0, 1]
    for batch in dl:
        assert batch.tolist() == [2, 3]
        break
    assert [b.tolist() for b in dl] == [[4, 5], [6, 7], [8, 9]]
    with pytest.raises(RuntimeError, match="single-pass"):
        list(dl)


def test_reiterable_samplers_are_untouched() -> None:
    dl = DataLoader(DATA, batch_size=4, sampler=[9, 8, 7, 6, 5])
    assert [b.tolist() for b in dl] == [[9, 8, 7, 6], [5]]
    assert [b.tolist() for b in dl] == [[9, 8, 7, 6], [5]]
