"""The work of one batch as torch does it, run by minibatcher's executors.

In: tasks ``(0, seq, index, None)``, where ``index`` is exactly what torch's index sampler
yielded (a list of indices from the batch sampler, or one index with ``batch_size=None``), or
pull tasks ``(0, seq, iteration, None)`` for an ``IterableDataset``. Out: the batch, or a
:class:`Failed` carrying the exception (the loader raises it on that ``next()`` and goes on, as
torch does). State: for an ``IterableDataset``, the worker's iterator over its replica.

Fetch semantics are torch's ``_MapDatasetFetcher`` / ``_IterableDatasetFetcher``: ``__getitems__``
when the dataset has one, else ``[dataset[i] for i in index]``, then ``collate_fn``. The one
shortcut, :func:`vectorised_fetch`, gives the same tensors as ``default_collate`` for a
``TensorDataset`` or a tensor in one indexing call per tensor.

:class:`TorchWorkerInit` makes a minibatcher worker process look like a torch worker to the
user's code: torch's ``get_worker_info()``, torch's per-worker seeds (``base_seed + id`` for
``random`` and torch, torch's NumPy seed), one torch thread, then the user's ``worker_init_fn``.
It sets ``torch.utils.data._utils.worker._worker_info``, the variable torch's public
``get_worker_info()`` reads (there is no public setter).
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable
from time import perf_counter
from typing import Any

import numpy as np
import torch
import torch.utils.data as tud
from torch.utils.data._utils import worker as _torch_worker
from torch.utils.data._utils.collate import collate as _torch_collate
from torch.utils.data._utils.collate import collate_tensor_fn, default_collate_fn_map

from ..transport.remote_error import RemoteError, capture, reraise
from ..transport.replicated import EXHAUSTED
from ..work import STAGE_SAMPLE_MASK, STAGES


class Failed:
    """A batch that raised: the exception (inline) or its picklable record (from a worker)."""

    def __init__(self, error: BaseException) -> None:
        info = tud.get_worker_info()
        self.error: BaseException | RemoteError = (
            error if info is None else capture(error, info.id, _where(info.id))
        )

    def exception(self) -> BaseException:
        """The exception to raise in the main process (same type as the original)."""
        error = self.error
        return reraise(error) if isinstance(error, RemoteError) else error


def _where(wid: int) -> str:
    return f"DataLoader worker process {wid} (pid {os.getpid()})"


def vectorised_fetch(dataset: Any, collate_fn: Any) -> Callable[[Any], Any] | None:
    """A one-call fetch equal to ``default_collate([dataset[i] for i in index])``, where the
    dataset is a ``TensorDataset`` (a list of stacked tensors), a tensor or a 2-d or more
    numeric NumPy array; else None."""
    if collate_fn is not tud.default_collate:
        return None
    if type(dataset) is tud.TensorDataset:
        tensors = dataset.tensors
        return lambda index: [t[torch.as_tensor(index)] for t in tensors]
    if type(dataset) is torch.Tensor and dataset.dim() > 0 and not dataset.requires_grad:
        return lambda index: dataset[torch.as_tensor(index)]
    if type(dataset) is np.ndarray and dataset.ndim > 1 and dataset.dtype.kind in "biuf":
        # default_collate of rows: torch.stack([torch.as_tensor(row), ...]), the same tensor
        return lambda index: torch.as_tensor(dataset[np.asarray(index, dtype=np.int64)])
    return None


_NUMPY_DTYPES = {
    torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64,
    torch.int8: np.int8, torch.int16: np.int16, torch.int32: np.int32, torch.int64: np.int64,
    torch.uint8: np.uint8, torch.bool: np.bool_,
}  # fmt: skip


def slot_collate(data: list[Any], allocate: Callable[..., Any]) -> Any:
    """``default_collate(data)`` with each stacked tensor written straight into the worker's
    shared-memory slot (``allocate``), not into a torch shared-memory file that would then be
    copied into the slot: the same tensors, one copy fewer."""

    def stack(batch: list[Any], *, collate_fn_map: Any = None) -> Any:
        elem = batch[0]
        dtype = _NUMPY_DTYPES.get(elem.dtype)
        plain = elem.layout is torch.strided and not elem.is_nested and elem.device.type == "cpu"
        if dtype is None or not plain:
            return collate_tensor_fn(batch, collate_fn_map=collate_fn_map)
        out = torch.from_numpy(allocate((len(batch), *elem.shape), dtype))
        return torch.stack(batch, 0, out=out)

    return _torch_collate(data, collate_fn_map={**default_collate_fn_map, torch.Tensor: stack})


def _collate(collate_fn: Callable[..., Any], data: Any, allocate: Any) -> Any:
    if allocate is not None and collate_fn is tud.default_collate:
        return slot_collate(data, allocate)
    return collate_fn(data)


class _StageTimings:
    """``dl.stats``' stage timings, sampled as ``minibatcher.work.BatchWork`` samples them (the
    executors' protocol: ``timed`` / ``untimed`` / ``take_timings``; NOTE [ Sampled
    bookkeeping ] in ``profile.py``): 1 batch in 16 in workers, sparser inline."""

    stage_sample_every = STAGE_SAMPLE_MASK + 1
    _timings: dict[str, float]

    def _batch(self, task: tuple[Any, ...], allocate: Any, weight: int) -> Any:
        raise NotImplementedError

    def __call__(self, task: tuple[Any, ...], allocate: Any = None) -> Any:
        return self._batch(task, allocate, 0 if task[1] & STAGE_SAMPLE_MASK else 1)

    def timed(self, task: tuple[Any, ...], allocate: Any = None, weight: int = 1) -> Any:
        """The batch of ``task``, its fetch and collate timed (``weight`` batches' worth)."""
        return self._batch(task, allocate, weight)

    def untimed(self, task: tuple[Any, ...], allocate: Any = None) -> Any:
        """The batch of ``task``, not timed."""
        return self._batch(task, allocate, 0)

    def take_timings(self) -> dict[str, float]:
        """The timings sampled since the last call, then reset (as ``BatchWork``'s)."""
        taken = getattr(self, "_timings", None) or dict.fromkeys(("samples", *STAGES), 0.0)
        self._timings = dict.fromkeys(("samples", *STAGES), 0.0)
        return taken

    def _record(self, t0: float, t1: float, weight: int) -> None:
        """Fetch from ``t0`` to ``t1``, collate from ``t1`` to now (the fast path: all fetch)."""
        timings = getattr(self, "_timings", None)
        if timings is None:
            timings = self._timings = dict.fromkeys(("samples", *STAGES), 0.0)
        timings["samples"] += weight
        timings["fetch"] += (t1 - t0) * weight
        timings["collate"] += (perf_counter() - t1) * weight


class MapWork(_StageTimings):
    """Fetch and collate one batch of a map-style dataset, as torch's fetcher does."""

    def __init__(self, dataset: Any, auto_collation: bool, collate_fn: Callable[..., Any]) -> None:
        self.dataset = dataset
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn
        self.fast = vectorised_fetch(dataset, collate_fn) if auto_collation else None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "fast"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.fast = vectorised_fetch(self.dataset, self.collate_fn) if self.auto_collation else None

    def _batch(self, task: tuple[Any, ...], allocate: Any, weight: int) -> Any:
        index = task[2]
        t0 = perf_counter() if weight else 0.0
        try:
            if self.fast is not None and len(index) > 0:
                batch = self.fast(index)
                if weight:
                    self._record(t0, perf_counter(), weight)
                return batch
            dataset = self.dataset
            if not self.auto_collation:
                data = dataset[index]
            else:
                getitems = getattr(dataset, "__getitems__", None)
                data = getitems(index) if getitems else [dataset[i] for i in index]
            t1 = perf_counter() if weight else 0.0
            if not self.auto_collation:
                batch = self.collate_fn(data)
            else:
                batch = _collate(self.collate_fn, data, allocate)
            if weight:
                self._record(t0, t1, weight)
            return batch
        except Exception as e:
            return Failed(e)


class IterableWork(_StageTimings):
    """Pull the next batch of this process's replica of an ``IterableDataset``.

    A new iteration (a new ``token`` in the task) starts a new iterator, as torch's workers do
    at each epoch; after the end (or with ``drop_last``, a short batch) every pull answers
    :data:`~minibatcher.transport.replicated.EXHAUSTED`.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None,
        drop_last: bool,
        collate_fn: Callable[..., Any],
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.collate_fn = collate_fn
        self._token: Any = None
        self._iterator: Any = None
        self._ended = False

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._token, self._iterator, self._ended = None, None, False

    def _batch(self, task: tuple[Any, ...], allocate: Any, weight: int) -> Any:
        if task[2] != self._token:
            self._token, self._iterator, self._ended = task[2], None, False
        if self._ended:
            return EXHAUSTED
        t0 = perf_counter() if weight else 0.0
        try:
            if self._iterator is None:
                self._iterator = iter(self.dataset)
            if self.batch_size is None:
                item = next(self._iterator)
                t1 = perf_counter() if weight else 0.0
                batch = self.collate_fn(item)
            else:
                data = []
                for _ in range(self.batch_size):
                    try:
                        data.append(next(self._iterator))
                    except StopIteration:
                        self._ended = True
                        break
                if not data or (self.drop_last and len(data) < self.batch_size):
                    self._ended = True
                    return EXHAUSTED
                t1 = perf_counter() if weight else 0.0
                batch = _collate(self.collate_fn, data, allocate)
            if weight:
                self._record(t0, t1, weight)
            return batch
        except StopIteration:
            self._ended = True
            return EXHAUSTED
        except Exception as e:
            return Failed(e)


class TorchWorkerInit:
    """Run in each worker process before any data: torch's worker info, seeds and threads.

    ``base_seed`` is drawn by the loader at ``iter()`` exactly as torch draws it, so a worker's
    ``torch.initial_seed()`` is torch's ``base_seed + worker_id``.
    """

    owns_worker_seeds = True
    """The worker loop leaves the global generators to this (torch seeds once per worker)."""

    def __init__(
        self,
        dataset: Any,
        num_workers: int,
        base_seed: int,
        user_fn: Callable[[int], Any] | None,
    ) -> None:
        self.dataset = dataset
        self.num_workers = num_workers
        self.base_seed = base_seed
        self.user_fn = user_fn

    def __call__(self, worker_id: int) -> None:
        torch.set_num_threads(1)
        seed = self.base_seed + worker_id
        random.seed(seed)
        torch.manual_seed(seed)
        if "numpy" in sys.modules:
            np.random.seed(_torch_worker._generate_state(self.base_seed, worker_id))  # type: ignore[no-untyped-call]
        _torch_worker._worker_info = _torch_worker.WorkerInfo(
            id=worker_id, num_workers=self.num_workers, seed=seed, dataset=self.dataset
        )
        if self.user_fn is not None:
            self.user_fn(worker_id)
