"""Resuming: where a loader continues from a saved state, and whether the state fits it.

In: a state (or the list of all old ranks' states, for an elastic resume), parsed by
:func:`~minibatcher.state.parse_state`, and this loader's config, rank and epoch length. Out: the
:class:`~minibatcher.state.Progress` the next ``iter()`` starts from. Every mismatch is a
:class:`~minibatcher.errors.StateError` that names it: other loader arguments
(:func:`check_config`), another rank or world (:func:`check_rank`), a position beyond this
loader's epoch (:func:`check_position`), states that are not from one job (:func:`merge_ranks`).
The state's format itself is ``state.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import StateError
from .samplers.shard import Domain, RankProgress, ShardSpec, remaining_after
from .state import CONFIG_FIELDS, Checkpoint, Progress, parse_state


def check_config(saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Raise StateError naming every field where the saving loader differs from this one."""
    diffs = [
        f"{name.replace('_', ' ')}: saved {saved.get(name)!r}, this loader {current[name]!r}"
        for name in CONFIG_FIELDS
        if saved.get(name) != current[name]
    ]
    if diffs:
        raise StateError(
            "the state was saved by a loader built with other arguments ("
            + "; ".join(diffs)
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


def check_position(progress: Progress, num_batches: int | None) -> None:
    """A position must lie within its epoch (a state from a longer epoch is refused)."""
    if num_batches is None:
        return
    last = max(progress.above, default=progress.next_batch - 1)
    if progress.next_batch > num_batches or last >= num_batches:
        raise StateError(
            f"the state is at batch {max(progress.next_batch, last + 1)} of epoch "
            f"{progress.epoch}, which has only {num_batches} batches in this loader"
        )


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
                "the old ranks' states are from different epochs "
                f"({sorted({x.epoch for x in ckpts})}): ranks of one job run the same epoch"
            )
    if len(domains) > 1:
        raise StateError("the old ranks' states split different parts of the epoch: not one job")
    domain = domains.pop()
    left = remaining_after(n, domain, world, ckpts[0].uneven, batch_size, drop_last, progress)
    return epoch, left


def resume_point(
    state: Any,
    config: Mapping[str, Any],
    spec: ShardSpec | None,
    uneven: str,
    *,
    order: tuple[int, int, bool] | None,
    reads: str,
    plan_length: Callable[[Progress], int | None],
) -> Progress:
    """Where a loader resumes from ``state`` (one state, or a list of all old ranks' states).

    ``order`` is ``(epoch length, batch size, drop_last)`` when the loader slices its own order
    (elastic resume needs it); ``reads`` says what it reads otherwise, for the error;
    ``plan_length`` gives the number of batches of a position's epoch (None: unknown).
    """
    if isinstance(state, (list, tuple)):
        ckpts = [parse_state(s) for s in state]
        for ckpt in ckpts:
            check_config(ckpt.config, config)
        if order is None:
            raise StateError(
                "elastic resume (a list of states) needs data with len() ordered by one of "
                f"minibatcher's samplers (the default ones included); this loader reads {reads}"
            )
        epoch, domain = merge_ranks(ckpts, *order)
        return Progress(epoch, 0, domain=domain)
    ckpt = parse_state(state)
    check_config(ckpt.config, config)
    check_rank(ckpt, spec, uneven)
    resume = Progress(ckpt.epoch, ckpt.next_batch, ckpt.above, ckpt.domain, source=ckpt.source)
    length = plan_length(resume)
    check_position(resume, length)
    if length is not None and resume.next_batch == length and length > 0:
        # Every batch of the epoch was delivered (a state taken at its last batch): the next
        # iter() is the next epoch, never an empty rest of this one.
        return Progress(ckpt.epoch + 1)
    return resume
