"""DataLoader: the one object users hold. It composes the stages; it implements none of them.

Data path (each arrow one module; see the package docstring)::

    source -> sampler (EpochPlan) -> tasks -> executor[BatchWork: fetch -> transform -> collate]
           -> user

The main process decides every batch: an epoch's order is a pure function of (seed, epoch),
cut into batches here, and handed to the executor as tasks. Workers only execute, so the batches
are the same whatever the number or kind of workers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, Literal, TypeVar, final

import numpy as np

from ._seed import BUFFER_STREAM, draw_seed, generator
from .collation import check_output, converter
from .device import DeviceTransfer
from .errors import ConfigError
from .options import LoaderOptions
from .samplers import BatchSampler, RandomSampler, Sampler, SequentialSampler
from .samplers.batch import EpochPlan, IterablePlan, SlicedPlan, batch_count, chunked
from .sources import IndexedSource, StreamSource, as_source, shuffle_buffer
from .transport import Executor, InlineExecutor
from .work import BatchWork, Task

T = TypeVar("T")


@final
class DataLoader(Generic[T]):
    """Iterate over mini-batches of any collection; every ``iter()`` is a new epoch.

    Args:
        data: anything indexable with ``len()`` (list, tuple, range, map-style or torch dataset,
            NumPy array, torch tensor, dict of equal-length columns, pandas DataFrame, pyarrow
            Table), or any iterable without ``len()`` (generator, iterator, stream), read lazily.
        batch_size: items per batch; ``None`` yields items one by one, uncollated. ``bs`` is an
            alias (fastai's name).
        shuffle: a new random order every epoch, a pure function of ``(seed, epoch)``. For data
            without ``len()``, a seeded shuffle buffer of ``shuffle_buffer`` items (approximate).
        drop_last: drop the last batch if it is smaller than ``batch_size``.
        seed: the seed of every random choice; ``None`` draws one (see :attr:`seed`).
        sampler: any iterable of indices (e.g. a :mod:`minibatcher.samplers` sampler).
        batch_sampler: any iterable of lists of indices; decides the batches.
        collate_fn: turns a list of items into a batch (default :data:`minibatcher.collate`).
        transform: called on each item; with a parameter named ``rng`` it gets a NumPy Generator
            seeded from ``(seed, epoch, index)``.
        batch_transform: called on each collated batch (``rng``: seeded from the batch number).
        output: ``"auto"`` (keep each leaf's framework), ``"numpy"``, ``"torch"`` or ``"jax"``.
        shuffle_buffer: size of the shuffle buffer for data without ``len()``.
        num_workers: worker processes or threads (0: load in the calling thread; ``"auto"``:
            chosen by measurement).
        worker_type: ``"process"`` or ``"thread"``.
        prefetch: batches in flight per worker.
        persistent_workers: keep workers alive between epochs.
        in_order: ``False`` hands batches over as they are ready (still each exactly once).
        timeout: seconds to wait for one batch before raising ``TimeoutError``.
        worker_init_fn: called in each worker with its id.
        mp_context: ``"fork"``, ``"spawn"`` or ``"forkserver"`` for process workers.
        shard: ``(rank, world_size)`` or ``"auto"``: this rank's disjoint share of every epoch.
        uneven: when the data does not split evenly across ranks: ``"pad"``, ``"drop"`` or
            ``"allow"``.
        progress: show a progress bar per epoch (needs tqdm).
        device: a torch device (``"cuda"``): batches arrive there as torch tensors, copied on a
            side stream one batch ahead so the copy overlaps the training step (needs torch).
        pin_memory: copy batches into page-locked host memory first (faster, asynchronous copies
            to CUDA; skipped with a warning when no CUDA device is available).

    Example::

        >>> dl = DataLoader(range(15), batch_size=5, shuffle=True, seed=0)
        >>> [b.tolist() for b in dl][0]
        [4, 9, 12, 11, 5]
    """

    def __init__(
        self,
        data: Any,
        batch_size: int | None = 1,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        sampler: Iterable[Any] | None = None,
        batch_sampler: Iterable[Any] | None = None,
        collate_fn: Callable[[Sequence[Any]], Any] | None = None,
        transform: Callable[..., Any] | None = None,
        batch_transform: Callable[..., Any] | None = None,
        output: Literal["auto", "numpy", "torch", "jax"] = "auto",
        shuffle_buffer: int = 10_000,
        bs: int | None = None,
        num_workers: int | Literal["auto"] = 0,
        worker_type: Literal["process", "thread"] = "process",
        prefetch: int = 2,
        persistent_workers: bool = False,
        in_order: bool = True,
        timeout: float | None = None,
        worker_init_fn: Callable[[int], Any] | None = None,
        mp_context: str | None = None,
        shard: tuple[int, int] | Literal["auto"] | None = None,
        uneven: Literal["pad", "drop", "allow"] = "pad",
        progress: bool = False,
        device: Any = None,
        pin_memory: bool = False,
    ) -> None:
        if bs is not None:
            if batch_size != 1:
                raise ConfigError(
                    f"bs is an alias of batch_size: pass one of them, got bs={bs!r} and "
                    f"batch_size={batch_size!r}"
                )
            batch_size = bs
        self.options = LoaderOptions(
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            seed=seed,
            sampler=sampler,
            batch_sampler=batch_sampler,
            collate_fn=collate_fn,
            transform=transform,
            batch_transform=batch_transform,
            output=output,
            shuffle_buffer=shuffle_buffer,
            num_workers=num_workers,
            worker_type=worker_type,
            prefetch=prefetch,
            persistent_workers=persistent_workers,
            in_order=in_order,
            timeout=timeout,
            worker_init_fn=worker_init_fn,
            mp_context=mp_context,
            shard=shard,
            uneven=uneven,
            progress=progress,
            device=device,
            pin_memory=pin_memory,
        )
        try:
            check_output(output)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.source = as_source(data)
        self.dataset = data
        self.seed: int = draw_seed() if seed is None else int(seed)
        """The seed of every random choice: pass it back as ``seed=`` to replay a run."""
        self._sampler = self._resolve_sampler()
        self.work = BatchWork(
            self.source if isinstance(self.source, IndexedSource) else None,
            seed=self.seed,
            transform=transform,
            collate_fn=collate_fn,
            batched=batch_size is not None or batch_sampler is not None,
            batch_transform=batch_transform,
            output=output,
        )
        self._jax_convert = converter("jax") if output == "jax" else None
        self._device = (
            DeviceTransfer(device, pin_memory) if device is not None or pin_memory else None
        )
        self.epoch = 0
        """The epoch of the latest ``iter()`` (the one in progress while iterating)."""
        self._next_epoch = 0

    # -- configuration -------------------------------------------------------------------
    @property
    def batch_size(self) -> int | None:
        """Items per batch (None: unbatched, or decided by a batch_sampler)."""
        return self.options.batch_size if self.options.batch_sampler is None else None

    @property
    def drop_last(self) -> bool:
        """Whether the last partial batch is dropped."""
        return self.options.drop_last

    def _resolve_sampler(self) -> Any:
        """Our Sampler (sliced), the user's iterable (iterated), or None for streams."""
        opts = self.options
        if isinstance(self.source, StreamSource):
            for name in ("sampler", "batch_sampler"):
                if getattr(opts, name) is not None:
                    raise ConfigError(
                        f"{name} needs data with len() and indexing; got "
                        f"{type(self.dataset).__name__}, which can only be iterated"
                    )
            return None
        if opts.batch_sampler is not None:
            return opts.batch_sampler
        if opts.sampler is not None:
            return opts.sampler
        n = len(self.source)
        return RandomSampler(n) if opts.shuffle else SequentialSampler(n)

    def _plan(self, epoch: int) -> EpochPlan:
        """The batches of ``epoch`` as index arrays."""
        opts = self.options
        sampler = self._sampler
        n = len(self.source)
        size = opts.batch_size or 1
        drop_last = opts.drop_last
        if isinstance(sampler, BatchSampler) and isinstance(sampler.sampler, Sampler):
            size, drop_last = sampler.batch_size, sampler.drop_last
            sampler = sampler.sampler
        elif opts.batch_sampler is not None:
            return IterablePlan(_with_epoch(sampler, epoch), n, _length(sampler))
        if isinstance(sampler, Sampler):
            _check_range(sampler, n)
            seed = self.seed if sampler.seed is None else sampler.seed
            return SlicedPlan(sampler.order(seed, epoch), size, drop_last)
        length = _length(sampler)
        count = None if length is None else batch_count(length, size, drop_last)
        return IterablePlan(chunked(_with_epoch(sampler, epoch), size, drop_last), n, count)

    # -- epochs --------------------------------------------------------------------------
    def __len__(self) -> int:
        """The number of batches per epoch (``drop_last`` respected)."""
        if isinstance(self.source, StreamSource):
            if self.source.length is None:
                raise TypeError(
                    f"len() of a DataLoader over {type(self.dataset).__name__} is unknown: the "
                    "data has no len() (it is read as a stream)"
                )
            if self.options.batch_size is None:
                return self.source.length
            return batch_count(self.source.length, self.options.batch_size, self.drop_last)
        return len(self._plan(self._next_epoch))

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` epoch ``epoch`` (later ones follow from it)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ConfigError(f"epoch must be a non-negative int, got {epoch!r}")
        self._next_epoch = int(epoch)
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[T]:
        epoch = self._next_epoch
        self.epoch = epoch
        self._next_epoch = epoch + 1
        return self._iterate(epoch, start=0)

    def _iterate(self, epoch: int, start: int) -> Iterator[Any]:
        executor = self._executor()
        finish = self._finish_in_main
        try:
            results = executor.run(self._tasks(epoch, start))
            if self._device is not None:
                results = self._device.run(results)
            for _seq, batch in results:
                yield batch if finish is None else finish(batch, epoch, _seq)
        finally:
            executor.close()

    def _executor(self) -> Executor:
        return InlineExecutor(self.work)

    @property
    def _finish_in_main(self) -> Callable[[Any, int, int], Any] | None:
        """For output='jax': convert (and batch-transform) in the main process."""
        if self._jax_convert is None:
            return None
        convert, work = self._jax_convert, self.work

        def finish(batch: Any, epoch: int, seq: int) -> Any:
            return work.apply_batch_transform(convert(batch), epoch, seq)

        return finish

    def _tasks(self, epoch: int, start: int) -> Iterator[Task]:
        """The epoch's tasks from batch ``start`` on: ``(epoch, seq, keys, items)``."""
        if isinstance(self.source, StreamSource):
            yield from self._stream_tasks(epoch, start)
            return
        for seq, keys in enumerate(self._plan(epoch).batches(start), start):
            yield (epoch, seq, keys, None)

    def _stream_tasks(self, epoch: int, start: int) -> Iterator[Task]:
        source = self.source
        assert isinstance(source, StreamSource)
        pairs = source.items(epoch)
        if self.options.shuffle:
            rng = generator(self.seed, epoch, BUFFER_STREAM)
            pairs = shuffle_buffer(pairs, self.options.shuffle_buffer, rng)
        size = self.options.batch_size or 1
        drop_last = self.options.drop_last
        seq = 0
        while chunk := list(itertools.islice(pairs, size)):
            if drop_last and len(chunk) < size:
                return
            if seq >= start:
                keys = np.fromiter((p for p, _ in chunk), dtype=np.int64, count=len(chunk))
                yield (epoch, seq, keys, [item for _, item in chunk])
            seq += 1

    def one_batch(self) -> T:
        """The first batch of the current epoch, without starting an epoch.

        For a single-pass iterator (a generator) this consumes the items it returns.
        """
        epoch = self._next_epoch
        for batch in self._iterate(epoch, start=0):
            return batch
        raise ValueError("one_batch() found no batch: the data is empty (or all dropped)")

    def __repr__(self) -> str:
        return (
            f"DataLoader(data={type(self.dataset).__name__}, batch_size={self.batch_size}, "
            f"shuffle={self.options.shuffle}, drop_last={self.drop_last}, seed={self.seed}, "
            f"output={self.options.output!r})"
        )


def _length(obj: Any) -> int | None:
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
