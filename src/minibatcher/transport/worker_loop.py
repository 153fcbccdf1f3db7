"""The worker side of ``processes.py``: the loop each worker process runs.

In: messages on the task pipe, each ``(run, slot name, [task, ...])`` (a chunk of tasks; one
task unless the batches are tiny). Out: one message per chunk on the result pipe: a fixed header
(``HEADER``: run, message id, status, slot bytes used, shared-memory bytes needed, seconds of
work per batch) then the pickled ``([(seq, ok, batch or RemoteError), ...], stage timings)``
(the timings of ``BatchWork.take_timings``, or None). State: the epoch
(to reseed when it changes) and the mapped segments. See NOTE [ Shutdown ] in ``processes.py``.
"""

from __future__ import annotations

import _thread
import contextlib
import ctypes
import gc
import io
import os
import pickle
import queue
import signal
import struct
import sys
import time
from multiprocessing.connection import Connection
from typing import Any, NoReturn

import numpy as np

from .array_pickle import ResultPickler, ResultUnpickler, SlotWriter
from .remote_error import capture, note_failure
from .shm import WorkerSegments
from .worker_info import (
    WorkerInfo,
    get_worker_info,
    seed_worker,
    set_worker_info,
    worker_seed,
)

HEADER = struct.Struct("<qqBqqd")  # run, message id, status, slot used, shm needed, s per batch
OK, INIT_ERROR = 0, 2
INDEXED, GENERAL = b"I", b"G"
"""The first byte of a task message: tasks of an indexed source (int64 keys, no items), or any."""
RETIRE = b"R"
"""A message of this one byte: no task will follow; exit once the tasks before it are done."""


def encode_tasks(run: int, slot_name: str | None, chunk: list[Any]) -> bytes | memoryview:
    """A task message: ``(run, slot name, [task, ...])`` pickled, after a one-byte kind.

    The tasks of an indexed source, ``(epoch, seq, int64 keys, None)``, are the hot case (one
    per batch): their keys travel as raw bytes through the C pickler (~2 us a message), not
    through :class:`ResultPickler`, whose Python ``reducer_override`` runs for every container
    (~5 a task). Anything else (a stream's items) goes through :class:`ResultPickler`.
    """
    if all(_plain_task(task) for task in chunk):
        rows = [(task[0], task[1], pickle.PickleBuffer(task[2])) for task in chunk]
        return INDEXED + pickle.dumps((run, slot_name, rows), protocol=pickle.HIGHEST_PROTOCOL)
    out = io.BytesIO()
    out.write(GENERAL)
    ResultPickler(out).dump((run, slot_name, chunk))
    return out.getbuffer()


def _plain_task(task: Any) -> bool:
    keys = task[2]
    return (
        task[3] is None
        and type(keys) is np.ndarray
        and keys.dtype == np.int64
        and keys.ndim == 1
        and keys.flags.c_contiguous
    )


def decode_tasks(data: bytes) -> tuple[int, str | None, list[Any]]:
    """``(run, slot name, tasks)`` of a message made by :func:`encode_tasks`."""
    body = memoryview(data)[1:]
    if data[:1] == INDEXED:
        run, slot_name, rows = pickle.loads(body)
        frombuffer, int64 = np.frombuffer, np.int64
        return run, slot_name, [(e, s, frombuffer(keys, int64), None) for e, s, keys in rows]
    loaded: tuple[int, str | None, list[Any]] = ResultUnpickler(io.BytesIO(body)).load()
    return loaded


def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this worker when the process that started it dies."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


MALLOC_MMAP_THRESHOLD = 32 << 20
"""In workers (glibc): allocations below this come from the heap, not from fresh mmaps."""
MALLOC_TRIM_THRESHOLD = 64 << 20
"""In workers (glibc): freed heap memory up to this much is kept for reuse, not returned."""


def keep_freed_memory() -> None:
    """glibc: stop the per-batch churn of mid-size allocations (a worker's hot loop).

    A dataset that makes, say, a 150 KB image per item gets each from a fresh ``mmap`` (glibc's
    threshold starts at 128 KB) or from a heap top that glibc trims after every batch: either
    way every item page-faults and is zeroed again (W5 measured ~0.3 ms an item, ~20x the
    memset itself). Fixed thresholds make the worker reuse freed memory; the cost is that a
    worker keeps up to :data:`MALLOC_TRIM_THRESHOLD` of freed heap.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, MALLOC_MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, MALLOC_TRIM_THRESHOLD)  # M_TRIM_THRESHOLD


def freeze_inherited_objects() -> None:
    """Keep the garbage collector of a forked worker off the objects it inherited.

    A forked worker inherits the main process's objects on shared copy-on-write pages. Python's
    cyclic garbage collector writes into the header of every object it examines, so the first
    full collection in a worker would copy every page that holds a container (a list of two
    million dicts: all of them), and each collection would walk objects that are not the
    worker's to free. Frozen, they are never examined in the worker; the main process is
    untouched (its collector is its own).
    """
    gc.freeze()


def _read_tasks(conn: Connection, inbox: queue.SimpleQueue[bytes]) -> None:
    """Drain the task pipe; EOF means the main process closed us or died: exit now."""
    try:
        while True:
            inbox.put(conn.recv_bytes())
    except (EOFError, OSError):
        pass
    os._exit(0)


def limit_torch_threads() -> None:
    """One intra-op thread for torch in this worker, before any user code runs.

    A forked child inherits torch's thread-pool state but not its threads: after the parent ran
    a multithreaded op (any training step), the child's first parallel op waits forever for
    threads that do not exist. One thread per worker is also what torch's own workers use (the
    workers are the parallelism; N workers x N threads would oversubscribe the CPUs).
    """
    torch = sys.modules.get("torch")
    set_num_threads = getattr(torch, "set_num_threads", None)
    if set_num_threads is not None:
        set_num_threads(1)


def worker_main(
    config: tuple[Any, ...], payload: Any, task_r: Connection, result_w: Connection
) -> None:
    """Serve tasks until the task pipe closes (the process's target).

    ``payload`` is ``(work, dataset, worker_init_fn)``: the objects themselves under fork, their
    pickle under spawn and forkserver, unpickled here so that a failure (a class defined in a
    notebook, a module the worker cannot import) reaches the main process as the real exception
    with its traceback, instead of a bare exit code.
    """
    wid, num_workers, seed, epoch, inherited, parent = config
    die_with_parent()
    if parent is not None and os.getppid() != parent:
        os._exit(0)  # the parent died before prctl took effect
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    keep_freed_memory()
    limit_torch_threads()
    for fd in inherited:
        with contextlib.suppress(OSError):
            os.close(fd)
    if parent is not None:
        freeze_inherited_objects()
    where = f"DataLoader worker process {wid} (pid {os.getpid()})"

    def fail(error: Exception, context: str) -> NoReturn:
        """Report an error that ends this worker (the main process raises it), and exit."""
        out = io.BytesIO()
        out.write(HEADER.pack(-1, -1, INIT_ERROR, 0, 0, 0.0))
        pickle.dump(capture(error, wid, where + context), out)
        result_w.send_bytes(out.getbuffer())
        os._exit(1)

    if isinstance(payload, bytes):
        try:
            payload = pickle.loads(payload)
        except Exception as e:
            fail(
                e,
                ", while unpickling the dataset, transforms and collate_fn it was sent (under "
                "spawn and forkserver a worker imports them by name: what a notebook or "
                "__main__ defines cannot be found there; the default start method, fork, has "
                "no such limit)",
            )
        limit_torch_threads()  # unpickling may have imported torch
    work, dataset, init_fn = payload
    started = getattr(getattr(work, "source", None), "worker_started", None)
    if callable(started):  # before any thread: one worker forks the compact copy's encoder
        started(wid)  # (NOTE [ Compact copy in the background ] in compact_stage.py)
    inbox: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    # Not threading.Thread(...).start(), which waits until the new thread has run: on a busy
    # machine that wait delayed every worker's first task by a scheduling round.
    _thread.start_new_thread(_read_tasks, (task_r, inbox))

    # An init function that seeds the worker itself (the torch facade's, which follows torch's
    # seeding: once per worker, never per epoch) says so; the global generators are then its.
    own_seeds = not getattr(init_fn, "owns_worker_seeds", False)

    def begin_epoch(epoch: int) -> None:
        base = worker_seed(seed, epoch, wid)
        if own_seeds:
            seed_worker(base)
            set_worker_info(WorkerInfo(wid, num_workers, base, dataset), thread=False)
        elif get_worker_info() is None:  # torch's worker info is the init function's
            set_worker_info(WorkerInfo(wid, num_workers, base, dataset), thread=False)

    begin_epoch(epoch)
    if init_fn is not None:
        try:
            init_fn(wid)
        except Exception as e:
            fail(e, ", in worker_init_fn")
    segments = WorkerSegments()
    take_timings = getattr(work, "take_timings", None)  # stage timings for ``dl.stats``
    clock = time.perf_counter
    blank = bytes(HEADER.size)
    seeded_run: int | None = None
    while True:
        message = inbox.get()
        if message == RETIRE:
            os._exit(0)  # its results are all written: the main process reads them from the pipe
        try:
            run, slot_name, tasks = decode_tasks(message)
        except Exception as e:  # e.g. a stream item whose class the worker cannot import
            fail(e, ", while receiving a task")
        writer = SlotWriter(None if slot_name is None else segments.get(slot_name))
        entries: list[tuple[int, bool, Any]] = []
        start = clock()
        if seeded_run is None:
            seeded_run = run  # seeded at start-up for this epoch (then worker_init_fn ran)
        for task in tasks:
            if task[0] != epoch or run != seeded_run:
                # A new epoch, or a new run of any epoch (set_epoch(e) to replay it, with
                # persistent workers): the global generators restart from the epoch's seed.
                epoch, seeded_run = task[0], run
                begin_epoch(epoch)
            try:
                entries.append((task[1], True, work(task, writer.allocate)))
            except Exception as e:  # SystemExit ends the worker: reported as its exit code
                note_failure(e, work, task)
                entries.append((task[1], False, capture(e, wid, where)))
                break
        per_batch = (clock() - start) / len(tasks)
        out = io.BytesIO()
        out.write(blank)
        timings = take_timings() if take_timings is not None else None
        if timings is not None and not timings.get("samples"):
            timings = None
        try:
            ResultPickler(out, writer).dump((entries, timings))
        except Exception:
            out.seek(HEADER.size)
            out.truncate()
            ResultPickler(out, writer).dump((_picklable(entries, wid, where), timings))
        buffer = out.getbuffer()
        HEADER.pack_into(buffer, 0, run, tasks[0][1], OK, writer.used, writer.needed, per_batch)
        result_w.send_bytes(buffer)
        del buffer, entries, tasks


def _picklable(entries: list[tuple[int, bool, Any]], wid: int, where: str) -> list[Any]:
    """``entries`` with each batch that cannot be pickled replaced by an error saying so."""
    checked: list[Any] = []
    for seq, ok, payload in entries:
        try:
            ResultPickler(io.BytesIO()).dump(payload)
        except Exception as e:
            error = TypeError(
                f"batch {seq} was built in the worker but cannot be pickled to send it to the "
                f"main process ({type(e).__name__}: {e}); return picklable objects from the "
                "dataset, transforms and collate_fn, or use worker_type='thread'"
            )
            checked.append((seq, False, capture(error, wid, where)))
            break
        checked.append((seq, ok, payload))
    return checked
