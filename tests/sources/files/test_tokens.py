"""TokenWindows over a uint16 memmap made by the test: (x, y) next-token windows, batched in one
gather, the same batches whatever the workers, resumable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from files_helpers import check_exact_resume, check_exactly_once

from minibatcher import collate
from minibatcher.sources import TokenWindows

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    path = tmp_path_factory.mktemp("tokens") / "train.bin"
    np.arange(1_000, dtype=np.uint16).tofile(path)
    return np.memmap(path, dtype=np.uint16, mode="r")


def ids(batch: tuple[np.ndarray, np.ndarray]) -> list[int]:
    x, y = batch
    assert x.dtype == y.dtype == np.int64
    assert (y[:, :-1] == x[:, 1:]).all()
    assert (y[:, -1] == x[:, -1] + 1).all()
    return x[:, 0].tolist()


def test_windows_tile_the_tokens(tokens: np.ndarray) -> None:
    source = TokenWindows(tokens, context=16)
    assert len(source) == (1_000 - 17) // 16 + 1
    x, y = source.fetch_batch(np.array([2, 0]))
    assert x.tolist() == [list(range(32, 48)), list(range(16))]
    assert y.tolist() == [list(range(33, 49)), list(range(1, 17))]
    assert x.flags.c_contiguous
    assert y.flags.c_contiguous
    items = source.fetch_items(np.array([2, 0]))
    bx, by = collate(items)
    assert (bx == x).all()
    assert (by == y).all()
    assert bx.dtype == x.dtype


def test_random_offsets_each_window_exactly_once_everywhere(tokens: np.ndarray) -> None:
    offsets = np.random.default_rng(0).integers(0, 1_000 - 33, 40)
    offsets = np.unique(offsets)
    source = TokenWindows(tokens, context=32, offsets=offsets)
    check_exactly_once(source, ids, offsets.tolist(), batch_size=8, shuffle=True)


def test_resume_at_every_batch(tokens: np.ndarray) -> None:
    check_exact_resume(TokenWindows(tokens, context=8, stride=50), batch_size=4, shuffle=True)


def test_bad_arguments_are_refused(tokens: np.ndarray, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="context must be a positive int, got 0"):
        TokenWindows(tokens, context=0)
    with pytest.raises(ValueError, match="offsets must be"):
        TokenWindows(tokens, context=8, offsets=[995])
    with pytest.raises(ValueError, match="tokens must be a 1-D integer array"):
        TokenWindows(np.zeros((2, 2)), context=1)
