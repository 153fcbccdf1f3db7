"""The memory ceiling on CPU: measured at small sizes, solved for a budget, never above N."""

from __future__ import annotations

import numpy as np
import pytest

from minibatcher import ConfigError, DataLoader
from minibatcher.sizing import available_memory, memory_ceiling
from minibatcher.sizing.memory import fit_memory, solve

ITEM_FLOATS = 2048  # each item makes the step allocate 64 x 2048 float64 = 1 MiB


def allocating_step(batch: np.ndarray) -> float:
    """A step whose peak memory is ~1 MiB per item (a temporary 64x copy of the batch)."""
    scratch = np.repeat(batch[:, None, :], 64, axis=1) * 2.0
    return float(scratch.sum())


def test_ceiling_never_above_the_data_set() -> None:
    """With all the memory of the machine, the ceiling is N (here 100 items)."""
    dl = DataLoader(np.ones((100, 8)), batch_size=10)
    ceiling = memory_ceiling(dl, lambda b: b.sum(), sizes=[2, 4, 8])
    assert ceiling.batch_size == 100
    assert ceiling.limited_by == "data set size"


def test_budget_solved_from_the_measured_per_item_bytes() -> None:
    """~1 MiB per item measured; a 40 MiB budget allows ~40 items, far below N = 1024."""
    dl = DataLoader(np.ones((1024, ITEM_FLOATS)), batch_size=32, shuffle=True, seed=0)
    ceiling = memory_ceiling(dl, allocating_step, budget=40 * 2**20, sizes=[2, 4, 8, 16])
    assert ceiling.limited_by == "memory"
    assert 0.8 * 2**20 < ceiling.per_item_bytes < 1.5 * 2**20
    assert 25 <= ceiling.batch_size <= 48
    assert ceiling.peak(ceiling.batch_size) <= 40 * 2**20
    assert [p[0] for p in ceiling.points] == [2, 4, 8, 16]


def test_largest_items_are_measured_where_lengths_vary() -> None:
    """A list of arrays of lengths 1..400: the measured batches are the longest items."""
    items = [np.ones(n * 256) for n in range(1, 401)]
    seen: list[int] = []

    def step(batch: list[np.ndarray]) -> None:
        seen.extend(len(a) // 256 for a in batch)

    dl = DataLoader(items, batch_size=4, shuffle=True, seed=0, collate_fn=list)
    memory_ceiling(dl, step, sizes=[2, 4])
    assert min(seen[2:]) >= 390  # after the warm-up batch: only the longest items


def test_fit_and_solve() -> None:
    """fixed + per_item B fitted by least squares; solved and capped."""
    fixed, per_item = fit_memory([(1, 150), (2, 250), (4, 450)])
    assert (fixed, per_item) == pytest.approx((50.0, 100.0))
    assert solve(50, 100, 1050, None) == (10, "memory")
    assert solve(50, 100, 1050, 7) == (7, "data set size")
    assert solve(50, 0, 10, 7) == (7, "data set size")
    assert solve(5000, 100, 1050, None) == (1, "memory")


def test_available_memory_is_positive() -> None:
    """At least some bytes, respecting the cgroup where there is one."""
    assert available_memory() > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"budget": 0}, "budget must be"), ({"fraction": 1.5}, "fraction must be"),
     ({"sizes": [0]}, "sizes must be positive ints")],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    """Named, with the value."""
    with pytest.raises(ConfigError, match=message):
        memory_ceiling(DataLoader(np.ones((8, 2)), batch_size=2), lambda b: None,
                       **kwargs)  # type: ignore[arg-type]
