"""Copies of a minibatcher.DataLoader (pickle, copy.copy, copy.deepcopy), as users and
frameworks make them: each copy is a loader of its own (workers, epochs, dl.stats)."""

from __future__ import annotations

import copy
import gc
import pickle

import numpy as np
import pytest

from minibatcher import DataLoader

pytestmark = pytest.mark.timeout(120)


def test_a_loader_pickles_after_iterating() -> None:
    """Before: AttributeError on dl.stats' recorder (a local lambda) once an epoch began."""
    dl = DataLoader(np.arange(20), 4, shuffle=True, seed=0)
    first = next(iter(dl))
    again = pickle.loads(pickle.dumps(dl))
    assert sorted(int(i) for b in again for i in b) == list(range(20))
    assert first.shape == (4,)


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_a_collected_copy_leaves_the_originals_persistent_workers_alone(worker_type: str) -> None:
    """Before: the copy shared the persistent workers and closed them when collected; the
    original's epoch then raised 'this iteration was superseded by a newer one or closed'."""
    with DataLoader(
        np.arange(20), 2, shuffle=True, seed=0, num_workers=2, worker_type=worker_type,  # type: ignore[arg-type]
        persistent_workers=True,
    ) as dl:  # fmt: skip
        reference = [b.tolist() for b in copy.deepcopy(dl)]
        it = iter(dl)
        got = [next(it).tolist()]
        for duplicate in (copy.copy, copy.deepcopy):
            other = duplicate(dl)
            assert len(list(other)) == 10
            other.close()
            del other
            gc.collect()
        got += [b.tolist() for b in it]
        assert got == reference
        assert dl.epoch == 0  # the copies' epochs are their own
