"""Which executor runs a loader's epoch, and how long persistent workers live.

In: the loader's options, work and seed, at each epoch. Out: an executor (see transport/): inline,
workers made for this epoch, the persistent workers kept from an earlier one, or, with
``num_workers="auto"`` not yet decided, one that decides while it delivers the epoch (see
autotune/). State: the persistent workers while alive, the thread iterating them, and the
options with ``num_workers="auto"`` resolved once chosen.

Only the executor changes between these, never the batches: every batch is decided by the
loader's planner before an executor sees it.
"""

from __future__ import annotations

import multiprocessing
import threading
import warnings
from collections.abc import Callable
from typing import Any

from . import autotune
from .options import LoaderOptions
from .profile import Profiler
from .transport import Executor, InlineExecutor, ProcessExecutor, make_executor


class EpochExecutors:
    """The executors of one loader's epochs."""

    def __init__(self, profiler: Profiler) -> None:
        self._profiler = profiler
        self.persistent: Executor | None = None
        """The persistent workers' executor, while alive."""
        self.tuned: LoaderOptions | None = None
        """The options with ``num_workers="auto"`` resolved, once chosen."""
        self._owner: int | None = None  # the thread whose iteration uses the persistent workers
        self._persistent_length: int | None = None  # len(data) when they started
        self._warned_daemonic = False

    def options(self, loader: Any) -> LoaderOptions:
        """The loader's options as they run (``num_workers="auto"`` resolved once chosen)."""
        return self.tuned or loader.options

    def for_epoch(self, loader: Any, peek: bool = False) -> Executor:
        """The executor of ``loader``'s next epoch (``peek``: of ``one_batch()``).

        Raises RuntimeError when another thread is iterating the same persistent workers.
        """
        executor = self._choose(loader, peek)
        if executor is self.persistent:
            self._owner = threading.get_ident()
        return executor

    def done(self, executor: Executor) -> None:
        """The epoch run by ``executor`` ended: close it, unless it is the persistent one."""
        if executor is not self.persistent:
            executor.close()
        elif self._owner == threading.get_ident():
            self._owner = None

    def close(self) -> None:
        """Stop the persistent workers, if any (idempotent)."""
        workers, self.persistent = self.persistent, None
        if workers is not None:
            workers.close()

    def _choose(self, loader: Any, peek: bool) -> Executor:
        opts = self.options(loader)
        work = loader.work
        if opts.num_workers == "auto":
            if peek:  # one_batch(): not worth measuring
                return InlineExecutor(work)
            return autotune.for_loader(loader, self._adopt(loader))
        if opts.num_workers == 0:
            return InlineExecutor(work)
        if opts.worker_type == "process" and multiprocessing.current_process().daemon:
            self._warn_daemonic(opts)  # a daemonic process (a loader's worker) has no children
            return InlineExecutor(work)
        workers = self.persistent
        if workers is not None and _length(loader) != self._persistent_length:
            self.close()  # the data grew or shrank: workers forked with the old data restart
            workers = None
        if workers is not None and not getattr(workers, "closed", False):
            if self._owner is not None and self._owner != threading.get_ident():
                raise RuntimeError(
                    "this loader's persistent workers are serving an iteration in another "
                    "thread: they serve one iteration at a time; give each thread its own "
                    "DataLoader (or finish, or close, the other iteration first)"
                )
            return workers
        executor = make_executor(work, opts, loader.seed)
        if opts.persistent_workers:
            self.persistent = executor
            self._persistent_length = _length(loader)
        elif isinstance(executor, ProcessExecutor):
            executor.retire = True  # one epoch: workers exit after their last task
        return executor

    def _warn_daemonic(self, opts: LoaderOptions) -> None:
        if self._warned_daemonic:
            return
        self._warned_daemonic = True
        warnings.warn(
            f"DataLoader(num_workers={opts.num_workers}) inside a daemonic process (a "
            "DataLoader worker, say): daemonic processes cannot have children, so its "
            "batches are loaded inline, in this process (the same batches); pass "
            "worker_type='thread' to load them in threads",
            RuntimeWarning,
            stacklevel=6,
        )

    def _adopt(self, loader: Any) -> Callable[[autotune.Choice, Executor], bool]:
        """Keep ``num_workers="auto"``'s choice; True when its executor is kept (persistent)."""
        options = loader.options

        def adopt(choice: autotune.Choice, executor: Executor) -> bool:
            self._profiler.autotune = str(choice)
            self.tuned = tuned = autotune.tuned_options(options, choice)
            if self._profiler.current is not None:
                self._profiler.current.executor = f"{executor!r} (chosen by num_workers='auto')"
            if tuned.persistent_workers:
                self.persistent = executor
                self._persistent_length = _length(loader)
                return True
            return False

        return adopt


def _length(loader: Any) -> int | None:
    """``len()`` of the loader's data (None for a stream): persistent workers restart when it
    changes, since workers forked with the old data cannot read the new indices."""
    try:
        return len(loader.source)
    except TypeError:
        return None
