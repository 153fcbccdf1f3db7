"""HF datasets through minibatcher.torch.DataLoader: Dataset in python, numpy and torch formats
and IterableDataset (shards split over workers), each batch identical to torch's DataLoader."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    datasets = pytest.importorskip("datasets")

sys.path.insert(0, str(Path(__file__).parent.parent / "torch_compat"))
from conftest import both  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def table() -> object:
    rows = {"x": [[float(i), i + 0.5] for i in range(20)], "y": list(range(20)),
            "name": [f"r{i}" for i in range(20)]}  # fmt: skip
    return datasets.Dataset.from_dict(rows)


@pytest.mark.parametrize("form", [None, "numpy", "torch"])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataset_formats(form: str | None, num_workers: int) -> None:
    ds = table().with_format(form)

    def run(cls):
        torch.manual_seed(0)
        return list(cls(ds, 6, True, num_workers=num_workers))

    both(run)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_iterable_dataset_shards_over_workers(num_workers: int) -> None:
    ds = table().to_iterable_dataset(num_shards=4)
    both(lambda cls: list(cls(ds, 4, num_workers=num_workers)))
