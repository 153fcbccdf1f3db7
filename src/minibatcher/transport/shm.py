"""Shared-memory segments: created, reused and unlinked by the main process, mapped by workers.

This module is the segments' lifetime (the pool, the leases, the orphan sweep); how a batch's
arrays are laid out in a slot and described in the pickle is ``array_pickle.py``.

NOTE [ Shared memory ownership ]

    main process                                   worker process
    SegmentPool.acquire() -> Segment "slot"  ---->  task carries the slot's name and capacity
      (creates /dev/shm/minibatcher-<pid>-...)      SlotWriter: collate/fetch allocate stacked
                                                    arrays inside the slot (bump allocator)
    ResultUnpickler: leaves become views    <----  ResultPickler: a leaf inside the slot is
      of the slot, owned by a _Lease                 sent as (offset, shape, dtype), not bytes
    batch garbage-collected -> _Lease finalizer -> slot back to the pool -> next task

- Only the main process creates and unlinks segments. Workers only open them by name (and keep a
  small LRU of mappings), so a worker that dies cannot leak a segment, and Python's
  ``resource_tracker`` is never involved (we do not use ``multiprocessing.shared_memory``: its
  tracker unlinks or warns about segments that another process owns).
- No file descriptor per batch: a segment's fd is closed right after ``mmap``; the pool reuses
  segments, so an epoch of any length maps ``~ prefetch * num_workers + batches held`` of them.
- A slot returns to the pool when the last array viewing it is garbage-collected (a weakref
  finalizer on the ``_Lease`` that the arrays' ``.base`` chain ends in), never earlier, so a
  batch the user keeps stays valid; ``close()`` unlinks every segment (mappings stay valid).
- Names are ``minibatcher-<main pid>-<token>-<n>``: segments of a main process that was
  SIGKILLed (its pid no longer alive) are swept by the next pool (:func:`sweep_orphans`).
- No SIGBUS on a small /dev/shm: where free space is short (less than :data:`SPARSE_MARGIN`
  times the segment), space is reserved with ``posix_fallocate`` when a segment is created, so
  a full /dev/shm raises ENOSPC there (we then fall back to pipes with a warning). Where space
  is plentiful, segments are created sparse: pages are allocated when a worker first writes
  them, in parallel, and an oversized slot costs nothing (so the first slots can be generous).
- Arrays smaller than :data:`MIN_SHARED_BYTES` are pickled: for them a pipe is cheaper.
"""

from __future__ import annotations

import collections
import contextlib
import mmap
import os
import secrets
import warnings
import weakref

import numpy as np

SHM_DIR = os.environ.get("MINIBATCHER_SHM_DIR", "/dev/shm")
"""Where segments live (a tmpfs); ``MINIBATCHER_SHM_DIR`` overrides it."""
PREFIX = "minibatcher-"
MIN_SHARED_BYTES = 16 * 1024
"""Arrays of at least this many bytes travel through shared memory; smaller ones are pickled."""
QUANTUM = 64 * 1024
INITIAL_SLOT_BYTES = 16 << 20
"""The size of the first slots, before any batch has said how much it needs (sparse: free)."""
SMALL_INITIAL_SLOT_BYTES = 1 << 20
"""The same where /dev/shm is short of space (slots are then reserved up front)."""
SPARSE_MARGIN = 16
"""Segments are created sparse only while /dev/shm has this many times their size free."""
IDLE_MESSAGES = 8
WORKER_MAPPINGS = 64
"""Segments a worker keeps mapped (least recently used ones are unmapped first)."""


def our_segments(pid: int | None = None) -> list[str]:
    """Names of our segments in :data:`SHM_DIR` (of main process ``pid``, or of any)."""
    head = PREFIX if pid is None else f"{PREFIX}{pid}-"
    try:
        return sorted(n for n in os.listdir(SHM_DIR) if n.startswith(head))
    except OSError:
        return []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_orphans() -> int:
    """Unlink segments left by main processes that no longer exist (e.g. SIGKILLed); count them."""
    swept = 0
    for name in our_segments():
        pid = name[len(PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(SHM_DIR, name))
                swept += 1
    return swept


def _free_bytes() -> int:
    """Free bytes in :data:`SHM_DIR` (0 when unknown: then space is always reserved)."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


class Segment:
    """One mapped shared-memory file: ``view`` is a uint8 array over all of it."""

    __slots__ = ("address", "capacity", "mmap", "name", "view")

    def __init__(self, name: str, fd: int, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self.mmap = mmap.mmap(fd, capacity)
        self.view = np.frombuffer(self.mmap, dtype=np.uint8)
        self.address: int = self.view.ctypes.data

    @classmethod
    def create(cls, name: str, capacity: int, reserve: bool = True) -> Segment:
        """Create, reserve (fallocate, unless ``reserve=False``) and map a new segment (main
        process only)."""
        path = os.path.join(SHM_DIR, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, capacity)
            if reserve and hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, capacity)
            return cls(name, fd, capacity)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        finally:
            os.close(fd)

    @classmethod
    def attach(cls, name: str) -> Segment:
        """Map an existing segment by name (workers)."""
        fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR)
        try:
            return cls(name, fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)

    def unlink(self) -> None:
        """Remove the file; mappings (ours and the user's arrays) stay valid until dropped."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(SHM_DIR, self.name))

    def __repr__(self) -> str:
        return f"Segment({self.name!r}, capacity={self.capacity})"


class _Lease:
    """The owner at the end of the ``.base`` chain of every array read from one slot."""

    __slots__ = ("__array_interface__", "__weakref__", "segment")

    def __init__(self, segment: Segment, used: int) -> None:
        self.segment = segment
        self.__array_interface__ = {
            "data": (segment.address, False),
            "shape": (used,),
            "typestr": "|u1",
            "version": 3,
        }


class SegmentPool:
    """The main process's segments: created, reused, unlinked here and nowhere else."""

    def __init__(self) -> None:
        sweep_orphans()
        self._token = secrets.token_hex(3)
        self._count = 0
        self._free: list[Segment] = []
        self._returned: collections.deque[Segment] = collections.deque()  # from finalizers
        self._all: dict[str, Segment] = {}
        roomy = _free_bytes() > SPARSE_MARGIN * INITIAL_SLOT_BYTES
        self.need = INITIAL_SLOT_BYTES if roomy else SMALL_INITIAL_SLOT_BYTES
        """Bytes a slot must hold (the most any batch needed so far); 0: no slot needed."""
        self._idle = 0
        self.closed = False
        self.disabled = not os.path.isdir(SHM_DIR)

    def note_need(self, nbytes: int) -> None:
        """A worker reported that a message needed ``nbytes`` of shared memory (0: none).

        Slots start at :data:`INITIAL_SLOT_BYTES` and grow to fit the biggest batch seen; after
        :data:`IDLE_MESSAGES` messages in a row that needed none, tasks stop carrying slots
        (tiny batches then cost no shared memory at all) until one needs it again.
        """
        if nbytes == 0:
            self._idle += 1
            if self._idle >= IDLE_MESSAGES:
                self.need = 0
            return
        self._idle = 0
        if nbytes > self.need:
            self.need = -(-(nbytes + nbytes // 16) // QUANTUM) * QUANTUM

    def acquire(self) -> Segment | None:
        """A free slot of at least :attr:`need` bytes, or None (batches then go by pipe)."""
        if self.need == 0 or self.disabled or self.closed:
            return None
        returned = self._returned
        while returned:
            self._free.append(returned.popleft())
        free = self._free
        while free:
            segment = free.pop()
            if segment.capacity >= self.need:
                return segment
            self._retire(segment)
        self._count += 1
        name = f"{PREFIX}{os.getpid()}-{self._token}-{self._count}"
        try:
            reserve = _free_bytes() < SPARSE_MARGIN * self.need
            segment = Segment.create(name, self.need, reserve=reserve)
        except OSError as e:
            self.disabled = True
            warnings.warn(
                f"minibatcher: could not create a {self.need / 2**20:.1f} MiB shared-memory "
                f"segment in {SHM_DIR} ({e}); batches now travel through pipes (slower). "
                "Enlarge /dev/shm (docker: --shm-size=2g), set MINIBATCHER_SHM_DIR to a larger "
                "tmpfs, or use worker_type='thread'.",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
        self._all[name] = segment
        return segment

    def release(self, segment: Segment) -> None:
        """Give ``segment`` back (thread-safe: finalizers run in whatever thread collects)."""
        if not self.closed:
            self._returned.append(segment)

    def lease(self, segment: Segment, used: int) -> np.ndarray:
        """A uint8 array over ``segment``'s first ``used`` bytes that returns it when freed."""
        owner = _Lease(segment, used)
        weakref.finalize(owner, self.release, segment)
        return np.asarray(owner)

    def _retire(self, segment: Segment) -> None:
        self._all.pop(segment.name, None)
        segment.unlink()

    def close(self) -> None:
        """Unlink every segment (idempotent). Arrays the user still holds stay readable."""
        self.closed = True
        for segment in self._all.values():
            segment.unlink()
        self._all.clear()
        self._free.clear()
        self._returned.clear()

    def __repr__(self) -> str:
        return f"SegmentPool(segments={len(self._all)}, need={self.need}, closed={self.closed})"


class WorkerSegments:
    """A worker's mappings of the main process's segments, least recently used dropped first."""

    def __init__(self, limit: int = WORKER_MAPPINGS) -> None:
        self._maps: collections.OrderedDict[str, Segment] = collections.OrderedDict()
        self._limit = limit

    def get(self, name: str) -> Segment:
        segment = self._maps.get(name)
        if segment is None:
            segment = Segment.attach(name)
            self._maps[name] = segment
            if len(self._maps) > self._limit:
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(name)
        return segment
