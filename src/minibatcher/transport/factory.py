"""Choosing and building the executor for a loader's worker options.

The loader calls :func:`make_executor` once per epoch (or once, with persistent workers) and never
looks at the kind of worker again: every executor has the same ``run``/``close`` contract.

Start method (``mp_context=None``), as torch's DataLoader: a start method the program set for
the whole process (``multiprocessing.set_start_method``), else ``"fork"`` on Linux (whatever
other threads are alive: a notebook kernel's, tqdm's, a framework's), else the platform's
default (``"spawn"`` on macOS and Windows). Fork starts workers in milliseconds, shares the
dataset's memory (a memmap or DataFrame is not copied into each worker), and needs nothing to
be picklable or importable, so classes and lambdas defined in a notebook or ``__main__`` work.
Its real risks are handled in the worker (``worker_loop.py``): torch's intra-op thread pool,
which a forked child cannot use after the parent has, is limited to one thread before any user
code runs (as torch's workers do); JAX, which cannot run in a forked child once its threads
started, is warned about once. A lock that another thread of the parent held at the fork stays
held in the child: code that only the dataset calls is safe; pass ``mp_context="forkserver"``
if a worker hangs in a library that the parent was using from another thread. Every method
works when chosen explicitly; with spawn and forkserver the work must be picklable, and a
worker that cannot unpickle or import it raises the real exception in the main process.

Streams (iterables without ``len()``): the main process reads the items, cuts them into batches
and ships each batch's items inside its task; workers transform and collate them. Each item is
therefore read exactly once, the batches and their order equal ``num_workers=0``'s (shuffle
buffer included), and resume counts items as without workers. A source's own
``shard(index, count)`` is deliberately not used to let each worker read its share: the order
would then depend on the number of workers (batches interleaved by worker) and a worker that
finishes early would leave the epoch unbalanced. The cost is that *reading* is serial (in the
main process); transforms and collation, usually the expensive part, run in parallel.

Python lists: process workers read large plain lists from compact storage
(``sources/compact.py``), so forked workers do not copy the list on reading it. Under fork the
copy is made by a process of its own while the workers serve their first tasks from the list
(NOTE [ Compact copy in the background ] in ``compact_stage.py``); under spawn and forkserver
it is made before the workers start, and sent to them (:func:`process_work`).
"""

from __future__ import annotations

import contextlib
import copy
import multiprocessing
import sys
from typing import Any

from ..sources import compact
from ..sources.compact import compact_source, refresh_source
from ..sources.sequence import SequenceSource
from .compact_stage import CompactStage, StagedSource
from .executor import Executor, InlineExecutor
from .processes import ProcessExecutor
from .threads import ThreadExecutor


def choose_start_method(requested: str | None) -> str:
    """The start method to use: ``requested``, or the default described in the module doc."""
    if requested is not None:
        return requested
    process_wide = multiprocessing.get_start_method(allow_none=True)
    if process_wide is not None:
        return process_wide
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return multiprocessing.get_context().get_start_method()


_UNCHANGED = object()
"""Cached for work that process workers run as it is."""


def process_work(work: Any) -> Any:
    """``work`` with a large list dataset stored compactly (see ``sources/compact.py``).

    Cached on the work object itself (an attribute that is not pickled), so the conversion is
    paid once per loader, not once per epoch, and is freed with the loader (a module-level
    cache kept every loader's dataset alive); the cached copy is brought up to date with the
    list on every call, i.e. before each epoch's workers start (NOTE [ Compact copies stay
    current ] in ``sources/compact.py``).
    """
    source = getattr(work, "source", None)
    cached = getattr(work, "_process_variant", None)
    if cached is _UNCHANGED:
        return work
    if cached is not None and refresh_source(cached.source, source):
        return cached
    compact = compact_source(source) if source is not None else None
    result = work
    if compact is not None:
        result = copy.copy(work)
        result.source = compact
        result.__setstate__(result.__getstate__())  # recompute derived fields (fast path)
    with contextlib.suppress(AttributeError):  # no __dict__ (a user's object): not cached
        work._process_variant = _UNCHANGED if result is work else result  # no cycle
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
    start_method = choose_start_method(options.mp_context)
    stage = staged_work(work, workers) if start_method == "fork" else None
    if stage is not None:
        work = stage.work
    else:
        work = process_work(work)
    return ProcessExecutor(
        work,
        workers,
        dataset=_dataset(work),
        start_method=start_method,
        explicit_start_method=options.mp_context is not None,
        compact_stage=stage,
        **common,
    )


def staged_work(work: Any, num_workers: int) -> CompactStage | None:
    """For forked workers: ``work`` reading a large list from a compact copy made while they
    start (``compact_stage.py``), with the stage that makes it; None if the list is not worth
    compacting (the checks of ``compact_source``, on a sample: the encoder decides the rest)."""
    source = getattr(work, "source", None)
    data: Any = getattr(source, "data", None)
    if type(source) is not SequenceSource or type(data) not in (list, tuple):
        return None
    if not sys.platform.startswith("linux"):  # the encoder's end relies on PR_SET_PDEATHSIG
        return None
    if len(data) < compact.COMPACT_MIN_ITEMS or not compact._compacting_pays(data):
        return None
    staged = copy.copy(work)
    staged.source = StagedSource(source, encoder_worker=num_workers - 1)
    staged.__setstate__(staged.__getstate__())  # recompute derived fields
    return CompactStage(staged.source, staged)


def _dataset(work: Any) -> Any:
    source = getattr(work, "source", None)
    return getattr(source, "data", None)
