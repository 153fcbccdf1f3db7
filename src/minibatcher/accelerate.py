"""HF accelerate: what ``accelerator.prepare(dl)`` does to a torch DataLoader, for ours.

One import line: :class:`Accelerator` in place of ``accelerate.Accelerator``; then
``accelerator.prepare(model, optimizer, dl)``, ``accelerator.skip_first_batches(dl, n)``,
``save_state`` / ``load_state`` work with both minibatcher loaders as with torch's::

    from minibatcher.accelerate import Accelerator      # was: from accelerate import Accelerator

    accelerator = Accelerator(gradient_accumulation_steps=4)
    model, optimizer, dl = accelerator.prepare(model, optimizer, dl)

Why a subclass: ``accelerate.Accelerator.prepare`` wraps only ``torch.utils.data.DataLoader``
instances. It returns a ``minibatcher.DataLoader`` unchanged (every rank then reads all the
data), and it rebuilds a ``minibatcher.torch.DataLoader`` (a torch subclass) as its own
``DataLoaderShard``: correct shares, torch's batches, but torch's engine (no exact resume, no
shared-memory transport). :class:`Accelerator` hands our loaders to :func:`prepare` instead and
everything else to accelerate. :func:`prepare` (``prepare(accelerator, dl)``) does the same for an
``accelerate.Accelerator`` of one's own.

The result (:class:`AcceleratedLoader`):

- is this rank's share: a ``minibatcher.DataLoader`` shards itself (``shard="auto"``, the default
  inside a process group); a ``minibatcher.torch.DataLoader`` is rebuilt with its batches dealt
  to the ranks round-robin (batch ``i`` to rank ``i % world_size``, the last ones repeated from
  the start so that every rank has as many, as accelerate's ``even_batches`` does);
- delivers batches on ``accelerator.device``;
- tells accelerate's gradient state when the loader ends, so ``accelerator.accumulate`` syncs the
  gradients at the last batch (accelerate's ``DataLoaderStateMixin`` protocol);
- is registered for checkpointing: ``save_state`` / ``load_state`` save and restore the loader's
  position exactly, on every rank;
- is resumed at batch ``n`` by ``Accelerator.skip_first_batches(dl, n)`` (or
  :func:`skip_first_batches`): nothing is loaded for the skipped batches. Unlike accelerate's,
  which returns a new loader, it returns ``dl`` itself, whose next epoch starts at batch ``n``
  (the epochs after it are whole).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, TypeVar

import accelerate
from accelerate.data_loader import DataLoaderStateMixin
from accelerate.utils import send_to_device

from .errors import ConfigError, StateError
from .loader import DataLoader as CoreLoader
from .torch import DataLoader as TorchLoader

L = TypeVar("L")

RANKS_KEY = "minibatcher_ranks"
"""The key of the list of every rank's loader state, in rank order."""


class RankBatches:
    """A batch sampler's batches dealt to ranks: rank ``r`` gets batches ``r, r + w, ...`` of
    the epoch, padded from the start so that every rank has ``ceil(n / w)`` of them."""

    def __init__(self, batch_sampler: Any, rank: int, world_size: int) -> None:
        self.batch_sampler = batch_sampler
        self.rank = rank
        self.world_size = world_size

    @property
    def sampler(self) -> Any:
        """The inner sampler (Lightning and accelerate call its ``set_epoch``)."""
        return getattr(self.batch_sampler, "sampler", None)

    def set_epoch(self, epoch: int) -> None:
        for obj in (self.batch_sampler, self.sampler):
            set_epoch = getattr(obj, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)

    def __len__(self) -> int:
        return math.ceil(len(self.batch_sampler) / self.world_size)

    def __iter__(self) -> Iterator[Any]:
        batches = list(self.batch_sampler)
        if not batches:
            return
        total = math.ceil(len(batches) / self.world_size) * self.world_size
        for i in range(self.rank, total, self.world_size):
            yield batches[i % len(batches)]


def _shard_torch_loader(dl: TorchLoader[Any], rank: int, world_size: int) -> TorchLoader[Any]:
    if dl.batch_sampler is None:
        raise ConfigError(
            "a minibatcher.torch.DataLoader with batch_size=None (or over an IterableDataset) "
            "cannot be split into ranks by batches; give it a DistributedSampler instead"
        )
    return TorchLoader(
        dl.dataset,
        batch_sampler=RankBatches(dl.batch_sampler, rank, world_size),
        num_workers=dl.num_workers,
        collate_fn=dl.collate_fn,
        pin_memory=dl.pin_memory,
        timeout=dl.timeout,
        worker_init_fn=dl.worker_init_fn,
        multiprocessing_context=dl.multiprocessing_context,
        generator=dl.generator,
        prefetch_factor=dl.prefetch_factor,
        persistent_workers=dl.persistent_workers,
        in_order=dl.in_order,
    )


class AcceleratedLoader(DataLoaderStateMixin):  # type: ignore[misc]
    """A minibatcher loader prepared for ``accelerator`` (see the module docstring)."""

    def __init__(self, accelerator: Any, loader: Any) -> None:
        self.accelerator = accelerator
        self.gradient_state = accelerator.gradient_state
        self.device = accelerator.device
        self.loader = loader
        self.dataset = getattr(loader, "dataset", None)
        self._drop_last = bool(getattr(loader, "drop_last", False))
        self.total_batch_size = (getattr(loader, "batch_size", None) or 1) * max(
            1, accelerator.num_processes
        )
        self.reset()

    @property
    def sampler(self) -> Any:
        """The loader's sampler (``set_epoch`` keeps epochs in step)."""
        return self.loader.sampler

    @property
    def batch_sampler(self) -> Any:
        return getattr(self.loader, "batch_sampler", None)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the loader (or of its sampler)."""
        target = self.loader if isinstance(self.loader, CoreLoader) else self.loader.sampler
        set_epoch = getattr(target, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        # One batch is read ahead to know which is the last; while the user holds batch k, the
        # state saved is the loader's when it had handed over k (not k + 1).
        self.begin()
        loader = self.loader
        try:
            iterator = iter(loader)
            try:
                current = next(iterator)
            except StopIteration:
                return
            position = loader.state_dict()
            for following in iterator:
                self._position = position
                yield send_to_device(current, self.device)
                current = following
                position = loader.state_dict()
            self._position = position
            self.end_of_dataloader = True  # before the last batch: accumulate() syncs on it
            yield send_to_device(current, self.device)
        finally:
            self._position = None
            self.end()

    _position: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        """Every rank's loader state (``accelerator.save_state`` writes custom objects from the
        main process only, so the ranks' states are gathered into it; call on every rank)."""
        own = self._position or self.loader.state_dict()
        world = self.accelerator.num_processes
        if world <= 1:
            return {RANKS_KEY: [own]}
        import torch.distributed as dist

        states: list[Any] = [None] * world
        dist.all_gather_object(states, own)
        return {RANKS_KEY: states}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore this rank's loader state (by ``accelerator.load_state``)."""
        ranks = state.get(RANKS_KEY)
        if not isinstance(ranks, list) or len(ranks) != self.accelerator.num_processes:
            raise StateError(
                f"the state holds {len(ranks) if isinstance(ranks, list) else 'no'} ranks' "
                f"states, this job has {self.accelerator.num_processes} ranks"
            )
        self.loader.load_state_dict(ranks[self.accelerator.process_index])

    def __repr__(self) -> str:
        return f"AcceleratedLoader({self.loader!r}, device={self.device})"


def prepare(accelerator: Any, loader: Any) -> AcceleratedLoader:
    """``loader`` prepared as ``accelerator.prepare`` prepares torch's (module docstring)."""
    if isinstance(loader, AcceleratedLoader):
        return loader
    if not isinstance(loader, (CoreLoader, TorchLoader)):
        hint = (
            "accelerate.Accelerator.prepare rebuilds a minibatcher.torch.DataLoader as its own "
            "torch loader: pass the minibatcher loader itself here, or prepare everything with "
            "minibatcher.accelerate.Accelerator"
            if type(loader).__module__.startswith("accelerate")
            else "pass torch's own DataLoader to accelerator.prepare"
        )
        raise ConfigError(
            "loader must be a minibatcher.DataLoader or minibatcher.torch.DataLoader "
            f"({hint}), got {type(loader).__name__}"
        )
    world, rank = accelerator.num_processes, accelerator.process_index
    if isinstance(loader, TorchLoader) and world > 1:
        distributed = type(loader.sampler).__name__ == "DistributedSampler"
        if not distributed:
            loader = _shard_torch_loader(loader, rank, world)
    prepared = AcceleratedLoader(accelerator, loader)
    accelerator.register_for_checkpointing(prepared)
    return prepared


def skip_first_batches(loader: L, num_batches: int) -> L:
    """Make the next epoch of ``loader`` (prepared or not) start at batch ``num_batches``
    (nothing is loaded for the skipped ones): ``accelerator.skip_first_batches`` for
    minibatcher loaders; returns ``loader``."""
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 0:
        raise ConfigError(f"num_batches must be a non-negative int, got {num_batches!r}")
    inner: Any = loader.loader if isinstance(loader, AcceleratedLoader) else loader
    if not isinstance(inner, (CoreLoader, TorchLoader)):
        raise ConfigError(
            "loader must be a minibatcher loader (prepared or not), got "
            f"{type(loader).__name__}"
        )
    state = inner.state_dict()
    if isinstance(inner, CoreLoader):
        loader_key = next(k for k, v in state.items() if isinstance(v, dict) and "next_batch" in v)
        state[loader_key] = {**state[loader_key], "next_batch": num_batches}
    else:
        state["batches_yielded"] = num_batches
    inner.load_state_dict(state)
    return loader


def _ours(obj: Any) -> bool:
    return isinstance(obj, (CoreLoader, TorchLoader, AcceleratedLoader))


class Accelerator(accelerate.Accelerator):  # type: ignore[misc]
    """``accelerate.Accelerator`` that prepares minibatcher loaders with :func:`prepare` (module
    docstring); every other object, torch's DataLoaders included, goes to accelerate as before."""

    def prepare(self, *args: Any, device_placement: list[bool] | None = None) -> Any:
        """``accelerate.Accelerator.prepare``, with minibatcher loaders prepared by
        :func:`prepare` (on ``accelerator.device`` whatever ``device_placement`` says)."""
        args = tuple(prepare(self, obj) if _ours(obj) else obj for obj in args)
        return super().prepare(*args, device_placement=device_placement)

    def prepare_data_loader(
        self, data_loader: Any, device_placement: bool | None = None, **kwargs: Any
    ) -> Any:
        """``accelerate.Accelerator.prepare_data_loader``; ours by :func:`prepare`."""
        if _ours(data_loader):
            return prepare(self, data_loader)
        return super().prepare_data_loader(data_loader, device_placement, **kwargs)

    def skip_first_batches(self, dataloader: Any, num_batches: int = 0) -> Any:
        """For a prepared minibatcher loader: :func:`skip_first_batches` (``dataloader`` itself,
        its next epoch starting at batch ``num_batches``); else accelerate's."""
        if _ours(dataloader):
            return skip_first_batches(dataloader, num_batches)
        return super().skip_first_batches(dataloader, num_batches)
