"""Copies of a minibatcher.torch.DataLoader (pickle, copy.copy, copy.deepcopy), as torch users
and frameworks make them, and testing.check_resume run on it (the core's conformance check)."""

from __future__ import annotations

import copy
import gc
import pickle

import pytest
import torch
import torch.utils.data as tud

from minibatcher.testing import check_resume
from minibatcher.torch import DataLoader

pytestmark = pytest.mark.timeout(120)

DATA = tud.TensorDataset(torch.arange(20.0), torch.arange(20))


def test_a_loader_pickles_after_iterating_as_torchs_does() -> None:
    """torch's (non-persistent) DataLoader pickles after an iter(); ours raised AttributeError
    on dl.stats' recorder (a local lambda)."""
    for make in (tud.DataLoader, DataLoader):
        dl = make(DATA, 4, shuffle=True, num_workers=0)
        next(iter(dl))
        again = pickle.loads(pickle.dumps(dl))
        assert sorted(int(i) for _, y in again for i in y) == list(range(20))


def test_a_collected_copy_leaves_the_originals_persistent_workers_alone() -> None:
    """copy.copy shared the persistent workers: collecting the copy closed them and ended the
    original's iteration ('superseded by a newer one or closed'). torch goes on."""
    with DataLoader(DATA, 2, num_workers=2, persistent_workers=True) as dl:
        it = iter(dl)
        first = next(it)
        for duplicate in (copy.copy, copy.deepcopy):
            other = duplicate(dl)
            assert len(list(other)) == 10
            other.close()
            del other
            gc.collect()
        rest = list(it)
        got = [int(i) for _, y in [first, *rest] for i in y]
        assert got == list(range(20))


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
