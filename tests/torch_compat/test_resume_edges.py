"""Exact resume of minibatcher.torch.DataLoader at its edges: testing.check_resume (the core's
conformance check) run on it, a state taken after a failed batch, and the global RNG
(``torch.manual_seed``, no ``generator=``) across epochs."""

from __future__ import annotations

import json

import pytest
import torch
import torch.utils.data as tud

from minibatcher.testing import check_resume
from minibatcher.torch import DataLoader

pytestmark = pytest.mark.timeout(120)

DATA = tud.TensorDataset(torch.arange(20.0), torch.arange(20))


@pytest.mark.parametrize(
    "options",
    [
        {},  # the last batch's state: RandomSampler draws once more after its last index
        {"num_workers": 2, "in_order": False},  # batches received out of order
    ],
    ids=["inline", "unordered"],
)
def test_check_resume_runs_on_the_torch_facade(options: dict[str, object]) -> None:
    """check_resume raised KeyError('loader') on this loader's state; then it found a resume
    at the last batch that replayed a wrong next epoch, and an in_order=False resume that
    skipped the first k batches of the sampler instead of the k received."""

    def make() -> DataLoader[object]:
        generator = torch.Generator().manual_seed(0)
        return DataLoader(DATA, 4, shuffle=True, generator=generator, **options)  # type: ignore[arg-type]

    report = check_resume(make)
    assert report.batches_per_epoch == 5


class FailsAtFive(tud.Dataset[int]):
    def __len__(self) -> int:
        return 20

    def __getitem__(self, index: int) -> int:
        if index == 5:
            raise ValueError("item 5")
        return index


def test_a_resume_after_a_failed_batch_goes_on_after_it() -> None:
    """torch raises a failed batch on its next() and goes on; a state taken after it counted
    only the good batches, so the resume delivered batch 2 ([8..11]) a second time."""
    dl = DataLoader(FailsAtFive(), 4)
    it = iter(dl)
    assert next(it).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="item 5"):
        next(it)
    assert next(it).tolist() == [8, 9, 10, 11]
    resumed = DataLoader(FailsAtFive(), 4)
    resumed.load_state_dict(dl.state_dict())
    assert [b.tolist() for b in resumed] == [[12, 13, 14, 15], [16, 17, 18, 19]]


def test_an_epoch_end_state_under_the_global_rng_never_repeats_an_epoch() -> None:
    """torch.manual_seed(0), epoch 0, state_dict(); a restart seeds again and loads it. Before:
    epoch 1 was right, then the user's RNG was put back and epoch 2 repeated epoch 0."""

    def epochs(dl: DataLoader[torch.Tensor], n: int) -> list[list[list[int]]]:
        return [[b.tolist() for b in dl] for _ in range(n)]

    torch.manual_seed(0)
    reference = epochs(DataLoader(torch.arange(10), 5, shuffle=True), 3)
    torch.manual_seed(0)
    first = DataLoader(torch.arange(10), 5, shuffle=True)
    epoch0 = epochs(first, 1)
    state = json.loads(json.dumps(first.state_dict()))
    torch.manual_seed(0)  # the restarted script
    resumed = DataLoader(torch.arange(10), 5, shuffle=True)
    resumed.load_state_dict(state)
    assert epoch0 + epochs(resumed, 2) == reference


def test_next_epoch_order_depends_neither_on_the_consumer_nor_on_a_state_taken() -> None:
    """Lightning stops an epoch by counting batches (the iterator is never run to its end) and
    checkpoints whenever it likes: the next epoch's order must not depend on either."""
    import itertools

    ds = tud.TensorDataset(torch.arange(24))

    def second_epoch(counting: bool, take_state: bool) -> list[list[int]]:
        dl = DataLoader(ds, 4, shuffle=True, generator=torch.Generator().manual_seed(0))
        if counting:  # as Lightning: len(dl) batches, then the next iter()
            it = iter(dl)
            for _ in itertools.islice(it, len(dl)):
                pass
            if take_state:
                dl.state_dict()
        else:
            for _ in dl:
                pass
        return [b[0].tolist() for b in dl]

    plain = second_epoch(counting=False, take_state=False)
    assert second_epoch(counting=True, take_state=False) == plain
    assert second_epoch(counting=True, take_state=True) == plain
