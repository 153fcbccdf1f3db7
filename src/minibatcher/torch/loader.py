"""``minibatcher.torch.DataLoader``: torch's DataLoader, run by minibatcher's executors.

In: exactly the arguments of ``torch.utils.data.DataLoader`` (torch 2.13: same positional order,
defaults, errors and attributes). Out: exactly torch's batches, in torch's order for the same
``generator`` / ``torch.manual_seed`` state. State: the position in the current iteration and
the RNG state it started from (``state_dict()``, in ``checkpoint.py``), for an exact resume;
``shuffle=True``'s sampler adds ``set_epoch`` (``sampler.py``).

How it stays equal to torch: it is a subclass of ``torch.utils.data.DataLoader`` whose
``__init__`` is torch's own (no worker starts, no RNG is drawn), so every error, default and
attribute is torch's, and the resolved ``sampler``, ``batch_sampler`` and ``collate_fn`` are used
as they are; only ``__iter__`` is replaced. Being a torch DataLoader, it passes the
``isinstance`` checks of the frameworks: Lightning re-instantiates it with a
``DistributedSampler`` under DDP (the result is this class again, see the user guide).

At ``iter()`` the RNG is consumed as torch consumes it: ``iter(index sampler)``, then one
int64 draw for the workers' base seed (not again for persistent workers' later epochs). Batch
``i`` is computed by worker ``i % num_workers``, seeded as torch seeds it, with torch's
``get_worker_info()`` set. An ``IterableDataset`` is replicated into each worker (see
``transport/replicated.py``).

What minibatcher adds, without changing a batch: shared-memory transport of the results, one
vectorised fetch for ``TensorDataset`` and tensors, ``state_dict()`` / ``load_state_dict()`` (any
``num_workers``), ``stats`` (the core's ``LoaderStats``), a dead worker reported instead of a
hang.
"""

from __future__ import annotations

import itertools
import multiprocessing
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, final

import torch
import torch.utils.data as tud

from ..profile import LoaderStats, Profiler
from ..transport import InlineExecutor, ProcessExecutor
from ..transport.owner import WorkersOwner
from ..transport.replicated import ReplicatedExecutor, is_exhausted
from ..verdict import LoaderFacts
from .checkpoint import Checkpoints, rng_state, set_rng_state
from .iteration import LoaderIter
from .sampler import swap_in
from .work import IterableWork, MapWork, TorchWorkerInit

T = TypeVar("T")

_iterations = itertools.count()
"""Numbers the iterations of IterableDatasets (a worker starts a new iterator on a new one)."""


@final
class DataLoader(WorkersOwner, Checkpoints, tud.DataLoader[T]):
    """A drop-in ``torch.utils.data.DataLoader`` (a subclass: same signature, batches and
    order; ``isinstance(dl, torch.utils.data.DataLoader)`` holds).

    See ``torch.utils.data.DataLoader`` for the arguments. Additions: :meth:`state_dict` /
    :meth:`load_state_dict` (resume mid-iteration with any ``num_workers``), :meth:`close`,
    ``with`` support, :meth:`new` and :meth:`to` (fastai's protocol).

    Example::

        >>> import torch
        >>> from minibatcher.torch import DataLoader
        >>> ds = torch.utils.data.TensorDataset(torch.arange(10.0), torch.arange(10))
        >>> x, y = next(iter(DataLoader(ds, 4, False)))
        >>> x.tolist(), y.dtype
        ([0.0, 1.0, 2.0, 3.0], torch.int64)
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Any = None,
        batch_sampler: Any = None,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], Any] | None = None,
        multiprocessing_context: Any = None,
        generator: torch.Generator | None = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
    ) -> None:
        # torch's own checks, defaults and attributes (nothing starts, no RNG is drawn)
        super().__init__(
            dataset, batch_size, shuffle, sampler, batch_sampler, num_workers, collate_fn,
            pin_memory, drop_last, timeout, worker_init_fn, multiprocessing_context, generator,
            prefetch_factor=prefetch_factor, persistent_workers=persistent_workers,
            pin_memory_device=pin_memory_device, in_order=in_order,
        )  # fmt: skip
        self._iterable = isinstance(self.dataset, tud.IterableDataset)
        self._workers: Any = None  # persistent workers' executor
        self._base_seed = 0
        self._yielded = 0  # batches the user received in the current iteration
        self._prefix = 0  # batches 0 .. _prefix - 1 of the iteration are all received
        self._beyond: set[int] = set()  # received batches above _prefix (in_order=False)
        self._sampler_iter: Any = None  # the current iteration's index-sampler iterator
        self._running = False
        self._start_rng: str | None = None  # the RNG state the current iteration started from
        self._drew_seed = True
        self._resume: dict[str, Any] | None = None
        self._profiler = Profiler()  # dl.stats
        self._stats_work: Any = None
        self._iterations_begun = 0  # numbers dl.stats.epoch
        self._iteration_executor: Any = None  # a weak reference to the iteration's workers
        self._latest: Any = None  # a weak reference to the current iteration's iterator
        if shuffle and sampler is None:  # torch made a RandomSampler: ours has set_epoch
            swap_in(self)  # (see sampler.py)

    # -- iteration ---------------------------------------------------------------------------
    def __iter__(self) -> LoaderIter:  # type: ignore[override]
        self._catch_up_before_iter()  # an epoch set beyond this iteration (checkpoint.py)
        resume, self._resume = self._resume, None
        reuse = self._workers is not None and not self._workers.closed
        generator = self.generator
        restore_global = None
        if resume is not None:
            # A state taken within an iteration: its draws at iter() came before the
            # checkpoint, so the user's global RNG (restored or not) is theirs again after the
            # replay. One taken between iterations is the uninterrupted run's global RNG at
            # that point: adopted, as the draws that follow it are the next iteration's.
            if generator is None and resume.get("iteration_started", True):
                restore_global = torch.get_rng_state()
            set_rng_state(generator, resume["rng"])
        self._start_rng = rng_state(generator)
        sampler_iter = None if self._iterable else iter(self._index_sampler)
        if reuse or (resume is not None and not resume["drew_base_seed"]):
            # torch: persistent workers' later iterations draw no new base seed
            self._drew_seed = False
            if resume is not None:
                self._base_seed = int(resume["base_seed"])
        else:
            self._drew_seed = True
            self._base_seed = int(torch.empty((), dtype=torch.int64).random_(generator=generator))
        skip = 0 if resume is None else int(resume["batches_yielded"])
        beyond = set() if resume is None else {int(s) for s in resume.get("received_beyond", ())}
        if self.num_workers == 0 and self.timeout != 0:
            raise AssertionError("_SingleProcessDataLoaderIter requires timeout == 0")
        self._warn_pin_memory()
        if self.num_workers > 0 and not reuse:
            self.check_worker_number_rationality()
        replay = None  # a resume under the global RNG: the saved state, then the user's
        if restore_global is not None:
            replay = torch.get_rng_state()
            torch.set_rng_state(restore_global)  # a resume leaves the user's global RNG alone
        if sampler_iter is not None:
            # torch's workers are sent prefetch_factor * num_workers indices at iter(); without
            # workers the sampler is read at the first next(), as torch reads it.
            ahead = (self.prefetch_factor or 0) * self.num_workers
            indices = _replayed(enumerate(sampler_iter), skip, replay)
            head = list(itertools.islice(indices, ahead))
            tasks: Iterator[Any] = (
                (0, s, i, None) for s, i in itertools.chain(head, indices) if s not in beyond
            )  # batches received above the first missing one (in_order=False) are not redone
        else:
            token = next(_iterations)
            tasks = ((0, s, token, None) for s in itertools.count())
        self._sampler_iter = sampler_iter
        results = self._run(tasks, skip)
        self._yielded = skip + len(beyond)
        self._prefix, self._beyond = skip, beyond
        self._running = True
        iterator = LoaderIter(self, results)
        self._latest = weakref.ref(iterator)
        return iterator

    def _run(self, tasks: Iterator[Any], skip: int) -> Iterator[Any]:
        if self._iterable:
            work: Any = IterableWork(self.dataset, self.batch_size, self.drop_last, self.collate_fn)
        else:
            work = MapWork(self.dataset, self._auto_collation, self.collate_fn)
        self._iteration_executor = None
        if self.num_workers == 0:
            executor: Any = InlineExecutor(work)
            self._begin_stats(skip, executor, work)
            if self._iterable:
                return _skip(_inline_stream(work, tasks), skip)
            return executor.run(tasks)
        executor = self._workers
        if executor is None or executor.closed:
            executor = self._make_executor(work)
            if self.persistent_workers:
                self._workers = executor
        self._begin_stats(skip, executor, work)
        self._iteration_executor = weakref.ref(executor)  # weak: a dropped iterator's closes
        results = executor.run(tasks)
        if self._iterable:
            results = _skip(results, skip)
        if executor is self._workers:
            return results
        return _closing(results, executor)

    # -- dl.stats (the core's Profiler; see profile.py) --------------------------------------
    def _begin_stats(self, skip: int, executor: Any, work: Any) -> None:
        self._stats_work = work
        size = self._regular_batch_size()
        number = self._iterations_begun
        self._profiler.begin(number, skip, lambda: self._yielded, size, executor, work)
        self._iterations_begun += 1

    def _regular_batch_size(self) -> int | None:
        """The size of every batch but the last, or None where sizes vary (then the profiler
        counts every batch's items): a user's batch sampler, batches out of order, or the
        replicas of an IterableDataset (each may end with a short batch)."""
        if not self.in_order and self.num_workers > 1:
            return None
        if not self._auto_collation:
            return 1  # batch_size=None: one item per "batch"
        if self._iterable:
            return self.batch_size if self.num_workers <= 1 else None
        return self.batch_size if type(self.batch_sampler) is tud.BatchSampler else None

    @property
    def stats(self) -> LoaderStats:
        """Where the latest iteration's time went (``minibatcher.profile.LoaderStats``, as the
        core loader's ``dl.stats``): counts, stage times and a verdict; ``epoch`` is the number
        of the iteration (0 for the first ``iter()``)."""
        work = self._stats_work
        self._profiler.collect(work)
        facts = LoaderFacts(
            num_workers=self.num_workers, worker_type="process",
            prefetch=self.prefetch_factor or 0, fast_path=getattr(work, "fast", None) is not None,
            batched_source=hasattr(self.dataset, "__getitems__"), has_transform=False,
            torch_facade=True,
        )  # fmt: skip
        return self._profiler.snapshot(facts)

    def _make_executor(self, work: Any) -> ProcessExecutor:
        context = self.multiprocessing_context
        method = (
            context.get_start_method() if context is not None
            else multiprocessing.get_start_method()  # the process-wide one, as torch uses
        )  # fmt: skip
        kind = ReplicatedExecutor if self._iterable else ProcessExecutor
        return kind(
            work,
            self.num_workers,
            seed=self._base_seed,
            dataset=self.dataset,
            prefetch=max(1, self.prefetch_factor or 0),
            in_order=self.in_order,
            timeout=self.timeout or None,
            worker_init_fn=TorchWorkerInit(
                self.dataset, self.num_workers, self._base_seed, self.worker_init_fn
            ),
            start_method=method,
            explicit_start_method=context is not None,
            round_robin=True,
        )

    def _warn_pin_memory(self) -> None:
        if self.pin_memory and self.pin_memory_device:
            warnings.warn(
                "pin_memory_device is deprecated, the current accelerator will be used as the "
                f"device,ignore pin_memory_device='{self.pin_memory_device}'.",
                stacklevel=3,
            )
        if self.pin_memory and not torch.accelerator.is_available():
            warnings.warn(
                "'pin_memory' argument is set as true but no accelerator is found, then device "
                "pinned memory won't be used.",
                stacklevel=3,
            )

    @property
    def _pin_device(self) -> str | None:
        if not (self.pin_memory and torch.accelerator.is_available()):
            return None
        accelerator = torch.accelerator.current_accelerator()
        return None if accelerator is None or accelerator.type == "mps" else accelerator.type

    # -- copies -------------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """What ``pickle``, ``copy.copy`` and ``copy.deepcopy`` take: the loader as built (and a
        loaded state not yet used), without what belongs to a running iteration: the persistent
        workers (a copy that shared them would close them when collected, ending the
        original's iteration) and ``dl.stats``' recorder (not picklable). A copy starts its
        own workers at its first ``iter()``."""
        state = self.__dict__.copy()
        state.update(
            _workers=None, _running=False, _yielded=0, _stats_work=None, _sampler_iter=None,
            _profiler=Profiler(), _iteration_executor=None, _latest=None,
        )  # fmt: skip
        return state

    # -- fastai's protocol --------------------------------------------------------------------
    def new(self, **changes: Any) -> DataLoader[Any]:
        """A loader over the same dataset with some arguments changed; fastai's names
        ``shuffled`` (for ``shuffle``) and ``bs`` (for ``batch_size``) are accepted."""
        from .fastai import new_loader

        return new_loader(self, changes)

    def to(self, device: Any) -> DataLoader[T]:
        """Deliver batches on ``device`` from now on (fastai's ``dls.to``); returns self."""
        object.__setattr__(self, "_device", torch.device(device))
        return self

    _device: torch.device | None = None

    def __repr__(self) -> str:
        return (
            f"minibatcher.torch.DataLoader(dataset={type(self.dataset).__name__}, "
            f"batch_size={self.batch_size}, num_workers={self.num_workers})"
        )


def _replayed(indices: Iterator[Any], skip: int, rng: torch.Tensor | None) -> Iterator[Any]:
    """``indices`` less the first ``skip``; where ``rng`` is given, the global RNG is ``rng``
    while the skipped ones and the first kept one are drawn (a sampler draws its randomness at
    its first index), and the user's again after."""
    if rng is None:
        yield from itertools.islice(indices, skip, None)
        return
    users = torch.get_rng_state()
    torch.set_rng_state(rng)
    try:
        first = list(itertools.islice(indices, skip, skip + 1))
    finally:
        torch.set_rng_state(users)
    yield from first
    yield from indices


def _inline_stream(work: IterableWork, tasks: Iterator[Any]) -> Iterator[Any]:
    for seq, task in enumerate(tasks):
        batch = work(task)
        if is_exhausted(batch):
            return
        yield seq, batch


def _skip(results: Iterator[Any], count: int) -> Iterator[Any]:
    return itertools.islice(results, count, None) if count else results


def _closing(results: Iterator[Any], executor: Any) -> Iterator[Any]:
    try:
        yield from results
    finally:
        executor.close()
