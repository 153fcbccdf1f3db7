"""DataLoader: the one object users hold. It composes the stages; it implements none of them.

Data path (each arrow one module; see the package docstring)::

    source -> sampler (EpochPlan) -> tasks -> executor[BatchWork: fetch -> transform -> collate]
           -> user

The main process decides every batch: an epoch's order is a pure function of (seed, epoch),
cut into batches here, and handed to the executor as tasks. Workers only execute, so the batches
are the same whatever the number or kind of workers. The loop that delivers an epoch's batches
is ``delivery.py``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, final

import numpy as np

from . import state as _state
from .collation import check_output, converter
from .delivery import deliver
from .device import DeviceTransfer
from .distributed import resolve_seed, resolve_shard, seed_topic
from .epochs import Epochs, LoaderEpochs
from .errors import ConfigError
from .executors import EpochExecutors
from .options import LoaderOptions
from .plan import Planner, length_or_none
from .profile import LoaderStats, Profiler
from .progress import progress_bar, require_tqdm
from .sources import IndexedSource, as_source
from .transport.owner import WorkersOwner
from .verdict import LoaderFacts
from .work import BatchWork

if TYPE_CHECKING:  # a default (PEP 696) lets `dl = DataLoader(data)` type-check unannotated
    from typing_extensions import TypeVar as _TypeVar

    T = _TypeVar("T", default=Any)
else:
    T = TypeVar("T")


@final
class DataLoader(WorkersOwner, Generic[T]):
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
        seed: the seed of every random choice; ``None`` draws one from the global generator the
            user seeds (torch's if torch is imported, else NumPy's: ``torch.manual_seed(0)``
            makes the run reproducible), and adopts the saved one in :meth:`load_state_dict`.
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
        prefetch: messages in flight per worker (a message carries one batch, or several
            batches of under ~40 ms of work each).
        persistent_workers: keep workers alive between epochs.
        in_order: ``False`` hands batches over as they are ready (still each exactly once).
        timeout: seconds to wait for one batch before raising ``TimeoutError``.
        worker_init_fn: called in each worker with its id.
        mp_context: ``"fork"``, ``"spawn"`` or ``"forkserver"`` for process workers.
        shard: this rank's disjoint share of every epoch: ``(rank, world_size)``; ``"detect"``
            (the default) shards inside an initialised torch.distributed group or multi-process
            JAX job of several ranks; ``"auto"`` also reads ``RANK``/``WORLD_SIZE``; ``None``
            never shards (every rank sees all the data).
        uneven: when the data does not split evenly across ranks: ``"pad"``, ``"drop"`` or
            ``"allow"``.
        progress: show a progress bar per epoch (needs tqdm).
        device: a torch device (``"cuda"``): batches arrive there as torch tensors, copied on a
            side stream one batch ahead so the copy overlaps the training step (needs torch).
        pin_memory: copy batches into page-locked host memory first (faster, asynchronous copies
            to CUDA; skipped with a warning when no CUDA device is available).
        on_error: an item that fails to load (its fetch or ``transform`` raises): ``"raise"``
            (the error names its index, and its file where the data knows it) or ``"skip"``:
            the item is left out of its batch, listed in ``dl.stats.skipped``, with one warning
            per epoch.

    Example::

        >>> dl = DataLoader(range(15), batch_size=5, shuffle=True, seed=0)
        >>> [b.tolist() for b in dl][0]
        [2, 11, 3, 10, 0]
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
        shard: tuple[int, int] | Literal["detect", "auto"] | None = "detect",
        uneven: Literal["pad", "drop", "allow"] = "pad",
        progress: bool = False,
        device: Any = None,
        pin_memory: bool = False,
        on_error: Literal["raise", "skip"] = "raise",
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
            on_error=on_error,
        )
        try:
            check_output(output)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if progress:
            require_tqdm()  # a missing tqdm fails here, naming the extra to install
        self.source = as_source(data)
        self.dataset = data
        self._shard = resolve_shard(shard, uneven, sampler, batch_sampler, data)
        """This rank's place among the ranks (None: no sharding), resolved once."""
        self._seed_given = seed is not None
        self._use_seed(resolve_seed(seed, self._shard, self._seed_topic()))
        self._jax_convert = converter("jax") if output == "jax" else None
        self._device = (
            DeviceTransfer(device, pin_memory) if device is not None or pin_memory else None
        )
        self._epochs = Epochs()  # the epoch counters, progress and checkpoints (epochs.py)
        self._profiler = Profiler()  # dl.stats (see profile.py)
        self._executors = EpochExecutors(self._profiler)  # inline, workers, persistent, "auto"

    def _use_seed(self, seed: int) -> None:
        """Build the stages that depend on the seed (again, when a state's seed is adopted)."""
        self.seed: int = seed
        """The seed of every random choice: pass it back as ``seed=`` to replay a run."""
        opts = self.options
        self._planner = Planner(
            self.source, opts, seed, self._shard, type(self.dataset).__name__
        )
        """Decides every batch of every epoch (see plan.py)."""
        self.work = BatchWork(
            self.source if isinstance(self.source, IndexedSource) else None,
            seed=seed,
            transform=opts.transform,
            collate_fn=opts.collate_fn,
            batched=opts.batch_size is not None or opts.batch_sampler is not None,
            batch_transform=opts.batch_transform,
            output=opts.output,
            on_error=opts.on_error,
        )

    def _join_a_late_job(self, *, share_seed: bool) -> None:
        """``shard="detect"`` for a loader built before its job's process group existed
        (``accelerate``'s ``Accelerator()`` or ``init_process_group`` called after the loader):
        shard from now on. ``share_seed`` (at ``iter()``, which every rank calls) also takes
        rank 0's seed when none was given: a collective, never run from ``len()``."""
        if self._shard is not None or self.options.shard != "detect" or self._epochs.progress:
            return
        opts = self.options
        spec = resolve_shard("detect", opts.uneven, opts.sampler, opts.batch_sampler, self.dataset)
        if spec is None:
            return
        self._shard = spec
        self.close()
        seed = self.seed
        if share_seed and not self._seed_given:
            seed = resolve_seed(None, spec, self._seed_topic())
        self._use_seed(seed)
        self._late_seed_pending = not share_seed and not self._seed_given

    _late_seed_pending = False  # sharded by len() before iter(): the seed is still to share

    def _seed_topic(self) -> str:
        return seed_topic(self.dataset, self.options.batch_size, self.options.shuffle)

    # -- configuration -------------------------------------------------------------------
    @property
    def batch_size(self) -> int | None:
        """Items per batch (None: unbatched, or decided by a batch_sampler)."""
        return self.options.batch_size if self.options.batch_sampler is None else None

    @property
    def drop_last(self) -> bool:
        """Whether the last partial batch is dropped."""
        return self.options.drop_last

    @property
    def sampler(self) -> LoaderEpochs:
        """``dl.sampler.set_epoch(e)`` is ``dl.set_epoch(e)``: how Lightning, accelerate and
        torch DDP scripts keep a loader's epochs in step (they call the sampler's)."""
        return LoaderEpochs(self)

    @property
    def shard(self) -> tuple[int, int] | None:
        """This rank's ``(rank, world_size)`` when the loader shards, else None."""
        spec = self._shard
        return None if spec is None else (spec.rank, spec.world_size)

    # -- epochs --------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The epoch of the latest ``iter()`` (the one in progress while iterating)."""
        return self._epochs.current

    def __len__(self) -> int:
        """The number of batches per epoch (``drop_last`` respected)."""
        self._join_a_late_job(share_seed=False)
        return self._epochs.num_batches(self._planner)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` epoch ``epoch`` (later ones follow from it)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ConfigError(f"epoch must be a non-negative int, got {epoch!r}")
        self._epochs.set_next(int(epoch))

    def __iter__(self) -> Iterator[T]:
        """A new epoch, decided at the first ``next()``: an iterator created and dropped unread
        (Lightning's check that the loader is iterable) costs no epoch, and a ``set_epoch``
        between ``iter()`` and the first batch applies (as with torch's samplers)."""
        self._join_a_late_job(share_seed=True)
        if self._late_seed_pending and self._shard is not None:
            self._late_seed_pending = False
            self.close()
            self._use_seed(resolve_seed(None, self._shard, self._seed_topic()))
        return self._epoch()

    def _epoch(self) -> Iterator[T]:
        total = length_or_none(self) if self.options.progress else None  # before the epoch advances
        progress = self._epochs.begin()
        epoch = progress.epoch
        batches = deliver(self, epoch, progress.next_batch, progress)
        if self.options.progress:
            left = None if total is None else total - progress.next_batch
            batches = progress_bar(batches, left, f"epoch {epoch}")
        yield from batches

    @property
    def stats(self) -> LoaderStats:
        """Where the latest epoch's time went: counts, stage times and a verdict (see
        :class:`~minibatcher.profile.LoaderStats`); readable during an epoch or after it."""
        self._profiler.collect(self.work)
        return self._profiler.snapshot(LoaderFacts.of(self._executors.options(self), self.work))

    def __getstate__(self) -> dict[str, Any]:
        """What ``pickle``, ``copy.copy`` and ``copy.deepcopy`` take: the loader with its own
        epoch counters and ``dl.stats``, without the persistent workers (a copy sharing them
        closed them when collected, ending the original's epoch) or the running epoch's
        recorder (not picklable). A copy starts its own workers at its first ``iter()``."""
        state = self.__dict__.copy()
        profiler = Profiler()
        executors = EpochExecutors(profiler)
        executors.tuned = self._executors.tuned
        epochs = copy.copy(self._epochs)
        epochs.progress = None  # the original's running epoch, not the copy's
        epochs.resume = copy.deepcopy(epochs.resume)  # a loaded state: each resumes it alone
        state.update(_profiler=profiler, _executors=executors, _epochs=epochs)
        return state

    def _release_workers(self) -> None:
        executors = self.__dict__.get("_executors")  # absent if __init__ raised
        if executors is not None:
            executors.close()

    # -- fastai's protocol (DataLoaders, Learner.get_preds) ----------------------------
    def new(self, **changes: Any) -> DataLoader[Any]:
        """A loader over the same data with the same arguments (and seed) but ``changes``;
        fastai's names ``shuffled`` and ``bs`` are accepted for ``shuffle`` and ``batch_size``
        (``Learner.get_preds`` calls ``dl.new(shuffled=False, drop_last=False)``). Once
        ``num_workers="auto"`` has chosen, the new loader keeps that choice."""
        aliases = {"shuffled": "shuffle", "bs": "batch_size"}
        kwargs = {f.name: getattr(self.options, f.name) for f in dataclasses.fields(self.options)}
        tuned = self._executors.tuned
        if tuned is not None:
            kwargs.update(num_workers=tuned.num_workers, worker_type=tuned.worker_type)
        kwargs["seed"] = self.seed
        if self._device is not None:
            kwargs["device"] = self._device.device
        for name, value in changes.items():
            name = aliases.get(name, name)
            if name not in kwargs:
                raise ConfigError(f"new() got an unknown argument {name!r}")
            kwargs[name] = value
        return DataLoader(self.dataset, **kwargs)

    def to(self, device: Any) -> DataLoader[T]:
        """Deliver batches on ``device`` from now on (fastai's ``dls.to`` / ``dls.cuda()``)."""
        self._device = DeviceTransfer(device, self.options.pin_memory)
        return self

    @property
    def device(self) -> Any:
        """The torch device batches are delivered on (None: where the data is)."""
        return None if self._device is None else self._device.device

    def one_batch(self) -> T:
        """The first batch of the current epoch, without starting an epoch.

        For a single-pass iterator (a generator) this consumes the items it returns.
        """
        for batch in deliver(self, self._epochs.next, start=0):
            return batch
        raise ValueError("one_batch() found no batch: the data is empty (or all dropped)")

    # -- checkpoints (schema and rules: state.py) ---------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The position of the batches the user has received, as a small JSON-able dict.

        Take it between any two batches; a loader built with the same arguments (any
        ``num_workers`` or ``worker_type``) continues from it with :meth:`load_state_dict`.
        """
        return self._epochs.state_dict(self._planner)

    def load_state_dict(self, state: dict[str, Any] | Sequence[dict[str, Any]]) -> None:
        """Continue from ``state``: the next ``iter()`` yields the rest of its epoch.

        A list of states (one per rank of an earlier job with any number of ranks) is an elastic
        resume: the items of the epoch that no old rank delivered are split over this job's
        ranks, each exactly once; later epochs follow the seed as usual.

        Cost: a permutation is recomputed from the seed (no I/O). Data without ``len()`` is
        re-read from its start and the consumed items are skipped (read, not transformed or
        collated): resuming deep into a long stream takes as long as reading that far. A stream
        with its own ``state_dict()``/``load_state_dict()`` (whose ``iter()`` continues from a
        loaded state) restarts from its saved state instead, when there is no shuffle buffer and
        no sharding. Raises :class:`~minibatcher.StateError` naming what does not match.
        """
        self._join_a_late_job(share_seed=False)
        saved = _state.saved_seed(state)
        if not self._seed_given and saved is not None:
            self._late_seed_pending = False  # every rank adopts its state's seed
            if saved != self.seed:
                self.close()  # persistent workers were started with the drawn seed
                self._use_seed(saved)  # seed=None adopts the saved seed; a given one must match
        self._epochs.load(state, self._planner)

    def __repr__(self) -> str:
        return (
            f"DataLoader(data={type(self.dataset).__name__}, batch_size={self.batch_size}, "
            f"shuffle={self.options.shuffle}, drop_last={self.drop_last}, seed={self.seed}, "
            f"output={self.options.output!r})"
        )

