"""A compacted list changed in place between epochs: non-persistent process workers see each
epoch the list as it is at ``iter()``, as with num_workers=0 (NOTE [ Compact copies stay
current ] in sources/compact.py). Before, the copy was refreshed by item identity only, and an
item mutated in place (same identity) was served stale."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from minibatcher import DataLoader
from minibatcher.sources import compact as compact_module
from minibatcher.sources.compact_records import CompactRecords
from minibatcher.transport.factory import process_work

pytestmark = pytest.mark.timeout(60)

N = 60


def _set(container: Any, key: Any, value: Any) -> None:
    container[key] = value


# name: (make the list, change item 7 in place, whether the list is stored as records)
CASES: dict[str, tuple[Callable[[], list[Any]], Callable[[list[Any]], None], bool]] = {
    "records: dict value set": (
        lambda: [{"id": i, "label": i % 3, "name": f"n{i}"} for i in range(N)],
        lambda data: _set(data[7], "label", 99),
        True,
    ),
    "records: int set to an equal float": (
        lambda: [{"id": i, "w": i} for i in range(N)],
        lambda data: _set(data[7], "w", 7.0),
        True,
    ),
    "records: key added": (
        lambda: [{"id": i, "name": f"n{i}"} for i in range(N)],
        lambda data: _set(data[7], "extra", [1, 2]),
        True,
    ),
    "dict value set": (
        lambda: [{"id": i, "tags": [i]} for i in range(N)],
        lambda data: _set(data[7], "id", -7),
        False,
    ),
    "list appended": (
        lambda: [[i, str(i)] for i in range(N)],
        lambda data: data[7].append("new"),
        False,
    ),
    "nested container changed": (
        lambda: [(i, {"a": {"b": [i, i]}}) for i in range(N)],
        lambda data: _set(data[7][1]["a"]["b"], 0, -1),
        False,
    ),
    "array written into": (  # three levels deep: the list is compacted (arrays stored raw)
        lambda: [{"a": {"b": {"c": np.arange(3) + i}}} for i in range(N)],
        lambda data: _set(data[7]["a"]["b"]["c"], 0, -1),
        False,
    ),
}


def _plain(value: Any) -> Any:
    """``value`` with arrays as lists and containers' types kept, for comparing epochs."""
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.tolist())
    if isinstance(value, dict):
        return ("dict", [(k, _plain(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_plain(v) for v in value])
    return (type(value).__name__, value)


def _epoch(loader: DataLoader) -> list[Any]:
    return [_plain(item) for batch in loader for item in batch]


@pytest.mark.parametrize("case", list(CASES))
def test_an_item_changed_in_place_is_seen_by_the_next_epochs_workers(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make, change, records = CASES[case]
    monkeypatch.setattr(compact_module, "COMPACT_MIN_ITEMS", 50)
    data = make()
    options: dict[str, Any] = {"batch_size": 8, "shuffle": True, "seed": 3, "collate_fn": list}
    inline = DataLoader(data, **options)
    workers = DataLoader(data, num_workers=2, **options)
    compacted = process_work(workers.work).source.data
    assert isinstance(compacted, CompactRecords) == records
    assert _epoch(workers) == _epoch(inline)
    before = _plain(data[7])
    change(data)
    assert _plain(data[7]) != before
    expected = _epoch(inline)
    assert _plain(data[7]) in expected
    assert _epoch(workers) == expected


def test_refresh_reencodes_only_what_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Items that cannot change in place (scalars, strings, tuples of them) are checked by
    identity only; the others are compared by their encoding, and only the changed ones are
    re-encoded (the buffer grows by their bytes alone)."""
    from minibatcher.sources.compact import CompactSequence

    data: list[Any] = [(i, f"s{i}") for i in range(40)] + [[i] for i in range(40)]
    compact = CompactSequence(data)
    size = compact.buffer.nbytes
    compact.refresh(data)
    assert compact.buffer.nbytes == size  # nothing changed: nothing re-encoded
    data[45].append(1)
    compact.refresh(data)
    assert compact.buffer.nbytes == size + len(compact_module.pickle.dumps([5, 1], 3))
    assert compact[45] == [5, 1]
    assert compact.__getitems__([0, 44, 45]) == [data[0], data[44], data[45]]
