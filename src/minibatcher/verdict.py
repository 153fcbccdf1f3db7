"""The one-line verdict of ``dl.stats``: is the training loop waiting for data, and what helps.

In: the consumer's time waiting for batches and working between them, the stage times, and
:class:`LoaderFacts` (the loader's configuration). Out: a sentence that starts with
``loader-bound`` or ``compute-bound`` and ends with the suggestion that fits. State: none.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from .work import STAGES

SAMPLE_NOTE = "a sample of batches is timed"
CHEAP_BATCH_S = 100e-6
"""Batches loaded faster than this are too cheap for workers to speed up."""
LOADER_BOUND_SHARE = 0.10
"""The consumer waiting more than this share of its time makes the loop loader-bound."""


@dataclasses.dataclass(frozen=True)
class LoaderFacts:
    """What the verdict needs to know about the loader's configuration."""

    num_workers: int
    worker_type: str
    prefetch: int
    fast_path: bool
    batched_source: bool
    has_transform: bool
    torch_facade: bool = False
    """``minibatcher.torch.DataLoader``'s: torch's arguments only (no ``worker_type``, no
    ``num_workers="auto"``), so the advice names only those."""

    @classmethod
    def of(cls, options: Any, work: Any) -> LoaderFacts:
        """The facts of a loader's options (``num_workers="auto"`` resolved) and its work."""
        source = getattr(work, "source", None)
        return cls(
            num_workers=options.num_workers if isinstance(options.num_workers, int) else 0,
            worker_type=options.worker_type,
            prefetch=options.prefetch,
            fast_path=bool(getattr(work, "fast_path", False)),
            batched_source=bool(getattr(source, "batched", False)),
            has_transform=options.transform is not None,
        )


def verdict(
    waiting: float,
    between: float,
    stages: Mapping[str, float],
    facts: LoaderFacts,
    batches: int = 0,
) -> str:
    """One line: is the training loop waiting for data, and what would help.

    ``waiting`` and ``between`` are the consumer's seconds blocked in ``next()`` and busy
    between requests over ``batches`` batches; ``stages`` the estimated seconds per stage.
    """
    total = waiting + between
    if total <= 0:
        return f"not enough batches yet to judge ({SAMPLE_NOTE})"
    share = waiting / total
    if share < LOADER_BOUND_SHARE:
        tail = (
            f"; {facts.num_workers} workers could be fewer to leave CPU to the model"
            if facts.num_workers > 1 and share < LOADER_BOUND_SHARE / 4
            else ""
        )
        return f"compute-bound: the loop waits for data {share:.0%} of the time{tail}"
    head = f"loader-bound: the loop waits for data {share:.0%} of the time; "
    per_batch = waiting / batches if batches else float("inf")
    if per_batch < CHEAP_BATCH_S and facts.num_workers == 0:
        return head + (
            f"but a batch takes only {per_batch * 1e6:.0f} us to load: the loop does almost "
            "nothing per batch, and workers would not make batches this cheap any faster"
        )
    if facts.batched_source and not facts.fast_path and facts.has_transform:
        return head + (
            "the per-item transform turns off the batched fast path: move it to batch_transform"
        )
    if facts.num_workers == 0:
        cpus = os.cpu_count() or 1
        if cpus > 1 and facts.torch_facade:
            return head + f"try num_workers={cpus}"
        if cpus > 1:
            return head + (
                f"try num_workers={cpus} (or num_workers='auto'); worker_type='thread' suits "
                "work that releases the GIL (NumPy, I/O)"
            )
        return head + "this machine has one CPU: make fetch and transforms cheaper"
    transport = stages.get("transport", 0.0)
    work = sum(stages.get(name, 0.0) for name in STAGES)
    if transport > work and facts.worker_type == "process" and not facts.torch_facade:
        return head + "moving batches dominates: try worker_type='thread' or fewer, larger items"
    prefetch = "prefetch_factor" if facts.torch_facade else "prefetch"
    return head + (
        f"raise num_workers (now {facts.num_workers}) or {prefetch} (now {facts.prefetch})"
    )
