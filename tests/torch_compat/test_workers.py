"""Workers: worker info and seeds, worker_init_fn, errors that do not end the epoch, timeouts,
persistent workers, in_order, start methods and the warnings torch gives."""

from __future__ import annotations

import multiprocessing
import os
import random
import time
import warnings

import numpy as np
import pytest
import torch
import torch.utils.data as tud

from minibatcher.torch import DataLoader as MiniDataLoader

from .conftest import both, outcome

pytestmark = pytest.mark.timeout(90)


class WhoAmI(tud.Dataset):
    """Each item says which worker made it and what its global RNGs draw."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        info = tud.get_worker_info()
        return {
            "i": i,
            "worker": -1 if info is None else info.id,
            "num_workers": -1 if info is None else info.num_workers,
            "seed": -1 if info is None else info.seed,
            "initial_seed": torch.initial_seed(),
            "torch_rand": torch.rand(1),
            "random": random.random(),
            "numpy": np.random.rand(),
            "threads": torch.get_num_threads(),
        }


@pytest.mark.parametrize("num_workers", [1, 2])
def test_worker_info_seeds_and_dealing(num_workers):
    """Batch i is built by worker i % num_workers, seeded base_seed + id as torch does, so even
    items that draw from the workers' global RNGs are identical."""

    def run(cls):
        torch.manual_seed(99)
        dl = cls(WhoAmI(), 2, True, num_workers=num_workers)
        return [list(dl) for _ in range(2)]

    both(run)


def record_init(worker_id):
    info = tud.get_worker_info()
    assert info.id == worker_id
    info.dataset.init_seen = (worker_id, torch.initial_seed())


class InitSeen(tud.Dataset):
    init_seen = None

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return [i, *self.init_seen]


def test_worker_init_fn_runs_first_in_each_worker():
    def run(cls):
        torch.manual_seed(3)
        return list(cls(InitSeen(), 2, num_workers=2, worker_init_fn=record_init))

    both(run)


def failing_init(worker_id):
    raise ValueError(f"init failed in {worker_id}")


def test_worker_init_fn_error_raises_its_type(loader_cls):
    with pytest.raises(ValueError, match="init failed"):
        list(loader_cls(range(4), 2, num_workers=1, worker_init_fn=failing_init))


class SometimesBad(tud.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        if i in (3, 7):
            raise KeyError(i)
        return i


@pytest.mark.parametrize("num_workers", [0, 2])
def test_an_error_is_raised_once_and_the_epoch_goes_on(num_workers):
    def run(cls):
        it = iter(cls(SometimesBad(), 2, num_workers=num_workers))
        seen = []
        for _ in range(len(it) + 1):
            try:
                seen.append(next(it).tolist())
            except StopIteration:
                seen.append("end")
                break
            except KeyError as e:  # torch's message adds the worker's traceback; ours chains it
                seen.append(("KeyError", "3" in str(e) or "7" in str(e)))
        return seen

    both(run)


class Slow(tud.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i == 2:
            time.sleep(1.5)
        return i


def test_timeout_raises_runtime_error(loader_cls):
    with pytest.raises(RuntimeError, match=r"DataLoader timed out after 0.3 seconds"):
        list(loader_cls(Slow(), 1, num_workers=1, timeout=0.3))


def test_timeout_without_workers_fails_at_iter_alike():
    def run(cls):
        dl = cls(range(4), 1, timeout=1)
        return outcome(lambda: iter(dl))

    both(run)


class Pid(tud.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return os.getpid()


@pytest.mark.parametrize("persistent", [False, True])
def test_persistent_workers_outlive_the_epoch(loader_cls, persistent):
    dl = loader_cls(Pid(), 2, num_workers=2, persistent_workers=persistent)
    pids = [{int(p) for b in dl for p in b} for _ in range(2)]
    assert len(pids[0]) == 2
    assert (pids[0] == pids[1]) is persistent
    if isinstance(dl, MiniDataLoader):
        dl.close()


def test_persistent_workers_same_batches_as_torch():
    def run(cls):
        torch.manual_seed(0)
        dl = cls(WhoAmI(), 3, True, num_workers=2, persistent_workers=True)
        return [list(dl) for _ in range(3)], torch.rand(1)

    both(run)


@pytest.mark.parametrize("num_workers", [1, 2])
def test_in_order_false_delivers_each_batch_once(loader_cls, num_workers):
    dl = loader_cls(range(40), 3, num_workers=num_workers, in_order=False)
    items = sorted(int(i) for b in dl for i in b)
    assert items == list(range(40))


def test_process_wide_start_method_respected():
    """multiprocessing_context=None: the start method set with set_start_method is used."""
    dl = MiniDataLoader(range(4), 2, num_workers=1)
    executor = dl._make_executor(None)
    try:
        assert executor.start_method == multiprocessing.get_start_method()
    finally:
        executor.close()
    ctx = multiprocessing.get_context("spawn")
    executor = MiniDataLoader(range(4), 2, num_workers=1, multiprocessing_context=ctx)
    assert executor._make_executor(None).start_method == "spawn"


def test_too_many_workers_warn_alike():
    def run(cls):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cls(range(4), 2, num_workers=(os.cpu_count() or 1) * 4)
        return [str(w.message) for w in caught]

    messages = both(run)
    assert messages
    assert "worker processes in total" in messages[0]


def test_pin_memory_without_accelerator_warns_alike():
    if torch.accelerator.is_available():
        pytest.skip("an accelerator is available")

    def run(cls):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            batches = list(cls(range(4), 2, pin_memory=True, pin_memory_device="cuda"))
        return batches, [str(w.message) for w in caught]

    both(run)


def test_a_killed_worker_is_an_error_not_a_hang():
    """(Ours only: torch reports it from a SIGCHLD handler, at whatever line runs then.)"""

    class Dies(tud.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            if i == 3:
                os._exit(1)
            return i

    with pytest.raises(RuntimeError):
        list(MiniDataLoader(Dies(), 1, num_workers=1, timeout=30))


class TorchInfo(tud.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        info = tud.get_worker_info()
        return -1 if info is None else info.id * 10 + info.num_workers


def test_torch_worker_info_in_core_loader_process_workers():
    """minibatcher.DataLoader's process workers answer torch's get_worker_info() too."""
    import minibatcher

    dl = minibatcher.DataLoader(TorchInfo(), 1, num_workers=2, output="numpy")
    values = sorted(int(b[0]) for b in dl)
    assert set(values) <= {2, 12}
    assert -1 not in values


def test_an_unpicklable_dataset_under_spawn_raises_torchs_error() -> None:
    """torch raises the pickling error itself (AttributeError for a lambda); ours raised a
    WorkerError chained to it. Now the same type and message, with minibatcher's advice as a
    note (Python >= 3.11) and the traceback of the pickling."""
    data = tud.TensorDataset(torch.arange(8))
    data.transform = lambda x: x  # type: ignore[attr-defined]

    def run(cls: type) -> tuple[str, str]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's "Got pickle error" advice
            return outcome(lambda: list(cls(data, 2, num_workers=2,
                                            multiprocessing_context="spawn")))  # fmt: skip

    assert both(run)[0] == "AttributeError"
    with pytest.raises(AttributeError, match="pickle") as caught:
        list(MiniDataLoader(data, 2, num_workers=2, multiprocessing_context="spawn"))
    notes = getattr(caught.value, "__notes__", ["multiprocessing_context='fork'"])  # 3.10
    assert "multiprocessing_context='fork'" in notes[0]
