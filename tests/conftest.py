"""Shared fixtures. ``no_leaks``: a test that starts workers leaves no child process, no thread
and no shared-memory segment of ours behind (checked for up to 5 s after the test)."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

LEAK_GRACE_S = 5.0
_HELPERS = ("forkserver", "resource_tracker", "semaphore_tracker")


def _children() -> set[int]:
    """Our child processes, minus multiprocessing's long-lived helpers (forkserver, tracker)."""
    kids = set()
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        if not any(name in cmdline for name in _HELPERS):
            kids.add(child.pid)
    return kids


def _segments() -> list[str]:
    from minibatcher.transport.shm import our_segments

    return our_segments(os.getpid())


def leaks(children_before: set[int], threads_before: set[threading.Thread]) -> str:
    """What is left over, in words ('' when nothing)."""
    gc.collect()
    found = []
    kids = _children() - children_before
    if kids:
        found.append(f"child processes {sorted(kids)}")
    threads = [t.name for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    if threads:
        found.append(f"threads {threads}")
    segments = _segments()
    if segments:
        found.append(f"shared-memory segments {segments}")
    return "; ".join(found)


def wait_for_no_leaks(children_before: set[int], threads_before: set[threading.Thread]) -> str:
    """Poll (up to ``LEAK_GRACE_S``) until nothing is left; return what is left at the end."""
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        left = leaks(children_before, threads_before)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves worker processes, threads or /dev/shm segments behind."""
    children = _children()
    threads = set(threading.enumerate())
    yield
    left = wait_for_no_leaks(children, threads)
    assert not left, f"left behind after {LEAK_GRACE_S} s: {left}"
