"""The delivery loop: one epoch's batches, from the planner's tasks to the user.

In: a :class:`~minibatcher.DataLoader` (its planner, executors, profiler, work, device copy) and
the epoch's :class:`~minibatcher.state.Progress`. Out: the batches, in the order the executor
hands them over. Each batch is recorded as delivered (``progress``, the resume counter) before it
is yielded, and a sample of batches is timed for ``dl.stats`` (NOTE [ Sampled bookkeeping ] in
``profile.py``: most batches cost one integer comparison). State: none of its own; the loader
owns everything this loop touches, and only ``loader.py`` calls it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

from . import state as _state
from .recording import NO_BATCH, regular_batch_size, unwrap_skipped


def deliver(
    loader: Any, epoch: int, start: int, progress: _state.Progress | None = None
) -> Iterator[Any]:
    """Run ``loader``'s epoch from batch ``start``; ``progress`` records what the user received
    (None: ``one_batch()``, which is not an epoch and is not counted in ``dl.stats``)."""
    peek = progress is None  # one_batch(): not an epoch, not counted in dl.stats
    if progress is None:
        progress = _state.Progress(epoch, start)
    executor = loader._executors.for_epoch(loader, peek)
    resumed_above = len(progress.above)  # delivered before a resume: not this run's
    rec = loader._profiler.begin(
        epoch, start, lambda: progress.next_batch + len(progress.above) - resumed_above,
        regular_batch_size(loader.options), executor, loader.work, keep=not peek,
    )
    finish = finish_in_main(loader)
    if loader.options.on_error == "skip":
        finish = unwrap_skipped(rec, finish)
    sample_at = rec.sample_at
    batch = None
    try:
        tasks = loader._planner.tasks(
            epoch, start, progress.domain, frozenset(progress.above), progress
        )
        if peek:  # one batch: a single-pass sampler loses no more than it returns
            tasks = itertools.islice(tasks, 1)
        results = executor.run(tasks)
        if loader._device is not None:
            results = loader._device.run(results)
        if finish is not None and loader.options.on_error == "skip":  # see state.py
            results = _state.past_empty_batches(results, finish, progress, NO_BATCH)
            finish = None
        for _seq, batch in results:
            if finish is not None:
                batch = finish(batch, epoch, _seq)
            # The batch is the user's once yielded: record it first (one compare, one write).
            if _seq == progress.next_batch:
                progress.next_batch = _seq + 1
                if progress.above:
                    progress.advance()
            else:
                progress.above.add(_seq)
            if _seq < sample_at:  # most batches: no timing (NOTE in profile.py)
                yield batch
            else:
                rec.ready(_seq, batch)
                yield batch
                sample_at = rec.resumed(_seq)
        progress.finished = True
    finally:
        rec.end(batch)
        if not peek:
            loader._profiler.collect(loader.work, ended=True)
        loader._executors.done(executor)  # persistent workers outlive the epoch


def finish_in_main(loader: Any) -> Callable[[Any, int, int], Any] | None:
    """For output='jax': convert (and batch-transform) in the main process."""
    if loader._jax_convert is None:
        return None
    convert, work = loader._jax_convert, loader.work

    def finish(batch: Any, epoch: int, seq: int) -> Any:
        return work.apply_batch_transform(convert(batch), epoch, seq)

    return finish
