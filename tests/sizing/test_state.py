"""state=: measuring never trains the user's model (NumPy dicts, torch modules and optimizers)."""

from __future__ import annotations

import numpy as np
import pytest

from minibatcher import DataLoader
from minibatcher.sizing import memory_ceiling, throughput_curve
from minibatcher.sizing._state import Snapshot


def test_numpy_dict_restored_in_place() -> None:
    """The same array objects hold the old values again; keys the step added are gone."""
    params = {"w": np.arange(4.0), "b": np.zeros(2)}
    w = params["w"]
    dl = DataLoader(np.ones((64, 4)), batch_size=8)

    def step(batch: np.ndarray) -> None:
        params["w"] -= batch.mean(axis=0)
        params["extra"] = np.ones(1)

    throughput_curve(dl, step, sizes=[4, 16], state=params, repeats=2, warmup=1)
    assert params["w"] is w
    np.testing.assert_array_equal(w, np.arange(4.0))
    assert set(params) == {"w", "b"}


def test_restored_after_an_exception() -> None:
    """A step that raises still leaves the state as it was."""
    params = {"w": np.zeros(3)}
    calls = []

    def step(batch: np.ndarray) -> None:
        params["w"] += 1
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        throughput_curve(DataLoader(np.ones((32, 3)), batch_size=4), step, sizes=[4],
                         state=params, repeats=5)
    np.testing.assert_array_equal(params["w"], np.zeros(3))


def test_torch_module_optimizer_grads_and_rng_restored() -> None:
    """Weights, Adam's moments, gradients, train/eval flags and torch's RNG are put back."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    data = torch.randn(64, 4)
    loaders = DataLoader(data, batch_size=8, seed=0), DataLoader(data, batch_size=8, seed=0)
    rng_before = torch.get_rng_state()

    def step(batch):  # type: ignore[no-untyped-def]
        net.train()
        opt.zero_grad()
        net(batch).pow(2).mean().backward()
        opt.step()

    throughput_curve(loaders[0], step, sizes=[8, 16], state=(net, opt), repeats=2, warmup=1)
    memory_ceiling(loaders[1], step, state=[net, opt], sizes=[2, 4])
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert opt.state_dict()["state"] == {}
    assert all(p.grad is None for p in net.parameters())
    assert not net.training
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_numpy_global_rng_restored() -> None:
    """A step drawing from np.random leaves the user's global stream where it was."""
    np.random.seed(3)
    expected = np.random.random()
    np.random.seed(3)
    snapshot = Snapshot(None)
    np.random.random(10)
    snapshot.restore()
    assert np.random.random() == expected


def test_unsupported_state_is_named() -> None:
    """Anything else is refused with its type."""
    with pytest.raises(TypeError, match=r"state must be .* got int"):
        Snapshot(3)
