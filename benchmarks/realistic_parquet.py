"""Parquet on disk (``../shared/BENCHMARKS.md``, issue 11; see ``realistic.py``).

Wpq: 2M rows x 4 numeric columns in row groups of 64k rows, bs 256, read in order through
``DataLoader(ParquetFile)`` (at ``num_workers=0``: the next row group is decoded by a read-ahead
thread while batches are served from the current one) against the same rows as an in-memory
Arrow table; "all row groups cached": a cache that holds every decoded group (later epochs
decode nothing); "no read-ahead", "2 threads", "2 processes": the same file read otherwise.
Wpqs: the same shuffled (on disk: ``ShardShuffleSampler``, a buffer of one row group; in memory:
a uniform shuffle).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from harness import (
    BENCH_DATA,
    Cell,
    Config,
    Target,
    Workload,
    loader_epochs,
)

SEED = 0
PQ_FULL, PQ_QUICK, PQ_GROUP, PQ_BATCH = 2_000_000, 400_000, 65_536, 256


def pq_path(config: Config) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = config.size(PQ_FULL, PQ_QUICK)
    path = os.path.join(BENCH_DATA, f"pq-{n}.parquet")
    if not os.path.exists(path):
        os.makedirs(BENCH_DATA, exist_ok=True)
        rng = np.random.default_rng(SEED)
        table = pa.table({
            "id": np.arange(n, dtype=np.int64),
            "x": rng.standard_normal(n).astype(np.float32),
            "y": rng.standard_normal(n),
            "label": rng.integers(0, 10, n, dtype=np.int32),
        })
        pq.write_table(table, path + ".part", row_group_size=PQ_GROUP)
        os.replace(path + ".part", path)
    return path


def _pq(kind: str, shuffle: bool, **options: Any) -> Callable[[Config], float]:
    """``kind``: "memory" (the table read whole first), "file" (``DataLoader(ParquetFile)``),
    "no read-ahead" (``ParquetSource(path, read_ahead=0)``) or "cached"; ``options``: more
    DataLoader arguments (workers)."""

    def run(config: Config) -> float:
        import pyarrow.parquet as pq

        from minibatcher import DataLoader
        from minibatcher.samplers import ShardShuffleSampler
        from minibatcher.sources import ParquetSource

        path = pq_path(config)
        kwargs: dict[str, Any] = {"batch_size": PQ_BATCH, "seed": SEED, **options}
        if kind == "memory":
            data: Any = pq.read_table(path)
            kwargs["shuffle"] = shuffle
        elif kind == "cached":  # every decoded row group kept: later epochs decode nothing
            groups = config.size(PQ_FULL, PQ_QUICK) // PQ_GROUP + 1
            data = ParquetSource(path, cache_row_groups=groups)
        elif kind == "no read-ahead":
            data = ParquetSource(path, read_ahead=0)
        else:
            data = pq.ParquetFile(path)
            if shuffle:  # random rows, read a row group at a time
                groups = [data.metadata.row_group(g).num_rows
                          for g in range(data.metadata.num_row_groups)]
                kwargs["sampler"] = ShardShuffleSampler(groups, buffer_size=PQ_GROUP)
        loader = DataLoader(data, **kwargs)
        return loader_epochs(loader, config.size(PQ_FULL, PQ_QUICK), config)

    return run


def _cell(competitor: str, run: Callable[[Config], float]) -> Cell:
    """A competitor of Wpq or Wpqs (each needs pyarrow)."""
    return Cell(competitor=competitor, run=run, requires=("pyarrow",))


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        id="Wpq",
        title="Parquet 2M rows x 4 numeric cols, row groups of 64k, bs 256, in order",
        cells=(
            _cell("in-memory Arrow table", _pq("memory", False)),
            _cell("minibatcher", _pq("file", False)),
            _cell("minibatcher, no read-ahead", _pq("no read-ahead", False)),
            _cell("minibatcher, 2 threads",
                  _pq("file", False, num_workers=2, worker_type="thread")),
            _cell("minibatcher, 2 processes", _pq("file", False, num_workers=2)),
            _cell("minibatcher, all row groups cached", _pq("cached", False)),
        ),
        targets=(
            Target(numerator="minibatcher", denominator="in-memory Arrow table", at_least=0.8),
            Target(numerator="minibatcher, no read-ahead", denominator="in-memory Arrow table"),
            Target(numerator="minibatcher, 2 threads", denominator="in-memory Arrow table"),
            Target(numerator="minibatcher, 2 processes", denominator="in-memory Arrow table"),
            Target(numerator="minibatcher, all row groups cached",
                   denominator="in-memory Arrow table"),
        ),
    ),
    Workload(
        id="Wpqs",
        title="Parquet as Wpq, shuffled (on disk: shard shuffle, buffer of one row group)",
        cells=(
            _cell("in-memory Arrow table", _pq("memory", True)),
            _cell("minibatcher", _pq("file", True)),
        ),
        targets=(Target(numerator="minibatcher", denominator="in-memory Arrow table"),),
    ),
)
"""Wpq and Wpqs, for ``realistic.py``."""
