"""What torch users gain: state_dict()/load_state_dict() resume exactly, with any num_workers;
the batches after a resume are those of torch's uninterrupted run."""

from __future__ import annotations

import json

import pytest
import torch
import torch.utils.data as tud

from minibatcher.errors import StateError
from minibatcher.torch import DataLoader

from .conftest import assert_same
from .test_iterable import Split

pytestmark = pytest.mark.timeout(90)

DATA = tud.TensorDataset(torch.arange(21.0))


def flat(batches):
    return [b[0].tolist() for b in batches]


def uninterrupted(make, epochs=2):
    torch.manual_seed(42)
    dl = make(tud.DataLoader)
    return [flat(dl) for _ in range(epochs)]


def makers(generator: bool, num_workers: int, persistent: bool = False):
    def make(cls):
        g = torch.Generator().manual_seed(5) if generator else None
        extra = {"persistent_workers": True} if persistent else {}
        return cls(DATA, 4, True, num_workers=num_workers, generator=g, **extra)

    return make


@pytest.mark.parametrize("generator", [True, False])
@pytest.mark.parametrize(("num_workers", "resume_workers"), [(0, 0), (2, 0), (0, 2)])
@pytest.mark.parametrize("stop_at", [0, 2, 6])  # 6 = the last batch: epoch-end
def test_resume_mid_and_end_of_epoch(generator, num_workers, resume_workers, stop_at):
    make = makers(generator, num_workers)
    expected = uninterrupted(make)
    torch.manual_seed(42)
    dl = make(DataLoader)
    it = iter(dl)
    got = [next(it)[0].tolist() for _ in range(stop_at)]
    state = json.loads(json.dumps(dl.state_dict()))  # JSON-able
    del it
    torch.manual_seed(1000)  # a new process: another global RNG state
    resumed = makers(generator, resume_workers)(DataLoader)
    resumed.load_state_dict(state)
    if stop_at == len(expected[0]):  # every batch received: the state is the epoch's end
        assert_same(got, expected[0])
        assert_same(flat(resumed), expected[1])
        return
    rest = flat(resumed)
    assert_same(got + rest, expected[0])
    if generator:  # the next epoch follows as uninterrupted (the global RNG is the user's)
        assert_same(flat(resumed), expected[1])


def test_resume_between_epochs_with_generator():
    make = makers(True, 0)
    expected = uninterrupted(make, 3)
    dl = make(DataLoader)
    flat(dl)
    state = dl.state_dict()
    resumed = make(DataLoader)
    resumed.load_state_dict(state)
    assert_same([flat(resumed), flat(resumed)], expected[1:])


def test_resume_with_persistent_workers_later_epoch():
    make = makers(True, 2, persistent=True)
    expected = uninterrupted(make, 2)
    dl = make(DataLoader)
    flat(dl)
    it = iter(dl)
    got = [next(it)[0].tolist() for _ in range(3)]
    state = dl.state_dict()
    del it
    dl.close()
    resumed = make(DataLoader)
    resumed.load_state_dict(state)
    assert_same(got + flat(resumed), expected[1])
    resumed.close()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_iterable_dataset(num_workers):
    expected = [b.tolist() for b in tud.DataLoader(Split(19), 3, num_workers=num_workers)]
    dl = DataLoader(Split(19), 3, num_workers=num_workers)
    it = iter(dl)
    got = [next(it).tolist() for _ in range(3)]
    state = dl.state_dict()
    del it
    resumed = DataLoader(Split(19), 3, num_workers=num_workers)
    resumed.load_state_dict(state)
    assert got + [b.tolist() for b in resumed] == expected


def test_bad_state_is_refused():
    with pytest.raises(StateError):
        DataLoader(DATA).load_state_dict({"epoch": 3})
