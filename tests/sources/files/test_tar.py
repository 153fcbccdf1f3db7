"""TarShards: WebDataset-layout tar files indexed once by member offsets, read by workers."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from files_helpers import check_exact_resume, check_exactly_once, epoch

from minibatcher import DataLoader
from minibatcher.samplers import ShardShuffleSampler
from minibatcher.sources import TarShards

pytestmark = pytest.mark.timeout(60)


def write_shards(root: Path, shards: int, per_shard: int) -> list[str]:
    """Shards of samples ``{idx:05d}`` with a .txt (the key) and a .cls (the index) member."""
    paths = []
    index = 0
    for s in range(shards):
        path = root / f"shard-{s:03d}.tar"
        with tarfile.open(path, "w") as tar:
            for _ in range(per_shard):
                key = f"sample/{index:05d}"
                for ext, payload in (("txt", key.encode()), ("cls", str(index).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
                index += 1
        paths.append(str(path))
    return paths


def ids(batch: dict[str, list[bytes]]) -> list[int]:
    return [int(b) for b in batch["cls"]]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return write_shards(tmp_path_factory.mktemp("tars"), shards=4, per_shard=9)


def test_items_are_dicts_of_extension_to_bytes(shards: list[str]) -> None:
    source = TarShards(shards)
    assert len(source) == 36
    assert source.shard_sizes == [9, 9, 9, 9]
    item = DataLoader(source, batch_size=None).one_batch()
    assert item == {"__key__": "sample/00000", "txt": b"sample/00000", "cls": b"0"}
    assert source.keys[35] == "sample/00035"


@pytest.mark.parametrize("shuffle", [False, True])
def test_each_sample_exactly_once_everywhere(shards: list[str], shuffle: bool) -> None:
    source = TarShards(shards)
    reference = check_exactly_once(
        source, ids, list(range(36)), batch_size=5, shuffle=shuffle, seed=3, shuffle_buffer=6
    )
    order = [i for b in reference for i in ids(b)]
    assert (order == list(range(36))) is not shuffle


def test_shuffle_is_by_shard_then_buffer_and_a_function_of_the_seed(shards: list[str]) -> None:
    source = TarShards(shards)
    first = [ids(b) for b in epoch(source, batch_size=9, shuffle=True, seed=1, shuffle_buffer=1)]
    # buffer 1: whole shards in a random order, each in order
    assert sorted(tuple(b) for b in first) == [tuple(range(s, s + 9)) for s in range(0, 36, 9)]
    again = [ids(b) for b in epoch(source, batch_size=9, shuffle=True, seed=1, shuffle_buffer=1)]
    assert again == first
    with DataLoader(source, batch_size=36, shuffle=True, seed=1, shuffle_buffer=8) as dl:
        e0, e1 = ids(next(iter(dl))), ids(next(iter(dl)))
    assert e0 != e1
    assert sorted(e0) == sorted(e1) == list(range(36))
    expected = ShardShuffleSampler([9] * 4, buffer_size=8).order(dl.seed, 0)
    assert e0 == expected.slice(0, 36).tolist()


def test_resume_at_every_batch(shards: list[str]) -> None:
    check_exact_resume(TarShards(shards[:2]), batch_size=4, shuffle=True, seed=5, shuffle_buffer=4)


def test_pickles_paths_not_open_files(shards: list[str]) -> None:
    source = TarShards(shards)
    source.fetch_items(np.arange(3))
    clone = pickle.loads(pickle.dumps(source))
    assert clone._fds == {}
    assert clone.fetch_items(np.array([20]))[0]["cls"] == b"20"
    source.close()


def test_truncated_member_names_the_file(tmp_path: Path) -> None:
    (path,) = write_shards(tmp_path, shards=1, per_shard=3)
    source = TarShards(path)
    with open(path, "r+b") as f:  # cut the file inside the last member's data
        f.truncate(int(source._offsets[-1]))
    with pytest.raises(OSError, match=r"shard-000.tar: member sample/00002.cls is truncated"):
        source.fetch_items(np.array([2]))
    source.close()


def test_bad_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one tar"):
        TarShards([])
    gz = tmp_path / "x.tar.gz"
    with tarfile.open(gz, "w:gz"):
        pass
    with pytest.raises(ValueError, match="uncompressed"):
        TarShards(gz)


def test_members_without_extension_or_hidden_are_skipped_as_webdataset_does(
    tmp_path: Path,
) -> None:
    """A tar made on macOS holds ``._0001.txt`` AppleDouble files; others a README or a
    .DS_Store. Each became a sample of its own, with keys the real samples lack, splitting the
    real samples around it and breaking the batch (a CollateError on missing keys)."""
    path = tmp_path / "mac.tar"
    names = ["d/0001.txt", "d/._0001.txt", "d/0001.cls", "d/README", "d/.DS_Store",
             "d/0002.txt", "d/0002.cls"]
    with tarfile.open(path, "w") as tar:
        for name in names:
            payload = name.encode()
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    source = TarShards([str(path)])
    assert source.keys == ["d/0001", "d/0002"]
    (batch,) = list(DataLoader(source, batch_size=2))
    assert batch["cls"] == [b"d/0001.cls", b"d/0002.cls"]
    assert sorted(batch) == ["__key__", "cls", "txt"]
