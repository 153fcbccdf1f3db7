"""Datasets and functions for the worker tests, importable by spawned workers (module level)."""

from __future__ import annotations

import ctypes
import faulthandler
import os
import random
import signal
import sys
import time
from typing import Any

import numpy as np

from minibatcher import get_worker_info


class Squares:
    """A map-style dataset: item i is (i, i*i as float)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[int, float]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return i, float(i * i)


class Faulty:
    """Item ``bad`` misbehaves: ``how`` is raise, sigkill, exit, segv, sysexit or sleep."""

    def __init__(self, n: int, bad: int, how: str) -> None:
        self.n, self.bad, self.how = n, bad, how

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        if i == self.bad:
            if self.how == "raise":
                raise ValueError(f"item {i} is broken")
            if self.how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.how == "exit":
                os._exit(3)
            if self.how == "segv":
                faulthandler.disable()  # pytest's handler would print every thread's stack
                ctypes.string_at(0)
            if self.how == "sysexit":
                sys.exit(4)
            if self.how == "sleep":
                time.sleep(3)
        return i


class Images:
    """Item i: a (3, 64, 64) uint8 image filled with i % 256 (12 KiB; batches go by shm)."""

    def __init__(self, n: int, shape: tuple[int, ...] = (3, 64, 64)) -> None:
        self.n, self.shape = n, shape

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        return np.full(self.shape, i % 256, dtype=np.uint8)


class TorchImages(Images):
    """As Images, but items are torch tensors."""

    def __getitem__(self, i: int) -> Any:
        import torch

        return torch.full(self.shape, i % 256, dtype=torch.uint8)


class WhoAmI:
    """Item i: (i, worker id, num_workers, worker seed, a draw from the global generators)."""

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> tuple[int, int, int, int, float, float]:
        info = get_worker_info()
        assert info is not None
        return i, info.id, info.num_workers, info.seed, random.random(), float(np.random.rand())


class Slow:
    """Item i sleeps a pseudo-random few milliseconds (so workers finish out of order), or
    ``seconds`` each when given (batches of known cost)."""

    def __init__(self, n: int, seconds: float | None = None) -> None:
        self.n, self.seconds = n, seconds

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        time.sleep(((i * 7919) % 5) / 1000 if self.seconds is None else self.seconds)
        return i


class Stream:
    """An iterable without len(); counts the items read from it (in the main process)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.read = 0

    def __iter__(self) -> Any:
        for i in range(self.n):
            self.read += 1
            yield i


class BigResults:
    """Items are 1 MiB bytes objects: pickled, not shared, so a worker blocks writing them."""

    def __len__(self) -> int:
        return 10_000

    def __getitem__(self, i: int) -> bytes:
        return bytes(1 << 20)


def jitter(item: Any, rng: np.random.Generator) -> Any:
    """A random transform: the result depends on (seed, epoch, index) only."""
    return (item, float(rng.random()))


def double_batch(batch: Any) -> Any:
    """A batch transform."""
    return batch


def failing_init(worker_id: int) -> None:
    """A worker_init_fn that raises."""
    raise KeyError(f"init of worker {worker_id} failed")


def unpicklable_batch(items: list[Any]) -> Any:
    """A collate_fn whose batches cannot be pickled."""
    return lambda: items


def as_list(batch: Any) -> Any:
    """Nested structures of arrays -> plain Python, for comparison."""
    if isinstance(batch, np.ndarray):
        return batch.tolist()
    if isinstance(batch, dict):
        return {k: as_list(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(as_list(v) for v in batch)
    if hasattr(batch, "tolist"):
        return batch.tolist()
    return batch
