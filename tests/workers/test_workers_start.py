"""Starting process workers where people train: after a torch training step, next to live
threads (a notebook kernel's, tqdm's), with classes defined in ``__main__``, under every start
method; start-up failures raise the real exception; a loader frees its dataset.

Anything that could hang runs in a subprocess under a wall-clock bound, so that a regression
fails instead of hanging the suite.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import types
import warnings
import weakref

import numpy as np
import psutil
import pytest

from minibatcher import DataLoader
from minibatcher.transport import jax_fork

pytestmark = pytest.mark.timeout(180)

HANG_BOUND_S = 120


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as ``python -c`` (its classes live in a ``__main__`` with no file, as in a
    notebook), bounded in time."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=HANG_BOUND_S,
    )


@pytest.mark.slow
def test_torch_in_workers_after_a_training_step_in_the_main_process() -> None:
    """A multithreaded torch op in the parent, then workers whose items use torch: under fork
    the child used to wait forever for torch's thread pool; every start method must finish."""
    pytest.importorskip("torch")
    code = """
        import torch
        from minibatcher import DataLoader
        from minibatcher.transport.worker_loop import limit_torch_threads  # noqa: F401

        torch.set_num_threads(2)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(),
                                    torch.nn.LazyLinear(4))
        loss = model(torch.randn(16, 3, 32, 32)).square().mean()   # a training step
        loss.backward()
        x = torch.randn(512, 512); (x @ x).sum()

        def item(i):
            a = torch.randn(128, 128)
            return (a @ a).sum().item() + torch.get_num_threads() * 0 + i

        for method in ("fork", "spawn", "forkserver"):
            dl = DataLoader(list(range(12)), batch_size=4, num_workers=2, transform=None,
                            mp_context=method, timeout=60)
            print(method, len(list(dl)))
        class Items:
            def __len__(self): return 12
            def __getitem__(self, i):
                a = torch.randn(128, 128)
                return torch.get_num_threads() + 0 * (a @ a).sum().item()
        print("threads-in-worker", sorted({int(v) for b in DataLoader(Items(), batch_size=4,
              num_workers=2, timeout=60) for v in b}))
    """
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    for method in ("fork", "spawn", "forkserver"):
        assert f"{method} 3" in done.stdout
    assert "threads-in-worker [1]" in done.stdout  # one intra-op thread per worker, as torch


def test_live_threads_keep_fork_and_main_classes_work() -> None:
    """A notebook kernel has threads alive; classes and lambdas defined in ``__main__`` (no
    file) must work with the default start method, as with torch."""
    code = """
        import threading, time
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # kernel thread
        from minibatcher import DataLoader
        from minibatcher.transport import choose_start_method

        class Squares:
            def __len__(self): return 10
            def __getitem__(self, i): return i * i

        dl = DataLoader(Squares(), batch_size=5, num_workers=2, transform=lambda x: x + 1,
                        timeout=60)
        print(choose_start_method(None), [b.tolist() for b in dl])
    """
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = [[i * i + 1 for i in range(5)], [i * i + 1 for i in range(5, 10)]]
    assert done.stdout.strip() == f"fork {expected}"


def test_a_main_class_under_spawn_raises_the_real_error_with_its_traceback() -> None:
    """The worker cannot find a class of ``__main__``: the main process raises that
    AttributeError, with the worker's traceback, not 'worker exited with code 1'."""
    code = """
        from minibatcher import DataLoader

        class Squares:
            def __len__(self): return 10
            def __getitem__(self, i): return i * i

        for method in ("spawn", "forkserver"):
            try:
                list(DataLoader(Squares(), batch_size=5, num_workers=2, mp_context=method,
                                timeout=60))
            except AttributeError as e:
                print(method, "AttributeError", "Squares" in str(e),
                      "pickle.loads" in str(e.__cause__), "notebook" in str(e.__cause__))
    """
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "spawn AttributeError True True True" in done.stdout
    assert "forkserver AttributeError True True True" in done.stdout


class _FromAModuleWorkersCannotImport:
    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> int:
        return i


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_an_import_error_in_a_worker_raises_in_the_main_process(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = types.ModuleType("minibatcher_test_only_in_the_parent")
    cls = type("Data", (_FromAModuleWorkersCannotImport,), {"__module__": module.__name__})
    module.Data = cls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    dl = DataLoader(cls(), batch_size=3, num_workers=2, mp_context=method, timeout=60)
    with pytest.raises(ModuleNotFoundError, match="minibatcher_test_only_in_the_parent"):
        list(dl)


def test_jax_imported_in_the_parent_is_said_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jax", types.ModuleType("jax"))
    monkeypatch.setattr(jax_fork, "_jax_warned", False)
    with pytest.warns(RuntimeWarning, match="JAX is multithreaded"):
        assert len(list(DataLoader(range(8), batch_size=4, num_workers=2))) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(DataLoader(range(8), batch_size=4, num_workers=2))) == 2


class Owner:
    """A dataset object to follow with a weak reference."""

    def __init__(self, nbytes: int) -> None:
        self.array = np.ones(nbytes, dtype=np.uint8)

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> int:
        return int(self.array[i])


@pytest.mark.parametrize("persistent", [False, True])
def test_a_loader_with_process_workers_frees_its_dataset(persistent: bool) -> None:
    """Made, iterated and deleted three times: the datasets die and memory does not grow by a
    dataset per loader (it grew 380 MB per loader of a 380 MB dataset)."""
    size = 120 << 20
    rss = psutil.Process().memory_info().rss
    refs = []
    for _ in range(3):
        data = Owner(size)
        refs.append(weakref.ref(data))
        dl = DataLoader(data, batch_size=8, num_workers=2, persistent_workers=persistent)
        assert len(list(dl)) == 8
        dl.close()
        del dl, data
        gc.collect()
    assert [r() for r in refs] == [None, None, None]
    growth = psutil.Process().memory_info().rss - rss
    assert growth < size, f"memory grew {growth / 2**20:.0f} MiB over 3 loaders"
