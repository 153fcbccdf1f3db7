"""The CUDA memory ceiling: its bisection logic everywhere, the real path where a GPU is."""

from __future__ import annotations

import numpy as np
import pytest

from minibatcher import DataLoader
from minibatcher.sizing import memory_ceiling
from minibatcher.sizing._cuda import _verify
from minibatcher.sizing._progress import Bar


def no_ranks(value: int) -> int:
    """A single process: the minimum over ranks is the value itself."""
    return value


def test_verified_target_is_kept() -> None:
    """A real step at the fitted size fits: that size, marked verified."""
    tried: list[int] = []
    result = _verify(lambda s: tried.append(s) or True, 64, 1000, "memory", no_ranks,
                     Bar(None, "", False, ""))
    assert result == (1000, "memory, verified")
    assert tried == [1000]


def test_out_of_memory_bisects_between_the_last_fit_and_the_failure() -> None:
    """The fit overshoots (only 300 fit): bisection by real steps lands within ~1.5% below."""
    tried: list[int] = []

    def fits(size: int) -> bool:
        tried.append(size)
        return size <= 300

    size, why = _verify(fits, 64, 1000, "memory", no_ranks, Bar(None, "", False, ""))
    assert why == "verified"
    assert 300 - 300 // 64 <= size <= 300
    assert max(s for s in tried if s <= 300) == size
    assert len(tried) <= 2 + 12


def test_ranks_agree_on_the_smallest() -> None:
    """If any rank fails a size, every rank treats it as failed."""
    def another_rank_always_fails(ok: int) -> int:
        return min(ok, 0)

    size, _ = _verify(lambda s: s <= 500, 64, 1000, "memory", another_rank_always_fails,
                      Bar(None, "", False, ""))
    assert size == 64  # another rank failed every trial: the last size known to fit


@pytest.mark.timeout(300)
def test_real_cuda_ceiling() -> None:
    """On a GPU: fitted, verified by a real step, and the model restored."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    net = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(),
                              torch.nn.Linear(1024, 10)).cuda()
    opt = torch.optim.Adam(net.parameters())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    dl = DataLoader(np.random.default_rng(0).standard_normal((100_000, 256), np.float32),
                    batch_size=64, shuffle=True, seed=0, output="torch")

    def step(batch):  # type: ignore[no-untyped-def]
        opt.zero_grad()
        net(batch.cuda()).pow(2).mean().backward()
        opt.step()

    ceiling = memory_ceiling(dl, step, state=(net, opt), device="cuda", budget=256 * 2**20)
    assert 1 <= ceiling.batch_size <= 100_000
    assert "verified" in ceiling.limited_by or ceiling.limited_by == "data set size"
    assert ceiling.per_item_bytes > 0
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
