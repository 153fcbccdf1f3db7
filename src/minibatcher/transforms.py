"""Per-item and per-batch transforms, with reproducible randomness.

A transform that declares a parameter named ``rng`` receives a NumPy Generator seeded from
``(seed, epoch, index)`` (items) or ``(seed, epoch, batch number)`` (batches): random
augmentation is then the same whatever the number of workers, their kind, or a resume point.
Transforms without ``rng`` are called with the item alone, at no extra cost.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ._seed import BATCH_STREAM, ITEM_STREAM, generator


def takes_rng(fn: Callable[..., Any] | None) -> bool:
    """Whether ``fn`` declares a parameter named ``rng``."""
    if fn is None:
        return False
    try:
        return "rng" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def item_rng(seed: int, epoch: int, index: int) -> Any:
    """The RNG a per-item transform receives for the item at ``index`` in ``epoch``."""
    return generator(seed, epoch, ITEM_STREAM, index)


def batch_rng(seed: int, epoch: int, batch_number: int) -> Any:
    """The RNG a per-batch transform receives for batch ``batch_number`` of ``epoch``."""
    return generator(seed, epoch, BATCH_STREAM, batch_number)
