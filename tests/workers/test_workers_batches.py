"""With workers, the batches are exactly those of num_workers=0, in the same order (in_order=True),
or the same batches each exactly once (in_order=False); whatever the kind of worker."""

from __future__ import annotations

import multiprocessing
import sys
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workers_helpers import Images, Slow, Squares, Stream, WhoAmI, as_list, jitter

from minibatcher import DataLoader, get_worker_info
from minibatcher.transport import choose_start_method

pytestmark = pytest.mark.timeout(60)


def batches(data: object, **kwargs: object) -> list[object]:
    with DataLoader(data, **kwargs) as dl:  # type: ignore[arg-type]
        return [as_list(b) for b in dl]


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    n=st.integers(0, 120),
    batch_size=st.integers(1, 17),
    seed=st.integers(0, 2**32),
    drop_last=st.booleans(),
    kind=st.sampled_from(["range", "list", "array", "transform"]),
)
def test_same_batches_whatever_the_workers(
    n: int, batch_size: int, seed: int, drop_last: bool, kind: str
) -> None:
    """num_workers in {0, 1, 2, 3} x worker_type x in_order=True: identical batches and order,
    including the output of a random transform (its rng is keyed by index, not by worker)."""
    data: object = {
        "range": range(n),
        "list": [(i, f"s{i}") for i in range(n)],
        "array": np.arange(n * 3, dtype=np.float32).reshape(n, 3),
        "transform": Squares(n),
    }[kind]
    extra = {"transform": jitter} if kind == "transform" else {}
    common = dict(batch_size=batch_size, shuffle=True, seed=seed, drop_last=drop_last, **extra)
    expected = batches(data, **common)
    for worker_type in ("process", "thread"):
        for workers in (1, 2, 3):
            got = batches(data, num_workers=workers, worker_type=worker_type, **common)
            assert got == expected, (worker_type, workers)


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_out_of_order_delivers_each_batch_exactly_once(worker_type: str) -> None:
    """in_order=False: batches come as they are ready, each exactly once, none altered."""
    data = Slow(90)
    expected = batches(data, batch_size=3, shuffle=True, seed=1)
    got = batches(data, batch_size=3, shuffle=True, seed=1, num_workers=3,
                  worker_type=worker_type, in_order=False)
    assert sorted(map(tuple, got)) == sorted(map(tuple, expected))  # type: ignore[arg-type]
    assert len(got) == len(expected)


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_streams_are_read_once_by_the_main_process(worker_type: str) -> None:
    """An iterable without len() gives the same batches with workers; the main process reads
    it, so each item is read exactly once."""
    stream = Stream(103)
    expected = batches(Stream(103), batch_size=10, shuffle=True, shuffle_buffer=16, seed=5)
    with DataLoader(stream, batch_size=10, shuffle=True, shuffle_buffer=16, seed=5,
                    num_workers=2, worker_type=worker_type) as dl:
        got = [as_list(b) for b in dl]
    assert got == expected
    assert stream.read == 103


def test_persistent_workers_serve_three_epochs() -> None:
    """The same processes serve every epoch; each epoch equals num_workers=0's epoch."""
    import psutil

    reference = DataLoader(Squares(50), batch_size=4, shuffle=True, seed=9)
    expected = [[as_list(b) for b in reference] for _ in range(3)]
    with DataLoader(Squares(50), batch_size=4, shuffle=True, seed=9, num_workers=2,
                    persistent_workers=True) as dl:
        pids = []
        got = []
        for _ in range(3):
            got.append([as_list(b) for b in dl])
            pids.append({c.pid for c in psutil.Process().children()})
    assert got == expected
    assert expected[0] != expected[1]
    assert pids[0] == pids[1] == pids[2]
    assert len(pids[0]) >= 2


def test_persistent_workers_recover_after_an_early_break() -> None:
    """Breaking out of an epoch leaves results in flight; the next epoch is still exact."""
    reference = DataLoader(Squares(80), batch_size=4, shuffle=True, seed=2)
    epochs = [[as_list(b) for b in reference] for _ in range(2)]
    with DataLoader(Squares(80), batch_size=4, shuffle=True, seed=2, num_workers=2,
                    persistent_workers=True, prefetch=3) as dl:
        for i, _ in enumerate(dl):
            if i == 2:
                break
        assert [as_list(b) for b in dl] == epochs[1]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_every_start_method_works(method: str) -> None:
    """fork, spawn and forkserver give the same batches (spawn/forkserver pickle the work)."""
    expected = batches(Squares(40), batch_size=6, shuffle=True, seed=3, transform=jitter)
    got = batches(Squares(40), batch_size=6, shuffle=True, seed=3, transform=jitter,
                  num_workers=2, mp_context=method)
    assert got == expected


def test_default_start_method_is_fork_on_linux_even_with_threads_alive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As torch: fork whatever threads run (a notebook kernel's, tqdm's); a process-wide
    start method set by the program wins; an explicit mp_context wins over both."""
    monkeypatch.setattr(multiprocessing.context._default_context, "_actual_context", None)
    assert choose_start_method("spawn") == "spawn"
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert choose_start_method(None) == ("fork" if sys.platform.startswith("linux") else
                                             multiprocessing.get_start_method())
    finally:
        stop.set()
        thread.join()
    multiprocessing.set_start_method("forkserver", force=True)
    assert choose_start_method(None) == "forkserver"
    assert choose_start_method("spawn") == "spawn"


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_worker_info_and_per_worker_seeds(worker_type: str) -> None:
    """get_worker_info() names the worker; process workers' global generators differ."""
    assert get_worker_info() is None
    with DataLoader(WhoAmI(), batch_size=4, seed=11, num_workers=2,
                    worker_type=worker_type) as dl:
        rows = [row for b in dl for row in zip(*(as_list(c) for c in b), strict=True)]
    ids = {r[1] for r in rows}
    assert ids <= {0, 1}
    assert {r[2] for r in rows} == {2}
    seeds = {r[1]: r[3] for r in rows}
    if len(seeds) == 2:
        assert seeds[0] != seeds[1]
    if worker_type == "process":
        draws = [r[4] for r in rows] + [r[5] for r in rows]
        assert len(set(draws)) == len(draws)  # no two workers repeat a draw
    assert get_worker_info() is None


def test_worker_seeds_change_with_the_epoch() -> None:
    """A persistent worker is reseeded from (seed, epoch, worker id) at each epoch."""
    with DataLoader(WhoAmI(), batch_size=64, seed=11, num_workers=1,
                    persistent_workers=True) as dl:
        first = as_list(next(iter(dl)))
        second = as_list(next(iter(dl)))
    assert first[3] != second[3]
    assert first[4] != second[4]


def test_worker_init_fn_runs_in_each_worker() -> None:
    """worker_init_fn gets each worker's id."""
    import workers_helpers

    with DataLoader(Squares(10), batch_size=2, num_workers=2, worker_type="thread",
                    worker_init_fn=_record_init) as dl:
        list(dl)
    assert sorted(workers_helpers.__dict__.setdefault("inits", [])) == [0, 1]


def _record_init(worker_id: int) -> None:
    import workers_helpers

    workers_helpers.__dict__.setdefault("inits", []).append(worker_id)


def test_big_batches_equal_the_data() -> None:
    """Batches that travel by shared memory hold the right values (none overwritten)."""
    with DataLoader(Images(64, (3, 64, 64)), batch_size=8, num_workers=2) as dl:
        held = list(dl)  # keep every batch: their slots must not be reused meanwhile
    for k, batch in enumerate(held):
        assert batch.shape == (8, 3, 64, 64)
        assert (batch[:, 0, 0, 0] == np.arange(8 * k, 8 * k + 8) % 256).all()
    del held
