"""Exceptions that cross the process boundary with their traceback.

A worker that raises sends a :class:`RemoteError` instead of a batch: the exception itself
(pickled, when it can be), its type and message (to rebuild it when it cannot), the formatted
traceback of the worker and its notes (which name the batch and the failing index, see
``work.py``). The main process re-raises an exception of the *same type* with the worker's
traceback chained as its cause, so ``except ValueError`` keeps working and the report shows
where in the worker it failed::

    RemoteTraceback: the worker's traceback + notes ("the item at index 7 failed")
      The above exception was the direct cause of:
    ValueError: bad item                     <- same type, raised in the main process
      in worker process 1 (pid 4242)         <- note

Workers that die (no exception to send) are reported by the executor as
:class:`~minibatcher.errors.WorkerError`; see NOTE [ Shutdown ] in ``processes.py``.
"""

from __future__ import annotations

import builtins
import contextlib
import pickle
import signal
import traceback
from typing import Any

from ..errors import WorkerError


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker (shown as the cause)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class WorkerException(RuntimeError):
    """Stands in for a worker's exception whose type cannot be rebuilt in the main process."""


class RemoteError:
    """A picklable record of an exception raised in worker ``worker_id``."""

    def __init__(self, error: BaseException, worker_id: int, where: str) -> None:
        self.worker_id = worker_id
        self.where = where
        self.type_name = f"{type(error).__module__}.{type(error).__qualname__}"
        self.message = str(error)
        self.notes = [str(n) for n in getattr(error, "__notes__", ())]
        self.traceback = "".join(
            traceback.format_exception(type(error), error, error.__traceback__)
        )
        try:
            self.pickled: bytes | None = pickle.dumps(error, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            self.pickled = None

    def rebuild(self) -> BaseException:
        """The exception to raise in the main process: same type where possible."""
        error = self._unpickle() or self._by_name() or WorkerException(
            f"{self.type_name}: {self.message}"
        )
        cause = RemoteTraceback(
            f"\n\nTraceback in {self.where}:\n{self.traceback.rstrip()}"
            + "".join(f"\n{n}" for n in self.notes if n not in self.traceback)
        )
        error.__cause__ = cause
        note = f"raised in {self.where} (the cause above is its traceback there)"
        add_note = getattr(error, "add_note", None)
        if add_note is not None:
            if note not in getattr(error, "__notes__", ()):
                add_note(note)
        else:  # Python 3.10: keep the notes as an attribute; the cause's text shows them
            setattr(error, "__notes__", [*getattr(error, "__notes__", []), note])  # noqa: B010
        return error

    def _unpickle(self) -> BaseException | None:
        if self.pickled is None:
            return None
        try:
            error = pickle.loads(self.pickled)
        except Exception:
            return None
        return error if isinstance(error, BaseException) else None

    def _by_name(self) -> BaseException | None:
        module, _, name = self.type_name.rpartition(".")
        kind = getattr(builtins, name, None) if module == "builtins" else None
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            return None
        try:
            error: BaseException = kind(self.message)
        except Exception:
            return None
        if self.notes:
            setattr(error, "__notes__", list(self.notes))  # noqa: B010
        return error

    def __repr__(self) -> str:
        return f"RemoteError({self.type_name}: {self.message!r}, worker={self.worker_id})"


def note_failure(error: BaseException, work: Any, task: Any) -> None:
    """Python 3.10: record which batch and index failed in ``error.__notes__``.

    ``BatchWork`` adds that note itself through ``add_note`` (Python >= 3.11); 3.10 has no
    ``add_note``, so the workers add it here, and the main process shows it with the worker's
    traceback (see :meth:`RemoteError.rebuild`).
    """
    if hasattr(error, "add_note") or getattr(error, "__notes__", None):
        return
    describe = getattr(work, "_describe_failure", None)
    if callable(describe):
        with contextlib.suppress(Exception):
            setattr(error, "__notes__", [describe(task)])  # noqa: B010


def capture(error: BaseException, worker_id: int, where: str) -> RemoteError:
    """Record ``error`` raised in a worker so it can be re-raised in the main process."""
    return RemoteError(error, worker_id, where)


def reraise(remote: Any) -> BaseException:
    """The exception to ``raise`` for a received :class:`RemoteError`."""
    return remote.rebuild()


def dead_worker_error(wid: int, pid: int | None, code: int | None) -> WorkerError:
    """The error for worker ``wid`` that died with exit code ``code`` (negative: a signal)."""
    if code is None:
        how = "closed its result pipe but is still running"
    elif code < 0:
        try:
            how = f"was killed by signal {signal.Signals(-code).name} (exit code {code})"
        except ValueError:
            how = f"was killed by signal {-code} (exit code {code})"
    else:
        how = f"exited unexpectedly with exit code {code}"
    return WorkerError(
        f"DataLoader worker {wid} (pid {pid}) {how}. If it was killed for lack of memory, "
        "use fewer workers or a smaller prefetch; a crash in native code shows in its stderr.",
        worker_id=wid,
        exitcode=code,
    )


def start_error(method: str, explicit: bool, error: BaseException) -> WorkerError:
    """The error for workers that could not be started (typically: the work is unpicklable)."""
    how = "as requested" if explicit else "chosen by default"
    return WorkerError(
        f"could not start worker processes with start method {method!r} ({how}): "
        f"{type(error).__name__}: {error}. Under 'spawn' and 'forkserver' the dataset, "
        "transforms and collate_fn are pickled to each worker; make them picklable (no "
        "lambdas or local functions, no open files or locks), or pass mp_context='fork' "
        "(Linux), or use worker_type='thread'."
    )
