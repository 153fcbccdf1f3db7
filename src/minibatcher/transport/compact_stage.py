"""The compact copy of a large list, made while forked workers already serve the first batches.

NOTE [ Compact copy in the background ]

    main process, iter()              worker i (forked first)      encoder process (forked next)
    begin(): pipe (r, w)                closes w; holds r            holds w; compact_source(list)
      fork workers ----------------->   first tasks (up to           writes segment "...-compact",
      start_encoder(): fork ------------LIVE_ITEMS items) read ----  its magic number last; exits
        encoder; close r and w          the inherited list; later    (w closes: r reads EOF)
    close(): kill/reap the encoder,     ones wait for EOF on r, then
      unlink the segment                map the segment

A forked worker reading a Python list copies the pages it reads (``sources/compact.py``), so
process workers read large lists from a compact copy. Encoding that copy takes ~0.7 us an item,
70 ms for 100,000 small dicts: made before the workers start, it delayed the first batch past
torch's. Here the workers start at once, as torch's do, and each serves its first tasks from
the list it inherited, touching only those items' pages (:data:`LIVE_ITEMS`: at most a few
MiB, against the whole list per worker). Meanwhile a short-lived process, forked just before
them, encodes the copy into a shared-memory segment: its own copy-on-read pages die with it,
and it encodes the list exactly as it was at the fork (the same instant as the workers': both
forks happen inside ``iter()``), whatever the main process does to the list afterwards. The
workers' later tasks map the segment; NumPy buffers (columns, offsets, the pickles' bytes) are
read in place, shared by every worker, never copied. A ``str``/``bytes`` column's text is the
exception: a Python string must own its characters, so each worker holds a copy of that text
(its length in bytes; torch's workers copy ~100 bytes of object header per string besides).

Why the end-of-file of a pipe as the signal: every worker sees it at once, and it comes also
when the encoder fails or is killed, so a worker never waits for a copy that will not come.
Whether the copy is complete is written in the segment itself (its magic number, written
last); a worker that finds none (items that cannot be pickled, a full /dev/shm) reads the list
it inherited for the rest of the epoch, with the same batches (the copy is only ever a faster
way to read the same items).

Only under fork (``factory.py``): spawn and forkserver workers receive a pickled copy of the
work, so the copy is made before they start, as before (``process_work``). Ownership follows
NOTE [ Shared memory ownership ] in ``shm.py``: the main process names the segment (with its
pid, so that the sweep of a later pool removes it if the main process is killed) and unlinks
it in :meth:`CompactStage.close`, after the encoder is reaped.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import secrets
import select
import struct
from typing import Any, NoReturn

from .._typing import IndexArray
from ..sources.base import IndexedSource
from ..sources.compact import compact_source
from . import shm
from .shm import PREFIX, Segment
from .worker_loop import die_with_parent

LIVE_ITEMS = 512
"""Items a worker may read from the inherited list before it waits for the compact copy.

Its first batch is always read there, whatever its size. 512 random items touch at most 512
pages (2 MiB) per worker; W7's list (2,000,000 small dicts) costs torch's workers ~250 MiB
each."""
ALIGN = 64
"""Every part of the segment starts at a multiple of this many bytes."""
MAGIC = b"MBCOMPT1"
_LAYOUT = struct.Struct("<8sqqq")  # magic, buffers, pickle offset and length; then the table
_BUFFER = struct.Struct("<qq")  # offset, length
ENCODER_EXIT_TIMEOUT_S = 5.0
"""How long ``close()`` waits for the encoder to end before unlinking its segment."""
MAX_FD = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536


def _align(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


def write_compact(name: str, source: IndexedSource) -> None:
    """Encode ``source``'s list compactly into a new segment ``name`` (in the encoder process).

    Layout: a header (``_LAYOUT``, the magic number last to be written), the table of the
    out-of-band buffers (``_BUFFER`` each), the protocol-5 pickle of ``(type, data)``, then the
    buffers, each 64-byte aligned.
    """
    compact = compact_source(source)
    if compact is None:
        return
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps((type(compact), compact.data), 5, buffer_callback=buffers.append)
    raws = [buffer.raw() for buffer in buffers]
    chunks: list[bytes | memoryview] = [body, *raws]
    offset = _align(_LAYOUT.size + _BUFFER.size * len(raws))
    places = []
    for chunk in chunks:
        places.append((offset, len(chunk)))
        offset = _align(offset + len(chunk))
    segment = Segment.create(name, max(offset, 1), reserve=True)
    with memoryview(segment.mmap) as view:
        for (start, length), chunk in zip(places, chunks, strict=True):
            view[start : start + length] = chunk
        table = b"".join(_BUFFER.pack(*place) for place in places[1:])
        view[_LAYOUT.size : _LAYOUT.size + len(table)] = table
        head = _LAYOUT.pack(b"\0" * len(MAGIC), len(raws), *places[0])
        view[: len(head)] = head
        view[: len(MAGIC)] = MAGIC  # complete: written last


def read_compact(name: str) -> IndexedSource | None:
    """The compact source in segment ``name``, its arrays viewing the mapping; None if the
    segment is missing or incomplete (the encoder failed)."""
    try:
        segment = Segment.attach(name)
    except OSError:
        return None
    view = memoryview(segment.mmap)  # the copy's arrays view it: it lives as long as they do
    if len(view) < _LAYOUT.size or view[: len(MAGIC)] != MAGIC:
        return None
    _, count, start, length = _LAYOUT.unpack_from(view)
    places = (_BUFFER.unpack_from(view, _LAYOUT.size + _BUFFER.size * i) for i in range(count))
    buffers = [view[a : a + n] for a, n in places]
    kind, data = pickle.loads(view[start : start + length], buffers=buffers)
    return kind(data)


def _encode_and_exit(name: str, source: IndexedSource, ready_w: int) -> NoReturn:
    """The encoder process: write the segment, then exit (which closes the ready pipe)."""
    code = 1
    try:
        die_with_parent()  # killed with the worker that forked it (its pages die too)
        gc.disable()  # every object is read once, then the process ends
        os.closerange(3, ready_w)  # nothing of the worker's: its pipes must see EOF without us
        os.closerange(ready_w + 1, MAX_FD)
        write_compact(name, source)
        code = 0
    finally:
        os._exit(code)  # any failure: no magic number, the workers read the list


class StagedSource(IndexedSource):
    """A forked worker's view of a large list: the inherited list for its first tasks, then
    the compact copy once the encoder is done (NOTE [ Compact copy in the background ])."""

    def __init__(self, live: IndexedSource, encoder_worker: int) -> None:
        super().__init__(live.data)
        self.live = live
        self.name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}-compact"
        self.encoder_worker = encoder_worker  # the worker that forks the encoder
        self.ready_fd = self.ready_w = -1  # set by CompactStage.begin before workers fork
        self.live_left = LIVE_ITEMS
        self._current: IndexedSource | None = None
        self._encoder_pid = 0

    def __len__(self) -> int:
        return len(self.live)

    def worker_started(self, worker_id: int) -> None:
        """Called by each worker before its first task: the last one forks the encoder."""
        if worker_id != self.encoder_worker or self.ready_w < 0:
            self.ready_w = -1  # closed at start (CompactStage.fds_to_close), or none
            return
        with contextlib.suppress(OSError):  # cannot fork: EOF at once, the list is read
            pid = os.fork()
            if pid == 0:
                _encode_and_exit(self.name, self.live, self.ready_w)
            self._encoder_pid = pid
        os.close(self.ready_w)
        self.ready_w = -1

    def fetch_items(self, indices: IndexArray) -> list[Any]:
        current = self._current
        if current is None:
            if self.live_left > 0 and not self._ready(0):
                self.live_left -= len(indices)
                return self.live.fetch_items(indices)
            current = self._switch()
        return current.fetch_items(indices)

    def _ready(self, timeout_ms: int | None) -> bool:
        if self.ready_fd < 0:
            return True
        poller = select.poll()
        poller.register(self.ready_fd, select.POLLIN | select.POLLHUP)
        return bool(poller.poll(timeout_ms))

    def _switch(self) -> IndexedSource:
        """Wait for the encoder to end, then read its copy (or, failing that, the list)."""
        compact = None
        if self.ready_fd >= 0:
            self._ready(None)
            with contextlib.suppress(OSError):
                os.close(self.ready_fd)
            self.ready_fd = -1
            if self._encoder_pid:
                with contextlib.suppress(OSError):
                    os.waitpid(self._encoder_pid, 0)  # it has exited: reap it
            compact = read_compact(self.name)
        self._current = self.live if compact is None else compact
        return self._current

    def __reduce__(self) -> tuple[Any, ...]:
        return (_as_is, (self.live,))  # pickled (never under fork): the list's own source

    def __repr__(self) -> str:
        return f"StagedSource(len={len(self)}, current={self._current!r})"


class CompactStage:
    """The main process's side: makes the ready pipe before the workers are forked, waits for
    the encoder's end and unlinks the segment on :meth:`close` (NOTE [ Compact copy in the
    background ])."""

    def __init__(self, source: StagedSource, work: Any) -> None:
        self.source = source
        self.work = work  # the work whose source is ``source``
        self._ready_r = self._ready_w = -1

    def begin(self) -> None:
        """Make the ready pipe (just before the workers are forked)."""
        self._ready_r, self._ready_w = os.pipe()
        self.source.ready_fd, self.source.ready_w = self._ready_r, self._ready_w

    def fds_to_close(self, worker_id: int) -> list[int]:
        """The fds worker ``worker_id`` closes at start: the write end, but in the worker
        that forks the encoder (only the encoder may hold it then)."""
        if self._ready_w < 0 or worker_id == self.source.encoder_worker:
            return []
        return [self._ready_w]

    def workers_started(self) -> None:
        """The workers hold the pipe now: the main process keeps only the read end."""
        if self._ready_w >= 0:
            os.close(self._ready_w)
            self._ready_w = -1
        self.source.ready_fd = self.source.ready_w = -1  # here, the list is read as it is

    def close(self) -> None:
        """After the workers are reaped: wait (bounded) for the encoder to end, which the
        kernel makes it do when its worker exits, then unlink the segment; idempotent."""
        self.workers_started()
        if self._ready_r >= 0:
            poller = select.poll()
            poller.register(self._ready_r, select.POLLIN | select.POLLHUP)
            poller.poll(ENCODER_EXIT_TIMEOUT_S * 1000)
            os.close(self._ready_r)
            self._ready_r = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(shm.SHM_DIR, self.source.name))


def _as_is(source: IndexedSource) -> IndexedSource:
    return source
