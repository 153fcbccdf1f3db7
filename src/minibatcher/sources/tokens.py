"""TokenWindows: fixed-length windows of a token array (a ``np.memmap``), nanoGPT-style.

In: indices. Out: per index the pair ``(x, y)`` of int64 arrays, ``x = tokens[o : o + context]``
and ``y = tokens[o + 1 : o + 1 + context]`` (the next-token targets) at that index's offset
``o``; a batch is the pair of ``(batch, context)`` arrays, gathered in one vectorised read. State:
none.

The tokens stay in the memmap: the main process never reads them, and forked workers share the
mapping (the page cache), so memory does not grow with the workers. With ``offsets=None`` the
windows tile the tokens (``stride`` apart); pass random ``offsets`` (drawn once, with a seed) for
nanoGPT's sampling, and the loader's ``shuffle=True`` for a new order every epoch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._typing import Allocator, IndexArray
from .base import IndexedSource


class TokenWindows(IndexedSource):
    """Windows of ``context`` tokens and their next-token targets, from a 1-D token array.

    Args:
        tokens: a 1-D integer array, typically ``np.memmap(path, dtype=np.uint16, mode="r")``.
        context: tokens per window (``x`` and ``y`` each have this many).
        offsets: the first token of each window (default: ``0, stride, 2 * stride, ...``).
        stride: the distance between default offsets (default ``context``: no overlap).

    Raises:
        ValueError: naming the argument, for a window that does not fit in ``tokens``.
    """

    batched = True

    def __init__(
        self, tokens: np.ndarray, context: int, *, offsets: Any = None, stride: int | None = None
    ) -> None:
        super().__init__(tokens)
        if not isinstance(tokens, np.ndarray) or tokens.ndim != 1 or tokens.dtype.kind not in "iu":
            raise ValueError(f"tokens must be a 1-D integer array, got {type(tokens).__name__}")
        if isinstance(context, bool) or not isinstance(context, int) or context < 1:
            raise ValueError(f"context must be a positive int, got {context!r}")
        span = context + 1
        if offsets is None:
            step = context if stride is None else stride
            if isinstance(step, bool) or not isinstance(step, int) or step < 1:
                raise ValueError(f"stride must be a positive int, got {stride!r}")
            offsets = np.arange(0, max(0, len(tokens) - span + 1), step, dtype=np.int64)
        offsets = np.asarray(offsets, dtype=np.int64)
        if offsets.ndim != 1 or (
            offsets.size and (offsets.min() < 0 or offsets.max() + span > len(tokens))
        ):
            raise ValueError(
                f"offsets must be a 1-D array of window starts in [0, {len(tokens) - span}], "
                f"got {offsets.shape} values from {offsets.min(initial=0)} to "
                f"{offsets.max(initial=0)}"
            )
        self.tokens = tokens
        self.context = context
        self.offsets = offsets
        self._span = np.arange(span, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.offsets)

    def fetch_items(self, indices: IndexArray) -> list[Any]:
        x, y = self.fetch_batch(indices)
        return [(x[i], y[i]) for i in range(len(indices))]

    def fetch_batch(self, indices: IndexArray, allocate: Allocator | None = None) -> Any:
        windows = self.tokens[self.offsets[indices][:, None] + self._span]
        shape = (len(indices), self.context)
        if allocate is None:
            return windows[:, :-1].astype(np.int64), windows[:, 1:].astype(np.int64)
        x = allocate(shape, np.dtype(np.int64))
        y = allocate(shape, np.dtype(np.int64))
        x[...] = windows[:, :-1]
        y[...] = windows[:, 1:]
        return x, y

    def __repr__(self) -> str:
        return (
            f"TokenWindows(windows={len(self)}, context={self.context}, "
            f"tokens={len(self.tokens)})"
        )
