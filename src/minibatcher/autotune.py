"""``num_workers="auto"``: choose the executor by measuring it on the epoch's own first batches.

In: a factory that builds an executor for a candidate ``(num_workers, worker_type)`` and the
tasks of the first epoch. Out: an executor (:class:`AutoExecutor`) that delivers that epoch
while measuring, then a :class:`Choice` handed to the loader, which keeps it for later epochs
(``dl.stats.autotune`` shows it). State: the trials of the epoch being tuned.

Why nothing is lost and nothing changes: a task is ``(epoch, seq, keys, items)``, decided by the
main process from ``(seed, epoch)``; executors only run the work, so a batch is the same
whichever executor runs it. The candidates take turns on *consecutive slices of the one task
stream* of the epoch: every task is pulled once, by one executor, and its batch is delivered.
A slice is drained before the next candidate starts, so batches arrive in order (and each
exactly once with ``in_order=False``). A single-pass sampler or stream is read once, as with
``num_workers=0``; resume is exact because trial batches are ordinary, delivered batches.

Because trial batches are real ones, a trial costs only what its candidate is slower than the
best, plus its start-up: measuring a near-best candidate longer is nearly free, a slow one is
cut short. Steps (:class:`Tuner`, fed measurements, so the decision is tested without timing):

1. inline (``num_workers=0``) for a few batches (the first is a warm-up). Batches under
   :data:`CHEAP_BATCH_S` stay inline: moving them to workers would cost more than they do.
2. each worker candidate for a time box, so that all trials together take about
   :data:`TUNE_SHARE` of the epoch (estimated from the inline rate). A candidate whose start-up
   alone would exceed that (spawned processes, a large list to copy compactly for processes)
   is not tried, and the report says so.
3. the choice: the candidate with the shortest estimated epoch (its rate, plus its start-up
   unless workers persist); the simplest within :data:`PREFER_SIMPLER` of it. The chosen
   executor goes on with the rest of the epoch (the one just measured is kept alive, others
   restart), so the epoch is never re-run.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .transport import Executor, InlineExecutor, make_executor
from .transport.factory import choose_start_method

TUNE_SHARE = 0.05
"""Trials together take about this share of the epoch's estimated time (at best 1/20)."""
CHEAP_BATCH_S = 200e-6
"""Inline batches faster than this are not worth sending to workers."""
INLINE_BATCHES = 3
"""Inline batches measured at least (the first is a warm-up) ..."""
INLINE_S = 0.05
"""... and for at least this long, up to :data:`INLINE_MAX_BATCHES`."""
INLINE_MAX_BATCHES = 64
TRIAL_EXTRA = 4
"""A worker candidate is measured on at least ``num_workers`` + this many batches."""
TRIAL_MIN_S, TRIAL_MAX_S = 0.01, 2.0
"""Bounds of a worker candidate's time box."""
UNKNOWN_EPOCH_S = 10.0
"""The epoch length assumed to size the trials of data without ``len()``."""
PREFER_SIMPLER = 1.03
"""A simpler candidate (fewer workers, threads before processes) within this of the best wins:
it costs less memory and start-up, and the measured difference is within the noise."""
FORK_START_S, SPAWN_START_S = 0.02, 0.5
"""Guessed start-up per process start (fork; spawn or forkserver), to skip hopeless trials."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """An executor configuration to try."""

    num_workers: int
    worker_type: str = "process"

    def __str__(self) -> str:
        if self.num_workers == 0:
            return "num_workers=0"
        kind = "threads" if self.worker_type == "thread" else "processes"
        return f"num_workers={self.num_workers} ({kind})"


@dataclasses.dataclass(frozen=True)
class Trial:
    """One candidate's measurement on a slice of the epoch."""

    candidate: Candidate
    batches: int
    """Batches the steady-state rate was measured on (after each worker's first)."""
    seconds: float
    """Seconds for those batches."""
    startup_s: float = 0.0
    """Seconds from the candidate's turn to its first batch (start-up and pipeline fill)."""
    delivered: int = 0
    """Batches it delivered in its turn."""
    error: str | None = None
    """Why it was not measured (failed or not tried); None if it was."""

    @classmethod
    def from_stamps(cls, candidate: Candidate, start: float, stamps: Sequence[float]) -> Trial:
        """The trial of batches delivered at ``stamps`` after the turn began at ``start``.

        The rate counts from the moment each worker has delivered its first batch: until then
        the workers ran in parallel with the wait for the first one (the fill), and counting
        those batches would flatter workers, threads most of all.
        """
        k = max(1, candidate.num_workers)
        if len(stamps) <= k:
            return cls(candidate, 0, 0.0, 0.0, len(stamps), "too few batches to measure")
        return cls(
            candidate, len(stamps) - k, stamps[-1] - stamps[k - 1], stamps[0] - start, len(stamps)
        )

    @property
    def batches_per_s(self) -> float:
        """Steady-state rate; 0 for a failed trial."""
        if self.error is not None or self.seconds <= 0:
            return 0.0
        return self.batches / self.seconds

    def epoch_estimate(self, epoch_batches: int, startup_each_epoch: bool) -> float:
        """Estimated seconds per epoch of ``epoch_batches`` with this candidate."""
        rate = self.batches_per_s
        if rate <= 0:
            return float("inf")
        return (self.startup_s if startup_each_epoch else 0.0) + epoch_batches / rate


@dataclasses.dataclass(frozen=True)
class Choice:
    """The candidate kept, and why (``dl.stats.autotune``)."""

    candidate: Candidate
    trials: tuple[Trial, ...]
    reason: str
    tuning_batches: int = 0
    """Batches of the epoch delivered while measuring (all of them ordinary batches)."""
    tuning_s: float = 0.0
    """Seconds those batches took."""

    def __str__(self) -> str:
        tried = "; ".join(
            f"{t.candidate}: {t.error}" if t.error else
            f"{t.candidate}: {t.batches_per_s:,.1f} batches/s, start-up {t.startup_s * 1e3:.0f} ms"
            for t in self.trials
        )
        return (
            f"chose {self.candidate} ({self.reason}); measured on the epoch's first "
            f"{self.tuning_batches} batches in {self.tuning_s:.2f} s: {tried}"
        )


def candidates(cpus: int | None = None) -> list[Candidate]:
    """0, then threads and processes with 2 and with ``cpus`` workers (none on one CPU)."""
    cpus = cpus if cpus is not None else len(_usable_cpus())
    counts = sorted({n for n in (2, cpus) if 2 <= n <= cpus})
    found = [Candidate(0)]
    for kind in ("thread", "process"):
        found += [Candidate(n, kind) for n in counts]
    return found


def _usable_cpus() -> Sequence[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return range(os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class Step:
    """A candidate's turn: at least ``min_batches`` batches (a multiple of ``multiple``) and
    at least ``seconds``, at most ``max_batches``."""

    candidate: Candidate
    min_batches: int
    seconds: float
    multiple: int = 1
    max_batches: int | None = None


class Tuner:
    """The decision, fed measurements: which candidate next, for how long, and the choice.

    ``startup_guess`` predicts a candidate's start-up before it is tried (see the module doc).
    """

    def __init__(
        self,
        pool: Sequence[Candidate],
        *,
        epoch_batches: int | None,
        persistent: bool,
        startup_guess: Callable[[Candidate], float] | None = None,
    ) -> None:
        self.pool = list(pool)
        self.epoch_batches = epoch_batches
        self.persistent = persistent
        self.startup_guess = startup_guess or (lambda c: 0.0)
        self.trials: dict[Candidate, Trial] = {}
        self.delivered = 0
        self.budget_s = 0.0
        """Seconds for all worker trials together, set once inline is measured."""
        self._note = ""

    def record(self, trial: Trial) -> None:
        """Add a candidate's measurement."""
        self.trials[trial.candidate] = trial
        self.delivered += trial.delivered
        if trial.candidate.num_workers == 0 and trial.error is None and trial.batches:
            self.budget_s = TUNE_SHARE * self._epoch_estimate_s(1 / trial.batches_per_s)

    def _epoch_estimate_s(self, inline_per_batch: float) -> float:
        """The epoch's seconds if the most workers scaled perfectly (a lower bound)."""
        if self.epoch_batches is None:
            return UNKNOWN_EPOCH_S
        speedup = max(1, max(c.num_workers for c in self.pool))
        return self.epoch_batches * inline_per_batch / speedup

    def next_step(self) -> Step | None:
        """The next candidate's turn, or None when it is time to choose."""
        inline = self.pool[0]
        if inline not in self.trials:
            return Step(inline, INLINE_BATCHES, INLINE_S, 1, INLINE_MAX_BATCHES)
        first = self.trials[inline]
        if first.error is not None or first.batches_per_s <= 0:
            return None
        if 1 / first.batches_per_s < CHEAP_BATCH_S:
            self._note = (
                f"batches take {1e6 / first.batches_per_s:.0f} us inline: too cheap to send "
                "to workers"
            )
            return None
        workers = [c for c in self.pool[1:]]
        box = min(max(self.budget_s / max(1, len(workers)), TRIAL_MIN_S), TRIAL_MAX_S)
        for c in workers:
            if c in self.trials:
                continue
            least = c.num_workers + TRIAL_EXTRA
            if self.epoch_batches is not None and self.delivered + 2 * least > self.epoch_batches:
                self.trials[c] = Trial(c, 0, 0.0, error="not tried: too few batches left")
                continue
            guess = self.startup_guess(c)
            if guess > max(self.budget_s, TRIAL_MIN_S):
                self.trials[c] = Trial(
                    c, 0, 0.0, error=f"not tried: start-up ~{guess:.2f} s would exceed the "
                    f"{self.budget_s:.2f} s set for trials"
                )
                continue
            return Step(c, least, box, c.num_workers)
        return None

    def choice(self, tuning_s: float = 0.0) -> Choice:
        """The candidate with the shortest estimated epoch; the simplest near it."""
        ordered = [self.trials[c] for c in self.pool if c in self.trials]
        measured = [t for t in ordered if t.error is None and t.batches_per_s > 0]
        if not measured:
            return Choice(self.pool[0], tuple(ordered), "nothing could be measured",
                          self.delivered, tuning_s)
        n = self.epoch_batches if self.epoch_batches is not None else 1000
        startup = not self.persistent
        best = min(t.epoch_estimate(n, startup) for t in measured)
        chosen = next(t for t in measured if t.epoch_estimate(n, startup) <= best * PREFER_SIMPLER)
        inline = self.trials.get(self.pool[0])
        if self._note:
            reason = self._note
        else:
            reason = "fastest"
            if inline is not None and chosen is not inline and inline.batches_per_s > 0:
                speedup = inline.epoch_estimate(n, False) / chosen.epoch_estimate(n, startup)
                reason += f", {speedup:.1f}x inline"
            reason += f", estimated for {n} batches per epoch"
        return Choice(chosen.candidate, tuple(ordered), reason, self.delivered, tuning_s)


class _Gate:
    """Hands a candidate the epoch's tasks for its turn (:class:`Step`), remembering the ones
    not yet delivered (run inline if the candidate fails) and an error of the task stream."""

    def __init__(self, tasks: Iterator[Any], step: Step, clock: Callable[[], float]) -> None:
        self.tasks, self.step, self.clock = tasks, step, clock
        self.deadline = clock() + step.seconds
        self.taken = 0
        self.pending: dict[int, Any] = {}
        self.exhausted = False
        self.failed: Exception | None = None

    def __iter__(self) -> _Gate:
        return self

    def __next__(self) -> Any:
        step, taken = self.step, self.taken
        if self.exhausted or step.max_batches is not None and taken >= step.max_batches:
            raise StopIteration
        if taken >= step.min_batches and taken % step.multiple == 0 and (
            self.clock() >= self.deadline
        ):
            raise StopIteration
        try:
            task = next(self.tasks)
        except StopIteration:
            self.exhausted = True
            raise
        except Exception as e:
            self.failed = e
            raise
        self.taken += 1
        self.pending[task[1]] = task
        return task


class AutoExecutor:
    """Delivers an epoch while measuring the candidates on it, then runs the rest with the
    choice (see the module doc). ``on_choice(choice, executor)`` tells the loader; it returns
    True when it keeps ``executor`` (persistent workers), which ``close()`` then leaves alive.
    """

    def __init__(
        self,
        make: Callable[[Candidate], Executor],
        tuner: Tuner,
        on_choice: Callable[[Choice, Executor], bool],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._make, self._tuner, self._on_choice, self._clock = make, tuner, on_choice, clock
        self._live: dict[Candidate, Executor] = {}
        self._kept: Executor | None = None
        self.chosen: Executor | None = None

    def run(self, tasks: Iterator[Any]) -> Iterator[tuple[int, Any]]:
        """Yield ``(seq, batch)`` for every task, in order (unless ``in_order=False``)."""
        tasks = iter(tasks)
        tuner, start = self._tuner, self._clock()
        step = tuner.next_step()
        ended = False
        while step is not None and not ended:
            gate = _Gate(tasks, step, self._clock)
            yield from self._turn(gate)
            ended = gate.exhausted
            step = tuner.next_step()
        choice = tuner.choice(self._clock() - start)
        executor = self._live.pop(choice.candidate, None) or self._make(choice.candidate)
        self._close_live()
        self.chosen = executor
        if self._on_choice(choice, executor):
            self._kept = executor
        if not ended:
            yield from executor.run(tasks)

    def _turn(self, gate: _Gate) -> Iterator[tuple[int, Any]]:
        candidate, clock = gate.step.candidate, self._clock
        start = clock()
        stamps: list[float] = []
        try:
            executor = self._live.get(candidate) or self._make(candidate)
            self._live[candidate] = executor
            for seq, batch in executor.run(gate):
                stamps.append(clock())
                del gate.pending[seq]
                yield seq, batch
        except Exception as e:
            if candidate.num_workers == 0 and gate.failed is None:
                raise
            # The candidate could not run this work (or the task stream failed): what it took
            # and did not deliver runs inline, which raises the error if it is the data's own.
            self._close(candidate)
            if gate.failed is None:
                self._tuner.record(Trial(candidate, 0, 0.0, delivered=len(stamps),
                                         error=f"{type(e).__name__}: {e}"))
            inline = self._make(Candidate(0))
            yield from inline.run(iter(sorted(gate.pending.values(), key=lambda t: t[1])))
            if gate.failed is not None:
                raise gate.failed from None
            return
        self._tuner.record(Trial.from_stamps(candidate, start, stamps))

    def _close(self, candidate: Candidate) -> None:
        executor = self._live.pop(candidate, None)
        if executor is not None:
            executor.close()

    def _close_live(self) -> None:
        for candidate in list(self._live):
            self._close(candidate)

    def stage_timings(self) -> dict[str, float]:
        """The stage timings of every executor run so far (``dl.stats``)."""
        merged: dict[str, float] = {}
        for executor in (*self._live.values(), self.chosen):
            timings = getattr(executor, "stage_timings", None)
            if callable(timings):
                for key, value in timings().items():
                    merged[key] = merged.get(key, 0.0) + value
        return merged

    def close(self) -> None:
        """Close every executor started, except the one the loader kept."""
        self._close_live()
        chosen, self.chosen = self.chosen, None
        if chosen is not None and chosen is not self._kept:
            chosen.close()

    def __repr__(self) -> str:
        chosen = self.chosen
        return f"{chosen!r} (num_workers='auto')" if chosen is not None else (
            "AutoExecutor(measuring)")


def for_loader(loader: Any, on_choice: Callable[[Choice, Executor], bool]) -> AutoExecutor:
    """The executor of ``loader``'s first epoch with ``num_workers="auto"``.

    Candidates are built like the loader's own executor (same work, seed and options), never
    persistent themselves: the loader keeps the chosen one when ``persistent_workers=True``.
    """
    opts = loader.options

    def make(candidate: Candidate) -> Executor:
        if candidate.num_workers == 0:
            return InlineExecutor(loader.work)
        return make_executor(loader.work, _replaced(opts, candidate), loader.seed)

    try:
        epoch_batches: int | None = len(loader)
    except TypeError:
        epoch_batches = None
    tuner = Tuner(candidates(), epoch_batches=epoch_batches, persistent=opts.persistent_workers,
                  startup_guess=lambda c: startup_guess(loader, c))
    return AutoExecutor(make, tuner, on_choice)


def startup_guess(loader: Any, candidate: Candidate) -> float:
    """A rough start-up of ``candidate`` for ``loader`` before trying it: processes pay a start
    per worker (fork is fast, spawn and forkserver re-import) and, for a large plain list, the
    compact copy of every item (estimated by pickling a sample of them)."""
    if candidate.worker_type != "process" or candidate.num_workers == 0:
        return 0.0
    method = choose_start_method(loader.options.mp_context)
    guess = FORK_START_S * candidate.num_workers if method == "fork" else SPAWN_START_S
    from .sources.compact import COMPACT_MIN_ITEMS

    data = getattr(getattr(loader.work, "source", None), "data", None)
    if type(data) in (list, tuple) and len(data) >= COMPACT_MIN_ITEMS:
        sample = data[:: max(1, len(data) // 64)][:64]
        t0 = time.perf_counter()
        try:
            pickle.dump(sample, io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            return guess
        guess += 4 * (time.perf_counter() - t0) / len(sample) * len(data)
    return guess


def _replaced(options: Any, candidate: Candidate) -> Any:
    return dataclasses.replace(
        options, num_workers=candidate.num_workers, worker_type=candidate.worker_type,
        persistent_workers=False,
    )


def tuned_options(options: Any, choice: Choice) -> Any:
    """``options`` with ``num_workers="auto"`` replaced by the choice."""
    workers = choice.candidate.num_workers
    return dataclasses.replace(
        options, num_workers=workers, worker_type=choice.candidate.worker_type,
        persistent_workers=options.persistent_workers and workers > 0,
    )
