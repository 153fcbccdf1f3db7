"""num_workers="auto": measured on the epoch's own batches, which are all delivered, once, in
the order num_workers=0 gives; the decision is tested on injected measurements (no timing is
asserted anywhere)."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minibatcher import DataLoader, WorkerError, autotune
from minibatcher.autotune import AutoExecutor, Candidate, Choice, Trial, Tuner, candidates
from minibatcher.samplers import SequentialSampler

pytestmark = pytest.mark.timeout(60)

THREADS2, PROCS2 = Candidate(2, "thread"), Candidate(2, "process")
POOL = [Candidate(0), THREADS2, PROCS2]


class Slow:
    """Items that take ``seconds`` each (sleeping: threads help), so workers get tried."""

    def __init__(self, n: int, seconds: float = 0.0005) -> None:
        self.n, self.seconds = n, seconds

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        time.sleep(self.seconds)
        return int(i)


@pytest.fixture
def eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every candidate is tried even on cheap batches, in short turns: the switching between
    executors mid-epoch is what these tests exercise."""
    monkeypatch.setattr(autotune.decision, "CHEAP_BATCH_S", 0.0)
    monkeypatch.setattr(autotune.decision, "INLINE_S", 0.0)
    monkeypatch.setattr(autotune.decision, "TRIAL_MIN_S", 0.0)
    monkeypatch.setattr(autotune.decision, "TRIAL_EXTRA", 1)
    monkeypatch.setattr(autotune.decision, "UNKNOWN_EPOCH_S", 0.0)
    monkeypatch.setattr(autotune.decision, "candidates", lambda cpus=None: POOL)
    monkeypatch.setattr(autotune.executor, "startup_guess", lambda loader, c: 0.0)


def flat(loader: Any) -> list[int]:
    return [x for batch in loader for x in np.asarray(batch).reshape(-1).tolist()]


# -- the decision, on injected measurements -------------------------------------------------

def trial(c: Candidate, per_batch: float, startup: float = 0.0, batches: int = 10) -> Trial:
    delivered = batches + max(1, c.num_workers)
    return Trial(c, batches, batches * per_batch, startup, delivered,
                 wall_s=startup + delivered * per_batch)


def test_candidates() -> None:
    """Inline first, then processes (forked before any thread of ours) and threads, with 2
    and with all CPUs."""
    assert candidates(1) == [Candidate(0)]
    assert candidates(2) == [Candidate(0), PROCS2, THREADS2]
    assert [(c.num_workers, c.worker_type) for c in candidates(8)] == [
        (0, "process"), (2, "process"), (8, "process"), (2, "thread"), (8, "thread")]


def test_inline_goes_first_and_cheap_batches_stay_inline() -> None:
    tuner = Tuner(POOL, epoch_batches=1000, persistent=False)
    step = tuner.next_step()
    assert step is not None
    assert step.candidate == Candidate(0)
    tuner.record(trial(Candidate(0), 50e-6))
    assert tuner.next_step() is None
    choice = tuner.choice()
    assert choice.candidate == Candidate(0)
    assert "too cheap" in choice.reason


def test_trials_are_sized_to_a_share_of_the_epoch() -> None:
    """The time boxes of the worker trials add up to TUNE_SHARE of the epoch, estimated as if
    the workers scaled perfectly (so that the share holds whichever candidate wins)."""
    tuner = Tuner(POOL, epoch_batches=1000, persistent=False)
    tuner.record(trial(Candidate(0), 0.01))
    step = tuner.next_step()
    assert step is not None
    assert step.candidate == THREADS2
    budget = autotune.TUNE_SHARE * 1000 * 0.01 / 2
    assert tuner.budget_s == pytest.approx(budget)
    assert step.seconds == pytest.approx(max(budget / 2, autotune.decision.TRIAL_MIN_S))
    assert step.min_batches == 2 + autotune.decision.TRIAL_EXTRA
    assert step.multiple == 2


def test_contenders_take_more_turns_while_the_budget_lasts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the first pass, the candidates within CLOSE of the best take turns again (the
    one measured last first: no switch), their figures summed; a clearly slower one does not."""
    monkeypatch.setattr(autotune.decision, "ROUNDS", 3)
    tuner = Tuner(POOL, epoch_batches=10_000, persistent=False)
    tuner.record(trial(Candidate(0), 0.01))
    tuner.record(trial(THREADS2, 0.004))
    tuner.record(trial(PROCS2, 0.0045))
    turns = []
    while (step := tuner.next_step()) is not None:
        turns.append(step.candidate)
        tuner.record(trial(step.candidate, 0.004 if step.candidate == THREADS2 else 0.0045))
    assert turns == [PROCS2, THREADS2, THREADS2, PROCS2]
    assert tuner.trials[THREADS2].batches == 30
    assert tuner.trials[Candidate(0)].batches == 10
    assert tuner.choice().candidate == THREADS2


def test_turns_of_near_best_candidates_cost_little() -> None:
    """The budget counts what turns cost (time less what the best would have taken): equal
    candidates can take more turns than slow ones."""
    def turns(threads_per_batch: float) -> int:
        tuner = Tuner(POOL, epoch_batches=200, persistent=False)
        tuner.record(trial(Candidate(0), 0.004))
        tuner.record(trial(PROCS2, 0.004))
        tuner.record(trial(THREADS2, threads_per_batch))
        count = 0
        while (step := tuner.next_step()) is not None:
            per_batch = {PROCS2: 0.004, THREADS2: threads_per_batch}.get(step.candidate, 0.004)
            tuner.record(trial(step.candidate, per_batch, startup=0.002))
            count += 1
        return count

    assert turns(0.004) > turns(0.0049) > 0


def test_no_more_turns_once_the_budget_is_spent() -> None:
    tuner = Tuner(POOL, epoch_batches=100, persistent=False)
    tuner.record(trial(Candidate(0), 0.01))
    assert tuner.budget_s == pytest.approx(autotune.TUNE_SHARE * 100 * 0.01 / 2)
    tuner.record(trial(THREADS2, 0.004, startup=tuner.budget_s))
    tuner.record(trial(PROCS2, 0.004))
    assert tuner.next_step() is None


def test_the_fastest_wins_and_failures_are_reported() -> None:
    tuner = Tuner(POOL, epoch_batches=1000, persistent=False)
    tuner.record(trial(Candidate(0), 0.004))
    tuner.record(trial(THREADS2, 0.001))
    tuner.record(Trial(PROCS2, 0, 0.0, error="RuntimeError: cannot start"))
    assert tuner.next_step() is None
    choice = tuner.choice(1.5)
    assert choice.candidate == THREADS2
    assert [t.candidate for t in choice.trials] == POOL
    text = str(choice)
    assert "chose num_workers=2 (threads)" in text
    assert "RuntimeError: cannot start" in text


def test_the_simplest_near_the_best_wins() -> None:
    """Within PREFER_SIMPLER of the best, fewer moving parts win (threads before processes);
    beyond it, the faster one does."""
    def choose(procs_per_batch: float) -> Candidate:
        tuner = Tuner(POOL, epoch_batches=1000, persistent=True)
        tuner.record(trial(Candidate(0), 0.004))
        tuner.record(trial(THREADS2, 0.002))
        tuner.record(trial(PROCS2, procs_per_batch))
        return tuner.choice().candidate

    assert choose(0.002 / (autotune.PREFER_SIMPLER - 0.01)) == THREADS2
    assert choose(0.002 / (autotune.PREFER_SIMPLER + 0.05)) == PROCS2


def test_start_up_counts_unless_workers_persist() -> None:
    def choose(persistent: bool) -> Candidate:
        tuner = Tuner([Candidate(0), PROCS2], epoch_batches=20, persistent=persistent)
        tuner.record(trial(Candidate(0), 0.002))
        tuner.record(trial(PROCS2, 0.0005, startup=0.3))
        return tuner.choice().candidate

    assert choose(False) == Candidate(0)
    assert choose(True) == PROCS2


def test_a_start_up_beyond_the_budget_is_not_tried() -> None:
    """E.g. a large list that processes would first copy: said so, never started."""
    tuner = Tuner(POOL, epoch_batches=100, persistent=False,
                  startup_guess=lambda c: 5.0 if c.worker_type == "process" else 0.0)
    tuner.record(trial(Candidate(0), 0.01))
    step = tuner.next_step()
    assert step is not None
    assert step.candidate == THREADS2
    tuner.record(trial(THREADS2, 0.006))
    assert tuner.next_step() is None
    choice = tuner.choice()
    assert choice.candidate == THREADS2
    assert "not tried: start-up ~5.00 s" in str(choice)


def test_the_guess_sees_a_large_list_for_spawned_processes_only() -> None:
    """Spawned workers wait for the compact copy of a large list; forked ones start at once and
    the copy is made meanwhile (W10's guess was 3-4 s under fork: processes were never tried)."""
    items = [np.arange(i % 50) for i in range(20_000)]
    spawned = DataLoader(items, batch_size=None, num_workers="auto", mp_context="spawn")
    assert autotune.startup_guess(spawned, THREADS2) == 0.0
    assert autotune.startup_guess(spawned, PROCS2) > autotune.startup_guess(
        DataLoader(items[:100], num_workers="auto", mp_context="spawn"), PROCS2)
    forked = DataLoader(items, batch_size=None, num_workers="auto", mp_context="fork")
    assert autotune.startup_guess(forked, PROCS2) == autotune.startup_guess(
        DataLoader(items[:100], num_workers="auto", mp_context="fork"), PROCS2)


# -- the executor: every task once, in order, whatever happens in the trials ---------------

class FakeExecutor:
    """Runs tasks inline with a prefetch window (pulls ahead, like workers); may fail after
    ``fail_after`` results."""

    def __init__(self, window: int, fail_after: int | None = None) -> None:
        self.window, self.fail_after, self.closed = window, fail_after, False

    def run(self, tasks: Iterator[Any]) -> Iterator[tuple[int, Any]]:
        queue = list(itertools.islice(tasks, self.window))
        done = 0
        while queue:
            task = queue.pop(0)
            if self.fail_after is not None and done >= self.fail_after:
                raise OSError("worker died")
            queue += list(itertools.islice(tasks, 1))
            done += 1
            yield task[1], ("batch", task[1])

    def close(self) -> None:
        self.closed = True


def run_auto(make: Any, n: int, clock: Any = None) -> tuple[list[int], list[Choice]]:
    tuner = Tuner(POOL, epoch_batches=n, persistent=False)
    chosen: list[Choice] = []

    def keep(choice: Choice, executor: Any) -> bool:
        chosen.append(choice)
        return False

    auto = AutoExecutor(make, tuner, keep, clock=clock or itertools.count(0, 0.01).__next__)
    tasks = ((0, seq, None, None) for seq in range(n))
    got = [seq for seq, batch in auto.run(tasks) if batch == ("batch", seq)]
    auto.close()
    return got, chosen


def test_each_task_is_delivered_once_across_the_turns() -> None:
    made: list[FakeExecutor] = []

    def make(c: Candidate) -> FakeExecutor:
        made.append(FakeExecutor(1 + 2 * c.num_workers))
        return made[-1]

    got, chosen = run_auto(make, 200)
    assert got == list(range(200))
    assert [t.candidate for t in chosen[0].trials] == POOL
    assert all(e.closed for e in made)


def test_a_candidate_that_fails_mid_turn_hands_its_tasks_to_inline() -> None:
    def make(c: Candidate) -> FakeExecutor:
        return FakeExecutor(5, fail_after=3 if c == THREADS2 else None)

    got, chosen = run_auto(make, 200)
    assert got == list(range(200))
    failed = {t.candidate: t.error for t in chosen[0].trials}
    assert failed[THREADS2] == "OSError: worker died"
    assert chosen[0].candidate != THREADS2


def test_an_error_of_the_task_stream_is_raised_after_the_batches_before_it() -> None:
    def tasks() -> Iterator[Any]:
        for seq in range(30):
            yield (0, seq, None, None)
        raise KeyError("bad sampler")

    tuner = Tuner(POOL, epoch_batches=10_000, persistent=False)  # seq 30 is in a worker's turn
    auto = AutoExecutor(lambda c: FakeExecutor(5), tuner, lambda c, e: False,
                        clock=itertools.count(0, 0.01).__next__)
    got: list[int] = []
    with pytest.raises(KeyError, match="bad sampler"):
        got.extend(seq for seq, _ in auto.run(tasks()))
    auto.close()
    assert got == list(range(30))
    assert THREADS2 in tuner.trials or len(tuner.trials) == 1


# -- real loaders ----------------------------------------------------------------------------

class OneShotSampler:
    """A user's sampler whose ``__iter__`` returns the same one-shot iterator."""

    def __init__(self, n: int) -> None:
        self._it = iter(range(n))

    def __iter__(self) -> Iterator[int]:
        return self._it


SINGLE_PASS_SAMPLERS = {
    "generator": lambda n: (i for i in range(n)),
    "iterator": lambda n: iter(list(range(n))),
    "itertools": lambda n: itertools.chain(range(n // 2), range(n // 2, n)),
    "one-shot Sampler": OneShotSampler,
    "map": lambda n: map(int, range(n)),
}


@pytest.mark.parametrize("kind", sorted(SINGLE_PASS_SAMPLERS))
def test_a_single_pass_sampler_loses_nothing(kind: str, eager: None, no_leaks: None) -> None:
    """Issue 8: the trials consumed the first batches of a generator (56 of 100 items)."""
    dl = DataLoader(Slow(100), batch_size=4, sampler=SINGLE_PASS_SAMPLERS[kind](100),
                    num_workers="auto")
    assert flat(dl) == list(range(100))
    report = dl.stats.autotune or ""
    assert "num_workers=2 (threads):" in report
    assert "num_workers=2 (processes):" in report


@pytest.mark.parametrize("kind", ["generator", "list"])
def test_a_single_pass_batch_sampler_loses_nothing(
    kind: str, eager: None, no_leaks: None
) -> None:
    batches = [[i, i + 1, i + 2] for i in range(0, 99, 3)] + [[99]]
    sampler: Any = (b for b in batches) if kind == "generator" else iter(batches)
    dl = DataLoader(Slow(100), batch_sampler=sampler, num_workers="auto")
    assert flat(dl) == list(range(100))


def test_one_batch_takes_only_its_batch_from_a_single_pass_sampler(no_leaks: None) -> None:
    """Workers prefetch: one_batch() handed them several batches of a generator, returned one
    and dropped the rest; "auto" ran its trials on it."""
    for workers in (2, "auto"):
        dl = DataLoader(Slow(40), batch_size=4, sampler=(i for i in range(40)),
                        num_workers=workers, worker_type="thread")
        assert dl.one_batch().tolist() == [0, 1, 2, 3]
        assert flat(dl) == list(range(4, 40))


def test_len_of_a_single_pass_sampler_reads_nothing() -> None:
    dl = DataLoader(Slow(12), batch_size=4, sampler=(i for i in range(12)), num_workers="auto")
    with pytest.raises(TypeError):
        len(dl)
    assert flat(dl) == list(range(12))


def test_a_stream_is_measured_and_read_once(eager: None, no_leaks: None) -> None:
    dl = DataLoader((i for i in range(300)), batch_size=3, num_workers="auto")
    assert flat(dl) == list(range(300))
    report = dl.stats.autotune or ""
    assert "num_workers=2 (processes):" in report, report


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(0, 120),
    batch_size=st.integers(1, 9),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
    in_order=st.booleans(),
    generator=st.booleans(),
)
def test_auto_gives_the_batches_of_0_workers(
    eager: None, n: int, batch_size: int, shuffle: bool, drop_last: bool, in_order: bool,
    generator: bool,
) -> None:
    """Property: whatever the turns, every item once, and (in order) the order of
    num_workers=0; with in_order=False, the same batches."""
    def make(workers: Any) -> DataLoader[Any]:
        sampler = (i for i in range(n)) if generator else None
        return DataLoader(range(n), batch_size=batch_size, shuffle=shuffle and not generator,
                          drop_last=drop_last, seed=3, sampler=sampler, num_workers=workers,
                          in_order=in_order)

    expected = [b.tolist() for b in make(0)]
    got = [b.tolist() for b in make("auto")]
    assert (got if in_order else sorted(got)) == (expected if in_order else sorted(expected))


@pytest.mark.parametrize("stop", [1, 5, 11, 23])
def test_resume_is_exact_across_an_auto_tuned_epoch(eager: None, stop: int) -> None:
    def make() -> DataLoader[Any]:
        return DataLoader(range(100), batch_size=4, shuffle=True, seed=5, num_workers="auto")

    expected = [b.tolist() for b in make()]
    first = make()
    it = iter(first)
    head = [next(it).tolist() for _ in range(stop)]
    state = first.state_dict()
    del it
    again = make()
    again.load_state_dict(state)
    assert head + [b.tolist() for b in again] == expected
    assert (again.stats.autotune or "").startswith("chose ")


def test_the_choice_is_kept_and_persistent_workers_are_the_chosen_ones(
    eager: None, no_leaks: None,
) -> None:
    with DataLoader(Slow(60), batch_size=4, shuffle=True, seed=1, num_workers="auto",
                    persistent_workers=True) as dl:
        reference = DataLoader(Slow(60), batch_size=4, shuffle=True, seed=1)
        first = [b.tolist() for b in dl]
        assert "chosen by num_workers='auto'" in dl.stats.executor
        chosen = dl._executors.tuned
        assert chosen is not None
        assert chosen.num_workers != "auto"
        workers = dl._executors.persistent
        assert (workers is not None) == (chosen.num_workers > 0)
        second = [b.tolist() for b in dl]
        assert dl._executors.persistent is workers
        assert [first, second] == [[b.tolist() for b in reference] for _ in range(2)]
        assert "chosen by" not in dl.stats.executor


def test_leaving_mid_trial_leaks_nothing_and_the_next_epoch_tunes_again(
    eager: None, no_leaks: None,
) -> None:
    dl = DataLoader(Slow(200), batch_size=2, num_workers="auto")
    for seq, _ in enumerate(dl):
        if seq == 6:
            break
    assert dl._executors.tuned is None
    assert flat(dl) == list(range(200))
    assert dl._executors.tuned is not None


def test_a_data_error_in_a_worker_trial_is_raised_as_with_0_workers(eager: None) -> None:
    class Failing(Slow):
        def __getitem__(self, i: int) -> int:
            if i == 37:
                raise ValueError("bad item 37")
            return super().__getitem__(i)

    got: list[int] = []
    loader = DataLoader(Failing(100), batch_size=2, num_workers="auto")
    with pytest.raises(ValueError, match="bad item 37"):
        got.extend(x for batch in loader for x in batch.tolist())
    assert got == list(range(36))


def test_a_sequential_sampler_of_ours_still_resumes(eager: None) -> None:
    dl = DataLoader(Slow(30), batch_size=3, sampler=SequentialSampler(30), num_workers="auto")
    assert flat(dl) == list(range(30))


def test_stage_timings_of_every_turn_reach_the_stats(
    eager: None, no_leaks: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Inline and thread turns time their stages on the loader's work, not in an executor."""
    monkeypatch.setattr(autotune.decision, "candidates", lambda cpus=None: POOL[:2])
    dl = DataLoader(Slow(120), batch_size=2, num_workers="auto")
    got = []
    for batch in dl:
        got += batch.tolist()
        if len(got) == 100:
            assert dl.stats.stages["fetch"] > 0  # mid-epoch: read through the executor
    assert got == list(range(120))


def test_the_cost_is_what_the_choice_would_have_saved_on_the_tuning_batches() -> None:
    trials = (Trial(Candidate(0), 10, 2.0), Trial(THREADS2, 10, 1.0))
    choice = Choice(THREADS2, trials, "fastest", tuning_batches=25, tuning_s=3.0)
    assert choice.cost_s == pytest.approx(0.5)
    assert "(~0.50 s more than num_workers=2 (threads) alone)" in str(choice)
    assert Choice(PROCS2, trials, "?", 5, 1.0).cost_s is None


class CrashesInWorkers(Slow):
    """Item 7 kills a worker process (as a segfault would); in the main process it raises."""

    main = os.getpid()

    def __getitem__(self, i: int) -> int:
        if i == 7:
            if os.getpid() != self.main:
                os._exit(3)
            raise ValueError("item 7 would have crashed the main process")
        return super().__getitem__(i)


def test_a_worker_crash_in_a_trial_raises_and_is_not_rerun_in_the_main_process(
    eager: None, no_leaks: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(autotune.decision, "candidates", lambda cpus=None: [Candidate(0), PROCS2])
    loader = DataLoader(CrashesInWorkers(40), batch_size=2, num_workers="auto")
    with pytest.raises(WorkerError) as raised:
        list(loader)
    assert raised.value.exitcode == 3


def test_a_short_epoch_of_slow_batches_still_tries_every_candidate() -> None:
    """W8 --quick: 13 batches of ~0.16 s inline. Each worker candidate takes its share of the
    batches left (they are delivered, and the choice serves the later epochs) instead of being
    left untried, which chose num_workers=0 at half the speed of the workers."""
    tuner = Tuner(POOL, epoch_batches=13, persistent=False)
    tuner.record(Trial(Candidate(0), 2, 0.32, 0.2, 3, wall_s=0.52))
    shares = []
    while (step := tuner.next_step()) is not None:
        assert step.candidate != Candidate(0)
        shares.append(step.min_batches)
        tuner.record(trial(step.candidate, 0.08, batches=step.min_batches - 2))
    assert shares == [4, 6]  # 10 batches left: 5 each, a multiple of the 2 workers; then 6
    assert tuner.delivered == 13
    assert tuner.choice().candidate in (THREADS2, PROCS2)


def test_a_candidate_is_left_untried_only_when_it_cannot_be_measured() -> None:
    tuner = Tuner(POOL, epoch_batches=7, persistent=False)
    tuner.record(Trial(Candidate(0), 2, 0.32, 0.2, 3, wall_s=0.52))
    step = tuner.next_step()  # 4 batches left: 2 each is too few to measure two workers
    assert step is not None
    assert (step.candidate, step.min_batches) == (PROCS2, 2 + autotune.decision.TRIAL_EXTRA_MIN)
    tuner.record(trial(step.candidate, 0.08, batches=2))
    assert tuner.next_step() is None
    assert "num_workers=2 (threads): not tried: too few batches left" in str(tuner.choice())
