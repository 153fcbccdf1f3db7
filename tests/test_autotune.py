"""num_workers="auto": measured choices that never change what is delivered."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from minibatcher import DataLoader, autotune
from minibatcher.autotune import Candidate, candidates, choose

CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class CpuBound:
    """Items that cost pure-Python CPU (~1 ms for 20,000 steps), holding the GIL: only
    processes help."""

    def __init__(self, n: int, steps: int = 20_000) -> None:
        self.n, self.steps = n, steps

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        x = 0
        for k in range(self.steps):
            x = (x + k * i) % 1_000_003
        return x


class FakeExecutor:
    """Runs tasks inline, sleeping ``per_task`` each after ``startup``; or fails to start."""

    def __init__(self, per_task: float, startup: float = 0.0, fail: bool = False) -> None:
        if fail:
            raise RuntimeError("cannot start")
        time.sleep(startup)
        self.per_task = per_task

    def run(self, tasks: Iterator[Any]) -> Iterator[tuple[int, Any]]:
        for task in tasks:
            time.sleep(self.per_task)
            yield task[1], task

    def close(self) -> None:
        pass


def test_candidates() -> None:
    """Inline first, then threads and processes with 2 and with all CPUs."""
    assert candidates(1) == [Candidate(0)]
    assert candidates(2) == [Candidate(0), Candidate(2, "thread"), Candidate(2, "process")]
    assert [c.num_workers for c in candidates(8)] == [0, 2, 8, 2, 8]


def test_choose_the_fastest_and_skip_failures() -> None:
    """The fastest candidate wins; one that cannot start is reported, not chosen."""
    speeds = {0: 0.004, 2: 0.001, 3: 0.0}
    pool = [Candidate(0), Candidate(2, "thread"), Candidate(3, "process")]

    def make(c: Candidate) -> FakeExecutor:
        return FakeExecutor(speeds[c.num_workers], fail=c.num_workers == 3)

    tasks = ((0, seq, None, None) for seq in range(100))
    choice = choose(make, tasks, epoch_batches=100, persistent=False, options=pool)
    assert choice.candidate == Candidate(2, "thread")
    assert [t.candidate for t in choice.trials] == pool
    assert choice.trials[2].error == "RuntimeError: cannot start"
    assert "chose num_workers=2 (threads)" in str(choice)


def test_start_up_counts_unless_workers_persist() -> None:
    """A slow start-up loses on a short epoch, but not when workers persist across epochs."""
    pool = [Candidate(0), Candidate(2, "process")]

    def make(c: Candidate) -> FakeExecutor:
        return FakeExecutor(0.002, 0.0) if c.num_workers == 0 else FakeExecutor(0.0005, 0.3)

    def tasks() -> Iterator[Any]:
        return ((0, seq, None, None) for seq in range(20))

    short = choose(make, tasks(), epoch_batches=20, persistent=False, options=pool)
    assert short.candidate == Candidate(0)
    kept = choose(make, tasks(), epoch_batches=20, persistent=True, options=pool)
    assert kept.candidate == Candidate(2, "process")


def test_cheap_batches_stay_inline() -> None:
    """Batches of a range cost microseconds: no workers are even started."""
    dl = DataLoader(range(10_000), batch_size=64, num_workers="auto", shuffle=True, seed=0)
    assert [b.tolist() for b in dl] == [b.tolist() for b in DataLoader(
        range(10_000), batch_size=64, shuffle=True, seed=0)]
    report = dl.stats.autotune
    assert report is not None
    assert "chose num_workers=0" in report
    assert "too cheap" in report
    assert "InlineExecutor" in dl.stats.executor


def test_streams_are_not_measured() -> None:
    """A generator can be read once, so auto means 0 workers, said so in the stats."""
    dl = DataLoader((i for i in range(10)), batch_size=5, num_workers="auto")
    assert [b.tolist() for b in dl] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert "not measured" in (dl.stats.autotune or "")


def test_auto_never_changes_the_batches(no_leaks: None) -> None:
    """Whatever auto chooses, batches and order equal those of num_workers=0, every epoch."""
    kwargs: dict[str, Any] = {"batch_size": 8, "shuffle": True, "seed": 7}
    auto = DataLoader(CpuBound(96, steps=2_000), num_workers="auto", **kwargs)
    reference = DataLoader(CpuBound(96, steps=2_000), **kwargs)
    for _ in range(2):
        assert [b.tolist() for b in auto] == [b.tolist() for b in reference]
    report = auto.stats.autotune or ""
    assert report.startswith("chose num_workers="), report
    assert "processes" in report, report


def test_processes_win_when_they_measure_fastest() -> None:
    """The decision for GIL-bound work: processes measured fastest are chosen over threads."""
    pool = [Candidate(0), Candidate(2, "thread"), Candidate(2, "process")]
    per_batch = {"inline": 0.004, "thread": 0.0042, "process": 0.0021}

    def make(c: Candidate) -> FakeExecutor:
        kind = "inline" if c.num_workers == 0 else c.worker_type
        return FakeExecutor(per_batch[kind], startup=0.01 if c.num_workers else 0.0)

    tasks = ((0, seq, None, None) for seq in range(100))
    choice = choose(make, tasks, epoch_batches=500, persistent=False, options=pool)
    assert choice.candidate == Candidate(2, "process")
    assert "chose num_workers=2 (processes)" in str(choice)


@pytest.mark.skipif(CPUS < 2, reason="needs 2 CPUs to start two worker processes")
def test_cpu_bound_data_measures_every_candidate_and_follows_the_measurements(
    no_leaks: None,
) -> None:
    """Real executors on GIL-bound items: every candidate is measured, the choice is the one its
    own measurements favour (timings themselves are not asserted: they vary with the machine),
    and the batches are those of num_workers=0."""
    auto = DataLoader(CpuBound(4000), batch_size=8, num_workers="auto", seed=1)
    choice = autotune.tune_loader(auto)
    assert [t.candidate for t in choice.trials] == candidates()
    assert all(t.error is None and t.batches_per_s > 0 for t in choice.trials)
    estimates = {t.candidate: t.epoch_estimate(500, True) for t in choice.trials}
    best = min(estimates, key=estimates.__getitem__)
    assert estimates[choice.candidate] <= estimates[best] * autotune.MARGIN
    first = next(iter(auto))
    assert first.tolist() == next(iter(DataLoader(CpuBound(4000), batch_size=8, seed=1))).tolist()
    assert (auto.stats.autotune or "").startswith("chose num_workers=")
