"""How many tasks travel in one message to a process worker (``processes.py``).

In: the size and cost of the last message's batches, and how many tasks remain. Out: the size
of the next message. State: none.

A message costs ~0.3-0.6 ms of CPU in the processes together (pipe writes and reads, the
wake-ups of the main process and of the worker's reader thread, pickling), whatever it carries:
batches are grouped until a message carries :data:`CHUNK_TARGET_S` of work, as long as they
are small in the pipe and fit a shared slot together. The first message to each worker carries
one task (the first batch is not delayed: its cost is unknown), and the last ones shrink again
(:func:`message_size`), so that the workers finish the epoch together.
"""

from __future__ import annotations

MAX_CHUNK = 32
"""At most this many tasks travel in one message."""
CHUNK_TARGET_S = 0.04
"""Batches are grouped so that one message carries about this much work.

A message costs ~0.3-0.6 ms of CPU in the processes together (pipe writes and reads, the
wake-ups of the main process and of the worker's reader thread, pickling): W10's batches
(~0.2 ms of padding each) paid as much again in transport, one per message, and W4's (6 ms of
Python each) lost 12-15% of the two cores to it. 40 ms of work a message keeps that near 1%;
batches of 40 ms or more travel one per message. The first message to each worker carries one
task (the first batch is not delayed), and the last ones shrink (:func:`message_size`)."""
CHUNK_MAX_BYTES = 16 * 1024
"""Batches whose pickled size is above this travel one per message (the pipe carries them)."""
CHUNK_MAX_SHARED = 1 << 20
"""A chunk's batches share one slot: they are grouped only while they fit this many bytes
(big slots cost more than the messages they save: W10 through 2 workers ran at 142k items/s
with chunks of up to 8 MiB, 194k with 1 MiB)."""


def chunk_size(
    piped: int, shared: int, batches: int, per_batch_s: float, timeout: float | None = None
) -> int:
    """How many tasks the next message carries, from the last message of ``batches`` batches:
    ``piped`` bytes through the pipe, ``shared`` bytes in its slot, ``per_batch_s`` of work each.

    Enough for :data:`CHUNK_TARGET_S` of work, as long as the batches are small in the pipe
    (:data:`CHUNK_MAX_BYTES` each) and fit :data:`CHUNK_MAX_SHARED` together; with the
    loader's ``timeout`` (seconds for one batch), a message's work stays within half of it, so
    that grouping never turns a slow batch into a timeout.
    """
    if piped > CHUNK_MAX_BYTES * batches:
        return 1
    target = CHUNK_TARGET_S if timeout is None else min(CHUNK_TARGET_S, timeout / 2)
    by_time = target / max(per_batch_s, 1e-9)
    by_bytes = CHUNK_MAX_SHARED * batches / shared if shared else MAX_CHUNK
    return max(1, min(MAX_CHUNK, int(by_time), int(by_bytes)))


def message_size(chunk: int, left: int, in_flight: int) -> int:
    """The tasks of the next message: ``chunk`` (from :func:`chunk_size`), or fewer when only
    ``left`` tasks remain (0: unknown) for the ``in_flight`` messages the workers hold, so that
    the epoch's last messages are small and no worker is left alone with a big one."""
    if chunk > 1 and left:
        return max(1, min(chunk, -(-left // in_flight)))
    return chunk
