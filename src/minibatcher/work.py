"""The unit of work: one batch's indices in, one finished batch out.

``BatchWork`` is the only place that joins fetch, per-item transforms, collation, output
conversion and per-batch transforms. It is one picklable callable, so the transport stage runs it
inline, in threads or in processes without knowing what it does.

A task is a plain tuple ``(epoch, seq, keys, items)`` (tuples are the cheapest object to make per
batch): ``seq`` is the batch's number in the epoch; ``keys`` are the data indices of its items
(for streams: their positions in the stream); ``items`` is None for indexed sources (the work
fetches them) or the items themselves for streams (read by the main process).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._typing import Allocator, IndexArray
from .collation import Collator, collate, converter
from .sources import IndexedSource
from .transforms import batch_rng, item_rng, takes_rng

Task = tuple[int, int, IndexArray, "list[Any] | None"]

STAGE_SAMPLE_MASK = 15
"""Batches whose ``seq & STAGE_SAMPLE_MASK == 0`` (1 in 16) have their stages timed.

Timing every batch would cost more than the work itself on cheap batches (a ``range`` batch
takes ~3 us); see NOTE [ Sampled bookkeeping ] in ``profile.py``."""

STAGES = ("fetch", "transform", "collate")
"""The stages :meth:`BatchWork.take_timings` reports, besides ``"samples"``."""


ON_ERROR = ("raise", "skip")
"""What ``on_error=`` accepts: an item that fails to load (fetch or per-item transform) raises,
naming its index (and file), or is left out of its batch."""


@dataclasses.dataclass(frozen=True)
class SkippedItem:
    """An item left out of its batch by ``on_error="skip"`` (listed in ``dl.stats.skipped``)."""

    index: int
    """The item's index in the data (for a stream: its position)."""
    error: str
    """The error it raised, and the file where the data knows it (``describe_item``)."""


class Skipped:
    """A batch some of whose items failed with ``on_error="skip"``: the batch of the others
    (``None`` when none is left) and the items left out. It travels from any worker to the
    main process like a batch; the loader unwraps it, counts and reports the items."""

    __slots__ = ("batch", "items")

    def __init__(self, batch: Any, items: tuple[SkippedItem, ...]) -> None:
        self.batch = batch
        self.items = items

    def __reduce__(self) -> tuple[Any, ...]:
        return (Skipped, (self.batch, self.items))


class BatchWork:
    """Fetch, transform and collate one batch: ``work(task, allocate=None) -> batch``.

    ``allocate`` (optional) gives the memory that stacked arrays are written into; process
    workers pass a shared-memory allocator so a batch is written once, where it is read.
    With ``on_error="skip"``, a batch with items that fail to fetch or transform comes back as
    a :class:`Skipped` holding the batch of the other items.

    A source's data may name where an item lives, for error messages:
    ``data.describe_item(index) -> str`` (a file path, a shard and member...).
    """

    def __init__(
        self,
        source: IndexedSource | None,
        *,
        seed: int,
        transform: Callable[..., Any] | None = None,
        collate_fn: Callable[[Sequence[Any]], Any] | None = collate,
        batched: bool = True,
        batch_transform: Callable[..., Any] | None = None,
        output: str = "auto",
        on_error: str = "raise",
    ) -> None:
        self.source = source
        self.on_error = on_error
        self.seed = seed
        self.transform = transform
        self.collate_fn = collate if collate_fn is None else collate_fn
        self.batched = batched
        self.batch_transform = batch_transform
        self.output = output
        self._setup()

    def _setup(self) -> None:
        self._transform_rng = takes_rng(self.transform)
        self._batch_transform_rng = takes_rng(self.batch_transform)
        self._accepts_allocator = isinstance(self.collate_fn, Collator)
        self._convert = converter(self.output) if self.output != "jax" else None
        self._timings: dict[str, float] = dict.fromkeys(("samples", *STAGES), 0.0)
        self.fast_path = (
            self.source is not None
            and self.source.batched
            and self.transform is None
            and self.batched
            and self.collate_fn is collate
        )
        # The fast path with nothing after the fetch (W1's and W2's): one call per batch.
        self._bare_fetch = (
            self.source.fetch_batch  # type: ignore[union-attr]
            if self.fast_path and self._convert is None and self.batch_transform is None
            else None
        )

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup()

    def __repr__(self) -> str:
        return (
            f"BatchWork(source={self.source!r}, transform={self.transform!r}, "
            f"collate_fn={self.collate_fn!r}, batch_transform={self.batch_transform!r}, "
            f"output={self.output!r}, fast_path={self.fast_path})"
        )

    stage_sample_every = STAGE_SAMPLE_MASK + 1
    """An executor that calls :meth:`timed` on one task in this many (or fewer, with a
    ``weight``) and :meth:`untimed` on the others saves ``__call__``'s test per batch (the
    inline executor does)."""

    def __call__(self, task: Task, allocate: Allocator | None = None) -> Any:
        """The batch of ``task``; its stages are timed when ``seq % 16 == 0``."""
        if not task[1] & 15:  # STAGE_SAMPLE_MASK, a constant here: the cheapest test per batch
            return self.timed(task, allocate)
        return self.untimed(task, allocate)

    def untimed(self, task: Task, allocate: Allocator | None = None) -> Any:
        """The batch of ``task``, with no timing at all."""
        epoch, seq, keys, items = task
        try:
            if items is None:
                bare = self._bare_fetch
                if bare is not None:
                    return bare(keys, allocate)
                if self.fast_path:
                    batch = self.source.fetch_batch(keys, allocate)  # type: ignore[union-attr]
                    return self._finish(batch, epoch, seq)
                items = self.source.fetch_items(keys)  # type: ignore[union-attr]
            if self.transform is not None:
                items = self._transform_items(items, keys, epoch)
            if not self.batched:
                return self._finish(items[0], epoch, seq)
            if self._accepts_allocator:
                batch = self.collate_fn(items, allocate)  # type: ignore[call-arg]
            else:
                batch = self.collate_fn(items)
            return self._finish(batch, epoch, seq)
        except Exception as e:
            if self.on_error == "skip":
                return self._skipping(task, allocate)
            _add_note(e, self._describe_failure(task))
            raise

    def timed(self, task: Task, allocate: Allocator | None = None, weight: int = 1) -> Any:
        """The batch of ``task``, with each stage timed into :meth:`take_timings`.

        ``weight``: how many batches this sample stands for relative to the others (an executor
        that samples sparsely later in an epoch passes more). The fast path fetches and collates
        in one vectorised call, counted as ``fetch``; output conversion and the batch transform
        count as ``transform``.
        """
        epoch, seq, keys, items = task
        clock = time.perf_counter
        try:
            t0 = clock()
            if items is None:
                if self.fast_path:
                    batch = self.source.fetch_batch(keys, allocate)  # type: ignore[union-attr]
                    t1 = clock()
                    batch = self._finish(batch, epoch, seq)
                    timings = self._timings  # a lost update under threads costs one sample
                    timings["samples"] += weight
                    timings["fetch"] += (t1 - t0) * weight
                    timings["transform"] += (clock() - t1) * weight
                    return batch
                items = self.source.fetch_items(keys)  # type: ignore[union-attr]
            t1 = clock()
            if self.transform is not None:
                items = self._transform_items(items, keys, epoch)
            t2 = clock()
            if not self.batched:
                batch = items[0]
            elif self._accepts_allocator:
                batch = self.collate_fn(items, allocate)  # type: ignore[call-arg]
            else:
                batch = self.collate_fn(items)
            t3 = clock()
            batch = self._finish(batch, epoch, seq)
            self._record(t1 - t0, (t2 - t1) + (clock() - t3), t3 - t2, weight)
            return batch
        except Exception as e:
            if self.on_error == "skip":
                return self._skipping(task, allocate)
            _add_note(e, self._describe_failure(task))
            raise

    def _record(self, fetch: float, transform: float, collate: float, weight: int) -> None:
        # Threads share one BatchWork: an update lost to a race costs one sample, nothing more.
        timings = self._timings
        timings["samples"] += weight
        timings["fetch"] += fetch * weight
        timings["transform"] += transform * weight
        timings["collate"] += collate * weight

    def take_timings(self) -> dict[str, float]:
        """The stage timings sampled since the last call (seconds summed over ``"samples"``
        batches), then reset. Worker executors call it in the worker and send the dict back."""
        taken = self._timings
        self._timings = dict.fromkeys(("samples", *STAGES), 0.0)
        return taken

    def _transform_items(self, items: list[Any], keys: IndexArray, epoch: int) -> list[Any]:
        fn = self.transform
        assert fn is not None
        if not self._transform_rng:
            return [fn(item) for item in items]
        seed = self.seed
        pairs = zip(items, keys.tolist(), strict=True)
        return [fn(item, rng=item_rng(seed, epoch, k)) for item, k in pairs]

    def _finish(self, batch: Any, epoch: int, seq: int) -> Any:
        if self._convert is not None:
            batch = self._convert(batch)
        if self.batch_transform is not None and self.output != "jax":
            batch = self.apply_batch_transform(batch, epoch, seq)
        return batch

    def apply_batch_transform(self, batch: Any, epoch: int, seq: int) -> Any:
        """Run the per-batch transform (the loader calls it itself for ``output='jax'``)."""
        fn = self.batch_transform
        if fn is None:
            return batch
        if self._batch_transform_rng:
            return fn(batch, rng=batch_rng(self.seed, epoch, seq))
        return fn(batch)

    def _skipping(self, task: Task, allocate: Allocator | None) -> Skipped:
        """The batch of ``task`` without its failing items (``on_error="skip"``): each item is
        loaded on its own to find them, then the others are collated. A failure that is no
        single item's (in collate or the batch transform) still raises."""
        epoch, seq, keys, items = task
        good: list[int] = []
        loaded: list[Any] = []
        left_out: list[SkippedItem] = []
        for position, key in enumerate(keys.tolist()):
            one_key = keys[position : position + 1]
            try:
                if self.fast_path:
                    self.source.fetch_batch(one_key, None)  # type: ignore[union-attr]
                    one = None
                elif items is not None:
                    one = [items[position]]
                else:
                    one = self.source.fetch_items(one_key)  # type: ignore[union-attr]
                if one is not None and self.transform is not None:
                    one = self._transform_items(one, one_key, epoch)
            except Exception as e:
                left_out.append(SkippedItem(int(key), self._item_error(e, int(key))))
                continue
            good.append(position)
            if one is not None:
                loaded.append(one[0])
        try:
            if not good:
                return Skipped(None, tuple(left_out))
            if self.fast_path:
                batch = self.source.fetch_batch(keys[good], allocate)  # type: ignore[union-attr]
            elif not self.batched:
                batch = loaded[0]
            elif self._accepts_allocator:
                batch = self.collate_fn(loaded, allocate)  # type: ignore[call-arg]
            else:
                batch = self.collate_fn(loaded)
            return Skipped(self._finish(batch, epoch, seq), tuple(left_out))
        except Exception as e:
            _add_note(e, self._describe_failure(task))
            raise

    def _item_error(self, error: Exception, key: int) -> str:
        where = self._where(key)
        message = f"{type(error).__name__}: {error}"
        return message if where is None else f"{message} ({where})"

    def _where(self, key: int) -> str | None:
        """Where the data says item ``key`` lives (its ``describe_item``), if it says."""
        describe = getattr(getattr(self.source, "data", None), "describe_item", None)
        if not callable(describe):
            return None
        try:
            return str(describe(key))
        except Exception:
            return None

    def _describe_failure(self, task: Task) -> str:
        epoch, seq, keys, items = task
        where = "stream position" if items is not None else "index"
        culprit = self._find_failing_key(task)
        shown = keys[:16].tolist()
        more = "..." if len(keys) > 16 else ""
        plural = "stream positions" if items is not None else "indices"
        head = f"while loading batch {seq} of epoch {epoch} ({plural} {shown}{more})"
        if culprit is None:
            return head
        place = self._where(culprit) if items is None else None
        found = f"{head}: the item at {where} {culprit} failed"
        return found if place is None else f"{found} ({place})"

    def _find_failing_key(self, task: Task) -> int | None:
        """Re-run the items one at a time to name the one that fails (only on the error path)."""
        epoch, _, keys, items = task
        if self.source is None and items is None:
            return None
        for position, key in enumerate(keys.tolist()):
            try:
                one_key = np.array([key], dtype=np.int64)
                one = [items[position]] if items is not None else self.source.fetch_items(one_key)  # type: ignore[union-attr]
                if self.transform is not None:
                    self._transform_items(one, one_key, epoch)
            except Exception:
                return int(key)
        return None


def _add_note(error: BaseException, note: str) -> None:
    add_note = getattr(error, "add_note", None)  # Python >= 3.11
    if add_note is not None:
        add_note(note)
