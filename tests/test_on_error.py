"""on_error="raise" | "skip": a corrupt item is named (index and file), or left out of its batch,
counted and listed, while every other item still arrives exactly once and resume stays exact."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minibatcher import ConfigError, DataLoader

pytestmark = pytest.mark.timeout(60)

EXECUTORS = [(0, "process"), (2, "thread"), (2, "process")]
EXECUTOR_IDS = ["inline", "threads", "processes"]


class Corrupt:
    """Items 0..n-1; the ones in ``bad`` raise, as an unreadable file would."""

    def __init__(self, n: int, bad: frozenset[int]) -> None:
        self.n, self.bad = n, bad

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        if i in self.bad:
            raise ValueError(f"item {i} is corrupt")
        return int(i)

    def describe_item(self, i: int) -> str:
        return f"/data/{i:05d}.bin"


def skipping(dl: DataLoader[Any]) -> tuple[list[list[int]], list[str]]:
    """The epoch's batches and the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = [np.asarray(b).reshape(-1).tolist() for b in dl]
    return batches, [str(w.message) for w in caught]


def test_on_error_is_validated_at_construction() -> None:
    with pytest.raises(ConfigError, match="on_error must be 'raise' or 'skip', got 'ignore'"):
        DataLoader(range(3), on_error="ignore")  # type: ignore[arg-type]


@pytest.mark.parametrize(("workers", "kind"), EXECUTORS, ids=EXECUTOR_IDS)
def test_raise_names_the_index_and_the_file(workers: int, kind: str, no_leaks: None) -> None:
    dl = DataLoader(Corrupt(20, frozenset({6})), batch_size=4, num_workers=workers,
                    worker_type=kind)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="item 6 is corrupt") as raised:
        list(dl)
    notes = " ".join(getattr(raised.value, "__notes__", []))
    assert "the item at index 6 failed (/data/00006.bin)" in notes, notes


@pytest.mark.parametrize(("workers", "kind"), EXECUTORS, ids=EXECUTOR_IDS)
def test_skip_leaves_the_item_out_counts_lists_and_warns_once_per_epoch(
    workers: int, kind: str, no_leaks: None,
) -> None:
    bad = frozenset({3, 9, 10})
    dl = DataLoader(Corrupt(16, bad), batch_size=4, num_workers=workers, worker_type=kind,  # type: ignore[arg-type]
                    on_error="skip")
    for epoch in range(2):
        batches, warned = skipping(dl)
        assert batches == [[0, 1, 2], [4, 5, 6, 7], [8, 11], [12, 13, 14, 15]]
        assert len(warned) == 1, warned
        assert warned[0].startswith(f"epoch {epoch}: skipping items that fail to load")
        assert "index 3: ValueError: item 3 is corrupt (/data/00003.bin)" in warned[0]
        stats = dl.stats
        assert [s.index for s in stats.skipped] == [3, 9, 10]
        assert stats.skipped[1].error == "ValueError: item 9 is corrupt (/data/00009.bin)"
        assert (stats.batches, stats.items) == (4, 13)
        assert "skipped: 3 items" in str(stats)


def test_a_batch_of_only_corrupt_items_is_left_out_and_resume_stays_exact() -> None:
    def make() -> DataLoader[Any]:
        return DataLoader(Corrupt(16, frozenset({4, 5, 6, 7})), batch_size=4, seed=0,
                          on_error="skip")

    batches, warned = skipping(make())
    assert batches == [[0, 1, 2, 3], [8, 9, 10, 11], [12, 13, 14, 15]]
    assert len(warned) == 1
    first = make()
    it = iter(first)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert next(it).tolist() == [0, 1, 2, 3]
        after_first = first.state_dict()
        assert next(it).tolist() == [8, 9, 10, 11]
        assert first.state_dict()["loader"]["next_batch"] == 3  # the empty batch 1 passed
        assert first.stats.batches == 2
        again = make()
        again.load_state_dict(after_first)
        assert [b.tolist() for b in again] == [[8, 9, 10, 11], [12, 13, 14, 15]]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 60),
    bad=st.frozensets(st.integers(0, 59), max_size=12),
    batch_size=st.integers(1, 7),
    shuffle=st.booleans(),
    stop=st.integers(0, 12),
)
def test_every_other_item_once_in_order_and_resume_exact(
    n: int, bad: frozenset[int], batch_size: int, shuffle: bool, stop: int,
) -> None:
    """Property: the items delivered are the epoch's order less the corrupt ones, each once;
    a state taken after any batch resumes to exactly the rest."""
    def make() -> DataLoader[Any]:
        return DataLoader(Corrupt(n, bad), batch_size=batch_size, shuffle=shuffle, seed=11,
                          on_error="skip")

    order = [x for b in DataLoader(range(n), batch_size=batch_size, shuffle=shuffle, seed=11)
             for x in b.tolist()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches, _ = skipping(make())
        assert [x for b in batches for x in b] == [i for i in order if i not in bad]
        first = make()
        it = iter(first)
        # (a state after the epoch's last batch points at the next epoch: stop before it)
        head = [next(it).tolist() for _ in range(min(stop, max(len(batches) - 1, 0)))]
        state = first.state_dict()
        again = make()
        again.load_state_dict(state)
        assert head + [b.tolist() for b in again] == batches


@pytest.mark.parametrize(("workers", "kind"), EXECUTORS, ids=EXECUTOR_IDS)
def test_a_truly_corrupt_jpeg_decoded_with_pil(
    workers: int, kind: str, tmp_path: Path, no_leaks: None,
) -> None:
    image = pytest.importorskip("PIL.Image")
    paths = []
    for i in range(6):
        path = tmp_path / f"{i}.jpg"
        pixels = np.full((8, 10, 3), i * 40, dtype=np.uint8)
        image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[:20] + b"\x00" * 40 + data[60:100])  # header kept, body broken

    class Jpegs:
        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, i: int) -> np.ndarray:
            with image.open(io.BytesIO(paths[i].read_bytes())) as img:
                return np.asarray(img.convert("RGB"))

        def describe_item(self, i: int) -> str:
            return str(paths[i])

    dl = DataLoader(Jpegs(), batch_size=3, num_workers=workers, worker_type=kind,  # type: ignore[arg-type]
                    on_error="skip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shapes = [tuple(b.shape) for b in dl]
    assert shapes == [(2, 8, 10, 3), (3, 8, 10, 3)]
    assert len(caught) == 1
    assert str(paths[2]) in str(caught[0].message)
    assert [s.index for s in dl.stats.skipped] == [2]
    with pytest.raises(OSError, match=r"(?i)broken|truncated|cannot identify") as raised:
        list(DataLoader(Jpegs(), batch_size=3, num_workers=workers, worker_type=kind))  # type: ignore[arg-type]
    assert f"the item at index 2 failed ({paths[2]})" in " ".join(raised.value.__notes__)


def test_a_failing_transform_on_a_stream_is_skipped(no_leaks: None) -> None:
    def check(x: int) -> int:
        if x % 5 == 0:
            raise ValueError(f"bad {x}")
        return x

    dl = DataLoader((i for i in range(12)), batch_size=4, transform=check, on_error="skip",
                    num_workers=2, worker_type="thread")
    batches, warned = skipping(dl)
    assert batches == [[1, 2, 3], [4, 6, 7], [8, 9, 11]]
    assert len(warned) == 1
    assert [s.index for s in dl.stats.skipped] == [0, 5, 10]


def test_a_batched_source_is_checked_item_by_item(no_leaks: None) -> None:
    """A source read a batch at a time (``__getitems__``): the batch failing, each item is
    read alone to find the corrupt one, and the others are read again as a batch."""
    class Batched(Corrupt):
        def __getitems__(self, indices: list[int]) -> list[int]:
            return [self[i] for i in indices]

    dl = DataLoader(Batched(8, frozenset({5})), batch_size=4, on_error="skip", num_workers=2)
    batches, warned = skipping(dl)
    assert batches == [[0, 1, 2, 3], [4, 6, 7]]
    assert len(warned) == 1


def test_a_collate_failure_is_no_items_and_still_raises() -> None:
    def collate(items: list[Any]) -> Any:
        raise RuntimeError("collate broke")

    with pytest.raises(RuntimeError, match="collate broke"):
        list(DataLoader(range(8), batch_size=4, collate_fn=collate, on_error="skip"))


@pytest.mark.parametrize(("workers", "kind"), EXECUTORS, ids=EXECUTOR_IDS)
@pytest.mark.parametrize("in_order", [True, False])
def test_a_state_after_the_last_delivered_batch_points_at_the_next_epoch(
    workers: int, kind: str, in_order: bool, no_leaks: None
) -> None:
    """The epoch's last batches fail whole: a state taken once the user has every batch that
    arrives (even before the loader has found that the rest are empty) resumes into the next
    epoch, never into an empty rest of this one (as a state after the last batch does)."""
    def make() -> DataLoader[Any]:
        return DataLoader(Corrupt(16, frozenset(range(8, 16))), batch_size=4, seed=5,
                          on_error="skip", num_workers=workers, worker_type=kind,
                          in_order=in_order)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with make() as dl:
            first, second = (sorted(x for b in dl for x in b.tolist()) for _ in range(2))
        assert first == second == list(range(8))
        with make() as dl:  # batches 2 and 3 fail whole
            it = iter(dl)
            got = [next(it).tolist() for _ in range(2)]
            state = dl.state_dict()
            assert state["loader"]["epoch"] == 1
            assert state["loader"]["next_batch"] == 0
            assert list(it) == []
        assert sorted(x for b in got for x in b) == list(range(8))
        with make() as again:
            again.load_state_dict(state)
            assert len(again) == 4
            assert again.epoch == 1
            resumed = [b.tolist() for b in again]
        assert sorted(x for b in resumed for x in b) == list(range(8))  # epoch 1, whole
