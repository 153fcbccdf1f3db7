"""Task messages and chunks: what travels between the main process and a process worker.

A task message is decoded in the worker into the very tasks the main process decided; cheap
batches are grouped several to a message (and still arrive in order, each exactly once, with
their shared memory intact)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from workers_helpers import Slow

from minibatcher import DataLoader, pad_collate
from minibatcher.transport.chunking import (
    CHUNK_MAX_BYTES,
    CHUNK_MAX_SHARED,
    CHUNK_TARGET_S,
    MAX_CHUNK,
    chunk_size,
    message_size,
)
from minibatcher.transport.worker_loop import GENERAL, INDEXED, decode_tasks, encode_tasks

pytestmark = pytest.mark.timeout(60)


def test_indexed_tasks_travel_as_raw_keys_and_come_back_equal() -> None:
    keys = np.random.default_rng(0).permutation(1000)[:64]  # a view, as the sampler's slices
    chunk = [(3, 7, keys, None), (3, 8, np.arange(5, dtype=np.int64), None)]
    message = bytes(encode_tasks(11, "slot-a", chunk))
    assert message[:1] == INDEXED
    run, slot, tasks = decode_tasks(message)
    assert (run, slot) == (11, "slot-a")
    assert [(t[0], t[1], t[3]) for t in tasks] == [(3, 7, None), (3, 8, None)]
    for task, sent in zip(tasks, chunk, strict=True):
        assert task[2].dtype == np.int64
        assert task[2].tolist() == sent[2].tolist()
        assert task[2].flags.writeable  # as keys unpickled the general way are


@pytest.mark.parametrize(
    "task",
    [
        (0, 1, np.arange(3, dtype=np.int64), [np.ones(4, np.float32), "a", {"k": 1}]),  # a stream
        (0, 1, np.arange(3, dtype=np.int32), None),  # keys of another dtype
        (0, 1, np.arange(6, dtype=np.int64)[::2], None),  # not contiguous
    ],
)
def test_other_tasks_take_the_general_path_and_come_back_equal(task: tuple) -> None:
    message = bytes(encode_tasks(2, None, [task]))
    assert message[:1] == GENERAL
    run, slot, (got,) = decode_tasks(message)
    assert (run, slot) == (2, None)
    assert got[:2] == task[:2]
    assert got[2].tolist() == task[2].tolist()
    if task[3] is None:
        assert got[3] is None
    else:
        assert got[3][0].tolist() == task[3][0].tolist()
        assert got[3][1:] == task[3][1:]


def test_cheap_batches_are_grouped_up_to_the_work_target() -> None:
    per_batch = CHUNK_TARGET_S / 10
    assert chunk_size(200, 0, 1, per_batch) == 10  # pickled and small
    assert chunk_size(200, 4096, 1, per_batch) == 10  # in shared memory
    assert chunk_size(200, 0, 1, CHUNK_TARGET_S * 2) == 1  # a batch worth a message
    assert chunk_size(200, 0, 1, 0.0) == MAX_CHUNK
    # a message's work stays within half the loader's timeout for one batch
    assert chunk_size(200, 0, 1, CHUNK_TARGET_S / 10, timeout=CHUNK_TARGET_S) == 5
    assert chunk_size(200, 0, 1, CHUNK_TARGET_S / 10, timeout=60.0) == 10


def test_batches_big_in_the_pipe_or_in_shared_memory_are_not_grouped_past_their_limit() -> None:
    cheap = CHUNK_TARGET_S / 100
    assert chunk_size(CHUNK_MAX_BYTES + 1, 0, 1, cheap) == 1
    assert chunk_size(4 * CHUNK_MAX_BYTES, 0, 8, cheap) == MAX_CHUNK  # 8 small ones
    assert chunk_size(100, CHUNK_MAX_SHARED // 4, 1, cheap) == 4
    assert chunk_size(100, CHUNK_MAX_SHARED * 2, 1, cheap) == 1


@pytest.mark.parametrize("in_order", [True, False])
def test_grouped_padded_batches_equal_the_inline_ones(in_order: bool) -> None:
    """W10's kind of batch (cheap, padded into shared memory, so grouped several to a message)
    through 2 process workers: the inline batches, in order (or each exactly once), all kept
    valid while the later ones arrive."""
    rng = np.random.default_rng(1)
    items = [rng.integers(1, 100, int(k), dtype=np.int32) for k in rng.integers(1, 3000, 600)]
    common = {"batch_size": 6, "shuffle": True, "seed": 5, "collate_fn": pad_collate}
    with DataLoader(items, **common) as dl:
        expected = [b.tolist() for b in dl]
    with DataLoader(items, num_workers=2, in_order=in_order, **common) as dl:
        got = list(dl)  # held: every slot stays alive until the end
        assert any(b.nbytes >= 16 * 1024 for b in got)  # some went by shared memory
        got_lists = [b.tolist() for b in got]
    if in_order:
        assert got_lists == expected
    else:
        assert sorted(map(str, got_lists)) == sorted(map(str, expected))


class FrozenCount:
    """Item i: how many objects the worker's garbage collector has frozen."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        import gc

        return gc.get_freeze_count()


def test_a_forked_worker_freezes_the_objects_it_inherited() -> None:
    """The worker's collector never walks (and so never copies) the main process's objects."""
    with DataLoader(FrozenCount(), batch_size=2, num_workers=2) as dl:
        counts = [int(c) for batch in dl for c in batch]
    assert min(counts) > 1000  # the interpreter's own objects, at least


def test_messages_start_with_one_task_grow_and_shrink_again_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batches of ~4 ms (W4's kind: worth a message of their own under the old 2 ms target)
    are grouped once their cost is known; each worker's first message carries one task (the
    first batch is not delayed) and the last ones carry one again (the workers finish the epoch
    together), and the batches are the inline ones."""
    from minibatcher.transport import processes

    sizes: list[int] = []
    send = processes.ProcessExecutor._send

    def recording_send(self: Any, wid: int, run: int, chunk: list[Any]) -> None:
        sizes.append(len(chunk))
        send(self, wid, run, chunk)

    monkeypatch.setattr(processes.ProcessExecutor, "_send", recording_send)
    data = Slow(480, 0.001)
    with DataLoader(data, batch_size=4, shuffle=True, seed=3, num_workers=2) as dl:
        got = [b.tolist() for b in dl]
    assert got == [b.tolist() for b in DataLoader(range(480), batch_size=4, shuffle=True, seed=3)]
    assert sum(sizes) == 120
    assert sizes[:4] == [1, 1, 1, 1]  # prefetch 2 x 2 workers, before any cost is known
    assert max(sizes) > 1
    assert sizes[-2:] == [1, 1]


def test_the_planner_says_how_many_tasks_remain() -> None:
    """What lets the executor shrink the last messages: ``length_hint`` of the tasks."""
    import operator

    dl = DataLoader(range(100), batch_size=8)
    tasks = dl._planner.tasks(0, 3)
    assert operator.length_hint(tasks) == 13 - 3
    next(tasks)
    assert operator.length_hint(tasks) == 9
    assert len(list(tasks)) == 9
    assert operator.length_hint(tasks) == 0


def test_the_last_messages_shrink_to_what_remains_per_message_in_flight() -> None:
    assert message_size(6, 0, 4) == 6  # unknown: as measured
    assert message_size(6, 400, 4) == 6
    assert message_size(6, 12, 4) == 3
    assert message_size(6, 3, 4) == 1
    assert message_size(1, 3, 4) == 1
