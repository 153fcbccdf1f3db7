"""Who am I? ``get_worker_info()`` inside a worker; ``None`` in the main process.

In: the executor sets the info once per worker (and again when a persistent worker starts a new
epoch, since its seed changes). Out: a frozen :class:`WorkerInfo`. State: one module global for
process workers (one worker per process) and a thread-local for thread workers.

Also here: :func:`seed_worker`, which seeds Python's ``random``, NumPy's global generator and
(only if it is already imported) torch from ``(seed, epoch, worker id)``, so no two workers repeat
the same "global" random draws. Transforms that take ``rng`` do not depend on this: their
generator is keyed by ``(seed, epoch, index)`` and is the same whatever worker runs them.
"""

from __future__ import annotations

import dataclasses
import random
import sys
import threading
from typing import Any

import numpy as np

from .._seed import WORKER_STREAM, derived_int


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a worker knows about itself.

    Attributes:
        id: the worker's number, ``0 <= id < num_workers``.
        num_workers: how many workers the loader runs.
        seed: this worker's seed for the current epoch, derived from ``(seed, epoch, id)``; it
            is what ``random``, NumPy's global generator and torch were seeded with.
        dataset: the worker's copy of the dataset (for process workers a copy, for thread
            workers the same object; ``None`` for data read as a stream by the main process).
    """

    id: int
    num_workers: int
    seed: int
    dataset: Any = dataclasses.field(repr=False, compare=False)


_process_info: WorkerInfo | None = None
_thread_info = threading.local()


def get_worker_info() -> WorkerInfo | None:
    """The :class:`WorkerInfo` of the calling worker, or ``None`` in the main process."""
    info = getattr(_thread_info, "info", None)
    return info if info is not None else _process_info


def set_worker_info(info: WorkerInfo | None, *, thread: bool) -> None:
    """Record ``info`` for the calling worker thread (``thread=True``) or process."""
    global _process_info
    if thread:
        _thread_info.info = info
    else:
        _process_info = info
        _mirror_to_torch(info)


def _mirror_to_torch(info: WorkerInfo | None) -> None:
    """In a worker process, make ``torch.utils.data.get_worker_info()`` answer too (when torch is
    imported), so datasets written for torch split themselves in our workers. It sets the module
    variable torch's public function reads; there is no public setter. Thread workers share one
    process, whose torch variable cannot tell them apart: they are left out."""
    torch = sys.modules.get("torch")
    worker = getattr(getattr(getattr(torch, "utils", None), "data", None), "_utils", None)
    worker = getattr(worker, "worker", None)
    if worker is None or info is None:
        return
    worker._worker_info = worker.WorkerInfo(
        id=info.id, num_workers=info.num_workers, seed=info.seed, dataset=info.dataset
    )


def worker_seed(seed: int, epoch: int, worker_id: int) -> int:
    """The seed of worker ``worker_id`` in ``epoch`` (63 bits)."""
    return derived_int(seed, epoch, WORKER_STREAM, worker_id, bits=63)


def seed_worker(base: int) -> None:
    """Seed ``random``, NumPy's global generator and torch (if imported) from ``base``.

    Only process workers call this: thread workers share the process's global generators, so
    seeding them would change the main process's draws too (use a transform's ``rng`` instead).
    """
    random.seed(base)
    np.random.seed(base & 0xFFFF_FFFF)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(base)
