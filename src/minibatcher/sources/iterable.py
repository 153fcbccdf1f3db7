"""Sources read in order: generators, iterators, file-like streams and iterables without indexing.

In: an epoch number. Out: ``(position, item)`` pairs, where ``position`` is the item's place in
the raw stream (it keys the RNG of transforms, so augmentation does not depend on shuffling or
workers). State: none here; the loader resumes a stream by its count of items consumed.

Items are read lazily, one at a time, and never materialised. ``shuffle=True`` uses a seeded
shuffle buffer: an approximate shuffle whose quality grows with the buffer size (an item can
move at most a buffer's length earlier; any later).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

_DRAW_CHUNK = 1024  # random draws are made in chunks to keep the per-item cost low


class StreamSource:
    """An iterable without ``__getitem__``: each epoch calls ``iter(data)`` again.

    An object that is its own iterator (a generator) can be read only once; a second epoch over
    it raises an error rather than silently yielding nothing.
    """

    def __init__(self, data: Iterable[Any]) -> None:
        self.data = data
        try:
            self.length: int | None = len(data)  # type: ignore[arg-type]
        except TypeError:
            self.length = None
        self._single_pass = iter(data) is data
        self._epochs_started = 0

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError(
                f"data of type {type(self.data).__name__} has no len(): the number of batches of "
                "a loader over an unsized iterable is not known in advance"
            )
        return self.length

    def items(self, epoch: int) -> Iterator[tuple[int, Any]]:
        """The epoch's ``(position, item)`` pairs, in stream order."""
        if self._single_pass and self._epochs_started:
            raise RuntimeError(
                f"data is a single-pass iterator ({type(self.data).__name__}) that an earlier "
                "epoch already read; pass an iterable whose __iter__ starts again (a list, or a "
                "class whose __iter__ returns a new generator) to read it more than once"
            )
        self._epochs_started += 1
        set_epoch = getattr(self.data, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        return enumerate(iter(self.data))

    def __repr__(self) -> str:
        return f"StreamSource(data={type(self.data).__name__}, len={self.length})"


def shuffle_buffer(
    pairs: Iterator[tuple[int, Any]], size: int, rng: np.random.Generator
) -> Iterator[tuple[int, Any]]:
    """Yield ``pairs`` in a random order drawn with ``rng``, holding at most ``size`` of them.

    The buffer fills with the first ``size`` items; then each new item takes the place of a
    uniformly chosen buffered one, which is yielded. At the end the rest is yielded permuted.
    """
    buffer: list[tuple[int, Any]] = []
    for pair in pairs:
        buffer.append(pair)
        if len(buffer) >= size:
            break
    draws: list[int] = []
    for pair in pairs:
        if not draws:
            draws = rng.integers(0, size, _DRAW_CHUNK).tolist()
        slot = draws.pop()
        yield buffer[slot]
        buffer[slot] = pair
    for slot in rng.permutation(len(buffer)).tolist():
        yield buffer[slot]
