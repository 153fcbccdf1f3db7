"""Transport: running the batch work inline, in threads or in processes (see ``executor.py``).

``make_executor`` picks the executor for a loader's options; see NOTE [ Shutdown ] in
``processes.py`` for how workers stop, and NOTE [ Shared memory ownership ] in ``shm.py``.
"""

from __future__ import annotations

from .executor import Executor, InlineExecutor, Result, Task
from .factory import choose_start_method, make_executor
from .processes import ProcessExecutor
from .threads import ThreadExecutor
from .worker_info import WorkerInfo, get_worker_info

__all__ = [
    "Executor",
    "InlineExecutor",
    "ProcessExecutor",
    "Result",
    "Task",
    "ThreadExecutor",
    "WorkerInfo",
    "choose_start_method",
    "get_worker_info",
    "make_executor",
]
