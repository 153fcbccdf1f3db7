"""Batches equal ``default_collate`` (``default_convert`` for ``batch_size=None``), every type."""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pytest
import torch
import torch.utils.data as tud

from .conftest import both

pytestmark = pytest.mark.timeout(60)

Point = collections.namedtuple("Point", "x y")


@dataclasses.dataclass
class Record:
    a: int


ITEMS = {
    "int": lambda i: i,
    "float": lambda i: i / 3,
    "bool": lambda i: i % 2 == 0,
    "str": lambda i: f"s{i}",
    "bytes": lambda i: bytes([i]),
    "numpy_array": lambda i: np.full((2, 3), i, dtype=np.float32),
    "numpy_scalar": lambda i: np.int16(i),
    "numpy_float64_scalar": lambda i: np.float64(i) / 7,
    "tensor": lambda i: torch.full((3,), i, dtype=torch.int32),
    "tensor_0d": lambda i: torch.tensor(float(i)),
    "tuple": lambda i: (i, float(i), f"{i}"),
    "list": lambda i: [i, i + 1],
    "dict": lambda i: {"x": torch.tensor([i, i]), "y": i, "name": str(i)},
    "namedtuple": lambda i: Point(i, np.array([i, i])),
    "nested": lambda i: {"a": [(i, {"b": np.arange(i, i + 2)})], "c": Point(1.5, "z")},
    "none_in_list": lambda i: [i],
    "big_arrays": lambda i: {"a": np.full((64, 64), i, np.float32), "t": torch.full((90, 90), i)},
}


class Items(tud.Dataset):
    def __init__(self, kind, n=7):
        self.kind, self.n = kind, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return ITEMS[self.kind](i)


@pytest.mark.parametrize("kind", list(ITEMS))
@pytest.mark.parametrize("batch_size", [3, None])
def test_default_collate_and_convert(kind, batch_size):
    both(lambda cls: list(cls(Items(kind), batch_size)))


@pytest.mark.parametrize("kind", ["numpy_array", "dict", "tensor", "big_arrays", "nested"])
def test_collate_in_workers(kind):
    """In workers, stacked tensors are written into shared memory (big ones into the slot)."""
    both(lambda cls: list(cls(Items(kind, 12), 4, num_workers=2)))


def test_dataclass_items_fail_alike():
    class Records(tud.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return Record(i)

    def run(cls):
        with pytest.raises(TypeError) as info:
            list(cls(Records(), 2))
        return str(info.value)

    both(run)


def test_custom_collate_fn_and_getitems():
    class Batched(tud.Dataset):
        def __len__(self):
            return 9

        def __getitem__(self, i):
            raise AssertionError("__getitems__ must be used")

        def __getitems__(self, indices):
            return [{"i": i} for i in indices]

    def run(cls):
        return list(cls(Batched(), 4, collate_fn=lambda rows: [r["i"] * 2 for r in rows]))

    both(run)


def test_tensor_dataset_fast_path_equals_default_collate():
    ds = tud.TensorDataset(torch.randn(50, 3), torch.randint(0, 5, (50,)), torch.zeros(50, 0))

    def run(cls):
        torch.manual_seed(0)
        return list(cls(ds, 8, True, drop_last=False))

    both(run)
    t = torch.arange(12).reshape(6, 2)
    both(lambda cls: list(cls(t, 4)))
    for dtype in (np.float32, np.int16, np.uint8, np.bool_):
        array = (np.arange(30).reshape(10, 3) % 3).astype(dtype)
        both(lambda cls, a=array: list(cls(a, 4, num_workers=1)))
