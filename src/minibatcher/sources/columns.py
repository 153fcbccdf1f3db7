"""Columnar sources: a dict of equal-length columns, a pandas DataFrame, a pyarrow Table.

An item is a dict ``{column: value}`` (one row); a batch is ``{column: batched values}``, fetched
with one vectorised take per column. Columns are normalised once, at construction: numeric lists
become NumPy arrays, text and object columns stay Python lists, so the fast path gives exactly
what collating the rows would give. pandas and pyarrow are never imported here: the objects are
recognised by their methods.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._typing import Allocator, IndexArray
from .base import IndexedSource

_PLAIN_LEAVES = (str, bytes, type(None))


class ColumnsSource(IndexedSource):
    """Equal-length named columns (NumPy arrays, torch tensors or lists)."""

    def __init__(self, data: Any, columns: Mapping[Any, Any]) -> None:
        super().__init__(data)
        self.columns = {name: _normalise(col) for name, col in columns.items()}
        lengths = {name: len(col) for name, col in self.columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"data columns must have equal lengths, got {lengths}")
        self._len = next(iter(lengths.values()), 0)
        # The batched fetch equals collating rows when no column holds nested structures.
        self.batched = all(
            not isinstance(col, list) or all(type(v) in _PLAIN_LEAVES for v in col)
            for col in self.columns.values()
        )

    def __len__(self) -> int:
        return self._len

    def fetch_items(self, indices: IndexArray) -> list[Any]:
        columns = self.columns
        return [{name: col[i] for name, col in columns.items()} for i in indices.tolist()]

    def fetch_batch(self, indices: IndexArray, allocate: Allocator | None = None) -> Any:
        return {name: _take(col, indices, allocate) for name, col in self.columns.items()}


def _normalise(column: Any) -> Any:
    """Numeric sequences become arrays; text and objects stay lists; arrays stay as they are."""
    if isinstance(column, np.ndarray):
        if column.dtype == object:
            return column.tolist()
        return column
    if _is_tensor(column):
        return column
    if isinstance(column, (list, tuple, range)):
        values = list(column)
        kinds = {type(v) for v in values}
        if (kinds and kinds <= {int}) or kinds == {float} or kinds == {bool}:
            array = np.asarray(values)
            if array.dtype != object:
                return array
        return values
    if hasattr(column, "__len__") and hasattr(column, "__getitem__"):
        return list(column)
    raise TypeError(
        f"data columns must be arrays, tensors or sequences, got {type(column).__name__}"
    )


def _take(column: Any, indices: IndexArray, allocate: Allocator | None) -> Any:
    if isinstance(column, np.ndarray):
        if allocate is None:
            return column[indices]
        out = allocate((len(indices), *column.shape[1:]), column.dtype)
        np.take(column, indices, axis=0, out=out)
        return out
    if isinstance(column, list):
        return [column[i] for i in indices.tolist()]
    torch = sys.modules["torch"]
    return column.index_select(0, torch.from_numpy(np.ascontiguousarray(indices)))


def _is_tensor(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def dataframe_columns(frame: Any) -> dict[Any, Any]:
    """The columns of a pandas DataFrame: NumPy arrays, or lists for object and text columns.

    In text and object columns a missing value (pandas' NaN or None) becomes None, as Arrow's
    nulls do, so a text column with gaps batches into a list of str and None.
    """
    columns: dict[Any, Any] = {}  # labels kept as they are: pd.DataFrame(array) has 0, 1, ...
    _refuse_duplicates(list(frame.columns), "a DataFrame")
    for name in frame.columns:
        series = frame[name]
        array = series.to_numpy()
        if array.dtype == object:
            values = array.tolist()
            for i in np.flatnonzero(series.isna().to_numpy()).tolist():
                values[i] = None
            columns[name] = values
        else:
            columns[name] = array
    return columns


def arrow_columns(table: Any) -> dict[str, Any]:
    """The columns of a pyarrow Table: NumPy arrays for numeric columns, else lists.

    Integer and float columns with nulls become float64 arrays with NaN for the nulls (as pandas
    and pyarrow's ``to_numpy`` do), so a nullable numeric column still batches into one array.
    """
    columns: dict[str, Any] = {}
    _refuse_duplicates(list(table.column_names), "an Arrow table")
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = str(column.type)
        numeric = kind.startswith(("int", "uint", "float", "double", "bool", "halffloat"))
        if numeric and (column.null_count == 0 or kind != "bool"):
            columns[name] = column.to_numpy()
        else:
            columns[name] = column.to_pylist()
    return columns


def _refuse_duplicates(labels: list[Any], kind: str) -> None:
    """Two columns of one label would become one batch key (merged or one of them lost)."""
    seen: set[Any] = set()
    duplicates = []
    for label in labels:
        if label in seen:
            duplicates.append(label)
        seen.add(label)
    if duplicates:
        raise ValueError(
            f"data is {kind} with duplicate column labels {list(dict.fromkeys(duplicates))}"
            ": each column becomes a key of the batch, so labels must be unique (rename them)"
        )
