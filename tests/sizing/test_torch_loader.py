"""The sizing functions on ``minibatcher.torch.DataLoader``: measured on torch's batches,
without advancing the user's loader, sampler or generator."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

import torch.utils.data as tud  # noqa: E402

from minibatcher import ConfigError  # noqa: E402
from minibatcher.sizing import noise_scale, throughput_curve  # noqa: E402
from minibatcher.sizing._loaders import check_loader, loader_like, population  # noqa: E402
from minibatcher.torch import DataLoader  # noqa: E402


def _dataset(n: int = 256) -> Any:
    x = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
    return tud.TensorDataset(x, torch.arange(n) % 4)


def test_measured_batches_are_torchs_batches() -> None:
    ds = _dataset()
    dl = DataLoader(ds, 16, num_workers=2)  # SequentialSampler: the order can be compared
    core = check_loader(dl)
    assert population(core) == 256
    for ours, torchs in zip(loader_like(core, 32), tud.DataLoader(ds, 32), strict=True):
        assert isinstance(ours, list)
        assert len(ours) == 2
        assert all(isinstance(t, torch.Tensor) for t in ours)
        assert all(torch.equal(a, b) for a, b in zip(ours, torchs, strict=True))
    core.close()


def test_sizing_leaves_the_users_generator_and_loader_alone() -> None:
    ds = _dataset()
    generator = torch.Generator().manual_seed(0)
    dl = DataLoader(ds, 16, shuffle=True, generator=generator)
    before = generator.get_state()
    global_before = torch.get_rng_state()
    weights = torch.zeros(3, requires_grad=True)

    def grad(batch: Any) -> Any:
        x, y = batch
        weights.grad = None
        ((x @ weights - y.float()) ** 2).mean().backward()
        return weights.grad.clone()

    result = noise_scale(dl, grad, micro=4, batches=3)
    assert result.batches == 3
    assert result.batch_size == 16
    assert result.trace > 0
    curve = throughput_curve(dl, lambda batch: batch[0].sum(), sizes=[8, 16], repeats=2, warmup=1)
    assert [p.batch_size for p in curve.points] == [8, 16]
    assert torch.equal(generator.get_state(), before)
    assert torch.equal(torch.get_rng_state(), global_before)
    ref = DataLoader(ds, 16, shuffle=True, generator=torch.Generator().manual_seed(0))
    for a, b in zip(dl, ref, strict=True):  # the training order is the one it would have been
        assert torch.equal(a[1], b[1])


def test_a_distributed_sampler_keeps_this_ranks_share() -> None:
    ds = _dataset(100)
    sampler = tud.DistributedSampler(ds, num_replicas=4, rank=1, shuffle=True, seed=3)
    core = check_loader(DataLoader(ds, 8, sampler=sampler))
    assert population(core) == 25
    assert core.shard is None  # not split a second time
    got = [int(i) for b in loader_like(core, 5) for i in b[1]]
    assert len(got) == 25


def test_what_cannot_be_measured_is_refused_clearly() -> None:
    ds = _dataset(20)
    with pytest.raises(ConfigError, match=r"minibatcher\.torch\.DataLoader, got "
                                          r"torch\.utils\.data\.dataloader\.DataLoader"):
        check_loader(tud.DataLoader(ds, 4))
    batches = tud.BatchSampler(tud.SequentialSampler(ds), 4, False)
    with pytest.raises(ConfigError, match="dl must batch by batch_size"):
        check_loader(DataLoader(ds, batch_sampler=batches))
