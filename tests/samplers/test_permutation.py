"""LazyPermutation at scale: exact bijection for small n, and on a 10^10-item range (sampled,
never iterated in full) a bijection on what it visits and disjoint shares over 1,000 ranks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minibatcher import DataLoader
from minibatcher.samplers import LazyPermutation, RandomSampler
from minibatcher.samplers.shard import (
    Domain,
    RankProgress,
    ShardedOrder,
    ShardSpec,
    remaining_after,
    shard_order,
)

BIG = 10**10


@pytest.mark.parametrize("seed", [0, 1, 2**62])
def test_exact_bijection_for_every_small_n(seed: int) -> None:
    for n in range(1, 300):
        values = LazyPermutation(n, seed, epoch=n % 3).slice(0, n)
        assert values.dtype == np.int64
        assert np.array_equal(np.sort(values), np.arange(n)), n


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5000), seed=st.integers(0, 2**63 - 1), epoch=st.integers(0, 1000))
def test_bijection_and_pure_function_of_seed_epoch(n: int, seed: int, epoch: int) -> None:
    perm = LazyPermutation(n, seed, epoch)
    values = perm.slice(0, n)
    assert np.array_equal(np.sort(values), np.arange(n))
    assert np.array_equal(LazyPermutation(n, seed, epoch).slice(0, n), values)
    positions = np.arange(n)[::-1].copy()
    assert np.array_equal(perm.take(positions), values[::-1])


def test_epochs_and_seeds_give_different_orders() -> None:
    a = LazyPermutation(1000, 0, 0).slice(0, 1000)
    assert not np.array_equal(a, LazyPermutation(1000, 0, 1).slice(0, 1000))
    assert not np.array_equal(a, LazyPermutation(1000, 1, 0).slice(0, 1000))


def test_positions_out_of_range_are_refused() -> None:
    with pytest.raises(IndexError, match=r"\[0, 10\)"):
        LazyPermutation(10, 0, 0).take(np.array([10]))


def test_ten_billion_items_sampled_positions_are_a_bijection() -> None:
    """10^10 positions: about 450,000 sampled (contiguous runs and random ones) map to distinct
    values in range, spread over the whole range, in O(1) memory per position."""
    perm = LazyPermutation(BIG, seed=123, epoch=4)
    assert len(perm) == BIG
    rng = np.random.default_rng(0)
    random_positions = np.unique(rng.integers(0, BIG, 300_000))
    runs = np.concatenate([np.arange(s, s + 50_000) for s in (0, BIG // 2, BIG - 50_000)])
    positions = np.unique(np.concatenate([random_positions, runs]))
    values = perm.take(positions)
    assert values.min() >= 0
    assert values.max() < BIG
    assert len(np.unique(values)) == len(positions)  # injective on what it visits
    # values are spread over the range: each tenth gets about a tenth of them
    share = np.bincount(values // (BIG // 10), minlength=10) / len(values)
    assert np.all(np.abs(share - 0.1) < 0.01)
    # the same positions give the same values, in any grouping
    assert np.array_equal(perm.take(positions[::-1]), values[::-1])
    assert np.array_equal(perm.slice(BIG - 5, BIG + 5), perm.take(np.arange(BIG - 5, BIG)))


def test_ten_billion_items_over_1000_ranks_stay_disjoint() -> None:
    """1,000 simulated ranks each take their first 200 positions of a 10^10 epoch: no value is
    taken twice, and each rank's share is the interleaved slice of the one global order."""
    n, world = BIG + 7, 1000  # 7 over a multiple: 993 pad repeats at the end
    perm = LazyPermutation(n, seed=7, epoch=0)
    taken = []
    for rank in range(world):
        share = ShardedOrder(perm, ShardSpec(rank, world, "pad"))
        assert len(share) == -(-n // world)
        head = share.slice(0, 200)
        taken.append(head)
        if rank % 97 == 0:
            assert np.array_equal(head, perm.take(np.arange(200) * world + rank))
    flat = np.concatenate(taken)
    assert len(np.unique(flat)) == len(flat) == 200 * world
    assert np.array_equal(np.sort(flat), np.sort(perm.slice(0, 200 * world)))
    # the last local position: real for ranks < 7, a repeat of the epoch's start beyond
    last = len(ShardedOrder(perm, ShardSpec(0, world))) - 1
    tails = [
        int(ShardedOrder(perm, ShardSpec(r, world)).take(np.array([last]))[0]) for r in range(world)
    ]
    assert tails[7:] == perm.slice(0, world - 7).tolist()
    assert len(set(tails)) == world


def test_loader_over_ten_billion_items_starts_and_resumes_at_once() -> None:
    """RandomSampler switches to the lazy permutation above its threshold: a loader over
    range(10^10), sharded over 1,000 ranks, gives its first batch and resumes deep in the epoch
    without materialising anything."""
    dl = DataLoader(range(BIG), batch_size=4, shuffle=True, seed=3, shard=(999, 1000))
    assert isinstance(RandomSampler(BIG).order(3, 0), LazyPermutation)
    assert len(dl) == BIG // 1000 // 4
    it = iter(dl)
    first = [next(it).tolist() for _ in range(3)]
    state = dl.state_dict()
    state["loader"]["next_batch"] = 1_000_000
    resumed = DataLoader(range(BIG), batch_size=4, shuffle=True, seed=3, shard=(999, 1000))
    resumed.load_state_dict(state)
    batch = next(iter(resumed))
    perm = LazyPermutation(BIG, 3, 0)
    expected = perm.take((np.arange(4_000_000, 4_000_004)) * 1000 + 999)
    assert batch.tolist() == expected.tolist()
    assert first[0] == perm.take(np.arange(4) * 1000 + 999).tolist()


def test_elastic_remainder_of_ten_billion_items_costs_the_skew_only() -> None:
    """1,000 ranks 10^6 batches into a 10^10 epoch, a few batches apart: the remainder is one
    start position plus the few positions the ranks ahead delivered, computed at once."""
    world, batch, deep = 1000, 8, 10**6
    progress = [
        RankProgress(r, deep + (r % 3), (deep + 5,) if r == 7 else ()) for r in range(world)
    ]
    domain = remaining_after(BIG, Domain(), world, "pad", batch, False, progress)
    assert domain.start == deep * batch * world  # every rank got this far
    # ranks with r % 3 == 1 are one batch ahead, == 2 two batches; rank 7 also sent batch deep+5
    ahead = sum(batch * (r % 3) for r in range(world)) + batch
    assert len(domain.excluded) == ahead
    rem = shard_order(LazyPermutation(BIG, 0, 0), ShardSpec(0, 3), domain)
    assert len(rem) == -(-(BIG - domain.start - ahead) // 3)
    assert len(rem.slice(0, 4)) == 4
