"""CompactSequence: the compact copy of a large list that process workers read (sources/compact.py).
Arrays are stored as raw bytes (dtype, byte order and shape kept), other items as pickles; the
copy is refreshed to the list's current items before each epoch."""

from __future__ import annotations

import pickle
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest

from minibatcher.sources.compact import CompactSequence


def assert_items_equal(got: list[Any], ref: list[Any]) -> None:
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        assert type(g) is type(r)
        if isinstance(r, np.ndarray):
            assert g.dtype.str == r.dtype.str
            assert g.shape == r.shape
            assert g.tolist() == r.tolist() if r.dtype.hasobject else g.tobytes() == r.tobytes()
            assert g.flags.writeable
            assert not np.shares_memory(g, r)
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
    assert compact.kinds.tolist() == [1] * 8 + [0] * 6  # 0: protocol-3 pickles (spliced)
    assert_items_equal([compact[i] for i in range(len(items))], items)
    picked = [13, 1, 1, 10]
    assert_items_equal(compact.__getitems__(picked), [items[i] for i in picked])
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
    copied = pickle.loads(pickle.dumps(compact))
    assert_items_equal(copied.__getitems__([0, 5]), [items[0], items[5]])


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


def test_an_unpicklable_item_added_later_drops_the_compact_copy(monkeypatch: Any) -> None:
    """The list is then read as it is (refresh_source says so; the caller compacts anew)."""
    from minibatcher.sources import compact as compact_module
    from minibatcher.sources.sequence import SequenceSource

    monkeypatch.setattr(compact_module, "COMPACT_MIN_ITEMS", 10)
    data: list[Any] = [{"i": i} for i in range(20)]
    source = SequenceSource(data)
    compacted = compact_module.compact_source(source)
    assert compacted is not None
    data.append(lambda: 0)
    assert not compact_module.refresh_source(compacted, source)
    assert compact_module.compact_source(source) is None


def test_records_round_trip_with_exact_types_and_bits() -> None:
    """Flat dicts of scalars are stored by columns and come back equal, same key order, same
    exact types (a bool stays a bool), floats bit for bit, any str (lone surrogates too)."""
    from minibatcher.sources.compact_records import CompactRecords

    rows = [
        {"i": k - 2**62, "f": [-0.0, float("nan"), 1e308, 0.1][k % 4], "b": k % 2 == 0,
         "s": ["", "é", "\ud800", "日本", "plain"][k % 5], "raw": bytes([k % 256]) * (k % 3),
         "none": None}
        for k in range(30)
    ]
    records = CompactRecords.encode(rows)
    assert records is not None
    for got, ref in zip(records.__getitems__(list(range(30))), rows, strict=True):
        assert list(got) == list(ref)
        assert [type(v) for v in got.values()] == [type(v) for v in ref.values()]
        assert np.float64(got["f"]).tobytes() == np.float64(ref["f"]).tobytes()
        assert {k: v for k, v in got.items() if k != "f"} == {
            k: v for k, v in ref.items() if k != "f"}
    assert records[-1]["i"] == rows[-1]["i"]
    assert records.__getitems__([-30, 29])[0]["i"] == rows[0]["i"]
    assert pickle.loads(pickle.dumps(records))[3]["s"] == rows[3]["s"]
    with pytest.raises(IndexError, match="index 30 is out of bounds"):
        records[30]
    with pytest.raises(IndexError, match="index -31 is out of bounds"):
        records.__getitems__([0, -31])


@pytest.mark.parametrize(
    "rows",
    [
        [{"a": 1}, {"a": 2.0}],  # a column of two types
        [{"a": 1}, {"a": True}],
        [{"a": 1}, {"a": 2**63}],  # beyond int64
        [{"a": 1, "b": 2}, {"b": 2, "a": 1}],  # another key order
        [{"a": 1}, {"a": 1, "b": 2}],
        [{1: 1}, {1: 2}],  # keys that are not str
        [{"a": [1]}, {"a": [2]}],  # a value that is not a scalar
        [{"a": 1}, OrderedDict(a=2)],  # not exactly a dict
        [],
    ],
)
def test_lists_that_are_not_records_are_refused(rows: list[Any]) -> None:
    """They are stored as pickles instead (CompactRecords.encode says None)."""
    from minibatcher.sources.compact_records import CompactRecords

    assert CompactRecords.encode(rows) is None


def test_records_refresh_sees_values_set_in_place_and_gives_up_when_no_longer_records() -> None:
    from minibatcher.sources.compact_records import CompactRecords

    rows: list[Any] = [{"id": i, "name": f"n{i}"} for i in range(20)]
    records = CompactRecords.encode(rows)
    assert records is not None
    rows[3]["name"] = "changed"
    rows.append({"id": 20, "name": "appended"})
    assert records.refresh(rows)
    assert records.__getitems__([3, 20]) == [rows[3], rows[20]]
    rows[4]["id"] = None
    assert not records.refresh(rows)


def test_tuple_and_scalar_rows_are_stored_by_columns_and_checked_by_identity() -> None:
    from minibatcher.sources.compact_records import CompactRecords

    pairs: list[Any] = [(f"img/{i}.png", i % 7, i % 2 == 0) for i in range(30)]
    names: list[Any] = [f"file-{i}" for i in range(30)]
    for rows in (pairs, names):
        records = CompactRecords.encode(rows)
        assert records is not None
        got = records.__getitems__([5, 0, -1])
        assert got == [rows[5], rows[0], rows[-1]]
        assert [type(x) for x in got] == [type(rows[0])] * 3
        assert records.refresh(rows)  # unchanged: identity only
        rows[4] = rows[4] + "!" if isinstance(rows[4], str) else ("new", 1, True)
        rows.append(rows[1])
        assert records.refresh(rows)
        assert records.__getitems__(list(range(len(rows)))) == rows
    assert CompactRecords.encode([(1, 2), (1, 2, 3)]) is None
    assert CompactRecords.encode([(1, [2])]) is None
    assert CompactRecords.encode([1, "a"]) is None


class NeedsProtocol4:
    """An item that protocol 3 cannot pickle: stored with protocol 5, unpickled alone."""

    def __reduce_ex__(self, protocol: Any) -> Any:
        if protocol < 4:
            raise pickle.PicklingError("needs protocol 4")
        return (NeedsProtocol4, ())

    def __eq__(self, other: object) -> bool:
        return type(other) is NeedsProtocol4

    __hash__ = object.__hash__


def test_a_batch_of_pickles_is_unpickled_in_one_piece_and_keeps_shared_references() -> None:
    """NOTE [ One unpickling per batch ]: protocol-3 bodies spliced into one list pickle; an
    item's internal sharing and cycles survive; protocol-5 items are decoded one by one."""
    from minibatcher.sources import compact as compact_module

    shared = [1, 2]
    cyclic: list[Any] = ["x"]
    cyclic.append(cyclic)
    items: list[Any] = [{"a": shared, "b": shared}, cyclic, {"k": {"n": [3]}},
                        NeedsProtocol4(), np.arange(3), "s"]
    compact = CompactSequence(items)
    kinds = compact.kinds.tolist()
    assert kinds == [compact_module.PICKLED] * 3 + [compact_module.PICKLED5,
                                                    compact_module.RAW, compact_module.PICKLED]
    spliced = compact.__getitems__([0, 1, 2, 5, 0])
    assert spliced[0] == items[0]
    assert spliced[0]["a"] is spliced[0]["b"]
    assert spliced[1][1] is spliced[1]
    assert spliced[1][0] == "x"
    assert spliced[2] == items[2]
    assert spliced[3] == "s"
    assert spliced[4] == items[0]
    assert spliced[4]["a"] is not spliced[0]["a"]  # items stay independent of each other
    mixed = compact.__getitems__([3, 4, 0])
    assert mixed[0] == items[3]
    assert mixed[1].tolist() == [0, 1, 2]
    assert mixed[2] == items[0]
