"""Under torch.distributed (a real gloo group of 2 processes) every rank gets the same ceiling:
the minimum over ranks, even when their budgets differ."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from minibatcher import DataLoader  # noqa: E402
from minibatcher.sizing import memory_ceiling  # noqa: E402

ITEM_BYTES = 2**20


def _rank(rank: int, store: str, out: str) -> None:
    """Each rank: a 1 MiB-per-item step, a budget of 20 MiB (rank 0) or 60 MiB (rank 1)."""
    dist = torch.distributed
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        dl = DataLoader(np.ones((256, ITEM_BYTES // 8 // 64)), batch_size=16, shuffle=True,
                        seed=0)

        def step(batch: np.ndarray) -> float:
            return float(np.repeat(batch[:, None, :], 64, axis=1).sum())

        ceiling = memory_ceiling(dl, step, budget=(20 + 40 * rank) * 2**20, sizes=[2, 4, 8])
        Path(out, f"{rank}.json").write_text(json.dumps(ceiling.batch_size))
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_ceiling_is_the_minimum_over_ranks(tmp_path: Path) -> None:
    """Rank 1 alone would allow ~3x more items; both report rank 0's ceiling."""
    context = multiprocessing.get_context("fork")
    ranks = [context.Process(target=_rank, args=(r, str(tmp_path / "store"), str(tmp_path)))
             for r in range(2)]
    try:
        for p in ranks:
            p.start()
        for p in ranks:
            p.join(timeout=100)
        assert [p.exitcode for p in ranks] == [0, 0]
    finally:
        for p in ranks:
            if p.is_alive():  # a rank stuck in a collective: an error, never an orphan
                p.kill()
                p.join()
    ceilings = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2)]
    assert ceilings[0] == ceilings[1]
    assert 8 <= ceilings[0] <= 24  # ~20 items of 1 MiB: rank 0's budget, not rank 1's ~60
