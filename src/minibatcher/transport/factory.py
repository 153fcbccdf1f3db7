"""Choosing and building the executor for a loader's worker options.

The loader calls :func:`make_executor` once per epoch (or once, with persistent workers) and never
looks at the kind of worker again: every executor has the same ``run``/``close`` contract.

Start method (``mp_context=None``): ``"fork"`` where it exists and the calling process has no
other Python thread alive, else ``"forkserver"`` (else ``"spawn"``). Fork starts workers fastest
and shares the dataset's memory, but a process forked while another thread holds a lock (in
logging, an allocator, a C library) inherits that lock held forever and can deadlock; with
threads around, forkserver forks workers from a clean single-threaded server instead (Python
3.14 made it Linux's default for that reason). Every method works when chosen explicitly; with
spawn and forkserver the work must be picklable, and a clear error says so when it is not.

Streams (iterables without ``len()``): the main process reads the items, cuts them into batches
and ships each batch's items inside its task; workers transform and collate them. Each item is
therefore read exactly once, the batches and their order equal ``num_workers=0``'s (shuffle
buffer included), and resume counts items as without workers. A source's own
``shard(index, count)`` is deliberately not used to let each worker read its share: the order
would then depend on the number of workers (batches interleaved by worker) and a worker that
finishes early would leave the epoch unbalanced. The cost is that *reading* is serial (in the
main process); transforms and collation, usually the expensive part, run in parallel.

Python lists: process workers read large plain lists from compact storage
(``sources/compact.py``), so forked workers do not copy the list on reading it.
"""

from __future__ import annotations

import contextlib
import copy
import multiprocessing
import sys
import threading
import weakref
from typing import Any

from ..sources.compact import compact_source, refresh_source
from .executor import Executor, InlineExecutor
from .processes import ProcessExecutor
from .threads import ThreadExecutor

_compacted: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def choose_start_method(requested: str | None) -> str:
    """The start method to use: ``requested``, or the default described in the module doc."""
    if requested is not None:
        return requested
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and sys.platform != "darwin" and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def process_work(work: Any) -> Any:
    """``work`` with a large list dataset stored compactly (see ``sources/compact.py``).

    Cached per work object, so the conversion is paid once per loader, not once per epoch; the
    cached copy is brought up to date with the list on every call, i.e. before each epoch's
    workers start (NOTE [ Compact copies stay current ] in ``sources/compact.py``).
    """
    source = getattr(work, "source", None)
    try:
        cached = _compacted[work]
    except (KeyError, TypeError):
        cached = None
    if cached is not None and (cached is work or refresh_source(cached.source, source)):
        return cached
    compact = compact_source(source) if source is not None else None
    result = work
    if compact is not None:
        result = copy.copy(work)
        result.source = compact
        result.__setstate__(result.__getstate__())  # recompute derived fields (fast path)
    with contextlib.suppress(TypeError):  # not weakly referenceable: not cached
        _compacted[work] = result
    return result


def make_executor(work: Any, options: Any, seed: int) -> Executor:
    """The executor for ``options`` (num_workers, worker_type, prefetch, ...)."""
    workers = options.num_workers
    if workers == "auto" or workers == 0:  # "auto" is decided by measurement (autotune)
        return InlineExecutor(work)
    common: dict[str, Any] = {
        "seed": seed,
        "prefetch": options.prefetch,
        "in_order": options.in_order,
        "timeout": options.timeout,
        "worker_init_fn": options.worker_init_fn,
    }
    if options.worker_type == "thread":
        return ThreadExecutor(work, workers, dataset=_dataset(work), **common)
    work = process_work(work)
    return ProcessExecutor(
        work,
        workers,
        dataset=_dataset(work),
        start_method=choose_start_method(options.mp_context),
        explicit_start_method=options.mp_context is not None,
        **common,
    )


def _dataset(work: Any) -> Any:
    source = getattr(work, "source", None)
    return getattr(source, "data", None)
