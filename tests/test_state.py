"""Checkpoints: the schema, the edges of an epoch, validation errors that name the mismatch,
streams with and without their own state, and elastic resume from all old ranks' states."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from typing import Any

import numpy as np
import pytest

from minibatcher import DataLoader, StateError
from minibatcher.samplers import BatchSampler, RandomSampler, WeightedRandomSampler
from minibatcher.state import STATE_VERSION, Progress, parse_state
from minibatcher.testing import check_resume, same_batches


def lists(batches: Any) -> list[list[int]]:
    return [np.asarray(b).tolist() for b in batches]


def loader(**kw: Any) -> DataLoader[Any]:
    args: dict[str, Any] = {"batch_size": 4, "shuffle": True, "seed": 11}
    args.update(kw)
    data = args.pop("data", range(22))
    return DataLoader(data, **args)


def test_schema_is_small_nested_and_json() -> None:
    dl = loader()
    it = iter(dl)
    next(it)
    state = dl.state_dict()
    assert json.loads(json.dumps(state)) == state
    assert list(state) == ["version", "loader", "config", "shard", "source"]
    assert state["version"] == STATE_VERSION
    assert state["loader"] == {"epoch": 0, "next_batch": 1, "delivered_above": []}
    assert state["config"]["dataset_length"] == 22
    assert state["config"]["seed"] == 11
    assert state["shard"] == {
        "rank": 0,
        "world_size": 1,
        "uneven": "pad",
        "domain": {"start": 0, "excluded": []},
    }
    assert len(json.dumps(state)) < 500  # no permutation stored


def test_positions_across_the_epoch_edges() -> None:
    dl = loader()
    assert dl.state_dict()["loader"]["epoch"] == 0
    it = iter(dl)
    assert dl.state_dict()["loader"] == {"epoch": 0, "next_batch": 0, "delivered_above": []}
    for _ in range(6):
        next(it)
    # At the last batch, before the iterator is exhausted: already the start of the next epoch.
    assert dl.state_dict()["loader"] == {"epoch": 1, "next_batch": 0, "delivered_above": []}
    with pytest.raises(StopIteration):
        next(it)
    assert dl.state_dict()["loader"] == {"epoch": 1, "next_batch": 0, "delivered_above": []}


def test_a_state_at_the_last_batch_resumes_at_the_next_epoch_never_an_empty_one() -> None:
    dl = loader()
    it = iter(dl)
    list(itertools.islice(it, 6))  # every batch of epoch 0, the iterator not yet exhausted
    resumed = loader()
    resumed.load_state_dict(dl.state_dict())
    assert resumed.epoch == 1
    epoch1 = list(resumed)
    assert len(epoch1) == 6
    assert same_batches(epoch1, list(dl))  # dl's next iter() is epoch 1 too


@pytest.mark.timeout(60)
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("workers", [0, 2])
def test_a_stream_state_at_its_last_batch_resumes_at_the_next_epoch(
    workers: int, drop_last: bool
) -> None:
    kw: dict[str, Any] = {"batch_size": 3, "drop_last": drop_last, "num_workers": workers}
    dl = DataLoader(Stream(8), **kw)
    it = iter(dl)
    expected = 2 if drop_last else 3
    got = list(itertools.islice(it, expected))  # every batch, the iterator not yet exhausted
    state = dl.state_dict()
    assert (state["loader"]["epoch"], state["loader"]["next_batch"]) == (1, 0), state
    resumed = DataLoader(Stream(8), **kw)
    resumed.load_state_dict(state)
    assert [len(list(resumed)) for _ in range(2)] == [expected, expected]
    assert same_batches(list(resumed), got)


def test_an_old_style_state_at_the_end_of_an_epoch_resumes_at_the_next_epoch() -> None:
    dl = loader()
    it = iter(dl)
    list(itertools.islice(it, 6))
    state = dl.state_dict()
    state["loader"] = {"epoch": 0, "next_batch": 6, "delivered_above": []}  # as saved before
    resumed = loader()
    resumed.load_state_dict(state)
    assert resumed.epoch == 1
    assert same_batches(list(resumed), list(dl))


def test_resume_continues_the_epoch_then_follows_the_seed() -> None:
    ref = loader()
    epochs = [lists(ref) for _ in range(3)]
    dl = loader()
    it = iter(dl)
    got = lists(itertools.islice(it, 2))
    resumed = loader()
    resumed.load_state_dict(json.loads(json.dumps(dl.state_dict())))
    assert resumed.epoch == 0
    assert got + lists(resumed) == epochs[0]
    assert lists(resumed) == epochs[1]
    assert lists(resumed) == epochs[2]


def test_one_batch_and_len_do_not_move_the_position() -> None:
    dl = loader()
    it = iter(dl)
    next(it)
    before = dl.state_dict()
    dl.one_batch()
    len(dl)
    assert dl.state_dict() == before


def test_set_epoch_is_the_next_position() -> None:
    dl = loader()
    it = iter(dl)
    next(it)
    dl.set_epoch(5)
    assert dl.state_dict()["loader"] == {"epoch": 5, "next_batch": 0, "delivered_above": []}


def test_pending_state_is_reported_until_iterated() -> None:
    dl = loader()
    it = iter(dl)
    next(it)
    state = dl.state_dict()
    resumed = loader()
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state


def test_out_of_order_deliveries_are_skipped_on_resume() -> None:
    """A state with batches above the watermark (in_order=False) resumes without them."""
    ref = lists(loader())
    state = loader().state_dict()
    state["loader"].update(next_batch=1, delivered_above=[3, 4])
    dl = loader()
    dl.load_state_dict(state)
    assert dl.state_dict()["loader"]["delivered_above"] == [3, 4]
    got = lists(dl)
    assert got == [ref[i] for i in (1, 2, 5)]
    assert dl.state_dict()["loader"] == {"epoch": 1, "next_batch": 0, "delivered_above": []}


def test_progress_watermark_moves_over_early_batches() -> None:
    p = Progress(0, 2, above=[3, 5])
    p.next_batch = 3
    p.advance()
    assert p.next_batch == 4
    assert p.above == {5}


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("other", "named"),
    [
        ({"data": range(23)}, "dataset length: saved 22, this loader 23"),
        ({"batch_size": 5}, "batch size: saved 4, this loader 5"),
        ({"seed": 12}, "seed: saved 11, this loader 12"),
        ({"shuffle": False}, "shuffle: saved True, this loader False"),
        ({"drop_last": True}, "drop last: saved False, this loader True"),
    ],
)
def test_state_from_other_arguments_is_refused_naming_the_difference(
    other: dict[str, Any], named: str
) -> None:
    state = loader().state_dict()
    with pytest.raises(StateError, match=named):
        loader(**other).load_state_dict(state)


def test_other_sampler_is_refused() -> None:
    state = loader(shuffle=False, sampler=RandomSampler(22, replacement=True)).state_dict()
    with pytest.raises(StateError, match="sampler: saved 'RandomSampler"):
        loader(shuffle=False, sampler=RandomSampler(22)).load_state_dict(state)


def test_other_rank_is_refused_pointing_to_elastic_resume() -> None:
    state = loader(shard=(1, 2)).state_dict()
    with pytest.raises(StateError, match=r"rank 1 of 2, this loader is rank 0 of 2.*elastic"):
        loader(shard=(0, 2)).load_state_dict(state)
    with pytest.raises(StateError, match="rank 1 of 2, this loader is rank 0 of 1"):
        loader().load_state_dict(state)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda s: s.pop("loader"), "no 'loader' key"),
        (lambda s: s.update(version=99), "version 99 is not supported"),
        (lambda s: s["loader"].update(next_batch=-1), "loader.next_batch must be a non-negative"),
        (lambda s: s["loader"].update(epoch="1"), "loader.epoch must be a non-negative int"),
        (lambda s: s["loader"].update(delivered_above=[0]), "above next_batch=0"),
        (lambda s: s["loader"].update(next_batch=7), "batch 7 of epoch 0, which has only 6"),
        (lambda s: s["shard"].update(rank=3), "rank=3 outside world_size=1"),
        (lambda s: s["shard"].update(domain=None), "shard.domain must be a dict"),
    ],
)
def test_malformed_state_is_refused(edit: Any, named: str) -> None:
    state = loader().state_dict()
    edit(state)
    with pytest.raises(StateError, match=named):
        loader().load_state_dict(state)


def test_not_a_dict_is_refused() -> None:
    with pytest.raises(StateError, match="must be a dict"):
        parse_state("epoch 3")


def test_different_workers_are_accepted() -> None:
    """The state does not record workers: the order does not depend on them."""
    state = loader().state_dict()
    assert "num_workers" not in json.dumps(state)


# -- streams ------------------------------------------------------------------------------


class Stream:
    """A re-iterable without len: resumed by re-reading and skipping."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reads = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        for i in range(self.n):
            self.reads += 1
            yield i


class StatefulStream:
    """A stream with its own state: iter() continues from a loaded state (torchdata's contract)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pos = 0
        self.loaded: int | None = None
        self.reads = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        start, self.loaded = (self.loaded or 0), None
        for i in range(start, self.n):
            self.pos = i + 1
            self.reads += 1
            yield {"x": i * 10}

    def state_dict(self) -> dict[str, int]:
        return {"pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.loaded = state["pos"]


def test_stream_resume_rereads_and_skips() -> None:
    dl = DataLoader(Stream(20), batch_size=3, shuffle=True, seed=1, shuffle_buffer=4)
    ref = lists(dl)
    dl = DataLoader(Stream(20), batch_size=3, shuffle=True, seed=1, shuffle_buffer=4)
    it = iter(dl)
    got = lists(itertools.islice(it, 4))
    assert dl.state_dict()["source"] is None
    data = Stream(20)
    resumed = DataLoader(data, batch_size=3, shuffle=True, seed=1, shuffle_buffer=4)
    resumed.load_state_dict(dl.state_dict())
    assert got + lists(resumed) == ref
    assert data.reads == 20  # the cost: the consumed items are read again


def test_stream_with_its_own_state_resumes_without_rereading() -> None:
    make = lambda data: DataLoader(data, batch_size=3, seed=1)  # noqa: E731
    ref = [b["x"].tolist() for b in make(StatefulStream(20))]
    dl = make(StatefulStream(20))
    it = iter(dl)
    got = [next(it)["x"].tolist() for _ in range(4)]
    state = json.loads(json.dumps(dl.state_dict()))
    assert state["source"] == {"items_consumed": 12, "state": {"pos": 12}}
    data = StatefulStream(20)
    resumed = make(data)
    resumed.load_state_dict(state)
    assert resumed.state_dict()["source"] == state["source"]
    assert got + [b["x"].tolist() for b in resumed] == ref
    assert data.reads == 8  # only what was left


def test_stateful_stream_passes_check_resume() -> None:
    check_resume(lambda: DataLoader(StatefulStream(11), batch_size=2, seed=0), epochs=1)


def test_elastic_resume_of_a_stream_is_refused() -> None:
    state = DataLoader(Stream(10), batch_size=2, seed=0, shard=(0, 2)).state_dict()
    with pytest.raises(StateError, match=r"elastic resume.*a stream"):
        DataLoader(Stream(10), batch_size=2, seed=0, shard=(0, 3)).load_state_dict([state])


# -- elastic resume (W -> W') in one process ----------------------------------------------


def run_ranks(world: int, stops: list[int], states: list[dict[str, Any]] | None, **kw: Any):  # type: ignore[no-untyped-def]
    """Each rank takes ``stops[rank]`` batches (all if -1); returns delivered items and states."""
    delivered, out = [], []
    for rank in range(world):
        dl = loader(shard=(rank, world), **kw)
        if states is not None:
            dl.load_state_dict(states)
        it = iter(dl)
        take = None if stops[rank] < 0 else stops[rank]
        delivered.extend(x for b in itertools.islice(it, take) for x in np.asarray(b).tolist())
        out.append(json.loads(json.dumps(dl.state_dict())))
    return delivered, out


@pytest.mark.parametrize("uneven", ["pad", "allow", "drop"])
def test_elastic_4_to_3_delivers_the_rest_exactly_once(uneven: str) -> None:
    kw = {"data": range(101), "batch_size": 3, "uneven": uneven}
    first, states = run_ranks(4, [3, 5, 4, 3], None, **kw)
    second, states2 = run_ranks(3, [-1, -1, -1], states, **kw)
    counts = Counter(first + second)
    if uneven == "allow":
        assert sorted(counts) == list(range(101))
        assert set(counts.values()) == {1}
    elif uneven == "pad":
        assert set(counts) == set(range(101))
        assert sum(counts.values()) - 101 <= 3 + 2  # pad repeats in each world
    else:
        assert set(counts.values()) == {1}
        assert 101 - len(counts) <= 3 + 2
    # the next epoch is the new world's ordinary epoch
    nxt = [x for rank in range(3) for b in _next_epoch(states2[rank], rank, kw) for x in b]
    if uneven == "drop":
        assert len(set(nxt)) == len(nxt) == 99
    else:
        assert sorted(set(nxt)) == list(range(101))


def _next_epoch(state: dict[str, Any], rank: int, kw: dict[str, Any]) -> list[list[int]]:
    dl = loader(shard=(rank, 3), **kw)
    dl.load_state_dict(state)
    assert dl.epoch == 1
    return lists(dl)


def test_elastic_twice_and_then_a_plain_resume() -> None:
    kw = {"data": range(90), "batch_size": 2, "uneven": "allow"}
    a, s4 = run_ranks(4, [2, 2, 3, 1], None, **kw)
    b, s3 = run_ranks(3, [2, 4, 1], s4, **kw)
    assert all(s["shard"]["domain"]["start"] > 0 for s in s3)
    c, s2 = run_ranks(2, [3, 3], s3, **kw)
    # a plain resume of each new rank within the elastic epoch
    d = []
    for rank in range(2):
        dl = loader(shard=(rank, 2), **kw)
        dl.load_state_dict(s2[rank])
        d.extend(x for batch in dl for x in batch.tolist())
    counts = Counter(a + b + c + d)
    assert sorted(counts) == list(range(90))
    assert set(counts.values()) == {1}


def test_elastic_from_ranks_that_finished_the_epoch() -> None:
    kw = {"data": range(20), "batch_size": 2, "uneven": "allow"}
    a, s = run_ranks(2, [-1, 2], None, **kw)
    assert s[0]["loader"]["epoch"] == 1
    b, _ = run_ranks(3, [-1, -1, -1], s, **kw)
    assert sorted(a + b) == list(range(20))


def test_elastic_from_an_unsharded_job() -> None:
    dl = loader(data=range(30), batch_size=3)
    it = iter(dl)
    a = [x for b in itertools.islice(it, 4) for x in b.tolist()]
    b, _ = run_ranks(2, [-1, -1], [dl.state_dict()], data=range(30), batch_size=3, uneven="allow")
    assert sorted(a + b) == list(range(30))


def test_elastic_len_is_the_remainders() -> None:
    kw = {"data": range(40), "batch_size": 2, "uneven": "pad"}
    _, states = run_ranks(2, [5, 5], None, **kw)
    dl = loader(shard=(0, 4), **kw)
    dl.load_state_dict(states)
    assert len(dl) == 3  # 20 items left over 4 ranks: 5 each, batches of 2


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda s: s[:1], r"one state per old rank: got ranks \[\(0, 2\)\]"),
        (lambda s: [s[0], s[0]], "one state per old rank"),
        (lambda s: [], "empty list"),
    ],
)
def test_bad_elastic_lists_are_refused(edit: Any, named: str) -> None:
    _, states = run_ranks(2, [1, 1], None)
    with pytest.raises(StateError, match=named):
        loader(shard=(0, 3)).load_state_dict(edit(states))


def test_elastic_states_from_different_epochs_are_refused() -> None:
    _, states = run_ranks(2, [1, 1], None)
    states[1]["loader"]["epoch"] = 4
    with pytest.raises(StateError, match="different epochs"):
        loader(shard=(0, 3)).load_state_dict(states)


def test_elastic_with_a_user_sampler_is_refused() -> None:
    state = loader(shuffle=False, sampler=[3, 2, 1]).state_dict()
    with pytest.raises(StateError, match="a user's sampler"):
        loader(shuffle=False, sampler=[3, 2, 1]).load_state_dict([state])


def test_weighted_and_batch_samplers_resume() -> None:
    check_resume(
        lambda: DataLoader(
            range(15),
            batch_size=None,
            batch_sampler=BatchSampler(WeightedRandomSampler(np.arange(15) + 1.0, 13), 4, False),
            seed=2,
        )
    )
