"""``datasets.Dataset`` in the table formats (arrow, pandas): ``datasets``' own ``__getitems__``
fails on them (TypeError under arrow; NaN for missing text under pandas, which then does not
collate), so they are read as Arrow: the same batch of columns in every table format."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from minibatcher import DataLoader

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    datasets = pytest.importorskip("datasets")
pytestmark = pytest.mark.timeout(60)


def rows() -> Any:
    return datasets.Dataset.from_dict(
        {"id": [0, 1, 2, 3, 4], "text": ["a", "b", None, "d", "e"], "y": [0.5, 1.0, 1.5, 2, 3]}
    )


@pytest.mark.parametrize("fmt", ["arrow", "pandas"])
def test_table_formats_give_batches_of_columns_each_row_once(fmt: str) -> None:
    ds = rows().with_format(fmt)
    batches = list(DataLoader(ds, batch_size=2, shuffle=True, seed=0))
    ids = np.concatenate([b["id"] for b in batches])
    assert sorted(ids.tolist()) == [0, 1, 2, 3, 4]
    text = [t for b in batches for t in b["text"]]
    assert sorted(map(str, text)) == ["None", "a", "b", "d", "e"]  # the gap is None, not NaN
    assert all(isinstance(b["y"], np.ndarray) for b in batches)
    plain = list(DataLoader(rows().with_format("arrow"), batch_size=2, shuffle=True, seed=0))
    for got, ref in zip(batches, plain, strict=True):
        assert got["id"].tolist() == ref["id"].tolist()
        assert got["text"] == ref["text"]


def test_a_table_format_keeps_its_column_selection() -> None:
    ds = rows().with_format("pandas", columns=["id"])
    (batch,) = list(DataLoader(ds, batch_size=5))
    assert list(batch) == ["id"]


def test_a_dataset_dict_names_its_splits() -> None:
    splits = datasets.DatasetDict({"train": rows()})
    with pytest.raises(TypeError, match=r"DatasetDict of splits \['train'\]: pass one split"):
        DataLoader(splits, batch_size=2)
