"""Recording an epoch: the counts and sampled timings behind ``dl.stats``, written per batch.

In: the loader's delivery loop calls :meth:`EpochRecorder.ready` and
:meth:`EpochRecorder.resumed` on a sample of batches (NOTE [ Sampled bookkeeping ] in
``profile.py`` says which, and why it costs ~1% of the cheapest workload), and every batch of an
``on_error="skip"`` loader passes through :func:`unwrap_skipped`. Out: the raw sums an
:class:`EpochRecorder` holds, which :class:`~minibatcher.profile.Profiler` turns into a frozen
:class:`~minibatcher.profile.LoaderStats`. State: one recorder per epoch.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from time import perf_counter
from typing import Any

from .transport.executor import sample_interval
from .work import STAGES, Skipped, SkippedItem


def batch_length(batch: Any) -> int | None:
    """The number of items in a collated batch: the length of its first leaf, if it has one."""
    if isinstance(batch, Mapping):
        for value in batch.values():
            return batch_length(value)
        return None
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        for field in dataclasses.fields(batch):
            return batch_length(getattr(batch, field.name))
        return None
    if isinstance(batch, tuple):  # a tuple (or namedtuple) of fields: each holds every item
        return batch_length(batch[0]) if batch else None
    shape = getattr(batch, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) else None
    try:
        return len(batch)
    except TypeError:
        return None


class EpochRecorder:
    """The timings and counts of one epoch, written by the loader's delivery loop.

    ``delivered`` reads the number of batches the user has received (the resume counter).
    ``batch_size`` is None where sizes vary: then ``sample_at`` is -1, :meth:`ready` is called
    for every batch and counts items itself.
    """

    __slots__ = (
        "batch_size",
        "between_n",
        "between_s",
        "delivered",
        "empty",
        "epoch",
        "executor",
        "first_batch_s",
        "interval",
        "items",
        "last_len",
        "lead_seq",
        "leading",
        "pairs",
        "sample_at",
        "skipped",
        "stages",
        "start",
        "t_asked",
        "t_begin",
        "t_end",
        "t_yield",
        "wait_n",
        "wait_s",
    )

    def __init__(
        self,
        epoch: int,
        start: int,
        delivered: Callable[[], int],
        batch_size: int | None,
        executor: str,
    ) -> None:
        self.epoch = epoch
        self.start = start
        self.delivered = delivered
        self.batch_size = batch_size
        self.interval = sample_interval(0) if batch_size is not None else 0
        self.pairs = 0
        self.sample_at = start if batch_size is not None else -1
        """The loop samples the batches ``seq >= sample_at``; -1: all of them."""
        self.leading = True
        self.lead_seq = start
        self.executor = executor
        self.items = 0  # counted only where sizes vary
        self.last_len: int | None = None
        self.between_s = self.wait_s = self.t_asked = 0.0
        self.between_n = self.wait_n = 0  # samples, each weighing ``weight`` batches
        self.first_batch_s: float | None = None
        self.skipped: list[SkippedItem] = []  # on_error="skip": the items left out
        self.empty = 0  # batches all of whose items were left out (not handed over)
        self.stages: dict[str, float] = dict.fromkeys(
            ("samples", *STAGES, "transport", "transport_samples"), 0.0
        )
        self.t_begin = perf_counter()
        self.t_yield = 0.0
        self.t_end: float | None = None

    def ready(self, seq: int, batch: Any) -> None:
        """Batch ``seq`` is about to be handed over (called for sampled batches only)."""
        now = self.t_yield = perf_counter()
        if seq == self.start:
            self.first_batch_s = now - self.t_begin
        elif self.t_asked:  # the batch after a sampled one: the loop waited since it asked
            weight = self.interval or 1
            self.wait_s += (now - self.t_asked) * weight
            self.wait_n += weight
        self.t_asked = 0.0
        if self.batch_size is None:
            self.items += batch_length(batch) or 1

    def resumed(self, seq: int) -> int:
        """The consumer asks for the batch after ``seq``: the time since :meth:`ready` was its
        own. Returns the next batch number to sample (the loop samples ``seq >= sample_at``).

        After a sample, the next batch is sampled too: its wait is timed from now. The next
        pair starts ``interval`` batches after this one (``sample_interval``: 4, 8, ..., 128,
        then 256), and each sample weighs the batches its pair stands for.
        """
        now = perf_counter()
        weight = self.interval or 1
        self.between_s += (now - self.t_yield) * weight
        self.between_n += weight
        self.t_asked = now
        if not self.interval:  # every batch is sampled
            return -1
        if self.leading:  # time the wait for the next batch
            self.leading = False
            self.lead_seq = seq
            return seq + 1
        self.t_asked = 0.0
        self.leading = True
        self.sample_at = self.lead_seq + self.interval
        self.pairs += 1
        self.interval = sample_interval(self.pairs)
        return self.sample_at

    def end(self, last_batch: Any) -> None:
        """The epoch's loop is over (finished, left or failed); ``last_batch`` came last."""
        self.t_end = perf_counter()
        if last_batch is not None and self.batch_size is not None and self.batch_size > 1:
            self.last_len = batch_length(last_batch)

    def add_stage_timings(self, timings: Mapping[str, float] | None) -> None:
        """Merge stage timings taken from the work or the executor."""
        if timings:
            for key, value in timings.items():
                self.stages[key] = self.stages.get(key, 0.0) + value

    def counts(self) -> tuple[int, int]:
        """``(batches, items)`` delivered so far in this epoch."""
        batches = max(self.delivered() - self.start - self.empty, 0)
        if self.batch_size is None:
            return batches, self.items
        items = batches * self.batch_size
        if batches and self.last_len is not None:
            items += self.last_len - self.batch_size
        return batches, items


def regular_batch_size(options: Any) -> int | None:
    """The size of every batch but the last (None where sizes vary or batches come out of order:
    then every batch's items are counted, see NOTE [ Sampled bookkeeping ])."""
    if options.batch_sampler is not None or not options.in_order:
        return None
    if getattr(options, "on_error", "raise") == "skip":  # batches lose their failing items
        return None
    return options.batch_size or 1


NO_BATCH: Any = object()
"""What :func:`unwrap_skipped` returns for a batch all of whose items were left out."""


def unwrap_skipped(
    rec: EpochRecorder, finish: Callable[[Any, int, int], Any] | None
) -> Callable[[Any, int, int], Any]:
    """The loader's per-batch step with ``on_error="skip"``: unwrap a
    :class:`~minibatcher.work.Skipped` batch, list its items in the epoch's record (a
    one-line warning at the epoch's first), then ``finish`` it; :data:`NO_BATCH` if empty."""

    def unwrap(batch: Any, epoch: int, seq: int) -> Any:
        if type(batch) is Skipped:
            if not rec.skipped:
                first = batch.items[0]
                warnings.warn(
                    f"epoch {epoch}: skipping items that fail to load (on_error='skip'), first "
                    f"index {first.index}: {first.error}; all of them in dl.stats.skipped",
                    RuntimeWarning, stacklevel=4,
                )
            rec.skipped.extend(batch.items)
            batch = batch.batch
            if batch is None:
                rec.empty += 1
                return NO_BATCH
        return batch if finish is None else finish(batch, epoch, seq)

    return unwrap
