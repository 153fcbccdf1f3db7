"""Transport: running the batch work inline, in threads or in processes (see ``executor.py``)."""

from __future__ import annotations

from .executor import Executor, InlineExecutor, Result, Task

__all__ = ["Executor", "InlineExecutor", "Result", "Task"]
