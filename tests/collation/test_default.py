"""The default collate: every rule, the structure it preserves and the errors it raises."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np
import pytest

from minibatcher import CollateError, Collator, DataLoader, collate


class Point(NamedTuple):
    x: float
    label: str


@dataclasses.dataclass
class Sample:
    image: np.ndarray
    target: int
    name: str = ""


def exactly(obj: object, kind: type) -> bool:
    """``type(obj) is kind``, without narrowing ``obj`` for the type checker (batches hold arrays
    where the item's annotations say scalars)."""
    return type(obj) is kind


def test_python_ints_bools_floats_become_1d_arrays() -> None:
    ints, bools, floats = collate([1, 2, 3]), collate([True, False]), collate([0.5, 1.5])
    assert ints.dtype == np.int64
    assert ints.tolist() == [1, 2, 3]
    assert bools.dtype == np.bool_
    assert bools.tolist() == [True, False]
    assert floats.dtype == np.float64
    assert floats.tolist() == [0.5, 1.5]


def test_large_ints_stay_int64() -> None:
    assert collate([2**40, -(2**40)]).dtype == np.int64


@pytest.mark.parametrize("items", [["a", "bc"], [b"x", b"y"], [None, None]])
def test_str_bytes_and_none_become_lists(items: list[Any]) -> None:
    out = collate(items)
    assert type(out) is list
    assert out == items


def test_other_objects_become_lists() -> None:
    marker = object()
    assert collate([marker, marker]) == [marker, marker]


@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.uint16, np.bool_, np.complex64])
def test_numpy_scalars_keep_their_dtype(dtype: type) -> None:
    out = collate([dtype(1), dtype(0)])
    assert out.dtype == np.dtype(dtype)
    assert out.shape == (2,)


def test_numpy_string_scalars_keep_their_full_width() -> None:
    out = collate([np.str_("ab"), np.str_("abcdef")])
    assert out.tolist() == ["ab", "abcdef"]
    data = np.array(["ab", "abcdef", "x"])
    (batch,) = list(DataLoader(data, batch_size=3, transform=lambda s: s))
    assert batch.tolist() == ["ab", "abcdef", "x"]


def test_mixed_numpy_number_types_promote() -> None:
    assert collate([np.int8(1), np.int64(300)]).tolist() == [1, 300]
    wide = collate([np.float32(1), np.float64(2.5)])
    assert wide.dtype == np.float64
    assert wide.tolist() == [1.0, 2.5]


def test_numpy_arrays_of_one_shape_are_stacked_keeping_dtype() -> None:
    items = [np.full((2, 3), i, dtype=np.float16) for i in range(4)]
    out = collate(items)
    assert out.shape == (4, 2, 3)
    assert out.dtype == np.float16
    assert out[3].tolist() == [[3.0] * 3] * 2


def test_torch_tensors_are_stacked_with_torch() -> None:
    torch = pytest.importorskip("torch")
    out = collate([torch.ones(2, dtype=torch.int32), torch.zeros(2, dtype=torch.int32)])
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.int32
    assert out.tolist() == [[1, 1], [0, 0]]


def test_tuples_stay_tuples_and_lists_stay_lists() -> None:
    tup = collate([(1, "a"), (2, "b")])
    assert type(tup) is tuple
    assert tup[0].tolist() == [1, 2]
    assert tup[1] == ["a", "b"]
    lst = collate([[1, 2.5], [3, 4.5]])
    assert type(lst) is list
    assert lst[0].tolist() == [1, 3]
    assert lst[1].tolist() == [2.5, 4.5]


def test_dicts_keep_keys_and_mapping_type() -> None:
    out = collate([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
    assert type(out) is dict
    assert out["a"].tolist() == [1, 2]
    assert out["b"] == ["x", "y"]
    ordered = collate([OrderedDict(a=1), OrderedDict(a=2)])
    assert type(ordered) is OrderedDict
    assert ordered["a"].tolist() == [1, 2]


def test_namedtuples_stay_namedtuples() -> None:
    out = collate([Point(0.5, "a"), Point(1.5, "b")])
    assert exactly(out, Point)
    assert out.x.tolist() == [0.5, 1.5]
    assert out.label == ["a", "b"]


def test_dataclasses_stay_dataclasses_with_batched_fields() -> None:
    items = [Sample(np.zeros(3), 1, "a"), Sample(np.ones(3), 0, "b")]
    out = collate(items)
    assert exactly(out, Sample)
    assert out.image.shape == (2, 3)
    assert out.target.tolist() == [1, 0]
    assert out.name == ["a", "b"]


def test_nested_structures_collate_recursively() -> None:
    items = [
        {"meta": (i, {"tags": [f"t{i}", "u"]}), "points": [Point(i, "p")], "img": np.eye(2) * i}
        for i in range(3)
    ]
    out = collate(items)
    ids, inner = out["meta"]
    assert ids.tolist() == [0, 1, 2]
    assert inner["tags"][0] == ["t0", "t1", "t2"]
    assert inner["tags"][1] == ["u", "u", "u"]
    assert exactly(out["points"][0], Point)
    assert out["points"][0].x.tolist() == [0, 1, 2]
    assert out["img"].shape == (3, 2, 2)


def test_shape_mismatch_names_the_field_the_shapes_and_pad_collate() -> None:
    items = [{"seq": np.zeros(3)}, {"seq": np.zeros(5)}]
    with pytest.raises(CollateError) as info:
        collate(items)
    message = str(info.value)
    assert "batch['seq']" in message
    assert "(3,)" in message
    assert "(5,)" in message
    assert "pad_collate" in message


def test_shape_mismatch_deep_in_a_structure_names_the_full_path() -> None:
    items = [{"a": (1, np.zeros((2, 2)))}, {"a": (2, np.zeros((2, 3)))}]
    with pytest.raises(CollateError, match=r"batch\['a'\]\[1\].*\(2, 2\).*\(2, 3\)"):
        collate(items)


def test_tensor_shape_mismatch_points_to_pad_collate() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(CollateError, match=r"batch\[0\].*shapes.*pad_collate"):
        collate([(torch.zeros(2),), (torch.zeros(3),)])


def test_sequences_of_different_lengths() -> None:
    with pytest.raises(CollateError, match=r"batch: sequences of different lengths \[1, 2\]"):
        collate([(1,), (1, 2)])


@pytest.mark.parametrize(
    ("items", "pattern"),
    [
        ([1, "a"], r"batch: the first item is a int but the items are of types int, str"),
        ([True, 2], r"the first item is a bool but the items are of types bool, int"),
        ([1.5, "x"], r"the first item is a float"),
        ([{"v": 1}, {"v": True}], r"batch\['v'\]: the first item is a int.*bool, int"),
    ],
)
def test_mixed_types_are_an_error_naming_path_and_types(items: list[Any], pattern: str) -> None:
    with pytest.raises(CollateError, match=pattern):
        collate(items)


def test_missing_dict_key_is_an_error_naming_the_key() -> None:
    with pytest.raises(CollateError, match=r"has key 'b' but another item"):
        collate([{"a": 1, "b": 2}, {"a": 3}])


def test_numpy_scalars_mixed_with_other_types() -> None:
    with pytest.raises(CollateError, match="NumPy scalars mixed with"):
        collate([np.float32(1), "x"])


def test_empty_items_are_an_error() -> None:
    with pytest.raises(CollateError, match="empty list"):
        collate([])


def test_collate_error_is_a_type_error() -> None:
    assert issubclass(CollateError, TypeError)


def test_register_adds_a_rule_for_a_type_and_its_subclasses() -> None:
    class Token:
        def __init__(self, text: str) -> None:
            self.text = text

    class SubToken(Token):
        pass

    collator = Collator()
    collator.register(Token, lambda items: " ".join(t.text for t in items))
    assert collator([Token("a"), Token("b")]) == "a b"
    assert collator([SubToken("c"), SubToken("d")]) == "c d"
    assert collator([{"t": Token("x")}, {"t": Token("y")}]) == {"t": "x y"}
    assert collator([1, 2]).tolist() == [1, 2]  # the other rules still apply


def test_register_as_a_decorator_overrides_a_builtin_rule() -> None:
    collator = Collator()

    @collator.register(int)
    def summed(items: list[int]) -> int:
        return sum(items)

    assert collator([(1, 2.0), (3, 4.0)])[0] == 4
    dl = DataLoader([1, 2, 3], batch_size=3, collate_fn=collator)
    assert list(dl) == [6]


def test_register_refuses_a_non_type() -> None:
    with pytest.raises(TypeError, match="kind must be a type"):
        Collator().register("int")  # type: ignore[call-overload]


def test_collate_failure_in_a_loader_names_the_batch_and_item() -> None:
    data = [np.zeros(2), np.zeros(2), np.zeros(3)]
    dl = DataLoader(data, batch_size=3)
    with pytest.raises(CollateError, match=r"batch: items of types ndarray have different shapes"):
        list(dl)


def test_a_custom_collate_fn_replaces_the_default() -> None:
    dl = DataLoader(range(5), batch_size=2, collate_fn=lambda items: tuple(int(i) for i in items))
    assert list(dl) == [(0, 1), (2, 3), (4,)]


@pytest.mark.parametrize(
    "items",
    [
        [1, 2.5],  # ints and floats: float64 whichever comes first
        [2.5, True],  # a bool among numbers: an error whichever comes first
        [True, 2],
        [np.zeros(3), None],  # None among values: a list whichever comes first
        [(1, 2), None],
        [{"a": 1}, None],
        [1, None],
        [Point(1, 2), None],
        [Sample(np.zeros(2), 1), None],
    ],
)
def test_a_batch_does_not_depend_on_which_item_comes_first(items: list[Any]) -> None:
    """A shuffle decides which item is first: it must not decide whether (or how) a batch
    collates. [1, 2.5] failed while [2.5, 1] collated; [array, None] failed while
    [None, array] gave a list."""
    outcomes = []
    for order in (items, items[::-1]):
        try:
            batch = collate(order)
        except CollateError:
            outcomes.append("error")
        else:
            outcomes.append(type(batch).__name__)
            if any(x is None for x in order):  # the items as they are
                assert all(b is o for b, o in zip(batch, order, strict=True))
    assert outcomes[0] == outcomes[1], outcomes
    if any(x is None for x in items):
        assert outcomes == ["list", "list"]


def test_ints_among_floats_are_float64_in_any_order() -> None:
    for items in ([1, 2.5, 3], [2.5, 1, 3], [{"y": 0}, {"y": 0.5}]):
        batch = collate(items)
        values = batch["y"] if isinstance(batch, dict) else batch
        assert values.dtype == np.float64
    assert collate([2.5, 1]).tolist() == [2.5, 1.0]


def test_python_ints_beyond_int64_are_named() -> None:
    for items in ([2**70, 1], [1, 2**63], [-(2**63) - 1, 0]):
        with pytest.raises(CollateError, match=r"the Python int -?\d+ is out of the int64 range"):
            collate(items)
    assert collate([2**63 - 1, -(2**63)]).dtype == np.int64


def test_an_item_that_is_not_a_sequence_among_tuples_is_a_collate_error() -> None:
    with pytest.raises(CollateError, match=r"the first item is a tuple but the items are of"):
        collate([(1, 2), 5])


def test_arrays_mixed_with_tensors_are_an_error_in_either_order() -> None:
    torch = pytest.importorskip("torch")
    items = [np.zeros(2, dtype=np.float32), torch.zeros(2)]
    for order in (items, items[::-1]):
        with pytest.raises(CollateError, match="batch"):
            collate(order)
