"""Planning: which batches an epoch has, and the tasks that carry them to the executor.

In: the source, the options, the seed and this rank's shard. Out: for data with ``len()``, an
:class:`~minibatcher.samplers.batch.EpochPlan` (index batches from any batch number on) and the
tasks ``(epoch, seq, keys, None)``; for streams, read here in the main process, the tasks
``(epoch, seq, positions, items)``. State: none of its own; a resumed epoch is described by the
:class:`~minibatcher.state.Progress` passed in (start, batches to skip, elastic domain, and for a
stream with its own ``state_dict()``, the source's state after each batch).

This is where "the main process decides every batch" happens: the executor only runs tasks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import state as _state
from ._seed import BUFFER_STREAM, generator
from .errors import ConfigError
from .options import LoaderOptions
from .samplers import (
    BatchSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    ShardShuffleSampler,
)
from .samplers.batch import EpochPlan, IterablePlan, SlicedPlan, batch_count, chunked
from .samplers.bucket import BucketBatchSampler
from .samplers.shard import Domain, ShardSpec, shard_iter, shard_length, shard_order
from .sources import IndexedSource, StreamSource, shuffle_buffer
from .work import Task


class CountedTasks(Iterator[Task]):
    """An epoch's tasks with how many remain (``operator.length_hint``): the process executor
    makes its last messages smaller, so that the workers finish the epoch together."""

    def __init__(self, tasks: Iterator[Task], count: int) -> None:
        self._tasks = tasks
        self._left = count

    def __next__(self) -> Task:
        task = next(self._tasks)
        self._left -= 1
        return task

    def __length_hint__(self) -> int:
        return max(0, self._left)


class Planner:
    """Decides every batch of every epoch, as a pure function of (seed, epoch, shard)."""

    def __init__(
        self,
        source: IndexedSource | StreamSource,
        options: LoaderOptions,
        seed: int,
        shard: ShardSpec | None,
        data_name: str,
    ) -> None:
        self.source = source
        self.options = options
        self.seed = seed
        self.shard = shard
        self.data_name = data_name
        self._sampler = self._resolve_sampler()
        self._own_order = isinstance(self._sampler, (RandomSampler, SequentialSampler))
        self._single_pass_read = False  # a sampler that is its own iterator: read yet?

    @property
    def sampler(self) -> Any:
        """The order's sampler. The loader's own (no ``sampler=``) follows the data's length
        as it is now: a list that grew between epochs has its new items read (they were
        silently left out), one that shrank is read whole (it was an IndexError)."""
        if self._own_order and self._sampler.num_indices != len(self.source):
            self._sampler = self._resolve_sampler()
        return self._sampler

    def num_batches(self, epoch: int, domain: Domain | None = None) -> int:
        """The number of batches of ``epoch`` (TypeError where it is not known in advance)."""
        if isinstance(self.source, StreamSource):
            if self.source.length is None:
                raise TypeError(
                    f"len() of a DataLoader over {self.data_name} is unknown: the "
                    "data has no len() (it is read as a stream)"
                )
            length = shard_length(self.source.length, self.shard)
            assert length is not None
            if self.options.batch_size is None:
                return length
            return batch_count(length, self.options.batch_size, self.options.drop_last)
        return len(self.plan(epoch, domain))

    def _resolve_sampler(self) -> Any:
        """Our Sampler (sliced), the user's iterable (iterated), or None for streams."""
        opts = self.options
        if isinstance(self.source, StreamSource):
            for name in ("sampler", "batch_sampler"):
                if getattr(opts, name) is not None:
                    raise ConfigError(
                        f"{name} needs data with len() and indexing; got "
                        f"{self.data_name}, which can only be iterated"
                    )
            return None
        if opts.batch_sampler is not None:
            return opts.batch_sampler
        if opts.sampler is not None:
            return opts.sampler
        n = len(self.source)
        shard_sizes = getattr(self.source, "shard_sizes", None)  # data read by shard: tar files
        if opts.shuffle and shard_sizes is not None:
            return ShardShuffleSampler(shard_sizes, opts.shuffle_buffer)
        return RandomSampler(n) if opts.shuffle else SequentialSampler(n)

    def sliced(self) -> tuple[Sampler, int, bool] | None:
        """``(sampler, batch_size, drop_last)`` when the batches are slices of our own order."""
        sampler, opts = self.sampler, self.options
        if isinstance(sampler, BatchSampler) and isinstance(sampler.sampler, Sampler):
            return sampler.sampler, sampler.batch_size, sampler.drop_last
        if isinstance(sampler, Sampler) and opts.batch_sampler is None:
            return sampler, opts.batch_size or 1, opts.drop_last
        return None

    def plan(self, epoch: int, domain: Domain | None = None) -> EpochPlan:
        """The batches of ``epoch``: this rank's share (of ``domain``, after an elastic resume)."""
        opts = self.options
        sampler = self.sampler
        n = len(self.source)
        spec = self.shard
        sliced = self.sliced()
        if sliced is not None:
            sampler, size, drop_last = sliced
            _check_range(sampler, n)
            seed = self.seed if sampler.seed is None else sampler.seed
            order = shard_order(sampler.order(seed, epoch), spec, domain)
            return SlicedPlan(order, size, drop_last)
        if isinstance(sampler, BucketBatchSampler):  # batches f(seed, epoch), sharded by batch
            return sampler.plan(self.seed if sampler.seed is None else sampler.seed, epoch, spec, n)
        if opts.batch_sampler is not None:
            batches = self._read_once(_with_epoch(sampler, epoch), "batch_sampler")
            count = shard_length(length_or_none(sampler), spec)
            return IterablePlan(batches if spec is None else shard_iter(batches, spec), n, count)
        size, drop_last = opts.batch_size or 1, opts.drop_last
        indices = self._read_once(_with_epoch(sampler, epoch), "sampler")
        length = shard_length(length_or_none(sampler), spec)
        count = None if length is None else batch_count(length, size, drop_last)
        if spec is not None:
            indices = shard_iter(indices, spec)
        return IterablePlan(chunked(indices, size, drop_last), n, count)

    def tasks(
        self,
        epoch: int,
        start: int,
        domain: Domain | None = None,
        skip: frozenset[int] = frozenset(),
        progress: _state.Progress | None = None,
    ) -> Iterator[Task]:
        """The tasks ``(epoch, seq, keys, items)`` from batch ``start`` on, less ``skip``; for
        a plan that knows its length, with how many remain (:class:`CountedTasks`)."""
        if isinstance(self.source, StreamSource):
            return self._stream_tasks(epoch, start, skip, progress)
        plan = self.plan(epoch, domain)
        batches: Iterator[tuple[int, Any]] = enumerate(plan.batches(start), start)
        if skip:  # a resumed epoch whose batches were handed over out of order
            batches = ((seq, keys) for seq, keys in batches if seq not in skip)
        tasks = ((epoch, seq, keys, None) for seq, keys in batches)
        try:
            count = len(plan) - start - len(skip)
        except TypeError:  # a sampler without len()
            return tasks
        return CountedTasks(tasks, count)

    def _stream_tasks(
        self,
        epoch: int,
        start: int,
        skip: frozenset[int] = frozenset(),
        progress: _state.Progress | None = None,
    ) -> Iterator[Task]:
        """Read the stream in the main process. Resuming re-reads and skips the consumed items,
        unless the data has its own ``state_dict()`` (no shuffle buffer, no sharding): then it
        restarts from its saved state, and each batch's source state is kept until delivered."""
        source = self.source
        assert isinstance(source, StreamSource)
        stateful = progress is not None and self.stateful_stream
        saved = progress.source_state if stateful and start > 0 else None  # type: ignore[union-attr]
        if saved is not None:
            source.data.load_state_dict(saved["state"])  # type: ignore[attr-defined]
        pairs = source.items(epoch)
        if saved is not None:
            offset = int(saved["items_consumed"])
            pairs = ((p + offset, item) for p, item in pairs)
        if self.options.shuffle:
            rng = generator(self.seed, epoch, BUFFER_STREAM)
            pairs = shuffle_buffer(pairs, self.options.shuffle_buffer, rng)
        if self.shard is not None:
            pairs = shard_iter(pairs, self.shard)
        size = self.options.batch_size or 1
        drop_last = self.options.drop_last
        seq = 0 if saved is None else start
        consumed = 0 if saved is None else offset

        def read() -> tuple[list[Any], Any]:
            """The next chunk, and (stateful sources) the source's state just after it."""
            nonlocal consumed
            chunk = list(itertools.islice(pairs, size))
            if not stateful or not chunk:
                return chunk, None
            consumed += len(chunk)
            return chunk, {"items_consumed": consumed, "state": source.data.state_dict()}  # type: ignore[attr-defined]

        # One chunk read ahead: the last batch is known as the last before it is handed over,
        # so a state taken after it points at the next epoch (see epochs.py).
        ahead, ahead_snapshot = read()
        while chunk := ahead:
            snapshot = ahead_snapshot
            if drop_last and len(chunk) < size:
                return
            ahead, ahead_snapshot = read()
            if progress is not None and (not ahead or (drop_last and len(ahead) < size)):
                progress.stream_batches = seq + 1
            if stateful:
                _state.keep_snapshot(progress, seq, snapshot)  # type: ignore[arg-type]
            if seq >= start and seq not in skip:
                keys = np.fromiter((p for p, _ in chunk), dtype=np.int64, count=len(chunk))
                yield (epoch, seq, keys, [item for _, item in chunk])
            seq += 1

    @property
    def stateful_stream(self) -> bool:
        """Whether a stream resumes from its own state (else by re-reading and skipping)."""
        data = getattr(self.source, "data", None)
        return (
            isinstance(self.source, StreamSource)
            and callable(getattr(data, "state_dict", None))
            and callable(getattr(data, "load_state_dict", None))
            and not self.options.shuffle
            and self.shard is None
        )

    def _read_once(self, sampler: Any, name: str) -> Any:
        """``sampler`` itself, or, when it is its own iterator (a generator, ``iter(list)``),
        a guard that makes an epoch over it, once read to its end, an error: it would be an
        empty epoch, silently. (What a break or ``one_batch()`` left unread is read as before.)"""
        if iter(sampler) is not sampler or callable(getattr(sampler, "set_epoch", None)):
            return sampler
        return self._guarded(sampler, name)

    def _guarded(self, sampler: Any, name: str) -> Iterator[Any]:
        read_before, self._single_pass_read = self._single_pass_read, True
        empty = True
        for value in sampler:
            empty = False
            yield value
        if empty and read_before:
            raise RuntimeError(
                f"{name} is a single-pass iterator ({type(sampler).__name__}) that an earlier "
                "iteration read to its end: this epoch would have no batches. Pass an iterable "
                "whose __iter__ starts again (a list, a Sampler, or a class whose __iter__ "
                "returns a new generator)"
            )


def length_or_none(obj: Any) -> int | None:
    try:
        return len(obj)
    except TypeError:
        return None


def _with_epoch(sampler: Any, epoch: int) -> Any:
    """Tell a user's sampler the epoch (torch's ``set_epoch`` convention) before iterating it."""
    set_epoch = getattr(sampler, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(epoch)
    return sampler


def _check_range(sampler: Sampler, n: int) -> None:
    if sampler.num_indices > n:
        raise IndexError(
            f"the sampler draws indices up to {sampler.num_indices - 1}, out of range for data "
            f"of length {n}"
        )
