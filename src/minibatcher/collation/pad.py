"""Pad-to-longest collation for variable-length items (token sequences, audio, point clouds).

Works like the default collate, except that arrays (and lists of numbers) whose shapes differ
are padded with ``pad_value`` to the largest size along every axis, on the ``side`` chosen.
With ``return_lengths=True`` each padded field becomes ``(padded, lengths)``, where ``lengths``
holds each item's original size along the first axis (an int64 array).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from .._typing import Allocator
from .default import Collator, Path, format_path

Side = Literal["right", "left"]


class PadCollator(Collator):
    """A :class:`Collator` that pads arrays of different shapes instead of refusing them."""

    def __init__(self, pad_value: Any = 0, side: Side = "right", return_lengths: bool = False):
        super().__init__()
        if side not in ("right", "left"):
            raise ValueError(f"side must be 'right' or 'left', got {side!r}")
        self.pad_value = pad_value
        self.side = side
        self.return_lengths = return_lengths

    def __repr__(self) -> str:
        return (
            f"PadCollator(pad_value={self.pad_value!r}, side={self.side!r}, "
            f"return_lengths={self.return_lengths})"
        )

    def _lists(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> Any:
        if all(isinstance(x, list) for x in items) and all(
            all(isinstance(v, (int, float, bool)) for v in x) for x in items
        ):
            return self._arrays([np.asarray(x) for x in items], path, allocate)
        return super()._lists(items, path, allocate)

    def _arrays(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> Any:
        arrays = [np.asarray(x) for x in items]
        ndims = {a.ndim for a in arrays}
        if len(ndims) != 1:
            raise self._shape_error(items, path)
        lengths = np.array([a.shape[0] if a.ndim else 1 for a in arrays], dtype=np.int64)
        shape = tuple(np.max([a.shape for a in arrays], axis=0)) if arrays[0].ndim else ()
        dtype = np.result_type(*arrays)
        if allocate is None:
            out = np.empty((len(arrays), *shape), dtype)
        else:
            out = allocate((len(arrays), *shape), dtype)
        out[...] = self.pad_value
        for row, a in zip(out, arrays, strict=True):
            if self.side == "right":
                row[tuple(slice(0, n) for n in a.shape)] = a
            else:
                row[tuple(slice(m - n, m) for n, m in zip(a.shape, shape, strict=True))] = a
        return (out, lengths) if self.return_lengths else out


@functools.lru_cache(maxsize=32)
def _pad_collator(pad_value: Any, side: Side, return_lengths: bool) -> PadCollator:
    return PadCollator(pad_value, side, return_lengths)


def pad_collate(
    items: Sequence[Any] | None = None,
    *,
    pad_value: Any = 0,
    side: Side = "right",
    return_lengths: bool = False,
) -> Any:
    """Collate ``items``, padding variable-length arrays; without items, return a collate_fn.

    Examples::

        DataLoader(sequences, batch_size=8, collate_fn=pad_collate)
        DataLoader(sequences, batch_size=8,
                   collate_fn=pad_collate(pad_value=-1, side="left", return_lengths=True))
    """
    collator = _pad_collator(pad_value, side, return_lengths)
    if items is None:
        return collator
    if not items:
        raise ValueError(f"cannot collate an empty list of items at {format_path(())}")
    return collator(items)
