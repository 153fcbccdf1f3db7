"""``dl.stats`` of minibatcher.torch.DataLoader: the core's LoaderStats, counted from torch's
batches (lists of fields), for map-style and iterable datasets, inline and in workers; and the
facade as a torch DataLoader subclass with the core's lifecycle."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")
import torch.utils.data as tud  # noqa: E402

from minibatcher.profile import LoaderStats  # noqa: E402
from minibatcher.torch import DataLoader  # noqa: E402
from minibatcher.verdict import LoaderFacts, verdict  # noqa: E402

pytestmark = pytest.mark.timeout(60)


class Pairs(tud.Dataset):
    """Items ``(tensor, int)``: default_collate makes a list of two fields."""

    def __len__(self) -> int:
        return 100

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.tensor([float(i)]), i


class Stream(tud.IterableDataset):
    """25 items per worker replica, split by torch's get_worker_info."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        info = tud.get_worker_info()
        wid, count = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(wid, 50, count))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_counts_stages_and_totals(num_workers: int) -> None:
    dl = DataLoader(Pairs(), 8, True, num_workers=num_workers)
    assert dl.stats.epoch is None
    it = iter(dl)
    for _ in range(3):
        next(it)
    assert (dl.stats.epoch, dl.stats.batches) == (0, 3)  # readable mid-iteration
    list(it)
    stats = dl.stats
    assert isinstance(stats, LoaderStats)
    assert (stats.epoch, stats.batches, stats.items) == (0, 13, 100)
    assert stats.stages["fetch"] > 0
    assert stats.stages["collate"] > 0
    assert ("ProcessExecutor" if num_workers else "InlineExecutor") in stats.executor
    list(dl)
    assert (dl.stats.epoch, dl.stats.items, dl.stats.total_items) == (1, 100, 200)


def test_items_counted_where_batch_sizes_vary() -> None:
    batches = [[0], [1, 2, 3], [4, 5]]
    assert DataLoader(Pairs(), batch_sampler=batches).stats.items == 0
    dl = DataLoader(Pairs(), batch_sampler=batches)
    list(dl)
    assert (dl.stats.batches, dl.stats.items) == (3, 6)
    replicas = DataLoader(Stream(), 4, num_workers=2)  # each replica ends with a short batch
    assert sum(len(b) for b in replicas) == 50
    assert (replicas.stats.batches, replicas.stats.items) == (14, 50)


def test_resumed_iteration_counts_from_the_resume_point() -> None:
    dl = DataLoader(Pairs(), 10)
    it = iter(dl)
    next(it), next(it)
    state = dl.state_dict()
    resumed = DataLoader(Pairs(), 10)
    resumed.load_state_dict(state)
    assert len(list(resumed)) == 8
    assert (resumed.stats.batches, resumed.stats.items) == (8, 80)


def test_verdict_names_only_torch_arguments() -> None:
    facts = LoaderFacts(
        num_workers=0, worker_type="process", prefetch=0, fast_path=False,
        batched_source=False, has_transform=False, torch_facade=True,
    )  # fmt: skip
    said = verdict(1.0, 0.1, {"fetch": 1.0}, facts, batches=10)
    assert said.startswith("loader-bound")
    assert "worker_type" not in said
    assert "auto" not in said
    workers = dataclasses.replace(facts, num_workers=2, prefetch=2)
    with_workers = verdict(1.0, 0.1, {"transport": 2.0}, workers, batches=10)
    assert "prefetch_factor (now 2)" in with_workers
    assert "worker_type" not in with_workers


def test_is_a_torch_dataloader_with_the_cores_lifecycle() -> None:
    """A torch subclass (the frameworks' isinstance checks); ``with`` stops persistent workers."""
    with DataLoader(Pairs(), 10, num_workers=1, persistent_workers=True) as dl:
        assert isinstance(dl, tud.DataLoader)
        assert len(list(dl)) == 10
        workers = dl._workers
        assert workers is not None
        assert not workers.closed
    assert workers.closed
    assert dl._workers is None
