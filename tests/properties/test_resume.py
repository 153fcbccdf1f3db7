"""Resume at every batch boundary equals the uninterrupted run (``check_resume``), for many data
kinds, shuffles, drop_last, samplers, streams with shuffle buffers, and with workers."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minibatcher import DataLoader
from minibatcher.samplers import (
    BatchSampler,
    RandomSampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)
from minibatcher.testing import check_resume

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class MapDataset:
    """A map-style dataset (len + getitem) returning dicts."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": np.full(2, i, dtype=np.float32), "name": f"item{i}"}


class Stream:
    """An iterable without len (read as a stream, re-iterable)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter([(i, str(i)) for i in range(self.n)])


def make_data(kind: str, n: int) -> Any:
    if kind == "range":
        return range(n)
    if kind == "tuples":
        return [(i, chr(97 + i % 26)) for i in range(n)]
    if kind == "array":
        return np.arange(n * 3, dtype=np.float64).reshape(n, 3)
    if kind == "columns":
        return {"a": np.arange(n), "b": [f"s{i}" for i in range(n)]}
    if kind == "map":
        return MapDataset(n)
    return Stream(n)


KINDS = ["range", "tuples", "array", "columns", "map", "stream"]


@SETTINGS
@given(
    kind=st.sampled_from(KINDS),
    n=st.integers(0, 30),
    batch_size=st.integers(1, 7),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**32),
    buffer=st.integers(1, 8),
)
def test_resume_equals_uninterrupted_for_any_data(
    kind: str, n: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int, buffer: int
) -> None:
    data = make_data(kind, n)
    check_resume(
        lambda: DataLoader(
            data,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            seed=seed,
            shuffle_buffer=buffer,
        )
    )


def samplers(n: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(
            lambda r, k: RandomSampler(n, replacement=r, num_samples=k),
            st.booleans(),
            st.integers(1, 2 * n),
        ),
        st.just(SequentialSampler(n)),
        st.builds(
            lambda k, r: WeightedRandomSampler(np.arange(n) + 0.5, min(k, n), r),
            st.integers(1, 2 * n),
            st.booleans(),
        ),
        st.builds(lambda s: SubsetRandomSampler(list(range(0, n, 2)), seed=s), st.integers(0, 9)),
    )


@SETTINGS
@given(data=st.data(), n=st.integers(1, 25), seed=st.integers(0, 2**32))
def test_resume_with_random_weighted_and_batch_samplers(
    data: st.DataObject, n: int, seed: int
) -> None:
    sampler = data.draw(samplers(n))
    as_batches = data.draw(st.booleans())
    size = data.draw(st.integers(1, 6))
    drop_last = data.draw(st.booleans())
    if as_batches:
        batch_sampler = BatchSampler(sampler, size, drop_last)
        check_resume(
            lambda: DataLoader(range(n), batch_size=None, batch_sampler=batch_sampler, seed=seed)
        )
    else:
        check_resume(
            lambda: DataLoader(
                list(range(n)), batch_size=size, sampler=sampler, drop_last=drop_last, seed=seed
            )
        )


@SETTINGS
@given(
    n=st.integers(0, 25),
    seed=st.integers(0, 99),
    rank=st.integers(0, 2),
    uneven=st.sampled_from(["pad", "drop", "allow"]),
    stream=st.booleans(),
)
def test_resume_of_a_sharded_rank(n: int, seed: int, rank: int, uneven: str, stream: bool) -> None:
    data = Stream(n) if stream else range(n)
    check_resume(
        lambda: DataLoader(
            data,
            batch_size=2,
            shuffle=True,
            seed=seed,
            shard=(rank, 3),
            uneven=uneven,
            shuffle_buffer=3,
        )
    )


def test_user_iterables_resume() -> None:
    """A plain list as sampler and a list of lists as batch_sampler are replayed and skipped."""
    check_resume(lambda: DataLoader(range(10), batch_size=3, sampler=[9, 1, 8, 2, 7, 3, 6], seed=0))
    check_resume(lambda: DataLoader(range(10), batch_sampler=[[1, 2], [0], [5, 6, 7]], seed=0))


def test_unbatched_and_rng_transforms_resume() -> None:
    def noisy(item: int, rng: np.random.Generator) -> float:
        return item + float(rng.random())

    check_resume(
        lambda: DataLoader(range(9), batch_size=None, shuffle=True, seed=1, transform=noisy)
    )
    check_resume(lambda: DataLoader(range(9), batch_size=2, shuffle=True, seed=1, transform=noisy))


# -- with workers -----------------------------------------------------------------------------

WORKERS = [
    pytest.param({"num_workers": 2, "worker_type": "thread"}, id="thread"),
    pytest.param(
        {"num_workers": 2, "worker_type": "thread", "in_order": False}, id="thread-unordered"
    ),
    pytest.param({"num_workers": 2, "worker_type": "process"}, id="process"),
    pytest.param(
        {"num_workers": 2, "worker_type": "process", "in_order": False}, id="process-unordered"
    ),
    pytest.param(
        {"num_workers": 2, "worker_type": "process", "persistent_workers": True},
        id="process-persistent",
    ),
]


def slow_identity(item: int) -> int:
    """A transform whose cost varies, so that unordered workers really reorder."""
    if item % 3 == 0:
        sum(range(20_000))
    return item


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", WORKERS)
def test_resume_with_workers(workers: dict[str, Any], no_leaks: None) -> None:
    if workers.get("in_order", True):
        check_resume(
            lambda: DataLoader(range(17), batch_size=3, shuffle=True, seed=4, **workers),
            every=2,
        )
    # delivered exactly once across a stop anywhere, even out of order
    ref = sorted(range(17))
    for stop in range(7):
        dl = DataLoader(
            range(17), batch_size=3, shuffle=True, seed=4, transform=slow_identity, **workers
        )
        it = iter(dl)
        got = [x for b in itertools.islice(it, stop) for x in b.tolist()]
        state = json.loads(json.dumps(dl.state_dict()))
        it.close()  # type: ignore[attr-defined]
        dl.close()
        with DataLoader(
            range(17), batch_size=3, shuffle=True, seed=4, transform=slow_identity, **workers
        ) as resumed:
            resumed.load_state_dict(state)
            rest = [x for b in resumed for x in b.tolist()]
        if stop == 6:  # every batch delivered: the state points at the next, whole epoch
            assert state["loader"]["epoch"] == 1
            assert sorted(rest) == ref
            rest = []
        assert sorted(got + rest) == ref, (stop, Counter(got + rest))


@pytest.mark.timeout(120)
def test_state_moves_between_worker_counts_and_kinds(no_leaks: None) -> None:
    """A state saved with process workers loads into threads, inline, and back."""
    kw: dict[str, Any] = {"batch_size": 4, "shuffle": True, "seed": 8}
    ref = [b.tolist() for b in DataLoader(range(30), **kw)]
    steps = [
        {"num_workers": 2, "worker_type": "process"},
        {"num_workers": 0},
        {"num_workers": 3, "worker_type": "thread"},
        {"num_workers": 1},
    ]
    got: list[list[int]] = []
    state = None
    for step in steps:
        with DataLoader(range(30), **kw, **step) as dl:  # type: ignore[arg-type]
            if state is not None:
                dl.load_state_dict(state)
            it = iter(dl)
            got += [b.tolist() for b in itertools.islice(it, 2)]
            state = dl.state_dict()
            it.close()  # type: ignore[attr-defined]
    assert got == ref
    with DataLoader(range(30), **kw) as dl:  # all 8 batches delivered: the next epoch
        dl.load_state_dict(state)  # type: ignore[arg-type]
        assert dl.epoch == 1
        uninterrupted = DataLoader(range(30), **kw)
        list(uninterrupted)
        assert [b.tolist() for b in dl] == [b.tolist() for b in uninterrupted]


@pytest.mark.timeout(120)
def test_unordered_state_records_batches_above_the_watermark(no_leaks: None) -> None:
    """With in_order=False a batch may arrive before a lower one: the state lists it, and the
    resumed loader skips it."""

    def slow_first(item: int) -> int:
        if item < 4:
            sum(range(300_000))
        return item

    kw: dict[str, Any] = {"batch_size": 2, "seed": 0, "transform": slow_first}
    dl = DataLoader(range(16), num_workers=2, worker_type="thread", in_order=False, **kw)
    it = iter(dl)
    first = [next(it).tolist() for _ in range(3)]
    state = dl.state_dict()
    it.close()  # type: ignore[attr-defined]
    loader = state["loader"]
    assert loader["next_batch"] + len(loader["delivered_above"]) == 3
    resumed = DataLoader(range(16), **kw)
    resumed.load_state_dict(state)
    rest = [b.tolist() for b in resumed]
    assert sorted(x for b in first + rest for x in b) == list(range(16))


def test_resume_through_the_device_stage() -> None:
    """The device stage holds one batch ahead; the state still counts what the loop received."""
    pytest.importorskip("torch")
    check_resume(lambda: DataLoader(range(11), batch_size=3, shuffle=True, seed=2, device="cpu"))
