"""What every source on disk is held to: exactly once per epoch in every configuration (no
workers, threads, two processes, two ranks), the same batches in all of them, exact resume."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from minibatcher import DataLoader
from minibatcher.testing import check_resume, same_batches

CONFIGS: tuple[dict[str, Any], ...] = (
    {"num_workers": 0},
    {"num_workers": 2, "worker_type": "thread"},
    {"num_workers": 2, "worker_type": "process", "mp_context": "fork"},
)


def epoch(data: Any, **kwargs: Any) -> list[Any]:
    with DataLoader(data, **kwargs) as dl:
        return list(dl)


def check_exactly_once(
    data: Any, ids: Callable[[Any], list[Any]], expected: list[Any], **kwargs: Any
) -> list[Any]:
    """Every config delivers the same batches, whose item ids are ``expected``, each once;
    two ranks (``uneven="allow"``) split them, each id on exactly one rank."""
    kwargs.setdefault("seed", 0)
    reference = epoch(data, **kwargs)
    got = [i for batch in reference for i in ids(batch)]
    assert sorted(got) == sorted(expected), "an epoch must deliver every item exactly once"
    for config in CONFIGS[1:]:
        other = epoch(data, **kwargs, **config)
        assert len(other) == len(reference), config
        assert all(same_batches(a, b) for a, b in zip(other, reference, strict=True)), config
    ranks = [
        [i for b in epoch(data, shard=(r, 2), uneven="allow", **kwargs) for i in ids(b)]
        for r in range(2)
    ]
    assert not set(ranks[0]) & set(ranks[1]), "two ranks must not share an item"
    assert sorted(ranks[0] + ranks[1]) == sorted(expected)
    return reference


def check_exact_resume(data: Any, **kwargs: Any) -> None:
    """Restore at every batch boundary and compare with the uninterrupted run (2 epochs).

    ``data`` is the data, or a function making it afresh for each loader (for data that keeps
    its own reading state, such as an IterableDataset)."""
    kwargs.setdefault("seed", 0)
    make = data if callable(data) and not hasattr(data, "__len__") else lambda: data
    check_resume(lambda: DataLoader(make(), **kwargs))
