"""Shared memory: array leaves arrive without a copy, slots are reused while the user lets go
of batches and kept while the user holds them, no fd per batch, a full /dev/shm falls back."""

from __future__ import annotations

import errno
import gc
import os
import subprocess
import warnings

import numpy as np
import psutil
import pytest
from workers_helpers import Images, TorchImages

from minibatcher import DataLoader
from minibatcher.sources.compact import CompactSequence, compact_source
from minibatcher.sources.compact_records import CompactRecords
from minibatcher.sources.sequence import SequenceSource
from minibatcher.transport import array_pickle, shm
from minibatcher.transport.factory import process_work

pytestmark = pytest.mark.timeout(60)


def _mapping_of(address: int) -> str:
    """The file mapped at ``address`` in this process ('' if anonymous)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            low, high = (int(x, 16) for x in fields[0].split("-"))
            if low <= address < high:
                return fields[5] if len(fields) > 5 else ""
    return ""


def test_numpy_batches_are_views_of_shared_memory() -> None:
    """A big batch built by a process worker is read in place from /dev/shm (no copy)."""
    with DataLoader(Images(32), batch_size=8, num_workers=2) as dl:
        for batch in dl:
            assert shm.PREFIX in _mapping_of(batch.ctypes.data)
            assert batch.flags.writeable


def test_torch_batches_are_views_of_shared_memory() -> None:
    """The same for torch tensors (collated with torch.stack into shared memory)."""
    torch = pytest.importorskip("torch")
    with DataLoader(TorchImages(32), batch_size=8, num_workers=2) as dl:
        batches = list(dl)
    for k, batch in enumerate(batches):
        assert isinstance(batch, torch.Tensor)
        assert shm.PREFIX in _mapping_of(batch.data_ptr())
        assert batch[:, 0, 0, 0].tolist() == list(range(8 * k, 8 * k + 8))
    del batches


def test_slots_are_reused_and_kept_while_held() -> None:
    """Slots return to the pool when a batch is dropped; a held batch keeps its slot (its
    contents survive later epochs, whose batches reuse the dropped ones' slots)."""
    pid = os.getpid()
    with DataLoader(Images(400), batch_size=4, num_workers=2, persistent_workers=True) as dl:
        held = list(dl)
        while_held = len(shm.our_segments(pid))
        assert while_held >= 1  # (cheap batches share a slot: a message carries several)
        for _ in dl:  # every slot is still held: this epoch's batches need new ones
            pass
        for k, batch in enumerate(held):
            assert batch[:, 0, 0, 0].tolist() == [i % 256 for i in range(4 * k, 4 * k + 4)]
        del held
        gc.collect()
        before = len(shm.our_segments(pid))
        most = 0
        for _ in dl:
            most = max(most, len(shm.our_segments(pid)))
        assert most <= before  # no new segment: the dropped batches' slots were reused


def test_no_file_descriptor_per_batch() -> None:
    """10,000 batches through shared memory: open fds and segments stay flat."""
    me = psutil.Process()
    before = me.num_fds()
    with DataLoader(Images(10_000, (shm.MIN_SHARED_BYTES,)), batch_size=1, num_workers=2) as dl:
        most_fds = most_segments = 0
        for i, batch in enumerate(dl):
            if i % 500 == 0:
                most_fds = max(most_fds, me.num_fds())
                most_segments = max(most_segments, len(shm.our_segments(os.getpid())))
            assert batch.nbytes == shm.MIN_SHARED_BYTES
    assert most_fds - before < 32
    assert most_segments <= 12


def test_full_dev_shm_falls_back_to_pipes(monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC when reserving a segment: a warning that says what to do; batches still right."""
    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    monkeypatch.setattr(shm, "_free_bytes", lambda: 0)  # short of space: reserve up front
    dl = DataLoader(Images(40), batch_size=4, num_workers=2)
    # Record rather than pytest.warns: Python >= 3.12 also warns (DeprecationWarning) when it
    # forks a process that has native threads (OpenBLAS's), which is not what this test is about.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [b[:, 0, 0, 0].tolist() for b in dl]
    ours = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(ours) == 1
    assert "shm-size" in str(ours[0].message)
    assert got == [list(range(i, i + 4)) for i in range(0, 40, 4)]


def test_roomy_dev_shm_creates_sparse_segments() -> None:
    """With plenty of free space, a segment's pages are allocated only where written."""
    with DataLoader(Images(64), batch_size=4, num_workers=1, persistent_workers=True) as dl:
        batches = list(dl)
        sizes = [os.stat(os.path.join(shm.SHM_DIR, n)) for n in shm.our_segments(os.getpid())]
    assert sizes
    assert all(st.st_blocks * 512 < st.st_size for st in sizes)
    del batches


def test_segments_of_dead_processes_are_swept() -> None:
    """A segment named after a main process that no longer exists is unlinked at start-up."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    path = os.path.join(shm.SHM_DIR, f"{shm.PREFIX}{dead.pid}-abcdef-1")
    with open(path, "wb") as f:
        f.write(b"x")
    list(DataLoader(Images(8), batch_size=4, num_workers=1))
    assert not os.path.exists(path)


def test_compact_sequence_round_trips() -> None:
    """A compact copy of a list gives equal items, by index, batch and after pickling."""
    import pickle

    items = [{"id": i, "name": f"n{i}", "v": [i, i + 1]} for i in range(100)]
    compact = CompactSequence(items)
    assert len(compact) == 100
    assert compact[7] == items[7]
    assert compact[-1] == items[-1]
    assert compact.__getitems__([3, 1, 99]) == [items[3], items[1], items[99]]
    assert pickle.loads(pickle.dumps(compact))[42] == items[42]
    with pytest.raises(IndexError):
        compact[100]


def test_large_lists_are_compacted_for_process_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain list at least COMPACT_MIN_ITEMS long is read from compact storage by process
    workers, with the same batches as num_workers=0; unpicklable items keep the list."""
    from minibatcher.sources import compact as compact_module

    monkeypatch.setattr(compact_module, "COMPACT_MIN_ITEMS", 50)
    data = [{"i": i, "s": str(i)} for i in range(120)]
    source = compact_source(SequenceSource(data))
    assert source is not None
    assert isinstance(source.data, CompactRecords)  # flat dicts of scalars: by columns
    assert isinstance(compact_source(SequenceSource([[i] for i in range(60)])).data,
                      CompactSequence)
    assert compact_source(SequenceSource([lambda: 0] * 60)) is None
    assert compact_source(SequenceSource(data[:10])) is None
    dl = DataLoader(data, batch_size=7, shuffle=True, seed=4, num_workers=2)
    assert isinstance(process_work(dl.work).source.data, CompactRecords)
    expected = [(b["i"].tolist(), b["s"]) for b in DataLoader(data, batch_size=7, shuffle=True,
                                                               seed=4)]
    assert [(b["i"].tolist(), b["s"]) for b in dl] == expected


def test_small_arrays_travel_pickled_and_writable() -> None:
    """Arrays under MIN_SHARED_BYTES come by pipe (cheaper), still writable."""
    data = np.arange(300, dtype=np.int64).reshape(100, 3)
    with DataLoader(data, batch_size=10, num_workers=2) as dl:
        for k, batch in enumerate(dl):
            assert batch.flags.writeable
            assert (batch == data[10 * k : 10 * k + 10]).all()


ODD_ARRAYS = [
    np.zeros((0, 3)),
    np.array([True, False]),
    np.array(["a", "bc"]),
    np.arange(3).astype("datetime64[s]"),
    np.arange(5000).astype("datetime64[s]"),
    np.zeros(2, dtype=[("x", "i4")]),
    np.arange(6).reshape(2, 3)[:, ::2],
    np.ones((100, 100)).T,
    np.array(5),
    np.zeros(3, ">i4"),
    np.arange(10_000, dtype=np.float64),
    np.array([1, "x"], dtype=object),
]


@pytest.mark.parametrize("array", ODD_ARRAYS, ids=lambda a: f"{a.dtype}{a.shape}")
def test_every_array_round_trips_through_a_slot(array: np.ndarray) -> None:
    """Any dtype, layout and size comes back equal (slot, raw bytes or plain pickle)."""
    import io

    pool = shm.SegmentPool()
    try:
        segment = pool.acquire()
        assert segment is not None
        writer = array_pickle.SlotWriter(segment)
        out = io.BytesIO()
        array_pickle.ResultPickler(out, writer).dump({"x": array, "y": [array]})
        out.seek(0)
        raw = pool.lease(segment, writer.used) if writer.used else None
        back = array_pickle.ResultUnpickler(out, raw).load()
        for got in (back["x"], back["y"][0]):
            assert got.dtype == array.dtype
            assert got.shape == array.shape
            assert got.tolist() == array.tolist()
        del back, got, raw
    finally:
        pool.close()


def test_a_compacted_list_mutated_between_epochs_is_read_as_it_is_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Non-persistent process workers see each epoch the list as it is at ``iter()``, as with
    num_workers=0 (the compact copy used to be made once per loader and served stale)."""
    from minibatcher.sources import compact as compact_module

    monkeypatch.setattr(compact_module, "COMPACT_MIN_ITEMS", 50)
    data: list[object] = [(i, f"s{i}") for i in range(100)]
    inline = DataLoader(data, batch_size=10, shuffle=True, seed=1, collate_fn=list)
    dl = DataLoader(data, batch_size=10, shuffle=True, seed=1, num_workers=2, collate_fn=list)

    def epoch(loader: DataLoader) -> list[object]:
        return [str(a) for b in loader for a in b]

    assert epoch(dl) == epoch(inline)
    data[5] = {"replaced": -5}
    data[99] = "replaced"
    got = epoch(dl)
    assert got == epoch(inline)
    assert "replaced" in got
    data[:] = [str(-i) for i in range(100)]
    assert epoch(dl) == epoch(inline)
