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

import itertools
import math
from collections.abc import Iterator
from typing import Any, TypeVar

import accelerate
import torch.utils.data
from accelerate.data_loader import DataLoaderStateMixin
from accelerate.utils import send_to_device

from .distributed import split_by_rank_already
from .errors import ConfigError, StateError
from .loader import DataLoader as CoreLoader
from .torch import DataLoader as TorchLoader

L = TypeVar("L")

RANKS_KEY = "minibatcher_ranks"
"""The key of the list of every rank's loader state, in rank order."""


class RankBatches:
    """A batch sampler's batches dealt to ranks as accelerate deals torch's (its
    ``BatchSamplerShard`` with ``even_batches``): rank ``r`` gets batches ``r, r + w, ...`` of the
    epoch. Without ``drop_last`` every rank gets ``ceil(n / w)`` batches: the last batch is
    completed, and missing ones made, from the epoch's first indices (so the padding is at the
    end of the last step's gathered batch, where ``gather_for_metrics`` cuts it off); batches of
    varying sizes (a user's batch sampler) are padded by whole batches from the start. With
    ``drop_last``, the last round of batches is dropped where it is incomplete."""

    def __init__(self, batch_sampler: Any, rank: int, world_size: int) -> None:
        self.batch_sampler = batch_sampler
        self.rank = rank
        self.world_size = world_size

    @property
    def sampler(self) -> Any:
        """The inner sampler (Lightning and accelerate call its ``set_epoch``)."""
        return getattr(self.batch_sampler, "sampler", None)

    @property
    def batch_size(self) -> int | None:
        """The size of the batches (accelerate's ``total_batch_size`` is it times the ranks)."""
        return getattr(self.batch_sampler, "batch_size", None)

    @property
    def _drop_last(self) -> bool:
        return bool(getattr(self.batch_sampler, "drop_last", False))

    def set_epoch(self, epoch: int) -> None:
        for obj in (self.batch_sampler, self.sampler):
            set_epoch = getattr(obj, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)

    def __len__(self) -> int:
        if self._drop_last:
            return len(self.batch_sampler) // self.world_size
        return math.ceil(len(self.batch_sampler) / self.world_size)

    def __iter__(self) -> Iterator[Any]:
        batches = list(self.batch_sampler)
        if not batches:
            return
        world = self.world_size
        if self._drop_last:
            batches = batches[: len(batches) // world * world]
        elif len(batches) % world or len(batches[-1]) != len(batches[0]):
            batches = self._padded(batches)
        yield from batches[self.rank :: world]

    def _padded(self, batches: list[Any]) -> list[Any]:
        world, size = self.world_size, self.batch_size
        total = math.ceil(len(batches) / world) * world
        if type(self.batch_sampler) is not torch.utils.data.BatchSampler or not size:
            return [batches[i % len(batches)] for i in range(total)]
        flat = [i for batch in batches for i in batch]
        first = flat[: world * size]  # accelerate's "initial data", repeated
        padding = itertools.islice(itertools.cycle(first), total * size - len(flat))
        flat.extend(padding)
        return [flat[i : i + size] for i in range(0, len(flat), size)]


def _shard_torch_loader(dl: TorchLoader[Any], rank: int, world_size: int) -> TorchLoader[Any]:
    if isinstance(dl.dataset, torch.utils.data.IterableDataset):
        raise ConfigError(
            "a minibatcher.torch.DataLoader over an IterableDataset "
            f"({type(dl.dataset).__name__}) cannot be split into ranks by batches: make each "
            "rank read its own share (datasets.distributed.split_dataset_by_node, or "
            "torch.distributed.get_rank() in __iter__)"
        )
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

    def __init__(self, accelerator: Any, loader: Any, device_placement: bool = True) -> None:
        self.accelerator = accelerator
        self.gradient_state = accelerator.gradient_state
        self.device = accelerator.device
        self.device_placement = device_placement
        self.loader = loader
        self.dataset = getattr(loader, "dataset", None)
        batch_sampler = getattr(loader, "batch_sampler", None)
        self._drop_last = bool(
            getattr(loader, "drop_last", False) or getattr(batch_sampler, "_drop_last", False)
        )
        # a sharded facade's batch size is its RankBatches'; accelerate's gradient state cuts
        # the last step's gathered batch to len(dataset) % total_batch_size (gather_for_metrics)
        size = getattr(loader, "batch_size", None) or getattr(batch_sampler, "batch_size", None)
        self.total_batch_size = (size or 1) * max(1, accelerator.num_processes)
        self.reset()

    @property
    def sampler(self) -> Any:
        """The loader's sampler (``set_epoch`` keeps epochs in step)."""
        return self.loader.sampler

    @property
    def batch_sampler(self) -> Any:
        return getattr(self.loader, "batch_sampler", None)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the loader, or (a facade) of its sampler and batch sampler, as
        Lightning does (a ``RankBatches`` passes it on to the sampler inside)."""
        loader = self.loader
        targets = [loader] if isinstance(loader, CoreLoader) else [loader.sampler]
        if not isinstance(loader, CoreLoader) and loader.batch_sampler is not None:
            targets.append(loader.batch_sampler)
        for target in targets:
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
                yield self._placed(current)
                current = following
                position = loader.state_dict()
            self._position = position
            self.end_of_dataloader = True  # before the last batch: accumulate() syncs on it
            yield self._placed(current)
        finally:
            self._position = None
            self.end()

    _position: dict[str, Any] | None = None

    def _placed(self, batch: Any) -> Any:
        """``batch`` on ``accelerator.device``, or as it is with ``device_placement=False``."""
        return send_to_device(batch, self.device) if self.device_placement else batch

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


def prepare(
    accelerator: Any, loader: Any, device_placement: bool | None = None
) -> AcceleratedLoader:
    """``loader`` prepared as ``accelerator.prepare`` prepares torch's (module docstring);
    ``device_placement`` (default: the accelerator's) ``False`` leaves batches where the loader
    puts them."""
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
    # a DistributedSampler, also inside a user's batch sampler, or data split by node: already
    # this rank's share (splitting it again would leave 1 / world**2 of the data)
    if (
        isinstance(loader, TorchLoader) and world > 1
        and not split_by_rank_already(loader.sampler, loader.batch_sampler, loader.dataset)
    ):  # fmt: skip
        loader = _shard_torch_loader(loader, rank, world)
    if device_placement is None:
        device_placement = bool(getattr(accelerator, "device_placement", True))
    prepared = AcceleratedLoader(accelerator, loader, device_placement)
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
        # the first num_batches are skipped, not the batches received out of order (in_order=False)
        state[loader_key] = {**state[loader_key], "next_batch": num_batches, "delivered_above": []}
    else:
        state["batches_yielded"] = num_batches
        state["received_beyond"] = []  # the first num_batches, not those received out of order
    inner.load_state_dict(state)
    return loader


def _ours(obj: Any) -> bool:
    return isinstance(obj, (CoreLoader, TorchLoader, AcceleratedLoader))


class Accelerator(accelerate.Accelerator):  # type: ignore[misc]
    """``accelerate.Accelerator`` that prepares minibatcher loaders with :func:`prepare` (module
    docstring); every other object, torch's DataLoaders included, goes to accelerate as before."""

    def prepare(self, *args: Any, device_placement: list[bool] | None = None) -> Any:
        """``accelerate.Accelerator.prepare``, with minibatcher loaders prepared by
        :func:`prepare` (``device_placement``: one per object, as accelerate's)."""
        places: list[bool | None] = [None] * len(args)
        if device_placement is not None and len(device_placement) == len(args):
            places = list(device_placement)  # (of another length: accelerate's error below)
        args = tuple(
            prepare(self, obj, place) if _ours(obj) else obj
            for obj, place in zip(args, places, strict=True)
        )
        return super().prepare(*args, device_placement=device_placement)

    def prepare_data_loader(
        self, data_loader: Any, device_placement: bool | None = None, **kwargs: Any
    ) -> Any:
        """``accelerate.Accelerator.prepare_data_loader``; ours by :func:`prepare`."""
        if _ours(data_loader):
            return prepare(self, data_loader, device_placement)
        return super().prepare_data_loader(data_loader, device_placement, **kwargs)

    def skip_first_batches(self, dataloader: Any, num_batches: int = 0) -> Any:
        """For a prepared minibatcher loader: :func:`skip_first_batches` (``dataloader`` itself,
        its next epoch starting at batch ``num_batches``); else accelerate's."""
        if _ours(dataloader):
            return skip_first_batches(dataloader, num_batches)
        return super().skip_first_batches(dataloader, num_batches)
