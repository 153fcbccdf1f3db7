"""One iteration of ``minibatcher.torch.DataLoader``: torch's iterator protocol over the
executor's results.

In: the loader and its results ``(seq, batch)``. Out: the batches, on the pinned or chosen
device, as ``next()`` returns them (a batch that failed raises on its ``next()``, and the next
one goes on, as torch's). State: the loader's count of the batches received (for
``state_dict()``) and the iteration's ``dl.stats`` recorder (NOTE [ Sampled bookkeeping ] in
``profile.py``).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data._utils.pin_memory import pin_memory as _torch_pin_memory

from ..errors import WorkerError
from .work import Failed

if TYPE_CHECKING:
    from .loader import DataLoader


class LoaderIter:
    """One iteration: torch's iterator protocol (``__next__``, ``__len__``) over the results."""

    def __init__(self, loader: DataLoader[Any], results: Iterator[Any]) -> None:
        self._loader = loader
        self._results = results
        self._num_yielded = 0
        self._pin_device = loader._pin_device
        self._device = loader._device
        self._stats = loader._profiler.current  # this iteration's recorder (dl.stats)
        self._sample_at = -1 if self._stats is None else self._stats.sample_at
        self._sampled: int | None = None  # the batch timed last, until the next request
        self._last: Any = None
        self._begun = False  # whether next() was called (the epoch check comes before it)

    def take_over(self, other: LoaderIter) -> None:
        """Continue as ``other`` (the loader restarted this iteration as a later epoch, see
        ``checkpoint.py``): the framework holding this iterator goes on with it."""
        self.__dict__.update(other.__dict__, _begun=True)
        self._loader._latest = weakref.ref(self)

    def __iter__(self) -> LoaderIter:
        return self

    def __len__(self) -> int:
        return len(self._loader._index_sampler)

    def __next__(self) -> Any:
        loader = self._loader
        if not self._begun:
            self._begun = True
            loader._catch_up_running(self)  # an epoch set after iter() (checkpoint.py)
        rec = self._stats
        if self._sampled is not None and rec is not None:  # NOTE [ Sampled bookkeeping ]
            self._sample_at = rec.resumed(self._sampled)
            self._sampled = None
        try:
            position, batch = next(self._results)
        except StopIteration:
            if loader._running and rec is not None and rec is loader._profiler.current:
                rec.end(_first_field(self._last))
                loader._profiler.collect(loader._stats_work, ended=True)
            self._last = None
            loader._running = False
            raise
        except TimeoutError:
            raise RuntimeError(f"DataLoader timed out after {loader.timeout} seconds") from None
        except WorkerError as e:
            failure = _start_failure(e)
            if failure is e:
                raise
            raise failure from None
        if isinstance(batch, Failed):
            # delivered (as its error): a resume goes on after it, as the uninterrupted run
            loader._received(position)
            raise batch.exception()
        seq = loader._yielded
        self._num_yielded += 1
        loader._received(position)
        if loader._all_received():
            # torch's RandomSampler draws once more when run to its end, which a for loop does
            # and Lightning (stopping by count) does not: drawn here, after the last batch, the
            # generator's next state is the same whoever consumes the loader and whether or not
            # a state is taken (so every resume is exact)
            loader._finish_sampler()
        expected = loader._IterableDataset_len_called
        if loader._iterable and expected is not None and self._num_yielded > expected:
            message = (
                f"Length of IterableDataset {loader.dataset} was reported to be {expected}"
                f"(when accessing len(dataloader)), but {self._num_yielded} samples have been "
                "fetched. "
            )
            if loader.num_workers > 0:
                message += (
                    "For multiprocessing data-loading, this could be caused by not properly "
                    "configuring the IterableDataset replica at each worker. Please see "
                    "https://pytorch.org/docs/stable/data.html#torch.utils.data.IterableDataset "
                    "for examples."
                )
            warnings.warn(message, stacklevel=2)
        if self._pin_device is not None:
            batch = _torch_pin_memory(batch, self._pin_device)  # type: ignore[no-untyped-call]
        if self._device is not None:
            batch = _to_device(batch, self._device)
        if rec is not None:
            self._last = batch
            if seq >= self._sample_at:
                rec.ready(seq, _first_field(batch))
                self._sampled = seq
        return batch


def _start_failure(error: WorkerError) -> BaseException:
    """What torch raises where workers could not be started: the error itself (typically the
    ``AttributeError``, ``TypeError`` or ``PicklingError`` of pickling the dataset for
    ``spawn``), with its traceback and, as a note, what to do; other worker errors as they are."""
    cause = error.__cause__
    if cause is None or error.worker_id is not None or error.exitcode is not None:
        return error  # a worker that died: torch's RuntimeError (WorkerError is one)
    if hasattr(cause, "add_note"):  # Python >= 3.11
        cause.add_note(
            "minibatcher.torch.DataLoader could not start its worker processes: with the "
            "'spawn' and 'forkserver' start methods the dataset, collate_fn and worker_init_fn "
            "are pickled to each worker; make them picklable (no lambdas or local classes, no "
            "open files or locks), or pass multiprocessing_context='fork' (Linux)."
        )
    return cause


def _first_field(batch: Any) -> Any:
    """The part of a torch batch whose length is the number of items: ``default_collate``
    makes a list of fields (one per element of the items' tuples), where the core's
    ``batch_length`` would count the fields."""
    while (
        isinstance(batch, (list, tuple)) and batch
        and isinstance(batch[0], (list, tuple, dict, torch.Tensor, np.ndarray))
    ):  # fmt: skip
        batch = batch[0]
    return batch


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return type(batch)({k: _to_device(v, device) for k, v in batch.items()})
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch
