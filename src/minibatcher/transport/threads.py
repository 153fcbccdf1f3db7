"""Thread workers: the same executor contract as processes, in one process.

Threads suit work that releases the GIL (NumPy, decoding in C, file and network I/O) and
free-threaded Python; nothing is pickled and nothing crosses a process boundary, so batches come
back as the very objects the worker made (no shared memory needed).

    main thread: run(tasks) --inbox (SimpleQueue)--> worker threads: work(task)
                 <--outbox: (run, seq, ok, batch or exception)--

The window (``prefetch * num_workers`` tasks in flight) and in-order reassembly are in
``reorder.py``. Exceptions are re-raised in the main thread as the same object, with a note
naming the worker thread. Thread workers do not seed the global generators (they share them with
the main thread); ``get_worker_info()`` works per thread. Shutdown: ``close()`` sends one stop
sentinel per thread and joins them within :data:`WORKER_JOIN_TIMEOUT_S`; a thread stuck in a
never-ending ``work`` cannot be killed (a Python limit) and is left as a daemon thread. See
NOTE [ Shutdown ] in ``processes.py`` for the process side.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import WorkerError
from .executor import Result, Task, WorkerRuns
from .remote_error import note_failure
from .reorder import Window
from .worker_info import WorkerInfo, set_worker_info, worker_seed

WORKER_JOIN_TIMEOUT_S = 5.0
"""How long ``close()`` waits for all worker threads to finish their current batch."""

_STOP = None


class ThreadExecutor(WorkerRuns):
    """Runs ``work`` in ``num_workers`` threads; the executor protocol of ``executor.py``."""

    def __init__(
        self,
        work: Callable[..., Any],
        num_workers: int,
        *,
        seed: int,
        dataset: Any = None,
        prefetch: int = 2,
        in_order: bool = True,
        timeout: float | None = None,
        worker_init_fn: Callable[[int], Any] | None = None,
    ) -> None:
        self.work = work
        self.num_workers = num_workers
        self.seed = seed
        self.dataset = dataset
        self.prefetch = prefetch
        self.in_order = in_order
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.closed = False
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._outbox: queue.SimpleQueue[tuple[int, int, bool, Any]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._run_id = 0

    def _start(self, epoch: int) -> None:
        # The threads get the queues and the work, not ``self``: an executor nobody references
        # is then collected (and its ``__del__`` stops the threads).
        for wid in range(self.num_workers):
            shared = (self._inbox, self._outbox, self.work, self.worker_init_fn)
            identity = (wid, self.num_workers, self.seed, self.dataset)
            thread = threading.Thread(
                target=_worker, args=(shared, identity, epoch), name=f"minibatcher-worker-{wid}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def run(self, tasks: Iterator[Task]) -> Iterator[Result]:
        """Yield ``(seq, batch)`` for every task, in order unless ``in_order=False``."""
        begun = self._begin(tasks)
        if begun is None:
            return
        tasks, first, run = begun
        window: Window[tuple[bool, Any]] = Window(self.prefetch * self.num_workers)
        inbox, outbox = self._inbox, self._outbox

        def dispatch(task: Task | None) -> bool:
            """Hand ``task`` to the threads; False when the tasks have run out."""
            if task is None:
                return False
            inbox.put((run, task))
            window.dispatched(task[1])
            return True

        more = dispatch(first)
        while more and window.has_room():
            more = dispatch(next(tasks, None))
        while len(window):
            ready = window.pop_ready() if self.in_order else None
            while ready is None:
                try:
                    got_run, seq, ok, value = outbox.get(timeout=self.timeout)
                except queue.Empty:
                    self.close(wait=False)  # a stuck thread cannot be interrupted
                    raise TimeoutError(
                        f"no batch from the DataLoader's worker threads within "
                        f"timeout={self.timeout} s"
                    ) from None
                if got_run == -1:
                    self.close()
                    raise value
                if got_run != run:
                    continue  # a result of an abandoned iteration
                window.arrived(seq, (ok, value))
                ready = window.pop_ready() if self.in_order else (seq, window.pop_any(seq))
            seq, (ok, value) = ready
            if not ok:
                raise value
            if more:
                more = dispatch(next(tasks, None))
            yield seq, value
            self._check_current(run)

    def _workers_started(self) -> bool:
        return bool(self._threads)

    def close(self, wait: bool = True) -> None:
        """Stop the threads (after their current batch) and join them; idempotent."""
        if self.closed:
            return
        self.closed = True
        for _ in self._threads:
            self._inbox.put(_STOP)
        if not wait:
            return
        deadline = time.monotonic() + WORKER_JOIN_TIMEOUT_S
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        return (
            f"ThreadExecutor(num_workers={self.num_workers}, prefetch={self.prefetch}, "
            f"in_order={self.in_order}, closed={self.closed})"
        )


def _worker(shared: tuple[Any, ...], identity: tuple[Any, ...], epoch: int) -> None:
    inbox, outbox, work, init_fn = shared
    wid, num_workers, seed, dataset = identity
    info = WorkerInfo(wid, num_workers, worker_seed(seed, epoch, wid), dataset)
    set_worker_info(info, thread=True)
    if init_fn is not None:
        try:
            init_fn(wid)
        except BaseException as e:
            _note(e, f"in worker_init_fn of DataLoader worker thread {wid}")
            outbox.put((-1, -1, False, e))
            return
    while True:
        message = inbox.get()
        if message is _STOP:
            return
        run, task = message
        if task[0] != epoch:
            epoch = task[0]
            info = WorkerInfo(wid, num_workers, worker_seed(seed, epoch, wid), dataset)
            set_worker_info(info, thread=True)
        try:
            outbox.put((run, task[1], True, work(task)))
        except Exception as e:
            note_failure(e, work, task)
            _note(e, f"raised in DataLoader worker thread {wid}")
            outbox.put((run, task[1], False, e))
        except BaseException as e:  # sys.exit() in a thread must not exit the main process
            error = WorkerError(
                f"DataLoader worker thread {wid} stopped: {type(e).__name__}({e}) was raised "
                "in it", worker_id=wid,
            )
            error.__cause__ = e
            outbox.put((run, task[1], False, error))
            return
        del message, task


def _note(error: BaseException, note: str) -> None:
    add_note = getattr(error, "add_note", None)
    if add_note is not None:
        add_note(note)
