"""A lazy pseudo-random permutation of ``range(n)``: O(1) memory, O(1) work per position.

For datasets of 10^9 or more items a materialised permutation costs gigabytes on every rank.
:class:`LazyPermutation` computes ``perm[position]`` on demand with a keyed Feistel network over
the smallest even number of bits that covers ``n``, and *cycle walking*: a value that falls outside
``[0, n)`` is fed through the network again until it lands inside. A Feistel network is a
bijection on ``[0, 2^bits)`` whatever its round function, and cycle walking restricts a bijection
to a bijection on ``[0, n)``; since ``2^bits < 4n``, a position needs fewer than 4 passes on
average. Round keys come from ``(seed, epoch)``, so the permutation is a pure function of them.
"""

from __future__ import annotations

import numpy as np

from .._seed import PERMUTATION_KEY_STREAM, seed_sequence
from .._typing import IndexArray

LAZY_THRESHOLD = 1 << 24
"""Above this many items, ``RandomSampler`` uses a lazy permutation (a materialised one would
take more than 128 MiB)."""

ROUNDS = 6  # Luby-Rackoff: 4 rounds give a pseudo-random permutation; 6 add margin for mixing


def _mix64(z: np.ndarray) -> np.ndarray:
    """A 64-bit integer mixer (splitmix64's finaliser), applied element-wise with wrap-around."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class LazyPermutation:
    """The permutation of ``range(n)`` for ``(seed, epoch)``, evaluated per position.

    Implements the ``IndexOrder`` protocol (``len``, ``slice``, ``take``).
    """

    __slots__ = ("_half", "_keys", "_mask", "length")

    def __init__(self, n: int, seed: int, epoch: int) -> None:
        if n <= 0:
            raise ValueError(f"n must be a positive int, got {n}")
        self.length = n
        bits = max(2, (n - 1).bit_length())
        bits += bits % 2
        self._half = np.uint64(bits // 2)
        self._mask = np.uint64((1 << (bits // 2)) - 1)
        state = seed_sequence(seed, epoch, PERMUTATION_KEY_STREAM).generate_state(ROUNDS, np.uint64)
        self._keys = [np.uint64(k) for k in state]

    def __len__(self) -> int:
        return self.length

    def _network(self, x: np.ndarray) -> np.ndarray:
        half, mask = self._half, self._mask
        left, right = x >> half, x & mask
        for key in self._keys:
            left, right = right, left ^ (_mix64(right ^ key) & mask)
        return (left << half) | right

    def take(self, positions: IndexArray) -> IndexArray:
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size and (positions.min() < 0 or positions.max() >= self.length):
            raise IndexError(f"positions must lie in [0, {self.length})")
        values = self._network(positions.astype(np.uint64))
        n = np.uint64(self.length)
        outside = np.flatnonzero(values >= n)
        while outside.size:
            walked = self._network(values[outside])
            values[outside] = walked
            outside = outside[walked >= n]
        return values.astype(np.int64)

    def slice(self, start: int, stop: int) -> IndexArray:
        stop = min(stop, self.length)
        return self.take(np.arange(start, stop, dtype=np.int64))

    def __repr__(self) -> str:
        return f"LazyPermutation(n={self.length})"
