"""CompactSequence: the compact copy of a large list that process workers read (sources/compact.py).
Arrays are stored as raw bytes (dtype, byte order and shape kept), other items as pickles; the
copy is refreshed to the list's current items before each epoch."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from minibatcher.sources.compact import CompactSequence


def assert_items_equal(got: list[Any], ref: list[Any]) -> None:
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        assert type(g) is type(r)
        if isinstance(r, np.ndarray):
            assert g.dtype == r.dtype and g.dtype.str == r.dtype.str and g.shape == r.shape
            assert g.tolist() == r.tolist() if r.dtype.hasobject else g.tobytes() == r.tobytes()
            assert g.flags.writeable and not np.shares_memory(g, r)
        else:
            assert g == r


def mixed_items() -> list[Any]:
    return [
        np.arange(5, dtype=np.int32),
        np.arange(6, dtype=">f8").reshape(2, 3),
        np.array(3.5),
        np.zeros((0, 4), np.uint8),
        np.array([1 + 2j], np.complex64),
        np.array(["ab", "c"]),
        np.array(["2020-01-01"], "datetime64[D]"),
        np.zeros(2, [("x", "<i4"), ("y", ">f4")]),
        np.asfortranarray(np.arange(6).reshape(2, 3)),  # pickled (not C-contiguous)
        np.array([{"a": 1}], dtype=object),  # pickled (objects)
        {"id": 1, "name": "x"},
        (1, "two", 3.0),
        "text",
        None,
    ]


def test_round_trips_arrays_raw_and_other_items_pickled() -> None:
    items = mixed_items()
    compact = CompactSequence(items)
    assert compact.kinds.tolist() == [1] * 8 + [0] * 6
    assert_items_equal([compact[i] for i in range(len(items))], items)
    assert_items_equal(compact.__getitems__([13, 1, 1, 10]), [items[13], items[1], items[1], items[10]])
    assert_items_equal(pickle.loads(pickle.dumps(compact)).__getitems__(list(range(14))), items)


def test_refresh_follows_replaced_added_and_removed_items() -> None:
    """Each epoch sees the list as it is now (identity check, changed items re-encoded)."""
    items: list[Any] = [np.full(3, i, np.int16) for i in range(40)]
    compact = CompactSequence(items)
    items[3] = {"replaced": True}
    items[7] = np.arange(4, dtype=">i8")
    items.append("appended")
    compact.refresh(items)
    assert_items_equal(compact.__getitems__(list(range(len(items)))), items)
    items[7] = np.ones((2, 2, 2, 2), np.float32)  # wider shape than any before
    compact.refresh(items)
    assert_items_equal([compact[i] for i in range(len(items))], items)
    del items[:20]  # shrunk: rebuilt
    compact.refresh(items)
    assert_items_equal([compact[i] for i in range(len(items))], items)
    items.reverse()  # everything moved: rebuilt
    compact.refresh(items)
    assert_items_equal(compact.__getitems__(list(range(len(items)))), items)
    assert_items_equal(pickle.loads(pickle.dumps(compact)).__getitems__([0, 5]), [items[0], items[5]])


def test_lists_of_arrays_are_not_compacted(monkeypatch: Any) -> None:
    """Copy-on-read leaves array buffers shared (a worker copies ~100 bytes an item), so a
    compact copy of arrays would only add a copy of their data and a decode per item."""
    from minibatcher.sources import compact as compact_module
    from minibatcher.sources.sequence import SequenceSource

    monkeypatch.setattr(compact_module, "COMPACT_MIN_ITEMS", 10)
    arrays = [np.arange(i % 64 + 1, dtype=np.int32) for i in range(100)]
    assert compact_module.compact_source(SequenceSource(arrays)) is None
    pairs = [(np.zeros(256, np.float32), i) for i in range(100)]
    assert compact_module.compact_source(SequenceSource(pairs)) is None
    rows = [{"id": i, "name": f"n{i}", "x": np.zeros(2)} for i in range(100)]
    assert compact_module.compact_source(SequenceSource(rows)) is None
    rows = [{"id": i, "name": f"n{i}", "x": [1.5, 2.5]} for i in range(100)]
    assert compact_module.compact_source(SequenceSource(rows)) is not None
