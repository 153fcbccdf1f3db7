"""The compact copy made in the background under fork (NOTE [ Compact copy in the background ]
in transport/compact_stage.py): the workers start at once, read their first tasks from the
inherited list, then a shared-memory copy made by an encoder process; the batches are those of
num_workers=0, the copy is the data as it was at the epoch's start, nothing is left behind."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import psutil
import pytest

from minibatcher import DataLoader
from minibatcher.sources import compact as compact_module
from minibatcher.sources.compact import CompactSequence
from minibatcher.sources.compact_records import CompactRecords
from minibatcher.sources.sequence import SequenceSource
from minibatcher.transport import compact_stage
from minibatcher.transport.shm import SHM_DIR, our_segments

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def small_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compact_module, "COMPACT_MIN_ITEMS", 50)


def _copy_required(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every task after a worker's first reads the copy, and a missing copy is an error (in the
    workers, which inherit the patch), so a silent fallback to the list cannot pass."""
    monkeypatch.setattr(compact_stage, "LIVE_ITEMS", 0)
    read = compact_stage.read_compact

    def required(name: str) -> Any:
        found = read(name)
        assert found is not None, "the compact copy was not made"
        return found

    monkeypatch.setattr(compact_stage, "read_compact", required)


def _plain(batches: Any) -> list[Any]:
    return [repr(item) for batch in batches for item in batch]


ROWS = {
    "records": lambda n: [{"id": i, "name": f"n{i}é" * (i % 3), "w": i / 3} for i in range(n)],
    "pickles": lambda n: [[i, {"s": str(i)}, (i, None)] for i in range(n)],
    "arrays raw": lambda n: [{"a": {"b": {"c": np.arange(i % 5, dtype=np.int16)}}} for i in
                             range(n)],
}


@pytest.mark.parametrize("rows", list(ROWS))
@pytest.mark.parametrize("persistent", [False, True])
def test_workers_read_the_copy_with_the_batches_of_no_workers(
    rows: str, persistent: bool, small_lists: None, monkeypatch: pytest.MonkeyPatch,
    no_leaks: None,
) -> None:
    _copy_required(monkeypatch)
    data = ROWS[rows](300)
    options: dict[str, Any] = {"batch_size": 16, "shuffle": True, "seed": 5, "collate_fn": list}
    inline = DataLoader(data, **options)
    with DataLoader(data, num_workers=2, persistent_workers=persistent, **options) as dl:
        assert _plain(dl) == _plain(inline)
        assert _plain(dl) == _plain(inline)  # the next epoch too


def test_the_copy_is_the_data_at_the_epochs_start(
    small_lists: None, monkeypatch: pytest.MonkeyPatch, no_leaks: None
) -> None:
    """The list changed after the first batch: the rest of the epoch, read from the copy,
    still shows the list as it was (as torch's forked workers do); the next epoch the change."""
    _copy_required(monkeypatch)
    data = [{"id": i, "label": i % 7} for i in range(400)]
    options: dict[str, Any] = {"batch_size": 10, "shuffle": True, "seed": 2, "collate_fn": list}
    inline = DataLoader(data, **options)
    expected = _plain(inline)
    dl = DataLoader(data, num_workers=2, **options)
    it = iter(dl)
    got = [next(it)]
    for row in data:
        row["label"] = -1
    data[3] = {"id": -3, "label": -3}
    got += list(it)
    assert _plain(got) == expected
    assert _plain(dl) == _plain(inline)


def test_unpicklable_items_are_read_from_the_list(
    small_lists: None, monkeypatch: pytest.MonkeyPatch, no_leaks: None
) -> None:
    monkeypatch.setattr(compact_stage, "LIVE_ITEMS", 0)
    data = [(lambda i=i: i) for i in range(120)]
    options: dict[str, Any] = {"batch_size": 8, "shuffle": True, "seed": 1}
    expected = [[f() for f in b] for b in DataLoader(data, collate_fn=list, **options)]
    dl = DataLoader(data, num_workers=2, collate_fn=lambda fs: [f() for f in fs], **options)
    assert list(dl) == expected


class SlowToPickle:
    """An item whose pickling takes 50 ms (the encoder is then busy for seconds)."""

    def __init__(self, i: int) -> None:
        self.i = i

    def __reduce__(self) -> tuple[Any, ...]:
        time.sleep(0.05)
        return (SlowToPickle, (self.i,))


def test_an_epoch_ended_while_encoding_leaves_no_encoder_or_segment(
    small_lists: None, no_leaks: None
) -> None:
    data = [SlowToPickle(i) for i in range(200)]  # ~10 s to encode
    dl = DataLoader(data, batch_size=2, num_workers=2, collate_fn=lambda b: [x.i for x in b])
    it = iter(dl)
    assert next(it) == [0, 1]
    me = psutil.Process()
    deadline = time.monotonic() + 20
    while True:  # the last worker forks it when it starts, maybe after the first batch came
        workers = {child.pid for child in me.children()}
        encoders = [c for c in me.children(recursive=True) if c.pid not in workers]
        if encoders or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(encoders) == 1  # forked by the last worker
    del it  # closes the workers; the kernel kills their encoder (PR_SET_PDEATHSIG)
    _, alive = psutil.wait_procs(encoders, timeout=5)
    assert not alive
    assert not our_segments(os.getpid())


def _arrays(compact: Any) -> list[np.ndarray]:
    found = [a for a in vars(compact).values() if isinstance(a, np.ndarray)]
    for column in getattr(compact, "columns", []):
        found += [a for a in (column.values, column.offsets) if isinstance(a, np.ndarray)]
    return found


def test_what_the_encoder_writes_a_worker_reads_in_place(small_lists: None) -> None:
    """Equal items; the copy's NumPy buffers are views of the mapping, not private copies."""
    name = f"minibatcher-{os.getpid()}-test-compact"
    for data, kind in (
        ([{"k": i, "w": i / 2, "t": f"x{i}"} for i in range(100)], CompactRecords),
        ([[i, {"s": {"a": np.arange(i % 4)}}] for i in range(100)], CompactSequence),
    ):
        try:
            compact_stage.write_compact(name, SequenceSource(data))
            source = compact_stage.read_compact(name)
            assert source is not None
            assert isinstance(source.data, kind)
            got = source.fetch_items(np.array([3, 99, 0]))
            assert repr(got) == repr([data[3], data[99], data[0]])
            arrays = _arrays(source.data)
            assert len(arrays) >= 3
            assert not any(a.flags.owndata for a in arrays if a.nbytes)  # views
        finally:
            os.unlink(os.path.join(SHM_DIR, name))
    assert compact_stage.read_compact(name) is None  # none: the workers read the list


@pytest.mark.slow
def test_under_forkserver_the_copy_is_made_first_and_sent(small_lists: None) -> None:
    """No background copy (workers receive the pickled work): made in the main process."""
    data = ROWS["records"](120)
    options: dict[str, Any] = {"batch_size": 16, "shuffle": True, "seed": 5, "collate_fn": list}
    dl = DataLoader(data, num_workers=2, mp_context="forkserver", **options)
    assert _plain(dl) == _plain(DataLoader(data, **options))
