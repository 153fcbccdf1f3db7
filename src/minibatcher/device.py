"""Moving batches to an accelerator: pinned host memory and copies that overlap compute.

In: ``(seq, batch)`` results from the executor. Out: the same results, each array leaf a torch
tensor on ``device``. State: at most ``ahead`` batches in flight; they count as delivered only
when the user receives them (the loader records delivery after this stage), so a checkpoint never
includes a batch still being copied.

On CUDA, each batch is copied on a side stream, ``ahead`` batches before the training loop asks
for it, from page-locked ("pinned") host memory when ``pin_memory=True``, so the host-to-device
copy runs while the previous step computes. The consumer's stream waits on the copy's event, and
each tensor is recorded on the consumer's stream so the caching allocator never reuses its memory
early. Other devices get a plain ``.to(device, non_blocking=pin_memory)``. torch is imported only
when ``device`` or ``pin_memory`` is used.
"""

from __future__ import annotations

import collections
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from .collation import map_leaves
from .errors import ConfigError
from .transport import Result


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "device= and pin_memory=True need torch, which is not installed: "
            "pip install 'minibatcher[torch]'"
        ) from e
    return torch


def _usable_device(torch: Any, device: Any) -> Any:
    """``torch.device(device)``, checked to exist here (an error naming ``device=`` otherwise,
    at construction, rather than torch's "torch.cuda.Stream requires CUDA support" later)."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ConfigError(f"device={device!r} is not a torch device ({e})") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device={device!r} but CUDA is not available here (torch {torch.__version__}, "
            f"CUDA build {torch.version.cuda}); pass device=None or 'cpu', or run where a GPU is"
        )
    try:
        torch.empty(0, device=resolved)
    except (RuntimeError, AssertionError, ValueError) as e:
        raise ConfigError(f"device={device!r} is not available here: {e}") from None
    return resolved


class DeviceTransfer:
    """Pins and copies each batch's array leaves to ``device``, ``ahead`` batches early.

    Args:
        device: a torch device (``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"``, ...); None keeps
            batches in host memory (then only pinning happens).
        pin_memory: copy array leaves into page-locked memory first (ignored, with a warning, when
            no accelerator is available: pinning then only costs time).
        ahead: how many batches are copied before they are asked for (CUDA only).
    """

    def __init__(self, device: Any = None, pin_memory: bool = False, ahead: int = 1) -> None:
        torch = _torch()
        self.device = None if device is None else _usable_device(torch, device)
        if pin_memory and not torch.cuda.is_available():
            warnings.warn(
                "pin_memory=True but no CUDA device is available: pinning is skipped",
                UserWarning,
                stacklevel=3,
            )
            pin_memory = False
        self.pin_memory = pin_memory
        self.ahead = ahead
        self._cuda = self.device is not None and self.device.type == "cuda"
        self._stream = torch.cuda.Stream(self.device) if self._cuda else None

    def __repr__(self) -> str:
        return f"DeviceTransfer(device={self.device}, pin_memory={self.pin_memory})"

    def _move(self, batch: Any) -> Any:
        torch = _torch()
        device, pin = self.device, self.pin_memory

        def move(leaf: Any) -> Any:
            if isinstance(leaf, np.ndarray):
                if leaf.dtype.kind in "USO":
                    return leaf
                leaf = torch.from_numpy(leaf if leaf.flags.writeable else leaf.copy())
            if not isinstance(leaf, torch.Tensor):
                return leaf
            if pin and not leaf.is_pinned():
                leaf = leaf.pin_memory()
            if device is not None:
                leaf = leaf.to(device, non_blocking=pin)
            return leaf

        return map_leaves(batch, move)

    def run(self, results: Iterator[Result]) -> Iterator[Result]:
        """The results with every batch moved; on CUDA, ``ahead`` batches copied in advance."""
        if not self._cuda:
            for seq, batch in results:
                yield seq, self._move(batch)
            return
        torch = _torch()
        stream = self._stream
        in_flight: collections.deque[tuple[int, Any, Any]] = collections.deque()
        for seq, batch in results:
            with torch.cuda.stream(stream):
                moved = self._move(batch)
                copied = torch.cuda.Event()
                copied.record(stream)
            in_flight.append((seq, moved, copied))
            if len(in_flight) > self.ahead:
                yield self._hand_over(*in_flight.popleft())
        while in_flight:
            yield self._hand_over(*in_flight.popleft())

    def _hand_over(self, seq: int, batch: Any, copied: Any) -> Result:
        torch = _torch()
        consumer = torch.cuda.current_stream(self.device)
        consumer.wait_event(copied)

        def record(leaf: Any) -> Any:
            if isinstance(leaf, torch.Tensor) and leaf.is_cuda:
                leaf.record_stream(consumer)
            return leaf

        map_leaves(batch, record)
        return seq, batch
