"""Checkpoints: the loader's position as a small, JSON-serialisable dict, validated on load.

The main process decides every batch from ``(seed, epoch)``, so a position is a few integers: the
epoch, the in-order watermark (every batch below it reached the user) and the batches above it
that also did (``in_order=False`` hands them over as they are ready; the set is bounded by the
batches in flight). A permutation is recomputed from the seed, never stored. Schema (version 1)::

    {
      "version": 1,
      "loader": {"epoch": 3, "next_batch": 120, "delivered_above": [122]},
      "config": {"dataset_length": 60000, "batch_size": 64, "drop_last": false, "shuffle": true,
                 "seed": 42, "sampler": "RandomSampler(n=60000, ...)", "shuffle_buffer": null},
      "shard": {"rank": 0, "world_size": 4, "uneven": "pad",
                "domain": {"start": 0, "excluded": []}},
      "source": null
    }

``config`` is what must match for the state to mean the same thing in another loader (refused
with a :class:`~minibatcher.errors.StateError` naming the difference); the number and kind of
workers are deliberately absent, since they never change what is delivered. ``shard.domain`` is
the part of the epoch this world splits (the whole epoch, unless it was resumed elastically; see
``samplers/shard.py``). ``source`` holds, for an iterable without ``len()`` that has its own
``state_dict()``, the count of items read and the source's state; it is null otherwise.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import StateError
from .samplers.shard import Domain, RankProgress, ShardSpec, remaining_after

STATE_VERSION = 1
VERSION_KEY = "version"
LOADER_KEY = "loader"
CONFIG_KEY = "config"
SHARD_KEY = "shard"
SOURCE_KEY = "source"
TOP_KEYS = (VERSION_KEY, LOADER_KEY, CONFIG_KEY, SHARD_KEY, SOURCE_KEY)
CONFIG_FIELDS = ("dataset_length", "batch_size", "drop_last", "shuffle", "seed", "sampler",
                 "shuffle_buffer")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A parsed, structurally valid state."""

    epoch: int
    next_batch: int
    above: tuple[int, ...]
    config: Mapping[str, Any]
    rank: int
    world_size: int
    uneven: str
    domain: Domain
    source: Any


def make_state(
    *,
    config: Mapping[str, Any],
    epoch: int,
    next_batch: int,
    above: Sequence[int],
    spec: ShardSpec | None,
    uneven: str,
    domain: Domain | None,
    source: Any = None,
) -> dict[str, Any]:
    """The state dict of a loader at this position (plain ints, lists and dicts only)."""
    return {
        VERSION_KEY: STATE_VERSION,
        LOADER_KEY: {
            "epoch": int(epoch),
            "next_batch": int(next_batch),
            "delivered_above": sorted(int(s) for s in above),
        },
        CONFIG_KEY: dict(config),
        SHARD_KEY: {
            "rank": 0 if spec is None else spec.rank,
            "world_size": 1 if spec is None else spec.world_size,
            "uneven": uneven if spec is None else spec.uneven,
            "domain": (domain or Domain()).to_json(),
        },
        SOURCE_KEY: source,
    }


def parse_state(state: Any) -> Checkpoint:
    """Check the structure of ``state`` and return it parsed; StateError names what is wrong."""
    if not isinstance(state, Mapping):
        raise StateError(f"a loader state must be a dict, got {type(state).__name__}")
    missing = [k for k in TOP_KEYS if k not in state]
    if missing:
        raise StateError(f"the state has no {missing[0]!r} key: it is not a minibatcher state")
    if state[VERSION_KEY] != STATE_VERSION:
        raise StateError(
            f"state version {state[VERSION_KEY]!r} is not supported (this minibatcher reads "
            f"version {STATE_VERSION})"
        )
    loader, shard = state[LOADER_KEY], state[SHARD_KEY]
    epoch = _int(loader, "epoch", LOADER_KEY)
    next_batch = _int(loader, "next_batch", LOADER_KEY)
    above = tuple(_ints(loader, "delivered_above", LOADER_KEY))
    if any(s <= next_batch for s in above):
        raise StateError(
            f"state loader.delivered_above must hold batch numbers above next_batch={next_batch}, "
            f"got {list(above)}"
        )
    config = state[CONFIG_KEY]
    if not isinstance(config, Mapping):
        raise StateError(f"state config must be a dict, got {type(config).__name__}")
    rank, world = _int(shard, "rank", SHARD_KEY), _int(shard, "world_size", SHARD_KEY)
    if not 0 <= rank < world:
        raise StateError(f"state shard has rank={rank} outside world_size={world}")
    domain_json = shard.get("domain") if isinstance(shard, Mapping) else None
    if not isinstance(domain_json, Mapping):
        raise StateError("state shard.domain must be a dict with 'start' and 'excluded'")
    domain = Domain(
        start=_int(domain_json, "start", "shard.domain"),
        excluded=tuple(sorted(_ints(domain_json, "excluded", "shard.domain"))),
    )
    return Checkpoint(epoch, next_batch, above, config, rank, world, str(shard.get("uneven")),
                      domain, state[SOURCE_KEY])


def check_config(saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Raise StateError naming every field where the saving loader differs from this one."""
    diffs = [
        f"{name.replace('_', ' ')}: saved {saved.get(name)!r}, this loader {current[name]!r}"
        for name in CONFIG_FIELDS
        if saved.get(name) != current[name]
    ]
    if diffs:
        raise StateError(
            "the state was saved by a loader built with other arguments (" + "; ".join(diffs)
            + "): build the loader with the same data, batch size, seed and sampling options"
        )


def check_rank(ckpt: Checkpoint, spec: ShardSpec | None, uneven: str) -> None:
    """A single state must come from the same rank of the same world."""
    rank, world = (0, 1) if spec is None else (spec.rank, spec.world_size)
    if (ckpt.rank, ckpt.world_size) != (rank, world):
        raise StateError(
            f"the state was saved by rank {ckpt.rank} of {ckpt.world_size}, this loader is rank "
            f"{rank} of {world}; to resume with another number of ranks, pass the list of all "
            "old ranks' states to load_state_dict (elastic resume)"
        )
    if world > 1 and ckpt.uneven != uneven:
        raise StateError(f"shard uneven: saved {ckpt.uneven!r}, this loader {uneven!r}")


def merge_ranks(
    ckpts: Sequence[Checkpoint], n: int, batch_size: int, drop_last: bool
) -> tuple[int, Domain]:
    """The epoch and the part of it still to deliver, from the states of all old ranks.

    A rank whose state is at the start of the next epoch has finished its share (the loader
    moves to the next epoch when one ends). ``n`` is the length of the epoch's order.
    """
    if not ckpts:
        raise StateError("elastic resume needs the states of all old ranks, got an empty list")
    world = ckpts[0].world_size
    ranks = sorted(c.rank for c in ckpts)
    if any(c.world_size != world for c in ckpts) or ranks != list(range(world)):
        raise StateError(
            "elastic resume needs exactly one state per old rank: got ranks "
            f"{[(c.rank, c.world_size) for c in ckpts]} (rank, world_size)"
        )
    if len({c.uneven for c in ckpts}) > 1:
        raise StateError("the old ranks' states disagree on uneven: they are not from one job")
    epoch = min(c.epoch for c in ckpts)
    progress = []
    domains = set()
    for c in ckpts:
        if c.epoch == epoch:
            domains.add(c.domain)
            progress.append(RankProgress(c.rank, c.next_batch, c.above))
        elif c.epoch == epoch + 1 and c.next_batch == 0 and not c.above:
            progress.append(RankProgress(c.rank, 0, (), finished=True))
        else:
            raise StateError(
                f"the old ranks' states are from different epochs ({sorted({x.epoch for x in ckpts})}): "
                "ranks of one job run the same epoch"
            )
    if len(domains) > 1:
        raise StateError("the old ranks' states split different parts of the epoch: not one job")
    domain = domains.pop()
    left = remaining_after(n, domain, world, ckpts[0].uneven, batch_size, drop_last, progress)
    return epoch, left


def _int(obj: Any, key: str, where: str) -> int:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise StateError(f"state {where}.{key} must be a non-negative int, got {value!r}")
    return int(value)


def _ints(obj: Any, key: str, where: str) -> list[int]:
    values = obj.get(key) if isinstance(obj, Mapping) else None
    if not isinstance(values, (list, tuple)):
        raise StateError(f"state {where}.{key} must be a list of ints, got {values!r}")
    return [_int({key: v}, key, where) for v in values]
