"""DataLoader: the issue's examples, epochs and seeds, len, transforms, one_batch and every
bad-argument error."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from minibatcher import ConfigError, DataLoader
from minibatcher.samplers import BatchSampler, RandomSampler


def as_lists(dl: DataLoader[Any]) -> list[list[int]]:
    return [b.tolist() for b in dl]


# -- the examples -------------------------------------------------------------------------
def test_seed_example_range() -> None:
    dl = DataLoader(range(15), batch_size=5, shuffle=True)
    first = list(dl)
    assert len(first) == 3
    for batch in first:
        assert isinstance(batch, np.ndarray)
        assert batch.dtype == np.int64
        assert batch.ndim == 1
        assert len(set(batch.tolist())) == 5
    assert sorted(np.concatenate(first).tolist()) == list(range(15))
    second = list(dl)
    assert sorted(np.concatenate(second).tolist()) == list(range(15))
    assert [b.tolist() for b in first] != [b.tolist() for b in second]


def test_seed_example_enumerated_letters() -> None:
    letters = "abcdefghijklmnopqrstuvwxyz"
    ds = list(enumerate(letters))
    out = list(DataLoader(ds, batch_size=6, shuffle=True))
    assert len(out) == 5
    assert [len(b[1]) for b in out] == [6, 6, 6, 6, 2]
    for ids, chars in out:
        assert isinstance(ids, np.ndarray)
        assert ids.dtype == np.int64
        assert isinstance(chars, list)
        assert all(len(c) == 1 for c in chars)
        assert [letters[i] for i in ids.tolist()] == chars
    assert sorted(i for b in out for i in b[0].tolist()) == list(range(26))


# -- epochs and seeds -----------------------------------------------------------------------------
def test_every_iter_is_a_new_epoch() -> None:
    dl = DataLoader(range(10), batch_size=3, shuffle=True, seed=0)
    assert dl.epoch == 0
    it = iter(dl)
    assert dl.epoch == 0
    next(it)
    list(dl)
    assert dl.epoch == 1
    list(dl)
    assert dl.epoch == 2


def test_order_depends_on_seed_and_epoch_only() -> None:
    a = DataLoader(range(50), batch_size=8, shuffle=True, seed=5)
    b = DataLoader(range(50), batch_size=8, shuffle=True, seed=5)
    epochs_a = [as_lists(a) for _ in range(3)]
    b.set_epoch(2)
    assert as_lists(b) == epochs_a[2]
    b.set_epoch(0)
    assert [as_lists(b) for _ in range(3)] == epochs_a
    assert epochs_a[0] != epochs_a[1] != epochs_a[2]
    assert as_lists(DataLoader(range(50), batch_size=8, shuffle=True, seed=6)) != epochs_a[0]


def test_set_epoch_pins_the_next_epoch() -> None:
    dl = DataLoader(range(10), batch_size=4, shuffle=True, seed=1)
    dl.set_epoch(7)
    assert dl.epoch == 7
    seventh = as_lists(dl)
    assert dl.epoch == 7
    dl.set_epoch(7)
    assert as_lists(dl) == seventh
    assert dl.epoch == 7
    as_lists(dl)
    assert dl.epoch == 8


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_set_epoch_refuses_bad_values(bad: Any) -> None:
    with pytest.raises(ConfigError, match="epoch must be a non-negative int"):
        DataLoader(range(3)).set_epoch(bad)


def test_seed_none_draws_a_seed_that_replays_the_run() -> None:
    dl = DataLoader(range(40), batch_size=8, shuffle=True)
    assert isinstance(dl.seed, int)
    assert dl.seed >= 0
    run = [as_lists(dl) for _ in range(2)]
    replay = DataLoader(range(40), batch_size=8, shuffle=True, seed=dl.seed)
    assert [as_lists(replay) for _ in range(2)] == run
    assert DataLoader(range(40), shuffle=True).seed != dl.seed  # 63 random bits


def test_without_shuffle_the_order_is_sequential() -> None:
    assert as_lists(DataLoader(range(7), batch_size=3)) == [[0, 1, 2], [3, 4, 5], [6]]


# -- len ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "batch_size", "drop_last", "expected"),
    [(10, 3, False, 4), (10, 3, True, 3), (9, 3, True, 3), (2, 5, True, 0), (0, 4, False, 0)],
)
def test_len_counts_batches(n: int, batch_size: int, drop_last: bool, expected: int) -> None:
    dl = DataLoader(list(range(n)), batch_size=batch_size, drop_last=drop_last)
    assert len(dl) == expected
    assert len(list(dl)) == expected


def test_len_of_an_unsized_loader_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="len\\(\\) of a DataLoader over generator is unknown"):
        len(DataLoader((i for i in range(3)), batch_size=2))


def test_len_with_batch_size_none_counts_items() -> None:
    assert len(DataLoader([1, 2, 3], batch_size=None)) == 3


# -- batch_size=None and bs= ---------------------------------------------------------------------
def test_batch_size_none_yields_items_uncollated() -> None:
    data = [(1, "a"), (2, "b")]
    assert list(DataLoader(data, batch_size=None)) == data
    shuffled = list(DataLoader(data, batch_size=None, shuffle=True, seed=0))
    assert sorted(shuffled) == data


def test_batch_size_none_over_an_array_yields_rows() -> None:
    data = np.arange(6).reshape(3, 2)
    out = list(DataLoader(data, batch_size=None))
    assert [r.tolist() for r in out] == [[0, 1], [2, 3], [4, 5]]


def test_bs_is_an_alias_of_batch_size() -> None:
    dl = DataLoader(range(10), bs=4)
    assert dl.batch_size == 4
    assert len(dl) == 3
    assert as_lists(dl) == as_lists(DataLoader(range(10), batch_size=4))


def test_bs_and_batch_size_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="bs is an alias of batch_size: pass one of them"):
        DataLoader(range(10), batch_size=3, bs=4)


# -- transforms ----------------------------------------------------------------------------------
def test_transform_runs_on_each_item_and_batch_transform_on_each_batch() -> None:
    dl = DataLoader(
        range(5), batch_size=2, transform=lambda x: x * 10, batch_transform=lambda b: b + 1
    )
    assert as_lists(dl) == [[1, 11], [21, 31], [41]]


def test_transform_on_array_rows() -> None:
    data = np.arange(8, dtype=np.float32).reshape(4, 2)
    out = list(DataLoader(data, batch_size=3, transform=lambda row: row.sum()))
    assert [b.tolist() for b in out] == [[1.0, 5.0, 9.0], [13.0]]
    assert out[0].dtype == np.float32


def noisy(item: int, rng: np.random.Generator) -> float:
    return item + float(rng.random())


def batch_noise(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return batch + rng.integers(0, 1000)


def test_transform_with_rng_is_reproducible_and_keyed_by_index() -> None:
    def values(seed: int, shuffle: bool, epoch: int = 0) -> dict[int, float]:
        dl = DataLoader(range(20), batch_size=6, shuffle=shuffle, seed=seed, transform=noisy)
        dl.set_epoch(epoch)
        return {int(v): float(v) for b in dl for v in b}

    base = values(seed=1, shuffle=False)
    assert sorted(base) == list(range(20))
    assert values(seed=1, shuffle=False) == base
    assert values(seed=1, shuffle=True) == base  # keyed by index, not by position
    assert values(seed=2, shuffle=False) != base
    assert values(seed=1, shuffle=False, epoch=1) != base


def test_transform_with_rng_draws_differ_across_items() -> None:
    dl = DataLoader(range(20), batch_size=20, seed=0, transform=lambda i, rng: rng.random())
    (batch,) = list(dl)
    assert len(set(batch.tolist())) == 20


def test_batch_transform_with_rng_is_reproducible() -> None:
    def run(seed: int) -> list[list[int]]:
        return as_lists(DataLoader(range(9), batch_size=3, seed=seed, batch_transform=batch_noise))

    assert run(3) == run(3)
    assert run(3) != run(4)
    offsets = [b[0] - 3 * i for i, b in enumerate(run(3))]
    assert len(set(offsets)) > 1  # a different draw per batch


def test_transform_without_rng_is_called_with_the_item_only() -> None:
    calls: list[tuple[Any, ...]] = []

    def record(*args: Any) -> int:
        calls.append(args)
        return 0

    list(DataLoader([5, 6], batch_size=2, transform=record))
    assert calls == [(5,), (6,)]


# -- one_batch ------------------------------------------------------------------------------------
def test_one_batch_does_not_disturb_the_epochs() -> None:
    dl = DataLoader(range(20), batch_size=4, shuffle=True, seed=3)
    twin = DataLoader(range(20), batch_size=4, shuffle=True, seed=3)
    first = dl.one_batch()
    assert dl.epoch == 0
    assert first.tolist() == as_lists(twin)[0]
    assert as_lists(dl)[0] == first.tolist()
    assert dl.epoch == 0
    assert dl.one_batch().tolist() == as_lists(twin)[0]  # epoch 1's first batch
    assert dl.epoch == 0
    fresh = DataLoader(range(20), batch_size=4, shuffle=True, seed=3)
    fresh.set_epoch(1)
    assert as_lists(dl) == as_lists(fresh)
    assert dl.epoch == 1


def test_one_batch_of_empty_data() -> None:
    with pytest.raises(ValueError, match="one_batch\\(\\) found no batch"):
        DataLoader([], batch_size=2).one_batch()


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
        ({"batch_size": -3}, "batch_size must be a positive int, got -3"),
        ({"batch_size": 2.5}, "batch_size must be a positive int, got 2.5"),
        ({"batch_size": "8"}, "batch_size must be a positive int, got '8'"),
        ({"batch_size": True}, "batch_size must be a positive int, got True"),
        ({"shuffle": True, "sampler": [0, 1]}, "shuffle=True cannot be combined with sampler"),
        (
            {"shuffle": True, "batch_sampler": [[0]]},
            "shuffle=True cannot be combined with batch_sampler",
        ),
        (
            {"sampler": [0], "batch_sampler": [[0]]},
            "sampler and batch_sampler are mutually exclusive",
        ),
        (
            {"batch_size": 4, "batch_sampler": [[0]]},
            "batch_size must be left unset with batch_sampler.*got batch_size=4",
        ),
        (
            {"drop_last": True, "batch_sampler": [[0]]},
            "drop_last=True cannot be combined with batch_sampler",
        ),
        ({"drop_last": True, "batch_size": None}, "drop_last=True needs a batch_size"),
        ({"output": "tf"}, "output must be one of .*got 'tf'"),
        ({"shuffle": 1}, "shuffle must be a bool, got 1"),
        ({"seed": -5}, "seed must be a non-negative int or None, got -5"),
        ({"seed": "x"}, "seed must be a non-negative int or None, got 'x'"),
        ({"transform": 3}, "transform must be callable or None, got 3"),
        ({"shuffle_buffer": 0}, "shuffle_buffer must be a positive int, got 0"),
        ({"sampler": 5}, "sampler must be an iterable of indices, got 5"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DataLoader(range(10), **kwargs)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(range(3), batch_size=0)


def test_sampler_index_out_of_range_at_fetch_names_the_index() -> None:
    dl = DataLoader(np.arange(4), batch_size=2, sampler=[3, 2, 40])
    with pytest.raises(IndexError, match="index 40, out of range for data of length 4"):
        list(dl)


def test_collate_failure_names_the_field_and_types() -> None:
    data = [{"v": 1}, {"v": "x"}]
    with pytest.raises(TypeError, match=r"batch\['v'\].*int, str"):
        list(DataLoader(data, batch_size=2))


def test_an_error_in_a_transform_propagates_with_its_type() -> None:
    def fail_on_three(x: int) -> int:
        if x == 3:
            raise KeyError("three")
        return x

    with pytest.raises(KeyError, match="three"):
        list(DataLoader(range(6), batch_size=2, transform=fail_on_three))


def test_batch_sampler_decides_batches_and_len() -> None:
    dl = DataLoader(range(10), batch_sampler=BatchSampler(RandomSampler(10), 4, drop_last=True))
    out = as_lists(dl)
    assert len(dl) == 2 == len(out)
    assert all(len(b) == 4 for b in out)
    assert dl.batch_size is None


def test_repr_is_compact() -> None:
    text = repr(DataLoader(range(3), batch_size=2, seed=4))
    assert text.startswith("DataLoader(data=range, batch_size=2, shuffle=False")
    assert "seed=4" in text


def test_batch_size_none_applies_the_collate_fn_to_each_item() -> None:
    """As torch does (it used to be ignored silently), with and without workers."""

    def tag(item: int) -> tuple[str, int]:
        return ("item", item)

    for kwargs in ({}, {"num_workers": 2, "worker_type": "thread"}):
        dl = DataLoader(range(3), batch_size=None, collate_fn=tag, **kwargs)  # type: ignore[arg-type]
        assert list(dl) == [("item", 0), ("item", 1), ("item", 2)]


def test_a_failing_item_names_its_indices() -> None:
    def boom(item: int) -> int:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad") as info:
        list(DataLoader(range(4), batch_size=2, transform=boom))
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "(indices [0, 1])" in notes
    assert "indexs" not in notes


def test_shard_is_this_ranks_place_or_none() -> None:
    assert DataLoader(range(10), batch_size=2, shard=None).shard is None
    assert DataLoader(range(10), batch_size=2, shard=(1, 3), seed=0).shard == (1, 3)
    assert DataLoader(range(10), batch_size=2, shard=(0, 1), seed=0).shard is None  # 1 rank


def test_new_keeps_the_choice_of_num_workers_auto() -> None:
    dl = DataLoader(list(range(64)), batch_size=4, num_workers="auto", seed=3)
    assert dl.new(batch_size=8).options.num_workers == "auto"  # not chosen yet
    first = [b.tolist() for b in dl]
    chosen = dl._executors.tuned
    assert chosen is not None
    copy = dl.new(batch_size=4)
    assert (copy.options.num_workers, copy.options.worker_type) == (
        chosen.num_workers, chosen.worker_type)
    assert [b.tolist() for b in copy] == first  # same seed, same batches
    assert dl.new(num_workers=0).options.num_workers == 0  # an explicit change wins
