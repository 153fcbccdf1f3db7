"""Indexable data with len(): lists, tuples, ranges, map-style classes, __getitems__, NumPy
arrays and torch tensors/datasets, read through the DataLoader."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from minibatcher import DataLoader


def batches(data: Any, **kwargs: Any) -> list[Any]:
    return list(DataLoader(data, **kwargs))


class MapStyle:
    """A map-style dataset: only __len__ and __getitem__."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls: list[int] = []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        self.calls.append(i)
        return {"x": np.full(2, i, dtype=np.float32), "y": i % 3}


class WithGetitems(MapStyle):
    """A map-style dataset that also reads a whole batch at once."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.batch_calls: list[list[int]] = []

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        self.batch_calls.append(list(indices))
        return [{"x": np.full(2, i, dtype=np.float32), "y": i % 3} for i in indices]


@pytest.mark.parametrize("kind", [list, tuple])
def test_list_and_tuple_of_ints(kind: type) -> None:
    out = batches(kind(range(10, 17)), batch_size=3)
    assert [b.tolist() for b in out] == [[10, 11, 12], [13, 14, 15], [16]]
    assert all(b.dtype == np.int64 for b in out)


def test_range_batches_are_int64_values_of_the_range() -> None:
    out = batches(range(5, 25, 2), batch_size=4)
    assert [b.tolist() for b in out] == [[5, 7, 9, 11], [13, 15, 17, 19], [21, 23]]
    assert all(isinstance(b, np.ndarray) and b.dtype == np.int64 for b in out)


def test_range_shuffled_holds_each_value_once() -> None:
    out = batches(range(100, 0, -3), batch_size=7, shuffle=True, seed=3)
    values = np.concatenate(out).tolist()
    assert sorted(values) == sorted(range(100, 0, -3))
    assert values != list(range(100, 0, -3))


def test_range_batches_can_be_modified_without_changing_later_epochs() -> None:
    from minibatcher.samplers import SubsetSampler

    dl = DataLoader(range(10), batch_size=2, sampler=SubsetSampler([4, 2, 7]))
    for batch in dl:
        batch[:] = -1  # the batch is the user's own
    assert [b.tolist() for b in dl] == [[4, 2], [7]]
    shuffled = DataLoader(range(10), batch_size=3, shuffle=True, seed=0)
    first = list(shuffled)
    expected = [b.tolist() for b in first]
    for batch in first:
        batch += 100
    shuffled.set_epoch(0)
    assert [b.tolist() for b in shuffled] == expected


def test_empty_range_gives_no_batches() -> None:
    assert batches(range(0), batch_size=4) == []
    assert len(DataLoader(range(0), batch_size=4)) == 0


def test_map_style_class_is_read_by_index() -> None:
    data = MapStyle(5)
    out = batches(data, batch_size=2)
    assert data.calls == [0, 1, 2, 3, 4]
    assert out[0]["x"].shape == (2, 2)
    assert out[0]["x"].dtype == np.float32
    assert out[2]["y"].tolist() == [1]


def test_getitems_reads_each_batch_in_one_call() -> None:
    data = WithGetitems(7)
    out = batches(data, batch_size=3, shuffle=True, seed=1)
    assert data.calls == []
    assert [len(c) for c in data.batch_calls] == [3, 3, 1]
    assert sorted(i for c in data.batch_calls for i in c) == list(range(7))
    assert [b["y"].tolist() for b in out] == [[i % 3 for i in c] for c in data.batch_calls]


def test_numpy_1d_array() -> None:
    data = np.arange(10, dtype=np.int16) * 2
    out = batches(data, batch_size=4)
    assert [b.tolist() for b in out] == [[0, 2, 4, 6], [8, 10, 12, 14], [16, 18]]
    assert all(b.dtype == np.int16 for b in out)


def test_numpy_2d_array_batches_rows() -> None:
    data = np.arange(30, dtype=np.float32).reshape(10, 3)
    out = batches(data, batch_size=4, shuffle=True, seed=0)
    assert [b.shape for b in out] == [(4, 3), (4, 3), (2, 3)]
    stacked = np.concatenate(out)
    assert sorted(stacked[:, 0].tolist()) == data[:, 0].tolist()
    for row in stacked:  # every row is an intact row of the data
        assert row.tolist() == data[int(row[0]) // 3].tolist()


def test_numpy_batches_do_not_alias_the_data() -> None:
    data = np.arange(8)
    batch = batches(data, batch_size=4)[0]
    batch[:] = -1
    assert data.tolist() == list(range(8))


def test_zero_dimensional_array_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one dimension"):
        DataLoader(np.array(3))


def test_torch_tensor_batches_are_tensors() -> None:
    torch = pytest.importorskip("torch")
    data = torch.arange(20, dtype=torch.float32).reshape(10, 2)
    out = batches(data, batch_size=4)
    assert all(isinstance(b, torch.Tensor) for b in out)
    assert torch.equal(torch.cat(out), data)


def test_torch_tensor_dataset_batches_are_tuples_of_tensors() -> None:
    torch = pytest.importorskip("torch")
    x = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    y = torch.arange(6)
    out = batches(torch.utils.data.TensorDataset(x, y), batch_size=4, shuffle=True, seed=2)
    assert all(isinstance(b, tuple) and len(b) == 2 for b in out)
    xs, ys = torch.cat([b[0] for b in out]), torch.cat([b[1] for b in out])
    assert sorted(ys.tolist()) == list(range(6))
    assert torch.equal(xs, x[ys])


def test_torch_map_style_dataset() -> None:
    torch = pytest.importorskip("torch")

    class Squares(torch.utils.data.Dataset):  # type: ignore[misc,name-defined]
        def __len__(self) -> int:
            return 5

        def __getitem__(self, i: int) -> Any:
            return torch.tensor([i, i * i])

    out = batches(Squares(), batch_size=2)
    assert [b.tolist() for b in out] == [[[0, 0], [1, 1]], [[2, 4], [3, 9]], [[4, 16]]]


def test_not_a_collection_is_refused_naming_the_type() -> None:
    with pytest.raises(TypeError, match=r"data must be a collection.*int"):
        DataLoader(42)


def test_getitems_returning_the_wrong_number_of_items_is_named() -> None:
    class Short:
        def __len__(self) -> int:
            return 10

        def __getitem__(self, i: int) -> int:
            return i

        def __getitems__(self, indices: list[int]) -> list[int]:
            return indices[:-1]

    with pytest.raises(ValueError, match=r"Short.__getitems__ returned 3 items for 4 indices"):
        list(DataLoader(Short(), batch_size=4))
