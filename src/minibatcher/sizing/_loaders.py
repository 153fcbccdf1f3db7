"""Loaders at other batch sizes, the population they draw from, and batches cut into slices.

The sizing functions measure at batch sizes the user did not choose, on the batches training
would see: the same data, transforms, collate, seed and workers. :func:`loader_like` rebuilds
the user's loader from its recorded options with another ``batch_size`` (the user's loader is
never iterated, so its epoch counter and workers are left alone).
"""

from __future__ import annotations

import dataclasses
import itertools
import numbers
from collections.abc import Callable, Generator, Mapping
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..loader import DataLoader
from ..samplers.shard import ShardSpec, shard_length
from ..sources import IndexedSource, StreamSource

_adapters: list[tuple[type, Callable[[Any], DataLoader[Any]]]] = []


def register_loader_adapter(kind: type, to_loader: Callable[[Any], DataLoader[Any]]) -> None:
    """Let the sizing functions measure loaders of ``kind`` (``minibatcher.torch`` registers
    its DataLoader on import) through ``to_loader(dl)``: a core loader giving the same batches."""
    _adapters.append((kind, to_loader))


def check_loader(dl: Any, name: str = "dl") -> DataLoader[Any]:
    """``dl`` itself (or its core equivalent), or a ConfigError: the sizing functions need a
    batching minibatcher loader."""
    for kind, to_loader in _adapters:
        if isinstance(dl, kind):
            try:
                dl = to_loader(dl)
            except ValueError as e:
                raise ConfigError(str(e).replace("dl ", f"{name} ", 1)) from None
            break
    if not isinstance(dl, DataLoader):
        raise ConfigError(
            f"{name} must be a minibatcher.DataLoader or minibatcher.torch.DataLoader, got "
            f"{type(dl).__module__}.{type(dl).__qualname__}"
        )
    if dl.options.batch_sampler is not None or dl.options.batch_size is None:
        raise ConfigError(
            f"{name} must batch by batch_size to be rebuilt at other batch sizes; it has "
            f"batch_size={dl.options.batch_size!r} and a batch_sampler="
            f"{type(dl.options.batch_sampler).__name__ if dl.options.batch_sampler else None}"
        )
    return dl


def loader_like(dl: DataLoader[Any], batch_size: int, **changes: Any) -> DataLoader[Any]:
    """A new loader with ``dl``'s data and options (its resolved seed, and the choice of
    ``num_workers="auto"`` once made), at ``batch_size``."""
    if changes.get("sampler") is not None:
        changes.setdefault("shuffle", False)
    return dl.new(batch_size=batch_size, progress=False, **changes)


def population(dl: DataLoader[Any]) -> int | None:
    """N, the number of items one epoch of ``dl`` draws its batches from (None: unknown)."""
    source, opts = dl.source, dl.options
    if isinstance(source, StreamSource):
        n = source.length
    elif opts.sampler is not None:
        n = len(opts.sampler) if hasattr(opts.sampler, "__len__") else None  # type: ignore[arg-type]
    else:
        n = len(source)
    shard = dl.shard
    return shard_length(n, None if shard is None else ShardSpec(*shard, dl.options.uneven))


def batch_length(batch: Any) -> int:
    """The number of items of a collated batch: the first axis of its first sliceable leaf."""
    for leaf in _leaves(batch):
        shape = getattr(leaf, "shape", None)
        if shape is not None and len(shape) > 0:
            return int(shape[0])
        if isinstance(leaf, list):
            return len(leaf)
    raise ValueError(f"cannot tell how many items the batch holds: no array leaf in {_kind(batch)}")


def split_batch(batch: Any, parts: int) -> tuple[list[Any], list[int]]:
    """``batch`` cut into ``parts`` consecutive slices (every leaf along its first axis)."""
    n = batch_length(batch)
    if n < parts:
        raise ValueError(f"a batch of {n} items cannot be cut into {parts} micro-batches")
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    pairs = list(itertools.pairwise(int(b) for b in bounds))
    return [_slice(batch, a, b, n) for a, b in pairs], [b - a for a, b in pairs]


def _is_structure(obj: Any) -> bool:
    return (isinstance(obj, (Mapping, tuple))
            or (dataclasses.is_dataclass(obj) and not isinstance(obj, type))
            or (isinstance(obj, list) and any(_is_structure(v) or _is_array(v) for v in obj)))


def _is_array(obj: Any) -> bool:
    return hasattr(obj, "shape") and hasattr(obj, "__getitem__")


def _leaves(obj: Any) -> list[Any]:
    if isinstance(obj, Mapping):
        return [leaf for v in obj.values() for leaf in _leaves(v)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [leaf for f in dataclasses.fields(obj) for leaf in _leaves(getattr(obj, f.name))]
    if isinstance(obj, tuple) or (isinstance(obj, list) and _is_structure(obj)):
        return [leaf for v in obj for leaf in _leaves(v)]
    return [obj]


def _slice(obj: Any, start: int, stop: int, n: int) -> Any:
    if isinstance(obj, Mapping):
        return type(obj)({k: _slice(v, start, stop, n) for k, v in obj.items()})  # type: ignore[call-arg]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: _slice(getattr(obj, f.name), start, stop, n)
                  for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **fields)
    if isinstance(obj, tuple):
        values = [_slice(v, start, stop, n) for v in obj]
        return type(obj)(*values) if hasattr(obj, "_fields") else type(obj)(values)
    if isinstance(obj, list) and _is_structure(obj):
        return [_slice(v, start, stop, n) for v in obj]
    shape = getattr(obj, "shape", None)
    if (shape is not None and len(shape) == 0) or isinstance(obj, (numbers.Number, str, bytes)):
        return obj  # a scalar leaf: the same for every slice
    if shape is None and not isinstance(obj, list):
        return obj
    length = int(shape[0]) if shape is not None else len(obj)
    if length != n:
        raise ValueError(
            f"cannot cut the batch into micro-batches: a leaf has {length} rows along its first "
            f"axis where the batch has {n} items ({_kind(obj)})"
        )
    return obj[start:stop]


def _kind(obj: Any) -> str:
    shape = getattr(obj, "shape", None)
    return f"{type(obj).__name__}" + ("" if shape is None else f" of shape {tuple(shape)}")


def largest_items(dl: DataLoader[Any], count: int, sample: int = 1024) -> list[int] | None:
    """Indices of ``count`` of the largest items (repeated if needed), or None where the items'
    sizes do not vary (a sample of up to ``sample`` items, read without transforms)."""
    source = dl.source
    if not isinstance(source, IndexedSource) or dl.options.sampler is not None:
        return None
    n = len(source)
    if n == 0:
        return None
    picked = np.unique(np.linspace(0, n - 1, min(n, sample)).astype(np.int64))
    try:
        sizes = np.array([_item_bytes(item) for item in source.fetch_items(picked)])
    except Exception:  # an item we cannot size: measure on ordinary batches instead
        return None
    if sizes.max() <= sizes.min() * 1.01:
        return None
    order = picked[np.argsort(-sizes, kind="stable")]
    return [int(order[i % len(order)]) for i in range(count)]


def _item_bytes(item: Any) -> int:
    total = 0
    for leaf in _leaves(item):
        nbytes = getattr(leaf, "nbytes", None)
        if nbytes is None and hasattr(leaf, "element_size") and hasattr(leaf, "numel"):
            nbytes = leaf.element_size() * leaf.numel()  # a torch tensor
        if nbytes is None:
            nbytes = len(leaf) if isinstance(leaf, (str, bytes, list)) else 8
        total += int(nbytes)
    return total


def batches_forever(dl: DataLoader[Any]) -> Generator[Any, None, None]:
    """``dl``'s batches, epoch after epoch; each epoch's iterator (and its workers) closed as
    soon as it is left, also when the caller stops early."""
    while True:
        epoch = iter(dl)
        count = 0
        try:
            for batch in epoch:
                count += 1
                yield batch
        finally:
            close = getattr(epoch, "close", None)
            if close is not None:
                close()
        if count == 0:
            raise ValueError(f"an epoch of {dl!r} has no batch")
