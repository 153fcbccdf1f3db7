"""``minibatcher.sizing`` for ``minibatcher.torch.DataLoader``: the same measurement, on the
batches torch's loader would give.

The sizing functions rebuild the loader they are given at other batch sizes. For a torch
loader they measure a core ``minibatcher.DataLoader`` built from its resolved parts: the same
dataset, ``collate_fn`` (so exactly torch's batches), workers, ``drop_last`` and device, and an
order of the same kind. The user's loader, its sampler and their generators are never iterated
or advanced: measuring changes neither the model (``state=``) nor the next training order.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.utils.data as tud

from ..loader import DataLoader as CoreLoader
from ..sizing._loaders import register_loader_adapter
from .loader import DataLoader

SIZING_SEED = 0
"""The seed of the shuffled order measured in place of a ``RandomSampler``'s."""


def as_core_loader(dl: DataLoader[Any]) -> CoreLoader[Any]:
    """A core loader that yields the batches ``dl`` yields, for the sizing functions to rebuild."""
    if dl.batch_size is None:
        raise ValueError(
            "dl must batch by batch_size to be rebuilt at other batch sizes; it has "
            f"batch_size=None and a batch_sampler={type(dl.batch_sampler).__name__}"
        )
    kwargs: dict[str, Any] = {}
    if not isinstance(dl.dataset, tud.IterableDataset):
        kwargs.update(_order(dl.sampler))
    return CoreLoader(
        dl.dataset,
        batch_size=dl.batch_size,
        drop_last=dl.drop_last,
        collate_fn=dl.collate_fn,  # type: ignore[arg-type]
        num_workers=dl.num_workers,
        worker_init_fn=dl.worker_init_fn,
        timeout=dl.timeout or None,
        device=dl._device,
        pin_memory=dl.pin_memory,
        shard=None,  # a DistributedSampler, if any, already gives this rank its share
        seed=SIZING_SEED,
        **kwargs,
    )


def _order(sampler: Any) -> dict[str, Any]:
    """The core loader's arguments for an order of the same kind as ``sampler``'s, drawing from
    nothing the user's training draws from."""
    if type(sampler) is tud.SequentialSampler:
        return {"shuffle": False}
    if (type(sampler) is tud.RandomSampler and not sampler.replacement
            and sampler._num_samples is None):
        return {"shuffle": True}
    generator = getattr(sampler, "generator", None)
    if isinstance(generator, torch.Generator):  # a copy drawing from a copy of its generator
        sampler = copy.copy(sampler)
        sampler.generator = torch.Generator().set_state(generator.get_state())
    return {"sampler": sampler}


register_loader_adapter(DataLoader, as_core_loader)
