"""pad_collate: variable-length arrays padded to the longest, with pad value, side and lengths."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minibatcher import DataLoader, pad_collate


def test_pads_to_the_longest_on_the_right_with_zeros() -> None:
    out = pad_collate([np.array([1, 2, 3]), np.array([4])])
    assert out.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert out.dtype == np.int64


def test_pad_value_and_left_side() -> None:
    collate_fn = pad_collate(pad_value=-1, side="left")
    out = collate_fn([np.array([1, 2, 3]), np.array([4])])
    assert out.tolist() == [[1, 2, 3], [-1, -1, 4]]


def test_return_lengths() -> None:
    collate_fn = pad_collate(return_lengths=True)
    padded, lengths = collate_fn([np.arange(2), np.arange(5), np.arange(1)])
    assert padded.shape == (3, 5)
    assert lengths.dtype == np.int64
    assert lengths.tolist() == [2, 5, 1]


def test_pads_every_axis_of_2d_items() -> None:
    out = pad_collate([np.ones((1, 3)), np.ones((2, 1))])
    assert out.shape == (2, 2, 3)
    assert out[0].tolist() == [[1, 1, 1], [0, 0, 0]]
    assert out[1].tolist() == [[1, 0, 0], [1, 0, 0]]


def test_lists_of_numbers_are_padded_like_arrays() -> None:
    out = pad_collate([[1, 2], [3]])
    assert out.tolist() == [[1, 2], [3, 0]]


def test_structure_is_kept_and_only_arrays_are_padded() -> None:
    items = [{"tokens": np.array([5, 6, 7]), "label": 1}, {"tokens": np.array([8]), "label": 0}]
    out = pad_collate(items)
    assert out["tokens"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert out["label"].tolist() == [1, 0]


def test_float_pad_value_with_float_items() -> None:
    out = pad_collate(pad_value=np.nan)([np.array([1.0]), np.array([2.0, 3.0])])
    assert np.isnan(out[0, 1])
    assert out[1].tolist() == [2.0, 3.0]


def test_in_a_loader() -> None:
    sequences = [np.arange(n) for n in (3, 1, 4, 1, 5)]
    dl = DataLoader(sequences, batch_size=2, collate_fn=pad_collate(return_lengths=True))
    shapes = [(b[0].shape, b[1].tolist()) for b in dl]
    assert shapes == [((2, 3), [3, 1]), ((2, 4), [4, 1]), ((1, 5), [5])]


def test_different_numbers_of_dimensions_are_refused() -> None:
    with pytest.raises(TypeError, match="different shapes"):
        pad_collate([np.zeros(2), np.zeros((2, 2))])


def test_bad_side_is_refused() -> None:
    with pytest.raises(ValueError, match="side must be 'right' or 'left', got 'up'"):
        pad_collate(side="up")  # type: ignore[arg-type]


def test_empty_items_are_refused() -> None:
    with pytest.raises(ValueError, match="empty list"):
        pad_collate([])


def test_pads_torch_tensors_into_a_tensor() -> None:
    """Tensors of different lengths used to raise an error telling the user to use pad_collate."""
    torch = pytest.importorskip("torch")
    out = pad_collate([torch.tensor([1, 2, 3]), torch.tensor([4])])
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.int64
    assert out.tolist() == [[1, 2, 3], [4, 0, 0]]
    padded, lengths = pad_collate(pad_value=-1.0, side="left", return_lengths=True)(
        [torch.ones(2, 2), torch.ones(1, 3)]
    )
    assert padded.shape == (2, 2, 3)
    assert padded[1, 0].tolist() == [-1, -1, -1]
    assert isinstance(lengths, torch.Tensor)
    assert lengths.tolist() == [2, 1]
    with DataLoader(
        [torch.arange(i + 1) for i in range(6)], batch_size=3, collate_fn=pad_collate,
        num_workers=2,
    ) as dl:
        assert [b.shape for b in dl] == [(3, 3), (3, 6)]


def test_dict_rows_with_input_ids_get_an_attention_mask() -> None:
    """As HF's collators do: 1 for tokens, 0 for padding; attention_mask and token_type_ids
    are padded with 0 whatever pad_value."""
    torch = pytest.importorskip("torch")
    rows = [
        {"input_ids": torch.tensor([5, 6, 7]), "label": 1},
        {"input_ids": torch.tensor([8]), "label": 0},
    ]
    batch = pad_collate(rows)
    assert list(batch) == ["input_ids", "label", "attention_mask"]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert isinstance(batch["attention_mask"], torch.Tensor)
    rows = [
        {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "token_type_ids": [1, 1, 1]},
        {"input_ids": [8], "attention_mask": [1], "token_type_ids": [1]},
    ]
    batch = pad_collate(pad_value=-1, side="left")(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [-1, -1, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch["token_type_ids"].tolist() == [[1, 1, 1], [0, 0, 1]]


@pytest.mark.parametrize("pad_value", [float("nan"), 0.5])
def test_a_pad_value_ints_cannot_hold_is_refused(pad_value: float) -> None:
    from minibatcher import CollateError

    with pytest.raises(CollateError, match=r"pad_value=.* does not fit its int64 items"):
        pad_collate(pad_value=pad_value)([np.array([1, 2]), np.array([3])])
    assert np.isnan(pad_collate(pad_value=float("nan"))([np.ones(2), np.ones(1)])[1, 1])


def _padded_row_by_row(items: list[np.ndarray], pad_value: int, side: str) -> np.ndarray:
    """The reference: each row written on its own."""
    longest = max(len(a) for a in items)
    out = np.full((len(items), longest), pad_value, dtype=np.result_type(*items))
    for row, a in zip(out, items, strict=True):
        if side == "right":
            row[: len(a)] = a
        else:
            row[longest - len(a) :] = a
    return out


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 12), min_size=1, max_size=9),
    pad_value=st.integers(-3, 3),
    side=st.sampled_from(["right", "left"]),
    dtypes=st.lists(st.sampled_from(["int8", "int32", "int64", "float32"]), min_size=1),
)
def test_token_sequences_equal_row_by_row_padding(
    lengths: list[int], pad_value: int, side: str, dtypes: list[str]
) -> None:
    """1-D items (the one-concatenate path): equal to padding each row on its own, for any
    lengths (empty items and all-empty batches included), side, pad value and mixed dtypes."""
    items = [
        np.arange(1, n + 1).astype(dtypes[i % len(dtypes)]) for i, n in enumerate(lengths)
    ]
    padded, got_lengths = pad_collate(pad_value=pad_value, side=side, return_lengths=True)(items)
    expected = _padded_row_by_row(items, pad_value, side)
    assert padded.dtype == expected.dtype
    assert padded.shape == expected.shape
    np.testing.assert_array_equal(padded, expected)
    assert got_lengths.tolist() == lengths


def test_token_sequences_are_written_into_the_given_memory() -> None:
    """With an allocator (a worker's shared-memory slot), the padded batch is written there."""
    arena = np.zeros(64, dtype=np.int32)

    def allocate(shape: tuple[int, ...], dtype: object) -> np.ndarray:
        size = int(np.prod(shape))
        return arena[:size].view(np.dtype(dtype)).reshape(shape)  # type: ignore[arg-type]

    items = [np.array([1, 2, 3], np.int32), np.array([4], np.int32)]
    batch = pad_collate(pad_value=9)(items, allocate)
    assert np.shares_memory(batch, arena)
    assert batch.tolist() == [[1, 2, 3], [4, 9, 9]]
