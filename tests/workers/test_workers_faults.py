"""Faults, provoked for real: each ends in a clear error within seconds, never a hang, and leaves
no child process, thread or shared-memory segment (the autouse leak check)."""

from __future__ import annotations

import time
import traceback

import pytest
from workers_helpers import Faulty, Squares, failing_init, unpicklable_batch

from minibatcher import DataLoader, WorkerError

pytestmark = pytest.mark.timeout(60)


def _consume(loader: DataLoader[object], into: list[object]) -> None:
    for batch in loader:
        into.append(batch.tolist())  # type: ignore[attr-defined]


def _rendered(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__)) + "".join(
        f"\n{n}" for n in getattr(error, "__notes__", [])
    )


@pytest.mark.parametrize("worker_type", ["process", "thread"])
@pytest.mark.parametrize("in_order", [True, False])
def test_an_exception_is_reraised_with_its_type_traceback_and_index(
    worker_type: str, in_order: bool
) -> None:
    """Same type in the main process; the worker's traceback and the failing index shown."""
    with DataLoader(Faulty(40, bad=13, how="raise"), batch_size=4, num_workers=2,
                    worker_type=worker_type, in_order=in_order) as dl:
        got: list[object] = []
        with pytest.raises(ValueError, match="item 13 is broken") as info:
            _consume(dl, got)
    text = _rendered(info.value)
    assert "index 13" in text
    assert "__getitem__" in text  # the worker's frame
    assert "worker" in text
    if in_order:
        assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]  # all batches before it


@pytest.mark.parametrize(
    ("how", "exitcode", "words"),
    [("sigkill", -9, "SIGKILL"), ("exit", 3, "exit code 3"), ("segv", -11, "SIGSEGV"),
     ("sysexit", 4, "exit code 4")],
)
def test_a_dead_worker_raises_worker_error_naming_it(how: str, exitcode: int, words: str) -> None:
    """SIGKILL, os._exit, a segfault, sys.exit: WorkerError with worker id and exit code."""
    start = time.monotonic()
    dl = DataLoader(Faulty(40, bad=21, how=how), batch_size=4, num_workers=2)
    with pytest.raises(WorkerError) as info:
        list(dl)
    assert time.monotonic() - start < 5
    error = info.value
    assert error.exitcode == exitcode
    assert error.worker_id in (0, 1)
    assert f"worker {error.worker_id}" in str(error)
    assert words in str(error)


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_timeout_raises_timeout_error(worker_type: str) -> None:
    """A batch slower than ``timeout`` raises TimeoutError instead of waiting forever."""
    start = time.monotonic()
    dl = DataLoader(Faulty(20, bad=5, how="sleep"), batch_size=2, num_workers=2,
                    worker_type=worker_type, timeout=0.5)
    with pytest.raises(TimeoutError, match=r"timeout=0\.5"):
        list(dl)
    assert time.monotonic() - start < 5
    if worker_type == "thread":  # a sleeping thread cannot be killed: let it finish
        _wait_threads(30)


def _wait_threads(limit_s: float) -> None:
    import threading

    deadline = time.monotonic() + limit_s
    for thread in threading.enumerate():
        if thread.name.startswith("minibatcher-worker"):
            thread.join(max(0.0, deadline - time.monotonic()))


def test_persistent_workers_are_replaced_after_a_death() -> None:
    """After a WorkerError, the next epoch starts fresh workers."""
    with DataLoader(Faulty(12, bad=5, how="exit"), batch_size=4, num_workers=2,
                    persistent_workers=True) as dl:
        with pytest.raises(WorkerError):
            list(dl)
        with pytest.raises(WorkerError):
            list(dl)


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_worker_init_fn_errors_are_reraised(worker_type: str) -> None:
    """An exception in worker_init_fn reaches the main process with its type."""
    dl = DataLoader(Squares(10), batch_size=2, num_workers=2, worker_type=worker_type,
                    worker_init_fn=failing_init)
    with pytest.raises(KeyError, match="init of worker"):
        list(dl)


def test_an_unpicklable_batch_is_a_clear_error() -> None:
    """A batch the worker cannot send says so and suggests a way out."""
    dl = DataLoader(Squares(10), batch_size=2, num_workers=1, collate_fn=unpicklable_batch)
    with pytest.raises(TypeError, match="cannot be pickled"):
        list(dl)


@pytest.mark.slow
def test_an_unpicklable_dataset_under_spawn_says_what_to_do() -> None:
    """spawn pickles the dataset: a lambda transform fails clearly, suggesting fork."""
    dl = DataLoader(Squares(10), batch_size=2, num_workers=2, mp_context="spawn",
                    transform=lambda item: item)
    with pytest.raises(WorkerError, match="picklable") as info:
        list(dl)
    assert "mp_context='fork'" in str(info.value)


def test_thread_worker_sys_exit_does_not_exit_the_program() -> None:
    """sys.exit() inside a worker thread becomes a WorkerError in the main thread."""
    dl = DataLoader(Faulty(10, bad=3, how="sysexit"), batch_size=2, num_workers=2,
                    worker_type="thread")
    with pytest.raises(WorkerError, match="SystemExit"):
        list(dl)


def test_a_death_is_noticed_while_another_worker_is_slow() -> None:
    """Worker 1 dies while the main process waits for worker 0's slow batch: reported at once,
    not after the slow batch (batch 0 sleeps 3 s; batch 1, on worker 1, kills its worker)."""
    start = time.monotonic()
    dl = DataLoader(_SlowThenDead(), batch_size=1, num_workers=2)
    with pytest.raises(WorkerError, match="SIGKILL"):
        list(dl)
    assert time.monotonic() - start < 2.5


class _SlowThenDead(Faulty):
    def __init__(self) -> None:
        super().__init__(4, bad=1, how="sigkill")

    def __getitem__(self, i: int) -> int:
        if i == 0:
            time.sleep(3)
        return super().__getitem__(i)


def test_unpicklable_stream_items_are_a_clear_error() -> None:
    """Stream items travel to process workers pickled: if they cannot, the error says so."""
    items = [lambda: 0, lambda: 1]
    dl = DataLoader(iter(items), batch_size=1, num_workers=1, collate_fn=len)
    with pytest.raises(TypeError, match="worker_type='thread'"):
        list(dl)
