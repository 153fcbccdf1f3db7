"""The executor of ``num_workers="auto"``'s first epoch: the candidates take turns on slices of
the epoch's one task stream, then the choice runs the rest (see the package doc)."""

from __future__ import annotations

import dataclasses
import io
import pickle
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import WorkerError
from ..transport import Executor, InlineExecutor, make_executor
from ..transport.factory import choose_start_method
from . import decision
from .decision import Candidate, Choice, Step, Trial, Tuner


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
        if self.exhausted or (step.max_batches is not None and taken >= step.max_batches):
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
        work: Any = None,
    ) -> None:
        self._make, self._tuner, self._on_choice, self._clock = make, tuner, on_choice, clock
        self._work = work  # inline and thread candidates time their stages on it
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
            if isinstance(e, WorkerError) and e.exitcode is not None:
                raise  # a worker died on this data (a crash): in the main process it would too
            # The candidate could not run this work (unpicklable, failed to start) or the task
            # stream failed: what it took and did not deliver runs inline, which raises the
            # error again if it is the data's own.
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
        for executor in (self._work, *self._live.values(), self.chosen):
            timings = getattr(executor, "take_timings", None) or getattr(
                executor, "stage_timings", None)
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
    tuner = Tuner(
        decision.candidates(), epoch_batches=epoch_batches, persistent=opts.persistent_workers,
        startup_guess=lambda c: startup_guess(loader, c),
    )
    return AutoExecutor(make, tuner, on_choice, work=loader.work)


def startup_guess(loader: Any, candidate: Candidate) -> float:
    """A rough start-up of ``candidate`` for ``loader`` before trying it: processes pay a start
    per worker (fork is fast, spawn and forkserver re-import) and, under spawn and forkserver,
    for a large plain list, the compact copy of every item before the workers start (estimated
    by pickling a sample of them; under fork the copy is made while the workers already serve,
    NOTE [ Compact copy in the background ] in ``transport/compact_stage.py``)."""
    if candidate.worker_type != "process" or candidate.num_workers == 0:
        return 0.0
    method = choose_start_method(loader.options.mp_context)
    fork = method == "fork"
    guess = decision.FORK_START_S * candidate.num_workers if fork else decision.SPAWN_START_S
    if fork:
        return guess
    from ..sources.compact import COMPACT_MIN_ITEMS

    data: Any = getattr(getattr(loader.work, "source", None), "data", None)
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
