"""Public conformance checks for checkpointing, for our tests and for users' own sources.

:func:`check_resume` builds loaders with a factory, runs an uninterrupted reference, then stops
at every batch boundary of an epoch (and at the edges: before ``iter()``, right after it, inside
the last batch, after the epoch ended, a second stop within the resumed epoch), saves the state,
sends it through JSON, restores it into a fresh loader and compares everything that follows with
the reference, batch for batch, over the next epochs too::

    from minibatcher import DataLoader
    from minibatcher.testing import check_resume

    check_resume(lambda: DataLoader(MyDataset(), batch_size=8, shuffle=True, seed=0))

The factory must build the same loader every time (same data, arguments and seed). Cost: for an
epoch of ``B`` batches, about ``B**2 / (2 * every)`` batches are loaded: keep the data small.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["ResumeReport", "check_resume", "same_batches"]


@dataclasses.dataclass(frozen=True)
class ResumeReport:
    """What :func:`check_resume` checked: the epoch's batch count and the stops it restored."""

    batches_per_epoch: int
    stops: tuple[str, ...]
    largest_state_bytes: int

    def __str__(self) -> str:
        return (
            f"resume checked at {len(self.stops)} stops over an epoch of "
            f"{self.batches_per_epoch} batches (largest state: {self.largest_state_bytes} bytes)"
        )


def check_resume(make_loader: Callable[[], Any], every: int = 1, epochs: int = 2) -> ResumeReport:
    """Check that a restored loader continues exactly like an uninterrupted one.

    Args:
        make_loader: builds a fresh, identical loader on each call (fix ``seed``).
        every: stop at every ``every``-th batch boundary (1: all of them).
        epochs: how many epochs the comparison covers (the stop is always in the first).

    Returns:
        A :class:`ResumeReport`. Raises ``AssertionError`` naming the stop and the first batch
        that differs.
    """
    if every < 1:
        raise ValueError(f"every must be a positive int, got {every!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    first = make_loader()
    reference = _run_epochs(first, epochs)
    # in_order=False: batches arrive in any order, each exactly once; compare each epoch's
    # batches as a multiset, not their arrival order.
    # (the core's options.in_order; minibatcher.torch.DataLoader's in_order attribute)
    in_order = getattr(getattr(first, "options", first), "in_order", True)
    unordered = in_order is False
    _close(first)
    count = len(reference[0])
    expected_all = [b for epoch in reference for b in epoch]
    lengths = [len(epoch) for epoch in reference] if unordered else None

    stops: list[str] = []
    sizes = [0]
    shapes: list[Any] = []

    def restore(state: dict[str, Any]) -> Any:
        text = json.dumps(state)
        sizes[0] = max(sizes[0], len(text))
        shapes.append(_shape(state))
        if shapes[0] != shapes[-1]:
            raise AssertionError(
                f"the state's structure changed during the epoch: {shapes[0]} became {shapes[-1]}"
            )
        loader = make_loader()
        loader.load_state_dict(json.loads(text))
        return loader

    # Before any iter(): the whole run.
    fresh = make_loader()
    state = fresh.state_dict()
    start_epoch = _epoch(state)
    _close(fresh)

    def rest_of_run(resumed: Any, state: dict[str, Any]) -> list[Any]:
        """The batches of the epochs a restored loader still owes (a state taken at the last
        batch of an epoch already points at the next one)."""
        left = epochs - (_epoch(state) - start_epoch)
        return [b for epoch in _run_epochs(resumed, left) for b in epoch]

    before = restore(state)
    _compare("before iter()", _run_epochs(before, epochs), reference, unordered)
    stops.append("before iter()")
    _close(before)
    boundaries = sorted(set(range(0, count + 1, every)) | {count})
    for k in boundaries:
        loader = make_loader()
        it = iter(loader)
        got = list(itertools.islice(it, k))
        state = loader.state_dict()
        _close(it, loader)  # the state is all a restart has: the saving loader is gone
        name = f"after {k} of {count} batches" + (" (inside the last batch)" if k == count else "")
        resumed = restore(state)
        rest = rest_of_run(resumed, state)
        _close(resumed)
        _compare_flat(name, got + rest, expected_all, lengths)
        stops.append(name)
        if 0 < k < count:  # a second stop within the resumed epoch
            first = restore(state)
            it_first = iter(first)
            one = list(itertools.islice(it_first, 1))
            state2 = first.state_dict()
            _close(it_first, first)
            again = restore(state2)
            tail = rest_of_run(again, state2)
            _close(again)
            name2 = f"{name}, then 1 more, stopped again"
            _compare_flat(name2, got + one + tail, expected_all, lengths)
            stops.append(name2)
    # After the epoch ended: the restored loader starts the next epoch.
    loader = make_loader()
    for _ in loader:
        pass
    state = loader.state_dict()
    _close(loader)
    resumed = restore(state)
    _compare("after the epoch ended", _run_epochs(resumed, epochs - 1), reference[1:], unordered)
    stops.append("after the epoch ended")
    _close(resumed)
    return ResumeReport(count, tuple(stops), sizes[0])


def _epoch(state: Mapping[str, Any]) -> int:
    """The epoch a state resumes in: the core loader's ``state["loader"]["epoch"]``, or
    ``state["epoch"]`` (``minibatcher.torch.DataLoader``: the number of its iteration)."""
    loader = state.get("loader")
    return int(loader["epoch"] if isinstance(loader, Mapping) else state.get("epoch", 0))


def _close(*loaders: Any) -> None:
    """Stop abandoned iterators and release workers (persistent ones too) of loaders."""
    for loader in loaders:
        close = getattr(loader, "close", None)
        if callable(close):
            close()


def _run_epochs(loader: Any, epochs: int) -> list[list[Any]]:
    return [list(loader) for _ in range(epochs)]


def _compare(
    where: str, got: list[list[Any]], expected: list[list[Any]], unordered: bool = False
) -> None:
    if len(got) != len(expected):
        raise AssertionError(f"resume {where}: {len(got)} epochs, expected {len(expected)}")
    for e, (g, x) in enumerate(zip(got, expected, strict=False)):
        _compare_flat(f"{where}, epoch +{e}", g, x, [len(x)] if unordered else None)


def _compare_flat(
    where: str, got: list[Any], expected: list[Any], epochs: list[int] | None = None
) -> None:
    """Batch by batch; with ``epochs`` (the epochs' lengths, for in_order=False), each epoch's
    batches as a multiset: the same batches, each as often, in any order."""
    if epochs is not None and len(got) == len(expected):
        start = 0
        for e, length in enumerate(epochs):
            chunk = slice(start, start + length)
            _same_multiset(f"{where}, epoch +{e}", got[chunk], expected[chunk])
            start += length
        return
    for i, (g, x) in enumerate(zip(got, expected, strict=False)):
        if not same_batches(g, x):
            raise AssertionError(
                f"resume {where}: batch {i} differs from the uninterrupted run:\n"
                f"  got      {_show(g)}\n  expected {_show(x)}"
            )
    if len(got) != len(expected):
        raise AssertionError(
            f"resume {where}: {len(got)} batches in all, the uninterrupted run gave {len(expected)}"
        )


def _same_multiset(where: str, got: list[Any], expected: list[Any]) -> None:
    left = list(got)
    for x in expected:
        match = next((i for i, g in enumerate(left) if same_batches(g, x)), None)
        if match is None:
            raise AssertionError(
                f"resume {where}: batch {_show(x)} of the uninterrupted run is missing"
                f"{' (or delivered twice)' if len(left) == 1 else ''}"
            )
        del left[match]
    if left:
        raise AssertionError(f"resume {where}: extra batch {_show(left[0])}")


def same_batches(a: Any, b: Any) -> bool:
    """Deep equality of two batches: arrays, tensors, mappings, sequences, dataclasses."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        nan = a.dtype.kind in "fc"
        return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b, nan))
    if hasattr(a, "numpy") and hasattr(a, "shape") and hasattr(a, "dtype"):  # a tensor
        if a.dtype != b.dtype:
            return False
        a, b = a.detach().cpu(), b.detach().cpu()
        try:
            return same_batches(a.numpy(), b.numpy())
        except TypeError:  # a dtype NumPy lacks (bfloat16, float8): compared as float64
            return same_batches(a.double().numpy(), b.double().numpy())
    if isinstance(a, Mapping):
        return a.keys() == b.keys() and all(same_batches(a[k], b[k]) for k in a)
    if dataclasses.is_dataclass(a) and not isinstance(a, type):  # no astuple: it deep-copies
        return all(
            same_batches(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_batches(x, y) for x, y in zip(a, b, strict=False))
    return bool(a == b)


def _shape(state: Any) -> Any:
    """The nested keys of a state (its values may change, its structure may not)."""
    if isinstance(state, Mapping):
        return {k: _shape(v) for k, v in state.items() if k != "source"}
    return type(state).__name__ if not isinstance(state, (int, float)) else "number"


def _show(batch: Any) -> str:
    text = repr(batch.tolist() if isinstance(batch, np.ndarray) else batch)
    return text if len(text) <= 200 else text[:200] + "..."
