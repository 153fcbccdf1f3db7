"""Hugging Face ``datasets.Dataset`` in a table format (``"arrow"``, ``"pandas"``, ``"polars"``).

In those formats ``dataset[keys]`` returns a whole table, and ``datasets``' own
``__getitems__`` (which a torch DataLoader calls too) fails on it: TypeError for Arrow, NaN for
the gaps of a text column under pandas. Read the rows as Arrow instead, the dataset's storage,
and give the rows as an Arrow table's (:func:`~minibatcher.sources.columns.arrow_columns`), so a
batch is the same dict of columns in every table format. In: indices. Out: row dicts. State:
none. ``datasets`` is never imported here: the dataset is recognised by its module and format.
"""

from __future__ import annotations

from typing import Any

from .._typing import IndexArray
from .base import IndexedSource
from .columns import arrow_columns

TABLE_FORMATS = ("arrow", "pandas", "polars")


def is_table_formatted_dataset(data: Any) -> bool:
    """Whether ``data`` is a ``datasets.Dataset`` whose format returns tables."""
    if type(data).__module__.split(".")[0] != "datasets":
        return False
    fmt = getattr(data, "format", None)
    return isinstance(fmt, dict) and fmt.get("type") in TABLE_FORMATS


class TableFormattedDataset(IndexedSource):
    """Rows of a table-formatted ``datasets.Dataset``, read as Arrow with one take per batch."""

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        fmt = data.format
        # the same columns the user's format selects, as Arrow
        self._arrow = data.with_format(
            "arrow", columns=fmt.get("columns"), output_all_columns=fmt.get("output_all_columns")
        )

    def __len__(self) -> int:
        return len(self.data)

    def fetch_items(self, indices: IndexArray) -> list[Any]:
        positions = indices.tolist()
        columns = arrow_columns(self._arrow[positions])
        return [{name: col[i] for name, col in columns.items()} for i in range(len(positions))]
