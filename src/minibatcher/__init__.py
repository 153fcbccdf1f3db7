"""minibatcher: fast, exact mini-batch loading for ML training loops.

Any collection in, batches out; every epoch's order a pure function of (seed, epoch).
"""

from __future__ import annotations

from . import samplers
from .collation import Collator, collate, pad_collate
from .errors import CollateError, ConfigError, MinibatcherError, StateError, WorkerError
from .loader import DataLoader
from .profile import LoaderStats
from .transport.worker_info import WorkerInfo, get_worker_info

__version__ = "0.1.0"

__all__ = [
    "CollateError",
    "Collator",
    "ConfigError",
    "DataLoader",
    "LoaderStats",
    "MinibatcherError",
    "StateError",
    "WorkerError",
    "WorkerInfo",
    "__version__",
    "collate",
    "get_worker_info",
    "pad_collate",
    "samplers",
]
