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

This module is the format (written by :func:`make_state`, checked by :func:`parse_state`) and
the live position (:class:`Progress`); whether a state fits a given loader, and where that loader
resumes (elastic resume included), is ``resume.py``.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from .errors import StateError
from .samplers.shard import Domain, ShardSpec

STATE_VERSION = 1
VERSION_KEY = "version"
LOADER_KEY = "loader"
CONFIG_KEY = "config"
SHARD_KEY = "shard"
SOURCE_KEY = "source"
TOP_KEYS = (VERSION_KEY, LOADER_KEY, CONFIG_KEY, SHARD_KEY, SOURCE_KEY)
CONFIG_FIELDS = (
    "dataset_length",
    "batch_size",
    "drop_last",
    "shuffle",
    "seed",
    "sampler",
    "shuffle_buffer",
)


class Progress:
    """The position of one epoch's iteration, updated by the loader as the user receives batches.

    Per batch the loader does one comparison and one attribute write (``next_batch``); the set
    ``above`` is touched only when batches arrive out of order. ``domain`` is the part of the
    epoch this world splits (None: all of it); ``snapshots`` maps a batch number to the state of
    a stream source just after that batch was read (only for sources with ``state_dict()``);
    ``stream_batches`` is a stream's number of batches this epoch, once its end has been read.
    """

    __slots__ = ("above", "domain", "epoch", "finished", "next_batch", "snapshots",
                 "stream_batches")

    def __init__(
        self,
        epoch: int,
        next_batch: int = 0,
        above: Sequence[int] = (),
        domain: Domain | None = None,
        source: Any = None,
    ) -> None:
        self.epoch = epoch
        self.next_batch = next_batch
        self.above: set[int] = set(above)
        self.domain = None if domain is None or domain.is_full else domain
        self.finished = False
        self.snapshots: dict[int, Any] = {}
        self.stream_batches: int | None = None
        if source is not None and next_batch > 0:
            self.snapshots[next_batch - 1] = source

    def advance(self) -> None:
        """Move the watermark over batches that had arrived early."""
        above, n = self.above, self.next_batch
        while n in above:
            above.discard(n)
            n += 1
        self.next_batch = n

    @property
    def source_state(self) -> Any:
        """The stream source's state after the last batch below the watermark (None: start)."""
        if self.next_batch == 0:
            return None
        return self.snapshots.get(self.next_batch - 1)

    def __repr__(self) -> str:
        return (
            f"Progress(epoch={self.epoch}, next_batch={self.next_batch}, "
            f"above={sorted(self.above)}, finished={self.finished})"
        )


_SNAPSHOTS_KEPT = 64  # prune stream snapshots below the watermark beyond this many


def past_empty_batches(
    results: Iterable[tuple[int, Any]],
    finish: Callable[[Any, int, int], Any],
    progress: Progress,
    empty: Any,
) -> Iterator[tuple[int, Any]]:
    """``(seq, batch)`` of the batches that hold items (``on_error="skip"``), each passed on
    only once the next one that holds items (or the end of the epoch) has arrived.

    ``finish(batch, epoch, seq)`` unwraps a result; ``empty`` is what it returns for a batch
    all of whose items were left out: such a batch is recorded in ``progress`` as delivered,
    at once. So while the user holds a batch, every empty batch before the next one is already
    counted: a state taken after the last batch that has items points at the next epoch (as
    after any epoch's last batch), never at an empty rest of this epoch. Costs one batch held
    back, with skipping only.
    """
    held: tuple[int, Any] | None = None
    for seq, batch in results:
        batch = finish(batch, progress.epoch, seq)
        if batch is empty:
            progress.above.add(seq)
            progress.advance()
            continue
        if held is not None:
            yield held
        held = (seq, batch)
    if held is not None:
        yield held


def keep_snapshot(progress: Progress, seq: int, snapshot: Any) -> None:
    """Keep the stream source's state after batch ``seq`` until the user has received it."""
    snapshots = progress.snapshots
    snapshots[seq] = snapshot
    if len(snapshots) > _SNAPSHOTS_KEPT:
        floor = progress.next_batch - 1
        for old in [s for s in snapshots if s < floor]:
            del snapshots[old]


def describe_sampler(sampler: Any) -> str | None:
    """A stable description of the sampler, compared on load (None: the loader's own order)."""
    if sampler is None:
        return None
    inner = getattr(sampler, "sampler", None)
    if type(sampler).__name__ == "BatchSampler" and inner is not None:
        return (
            f"BatchSampler({describe_sampler(inner)}, batch_size={sampler.batch_size}, "
            f"drop_last={sampler.drop_last})"
        )
    if type(sampler).__module__.startswith("minibatcher."):
        return repr(sampler)
    try:
        return f"{type(sampler).__name__}(len={len(sampler)})"
    except TypeError:
        return type(sampler).__name__


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
    above: Iterable[int],
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
    return Checkpoint(
        epoch,
        next_batch,
        above,
        config,
        rank,
        world,
        str(shard.get("uneven")),
        domain,
        state[SOURCE_KEY],
    )


def saved_seed(state: Any) -> int | None:
    """The seed recorded in ``state`` (or in the first of a list of states), None if absent.

    Read before the state is checked, so that a loader built with ``seed=None`` can adopt it.
    """
    first = state[0] if isinstance(state, (list, tuple)) and state else state
    config = first.get(CONFIG_KEY) if isinstance(first, Mapping) else None
    seed = config.get("seed") if isinstance(config, Mapping) else None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        return None
    return int(seed)


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
