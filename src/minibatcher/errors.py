"""The exceptions minibatcher raises.

Every exception derives from :class:`MinibatcherError` and also from the builtin that fits, so
code that catches ``ValueError`` or ``TypeError`` keeps working::

    MinibatcherError
    ├── ConfigError(ValueError)     a wrong argument, raised at construction
    ├── CollateError(TypeError)     items that cannot be put into one batch
    ├── StateError(ValueError)      a checkpoint that does not fit this loader
    └── WorkerError(RuntimeError)   a worker died or could not start
"""

from __future__ import annotations


class MinibatcherError(Exception):
    """Base class of every error raised by minibatcher."""


class ConfigError(MinibatcherError, ValueError):
    """A constructor argument is wrong: the message names the argument, the rule and the value."""


class CollateError(MinibatcherError, TypeError):
    """The items of a batch cannot be collated: the message names the field path and the types."""


class StateError(MinibatcherError, ValueError):
    """A state dict does not match the loader it is loaded into: the message names the mismatch."""


class WorkerError(MinibatcherError, RuntimeError):
    """A worker died (killed, crashed, exited) or could not be started.

    Attributes:
        worker_id: the id of the worker (0-based), or None if not known.
        exitcode: the process exit code; negative values are the signal that killed it.
    """

    def __init__(
        self, message: str, worker_id: int | None = None, exitcode: int | None = None
    ) -> None:
        super().__init__(message)
        self.worker_id = worker_id
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[type[WorkerError], tuple[str, int | None, int | None]]:
        return (type(self), (str(self), self.worker_id, self.exitcode))
