"""IterableDataset: replicas in each worker, splitting with get_worker_info, len rules."""

from __future__ import annotations

import warnings

import pytest
import torch.utils.data as tud

from .conftest import both

pytestmark = pytest.mark.timeout(60)


class Split(tud.IterableDataset):
    """Each worker reads its share, as torch's docs show."""

    def __init__(self, n, sized=False):
        self.n, self.sized = n, sized

    def __iter__(self):
        info = tud.get_worker_info()
        if info is None:
            return iter(range(self.n))
        assert info.dataset is not self or info.num_workers > 0
        return iter(range(info.id, self.n, info.num_workers))

    def __len__(self):
        if not self.sized:
            raise TypeError("no len")
        return self.n


class Unsplit(tud.IterableDataset):
    """Not split: every worker yields everything (torch duplicates it, and so do we)."""

    def __iter__(self):
        info = tud.get_worker_info()
        wid = -1 if info is None else info.id
        return iter([(wid, i) for i in range(5)])


class Uneven(tud.IterableDataset):
    def __iter__(self):
        info = tud.get_worker_info()
        wid = 0 if info is None else info.id
        return iter(range(wid * 100, wid * 100 + 3 + 4 * wid))


@pytest.mark.parametrize("num_workers", [0, 1, 2])
@pytest.mark.parametrize(("batch_size", "drop_last"), [(3, False), (3, True), (None, False)])
def test_split_by_worker_info(num_workers, batch_size, drop_last):
    both(lambda cls: list(cls(Split(17), batch_size, drop_last=drop_last, num_workers=num_workers)))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_unsplit_replicas_duplicate_items(num_workers):
    both(lambda cls: list(cls(Unsplit(), 2, num_workers=num_workers)))


@pytest.mark.parametrize("prefetch_factor", [1, 2, 3])
def test_uneven_replicas_interleave_as_torch(prefetch_factor):
    def run(cls):
        dl = cls(Uneven(), 2, num_workers=2, prefetch_factor=prefetch_factor)
        return [list(dl) for _ in range(2)]

    both(run)


def test_persistent_workers_start_a_new_replica_iterator_each_epoch():
    def run(cls):
        dl = cls(Split(9), 2, num_workers=2, persistent_workers=True)
        return [list(dl) for _ in range(3)]

    both(run)


@pytest.mark.parametrize("drop_last", [False, True])
def test_len_of_sized_iterable_dataset(drop_last):
    both(lambda cls: len(cls(Split(10, sized=True), 3, drop_last=drop_last)))
    both(lambda cls: len(cls(Split(10, sized=True), None)))


def test_len_of_unsized_iterable_dataset_raises_alike():
    def run(cls):
        with pytest.raises(TypeError) as info:
            len(cls(Split(5), 2))
        return str(info.value)

    both(run)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_warning_when_more_batches_than_len(num_workers):
    class Liar(Split):
        def __len__(self):
            return 2

    def run(cls):
        dl = cls(Liar(12), 2, num_workers=num_workers)
        assert len(dl) == 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            batches = list(dl)
        messages = [str(w.message) for w in caught if "Length of IterableDataset" in str(w.message)]
        return batches, [m.replace(repr(dl.dataset), "<ds>") for m in messages]

    both(run)


def test_get_worker_info_is_none_in_main_process(loader_cls):
    list(loader_cls(Split(4), 2, num_workers=1))
    assert tud.get_worker_info() is None
