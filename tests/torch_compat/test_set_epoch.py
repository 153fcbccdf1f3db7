"""``shuffle=True``'s sampler has ``set_epoch`` (the facade's ``RandomSampler``): a new loader told
the epoch (as Lightning tells it after an epoch-end restart, where it restores no loader state)
delivers the uninterrupted run's order for that epoch and the following ones; a plain loop is
torch's."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import torch
import torch.utils.data as tud

from minibatcher.torch import DataLoader

pytestmark = pytest.mark.timeout(120)

DATA = tud.TensorDataset(torch.arange(22))
CONFIGS = [{}, {"num_workers": 2}, {"num_workers": 2, "persistent_workers": True}]
IDS = ["inline", "workers", "persistent"]


def make(cls: Any = DataLoader, seed: int | None = 0, **options: Any) -> Any:
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return cls(DATA, 4, shuffle=True, generator=generator, **options)


def epoch(iterable: Any) -> list[list[int]]:
    return [x.tolist() for (x,) in iterable]


def uninterrupted(epochs: int, **options: Any) -> list[list[list[int]]]:
    """torch's own DataLoader, ``epochs`` plain loops."""
    dl = make(tud.DataLoader, **options)
    return [epoch(dl) for _ in range(epochs)]


def test_the_sampler_is_torchs_with_set_epoch() -> None:
    dl = make()
    assert isinstance(dl.sampler, tud.RandomSampler)
    assert type(dl.sampler).__name__ == "RandomSampler"
    assert dl.batch_sampler.sampler is dl.sampler
    assert dl.sampler.generator is dl.generator
    assert callable(dl.sampler.set_epoch)
    # a sampler the user passes is theirs; so is torch's behaviour without shuffle
    mine = tud.RandomSampler(DATA)
    assert DataLoader(DATA, 4, sampler=mine).sampler is mine
    assert type(DataLoader(DATA, 4).sampler) is tud.SequentialSampler
    again = pickle.loads(pickle.dumps(dl))  # Lightning and spawn copy loaders
    assert epoch(again) == epoch(dl)


@pytest.mark.parametrize("options", CONFIGS, ids=IDS)
def test_set_epoch_after_iter_gives_the_uninterrupted_order(options: dict[str, Any]) -> None:
    """Lightning's order on an epoch-end restart: a new loader, iter(), then set_epoch(e);
    epoch e and the ones after it are the uninterrupted run's (they were epoch 0's again)."""
    expected = uninterrupted(4, **options)
    for start in (1, 3):
        dl = make(**options)
        iterator = iter(dl)
        dl.sampler.set_epoch(start)
        got = [epoch(iterator)]
        for following in range(start + 1, 4):
            dl.sampler.set_epoch(following)  # as Lightning: set_epoch, then iter()
            got.append(epoch(dl))
        assert got == expected[start:], (options, start)
        assert dl.stats.epoch == 3  # the loader's iterations are numbered as the epochs
        dl.close()


@pytest.mark.parametrize("options", CONFIGS[:2], ids=IDS[:2])
def test_set_epoch_before_iter_and_never_back(options: dict[str, Any]) -> None:
    expected = uninterrupted(3, **options)
    dl = make(**options)
    dl.sampler.set_epoch(2)
    assert epoch(dl) == expected[2]
    plain = make(**options)
    got = [epoch(plain) for _ in range(2)]
    plain.sampler.set_epoch(0)  # behind the loader: nothing replayed, nothing repeated
    assert [*got, epoch(plain)] == expected


def test_a_state_is_honoured_and_resets_the_epoch() -> None:
    """load_state_dict makes the state's epoch the sampler's: a mid-epoch state is continued
    (Lightning loads it, then sets the same epoch), a set_epoch from before it is forgotten."""
    expected = uninterrupted(3)
    dl = make()
    epoch(dl)
    it = iter(dl)
    head = [next(it)[0].tolist() for _ in range(2)]
    state = dl.state_dict()
    fresh = make()
    fresh.sampler.set_epoch(2)  # stale: the state below says epoch 1
    fresh.load_state_dict(state)
    assert fresh.sampler.epoch == 1
    iterator = iter(fresh)
    fresh.sampler.set_epoch(1)
    assert head + epoch(iterator) == expected[1]
    assert epoch(fresh) == expected[2]
    # a state between iterations (an epoch's end) with a set_epoch beyond it: replayed from it
    ended = make()
    epoch(ended)
    between = ended.state_dict()
    other = make()
    other.load_state_dict(between)
    other.sampler.set_epoch(2)
    assert epoch(other) == expected[2]
    # a state taken after set_epoch, before iter(): the start of that epoch
    told = make()
    told.sampler.set_epoch(2)
    restored = make()
    restored.load_state_dict(told.state_dict())
    assert epoch(restored) == expected[2]


def test_without_a_generator_set_epoch_draws_nothing() -> None:
    """Under the global RNG (torch.manual_seed) other users draw between epochs: nothing is
    replayed, the order is torch's for the same global state."""
    torch.manual_seed(5)
    expected = epoch(make(tud.DataLoader, seed=None))
    torch.manual_seed(5)
    dl = make(seed=None)
    iterator = iter(dl)
    dl.sampler.set_epoch(3)
    assert epoch(iterator) == expected
