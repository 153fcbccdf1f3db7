"""In-order reassembly of results by ``seq`` with a bounded number of tasks in flight.

In: tasks dispatched in ``seq`` order, results arriving in any order. Out: results in dispatch
order (``in_order=True``) or as they come (``False``). State: the dispatched seqs not yet handed
over and the results that arrived ahead of their turn; both are bounded by the window
(``prefetch * num_workers``), because a new task is dispatched only when a slot frees up.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Generic, TypeVar

V = TypeVar("V")

_MISSING: Any = object()


class Window(Generic[V]):
    """The tasks in flight: which seqs were dispatched, in order, and the results that arrived.

    ``limit`` bounds the tasks in flight; :meth:`has_room` tells the executor whether it may
    dispatch another. :meth:`pop_ready` returns the next result in dispatch order, or
    :data:`None` while it has not arrived (a result that arrives early waits here).
    """

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"the window must hold at least one task, got limit={limit}")
        self.limit = limit
        self._order: deque[int] = deque()
        self._arrived: dict[int, V] = {}

    def __len__(self) -> int:
        """The number of tasks dispatched and not yet handed over."""
        return len(self._order)

    def has_room(self) -> bool:
        """Whether another task may be dispatched."""
        return len(self._order) < self.limit

    def dispatched(self, seq: int) -> None:
        """Record that task ``seq`` was handed to a worker."""
        self._order.append(seq)

    @property
    def head(self) -> int | None:
        """The seq whose result is due next in order (None when nothing is in flight)."""
        return self._order[0] if self._order else None

    def arrived(self, seq: int, value: V) -> None:
        """Record the result of ``seq`` (in any order)."""
        self._arrived[seq] = value

    def pop_ready(self) -> tuple[int, V] | None:
        """The head's ``(seq, result)`` if it has arrived, else None."""
        if not self._order:
            return None
        seq = self._order[0]
        value = self._arrived.pop(seq, _MISSING)
        if value is _MISSING:
            return None
        self._order.popleft()
        return seq, value

    def pop_any(self, seq: int) -> V:
        """Take the result of ``seq`` out of order (``in_order=False``)."""
        self._order.remove(seq)
        return self._arrived.pop(seq)

    def clear(self) -> list[V]:
        """Forget everything in flight; return the results that had arrived (to release)."""
        values = list(self._arrived.values())
        self._order.clear()
        self._arrived.clear()
        return values

    def __repr__(self) -> str:
        return f"Window(limit={self.limit}, in_flight={len(self._order)})"
