"""minibatcher.accelerate.prepare's choice of shares for a minibatcher.torch.DataLoader, in
the main process with an accelerator of 2 processes (what prepare reads of it: the ranks, the
device, the gradient state); the real 2-rank runs are in test_accelerate.py."""

from __future__ import annotations

import types
from typing import Any

import pytest

pytest.importorskip("accelerate")
import torch
import torch.utils.data as tud

from minibatcher.accelerate import prepare
from minibatcher.errors import ConfigError
from minibatcher.torch import DataLoader

pytestmark = pytest.mark.timeout(60)


def two_rank_accelerator(rank: int) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        num_processes=2, process_index=rank, device=torch.device("cpu"),
        gradient_state=types.SimpleNamespace(), register_for_checkpointing=lambda obj: None,
    )  # fmt: skip


def test_a_batch_sampler_over_a_distributed_sampler_is_not_split_again() -> None:
    """Before: only a loader whose own sampler was a DistributedSampler was left alone; one
    inside the user's batch sampler was dealt to the ranks again (rank 0 got 3 of 10 items)."""
    data = torch.arange(10)
    shares = []
    for rank in (0, 1):
        sampler = tud.DistributedSampler(data, num_replicas=2, rank=rank, shuffle=False)
        dl = DataLoader(data, batch_sampler=tud.BatchSampler(sampler, 2, drop_last=False))
        prepared = prepare(two_rank_accelerator(rank), dl)
        shares.append([int(i) for batch in prepared.loader for i in batch])
    assert shares == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]


def test_an_iterable_dataset_is_refused_clearly() -> None:
    """Before: torch's 'expected unspecified batch_sampler option' from the rebuilt loader."""

    class Stream(tud.IterableDataset[int]):
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(range(10))

    with pytest.raises(ConfigError, match=r"IterableDataset.*split_dataset_by_node"):
        prepare(two_rank_accelerator(0), DataLoader(Stream(), 2))


@pytest.mark.parametrize("kind", ["core", "torch_facade"])
def test_skip_first_batches_mid_epoch_with_batches_out_of_order(kind: str) -> None:
    """Before: the core's state kept the batches received out of order above the new start
    (StateError 'delivered_above must hold batch numbers above next_batch'); the facade's
    kept them too and skipped them in the epoch that starts at batch 3."""
    import minibatcher
    from minibatcher.accelerate import skip_first_batches

    if kind == "core":
        dl: Any = minibatcher.DataLoader(list(range(40)), 2, num_workers=2, in_order=False)
    else:
        dl = DataLoader(torch.arange(40), 2, num_workers=2, in_order=False)
    with dl:
        it = iter(dl)
        for _ in range(6):
            next(it)
        # the above-set is what the test is about: make sure there is one
        dl.load_state_dict(with_received_above(dl.state_dict(), kind))
        skip_first_batches(dl, 3)
        items = sorted(int(i) for batch in dl for i in batch)
    assert items == list(range(6, 40))


def with_received_above(state: dict[str, Any], kind: str) -> dict[str, Any]:
    if kind == "core":
        return {**state, "loader": {**state["loader"], "next_batch": 1, "delivered_above": [4]}}
    return {**state, "batches_yielded": 1, "received_beyond": [4]}


@pytest.mark.parametrize("drop_last", [False, True])
def test_shares_are_padded_as_accelerate_pads_torchs(drop_last: bool) -> None:
    """41 items, batches of 4, 2 ranks: the last batch is completed, and the missing one made,
    from the epoch's first items (every batch of the last step full, as accelerate's
    even_batches makes them, so gather_for_metrics cuts the padding off at the end); before,
    rank 0 got a batch of 1 and rank 1 a whole batch again (the gathered shapes differed).
    With drop_last the incomplete last round is dropped, as accelerate does."""
    data = torch.arange(41)
    order = [int(i) for batch in DataLoader(data, 4) for i in batch]
    shares = []
    for rank in (0, 1):
        prepared = prepare(two_rank_accelerator(rank), DataLoader(data, 4, drop_last=drop_last))
        assert prepared.total_batch_size == 8
        batches = [batch.tolist() for batch in prepared.loader]
        assert len(batches) == len(prepared.loader) == (5 if drop_last else 6)
        assert all(len(batch) == 4 for batch in batches)
        shares.append(batches)
    steps = [a + b for a, b in zip(*shares, strict=True)]  # what a gather concatenates
    flat = [i for step in steps for i in step]
    if drop_last:
        assert flat == order[:40]
    else:
        assert flat == order + order[:7]  # real items first, padding from the start after
