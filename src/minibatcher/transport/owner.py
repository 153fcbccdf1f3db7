"""The lifecycle of a loader that may keep persistent workers: ``close()``, ``with``, and a
fallback in ``__del__``; shared by ``minibatcher.DataLoader`` and ``minibatcher.torch.DataLoader``.

In: the owner's ``_workers`` attribute (an executor, or None). Out: the executor closed once
(see NOTE [ Shutdown ] in ``processes.py``). State: none of its own.
"""

from __future__ import annotations

from typing import Any, TypeVar

Owner = TypeVar("Owner", bound="WorkersOwner")


class WorkersOwner:
    """Mixin: ``close()`` stops the persistent workers held in ``self._workers``."""

    _workers: Any = None  # the persistent workers' executor, while alive

    def close(self) -> None:
        """Stop persistent workers and release their shared memory (idempotent).

        Iterators close their own workers when they end; call this (or use ``with``) when
        ``persistent_workers=True``. A loader that is garbage-collected closes itself too.
        """
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.close()

    def __enter__(self: Owner) -> Owner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A fallback only (see NOTE [ Shutdown ] in transport/processes.py): close() is the way.
        workers = self.__dict__.get("_workers")
        if workers is not None:
            workers.close()
