"""Sampler and batch-sampler semantics, order under seeds and generators, len() rules."""

from __future__ import annotations

import pytest
import torch
import torch.utils.data as tud

from .conftest import both

pytestmark = pytest.mark.timeout(60)

DATA = tud.TensorDataset(torch.arange(23.0), torch.arange(23))


def epochs(dl, n=2):
    return [list(dl) for _ in range(n)]


@pytest.mark.parametrize("batch_size", [1, 4, 23, 30, None])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sequential_batches_and_len(batch_size, drop_last):
    if batch_size is None and drop_last:
        pytest.skip("batch_size=None with drop_last is an error (test_errors)")

    def run(cls):
        dl = cls(DATA, batch_size, drop_last=drop_last)
        return len(dl), epochs(dl, 1)

    both(run)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_shuffle_order_follows_manual_seed(num_workers):
    def run(cls):
        torch.manual_seed(1234)
        dl = cls(DATA, 5, True, num_workers=num_workers)
        return epochs(dl), torch.rand(3)  # the global RNG consumed exactly as torch consumes it

    both(run)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_shuffle_order_follows_generator(num_workers):
    def run(cls):
        g = torch.Generator().manual_seed(7)
        dl = cls(DATA, 4, True, num_workers=num_workers, generator=g)
        return epochs(dl), g.get_state()

    both(run)


def make_samplers():
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    return {
        "random_replacement": lambda: tud.RandomSampler(DATA, True, 40, generator=g()),
        "random_global_rng": lambda: tud.RandomSampler(DATA, num_samples=50),
        "weighted": lambda: tud.WeightedRandomSampler([0.1] * 10 + [1.0] * 13, 30),
        "weighted_no_replacement": lambda: tud.WeightedRandomSampler(
            [1.0] * 23, 10, replacement=False, generator=g()
        ),
        "subset_random": lambda: tud.SubsetRandomSampler([1, 5, 7, 9, 22], generator=g()),
        "plain_list": lambda: [3, 1, 4, 1, 5, 9, 2, 6],
        "sequential": lambda: tud.SequentialSampler(range(10)),
    }


@pytest.mark.parametrize("name", list(make_samplers()))
def test_sampler_accepted_as_is(name):
    def run(cls):
        torch.manual_seed(0)
        dl = cls(DATA, 3, sampler=make_samplers()[name]())
        return len(dl), epochs(dl)

    both(run)


@pytest.mark.parametrize("drop_last", [False, True])
def test_batch_sampler(drop_last):
    def run(cls):
        torch.manual_seed(5)
        bs = tud.BatchSampler(tud.RandomSampler(DATA), 4, drop_last)
        dl = cls(DATA, batch_sampler=bs)
        return len(dl), dl.batch_size, dl.drop_last, epochs(dl)

    both(run)


def test_batch_sampler_as_list_of_lists():
    both(lambda cls: epochs(cls(DATA, batch_sampler=[[0, 1], [5, 6, 7], [22]])))


@pytest.mark.parametrize("rank", [0, 1])
def test_distributed_sampler_with_set_epoch(rank):
    def run(cls):
        sampler = tud.DistributedSampler(DATA, num_replicas=2, rank=rank, seed=11)
        dl = cls(DATA, 4, sampler=sampler, num_workers=rank)
        out = []
        for epoch in range(3):
            dl.sampler.set_epoch(epoch)
            out.append([b[1].tolist() for b in dl])
        return out

    both(run)


def test_attributes_resolved_as_torch():
    def run(cls):
        g = torch.Generator()
        dl = cls(DATA, 6, True, drop_last=True, generator=g, num_workers=1)
        return (
            type(dl.sampler).__name__, dl.sampler.generator is g, type(dl.batch_sampler).__name__,
            dl.batch_size, dl.drop_last, dl.num_workers, dl.prefetch_factor, dl.timeout,
            dl.generator is g, dl.collate_fn is tud.default_collate, dl.persistent_workers,
            dl.pin_memory, dl.in_order, dl.dataset is DATA,
        )  # fmt: skip

    both(run)


@pytest.mark.parametrize(
    "attr", ["batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers"]
)
def test_attributes_cannot_be_reassigned(attr):
    def run(cls):
        dl = cls(DATA, 2)
        with pytest.raises(ValueError, match="should not be set after") as info:
            setattr(dl, attr, None)
        dl.num_workers = 0  # others may be
        return str(info.value)

    both(run)


def test_dataset_length_read_again_each_epoch():
    class Growing(tud.Dataset):
        def __init__(self):
            self.items = list(range(5))

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]

    def run(cls):
        ds = Growing()
        dl = cls(ds, 2, True)
        torch.manual_seed(0)
        first = [b.tolist() for b in dl]
        ds.items += [5, 6, 7]
        return first, len(dl), [b.tolist() for b in dl]

    both(run)
