"""HF accelerate: what ``accelerator.prepare(dl)`` does to a torch DataLoader, for ours.

``accelerator.prepare`` wraps only ``torch.utils.data.DataLoader`` instances and returns any
other loader unchanged, so a minibatcher loader goes through :func:`prepare` instead::

    model, optimizer = accelerator.prepare(model, optimizer)
    dl = minibatcher.accelerate.prepare(accelerator, dl)   # minibatcher.DataLoader or .torch's

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
- replaces ``accelerator.skip_first_batches(dl, n)`` (which builds a torch DataLoader from the
  attributes of one) with :func:`skip_first_batches`, a resume at batch ``n`` (nothing loaded).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from accelerate.data_loader import DataLoaderStateMixin
from accelerate.utils import send_to_device

from .errors import ConfigError, StateError
from .loader import DataLoader as CoreLoader
from .torch import DataLoader as TorchLoader

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
        raise ConfigError(
            "loader must be a minibatcher.DataLoader or minibatcher.torch.DataLoader (pass torch's "
            f"own DataLoader to accelerator.prepare), got {type(loader).__name__}"
        )
    world, rank = accelerator.num_processes, accelerator.process_index
    if isinstance(loader, TorchLoader) and world > 1:
        distributed = type(loader.sampler).__name__ == "DistributedSampler"
        if not distributed:
            loader = _shard_torch_loader(loader, rank, world)
    prepared = AcceleratedLoader(accelerator, loader)
    accelerator.register_for_checkpointing(prepared)
    return prepared


def skip_first_batches(loader: AcceleratedLoader, num_batches: int) -> AcceleratedLoader:
    """Make the next epoch of ``loader`` start at batch ``num_batches`` (nothing is loaded for
    the skipped ones): ``accelerator.skip_first_batches`` for minibatcher loaders."""
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 0:
        raise ConfigError(f"num_batches must be a non-negative int, got {num_batches!r}")
    inner = loader.loader
    state = inner.state_dict()
    if isinstance(inner, CoreLoader):
        loader_key = next(k for k, v in state.items() if isinstance(v, dict) and "next_batch" in v)
        state[loader_key] = {**state[loader_key], "next_batch": num_batches}
    else:
        state["batches_yielded"] = num_batches
    inner.load_state_dict(state)
    return loader
