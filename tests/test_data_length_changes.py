"""A list that grows or shrinks between epochs: each epoch reads the data as it is at
``iter()``, its length included, as torch's samplers do (``len(data_source)`` at each
iteration). The loader's own order was sized once, at construction: items appended later were
silently never read, and a shrunk list raised an IndexError blaming "the sampler"."""

from __future__ import annotations

from typing import Any

import pytest

from minibatcher import DataLoader

pytestmark = pytest.mark.timeout(60)


def items(dl: DataLoader[Any]) -> list[int]:
    return sorted(x for batch in dl for x in batch.tolist())


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"shuffle": True, "seed": 0}, {"shuffle": True, "seed": 0, "num_workers": 2,
                                         "worker_type": "thread"}],
)
def test_each_epoch_reads_the_data_at_its_current_length(kwargs: dict[str, Any]) -> None:
    data = list(range(6))
    dl = DataLoader(data, batch_size=4, **kwargs)
    assert items(dl) == list(range(6))
    data.extend([6, 7, 8])
    assert len(dl) == 3
    assert items(dl) == list(range(9))
    del data[:5]
    assert len(dl) == 1
    assert items(dl) == [5, 6, 7, 8]


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_persistent_workers_restart_when_the_data_changes_length(worker_type: str) -> None:
    """Persistent process workers hold the data as it was when they were forked: with a
    longer list they could not read the new indices (a raw IndexError in the worker)."""
    data = list(range(10))
    with DataLoader(data, batch_size=4, shuffle=True, seed=0, num_workers=2,
                    worker_type=worker_type, persistent_workers=True) as dl:  # type: ignore[arg-type]
        assert items(dl) == list(range(10))
        first = dl._executors.persistent
        assert items(dl) == list(range(10))
        assert dl._executors.persistent is first  # same length: the same workers
        data.extend(range(10, 14))
        assert items(dl) == list(range(14))
        assert dl._executors.persistent is not first
        assert getattr(first, "closed", True)
