"""The two ends of a single epoch's workers (not persistent): each worker gets its first task
as soon as it is forked (not once every worker is), and exits by itself after its last task, so
that its exit overlaps the last batches; a worker that dies after being told so is still an
error. No timing is asserted: waits are bounded, and a regression fails instead of hanging."""

from __future__ import annotations

import multiprocessing
import multiprocessing.process
import time
from typing import Any

import pytest
from workers_helpers import Faulty, Squares

from minibatcher import DataLoader, WorkerError
from minibatcher.transport import processes

pytestmark = pytest.mark.timeout(60)

EXIT_BOUND_S = 20.0


def _workers_alive() -> list[Any]:
    # active_children() also reaps the children that exited
    return [p for p in multiprocessing.active_children() if p.name.startswith("minibatcher-")]


def test_workers_exit_after_their_last_task_while_the_epoch_is_still_open() -> None:
    dl = DataLoader(Squares(64), batch_size=4, num_workers=2)
    it = iter(dl)
    batches = [next(it) for _ in range(len(dl))]  # every batch; the iterator is not closed
    assert len(batches) == 16
    deadline = time.monotonic() + EXIT_BOUND_S
    while _workers_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _workers_alive() == []
    assert next(it, None) is None  # the epoch ends normally: a retired worker is no failure
    assert [b[0].tolist() for b in DataLoader(Squares(64), batch_size=4)] == [
        b[0].tolist() for b in batches
    ]


def test_persistent_workers_stay_for_the_next_epoch() -> None:
    with DataLoader(Squares(32), batch_size=4, num_workers=2, persistent_workers=True) as dl:
        first = [b[0].tolist() for b in dl]
        pids = dl._executors.persistent.worker_pids()  # type: ignore[union-attr]
        assert [b[0].tolist() for b in dl] == first
        assert dl._executors.persistent.worker_pids() == pids  # type: ignore[union-attr]


@pytest.mark.parametrize("in_order", [True, False])
def test_a_worker_dying_after_it_was_told_to_retire_is_an_error(in_order: bool) -> None:
    """8 batches, all dispatched at once (prefetch 2 x 2 workers, then 4 more as results come):
    the worker of the last batch dies after the tasks ran out."""
    dl = DataLoader(Faulty(32, bad=31, how="exit"), batch_size=4, num_workers=2,
                    in_order=in_order)
    with pytest.raises(WorkerError, match="exit code 3"):
        list(dl)


def test_each_worker_gets_its_first_task_before_the_next_is_forked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[int] = []
    sent_at_start: list[int] = []
    send, start = processes.ProcessExecutor._send, multiprocessing.process.BaseProcess.start

    def recording_send(self: Any, wid: int, run: int, chunk: list[Any]) -> None:
        sent.append(wid)
        send(self, wid, run, chunk)

    def recording_start(self: Any) -> None:
        if self.name.startswith("minibatcher-worker-"):
            sent_at_start.append(len(sent))
        start(self)

    monkeypatch.setattr(processes.ProcessExecutor, "_send", recording_send)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", recording_start)
    batches = [b[0].tolist() for b in DataLoader(Squares(40), batch_size=4, num_workers=2)]
    assert batches == [list(range(i, i + 4)) for i in range(0, 40, 4)]
    assert sent_at_start == [0, 1]  # worker 0 had its task when worker 1 was forked
    assert sent[:2] == [0, 1]  # then the dealing alternates as before
