"""Rank sharding: disjoint shares that cover the epoch, pad/drop/allow, shard='auto', the
elastic remainder (W ranks -> W' ranks), and the loader's options around them."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minibatcher import ConfigError, DataLoader
from minibatcher.distributed import detect_rank, resolve_seed, resolve_shard
from minibatcher.samplers import ArrayOrder, RangeOrder
from minibatcher.samplers.shard import (
    Domain,
    RankProgress,
    RemainderOrder,
    ShardedOrder,
    ShardSpec,
    remaining_after,
    shard_count,
    shard_iter,
    shard_order,
)

UNEVEN = ("pad", "drop", "allow")


def shares(n: int, world: int, uneven: str, seed: int = 0) -> list[list[int]]:
    base = ArrayOrder(np.random.default_rng(seed).permutation(n).astype(np.int64))
    return [
        ShardedOrder(base, ShardSpec(r, world, uneven)).slice(0, n + world).tolist()
        for r in range(world)
    ]


@settings(deadline=None)
@given(n=st.integers(0, 200), world=st.integers(1, 9), uneven=st.sampled_from(UNEVEN))
def test_shares_cover_the_epoch_by_the_uneven_rule(n: int, world: int, uneven: str) -> None:
    """Union = the epoch (pad: plus <= W-1 repeats; drop: minus n % W); pad/drop: equal counts."""
    parts = shares(n, world, uneven)
    counts = [len(p) for p in parts]
    flat = Counter(itertools.chain.from_iterable(parts))
    if uneven == "allow":
        assert sorted(flat) == list(range(n))
        assert set(flat.values()) <= {1}
        assert max(counts, default=0) - min(counts, default=0) <= 1
    elif uneven == "drop":
        assert sum(counts) == n - n % world
        assert set(flat.values()) <= {1}
        assert len(set(counts)) == 1
    else:
        assert set(flat) == set(range(n))
        assert sum(counts) - n == (-n) % world if n else sum(counts) == 0
        assert len(set(counts)) == 1
        assert all(v <= 1 + (world - 1) // max(n, 1) + 1 for v in flat.values())
    assert counts == [shard_count(n, r, world, uneven) for r in range(world)]


def test_pad_repeats_the_start_of_the_order() -> None:
    """Pad positions wrap to the order's first positions, as torch's DistributedSampler does."""
    order = RangeOrder(10)
    parts = [ShardedOrder(order, ShardSpec(r, 4)).slice(0, 3).tolist() for r in range(4)]
    assert parts == [[0, 4, 8], [1, 5, 9], [2, 6, 0], [3, 7, 1]]


def test_take_in_any_order() -> None:
    view = ShardedOrder(RangeOrder(10), ShardSpec(3, 4))
    assert view.take(np.array([2, 0, 1])).tolist() == [1, 3, 7]


def test_pad_with_fewer_items_than_ranks() -> None:
    parts = [ShardedOrder(RangeOrder(2), ShardSpec(r, 5)).slice(0, 9).tolist() for r in range(5)]
    assert parts == [[0], [1], [0], [1], [0]]


@settings(deadline=None)
@given(n=st.integers(0, 60), world=st.integers(1, 7), uneven=st.sampled_from(UNEVEN))
def test_shard_iter_equals_the_sliced_shard(n: int, world: int, uneven: str) -> None:
    """Streams and user samplers (no len) are split by the same rule as sliced orders."""
    for rank in range(world):
        spec = ShardSpec(rank, world, uneven)
        assert list(shard_iter(iter(range(n)), spec)) == (
            ShardedOrder(RangeOrder(n), spec).slice(0, n + world).tolist()
        )


@settings(deadline=None)
@given(
    n=st.integers(1, 300),
    data=st.data(),
)
def test_remainder_order_skips_excluded_positions(n: int, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, n))
    excluded = (
        data.draw(st.sets(st.integers(start + 1, n - 1), max_size=20)) if start < n - 1 else set()
    )
    domain = Domain(start, tuple(sorted(excluded)))
    base = ArrayOrder(np.arange(n, dtype=np.int64)[::-1].copy())
    rem = RemainderOrder(base, domain)
    kept = [p for p in range(start, n) if p not in excluded]
    assert len(rem) == len(kept) == domain.size(n)
    assert rem.slice(0, n).tolist() == [n - 1 - p for p in kept]


def simulate(
    n: int,
    world: int,
    uneven: str,
    batch: int,
    drop_last: bool,
    domain: Domain,
    data: st.DataObject,
) -> tuple[list[RankProgress], set[int]]:
    """Random progress of each old rank (in-order watermark + a few out-of-order batches)."""
    order = shard_order(RangeOrder(n), None, domain)
    progress, delivered = [], set()
    for r in range(world):
        sharded = ShardedOrder(order, ShardSpec(r, world, uneven))
        nb = len(sharded) // batch if drop_last else -(-len(sharded) // batch)
        k = data.draw(st.integers(0, nb), label=f"watermark {r}")
        above = (
            data.draw(st.sets(st.integers(k + 1, nb - 1), max_size=3), label=f"above {r}")
            if k + 1 < nb
            else set()
        )
        for s in [*range(k), *above]:
            delivered.update(sharded.slice(s * batch, (s + 1) * batch).tolist())
        progress.append(RankProgress(r, k, tuple(sorted(above))))
    return progress, delivered


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(0, 120),
    old=st.integers(1, 6),
    new=st.integers(1, 6),
    batch=st.integers(1, 5),
    drop_last=st.booleans(),
    uneven=st.sampled_from(UNEVEN),
    data=st.data(),
)
def test_elastic_remainder_is_exactly_what_was_not_delivered(
    n: int, old: int, new: int, batch: int, drop_last: bool, uneven: str, data: st.DataObject
) -> None:
    """After W old ranks stopped anywhere, the new world's shares deliver each undelivered item
    exactly once (pad: plus repeats; drop: minus < W' items); a second elastic step composes."""
    domain = Domain()
    undelivered = set(range(n))
    for step, world in enumerate((old, new)):
        progress, delivered = simulate(n, world, uneven, batch, drop_last, domain, data)
        assert not (delivered - undelivered), f"step {step}: delivered twice"
        undelivered -= delivered
        domain = remaining_after(n, domain, world, uneven, batch, drop_last, progress)
        rem = shard_order(RangeOrder(n), None, domain)
        assert sorted(rem.slice(0, n).tolist()) == sorted(undelivered)
    # the final world takes it all in allow mode: exact coverage
    final = [
        ShardedOrder(shard_order(RangeOrder(n), None, domain), ShardSpec(r, 3, "allow"))
        for r in range(3)
    ]
    got = Counter(itertools.chain.from_iterable(o.slice(0, n).tolist() for o in final))
    assert set(got) == undelivered
    assert set(got.values()) <= {1}


def test_elastic_remainder_of_ranks_in_step_is_a_suffix() -> None:
    """Ranks that advanced together leave a suffix of the order: no excluded list at all."""
    progress = [RankProgress(r, 3) for r in range(4)]
    domain = remaining_after(100, Domain(), 4, "pad", 5, False, progress)
    assert domain == Domain(start=60)


def test_finished_ranks_count_their_whole_share() -> None:
    progress = [RankProgress(0, 0, finished=True), RankProgress(1, 1)]
    domain = remaining_after(10, Domain(), 2, "pad", 2, False, progress)
    rem = shard_order(RangeOrder(10), None, domain).slice(0, 10).tolist()
    assert rem == [5, 7, 9]


# -- the loader -------------------------------------------------------------------------------


@pytest.mark.parametrize("uneven", UNEVEN)
@pytest.mark.parametrize("data", [range(23), list(range(23)), np.arange(23)])
def test_loader_shards_are_disjoint_and_cover(uneven: str, data: object) -> None:
    got = [
        [
            x
            for b in DataLoader(
                data, batch_size=2, shuffle=True, seed=5, shard=(r, 4), uneven=uneven
            )
            for x in np.asarray(b).tolist()
        ]
        for r in range(4)
    ]
    flat = Counter(itertools.chain.from_iterable(got))
    if uneven == "pad":
        assert set(flat) == set(range(23))
        assert sum(flat.values()) == 24
        assert len({len(g) for g in got}) == 1
    elif uneven == "drop":
        assert sum(flat.values()) == 20
        assert set(flat.values()) == {1}
    else:
        assert sorted(flat) == list(range(23))


def test_loader_len_is_this_ranks_batches() -> None:
    lens = [
        len(DataLoader(range(23), batch_size=2, seed=0, shard=(r, 4), uneven="allow"))
        for r in range(4)
    ]
    assert lens == [3, 3, 3, 3]
    lens = [
        len(DataLoader(range(25), batch_size=2, seed=0, shard=(r, 4), uneven="allow"))
        for r in range(4)
    ]
    assert lens == [4, 3, 3, 3]


def test_every_rank_same_order_new_each_epoch() -> None:
    dls = [
        DataLoader(range(40), batch_size=5, shuffle=True, seed=9, shard=(r, 2)) for r in range(2)
    ]
    epochs = [[sorted(x for dl in dls for b in dl for x in b.tolist())] for _ in range(2)]
    assert all(e == [list(range(40))] for e in epochs)
    a = [
        b.tolist() for b in DataLoader(range(40), batch_size=5, shuffle=True, seed=9, shard=(0, 2))
    ]
    dl = DataLoader(range(40), batch_size=5, shuffle=True, seed=9, shard=(0, 2))
    list(dl)
    assert [b.tolist() for b in dl] != a


class Stream:
    """An iterable without len (read as a stream)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(range(self.n))


@pytest.mark.parametrize("shuffle", [False, True])
def test_streams_are_sharded(shuffle: bool) -> None:
    got = [
        [
            x
            for b in DataLoader(
                Stream(19), batch_size=3, shuffle=shuffle, seed=2, shuffle_buffer=4, shard=(r, 3)
            )
            for x in b.tolist()
        ]
        for r in range(3)
    ]
    assert {len(g) for g in got} == {7}
    assert set(itertools.chain.from_iterable(got)) == set(range(19))


def test_user_sampler_and_batch_sampler_are_sharded() -> None:
    got = [
        [
            x
            for b in DataLoader(
                range(10), batch_size=2, sampler=list(range(9, -1, -1)), seed=0, shard=(r, 3)
            )
            for x in b.tolist()
        ]
        for r in range(3)
    ]
    assert sorted(itertools.chain.from_iterable(got)) == sorted([*range(10), 9, 8])
    batches = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    got = [
        [
            b.tolist()
            for b in DataLoader(
                range(10), batch_sampler=batches, seed=0, shard=(r, 2), uneven="allow"
            )
        ]
        for r in range(2)
    ]
    assert got == [[[0, 1], [4, 5], [8, 9]], [[2, 3], [6, 7]]]


def test_shard_without_seed_and_without_group_says_pass_a_seed() -> None:
    with pytest.raises(ConfigError, match="pass seed="):
        DataLoader(range(10), shard=(0, 2))


def test_one_rank_is_no_sharding() -> None:
    dl = DataLoader(range(10), batch_size=3, shard=(0, 1))
    assert len(dl) == 4


def test_shard_auto_reads_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert resolve_shard("auto", "pad") is None
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert detect_rank() == (2, 3)
    assert resolve_shard("auto", "drop") == ShardSpec(2, 3, "drop")
    dl = DataLoader(range(30), batch_size=4, seed=1, shard="auto")
    assert next(b.tolist() for b in dl) == [2, 5, 8, 11]
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ConfigError, match="0 <= RANK < WORLD_SIZE"):
        resolve_shard("auto", "pad")
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ConfigError, match="not ints"):
        resolve_shard("auto", "pad")


def test_seed_is_drawn_without_sharding() -> None:
    assert resolve_seed(None, None) >= 0
    assert resolve_seed(7, ShardSpec(0, 2)) == 7


@pytest.mark.parametrize("bad", [(2, 2), (-1, 2), (0, 0), (0,), "all", (0.0, 2)])
def test_bad_shard_is_refused_at_construction(bad: object) -> None:
    with pytest.raises(ConfigError, match="shard must be"):
        DataLoader(range(10), shard=bad, seed=0)  # type: ignore[arg-type]


def test_bad_uneven_is_refused() -> None:
    with pytest.raises(ConfigError, match="uneven must be"):
        DataLoader(range(10), shard=(0, 2), seed=0, uneven="spread")  # type: ignore[arg-type]


def test_views_print_compactly() -> None:
    view = ShardedOrder(RangeOrder(10), ShardSpec(1, 4))
    assert str(ShardSpec(1, 4)) == "Shard(1/4, uneven=pad)"
    assert "ShardedOrder(Shard(1/4, uneven=pad), len=3" in repr(view)


def test_shard_auto_never_imports_torch() -> None:
    """Without torch imported there can be no process group: shard='auto' reads the environment
    and leaves torch unimported."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from minibatcher import DataLoader\n"
        "dl = DataLoader(range(10), batch_size=2, seed=0, shard='auto')\n"
        "assert len(dl) == 2, len(dl)\n"
        "assert 'torch' not in sys.modules\n"
    )
    env = {**os.environ, "RANK": "1", "WORLD_SIZE": "3"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
