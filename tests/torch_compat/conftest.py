"""Every test here runs against torch's DataLoader and minibatcher's, and compares the two."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

torch = pytest.importorskip("torch")
import torch.utils.data as tud  # noqa: E402

from minibatcher.torch import DataLoader as MiniDataLoader  # noqa: E402

LOADERS = {"torch": tud.DataLoader, "minibatcher": MiniDataLoader}


def assert_same(a: Any, b: Any, where: str = "batch") -> None:
    """``a`` and ``b`` equal in type, dtype, shape and value, recursively."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype, f"{where}: {a!r} != {b!r}"
        assert a.shape == b.shape, f"{where}: {a!r} != {b!r}"
        assert torch.equal(a, b), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: len {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def both(run: Callable[[type], Any]) -> Any:
    """``run(torch's class)`` and ``run(ours)``, asserted identical; returns torch's result."""
    expected = run(LOADERS["torch"])
    got = run(LOADERS["minibatcher"])
    assert_same(expected, got, "result")
    return expected


def outcome(make: Callable[[], Any]) -> tuple[str, str]:
    """``("ok", "")`` or ``(exception type name, message)`` of ``make()``."""
    try:
        make()
    except Exception as e:
        return type(e).__name__, str(e)
    return "ok", ""


@pytest.fixture(params=list(LOADERS), ids=list(LOADERS))
def loader_cls(request: pytest.FixtureRequest) -> type:
    """Each class in turn (for behaviours checked on each rather than compared)."""
    return LOADERS[request.param]
