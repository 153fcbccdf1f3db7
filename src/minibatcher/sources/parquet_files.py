"""Opening Parquet files for :class:`~minibatcher.sources.ParquetSource`: the kinds of data it
accepts (``files_of``), and each process's open readers (``Readers``).

In: a ``ParquetFile``, a ``pyarrow.dataset`` of Parquet files, a path or paths. Out: readers,
one per file per reading thread (a read-ahead thread counts as one:
:func:`~minibatcher.sources.row_groups.reader_slot`), opened on first use. State: the open
readers of this process; a forked child opens its own (a reader's state and a lock held at fork
time must not be shared), and at most ``OPEN_FILES`` stay open per reader, so a data set of many
files does not exhaust file descriptors.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .row_groups import reader_slot

OPEN_FILES = 16
"""Parquet readers kept open per process and reading thread."""


class Readers:
    """One process's open readers (:meth:`here` gives a forked child its own)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.readers: dict[tuple[int | tuple[str, int], int], Any] = {}
        self._replaced: Readers | None = None

    def here(self) -> Readers:
        """These readers, or a forked child's own (made on its first read)."""
        if self.pid == os.getpid():
            return self
        replaced = self._replaced
        if replaced is None or replaced.pid != os.getpid():
            replaced = self._replaced = Readers()
        return replaced

    def open(self, paths: list[str], filesystem: Any, file_index: int) -> Any:
        """The calling reader's ``ParquetFile`` of ``paths[file_index]``."""
        key = (reader_slot(), file_index)  # a reader per thread: reads run in parallel
        with self.lock:
            reader = self.readers.get(key)
            if reader is None:
                import pyarrow.parquet as pq

                path = paths[file_index]
                if filesystem is not None and not _is_local(filesystem):
                    reader = pq.ParquetFile(filesystem.open_input_file(path))
                else:  # a local path: mapped, so the page cache is read without a copy
                    reader = pq.ParquetFile(path, memory_map=True)
                self.readers[key] = reader
                own = [k for k in self.readers if k[0] == key[0]]  # never another thread's
                while len(own) > OPEN_FILES:
                    self.readers.pop(own.pop(0)).close()
        return reader


def files_of(data: Any) -> tuple[Any, list[str], Any]:
    """``(ParquetFile or None, paths, filesystem or None)`` for the accepted kinds of data."""
    if isinstance(data, (str, os.PathLike)):
        return None, [os.fspath(data)], None
    if isinstance(data, (list, tuple)) and data and all(
        isinstance(p, (str, os.PathLike)) for p in data
    ):
        return None, [os.fspath(p) for p in data], None
    kind = type(data).__name__
    if kind == "ParquetFile":
        return data, [""], None
    if hasattr(data, "files") and hasattr(data, "filesystem"):  # pyarrow.dataset.FileSystemDataset
        fmt = type(getattr(data, "format", None)).__name__
        if fmt != "ParquetFileFormat":
            raise TypeError(f"data is a pyarrow dataset of {fmt} files: only Parquet is indexed")
        if not data.files:
            raise ValueError("data is a pyarrow dataset with no files")
        return None, list(data.files), data.filesystem
    raise TypeError(
        "data must be a pyarrow ParquetFile, a pyarrow.dataset dataset of Parquet files, or "
        f"Parquet paths; got {kind}"
    )


def _is_local(filesystem: Any) -> bool:
    return type(filesystem).__name__ == "LocalFileSystem"
