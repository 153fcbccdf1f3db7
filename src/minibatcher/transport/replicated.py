"""Replicated streams: every worker process iterates its own copy of a stream and batches it.

This is torch's model for an ``IterableDataset`` with workers (the one exception to "the main
process decides every batch"): each worker holds a replica of the dataset, which may split
itself with ``get_worker_info()`` (or not, and then every item comes once per worker); the main
process only asks for "your next batch" and interleaves the answers.

In: pull tasks ``(epoch, seq, token, None)`` (an endless iterator; ``token`` tells the work that
a new iteration began, so it starts a new iterator over its replica). Out: ``(n, batch)`` for the
n-th batch delivered. A work answers :data:`EXHAUSTED` when its replica has no batch left.
State: which workers are still active, within one run.

Order (torch's, see ``_MultiProcessingDataLoaderIter`` in torch's ``dataloader.py``): requests
are dealt round-robin over the active workers, ``prefetch`` per worker in flight, and answers are
read in request order; a worker that answers :data:`EXHAUSTED` is dropped from the rotation and
its later requests are skipped. The order therefore depends on ``num_workers`` exactly as
torch's does. One deliberate difference: an exhausted worker is noticed when its request comes
due, not as soon as its answer arrives, so the interleaving never depends on timing (torch's can,
with three or more replicas of unequal lengths).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from typing import Any

from .executor import Result, Task
from .processes import ProcessExecutor
from .remote_error import reraise


class Exhausted:
    """The answer of a work whose replica has no batch left (compared by type, so it pickles)."""

    def __repr__(self) -> str:
        return "EXHAUSTED"


EXHAUSTED = Exhausted()


def is_exhausted(answer: Any) -> bool:
    """Whether a work's answer says that its replica has no batch left."""
    return type(answer) is Exhausted


class ReplicatedExecutor(ProcessExecutor):
    """Process workers that each iterate their own replica (module docstring for the order)."""

    def run(self, tasks: Iterator[Task]) -> Iterator[Result]:
        begun = self._begin(tasks)
        if begun is None:
            return
        tasks, first, run = begun
        n = self.num_workers
        active = [True] * n
        rotation = itertools.cycle(range(n))
        pending: deque[tuple[int, int]] = deque()  # (request id, worker), in request order
        head: list[Task] = [first]
        sent = itertools.count()

        def request() -> None:
            for _ in range(n):  # torch's _try_put_index: the next active worker in the cycle
                wid = next(rotation)
                if active[wid]:
                    break
            else:
                return
            task = head.pop() if head else next(tasks)
            rid = next(sent)
            self._send(wid, run, [(task[0], rid, task[2], task[3])])
            pending.append((rid, wid))

        for _ in range(max(1, self.prefetch) * n):
            request()
        delivered = 0
        while pending:
            rid, wid = pending.popleft()
            if not active[wid]:
                continue  # answered already (drained when the worker was found exhausted)
            ((_, ok, payload),) = self._receive(wid, run, rid)
            if ok and is_exhausted(payload):
                active[wid] = False
                for later, owner in list(pending):  # its later answers are EXHAUSTED too
                    if owner == wid:
                        self._receive(wid, run, later)
                request()
                continue
            request()
            if not ok:
                raise reraise(payload)
            yield delivered, payload
            delivered += 1
            self._check_current(run)

    def __repr__(self) -> str:
        return (
            f"ReplicatedExecutor(num_workers={self.num_workers}, "
            f"start_method={self.start_method!r}, prefetch={self.prefetch})"
        )
