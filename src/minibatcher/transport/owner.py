"""The lifecycle of a loader that may keep persistent workers: ``close()``, ``with``, and a
fallback in ``__del__``; shared by ``minibatcher.DataLoader`` and ``minibatcher.torch.DataLoader``.

In: the owner's ``_release_workers()`` (by default: close the executor held in ``_workers``).
Out: the persistent workers closed once (see NOTE [ Shutdown ] in ``processes.py``). State: none
of its own.
"""

from __future__ import annotations

from typing import Any, TypeVar

Owner = TypeVar("Owner", bound="WorkersOwner")


class WorkersOwner:
    """Mixin: ``close()`` stops the persistent workers (those held in ``self._workers``, unless
    the owner overrides ``_release_workers``)."""

    _workers: Any = None  # the persistent workers' executor, while alive

    def _release_workers(self) -> None:
        """Close the persistent workers, if any; safe on a half-constructed owner."""
        workers = self.__dict__.get("_workers")
        if workers is not None:
            self._workers = None
            workers.close()

    def close(self) -> None:
        """Stop persistent workers and release their shared memory (idempotent).

        Iterators close their own workers when they end; call this (or use ``with``) when
        ``persistent_workers=True``. A loader that is garbage-collected closes itself too.
        """
        self._release_workers()

    def __enter__(self: Owner) -> Owner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A fallback only (see NOTE [ Shutdown ] in transport/processes.py): close() is the way.
        self._release_workers()
