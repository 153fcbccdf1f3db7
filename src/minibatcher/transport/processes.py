"""Process workers: batches built in parallel processes, handed back through shared memory.

NOTE [ Shutdown ]

    main process (the consumer's thread; no helper threads)        worker i (one per process)
    run(tasks)
      dispatch --task pipe i: (run, slot, [task..])-->  reader thread -> inbox -> main loop:
                                                          work(task, slot.allocate) per task
      _read   <--result pipe i: header + pickle -----   leaves in the slot sent as descriptors
      poll(result pipe i + every worker's sentinel)     (sentinel: readable once a worker exits)
    slot = a shared-memory segment from the main's SegmentPool (NOTE in ``shm.py``)

Per worker: one task pipe (main writes) and one result pipe (worker writes), so no lock and no
feeder thread is needed, and the main process knows which worker owes which batch (in order, it
reads the worker that owes the next one). A worker's reader thread drains its task pipe at once,
so the main process never blocks writing a task while that worker blocks writing a big result
(the classic two-pipe deadlock). At most ``prefetch * num_workers`` messages are in flight; a
message is one task at first, then as many as make :data:`CHUNK_TARGET_S` of work (at most
:data:`MAX_CHUNK`; W1 through workers, W10's padded token batches, W4's 6 ms batches), which
amortises the per-message cost (syscalls, wake-ups, pickling), and fewer again as the epoch's
last tasks are dealt; a chunk's batches share one slot and are handed over in order as usual.

How every exit path ends (always: workers reaped, shared memory unlinked; see ``shm.py``):

- Normal end, ``break``, ``del``/GC of the iterator, an exception in the training loop,
  KeyboardInterrupt: the loader's ``finally`` calls :meth:`ProcessExecutor.close` (persistent
  workers: ``DataLoader.close()``, ``with``, ``__del__``, or the atexit hook here). ``close``
  closes the task pipes; each worker's reader thread sees EOF and calls ``os._exit(0)`` at once,
  even mid-batch. Joins are bounded by :data:`WORKER_JOIN_TIMEOUT_S`, then SIGKILL.
- Normal end of a single epoch's workers (not persistent, in order): once the tasks run out,
  each worker is sent ``RETIRE`` and exits after its queued tasks, while the main process still
  reads their last results; its sentinel is then no failure (a worker that dies before its
  last result still shows as EOF on its result pipe), and ``close`` finds it gone.
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
- Under fork, a child inherits the main process's ends of every pipe (its own, earlier
  workers', other loaders' workers'); it closes them so that EOF means what it should.
- Ctrl-C in a terminal reaches the whole process group: workers ignore SIGINT, the main
  process gets KeyboardInterrupt and shuts them down as above. An interrupt in the middle of a
  pipe message leaves the pipe unusable, so that executor is closed.

Start method: see ``choose_start_method`` in ``factory.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import itertools
import multiprocessing
import operator
import os
import pickle
import select
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any, NoReturn

from ..errors import WorkerError
from .array_pickle import ResultUnpickler
from .chunking import chunk_size, message_size
from .executor import Result, Task, WorkerRuns
from .jax_fork import jax_fork_warnings_said, warn_if_jax_forked
from .remote_error import dead_worker_error, reraise, start_error
from .reorder import Window
from .shm import Segment, SegmentPool
from .worker_loop import HEADER as _HEADER
from .worker_loop import INIT_ERROR as _INIT_ERROR
from .worker_loop import RETIRE, encode_tasks, worker_main

WORKER_JOIN_TIMEOUT_S = 5.0
"""How long ``close()`` waits for workers to exit before killing them."""
DEATH_GRACE_S = 2.0
"""How long to wait for a worker whose pipe closed to be reaped, to read its exit code."""
_live: weakref.WeakSet[ProcessExecutor] = weakref.WeakSet()


class ProcessExecutor(WorkerRuns):
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
        round_robin: bool = False,
        compact_stage: Any = None,
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
        self.round_robin = round_robin
        """Deal the task of batch ``seq`` to worker ``seq % num_workers``, one task per message
        (torch's dealing: which worker computes a batch, and so its global RNG's draws, is then
        fixed whatever the timing)."""
        self.retire = False
        """Set by the loader for a single epoch's workers (not persistent): once the tasks run
        out, each worker is told to exit after its last one, so that the workers' exits overlap
        the last batches instead of following them (in order only; NOTE [ Shutdown ])."""
        self._stage = compact_stage  # fork only: see compact_stage.py
        self.closed = False
        self._procs: list[Any] = []
        self._tasks: list[Connection] = []
        self._results: list[Connection] = []
        self._pool = SegmentPool()
        self._run_id = 0
        self._pending: dict[tuple[int, int], Segment | None] = {}  # (run, message) -> slot
        self._chunk = 1  # tasks per message, adapted to the batches' cost (see _read)
        self._retired: set[int] = set()  # workers told to exit after their last task
        self._polls: list[Any] = []  # per worker: poll over its result pipe and sentinel
        self._poll_all: Any = None
        self._fd_owner: dict[int, int] = {}
        self._result_fds: list[int] = []
        self._stages: dict[str, float] = {}  # stage timings sent by workers, for dl.stats
        _live.add(self)

    # -- lifecycle ---------------------------------------------------------------------------
    def _start(self, epoch: int, started: Callable[[int], object] | None = None) -> None:
        """Start the workers; ``started(wid)`` right after each (to hand it its first task)."""
        ctx = multiprocessing.get_context(self.start_method)
        forked = self.start_method == "fork"
        payload: Any = (self.work, self.dataset, self.worker_init_fn)
        if forked:
            warn_if_jax_forked()
            if self._stage is not None:
                self._stage.begin()
        else:  # pickled here, unpickled by the worker, which reports a failure (worker_loop.py)
            try:
                payload = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:
                self.close()
                raise self._start_error(e) from e
        for wid in range(self.num_workers):
            task_r, task_w = ctx.Pipe(duplex=False)
            result_r, result_w = ctx.Pipe(duplex=False)
            # Under fork the child inherits every fd of ours: it closes the main process's ends
            # (its own, earlier workers', other loaders' workers'), or EOF would never come.
            inherited = [*self._main_side_fds(), task_w.fileno(), result_r.fileno()]
            inherited = inherited + self._stage.fds_to_close(wid) if self._stage else inherited
            inherited = inherited if forked else []
            parent = os.getpid() if forked else None
            config = (wid, self.num_workers, self.seed, epoch, inherited, parent)
            proc = ctx.Process(  # type: ignore[attr-defined]
                target=worker_main,
                args=(config, payload, task_r, result_w),
                name=f"minibatcher-worker-{wid}",
                daemon=True,
            )
            try:
                with jax_fork_warnings_said():
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
            if started is not None:
                started(wid)
        if self._stage is not None:
            self._stage.workers_started()
        # Waiting for worker i watches its result pipe and *every* worker's sentinel, so a death
        # anywhere is reported at once, even while another worker is slow.
        self._poll_all = select.poll()
        sentinels = [proc.sentinel for proc in self._procs]
        for wid, (proc, conn) in enumerate(zip(self._procs, self._results, strict=True)):
            self._fd_owner[conn.fileno()] = self._fd_owner[proc.sentinel] = wid
            self._result_fds.append(conn.fileno())
            for fd in (conn.fileno(), proc.sentinel):
                self._poll_all.register(fd, select.POLLIN)
        for conn in self._results:
            poller = select.poll()
            for fd in (conn.fileno(), *sentinels):
                poller.register(fd, select.POLLIN)
            self._polls.append(poller)

    @staticmethod
    def _main_side_fds() -> list[int]:
        """The main process's pipe ends of every live executor's workers."""
        fds = []
        for executor in list(_live):
            if not executor.closed:
                fds += [c.fileno() for c in (*executor._tasks, *executor._results)]
        return fds

    def _start_error(self, error: Exception) -> WorkerError:
        return start_error(self.start_method, self._explicit, error)

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
        if self._stage is not None:
            self._stage.close()
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
        fresh = not self._workers_started()
        begun = self._begin(tasks, start=False)
        if begun is None:
            return
        tasks, first, run = begun
        window: Window[None] = Window(self.prefetch * self.num_workers)  # keyed by message id
        owner: dict[int, int] = {}  # message id (its first seq) -> worker
        load = [0] * self.num_workers
        head: list[Task] = [first]

        def dispatch(wid: int) -> bool:
            left = operator.length_hint(tasks) + len(head)
            size = message_size(self._chunk, left, self.num_workers * self.prefetch)
            chunk = head + list(itertools.islice(tasks, size - len(head)))
            head.clear()
            if not chunk:
                if self.retire and self.in_order:
                    self._retire()
                return False
            mid = chunk[0][1]
            if self.round_robin:
                wid = mid % self.num_workers
            self._send(wid, run, chunk)
            window.dispatched(mid)
            owner[mid] = wid
            load[wid] += 1
            return True

        more = True
        if fresh:  # a worker starts on its first task while the next one is forked
            self._start(first[0], None if self.round_robin else dispatch)
        while more and window.has_room():
            more = dispatch(min(range(self.num_workers), key=load.__getitem__))
        while len(window):
            if self.in_order:
                mid = window.head
                assert mid is not None
                wid = owner[mid]
                entries = self._receive(wid, run, mid)
                window.arrived(mid, None)
                window.pop_ready()
            else:
                wid, mid, entries = self._receive_any(run)
                window.arrived(mid, None)
                window.pop_any(mid)
            del owner[mid]
            load[wid] -= 1
            if more:
                more = dispatch(wid)
            for seq, ok, payload in entries:
                if not ok:
                    raise reraise(payload)
                yield seq, payload
                self._check_current(run)

    def _send(self, wid: int, run: int, chunk: list[Task]) -> None:
        """Send ``chunk`` (tasks of run ``run``) to worker ``wid``, with a shared-memory slot."""
        mid = chunk[0][1]
        slot = self._pool.acquire()
        self._pending[(run, mid)] = slot
        try:
            message = encode_tasks(run, None if slot is None else slot.name, chunk)
        except Exception as e:
            raise TypeError(
                f"the items of batch {mid} cannot be pickled to send them to a worker process "
                f"({type(e).__name__}: {e}); make the stream's items picklable or use "
                "worker_type='thread'"
            ) from e
        try:
            self._tasks[wid].send_bytes(message)
        except OSError:
            self._raise_dead(wid)
        except BaseException:  # interrupted mid-message: the pipe is unusable
            self.close()
            raise

    def _workers_started(self) -> bool:
        return bool(self._procs)

    def _retire(self) -> None:
        """Tell every started worker to exit once its queued tasks are done (idempotent)."""
        for wid, conn in enumerate(self._tasks):
            if wid not in self._retired:
                self._retired.add(wid)
                try:
                    conn.send_bytes(RETIRE)
                except OSError:
                    self._raise_dead(wid)
                except BaseException:  # interrupted mid-message: the pipe is unusable
                    self.close()
                    raise

    def _retired_exit(self, fd: int) -> bool:
        """Whether ``fd`` is the sentinel of a worker told to retire: its exit is no failure
        (a failure before its last result shows as EOF on its result pipe). The sentinel stops
        being watched, as it stays readable."""
        wid = self._fd_owner[fd]
        if wid not in self._retired or fd == self._result_fds[wid]:
            return False
        for poller in (*self._polls, self._poll_all):
            with contextlib.suppress(KeyError):
                poller.unregister(fd)
        return True

    def _receive(self, wid: int, run: int, mid: int) -> list[Any]:
        """The results of message ``mid`` of ``run`` from worker ``wid`` (older runs' dropped)."""
        while True:
            self._wait_for(wid)
            got_run, got_mid, entries = self._read(wid)
            if got_run == run and got_mid == mid:
                return entries

    def _wait_for(self, wid: int) -> None:
        """Block until worker ``wid`` has sent something; raise if it died or timed out."""
        poller = self._polls[wid]
        timeout = None if self.timeout is None else self.timeout * 1000
        while True:
            events = poller.poll(timeout)  # one call: it returns at once when data is there
            if not events:
                self._raise_timeout([wid])
            if any(fd == self._result_fds[wid] for fd, _ in events):
                return
            for fd, _ in events:  # a sentinel: that worker exited (maybe after sending its last)
                if self._retired_exit(fd):
                    continue
                dead = self._fd_owner[fd]
                if dead != wid or not self._results[wid].poll(0):
                    self._raise_dead(dead)
                return

    def _receive_any(self, run: int) -> tuple[int, int, list[Any]]:
        """The first message of this run from any worker: ``(worker, message id, entries)``."""
        while True:
            events = self._poll_all.poll(None if self.timeout is None else self.timeout * 1000)
            if not events:
                self._raise_timeout(list(range(self.num_workers)))
            for fd, _ in events:
                wid = self._fd_owner[fd]
                if fd != self._result_fds[wid] and not self._results[wid].poll(0):
                    self._raise_dead(wid)
                got_run, mid, entries = self._read(wid)
                if got_run == run:
                    return wid, mid, entries

    def _read(self, wid: int) -> tuple[int, int, Any]:
        """One message from worker ``wid``: ``(run, message id, [(seq, ok, batch), ...])``."""
        started = time.perf_counter()
        try:
            data = self._results[wid].recv_bytes()
        except (EOFError, OSError):
            self._raise_dead(wid)
        except BaseException:  # interrupted mid-message (Ctrl-C): the pipe is unusable
            self.close()
            raise
        run, mid, status, used, needed, per_batch = _HEADER.unpack_from(data)
        slot = self._pending.pop((run, mid), None)
        self._pool.note_need(needed)
        body = io.BytesIO(data)
        body.seek(_HEADER.size)
        if status == _INIT_ERROR:
            self.close()
            raise reraise(pickle.load(body))
        if run != self._run_id:  # a result of an abandoned iteration: recycle its slot
            if slot is not None:
                self._pool.release(slot)
            return run, mid, None
        entries, timings = ResultUnpickler(body, self._lease(slot, used)).load()
        stages = self._stages
        if timings:
            for key, value in timings.items():
                stages[key] = stages.get(key, 0.0) + value
        stages["transport"] = stages.get("transport", 0.0) + time.perf_counter() - started
        stages["transport_samples"] = stages.get("transport_samples", 0.0) + len(entries)
        if self.round_robin:
            self._chunk = 1
        else:
            self._chunk = chunk_size(len(data), used, len(entries), per_batch, self.timeout)
        return run, mid, entries

    def stage_timings(self) -> dict[str, float]:
        """Stage timings the workers sampled since the last call (see ``profile.py``)."""
        taken, self._stages = self._stages, {}
        return taken

    def _lease(self, slot: Segment | None, used: int) -> Any:
        if slot is None:
            return None
        if not used:
            self._pool.release(slot)
            return None
        return self._pool.lease(slot, used)

    def _raise_dead(self, wid: int) -> NoReturn:
        conn = self._results[wid]
        with contextlib.suppress(EOFError, OSError):
            while conn.poll(0):  # a worker that failed on purpose said why before exiting
                data = conn.recv_bytes()
                if _HEADER.unpack_from(data)[2] == _INIT_ERROR:
                    self.close()
                    raise reraise(pickle.loads(memoryview(data)[_HEADER.size :]))
        proc = self._procs[wid]
        proc.join(DEATH_GRACE_S)
        code, pid = proc.exitcode, proc.pid
        self.close()
        error = dead_worker_error(wid, pid, code)
        if self.start_method != "fork" and code == 1:
            error.args = (
                f"{error.args[0]} Under {self.start_method!r} a worker first re-imports the "
                "main module: a failure there is printed in its stderr; a script needs its "
                "top level under `if __name__ == '__main__':`.",
            )
        raise error

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
