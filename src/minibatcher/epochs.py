"""The loader's place in time: which epoch comes next, what the user has received of the
current one, and the checkpoint that records it.

In: the :class:`~minibatcher.plan.Planner` (source, options, seed, shard) of the loader, the
batches the user receives (recorded on the :class:`~minibatcher.state.Progress` of the epoch by
the loader), and states to load. Out: the ``Progress`` each new epoch starts from (a loaded
resume point, or the epoch's start), and ``state_dict()``'s small JSON-able dict (schema:
state.py; matching rules: resume.py). State: the epoch counters, the latest epoch's progress
and a loaded resume point waiting for the next ``iter()``. :class:`LoaderEpochs` is the view of
them that frameworks get as ``dl.sampler`` (they call its ``set_epoch``).

Why apart from the loader: these are the rules that make a resume exact (a state taken after
the last batch of an epoch points at the next epoch, never at an empty rest of this one; a
loaded state's epoch is the next one), and they read best in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, final

from . import resume as _resume
from . import state as _state
from .plan import Planner, length_or_none
from .sources import StreamSource


class Epochs:
    """Epoch numbering and progress of one loader, and its checkpoints."""

    def __init__(self) -> None:
        self.current = 0
        """The epoch of the latest ``iter()`` (the one in progress while iterating)."""
        self.next = 0
        """The epoch the next ``iter()`` runs."""
        self.progress: _state.Progress | None = None
        """The latest epoch's progress, updated by the loader as batches are delivered."""
        self.resume: _state.Progress | None = None
        """Loaded by :meth:`load`, for the next ``iter()``."""

    def set_next(self, epoch: int) -> None:
        """Make the next ``iter()`` epoch ``epoch``; a loaded state of another epoch is dropped."""
        self.next = self.current = epoch
        self.progress = None
        if self.resume is not None and self.resume.epoch != epoch:
            self.resume = None

    def begin(self) -> _state.Progress:
        """Start the next epoch: from the loaded resume point, else from its first batch."""
        epoch = self.next
        self.current, self.next = epoch, epoch + 1
        progress = self.resume or _state.Progress(epoch)
        self.resume = None
        self.progress = progress
        return progress

    def num_batches(self, planner: Planner) -> int:
        """The batches of the next epoch (what is left of it after a loaded state)."""
        resume = self.resume
        return planner.num_batches(self.next, None if resume is None else resume.domain)

    def state_dict(self, planner: Planner) -> dict[str, Any]:
        """The position of the batches the user has received (see ``DataLoader.state_dict``)."""
        progress = self.progress
        if progress is None or progress.finished or self._delivered_all(planner, progress):
            progress = self.resume or _state.Progress(self.next)
        return _state.make_state(
            config=state_config(planner),
            epoch=progress.epoch,
            next_batch=progress.next_batch,
            above=progress.above,
            spec=planner.shard,
            uneven=planner.options.uneven,
            domain=progress.domain,
            source=progress.source_state if planner.stateful_stream else None,
        )

    def load(self, state: dict[str, Any] | Sequence[dict[str, Any]], planner: Planner) -> None:
        """Make the next ``iter()`` continue from ``state`` (StateError naming a mismatch)."""
        sliced = planner.sliced()
        resume = _resume.resume_point(
            state,
            state_config(planner),
            planner.shard,
            planner.options.uneven,
            order=None if sliced is None else (len(sliced[0]), sliced[1], sliced[2]),
            reads="a stream" if planner.sampler is None else "a user's sampler",
            plan_length=lambda progress: plan_length(planner, progress),
        )
        self.resume = resume
        self.progress = None
        self.next = self.current = resume.epoch

    @staticmethod
    def _delivered_all(planner: Planner, progress: _state.Progress) -> bool:
        """Whether the user has every batch of ``progress``'s epoch (its generator not yet
        exhausted): a state then points at the next epoch, never at an empty rest of this one."""
        if progress.above or progress.next_batch == 0:
            return False
        return progress.next_batch == plan_length(planner, progress)


def plan_length(planner: Planner, progress: _state.Progress) -> int | None:
    """The number of batches of ``progress``'s epoch, where known (a stream's: once its end
    has been read)."""
    if isinstance(planner.source, StreamSource):
        return progress.stream_batches
    return length_or_none(planner.plan(progress.epoch, progress.domain))


def state_config(planner: Planner) -> dict[str, Any]:
    """What must match between the loader that saved a state and the one loading it."""
    opts, source = planner.options, planner.source
    stream = isinstance(source, StreamSource)
    return {
        "dataset_length": source.length if stream else len(source),  # type: ignore[union-attr]
        "batch_size": opts.batch_size,
        "drop_last": opts.drop_last,
        "shuffle": opts.shuffle,
        "seed": planner.seed,
        "sampler": _state.describe_sampler(None if stream else planner.sampler),
        "shuffle_buffer": opts.shuffle_buffer if stream and opts.shuffle else None,
    }


@final
class LoaderEpochs:
    """What frameworks see as ``dl.sampler``: ``set_epoch`` sets the loader's next epoch."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def set_epoch(self, epoch: int) -> None:
        """The loader's :meth:`~minibatcher.DataLoader.set_epoch`."""
        self.loader.set_epoch(epoch)

    def __repr__(self) -> str:
        return f"LoaderEpochs(next epoch {self.loader._epochs.next})"
