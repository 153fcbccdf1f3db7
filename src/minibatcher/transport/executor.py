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

from .._typing import Allocator

Task = tuple[Any, ...]
Result = tuple[int, Any]

DENSE_SAMPLES = 16
"""The inline executor times the stages of 1 batch in 16 for this many samples..."""
SPARSE = 4
"""...then of 1 batch in 64 (each sample then weighing 4): cheaper on long epochs."""


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


class InlineExecutor:
    """Runs the work in the calling thread (``num_workers=0``): no overhead, no concurrency."""

    def __init__(self, work: Callable[..., Any], allocate: Allocator | None = None) -> None:
        self.work = work
        self.allocate = allocate

    def run(self, tasks: Iterator[Task]) -> Iterator[Result]:
        work = self.work
        allocate = self.allocate
        every = getattr(work, "stage_sample_every", 0)
        if every:
            # BatchWork: time the stages of the first task of every ``every`` (``timed``), then
            # of every ``SPARSE * every`` after ``DENSE_SAMPLES`` samples; the others come
            # through ``islice`` and pay no per-batch test (NOTE in profile.py).
            timed, untimed = work.timed, work.untimed  # type: ignore[attr-defined]
            tasks = iter(tasks)
            for samples, task in enumerate(tasks):
                weight = 1 if samples < DENSE_SAMPLES else SPARSE
                yield task[1], timed(task, allocate, weight)
                for task in itertools.islice(tasks, every * weight - 1):  # the same iterator
                    yield task[1], untimed(task, allocate)
        elif allocate is None:
            for task in tasks:
                yield task[1], work(task)
        else:
            for task in tasks:
                yield task[1], work(task, allocate)

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return "InlineExecutor()"
