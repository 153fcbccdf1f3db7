"""ShardShuffleSampler: shards in a random order, items shuffled within blocks, computed per
slice (nothing per item materialised), a pure function of (seed, epoch), exactly resumable."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minibatcher import DataLoader
from minibatcher.samplers import ShardShuffleSampler
from minibatcher.testing import check_resume

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    sizes=st.lists(st.integers(0, 12), max_size=8),
    buffer=st.integers(1, 15),
    seed=st.integers(0, 2**32),
    cut=st.tuples(st.integers(0, 100), st.integers(0, 100)),
)
def test_a_permutation_local_to_blocks_and_the_same_by_any_slice(
    sizes: list[int], buffer: int, seed: int, cut: tuple[int, int]
) -> None:
    sampler = ShardShuffleSampler(sizes, buffer_size=buffer)
    order = sampler.order(seed, 0)
    n = sum(sizes)
    full = order.slice(0, n)
    assert sorted(full.tolist()) == list(range(n))
    # the same order from a fresh sampler, by any slice or positions (nothing kept between)
    again = ShardShuffleSampler(sizes, buffer_size=buffer).order(seed, 0)
    lo, hi = sorted(cut)
    assert again.slice(lo, hi).tolist() == full[lo:hi].tolist()
    positions = np.random.default_rng(seed).permutation(n)
    assert again.take(positions).tolist() == full[positions].tolist()
    # without the block shuffle: whole shards in a random order, each in order
    grouped = ShardShuffleSampler(sizes, buffer_size=1).order(seed, 0).slice(0, n)
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    shard_of = np.searchsorted(starts, grouped, side="right") - 1
    runs = [int(s) for i, s in enumerate(shard_of) if i == 0 or s != shard_of[i - 1]]
    assert sorted(runs) == [s for s, size in enumerate(sizes) if size]
    for shard in runs:
        assert grouped[shard_of == shard].tolist() == list(range(starts[shard], starts[shard + 1]))
    # each item stays in its block of buffer positions of the shard order
    where = np.empty(n, dtype=np.int64)
    where[grouped] = np.arange(n)
    assert (where[full] // buffer == np.arange(n) // buffer).all()


def test_orders_differ_by_epoch_and_seed() -> None:
    sampler = ShardShuffleSampler([50] * 8, buffer_size=20)
    e0, e1 = (sampler.order(0, e).slice(0, 400).tolist() for e in (0, 1))
    other = sampler.order(1, 0).slice(0, 400).tolist()
    assert e0 != e1
    assert e0 != other
    assert sorted(e0) == sorted(e1) == list(range(400))


def test_memory_follows_the_shards_not_the_items() -> None:
    """Ten billion items in 100,000 shards: an order and a slice from its middle cost the
    shard table (a few MB), not the items (80 GB as an int64 permutation)."""
    sampler = ShardShuffleSampler(np.full(100_000, 100_000), buffer_size=50_000)
    tracemalloc.start()
    try:
        order = sampler.order(7, 3)
        batch = order.slice(5_000_000_000, 5_000_000_256)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(order) == 10_000_000_000
    assert len(set(batch.tolist())) == 256
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("shard", [None, (1, 2)])
def test_resume_at_every_batch(shard: tuple[int, int] | None) -> None:
    sampler = ShardShuffleSampler([5, 9, 0, 7], buffer_size=4)
    check_resume(lambda: DataLoader(range(21), batch_size=3, sampler=sampler, seed=2,
                                    shard=shard))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="buffer_size must be a positive int, got 0"):
        ShardShuffleSampler([3], buffer_size=0)
    with pytest.raises(ValueError, match="shard_sizes must be a 1-D sequence"):
        ShardShuffleSampler([3, -1])
