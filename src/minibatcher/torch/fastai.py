"""fastai's loader protocol for ``minibatcher.torch.DataLoader``: ``new()`` (``get_preds`` calls
``dl.new(shuffled=False, drop_last=False)``) and the arguments it is rebuilt from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch.utils.data as tud

from ..errors import ConfigError
from .sampler import RandomSampler

if TYPE_CHECKING:
    from .loader import DataLoader

ALIASES = {"shuffled": "shuffle", "bs": "batch_size"}


def _arguments(dl: DataLoader[Any]) -> dict[str, Any]:
    """The arguments that rebuild ``dl``; its sampler only where the user chose one."""
    shuffled = type(dl.sampler) in (tud.RandomSampler, RandomSampler)  # shuffle=True's
    default_sampler = shuffled or type(dl.sampler) is tud.SequentialSampler
    default_batches = type(dl.batch_sampler) is tud.BatchSampler and default_sampler
    args: dict[str, Any] = {
        "batch_size": dl.batch_size,
        "num_workers": dl.num_workers,
        "collate_fn": dl.collate_fn,
        "pin_memory": dl.pin_memory,
        "drop_last": dl.drop_last,
        "timeout": dl.timeout,
        "worker_init_fn": dl.worker_init_fn,
        "multiprocessing_context": dl.multiprocessing_context,
        "generator": dl.generator,
        "prefetch_factor": dl.prefetch_factor,
        "persistent_workers": dl.persistent_workers,
        "in_order": dl.in_order,
    }
    if not isinstance(dl.dataset, tud.IterableDataset):
        if default_batches or dl.batch_sampler is None:
            args["shuffle"] = shuffled
            if not default_sampler:
                args["sampler"] = dl.sampler
        else:
            args["batch_sampler"] = dl.batch_sampler
            args["batch_size"], args["drop_last"] = 1, False
    return args


def new_loader(dl: DataLoader[Any], changes: dict[str, Any]) -> DataLoader[Any]:
    """``dl`` rebuilt with ``changes`` (fastai's names accepted); a shuffle change replaces a
    sampler, as fastai expects of ``new(shuffled=False)``."""
    from .loader import DataLoader

    args = _arguments(dl)
    for name, value in changes.items():
        name = ALIASES.get(name, name)
        if name not in {*args, "shuffle", "sampler", "batch_sampler"}:
            raise ConfigError(f"new() got an unknown argument {name!r}")
        args[name] = value
    if "shuffle" in {ALIASES.get(k, k) for k in changes}:
        args.pop("sampler", None)
    if args.get("batch_sampler") is not None:
        args.pop("shuffle", None)
        args.pop("sampler", None)
        args["batch_size"], args["drop_last"] = 1, False
    if args.get("num_workers", 0) == 0:
        args["prefetch_factor"] = None
        args["persistent_workers"] = False
        args["multiprocessing_context"] = None
    loader: DataLoader[Any] = DataLoader(dl.dataset, **args)
    if dl._device is not None:
        loader.to(dl._device)
    return loader
