"""Process workers: batches built in parallel processes, handed back through shared memory.

NOTE [ Shutdown ]

    main process (the consumer's thread; no helper threads)          worker i (one per process)
    run(tasks) --task pipe i: pickled (run, task, slot)-->  reader thread -> inbox -> main loop:
                                                             work(task, slot allocator)
               <--result pipe i: header + pickle -------   (array leaves: descriptors into slot)
    sentinel i (readable when worker i exits) ---------->  watched together with result pipe i

Per worker: one task pipe (main writes) and one result pipe (worker writes), so no lock and no
feeder thread is needed, and the main process knows which worker owes which batch. A worker's
reader thread drains its task pipe at once, so the main process never blocks writing a task
while that worker blocks writing a big result (the classic two-pipe deadlock).

How every exit path ends (always: workers reaped, shared memory unlinked; see ``shm.py``):

- Normal end, ``break``, ``del``/GC of the iterator, an exception in the training loop,
  KeyboardInterrupt: the loader's ``finally`` calls :meth:`ProcessExecutor.close` (persistent
  workers: ``DataLoader.close()``, ``with``, ``__del__``, or the atexit hook here). ``close``
  closes the task pipes; each worker's reader thread sees EOF and calls ``os._exit(0)`` at once,
  even mid-batch. Joins are bounded by :data:`WORKER_JOIN_TIMEOUT_S`, then SIGKILL.
- A worker raises: it sends the exception (``remote_error.py``) and keeps serving; the main
  process re-raises it, same type, when that batch is due.
- A worker dies (SIGKILL, segfault, ``os._exit``): its result pipe reaches EOF and its sentinel
  becomes readable; the main process raises :class:`~minibatcher.errors.WorkerError` naming the
  worker and its exit code or signal, and closes every worker.
- ``timeout``: no result within ``timeout`` seconds raises ``TimeoutError`` and closes workers.
- The main process dies (even SIGKILL): the task pipe reaches EOF (reader thread ->
  ``os._exit``); a write to the result pipe fails with EPIPE; and on Linux
  ``PR_SET_PDEATHSIG`` kills the worker outright. Any one of the three suffices, so a worker
  blocked writing a result exits too. Its segments are swept by the next pool.
- Under fork, a child inherits the parent's ends of earlier workers' pipes; it closes them so
  that EOF means what it should.

Start method: see ``choose_start_method`` in ``factory.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import io
import multiprocessing
import os
import pickle
import queue
import signal
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any, NoReturn

from ..errors import WorkerError
from .executor import Result, Task
from .remote_error import capture, reraise
from .reorder import Window
from .shm import ResultPickler, ResultUnpickler, Segment, SegmentPool, SlotWriter, WorkerSegments
from .worker_info import WorkerInfo, seed_worker, set_worker_info, worker_seed

WORKER_JOIN_TIMEOUT_S = 5.0
"""How long ``close()`` waits for workers to exit before killing them."""
DEATH_GRACE_S = 2.0
"""How long to wait for a worker whose pipe closed to be reaped, to read its exit code."""

_HEADER = struct.Struct("<qqBqq")  # run id, seq, status, slot bytes used, shm bytes needed
_OK, _ERROR, _INIT_ERROR = 0, 1, 2
_live: weakref.WeakSet[ProcessExecutor] = weakref.WeakSet()


class ProcessExecutor:
    """Runs ``work`` in ``num_workers`` processes; the executor protocol of ``executor.py``."""

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
        start_method: str = "fork",
        explicit_start_method: bool = True,
    ) -> None:
        self.work = work
        self.num_workers = num_workers
        self.seed = seed
        self.dataset = dataset
        self.prefetch = prefetch
        self.in_order = in_order
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.start_method = start_method
        self._explicit = explicit_start_method
        self.closed = False
        self._procs: list[Any] = []
        self._tasks: list[Connection] = []
        self._results: list[Connection] = []
        self._pool = SegmentPool()
        self._run_id = 0
        self._pending: dict[tuple[int, int], Segment | None] = {}  # (run, seq) -> slot
        _live.add(self)

    # -- lifecycle ---------------------------------------------------------------------------
    def _start(self, epoch: int) -> None:
        ctx = multiprocessing.get_context(self.start_method)
        forked = self.start_method == "fork"
        for wid in range(self.num_workers):
            task_r, task_w = ctx.Pipe(duplex=False)
            result_r, result_w = ctx.Pipe(duplex=False)
            inherited = [c.fileno() for c in (*self._tasks, *self._results)] if forked else []
            config = (wid, self.num_workers, self.seed, epoch, self.worker_init_fn, inherited)
            proc = ctx.Process(
                target=_worker_main,
                args=(config, self.work, self.dataset, task_r, result_w),
                name=f"minibatcher-worker-{wid}",
                daemon=True,
            )
            try:
                proc.start()
            except Exception as e:
                for conn in (task_r, task_w, result_r, result_w):
                    conn.close()
                self.close()
                raise self._start_error(e) from e
            finally:
                if proc.pid is not None:
                    task_r.close()
                    result_w.close()
            self._procs.append(proc)
            self._tasks.append(task_w)
            self._results.append(result_r)

    def _start_error(self, error: Exception) -> WorkerError:
        how = "chosen by default" if not self._explicit else "as requested"
        return WorkerError(
            f"could not start worker processes with start method {self.start_method!r} ({how}): "
            f"{type(error).__name__}: {error}. Under 'spawn' and 'forkserver' the dataset, "
            "transforms and collate_fn are pickled to each worker; make them picklable (no "
            "lambdas or local functions, no open files or locks), or pass mp_context='fork' "
            "(Linux), or use worker_type='thread'."
        )

    def close(self) -> None:
        """Stop and reap every worker and unlink every segment; idempotent (NOTE [ Shutdown ])."""
        if self.closed:
            return
        self.closed = True
        for conn in self._tasks:
            conn.close()
        deadline = time.monotonic() + WORKER_JOIN_TIMEOUT_S
        for proc in self._procs:
            if sys.is_finalizing():
                proc.kill()
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                proc.kill()
                proc.join(DEATH_GRACE_S)
        for conn in self._results:
            conn.close()
        for proc in self._procs:
            with contextlib.suppress(ValueError):
                proc.close()
        self._pending.clear()
        self._pool.close()
        _live.discard(self)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def worker_pids(self) -> list[int]:
        """The pids of the workers (a debugging and testing aid)."""
        return [p.pid for p in self._procs if not self.closed]

    # -- the main loop -----------------------------------------------------------------------
    def run(self, tasks: Iterator[Task]) -> Iterator[Result]:
        """Yield ``(seq, batch)`` for every task, in order unless ``in_order=False``."""
        if self.closed:
            raise RuntimeError("this executor was closed; create a new loader iterator")
        tasks = iter(tasks)
        first = next(tasks, None)
        if first is None:
            return
        if not self._procs:
            self._start(first[0])
        self._run_id += 1
        run = self._run_id
        window: Window[Any] = Window(self.prefetch * self.num_workers)
        owner: dict[int, int] = {}  # seq -> worker
        load = [0] * self.num_workers
        pending_task: Task | None = first

        def dispatch(wid: int) -> bool:
            nonlocal pending_task
            task = pending_task if pending_task is not None else next(tasks, None)
            pending_task = None
            if task is None:
                return False
            seq = task[1]
            slot = self._pool.acquire()
            self._pending[(run, seq)] = slot
            message = (run, task, None if slot is None else slot.name)
            try:
                self._tasks[wid].send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))
            except OSError:
                self._raise_dead(wid)
            window.dispatched(seq)
            owner[seq] = wid
            load[wid] += 1
            return True

        more = True
        while more and window.has_room():
            wid = min(range(self.num_workers), key=load.__getitem__)
            more = dispatch(wid)
        while len(window):
            if self.in_order:
                seq = window.head
                assert seq is not None
                wid = owner[seq]
                status, payload = self._receive(wid, run, seq)
                window.arrived(seq, None)
                window.pop_ready()
            else:
                wid, seq, status, payload = self._receive_any(run, owner, load)
                window.arrived(seq, None)
                window.pop_any(seq)
            del owner[seq]
            load[wid] -= 1
            if status != _OK:
                raise reraise(payload)
            if more:
                more = dispatch(wid)
            yield seq, payload
            if self.closed or self._run_id != run:
                raise RuntimeError("this iteration was superseded by a newer one or closed")

    def _receive(self, wid: int, run: int, seq: int) -> tuple[int, Any]:
        """The result of ``(run, seq)`` from worker ``wid`` (results of older runs dropped)."""
        while True:
            got = self._read(wid)
            if got[0] == run and got[1] == seq:
                return got[2], got[3]

    def _receive_any(
        self, run: int, owner: dict[int, int], load: list[int]
    ) -> tuple[int, int, int, Any]:
        """The first result of this run from any worker that owes one."""
        busy = [w for w in range(self.num_workers) if load[w]]
        conns = {self._results[w]: w for w in busy}
        sentinels = {self._procs[w].sentinel: w for w in busy}
        while True:
            ready = wait([*conns, *sentinels], self.timeout)
            if not ready:
                self._raise_timeout(busy)
            for obj in ready:
                wid = conns.get(obj)  # type: ignore[call-overload]
                if wid is None:
                    wid = sentinels[obj]  # type: ignore[index]
                got = self._read(wid)
                if got[0] == run:
                    return wid, got[1], got[2], got[3]

    def _read(self, wid: int) -> tuple[int, int, int, Any]:
        """One message from worker ``wid``: ``(run, seq, status, batch or RemoteError)``."""
        conn = self._results[wid]
        if not conn.poll(0):
            ready = wait([conn, self._procs[wid].sentinel], self.timeout)
            if not ready:
                self._raise_timeout([wid])
            if conn not in ready and not conn.poll(0):
                self._raise_dead(wid)
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            self._raise_dead(wid)
        run, seq, status, used, needed = _HEADER.unpack_from(data)
        slot = self._pending.pop((run, seq), None)
        if needed:
            self._pool.note_need(needed)
        body = io.BytesIO(memoryview(data)[_HEADER.size :])
        if status == _INIT_ERROR:
            self.close()
            raise reraise(pickle.load(body))
        if run != self._run_id:  # a result of an abandoned iteration: recycle its slot
            if slot is not None:
                self._pool.release(slot)
            return run, seq, status, None
        if status != _OK or not used or slot is None:
            if slot is not None:
                self._pool.release(slot)
            return run, seq, status, pickle.load(body)
        raw = self._pool.lease(slot, used)
        return run, seq, status, ResultUnpickler(body, raw).load()

    def _raise_dead(self, wid: int) -> NoReturn:
        proc = self._procs[wid]
        proc.join(DEATH_GRACE_S)
        code = proc.exitcode
        pid = proc.pid
        self.close()
        if code is None:
            how = "closed its result pipe but is still running"
        elif code < 0:
            try:
                how = f"was killed by signal {signal.Signals(-code).name} (exit code {code})"
            except ValueError:
                how = f"was killed by signal {-code} (exit code {code})"
        else:
            how = f"exited unexpectedly with exit code {code}"
        raise WorkerError(
            f"DataLoader worker {wid} (pid {pid}) {how}. If it was killed for lack of memory, "
            "use fewer workers or a smaller prefetch; a crash in native code shows in its stderr.",
            worker_id=wid,
            exitcode=code,
        )

    def _raise_timeout(self, wids: list[int]) -> NoReturn:
        self.close()
        raise TimeoutError(
            f"no batch from DataLoader worker(s) {wids} within timeout={self.timeout} s; the "
            "workers were stopped (raise timeout= for slow items, or check for a hang)"
        )

    def __repr__(self) -> str:
        return (
            f"ProcessExecutor(num_workers={self.num_workers}, start_method={self.start_method!r}, "
            f"prefetch={self.prefetch}, in_order={self.in_order}, closed={self.closed})"
        )


@atexit.register
def _close_all() -> None:
    for executor in list(_live):
        executor.close()


# -- the worker side ---------------------------------------------------------------------------
def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this worker when the process that started it dies."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _read_tasks(conn: Connection, inbox: queue.SimpleQueue[bytes]) -> None:
    """Drain the task pipe; EOF means the main process closed us or died: exit now."""
    try:
        while True:
            inbox.put(conn.recv_bytes())
    except (EOFError, OSError):
        pass
    os._exit(0)


def _worker_main(
    config: tuple[Any, ...], work: Any, dataset: Any, task_r: Connection, result_w: Connection
) -> None:
    wid, num_workers, seed, epoch, init_fn, inherited = config
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    for fd in inherited:
        with contextlib.suppress(OSError):
            os.close(fd)
    where = f"DataLoader worker process {wid} (pid {os.getpid()})"
    inbox: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    threading.Thread(target=_read_tasks, args=(task_r, inbox), daemon=True).start()

    def begin_epoch(epoch: int) -> None:
        base = worker_seed(seed, epoch, wid)
        seed_worker(base)
        set_worker_info(WorkerInfo(wid, num_workers, base, dataset), thread=False)

    begin_epoch(epoch)
    header = bytes(_HEADER.size)
    if init_fn is not None:
        try:
            init_fn(wid)
        except BaseException as e:
            out = io.BytesIO()
            out.write(_HEADER.pack(-1, -1, _INIT_ERROR, 0, 0))
            pickle.dump(capture(e, wid, where + ", in worker_init_fn"), out)
            result_w.send_bytes(out.getbuffer())
            os._exit(1)
    segments = WorkerSegments()
    while True:
        run, task, slot_name = pickle.loads(inbox.get())
        if task[0] != epoch:
            epoch = task[0]
            begin_epoch(epoch)
        writer = SlotWriter(None if slot_name is None else segments.get(slot_name))
        out = io.BytesIO()
        out.write(header)
        status = _OK
        try:
            batch = work(task, writer.allocate)
            ResultPickler(out, writer).dump(batch)
        except BaseException as e:
            status = _ERROR
            out.seek(len(header))
            out.truncate()
            pickle.dump(capture(e, wid, where), out)
        buffer = out.getbuffer()
        _HEADER.pack_into(buffer, 0, run, task[1], status, writer.used, writer.needed)
        result_w.send_bytes(buffer)
        del buffer
