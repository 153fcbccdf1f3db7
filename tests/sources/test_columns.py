"""Columnar data: dicts of columns, pandas DataFrames and pyarrow Tables. A batch is a dict of
batched columns, equal to collating the rows one by one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from minibatcher import DataLoader


def batches(data: Any, **kwargs: Any) -> list[Any]:
    return list(DataLoader(data, **kwargs))


def identity(item: Any) -> Any:
    return item


def assert_same_batches(left: list[Any], right: list[Any]) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], np.ndarray):
                assert isinstance(b[key], np.ndarray)
                assert a[key].dtype == b[key].dtype, key
                np.testing.assert_array_equal(a[key], b[key])
            else:
                assert a[key] == b[key], key


def test_dict_of_arrays() -> None:
    data = {"x": np.arange(12, dtype=np.float32).reshape(6, 2), "y": np.arange(6)}
    out = batches(data, batch_size=4)
    assert out[0]["x"].shape == (4, 2)
    assert out[0]["x"].dtype == np.float32
    assert out[1]["y"].tolist() == [4, 5]


def test_dict_of_numeric_lists_gives_arrays() -> None:
    data = {"i": [1, 2, 3], "f": [0.5, 1.5, 2.5], "b": [True, False, True]}
    (batch,) = batches(data, batch_size=3)
    assert batch["i"].dtype == np.int64
    assert batch["f"].dtype == np.float64
    assert batch["b"].dtype == np.bool_
    assert batch["b"].tolist() == [True, False, True]


def test_dict_of_string_lists_gives_lists() -> None:
    data = {"name": ["a", "b", "c", "d"], "id": [1, 2, 3, 4]}
    out = batches(data, batch_size=3)
    assert out[0]["name"] == ["a", "b", "c"]
    assert out[1]["name"] == ["d"]


def test_dict_of_nested_values_collates_each_row() -> None:
    data = {"pair": [(1, "a"), (2, "b"), (3, "c")], "vec": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]}
    (batch,) = batches(data, batch_size=3)
    ids, letters = batch["pair"]
    assert ids.tolist() == [1, 2, 3]
    assert letters == ["a", "b", "c"]
    assert [v.tolist() for v in batch["vec"]] == [[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]


@pytest.mark.parametrize(
    "data",
    [
        {"x": np.arange(5), "s": list("abcde"), "f": [0.1, 0.2, 0.3, 0.4, 0.5]},
        {"pair": [(i, str(i)) for i in range(5)], "y": list(range(5))},
    ],
    ids=["flat", "nested"],
)
def test_dict_batched_fetch_equals_collating_rows(data: dict[str, Any]) -> None:
    fast = batches(data, batch_size=2, shuffle=True, seed=4)
    rows = batches(data, batch_size=2, shuffle=True, seed=4, transform=identity)
    assert len(fast) == len(rows) == 3
    for a, b in zip(fast, rows, strict=True):
        assert repr(a) == repr(b)


def test_dict_columns_of_unequal_length_are_refused() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        DataLoader({"a": [1, 2, 3], "b": [1, 2]})


def test_dict_with_a_scalar_value_explains_how_dicts_are_read() -> None:
    with pytest.raises(TypeError, match=r"column 'n' is a int.*__len__ and __getitem__"):
        DataLoader({"x": [1, 2], "n": 3})


def test_empty_dict_is_refused() -> None:
    with pytest.raises(ValueError, match="empty dict"):
        DataLoader({})


def test_dataframe_numeric() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": np.arange(5, dtype=np.int32), "b": np.linspace(0, 1, 5)})
    out = batches(frame, batch_size=2)
    assert out[0]["a"].dtype == np.int32
    assert out[0]["b"].dtype == np.float64
    assert np.concatenate([b["a"] for b in out]).tolist() == list(range(5))


def test_dataframe_string_and_object_columns_give_lists() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"s": ["x", "y", "z"], "o": [None, "q", None]})
    (batch,) = batches(frame, batch_size=3)
    assert batch == {"s": ["x", "y", "z"], "o": [None, "q", None]}


def test_dataframe_mixed_matches_row_path() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {"n": range(7), "f": np.arange(7) / 2, "s": [f"r{i}" for i in range(7)], "b": [True] * 7}
    )
    fast = batches(frame, batch_size=3, shuffle=True, seed=9)
    rows = batches(frame, batch_size=3, shuffle=True, seed=9, transform=identity)
    assert_same_batches(fast, rows)
    assert sorted(v for b in fast for v in b["s"]) == sorted(frame["s"])


def test_dataframe_column_names_are_kept() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({0: [1, 2], "b": [3, 4]})
    (batch,) = batches(frame, batch_size=2)
    assert list(batch) == [0, "b"]


def test_pandas_series_is_an_array() -> None:
    pd = pytest.importorskip("pandas")
    out = batches(pd.Series([3.0, 4.0, 5.0]), batch_size=2)
    assert [b.tolist() for b in out] == [[3.0, 4.0], [5.0]]


def test_arrow_table_without_nulls() -> None:
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"i": [1, 2, 3, 4], "f": [0.5, 1.0, 1.5, 2.0], "s": list("abcd")})
    out = batches(table, batch_size=3)
    assert out[0]["i"].dtype == np.int64
    assert out[0]["f"].tolist() == [0.5, 1.0, 1.5]
    assert out[1]["s"] == ["d"]
    rows = batches(table, batch_size=3, transform=identity)
    assert_same_batches(out, rows)


def test_arrow_table_with_nulls() -> None:
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"i": [1, None, 3], "s": ["x", None, "z"], "b": [True, False, True]})
    (batch,) = batches(table, batch_size=3)
    # a nullable numeric column becomes float64 with NaN, as pandas does
    assert batch["i"].dtype == np.float64
    assert batch["i"][0] == 1.0
    assert np.isnan(batch["i"][1])
    assert batch["s"] == ["x", None, "z"]
    assert batch["b"].tolist() == [True, False, True]
    rows = batches(table, batch_size=3, transform=identity)
    assert rows[0]["s"] == batch["s"]
    np.testing.assert_array_equal(rows[0]["i"], batch["i"])


def test_int_column_labels_are_kept() -> None:
    """A dict of columns or a DataFrame with int labels (``pd.DataFrame(ndarray)``) gives batch
    keys 0, 1, as collating its rows would, not "0", "1"."""
    import pandas as pd


    batch = next(iter(DataLoader({0: [1, 2, 3], "b": [4, 5, 6]}, batch_size=2)))
    assert list(batch) == [0, "b"]
    frame = pd.DataFrame(np.arange(6).reshape(3, 2))
    batch = next(iter(DataLoader(frame, batch_size=2)))
    assert list(batch) == [0, 1]
    assert batch[1].tolist() == [1, 3]


def test_a_series_is_read_by_position() -> None:
    """A filtered Series keeps its labels (here 1, 2, 3): items are read by position."""
    import pandas as pd


    series = pd.Series([10, 20, 30, 40])
    series = series[series > 15]
    assert [b.tolist() for b in DataLoader(series, batch_size=2)] == [[20, 30], [40]]


def test_duplicate_column_labels_are_refused_at_construction() -> None:
    """Two columns of one label became one batch key: a DataFrame's merged into a 2-D array,
    an Arrow table's second column silently replaced the first."""
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    frame = pd.DataFrame([[1, 2], [3, 4]], columns=["a", "a"])
    table = pa.Table.from_arrays([pa.array([1, 2]), pa.array([3, 4])], names=["x", "x"])
    for data, label in ((frame, "'a'"), (table, "'x'")):
        with pytest.raises(ValueError, match=rf"duplicate column labels \[{label}\]"):
            DataLoader(data, batch_size=2)


def test_a_series_batches_as_the_same_column_of_a_dataframe() -> None:
    """A text Series gave object arrays with NaN for its gaps, where the same column of a
    DataFrame gives a list with None."""
    pd = pytest.importorskip("pandas")
    for series in (pd.Series(["a", None, "c"]), pd.Series(pd.Categorical(["x", "y", "x"])),
                   pd.Series([1.5, None, 2.0]), pd.Series([1, 2, 3])):
        (alone,) = list(DataLoader(series, batch_size=3))
        (framed,) = list(DataLoader(series.to_frame("c"), batch_size=3))
        assert type(alone) is type(framed["c"])
        if isinstance(alone, list):
            assert alone == framed["c"]
        else:
            assert alone.dtype == framed["c"].dtype
            np.testing.assert_array_equal(alone, framed["c"])
