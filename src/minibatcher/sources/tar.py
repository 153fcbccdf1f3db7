"""TarShards: samples stored as tar files in the WebDataset layout, read by offset.

In: the paths of uncompressed tar files (shards). A sample is the run of consecutive members
sharing a key, the member's path up to the first dot of its basename (``cat/0001.jpg`` and
``cat/0001.cls`` are the sample ``cat/0001`` with extensions ``jpg`` and ``cls``); members
without an extension or with a hidden basename (``.DS_Store``, ``._0001.jpg``) are skipped.
Out: per index, the dict ``{extension: bytes, "__key__": key}``. State: none.

Each shard's member headers are read once, in the main process, at construction: the index holds
every member's data offset and size (a few NumPy arrays), so a tar is an *indexed* source. The
main process decides every batch as for any indexed source (exactly once per epoch, sharded across
ranks, resumable at any batch), and workers read their batches' members in parallel with
``os.pread`` on files they open themselves (a pickled TarShards carries paths, never open files).

``DataLoader(TarShards(paths), shuffle=True)`` shuffles the order of the shards, then the samples
through a seeded buffer of the loader's ``shuffle_buffer`` size (see
:class:`~minibatcher.samplers.ShardShuffleSampler`): reads stay close together in each epoch, and
the order is still a pure function of ``(seed, epoch)``.
"""

from __future__ import annotations

import os
import tarfile
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np

from .._typing import IndexArray
from .base import IndexedSource


class TarShards(IndexedSource):
    """Samples of WebDataset-style tar shards (uncompressed), indexed once by member offsets.

    Args:
        paths: a path or a list of paths of ``.tar`` files, in shard order.

    Attributes:
        paths: the shards' paths.
        shard_sizes: the number of samples in each shard (the groups of a shard shuffle).
        keys: each sample's key.

    Raises:
        ValueError: for a compressed or unreadable tar (naming the file), or no paths.
    """

    def __init__(self, paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [os.fspath(p) for p in paths]
        if not self.paths:
            raise ValueError("paths must name at least one tar file, got none")
        super().__init__(self.paths)
        keys: list[str] = []
        shard_of: list[int] = []
        first_member: list[int] = []
        offsets: list[int] = []
        sizes: list[int] = []
        exts: list[str] = []
        self.shard_sizes: list[int] = []
        for shard, path in enumerate(self.paths):
            before = len(keys)
            for member in _members(path):
                split = _split_name(member.name)
                if split is None:  # no extension, or a hidden file: not part of a sample
                    continue
                key, ext = split
                if not keys or key != keys[-1] or shard_of[-1] != shard or ext in _exts_of_last(
                    exts, first_member
                ):
                    keys.append(key)
                    shard_of.append(shard)
                    first_member.append(len(offsets))
                offsets.append(member.offset_data)
                sizes.append(member.size)
                exts.append(ext)
            self.shard_sizes.append(len(keys) - before)
        self.keys = keys
        self._shard_of = np.asarray(shard_of, dtype=np.int64)
        self._first = np.asarray([*first_member, len(offsets)], dtype=np.int64)
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._sizes = np.asarray(sizes, dtype=np.int64)
        self._exts = exts
        self._fds: dict[str, int] = {}
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.keys)

    def fetch_items(self, indices: IndexArray) -> list[Any]:
        return [self._read_sample(i) for i in indices.tolist()]

    def _read_sample(self, index: int) -> dict[str, Any]:
        path = self.paths[int(self._shard_of[index])]
        fd = self._fd(path)
        start, stop = self._first[index : index + 2].tolist()
        sample: dict[str, Any] = {"__key__": self.keys[index]}
        for m in range(start, stop):
            offset, size = int(self._offsets[m]), int(self._sizes[m])
            data = os.pread(fd, size, offset)
            if len(data) != size:
                raise OSError(
                    f"{path}: member {self.keys[index]}.{self._exts[m]} is truncated (read "
                    f"{len(data)} of {size} bytes at offset {offset})"
                )
            sample[self._exts[m]] = data
        return sample

    def _fd(self, path: str) -> int:
        """This process's descriptor of ``path`` (opened on first use; pread is thread-safe)."""
        if self._pid != os.getpid():  # forked: open our own files (the offsets are shared)
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(path)
        if fd is None:
            with self._lock:  # two threads opening the same shard would leak one descriptor
                fd = self._fds.get(path)
                if fd is None:
                    fd = self._fds[path] = os.open(path, os.O_RDONLY)
        return fd

    def close(self) -> None:
        """Close this process's open shard files (they reopen on the next read)."""
        fds, self._fds = self._fds, {}
        if self._pid == os.getpid():
            for fd in fds.values():
                os.close(fd)

    def __del__(self) -> None:
        if "_fds" in self.__dict__:
            self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fds"] = {}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TarShards(shards={len(self.paths)}, samples={len(self)})"


def _members(path: str) -> list[tarfile.TarInfo]:
    try:
        with tarfile.open(path, mode="r:") as archive:
            return [m for m in archive.getmembers() if m.isfile()]
    except (tarfile.ReadError, OSError) as e:
        raise ValueError(
            f"paths must be uncompressed, readable tar files: {path!r} is not ({e}); "
            "TarShards reads members by offset, which a compressed tar does not allow"
        ) from e


def _split_name(name: str) -> tuple[str, str] | None:
    """``dir/base.ext.more`` -> (``dir/base``, ``ext.more``), WebDataset's rule; None for a
    member that has no extension (``README``) or whose basename starts with a dot (``.DS_Store``,
    macOS tar's ``._0001.jpg``), which WebDataset skips too: grouped in, such a member became a
    sample of its own, with keys the others lack, and broke its batch."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not stem or not dot:
        return None
    return (f"{head}/{stem}" if head else stem), ext


def _exts_of_last(exts: list[str], first_member: list[int]) -> list[str]:
    """The extensions already in the sample being built (a repeat starts a new sample)."""
    return exts[first_member[-1] :] if first_member else []
