"""Classify any collection once, at the edge, into one of two source shapes.

``as_source(data)`` returns an :class:`IndexedSource` (random access by index, optionally with a
batched fetch) or a :class:`StreamSource` (read in order). Nothing later branches on the data's
type: the rest of the loader sees only these two protocols.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .base import IndexedSource
from .columns import ColumnsSource, arrow_columns, dataframe_columns
from .hf_tables import TableFormattedDataset, is_table_formatted_dataset
from .images import ImageFolder
from .iterable import StreamSource, shuffle_buffer
from .parquet import ParquetSource
from .sequence import ArraySource, RangeSource, SequenceSource, TensorSource
from .tar import TarShards
from .tokens import TokenWindows

Source = IndexedSource | StreamSource

__all__ = [
    "ImageFolder",
    "IndexedSource",
    "ParquetSource",
    "Source",
    "StreamSource",
    "TarShards",
    "TokenWindows",
    "as_source",
    "shuffle_buffer",
]


def as_source(data: Any) -> Source:
    """The source for ``data``; raises TypeError naming the type if it is not a collection."""
    if isinstance(data, (IndexedSource, StreamSource)):
        return data
    if isinstance(data, range):
        return RangeSource(data)
    if isinstance(data, np.ndarray):
        return ArraySource(data)
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(data, torch.Tensor):
            if data.dim() == 0:
                raise ValueError("data must have at least one dimension, got a 0-d tensor")
            return TensorSource(data)
        tensor_dataset = getattr(getattr(torch.utils, "data", None), "TensorDataset", None)
        if tensor_dataset is not None and type(data) is tensor_dataset:
            return TensorSource(data, tensors=tuple(data.tensors))
        iterable_dataset = getattr(getattr(torch.utils, "data", None), "IterableDataset", None)
        if iterable_dataset is not None and isinstance(data, iterable_dataset):
            return StreamSource(data)  # iterated even if it defines __len__ (as torch does)
    module = type(data).__module__.split(".")[0]
    if module == "pandas" and hasattr(data, "iloc"):
        if hasattr(data, "columns"):
            return ColumnsSource(data, dataframe_columns(data))
        if hasattr(data, "to_numpy"):  # a Series: read by position, like a DataFrame's rows
            # and its values as a DataFrame's column: text and objects a list, gaps None
            (column,) = dataframe_columns(data.to_frame()).values()
            return SequenceSource(column) if isinstance(column, list) else ArraySource(column)
    if module == "pyarrow" and type(data).__name__ in ("ParquetFile", "FileSystemDataset"):
        return ParquetSource(data)  # files on disk: indexed by their row groups
    if module == "pyarrow" and hasattr(data, "column_names"):
        return ColumnsSource(data, arrow_columns(data))
    if is_table_formatted_dataset(data):
        return TableFormattedDataset(data)
    if isinstance(data, Mapping):
        return _mapping_source(data)
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return SequenceSource(data)
    if isinstance(data, Iterable):
        return StreamSource(data)
    raise TypeError(
        "data must be a collection: a sequence or map-style dataset (len and __getitem__), an "
        "array, a dict of columns, a DataFrame, an Arrow table, a Parquet file or dataset or an "
        f"iterable; got {type(data)!r}"
    )


def _mapping_source(data: Mapping[Any, Any]) -> Source:
    if type(data).__name__ in ("DatasetDict", "IterableDatasetDict"):  # datasets' splits
        raise TypeError(
            f"data is a {type(data).__name__} of splits {list(data)}: pass one split, "
            f"e.g. data[{next(iter(data), 'train')!r}]"
        )
    if not data:
        raise ValueError("data is an empty dict: a dict of columns needs at least one column")
    bad = [k for k, v in data.items() if not hasattr(v, "__len__") or isinstance(v, (str, bytes))]
    if bad:
        raise TypeError(
            "data is a dict, which minibatcher reads as equal-length columns, but "
            f"column {bad[0]!r} is a {type(data[bad[0]]).__name__}, not a sequence or array; "
            "for a map-style dataset keyed by index, pass an object with __len__ and __getitem__"
        )
    return ColumnsSource(data, dict(data))  # labels kept as they are (ints stay ints)
