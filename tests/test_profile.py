"""dl.stats: counts, sampled timings scaled to the epoch, and the verdict."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from minibatcher import DataLoader
from minibatcher.profile import SAMPLE_EVERY, batch_length
from minibatcher.verdict import LoaderFacts, verdict

SLEEP_S = 0.006  # far above the loader's time per batch (~0.1 ms), even on a loaded machine


class SlowItems:
    """A map-style dataset whose every item takes ``cost`` seconds to fetch."""

    def __init__(self, n: int, cost: float) -> None:
        self.n, self.cost = n, cost

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        time.sleep(self.cost)
        return i


def test_stats_before_any_epoch() -> None:
    """Before iterating there is nothing to report, and the verdict says so."""
    stats = DataLoader(range(10), batch_size=2).stats
    assert stats.epoch is None
    assert stats.batches == 0
    assert stats.items == 0
    assert "iterate" in stats.verdict


def test_slow_consumer_is_compute_bound() -> None:
    """A loop that sleeps 6 ms per batch on cheap data: its time is 'between requests'."""
    batches = 3 * SAMPLE_EVERY
    dl = DataLoader(range(64 * batches), batch_size=64, shuffle=True, seed=0)
    for _ in dl:
        time.sleep(SLEEP_S)
    stats = dl.stats
    assert (stats.epoch, stats.batches, stats.items) == (0, batches, 64 * batches)
    expected = batches * SLEEP_S  # time.sleep only ever sleeps longer
    assert expected * 0.8 < stats.between <= stats.wall
    assert stats.between + stats.waiting == pytest.approx(stats.wall)
    assert stats.waiting < stats.between
    assert stats.verdict.startswith("compute-bound"), stats.verdict


def test_slow_dataset_is_loader_bound_and_fetch_dominates() -> None:
    """Items that take 0.5 ms each: fetch is estimated from 1 batch in 16, scaled to all."""
    cost, size, batches = 0.0005, 8, 3 * SAMPLE_EVERY
    dl = DataLoader(SlowItems(size * batches, cost), batch_size=size)
    for _ in dl:
        pass
    stats = dl.stats
    assert (stats.batches, stats.items) == (batches, size * batches)
    expected = batches * size * cost  # time.sleep only ever sleeps longer
    assert stats.stages["fetch"] > expected * 0.9
    assert stats.stages["fetch"] < stats.wall * 1.5  # inline: fetching is part of the wall time
    assert stats.stages["fetch"] > 10 * stats.stages["collate"]
    assert stats.waiting > 10 * stats.between
    assert stats.loader_share is not None
    assert stats.loader_share > 0.9
    assert stats.verdict.startswith("loader-bound")
    assert "num_workers" in stats.verdict
    assert "verdict: loader-bound" in str(stats)


def test_items_count_the_short_last_batch_and_drop_last() -> None:
    """Items are exact: the last, shorter batch counts its own items."""
    dl = DataLoader(range(100), batch_size=32)
    list(dl)
    assert (dl.stats.batches, dl.stats.items) == (4, 100)
    dropped = DataLoader(range(100), batch_size=32, drop_last=True)
    list(dropped)
    assert (dropped.stats.batches, dropped.stats.items) == (3, 96)


def test_counts_during_an_epoch_and_after_leaving_it() -> None:
    """Readable mid-epoch (exact, not only every 16th batch) and after a break."""
    dl = DataLoader(range(1000), batch_size=10)
    it = iter(dl)
    for _ in range(5):
        next(it)
    assert (dl.stats.batches, dl.stats.items) == (5, 50)
    for _ in range(20):
        next(it)
    it.close()  # type: ignore[attr-defined]
    assert (dl.stats.batches, dl.stats.items) == (25, 250)


def test_one_batch_is_not_an_epoch() -> None:
    """one_batch() changes neither the epoch nor the stats."""
    dl = DataLoader(range(50), batch_size=20, shuffle=True, seed=1)
    dl.one_batch()
    assert dl.stats.epoch is None
    list(dl)
    dl.one_batch()
    assert (dl.stats.epoch, dl.stats.batches, dl.stats.total_batches) == (0, 3, 3)


def test_totals_over_epochs() -> None:
    """total_* add up every epoch; the other figures are the latest epoch's."""
    dl = DataLoader(range(50), batch_size=20, shuffle=True, seed=1)
    list(dl)
    list(dl)
    stats = dl.stats
    assert stats.epoch == 1
    assert stats.items == 50
    assert (stats.total_batches, stats.total_items) == (6, 100)


def test_items_with_varying_batch_sizes_and_unbatched() -> None:
    """A batch_sampler's uneven batches and batch_size=None are counted item by item."""
    dl = DataLoader(np.arange(20), batch_sampler=[[0], [1, 2, 3], [4, 5], list(range(6, 20))])
    list(dl)
    assert (dl.stats.batches, dl.stats.items) == (4, 20)
    unbatched = DataLoader([{"a": i} for i in range(7)], batch_size=None)
    list(unbatched)
    assert (unbatched.stats.batches, unbatched.stats.items) == (7, 7)


def test_transform_time_is_measured() -> None:
    """A per-item transform's time is reported under 'transform'."""

    def slow(x: int) -> int:
        time.sleep(0.0005)
        return x

    dl = DataLoader(list(range(8 * SAMPLE_EVERY * 2)), batch_size=8, transform=slow)
    list(dl)
    stages = dl.stats.stages
    assert stages["transform"] > stages["fetch"]
    assert stages["transform"] >= 0.9 * len(dl) * 8 * 0.0005


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_stage_timings_come_back_from_workers(worker_type: str, no_leaks: None) -> None:
    """Workers time their stages too; process workers send them back with their batches."""
    dl = DataLoader(SlowItems(8 * 2 * SAMPLE_EVERY, 0.0005), batch_size=8, num_workers=2,
                    worker_type=worker_type)
    assert len(list(dl)) == 2 * SAMPLE_EVERY
    stats = dl.stats
    assert stats.items == 8 * 2 * SAMPLE_EVERY
    assert stats.stages["fetch"] >= 0.9 * stats.items * 0.0005
    assert (stats.stages["transport"] > 0) == (worker_type == "process")
    assert "Executor(num_workers=2" in stats.executor


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        (np.zeros((5, 3)), 5),
        ((np.arange(4), ["a", "b", "c", "d"]), 4),
        ({"x": np.zeros(3), "y": [1, 2, 3]}, 3),
        ([1, 2], 2),
        (np.float64(1.0), None),
        ({}, None),
    ],
)
def test_batch_length(batch: Any, expected: int | None) -> None:
    """The items in a collated batch are the length of its first leaf."""
    assert batch_length(batch) == expected


FACTS = LoaderFacts(num_workers=0, worker_type="process", prefetch=2, fast_path=False,
                    batched_source=False, has_transform=False)


def test_verdict_suggestions() -> None:
    """The suggestion fits the configuration."""
    none: dict[str, float] = {}
    assert verdict(0.0, 0.0, none, FACTS).startswith("not enough")
    assert verdict(0.01, 1.0, none, FACTS).startswith("compute-bound")
    suggestion = verdict(1.0, 0.1, none, FACTS)
    assert "num_workers=" in suggestion or "one CPU" in suggestion
    cheap = verdict(0.001, 0.0001, none, FACTS, batches=100)  # 10 us per batch
    assert cheap.startswith("loader-bound")
    assert "workers would not" in cheap
    transform = LoaderFacts(num_workers=0, worker_type="process", prefetch=2, fast_path=False,
                            batched_source=True, has_transform=True)
    assert "batch_transform" in verdict(1.0, 0.1, none, transform)
    workers = LoaderFacts(num_workers=2, worker_type="process", prefetch=2, fast_path=True,
                          batched_source=True, has_transform=False)
    assert "prefetch" in verdict(1.0, 0.1, {"fetch": 1.0}, workers)
    assert "thread" in verdict(1.0, 0.1, {"fetch": 0.1, "transport": 1.0}, workers)
    assert "fewer" in verdict(0.001, 1.0, none, workers)


def test_stats_after_resuming_a_state_with_batches_delivered_above_count_only_this_run() -> None:
    """Batches 2 and 3 were delivered before the checkpoint (out of order): the resumed epoch
    delivers 10 - 1 - 2 = 7 batches, 95 - 10 - 20 = 65 items (it reported 9 and 85)."""
    dl = DataLoader(range(95), batch_size=10, seed=0)
    it = iter(dl)
    next(it)
    state = dl.state_dict()
    state["loader"]["delivered_above"] = [2, 3]
    resumed = DataLoader(range(95), batch_size=10, seed=0)
    resumed.load_state_dict(state)
    got = [b.tolist()[0] for b in resumed]
    assert got == [10, 40, 50, 60, 70, 80, 90]
    assert (resumed.stats.batches, resumed.stats.items) == (7, 65)
