"""Copies of a minibatcher.torch.DataLoader (pickle, copy.copy, copy.deepcopy), as torch users
and frameworks make them."""

from __future__ import annotations

import copy
import gc
import pickle

import pytest
import torch
import torch.utils.data as tud

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
