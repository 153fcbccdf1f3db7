"""The executor protocol: tasks in, ``(seq, batch)`` results out.

An executor runs :class:`~minibatcher.work.BatchWork` on a stream of tasks. Inline (here),
thread and process executors share this one interface, so the loader never branches on the kind
of worker. Results come back in task order unless the executor was built with ``in_order=False``,
in which case each result carries its ``seq`` so the loader can still account for it exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any, Protocol

Task = tuple[Any, ...]
Result = tuple[int, Any]

SAMPLE_FIRST_EVERY = 4
"""The inline executor times the stages of the first task of every 4 at first (``dl.stats``),"""
SAMPLE_DOUBLING = 8
"""doubles that interval after every 8 samples,"""
SAMPLE_MAX_EVERY = 256
"""up to one task in 256; each sample weighs the tasks it stands for."""


def sample_interval(samples: int) -> int:
    """The interval after ``samples`` samples: 4, then 8, 16, ..., 128 (8 samples each), then 256.

    Short epochs get enough samples, long ones pay for few (NOTE [ Sampled bookkeeping ] in
    ``profile.py``)."""
    return min(SAMPLE_FIRST_EVERY << (samples // SAMPLE_DOUBLING), SAMPLE_MAX_EVERY)


class Executor(Protocol):
    """Runs the work of each task and yields ``(seq, batch)``.

    Optional: ``stage_timings() -> dict[str, float]``, the stage timings its workers sampled
    since the last call (``BatchWork.take_timings`` plus ``"transport"``), for ``dl.stats``;
    an executor without it shares the loader's ``BatchWork``, whose timings are read directly.
    """

    def run(self, tasks: Iterator[Task]) -> Iterator[Result]:
        """Yield one ``(seq, batch)`` per task; stop when the tasks do."""
        ...

    def close(self) -> None:
        """Release every resource (workers, shared memory). Idempotent."""
        ...


class WorkerRuns:
    """What the thread and process executors share: how a run starts and when it is stale.

    A run is one ``run(tasks)`` call. Workers start lazily, with the first task's epoch (so they
    seed themselves for it), and each run gets a new id: results of an abandoned run are told
    apart, and an iterator whose run was superseded or whose executor was closed stops loudly.
    """

    closed: bool = False
    _run_id: int = 0

    def _workers_started(self) -> bool:
        raise NotImplementedError

    def _start(self, epoch: int) -> None:
        raise NotImplementedError

    def _begin(
        self, tasks: Iterator[Task], start: bool = True
    ) -> tuple[Iterator[Task], Task, int] | None:
        """``(tasks, first task, run id)``, the workers started (unless ``start`` is False: the
        caller starts them); None when there is no task."""
        if self.closed:
            raise RuntimeError("this executor was closed; create a new loader iterator")
        tasks = iter(tasks)
        first = next(tasks, None)
        if first is None:
            return None
        if start and not self._workers_started():
            self._start(first[0])
        self._run_id += 1
        return tasks, first, self._run_id

    def _check_current(self, run: int) -> None:
        """Raise if run ``run`` was superseded by a newer one or the executor closed."""
        if self.closed or self._run_id != run:
            raise RuntimeError("this iteration was superseded by a newer one or closed")


class InlineExecutor:
    """Runs the work in the calling thread (``num_workers=0``): no overhead, no concurrency."""

    def __init__(self, work: Callable[..., Any]) -> None:
        self.work = work

    def run(self, tasks: Iterator[Task]) -> Iterator[Result]:
        work = self.work
        every = getattr(work, "stage_sample_every", 0)
        if every:
            # BatchWork: time the stages of the first task of every ``sample_interval`` tasks
            # (``timed``); the others come through ``islice`` and pay no per-batch test.
            timed, untimed = work.timed, work.untimed  # type: ignore[attr-defined]
            tasks = iter(tasks)
            for samples, task in enumerate(tasks):
                interval = sample_interval(samples)
                yield task[1], timed(task, None, interval)
                for task in itertools.islice(tasks, interval - 1):  # the same iterator
                    yield task[1], untimed(task, None)
        else:
            for task in tasks:
                yield task[1], work(task)

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return "InlineExecutor()"
