"""Parquet on disk (a ParquetFile, a pyarrow dataset, paths): indexed by the row groups in the
footers, read a row group at a time through a bounded cache, batches as for in-memory tables."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from files_helpers import check_exact_resume, check_exactly_once, epoch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minibatcher import DataLoader, collate
from minibatcher.samplers import ShardShuffleSampler
from minibatcher.sources import ParquetSource, as_source
from minibatcher.testing import same_batches

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
ds = pytest.importorskip("pyarrow.dataset")
pytestmark = pytest.mark.timeout(60)

ROWS = 50


def table(start: int, stop: int) -> object:
    ids = list(range(start, stop))
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "x": pa.array([i / 2 for i in ids], pa.float32()),
        "name": pa.array([f"row{i}" for i in ids]),
        "maybe": pa.array([None if i % 7 == 0 else i for i in ids], pa.int32()),
    })


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two files of 25 rows in row groups of 7 (4 groups each: 7, 7, 7, 4)."""
    root = tmp_path_factory.mktemp("parquet")
    paths = []
    for k in range(2):
        path = root / f"part-{k}.parquet"
        pq.write_table(table(25 * k, 25 * (k + 1)), path, row_group_size=7)
        paths.append(str(path))
    return paths


def ids(batch: dict[str, object]) -> list[int]:
    return batch["id"].tolist()  # type: ignore[attr-defined]


def test_kinds_of_data_are_recognised(files: list[str]) -> None:
    for data in (pq.ParquetFile(files[0]), ds.dataset(files), ds.dataset(files[0])):
        source = as_source(data)
        assert isinstance(source, ParquetSource)
    source = ParquetSource(files)
    assert len(source) == ROWS
    assert source.row_group_sizes == [7, 7, 7, 4, 7, 7, 7, 4]


def test_batches_equal_the_in_memory_table_path(files: list[str]) -> None:
    whole = pa.concat_tables([pq.read_table(p) for p in files])
    for shuffle in (False, True):
        on_disk = epoch(ds.dataset(files), batch_size=8, shuffle=shuffle, seed=4)
        in_memory = epoch(whole, batch_size=8, shuffle=shuffle, seed=4)
        assert len(on_disk) == len(in_memory)
        for a, b in zip(on_disk, in_memory, strict=True):
            assert a.keys() == b.keys()
            assert same_batches(a, b), (a, b)
    batch = on_disk[0]
    assert batch["x"].dtype == np.float32
    assert isinstance(batch["name"], list)
    assert batch["maybe"].dtype == np.float64  # nullable ints: float64 with NaN, as in memory


def test_the_batched_fetch_equals_collating_the_rows(files: list[str]) -> None:
    source = ParquetSource(files)
    for indices in (np.arange(3, 9), np.array([49, 0, 20, 7, 8, 30])):  # one group, several
        assert same_batches(source.fetch_batch(indices), collate(source.fetch_items(indices)))


def test_items_are_rows(files: list[str]) -> None:
    row = DataLoader(pq.ParquetFile(files[1]), batch_size=None).one_batch()
    assert row["id"] == 25
    assert row["name"] == "row25"
    assert row["maybe"] == 25.0  # a nullable int column: float64 (28 is a null)
    rows = ParquetSource(files[1]).fetch_items(np.array([3, 0]))
    assert [r["id"] for r in rows] == [28, 25]
    assert np.isnan(rows[0]["maybe"])


@pytest.mark.parametrize("shuffle", [False, True])
def test_each_row_exactly_once_everywhere(files: list[str], shuffle: bool) -> None:
    check_exactly_once(ds.dataset(files), ids, list(range(ROWS)), batch_size=6, shuffle=shuffle)


def test_a_parquet_file_object_works_with_fork_and_threads(files: list[str]) -> None:
    check_exactly_once(pq.ParquetFile(files[0]), ids, list(range(25)), batch_size=4, shuffle=True)
    with pytest.raises(TypeError, match="has no path"):
        pickle.dumps(as_source(pq.ParquetFile(files[0])))


def test_spawned_workers_open_the_files_themselves(files: list[str]) -> None:
    source = ParquetSource(files)
    source.fetch_batch(np.arange(3))  # opens a reader, caches a row group: neither is pickled
    assert pickle.loads(pickle.dumps(source)).fetch_batch(np.array([49]))["id"].tolist() == [49]
    got = epoch(source, batch_size=10, num_workers=2, mp_context="spawn")
    assert sorted(i for b in got for i in ids(b)) == list(range(ROWS))


def test_memory_is_bounded_by_the_row_group_cache(files: list[str]) -> None:
    source = ParquetSource(files, cache_row_groups=2)
    for group in range(8):
        source.fetch_batch(np.array([7 * group % ROWS]))
    assert len(source._cache.cached_groups()) == 2


def test_resume_at_every_batch(files: list[str]) -> None:
    check_exact_resume(ParquetSource(files[0]), batch_size=5, shuffle=True, seed=1)


def test_a_shard_shuffle_keeps_reads_within_few_row_groups(files: list[str]) -> None:
    source = ParquetSource(files, cache_row_groups=3)
    sampler = ShardShuffleSampler(source.row_group_sizes, buffer_size=4)
    got = epoch(source, batch_size=5, sampler=sampler, seed=0)
    assert sorted(i for b in got for i in ids(b)) == list(range(ROWS))
    check_exact_resume(source, batch_size=10, sampler=sampler, seed=0)


def test_bad_arguments_are_refused(files: list[str], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown"):
        ParquetSource(files, columns=["id", "nope"])
    with pytest.raises(ValueError, match="cache_row_groups must be a positive int, got 0"):
        ParquetSource(files, cache_row_groups=0)
    with pytest.raises(TypeError, match="ParquetFile"):
        ParquetSource(42)
    csv = tmp_path / "x.csv"
    csv.write_text("a\n1\n")
    with pytest.raises(TypeError, match="only Parquet"):
        ParquetSource(ds.dataset(str(csv), format="csv"))
    only_ids = epoch(ParquetSource(files, columns=["id"]), batch_size=50)
    assert list(only_ids[0]) == ["id"]


# -- streaming: row groups in a random order, rows shuffled within blocks ------------------------
def test_streaming_shuffles_row_groups_then_blocks_each_row_once_everywhere(
    files: list[str],
) -> None:
    source = ParquetSource(ds.dataset(files), streaming=True)
    assert source.shard_sizes == source.row_group_sizes
    reference = check_exactly_once(
        source, ids, list(range(ROWS)), batch_size=6, shuffle=True, shuffle_buffer=5, seed=3
    )
    order = [i for b in reference for i in ids(b)]
    expected = ShardShuffleSampler(source.row_group_sizes, buffer_size=5).order(3, 0)
    assert order == expected.slice(0, ROWS).tolist()
    in_order = epoch(source, batch_size=6, seed=3)  # no shuffle: the rows in file order
    assert [i for b in in_order for i in ids(b)] == list(range(ROWS))


def test_streaming_resumes_at_every_batch(files: list[str]) -> None:
    source = ParquetSource(files, streaming=True)
    check_exact_resume(source, batch_size=4, shuffle=True, shuffle_buffer=6, seed=9)
    check_exact_resume(source, batch_size=4, shuffle=True, shuffle_buffer=6, seed=9,
                       shard=(1, 2))


def test_streaming_decodes_each_row_group_once_per_epoch(files: list[str]) -> None:
    """Blocks of 7 rows touch at most 3 row groups of 7 (4): a cache of 3 serves every read."""
    source = ParquetSource(files, streaming=True, cache_row_groups=3)
    decoded: list[int] = []
    decode = source._decode

    def counting(group: int) -> object:
        decoded.append(group)
        return decode(group)

    source._cache.decode = counting
    for e in range(2):
        with DataLoader(source, batch_size=5, shuffle=True, shuffle_buffer=7, seed=e) as dl:
            got = [i for b in dl for i in ids(b)]
        assert sorted(got) == list(range(ROWS))
        assert sorted(decoded) == list(range(8)), decoded
        decoded.clear()
        source._cache.here().cache.clear()
        source._cache.here().last = None


# -- the batched fetch: every kind of index batch gives the in-memory table's rows ------------
@pytest.fixture(scope="module")
def in_memory(files: list[str]) -> Any:
    return as_source(pa.concat_tables([pq.read_table(p) for p in files]))


@given(st.lists(st.tuples(st.integers(0, ROWS - 1), st.integers(1, 12)), min_size=1, max_size=4))
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_batch_equals_the_in_memory_rows(
    files: list[str], in_memory: Any, runs: list[tuple[int, int]]
) -> None:
    """Runs of consecutive rows (within a group, across groups, alone or mixed with others)."""
    source = ParquetSource(files, cache_row_groups=2)
    whole = in_memory
    indices = np.concatenate([np.arange(a, min(a + k, ROWS)) for a, k in runs]).astype(np.int64)
    got = source.fetch_batch(indices)
    assert same_batches(got, whole.fetch_batch(indices))
    for column in got.values():  # the user's to change: never the cache's memory
        if isinstance(column, np.ndarray):
            column[...] = 0
    assert same_batches(source.fetch_batch(indices), whole.fetch_batch(indices))


def test_consecutive_rows_are_told_apart_beyond_the_compared_numbers() -> None:
    from minibatcher.sources.parquet import _consecutive

    numbers = np.arange(0, 8, dtype=np.int64).tobytes()  # rows 0..7 compared by memcmp
    assert _consecutive(np.arange(2, 6), numbers, 2, 6)
    assert not _consecutive(np.array([2, 4, 3, 5]), numbers, 2, 6)
    assert _consecutive(np.arange(6, 12), numbers, 6, 12)  # past them: increasing suffices
    assert not _consecutive(np.array([6, 8, 7, 9, 10, 11]), numbers, 6, 12)


# -- read-ahead: reading in order, the next row group is decoded in a background thread --------
def _recording(source: ParquetSource, fail: set[int] | None = None) -> list[tuple[int, str]]:
    """Record ``(group, thread name)`` of every decode of ``source``; raise for ``fail``."""
    import threading

    decoded: list[tuple[int, str]] = []
    decode = source._decode

    def recording(group: int) -> object:
        decoded.append((group, threading.current_thread().name))
        if fail and group in fail:
            raise OSError(f"cannot read row group {group}")
        return decode(group)

    source._cache.decode = recording
    return decoded


@pytest.mark.parametrize("read_ahead", [0, 1, 2])
def test_reading_in_order_decodes_the_next_row_groups_ahead(
    files: list[str], read_ahead: int
) -> None:
    source = ParquetSource(files, read_ahead=read_ahead, cache_row_groups=2)
    decoded = _recording(source)
    for batch_size in (7, 5):  # row groups of 7 rows: batches within a group, then across
        got = [i for b in epoch(source, batch_size=batch_size) for i in ids(b)]
        assert got == list(range(ROWS))
        assert sorted(g for g, _ in decoded) == list(range(8)), decoded  # each group once
        ahead = [g for g, name in decoded if name == "minibatcher-read-ahead"]
        if read_ahead:
            assert len(ahead) >= 6, decoded  # all but the first one or two
        else:
            assert not ahead
        decoded.clear()
        source._cache.here().cache.clear()
        source._cache.here().last = None


def test_read_ahead_leaves_no_thread_after_a_break_and_resumes_exactly(files: list[str]) -> None:
    source = ParquetSource(files, read_ahead=2)
    for stop in (1, 3, 4):  # stop in the first group, mid-way, at a group's first batch
        with DataLoader(source, batch_size=7) as dl:
            it = iter(dl)
            for _ in range(stop):
                next(it)
            state = dl.state_dict()
            del it
        with DataLoader(source, batch_size=7) as dl:
            dl.load_state_dict(state)
            rest = [i for b in dl for i in ids(b)]
        assert rest == list(range(7 * stop, ROWS))
    check_exact_resume(ParquetSource(files[0], read_ahead=1), batch_size=3)
    # forked workers while this process reads ahead (a fork waits for the decode): same rows
    with DataLoader(source, batch_size=7) as dl:
        it = iter(dl)
        next(it)
        forked = epoch(source, batch_size=7, num_workers=2, mp_context="fork")
        assert [i for b in forked for i in ids(b)] == list(range(ROWS))
        del it
    # (the leak check of this folder's conftest then sees every read-ahead thread ended)


def test_a_failed_read_ahead_is_decoded_again_and_raises_in_the_reader(files: list[str]) -> None:
    source = ParquetSource(files, read_ahead=1)
    decoded = _recording(source, fail={2})
    with pytest.raises(OSError, match="cannot read row group 2"):
        epoch(source, batch_size=7)
    names = [name for g, name in decoded if g == 2]  # ahead, failed; again, in the reader
    assert names[0] == "minibatcher-read-ahead", decoded
    assert len(names) >= 2, decoded
    assert "minibatcher-read-ahead" not in names[1:], decoded
