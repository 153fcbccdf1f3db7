"""``num_workers="auto"``: choose the executor by measuring, once, on the loader's own batches.

In: a factory that builds an executor for a candidate ``(num_workers, worker_type)`` and the
first tasks of an epoch. Out: a :class:`Choice`: the candidate that loaded those batches fastest,
with every trial's figures (shown by ``dl.stats``). State: none; the loader keeps the choice.

Why it can never change what is delivered: a task is ``(epoch, seq, indices, items)``, decided
by the main process from ``(seed, epoch)``; executors only run the work. The trials run the same
tasks as the epoch will, discard their batches, and the epoch then runs from its first batch
with the chosen executor.

Candidates (see :func:`candidates`): ``0`` (inline), and threads and processes with 2 workers
and with as many workers as CPUs. Inline goes first; when its batches are so cheap that moving a
batch between workers would cost more (under ``CHEAP_BATCH_S``), workers are not tried at all.
A candidate must beat the simpler ones by ``MARGIN`` to be chosen: a measurement of a few batches
is noisy, and inline loading costs no processes, no memory and no start-up.

The trials run once, when the first epoch starts (``dl.stats.autotune`` lists them); their time
is not part of that epoch's figures. Streams (data without ``len()``) are not measured: trying
them would read the data, and a generator can be read once. "auto" then means 0 workers.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .transport import Executor

TRIAL_BATCHES = 12
"""Batches measured per candidate (plus one per worker: see :func:`measure`)."""
TRIAL_BUDGET_S = 0.5
"""A trial that would take longer inline is cut to fewer batches (keeping 3 more than the
largest number of workers): each trial takes about this long at most."""
CHEAP_BATCH_S = 200e-6
"""Inline batches faster than this are not worth sending to workers."""
MARGIN = 1.10
"""A candidate is kept only if it is this much faster than every simpler one."""
ROUNDS = 2
"""Each candidate is measured this many times, interleaved with the others, and its best trial
kept: a machine's background load comes and goes, and would otherwise favour whichever
candidate ran in a quiet moment."""


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
    """One candidate's measurement."""

    candidate: Candidate
    batches: int
    """Batches the steady-state rate was measured on."""
    startup_s: float
    """Seconds to the first batch (building the executor and starting its workers)."""
    seconds: float
    """Seconds for those batches."""
    error: str | None = None

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
    """The candidate kept, and why."""

    candidate: Candidate
    trials: tuple[Trial, ...]
    reason: str

    def __str__(self) -> str:
        tried = "; ".join(
            f"{t.candidate}: {t.error}" if t.error else
            f"{t.candidate}: {t.batches_per_s:,.0f} batches/s, start-up {t.startup_s * 1e3:.0f} ms"
            for t in self.trials
        )
        return f"chose {self.candidate} ({self.reason}); measured {tried}"


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


def measure(make: Callable[[Candidate], Executor], candidate: Candidate,
            tasks: Sequence[Any]) -> Trial:
    """Run ``tasks`` on a fresh executor for ``candidate``: start-up and steady-state rate.

    The rate is timed from the moment every worker has delivered its first batch: until then
    the workers ran in parallel with the wait for the first one, and counting those batches as
    fast would flatter workers (threads that share the GIL most of all).
    """
    clock = time.perf_counter
    start = clock()
    executor: Executor | None = None
    try:
        executor = make(candidate)
        stamps = [clock() for _ in executor.run(iter(tasks))]
    except Exception as e:  # a candidate that cannot run (unpicklable data...) is skipped
        return Trial(candidate, 0, clock() - start, 0.0, error=f"{type(e).__name__}: {e}")
    finally:
        if executor is not None:
            executor.close()
    skip = min(max(1, candidate.num_workers), len(stamps) - 1)
    return Trial(candidate, len(stamps) - skip, stamps[0] - start, stamps[-1] - stamps[skip - 1])


def choose(
    make: Callable[[Candidate], Executor],
    tasks: Iterable[Any],
    *,
    epoch_batches: int | None,
    persistent: bool,
    options: Sequence[Candidate] | None = None,
) -> Choice:
    """Measure the candidates on the first tasks and keep the fastest (see the module doc).

    ``epoch_batches`` (None: unknown) weighs start-up against the rate, unless ``persistent``
    workers pay their start-up once.
    """
    pool = list(options if options is not None else candidates())
    trial_tasks = list(itertools.islice(tasks, TRIAL_BATCHES + max(c.num_workers for c in pool)))
    if len(trial_tasks) < 2:
        return Choice(Candidate(0), (), "too few batches to measure")
    inline = measure(make, pool[0], trial_tasks)
    per_batch = 1 / inline.batches_per_s if inline.batches_per_s > 0 else float("inf")
    if per_batch < CHEAP_BATCH_S:
        return Choice(pool[0], (inline,),
                      f"batches take {per_batch * 1e6:.0f} us inline: too cheap to send to workers")
    if per_batch * len(trial_tasks) > TRIAL_BUDGET_S:
        least = 3 + max(c.num_workers for c in pool)
        trial_tasks = trial_tasks[: max(least, int(TRIAL_BUDGET_S / per_batch))]
    trials = [inline, *(measure(make, c, trial_tasks) for c in pool[1:])]
    for _ in range(ROUNDS - 1):
        for i, c in enumerate(pool):
            again = measure(make, c, trial_tasks)
            if again.error is None and again.batches_per_s > trials[i].batches_per_s:
                trials[i] = again
    inline = trials[0]
    n = epoch_batches if epoch_batches is not None else 10 * TRIAL_BATCHES
    best = trials[0]
    startup = not persistent
    for trial in trials[1:]:
        if trial.epoch_estimate(n, startup) * MARGIN < best.epoch_estimate(n, startup):
            best = trial
    speedup = inline.epoch_estimate(n, False) / max(best.epoch_estimate(n, startup), 1e-12)
    reason = (
        "fastest" + (f", {speedup:.1f}x inline" if best is not inline else "")
        + f", estimated for {n} batches per epoch"
    )
    return Choice(best.candidate, tuple(trials), reason)


def tune_loader(loader: Any) -> Choice:
    """Measure the candidates on ``loader``'s current epoch (``num_workers="auto"``).

    Trial executors are built like the loader's own (same work, seed and options) but never
    persistent, and are closed before the epoch starts.
    """
    from .sources import StreamSource
    from .transport import InlineExecutor, make_executor

    if isinstance(loader.source, StreamSource):
        return Choice(Candidate(0), (), "data without len() can be read only once: not measured")
    opts = loader.options

    def make(candidate: Candidate) -> Executor:
        if candidate.num_workers == 0:
            return InlineExecutor(loader.work)
        trial = dataclasses.replace(
            opts, num_workers=candidate.num_workers, worker_type=candidate.worker_type,
            persistent_workers=False,
        )
        return make_executor(loader.work, trial, loader.seed)

    try:
        epoch_batches: int | None = len(loader)
    except TypeError:
        epoch_batches = None
    tasks = loader._planner.tasks(loader.epoch, 0)
    try:
        return choose(make, tasks, epoch_batches=epoch_batches, persistent=opts.persistent_workers)
    finally:
        tasks.close()


def tuned_options(options: Any, choice: Choice) -> Any:
    """``options`` with ``num_workers="auto"`` replaced by the choice."""
    workers = choice.candidate.num_workers
    return dataclasses.replace(
        options, num_workers=workers, worker_type=choice.candidate.worker_type,
        persistent_workers=options.persistent_workers and workers > 0,
    )
