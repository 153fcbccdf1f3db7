"""The decision of ``num_workers="auto"``, fed measurements: which candidate next, for how
long, and which one to keep (see the package doc). No clock, no executor: tested on injected
:class:`Trial` figures."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

TUNE_SHARE = 0.03
"""The budget of the trials: this share of the epoch's time, estimated from the inline rate as
if workers scaled perfectly. The first turns of the workers take about twice this much time
together (their batches are delivered, so they cost much less); more turns are taken while
their cost (time less what the best candidate would have needed) stays within it. At 0.05, W8's
first epoch cost 12-16% more in wall-clock time, where the trials' own estimate said 7-9%: each
turn's fill and drain, and the chosen candidate's fill after the trials, are paid on top."""
STARTUP_SHARE = 0.1
"""A candidate whose guessed start-up exceeds this share of the epoch (estimated as for
:data:`TUNE_SHARE`) is not tried: it would cost more than it could save in a short epoch."""
CHEAP_BATCH_S = 200e-6
"""Inline batches faster than this are not worth sending to workers."""
INLINE_BATCHES = 2
"""Inline batches measured at least (the first is a warm-up; cheap batches are measured for
:data:`INLINE_S`, and an expensive one, W8's 140 ms, is measured well enough alone, where a
third cost W8 ~70 ms more than a worker candidate would have) ..."""
INLINE_S = 0.05
"""... and for at least this long, up to :data:`INLINE_MAX_BATCHES`."""
INLINE_MAX_BATCHES = 64
TRIAL_EXTRA = 4
"""A worker candidate is measured on at least ``num_workers`` + this many batches, or on its
share of the batches left when the epoch is short (fewer, down to ``num_workers`` +
:data:`TRIAL_EXTRA_MIN`): the trial batches are delivered, and the choice also serves the later
epochs, so a short epoch is no reason to leave a candidate untried."""
TRIAL_EXTRA_MIN = 2
TRIAL_MIN_S, TRIAL_MAX_S = 0.02, 2.0
"""Bounds of a worker candidate's time box."""
ROUNDS = 3
"""Turns per candidate at most: after the first pass, the contenders (within :data:`CLOSE` of
the best) take turns again while the budget lasts, their figures summed: a machine's
background load comes and goes, and one short turn could favour whichever ran in a quiet
moment."""
CLOSE = 1.25
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
    wall_s: float = 0.0
    """Seconds of the whole turn (0: ``startup_s + seconds``)."""

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
            candidate, len(stamps) - k, stamps[-1] - stamps[k - 1], stamps[0] - start,
            len(stamps), wall_s=stamps[-1] - start,
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

    @property
    def chosen_trial(self) -> Trial | None:
        """The measurement of the chosen candidate."""
        return next((t for t in self.trials if t.candidate == self.candidate), None)

    @property
    def cost_s(self) -> float | None:
        """What measuring cost: the tuning's seconds less what the chosen candidate would have
        taken for those batches at its measured rate (None if it was not measured)."""
        chosen = self.chosen_trial
        if chosen is None or chosen.batches_per_s <= 0:
            return None
        return max(0.0, self.tuning_s - self.tuning_batches / chosen.batches_per_s)

    def __str__(self) -> str:
        tried = "; ".join(
            f"{t.candidate}: {t.error}" if t.error else
            f"{t.candidate}: {t.batches_per_s:,.1f} batches/s, start-up {t.startup_s * 1e3:.0f} ms"
            for t in self.trials
        )
        cost = self.cost_s
        spent = "" if cost is None else f" (~{cost:.2f} s more than {self.candidate} alone)"
        return (
            f"chose {self.candidate} ({self.reason}); measured on the epoch's first "
            f"{self.tuning_batches} batches in {self.tuning_s:.2f} s{spent}: {tried}"
        )


def candidates(cpus: int | None = None) -> list[Candidate]:
    """0, then processes and threads with 2 and with ``cpus`` workers (none on one CPU).

    Processes go before threads: they are then forked before any thread of ours runs."""
    cpus = cpus if cpus is not None else len(_usable_cpus())
    counts = sorted({n for n in (2, cpus) if 2 <= n <= cpus})
    found = [Candidate(0)]
    for kind in ("process", "thread"):
        found += [Candidate(n, kind) for n in counts]
    return found


def _complexity(c: Candidate) -> tuple[bool, bool, int]:
    """Simpler first: inline, then threads, then processes; fewer workers first."""
    return (c.num_workers > 0, c.worker_type == "process", c.num_workers)


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
        self.epoch_s = 0.0
        """The epoch's seconds if workers scaled perfectly, set once inline is measured."""
        self._turns: list[tuple[float, int]] = []  # (seconds, batches delivered) per turn
        self.turns: dict[Candidate, int] = {}
        self._queue: list[Candidate] = []
        self._last: Candidate | None = None
        self._note = ""

    def record(self, trial: Trial) -> None:
        """Add a candidate's measurement (summed with its earlier turns)."""
        c = self._last = trial.candidate
        self.delivered += trial.delivered
        self.turns[c] = self.turns.get(c, 0) + 1
        self._turns.append((trial.wall_s or trial.startup_s + trial.seconds, trial.delivered))
        old = self.trials.get(c)
        if old is not None and old.error is None and trial.error is None:
            trial = dataclasses.replace(
                old, batches=old.batches + trial.batches, seconds=old.seconds + trial.seconds,
                delivered=old.delivered + trial.delivered,
            )
        self.trials[c] = trial
        if c.num_workers == 0 and self.turns[c] == 1 and trial.error is None and trial.batches:
            self.epoch_s = self._epoch_estimate_s(1 / trial.batches_per_s)

    @property
    def budget_s(self) -> float:
        """Seconds for all worker trials together (0 until inline is measured)."""
        return TUNE_SHARE * self.epoch_s

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
        workers = self.pool[1:]
        box = min(max(2 * self.budget_s / max(1, 2 * len(workers)), TRIAL_MIN_S), TRIAL_MAX_S)
        for c in workers:
            if c in self.trials:
                continue
            least = self._trial_batches(c, [w for w in workers if w not in self.trials])
            if least is None:
                self.trials[c] = Trial(c, 0, 0.0, error="not tried: too few batches left")
                continue
            guess = self.startup_guess(c)
            allowed = STARTUP_SHARE * self.epoch_s
            if guess > max(allowed, TRIAL_MIN_S):
                self.trials[c] = Trial(
                    c, 0, 0.0, error=f"not tried: start-up ~{guess:.2f} s would exceed "
                    f"{allowed:.2f} s, {STARTUP_SHARE:.0%} of the epoch"
                )
                continue
            return Step(c, least, box, c.num_workers)
        return self._next_round(box)

    def _trial_batches(self, c: Candidate, untried: list[Candidate]) -> int | None:
        """The batches of ``c``'s first turn: ``num_workers`` + :data:`TRIAL_EXTRA`, or its
        share of the batches left (a multiple of ``num_workers``); None if too few are left."""
        least = c.num_workers + TRIAL_EXTRA
        if self.epoch_batches is None:
            return least
        share = (self.epoch_batches - self.delivered) // max(1, len(untried))
        least = min(least, share - share % max(1, c.num_workers))
        return least if least >= c.num_workers + min(TRIAL_EXTRA, TRIAL_EXTRA_MIN) else None

    def spent_s(self) -> float:
        """What the turns so far cost: their seconds less what the best candidate measured
        would have taken for their batches (a turn of the best costs only its start-up)."""
        best = max((t.batches_per_s for t in self.trials.values()), default=0.0)
        if best <= 0:
            return 0.0
        return sum(s for s, _ in self._turns) - sum(n for _, n in self._turns) / best

    def _next_round(self, box: float) -> Step | None:
        """Another turn for a contender, while the budget and the epoch last."""
        if self.spent_s() >= self.budget_s:
            return None
        if not self._queue:
            rates = {c: t.batches_per_s for c, t in self.trials.items() if t.batches_per_s > 0}
            best = max(rates.values(), default=0.0)
            contenders = [c for c in self.pool if rates.get(c, 0.0) * CLOSE >= best > 0]
            if len(contenders) < 2 or min(self.turns[c] for c in contenders) >= ROUNDS:
                return None
            if self._last in contenders:  # it goes on first: no switch
                contenders.remove(self._last)
                contenders.insert(0, self._last)
            self._queue = contenders
        c = self._queue.pop(0)
        least = c.num_workers + TRIAL_EXTRA
        if self.epoch_batches is not None and self.delivered + 2 * least > self.epoch_batches:
            return None
        return Step(c, max(1, least), box, max(1, c.num_workers))

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
        simplest_first = sorted(measured, key=lambda t: _complexity(t.candidate))
        chosen = next(
            t for t in simplest_first if t.epoch_estimate(n, startup) <= best * PREFER_SIMPLER
        )
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
