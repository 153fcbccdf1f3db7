"""Batches cut into micro-batches whatever their structure; loaders rebuilt at other sizes."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import pytest

from minibatcher import DataLoader
from minibatcher.sizing._loaders import loader_like, population, split_batch


class Pair(NamedTuple):
    x: np.ndarray
    label: list[str]


@dataclasses.dataclass
class Rows:
    x: np.ndarray
    scale: float


def test_every_leaf_sliced_along_its_first_axis() -> None:
    """Dicts, namedtuples, lists of str, dataclasses; scalar leaves kept whole."""
    batch = {"pair": Pair(np.arange(10), [str(i) for i in range(10)]),
             "rows": Rows(np.ones((10, 2)), 2.0), "both": [np.arange(10), np.arange(10) * 2]}
    parts, sizes = split_batch(batch, 3)
    assert sizes == [3, 4, 3]
    assert isinstance(parts[0]["pair"], Pair)
    np.testing.assert_array_equal(parts[1]["pair"].x, [3, 4, 5, 6])
    assert parts[2]["pair"].label == ["7", "8", "9"]
    assert parts[0]["rows"].x.shape == (3, 2)
    assert parts[0]["rows"].scale == 2.0
    np.testing.assert_array_equal(parts[2]["both"][1], [14, 16, 18])


def test_mismatched_leaf_is_an_error() -> None:
    """A leaf with another first-axis length is named."""
    with pytest.raises(ValueError, match="a leaf has 3 rows"):
        split_batch({"x": np.zeros(8), "y": np.zeros(3)}, 2)


def test_rebuilt_loader_gives_the_same_batches() -> None:
    """Same data, options and resolved seed: identical batches at the same size."""
    dl = DataLoader(np.arange(50), batch_size=8, shuffle=True, seed=None, drop_last=True)
    copy = loader_like(dl, 8)
    assert [b.tolist() for b in copy] == [b.tolist() for b in dl]
    assert [len(b) for b in loader_like(dl, 20)] == [20, 20]


def test_population_of_a_shard() -> None:
    """N is the items this rank's epochs draw from."""
    assert population(DataLoader(np.arange(101), batch_size=4)) == 101
    assert population(DataLoader(np.arange(101), batch_size=4, shard=(1, 4), uneven="drop",
                                 seed=0)) == 25


def test_sizing_imports_no_framework() -> None:
    """NumPy only: importing minibatcher.sizing imports neither torch nor tqdm."""
    import subprocess
    import sys

    code = ("import sys, minibatcher.sizing; "
            "print(sorted(m for m in ('torch', 'tqdm', 'jax') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "[]"
