"""progress=True: a tqdm bar per epoch, the same batches, and a clear error without tqdm."""

from __future__ import annotations

import sys

import pytest

from minibatcher import DataLoader

tqdm = pytest.importorskip("tqdm")


@pytest.fixture(autouse=True)
def _no_tqdm_monitor(monkeypatch: pytest.MonkeyPatch) -> None:
    """tqdm's monitor thread would outlive the test; a live thread changes the default start
    method of process workers in later tests (fork is avoided once threads run)."""
    monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 0)


def test_bar_per_epoch_same_batches(capsys: pytest.CaptureFixture[str]) -> None:
    """Each epoch draws its own bar to stderr; the batches are those without a bar."""
    plain = DataLoader(range(50), batch_size=8, shuffle=True, seed=4)
    barred = DataLoader(range(50), batch_size=8, shuffle=True, seed=4, progress=True)
    for _ in range(2):
        assert [b.tolist() for b in barred] == [b.tolist() for b in plain]
    err = capsys.readouterr().err
    assert "epoch 0" in err
    assert "epoch 1" in err
    assert "7/7" in err


def test_bar_closes_when_the_loop_is_left(capsys: pytest.CaptureFixture[str]) -> None:
    """Leaving early closes the bar (and the epoch) at once."""
    dl = DataLoader(range(100), batch_size=10, progress=True)
    it = iter(dl)
    next(it)
    next(it)
    it.close()  # type: ignore[attr-defined]
    assert "2/10" in capsys.readouterr().err
    assert dl.stats.batches == 2


def test_unknown_length_has_no_total(capsys: pytest.CaptureFixture[str]) -> None:
    """A generator has no len(): the bar counts without a total."""
    dl = DataLoader((i for i in range(30)), batch_size=10, progress=True)
    assert len(list(dl)) == 3
    assert "3batch" in capsys.readouterr().err.replace(" ", "")


def test_tqdm_around_the_loader_works(capsys: pytest.CaptureFixture[str]) -> None:
    """len(dl) is right, so wrapping the loader in tqdm yourself shows a full bar."""
    from tqdm import tqdm

    dl = DataLoader(range(45), batch_size=10)
    assert sum(1 for _ in tqdm(dl)) == 5
    assert "5/5" in capsys.readouterr().err


def test_missing_tqdm_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without tqdm, progress=True raises at construction and names the extra to install."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.raises(ImportError, match=r"pip install 'minibatcher\[progress\]'"):
        DataLoader(range(10), progress=True)
    DataLoader(range(10))  # without progress, tqdm is never needed
