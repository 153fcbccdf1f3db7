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

from .decision import (
    CHEAP_BATCH_S,
    PREFER_SIMPLER,
    TUNE_SHARE,
    Candidate,
    Choice,
    Step,
    Trial,
    Tuner,
    candidates,
)
from .executor import AutoExecutor, for_loader, startup_guess, tuned_options

__all__ = [
    "CHEAP_BATCH_S",
    "PREFER_SIMPLER",
    "TUNE_SHARE",
    "AutoExecutor",
    "Candidate",
    "Choice",
    "Step",
    "Trial",
    "Tuner",
    "candidates",
    "for_loader",
    "startup_guess",
    "tuned_options",
]
