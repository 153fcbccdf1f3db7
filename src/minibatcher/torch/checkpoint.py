"""Checkpoints of ``minibatcher.torch.DataLoader``: ``state_dict()``, ``load_state_dict()``, the
count of received batches, and the epochs a framework sets (``sampler.set_epoch``).

In: the loader's counters (batches received, in any order), the RNG state its current iteration
started from, its workers' base seed. Out: a JSON-able state ``{version, batches_yielded,
received_beyond, rng, base_seed, drew_base_seed, epoch, iteration_started}``; from a state, the
next ``iter()`` continues the interrupted iteration (or begins the next one) exactly.

Epochs: an iteration's number (``"epoch"``) counts the loader's iterations, restored from a
state. Where a framework says the epoch is further on (the facade's ``sampler.RandomSampler``'s
``set_epoch``, as Lightning calls it on an epoch-end restart, where it restores no loader state),
the draws of the missing iterations are replayed (:func:`replay_epochs`) before the iteration's
first batch: at ``iter()``, or, when ``set_epoch`` comes after ``iter()`` (Lightning's order), by
restarting the iteration that has delivered nothing yet.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import torch
import torch.utils.data as tud

from ..errors import StateError
from .sampler import RandomSampler, epoch_sampler

if TYPE_CHECKING:
    from .iteration import LoaderIter

STATE_VERSION = 1
_KEYS = frozenset({"version", "batches_yielded", "rng", "base_seed", "drew_base_seed"})


def rng_state(generator: torch.Generator | None) -> str:
    """The generator's (or the global RNG's) state, as text."""
    state = torch.get_rng_state() if generator is None else generator.get_state()
    return base64.b64encode(state.numpy().tobytes()).decode("ascii")


def set_rng_state(generator: torch.Generator | None, encoded: str) -> None:
    """Set the generator (or the global RNG) to a state from :func:`rng_state`."""
    state = torch.frombuffer(bytearray(base64.b64decode(encoded)), dtype=torch.uint8)
    if generator is None:
        torch.set_rng_state(state)
    else:
        generator.set_state(state)


def replay_epochs(
    loader: Any, sampler: RandomSampler, start: dict[str, Any], count: int
) -> dict[str, Any]:
    """Make the draws of ``count`` iterations from ``start`` (``rng``: the generator's state
    when the first began; ``draw_seed``: whether it draws the workers' base seed; ``base_seed``;
    ``epoch``: its number), as an uninterrupted run makes them: the base seed (at every
    ``iter()``, or only at the first with persistent workers), then the sampler run to its end
    (its last draw included). Returns the state of the iteration that follows them (one taken
    between iterations)."""
    generator = loader.generator
    set_rng_state(generator, start["rng"])
    base_seed, draw = int(start["base_seed"]), bool(start["draw_seed"])
    for _ in range(count):
        if draw:
            base_seed = int(torch.empty((), dtype=torch.int64).random_(generator=generator))
        for _ in tud.RandomSampler.__iter__(sampler):
            pass
        draw = not loader.persistent_workers  # persistent workers keep their first base seed
    return {
        "version": STATE_VERSION,
        "batches_yielded": 0,
        "received_beyond": [],
        "rng": rng_state(generator),
        "base_seed": base_seed,
        "drew_base_seed": draw,
        "epoch": int(start["epoch"]) + count,
        "iteration_started": False,
    }


class Checkpoints:
    """The facade's checkpoint methods (a mixin of ``minibatcher.torch.DataLoader``, whose
    attributes these are; see the module docstring)."""

    # set by the loader's __init__ / __iter__
    _iterable: bool
    _running: bool
    _yielded: int
    _prefix: int
    _beyond: set[int]
    _sampler_iter: Any
    _start_rng: str | None
    _base_seed: int
    _drew_seed: bool
    _resume: dict[str, Any] | None
    _iterations_begun: int
    _iteration_executor: Any
    _latest: Any
    _workers: Any
    generator: torch.Generator | None
    persistent_workers: bool

    if TYPE_CHECKING:
        _index_sampler: Any

        def close(self) -> None: ...
        def __iter__(self) -> LoaderIter: ...

    def state_dict(self) -> dict[str, Any]:
        """Where the current iteration stands (JSON-able): the batches the user received and
        the RNG state the iteration started from. Between iterations: the RNG state now, so the
        next iteration's order is the one an uninterrupted run would draw next (of the epoch
        set with ``sampler.set_epoch``, where it is ahead)."""
        if self._resume is None and (not self._running or self._all_received()):
            if self._running:
                self._finish_sampler()
            self._catch_up_before_iter()  # a state of the epoch set, where it is ahead
        if self._resume is not None:
            return dict(self._resume)
        if self._running and not self._all_received():
            return {
                "version": STATE_VERSION,
                # in order: the count received; in_order=False: the first batch not received,
                # and the ones received above it
                "batches_yielded": self._yielded if self._iterable else self._prefix,
                "received_beyond": [] if self._iterable else sorted(self._beyond),
                "rng": self._start_rng,
                "base_seed": self._base_seed,
                "drew_base_seed": self._drew_seed,
                "epoch": self._iterations_begun - 1,
                "iteration_started": True,
            }
        if self._running:
            self._finish_sampler()
        return {
            "version": STATE_VERSION,
            "batches_yielded": 0,
            "received_beyond": [],
            "rng": rng_state(self.generator),
            "base_seed": self._base_seed,
            "drew_base_seed": not self._reusing_workers(),
            "epoch": self._iterations_begun,
            "iteration_started": False,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next ``iter()`` continue from ``state`` (of a loader built the same way).

        Exact for datasets whose items do not depend on the workers' global RNG: the sampler's
        order and the workers' seeds are replayed from the saved RNG state; the batches already
        received are skipped without being loaded (for an ``IterableDataset``: re-read and
        dropped). Persistent workers are restarted.
        """
        if not isinstance(state, dict) or not set(state) >= _KEYS:
            raise StateError(f"not a minibatcher.torch.DataLoader state: {state!r:.200}")
        if state["version"] != STATE_VERSION:
            raise StateError(f"state version {state['version']!r} is not {STATE_VERSION}")
        self.close()
        self._running = False
        self._resume = dict(state)
        self._iterations_begun = int(state.get("epoch", 0))  # absent in older states
        sampler = epoch_sampler(self)
        if sampler is not None:  # the epoch is the state's now (set_epoch never goes back)
            sampler.epoch = self._iterations_begun

    def _reusing_workers(self) -> bool:
        return self._workers is not None and not self._workers.closed

    def _received(self, seq: int) -> None:
        """Note that the user received batch ``seq`` of the iteration (any order)."""
        self._yielded += 1
        if seq != self._prefix:
            self._beyond.add(seq)
            return
        self._prefix += 1
        while self._prefix in self._beyond:
            self._beyond.remove(self._prefix)
            self._prefix += 1

    def _finish_sampler(self) -> None:
        """Run the exhausted index sampler to its end: torch's ``RandomSampler`` draws from the
        generator once more after its last index, which an uninterrupted run does at the end
        of the epoch; a state taken at the last batch must start the next epoch from there."""
        sampler_iter, self._sampler_iter = self._sampler_iter, None
        # only torch's own samplers, whose len() is exact: a user's sampler that yields more
        # than its len() says would lose the batches drained here
        inner = getattr(self._index_sampler, "sampler", self._index_sampler)
        torch_made = all(
            type(s).__module__.startswith("torch.utils.data") or type(s) is RandomSampler
            for s in (self._index_sampler, inner)
        )
        if sampler_iter is not None and torch_made:
            for _ in sampler_iter:
                pass

    def _all_received(self) -> bool:
        """Whether the user has every batch of the current iteration (then a checkpoint is one
        of the epoch's end, as Lightning needs at the last batch: the next ``iter()`` starts the
        next epoch, never an empty one)."""
        if self._iterable:
            return False
        try:
            return self._yielded >= len(self._index_sampler)
        except TypeError:
            return False

    # -- epochs set by a framework (sampler.set_epoch) -----------------------------------------
    def _catch_up_before_iter(self) -> None:
        """At ``iter()``: where the epoch set is beyond the iteration about to begin, replay the
        draws of the iterations between (a state taken within an iteration is honoured)."""
        sampler = epoch_sampler(self)
        resume = self._resume
        if sampler is None or (resume is not None and resume.get("iteration_started", True)):
            return
        count = sampler.epoch - self._iterations_begun
        if count <= 0:
            return
        if resume is not None:
            start = {**resume, "draw_seed": resume["drew_base_seed"]}
        else:
            start = {
                "rng": rng_state(self.generator), "base_seed": self._base_seed,
                "draw_seed": not self._reusing_workers(), "epoch": self._iterations_begun,
            }  # fmt: skip
        self._resume = replay_epochs(self, sampler, start, count)
        self._iterations_begun = sampler.epoch

    def _catch_up_running(self, iterator: LoaderIter) -> None:
        """Before the first batch of ``iterator``: where the epoch was set beyond it after its
        ``iter()`` (Lightning calls ``iter()``, then ``set_epoch``), restart it as that epoch,
        from the draws it made replayed with those of the iterations between."""
        sampler = epoch_sampler(self)
        number = self._iterations_begun - 1
        if (
            sampler is None or sampler.epoch <= number
            or self._latest is None or iterator is not self._latest()
            or self._yielded or self._prefix or self._beyond or self._start_rng is None
        ):  # fmt: skip
            return
        start = {
            "rng": self._start_rng, "base_seed": self._base_seed, "draw_seed": self._drew_seed,
            "epoch": number,
        }  # fmt: skip
        state = replay_epochs(self, sampler, start, sampler.epoch - number)
        reference, self._iteration_executor = self._iteration_executor, None
        executor = None if reference is None else reference()
        if executor is not None and executor is not self._workers:
            executor.close()  # this iteration's own workers (load_state_dict closes persistent)
        self.load_state_dict(state)
        iterator.take_over(self.__iter__())
