"""The device stage: batches arrive as torch tensors on the device, in the same order."""

from __future__ import annotations

import numpy as np
import pytest

from minibatcher import DataLoader

torch = pytest.importorskip("torch")


def test_device_cpu_gives_torch_tensors_with_the_same_values() -> None:
    data = {
        "x": np.arange(20, dtype=np.float32).reshape(10, 2),
        "name": [str(i) for i in range(10)],
    }
    plain = list(DataLoader(data, 4, shuffle=True, seed=3))
    moved = list(DataLoader(data, 4, shuffle=True, seed=3, device="cpu"))
    assert len(plain) == len(moved) == 3
    for a, b in zip(plain, moved, strict=True):
        assert isinstance(b["x"], torch.Tensor)
        assert b["x"].device.type == "cpu"
        np.testing.assert_array_equal(a["x"], b["x"].numpy())
        assert a["name"] == b["name"]


def test_pin_memory_without_cuda_warns_and_still_delivers() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: pinning is real here")
    with pytest.warns(UserWarning, match="no CUDA device"):
        dl = DataLoader(np.arange(10), 4, pin_memory=True)
    assert [b.tolist() for b in dl] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_device_rejects_an_unknown_device() -> None:
    from minibatcher import ConfigError

    with pytest.raises(ConfigError, match="device='nonsense' is not a torch device"):
        DataLoader(np.arange(10), 4, device="nonsense")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_prefetch_delivers_every_batch_on_the_device_in_order() -> None:
    data = np.arange(4096, dtype=np.float32).reshape(1024, 4)
    batches = list(DataLoader(data, 100, device="cuda", pin_memory=True))
    assert all(b.is_cuda for b in batches)
    np.testing.assert_array_equal(torch.cat(batches).cpu().numpy(), data)


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "nonsense"])
def test_an_unavailable_device_is_refused_at_construction_naming_device(device: str) -> None:
    """Not torch's "torch.cuda.Stream requires CUDA support" (or worse, at the first batch)."""
    from minibatcher import ConfigError

    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match=rf"device='{device}'"):
        DataLoader(range(4), 2, device=device)
