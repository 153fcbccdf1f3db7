"""BucketBatchSampler: batches of similar lengths (by count or token budget), a pure function
of (seed, epoch), sharded by batch across ranks, resumed exactly; ShardShuffleSampler too."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minibatcher import DataLoader
from minibatcher.samplers import BucketBatchSampler, ShardShuffleSampler
from minibatcher.testing import check_resume

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def w10_lengths(n: int = 100_000, seed: int = 0) -> np.ndarray:
    """W10's lengths (BENCHMARKS.md): round(lognormal(ln 100, 1.1)) clipped to 8..2048."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(np.log(100), 1.1, n)), 8, 2048).astype(np.int64)


def epoch_lists(dl: DataLoader[Any]) -> list[list[int]]:
    return [b.tolist() for b in dl]


lengths_st = st.lists(st.integers(0, 60), min_size=0, max_size=90)


@SETTINGS
@given(
    lengths=lengths_st,
    batch_size=st.integers(1, 9),
    seed=st.integers(0, 2**32),
    drop_last=st.booleans(),
    window=st.integers(1, 5),
)
def test_fixed_size_batches_cover_the_epoch_once(
    lengths: list[int], batch_size: int, seed: int, drop_last: bool, window: int
) -> None:
    sampler = BucketBatchSampler(
        lengths, batch_size, seed=seed, drop_last=drop_last, window=window
    )
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        flat = sorted(i for b in batches for i in b)
        assert len(batches) == len(sampler)
        if drop_last:
            assert all(len(b) == batch_size for b in batches)
            assert len(flat) == len(lengths) // batch_size * batch_size
            assert len(set(flat)) == len(flat)
        else:
            assert flat == list(range(len(lengths)))
            assert sum(len(b) < batch_size for b in batches) <= 1
        assert batches == [b.tolist() for b in sampler.batches(seed, epoch)]  # pure


@SETTINGS
@given(lengths=lengths_st, max_tokens=st.integers(60, 200), cap=st.none() | st.integers(1, 6),
       seed=st.integers(0, 2**32))
def test_token_budget_bounds_every_batch(
    lengths: list[int], max_tokens: int, cap: int | None, seed: int
) -> None:
    sampler = BucketBatchSampler(lengths, cap, max_tokens=max_tokens, seed=seed, window=2)
    batches = sampler.batches(seed, 3)
    assert sorted(i for b in batches for i in b.tolist()) == list(range(len(lengths)))
    for b in batches:
        assert len(b) * max(int(np.max(np.asarray(lengths)[b])), 0) <= max_tokens
        assert cap is None or len(b) <= cap


@SETTINGS
@given(
    n=st.integers(0, 70),
    batch_size=st.integers(1, 6),
    world=st.integers(1, 4),
    uneven=st.sampled_from(["pad", "drop", "allow"]),
    seed=st.integers(0, 2**16),
)
def test_ranks_split_the_batches(
    n: int, batch_size: int, world: int, uneven: str, seed: int
) -> None:
    lengths = np.random.default_rng(seed).integers(1, 50, n)
    reference = BucketBatchSampler(lengths, batch_size).batches(seed, 0)
    shares = []
    for rank in range(world):
        sampler = BucketBatchSampler(lengths, batch_size)
        dl = DataLoader(range(n), batch_sampler=sampler, seed=seed, shard=(rank, world),
                        uneven=uneven)
        shares.append(epoch_lists(dl))
        assert len(dl) == len(shares[-1])
    counts = {len(s) for s in shares}
    if uneven != "allow":
        assert len(counts) <= 1  # every rank takes the same number of steps
    got = sorted(tuple(b) for s in shares for b in s)
    whole = sorted(tuple(b.tolist()) for b in reference)
    if uneven == "allow":
        assert got == whole
    elif uneven == "drop":
        assert set(got) <= set(whole)
        assert len(got) == len(whole) // world * world
    else:
        assert set(got) == set(whole)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 40), batch_size=st.integers(2, 6), seed=st.integers(0, 2**16),
       tokens=st.booleans())
def test_resume_at_every_batch(n: int, batch_size: int, seed: int, tokens: bool) -> None:
    lengths = np.random.default_rng(seed).integers(1, 20, n)
    kwargs: dict[str, Any] = {"max_tokens": 40} if tokens else {}
    check_resume(lambda: DataLoader(
        list(range(n)), batch_sampler=BucketBatchSampler(lengths, batch_size, **kwargs),
        seed=seed,
    ))


def test_order_is_a_function_of_the_seed_and_epoch_only() -> None:
    lengths = w10_lengths(5_000)

    def run(seed: int, workers: int = 0) -> list[list[list[int]]]:
        with DataLoader(range(5_000), batch_sampler=BucketBatchSampler(lengths, 32), seed=seed,
                        num_workers=workers, worker_type="thread") as dl:
            return [epoch_lists(dl) for _ in range(2)]

    first = run(7)
    assert first == run(7, workers=2)
    assert first[0] != first[1]
    assert first != run(8)
    own_seed = BucketBatchSampler(lengths, 32, seed=7)
    assert epoch_lists(DataLoader(range(5_000), batch_sampler=own_seed, seed=99)) == first[0]


def test_padding_on_w10_lengths_is_under_the_hand_written_sampler() -> None:
    lengths = w10_lengths()
    by_count = BucketBatchSampler(lengths, 64)
    assert by_count.padding(seed=0) <= 0.114  # BENCHMARKS.md W10b: 11.4%
    budget = BucketBatchSampler(lengths, max_tokens=64 * 256)
    assert budget.padding(seed=0) <= 0.114
    unbucketed = BucketBatchSampler(lengths, 64, window=1)
    assert unbucketed.padding(seed=0) > 0.5


def test_without_shuffle_batches_are_sorted_by_length() -> None:
    lengths = [5, 1, 9, 2, 8, 3, 7]
    batches = list(BucketBatchSampler(lengths, 3, shuffle=False))
    assert batches == [[1, 3, 5], [0, 6, 4], [2]]


def test_more_lengths_than_items_is_refused() -> None:
    with pytest.raises(IndexError, match="has 5 lengths, more than the 4 items"):
        list(DataLoader(range(4), batch_sampler=BucketBatchSampler([1] * 5, 2)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lengths": [1, 2]}, "needs batch_size or max_tokens"),
        ({"lengths": [1, 2], "batch_size": 0}, "batch_size must be a positive int, got 0"),
        ({"lengths": [[1], [2]], "batch_size": 2}, "lengths must be a 1-D sequence"),
        ({"lengths": [1, -2], "batch_size": 2}, "lengths must be non-negative"),
        ({"lengths": [1, 50], "max_tokens": 40}, r"lengths\[1\] = 50 exceeds max_tokens=40"),
        ({"lengths": [1], "max_tokens": 4, "drop_last": True}, "drop_last=True applies"),
        ({"lengths": [1], "batch_size": 1, "shuffle": 1}, "shuffle must be a bool"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BucketBatchSampler(**kwargs)


@SETTINGS
@given(sizes=st.lists(st.integers(0, 9), max_size=6), buffer=st.integers(1, 12),
       seed=st.integers(0, 2**32))
def test_shard_shuffle_is_a_permutation_local_to_the_shards(
    sizes: list[int], buffer: int, seed: int
) -> None:
    sampler = ShardShuffleSampler(sizes, buffer_size=buffer)
    order = sampler.order(seed, 0).slice(0, len(sampler)).tolist()
    assert sorted(order) == list(range(sum(sizes)))
    assert order == sampler.order(seed, 0).slice(0, len(sampler)).tolist()
    if buffer == 1:  # whole shards, each in order
        starts = np.cumsum([0, *sizes])
        runs = [list(range(starts[s], starts[s + 1])) for s in range(len(sizes))]
        rebuilt, rest = [], list(order)
        while rest:
            run = next(r for r in runs if r and r[0] == rest[0])
            rebuilt.append(run)
            rest = rest[len(run):]
        assert sorted(map(tuple, rebuilt)) == sorted(tuple(r) for r in runs if r)
