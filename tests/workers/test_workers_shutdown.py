"""Every way out of a loop stops the workers and unlinks the shared memory: break, del, garbage
collection, an exception or KeyboardInterrupt in the training loop, close(), the end of the
program, and the main process being killed. The autouse leak check verifies each test."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from workers_helpers import Faulty, Images, Squares

from minibatcher import DataLoader
from minibatcher.transport.shm import our_segments

pytestmark = pytest.mark.timeout(60)
HERE = os.path.dirname(os.path.abspath(__file__))


def _worker_pids() -> set[int]:
    """Our children that are DataLoader workers (not multiprocessing's helper processes)."""
    helpers = ("forkserver", "resource_tracker")
    return {
        c.pid for c in psutil.Process().children()
        if not any(h in " ".join(c.cmdline()) for h in helpers)
    }


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_break(worker_type: str) -> None:
    """Leaving the loop early (the iterator is then dropped) stops the workers."""
    dl = DataLoader(Images(200), batch_size=4, num_workers=2, worker_type=worker_type)
    for i, _ in enumerate(dl):
        if i == 3:
            break


def test_del_iterator_mid_epoch() -> None:
    """Deleting a half-consumed iterator stops the workers."""
    it = iter(DataLoader(Images(200), batch_size=4, num_workers=2))
    next(it)
    assert _worker_pids()
    del it


def test_garbage_collected_cycle() -> None:
    """An iterator kept alive only by a reference cycle is closed by the garbage collector."""
    holder: dict[str, object] = {}
    it = iter(DataLoader(Images(200), batch_size=4, num_workers=2))
    next(it)
    holder["it"], holder["self"] = it, holder
    del it, holder
    gc.collect()


def test_exception_in_the_training_loop() -> None:
    """An exception raised by the user's loop body stops the workers."""
    with pytest.raises(ZeroDivisionError):
        _train(DataLoader(Images(200), batch_size=4, num_workers=2))


def _train(loader: DataLoader[object]) -> None:
    for _ in loader:
        1 / 0  # noqa: B018


def test_keyboard_interrupt_while_waiting_for_a_worker() -> None:
    """Ctrl-C (SIGINT) while the main process waits: KeyboardInterrupt, then no worker left."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            list(DataLoader(Faulty(20, bad=1, how="sleep"), batch_size=2, num_workers=2))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_persistent_workers_close_and_context_manager() -> None:
    """Persistent workers live until close() (or the end of a with block)."""
    dl = DataLoader(Squares(20), batch_size=4, num_workers=2, persistent_workers=True)
    list(dl)
    assert len(_worker_pids()) == 2
    dl.close()
    dl.close()  # idempotent
    with DataLoader(Squares(20), batch_size=4, num_workers=2, persistent_workers=True) as dl2:
        list(dl2)
        assert len(_worker_pids()) == 2


def test_persistent_loader_garbage_collected() -> None:
    """A persistent loader dropped without close() closes its workers (__del__ fallback)."""
    dl = DataLoader(Images(40), batch_size=4, num_workers=2, persistent_workers=True)
    list(dl)
    del dl


def _script(body: str) -> subprocess.Popen[str]:
    code = f"import sys; sys.path.insert(0, {HERE!r})\n" + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def _gone(pids: list[int], within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_program_end_reaps_persistent_workers_and_segments() -> None:
    """A program that exits while persistent workers hold batches leaves nothing behind."""
    proc = _script("""
        import psutil
        from minibatcher import DataLoader
        from workers_helpers import Images
        dl = DataLoader(Images(400, (3, 64, 64)), batch_size=8, num_workers=2,
                        persistent_workers=True)
        it = iter(dl)
        kept = [next(it) for _ in range(5)]
        print(" ".join(str(c.pid) for c in psutil.Process().children()), flush=True)
    """)
    with proc:
        pids = [int(p) for p in proc.stdout.readline().split()]  # type: ignore[union-attr]
        assert proc.wait(30) == 0
    assert pids
    assert _gone(pids)
    assert our_segments(proc.pid) == []


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["BigResults()", "Images(400, (3, 64, 64))"])
def test_workers_exit_when_the_main_process_is_killed(dataset: str) -> None:
    """SIGKILL the main process while workers block writing big results: they exit on their
    own, and the segments it left are swept by the next loader."""
    proc = _script(f"""
        import time, psutil
        from minibatcher import DataLoader
        from workers_helpers import BigResults, Images
        dl = DataLoader({dataset}, batch_size=4, num_workers=2, prefetch=4)
        it = iter(dl)
        first = next(it)
        time.sleep(0.5)
        print(" ".join(str(c.pid) for c in psutil.Process().children()), flush=True)
        time.sleep(60)
    """)
    with proc:
        pids = [int(p) for p in proc.stdout.readline().split()]  # type: ignore[union-attr]
        assert pids
        proc.kill()
        proc.wait(10)
    assert _gone(pids), "workers outlived their main process"
    list(DataLoader(Images(16, (3, 64, 64)), batch_size=8, num_workers=1))  # sweeps
    assert our_segments(proc.pid) == []


def test_two_persistent_loaders_close_in_any_order() -> None:
    """Workers forked for a second loader do not keep the first loader's workers alive: closing
    the first one first is as quick as the other way round."""
    first = DataLoader(Squares(20), batch_size=4, num_workers=1, persistent_workers=True)
    second = DataLoader(Squares(20), batch_size=4, num_workers=1, persistent_workers=True)
    list(first)
    list(second)
    start = time.monotonic()
    first.close()
    assert time.monotonic() - start < 2
    second.close()
