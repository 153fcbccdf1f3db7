"""Hugging Face ``datasets``: a ``Dataset`` (memory-mapped Arrow, written to disk by the test)
is read with one batched take per batch in every format; an ``IterableDataset`` is streamed,
split across ranks, and resumed from its own state."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from files_helpers import check_exact_resume, check_exactly_once, epoch

from minibatcher import DataLoader

datasets = pytest.importorskip("datasets")
pytestmark = pytest.mark.timeout(60)

N = 40


@pytest.fixture(scope="module", autouse=True)
def _no_tqdm_monitor() -> Any:
    """datasets' progress bars start tqdm's monitor thread, which would outlive this module (and
    make later loaders avoid fork): silence the bars, and stop the thread when the module ends."""
    datasets.disable_progress_bars()
    yield
    from tqdm._monitor import TMonitor

    for thread in threading.enumerate():
        if isinstance(thread, TMonitor):
            thread.exit()  # joins it; the bars' class starts a new one if ever needed


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("hf") / "ds"
    ds = datasets.Dataset.from_dict({
        "id": list(range(N)),
        "x": [[float(i), float(-i)] for i in range(N)],
        "text": [f"t{i}" for i in range(N)],
    })
    ds.save_to_disk(str(root))
    return datasets.load_from_disk(str(root))  # memory-mapped Arrow files


def ids(batch: dict[str, Any]) -> list[int]:
    return [int(i) for i in batch["id"]]


@pytest.mark.parametrize("fmt", [None, "numpy", "torch"])
def test_a_dataset_in_every_format_each_row_once_everywhere(on_disk: Any, fmt: str | None) -> None:
    if fmt == "torch":
        pytest.importorskip("torch")
    ds = on_disk.with_format(fmt)
    batches = check_exactly_once(ds, ids, list(range(N)), batch_size=8, shuffle=True)
    first = batches[0]
    assert first["text"][:1]
    assert isinstance(first["text"][0], str)
    x = np.asarray(first["x"])
    if fmt is None:  # python lists collate per position, as torch's default_collate does
        x = x.T
    assert x.shape == (8, 2)
    assert (x[:, 0] == np.asarray(first["id"])).all()


class CountingTakes:
    """A Dataset wrapper counting its batched takes (one __getitems__ per batch)."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds
        self.takes = 0

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Any:
        raise AssertionError("read row by row: expected one batched take per batch")

    def __getitems__(self, keys: list[int]) -> Any:
        self.takes += 1
        return self.ds.__getitems__(keys)


def test_one_batched_take_per_batch(on_disk: Any) -> None:
    for fmt in (None, "numpy"):
        counted = CountingTakes(on_disk.with_format(fmt))
        got = epoch(counted, batch_size=8, shuffle=True, seed=0)
        assert counted.takes == len(got) == 5


def test_a_dataset_resumes_at_every_batch(on_disk: Any) -> None:
    check_exact_resume(on_disk.with_format("numpy").select(range(20)), batch_size=4, shuffle=True)


def iterable(n_shards: int = 4) -> Any:
    ds = datasets.Dataset.from_dict({"id": list(range(N))})
    return ds.to_iterable_dataset(num_shards=n_shards)


@pytest.mark.parametrize("shuffle", [False, True])
def test_an_iterable_dataset_streams_each_row_once(shuffle: bool) -> None:
    check_exactly_once(iterable(), ids, list(range(N)), batch_size=6, shuffle=shuffle,
                       shuffle_buffer=10)


def test_an_iterable_dataset_resumes_from_its_own_state() -> None:
    check_exact_resume(iterable, batch_size=6)


def test_an_iterable_dataset_sees_the_epoch(tmp_path: Path) -> None:
    shuffled = iterable().shuffle(seed=1, buffer_size=8)
    with DataLoader(shuffled, batch_size=N) as dl:
        e0, e1 = ids(next(iter(dl))), ids(next(iter(dl)))
    assert sorted(e0) == sorted(e1) == list(range(N))
    assert e0 != e1
