"""Pad-to-longest collation for variable-length items (token sequences, audio, point clouds).

Works like the default collate, except that arrays, torch tensors (and lists of numbers) whose
shapes differ are padded with ``pad_value`` to the largest size along every axis, on the
``side`` chosen; tensors stay tensors. With ``return_lengths=True`` each padded field becomes
``(padded, lengths)``, where ``lengths`` holds each item's original size along the first axis
(an int64 array, or tensor for tensors).

Dict rows with an ``input_ids`` field (tokenizer output, HF datasets) get an ``attention_mask``
(1 for tokens, 0 for padding, int64, on the padded side) unless they have one; as in HF's
collators, ``attention_mask`` and ``token_type_ids`` are padded with 0 whatever ``pad_value``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from .._typing import Allocator
from ..errors import CollateError
from .default import Collator, Path, format_path

ZERO_PADDED = ("attention_mask", "token_type_ids")
"""Dict fields padded with 0 whatever ``pad_value`` (as HF's collators pad them)."""

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
        arrays = [x if type(x) is np.ndarray else np.asarray(x) for x in items]
        ndims = {a.ndim for a in arrays}
        if len(ndims) != 1:
            raise self._shape_error(items, path)
        dtype = np.result_type(*arrays)
        self._check_pad_value(dtype.kind, dtype, path)
        if arrays[0].ndim == 1:
            return self._sequences(arrays, dtype, allocate)
        lengths = np.array([a.shape[0] if a.ndim else 1 for a in arrays], dtype=np.int64)
        shape = tuple(np.max([a.shape for a in arrays], axis=0)) if arrays[0].ndim else ()
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

    def _sequences(self, arrays: list[np.ndarray], dtype: Any, allocate: Allocator | None) -> Any:
        """1-D items (token sequences): every element of the batch written exactly once.

        The padded rows, read in order, are item 0, its padding, item 1, its padding, ...: one
        ``np.concatenate`` of those pieces into the output (the padding pieces being views of
        one row of ``pad_value``) writes each byte once, with no mask and no per-row Python
        assignment (~3x faster on W10's random batches than a masked write).
        """
        lengths = [len(a) for a in arrays]
        longest = max(lengths)
        shape = (len(arrays), longest)
        out = np.empty(shape, dtype) if allocate is None else allocate(shape, dtype)
        filler = np.empty(longest, dtype)
        filler[...] = self.pad_value
        pieces: list[np.ndarray] = []
        if self.side == "right":
            for a, n in zip(arrays, lengths, strict=True):
                pieces += (a, filler[n:])
        else:
            for a, n in zip(arrays, lengths, strict=True):
                pieces += (filler[n:], a)
        flat = out.view()
        flat.shape = (out.size,)  # raises rather than copy: the pieces must land in ``out``
        np.concatenate(pieces, out=flat)
        if not self.return_lengths:
            return out
        return out, np.array(lengths, dtype=np.int64)

    def _check_pad_value(self, kind: str, dtype: Any, path: Path) -> None:
        """Refuse a ``pad_value`` that the items' dtype cannot hold (NaN or 0.5 in ints)."""
        value = self.pad_value
        if kind in "iub" and isinstance(value, float) and not (
            math.isfinite(value) and value == int(value)
        ):
            raise CollateError(
                f"cannot pad {format_path(path)}: pad_value={value!r} does not fit its "
                f"{dtype} items; pass an int pad_value, or make the items floats"
            )

    def _tensors(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> Any:
        torch = sys.modules["torch"]
        shapes = {tuple(x.shape) for x in items}
        if len(shapes) == 1 and not self.return_lengths:
            return super()._tensors(items, path, allocate)
        if len({len(shape) for shape in shapes}) != 1:
            raise self._shape_error(items, path)
        dtype = functools.reduce(torch.promote_types, [x.dtype for x in items])
        kind = "f" if dtype.is_floating_point or dtype.is_complex else "i"
        self._check_pad_value(kind, dtype, path)
        shape = tuple(max(sizes) for sizes in zip(*shapes, strict=True))
        out = torch.full((len(items), *shape), self.pad_value, dtype=dtype)
        for row, x in zip(out, items, strict=True):
            if self.side == "right":
                row[tuple(slice(0, n) for n in x.shape)] = x
            else:
                row[tuple(slice(m - n, m) for n, m in zip(x.shape, shape, strict=True))] = x
        if not self.return_lengths:
            return out
        lengths = torch.tensor([x.shape[0] if x.dim() else 1 for x in items], dtype=torch.int64)
        return out, lengths

    def _mappings(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> Any:
        zero = [k for k in ZERO_PADDED if k in items[0]]
        if self.pad_value == 0 or not zero:
            out = super()._mappings(items, path, allocate)
        else:  # the zero-padded fields apart, so that pad_value does not reach them
            rest = [{k: v for k, v in item.items() if k not in zero} for item in items]
            out = super()._mappings(rest, path, allocate)
            for key in zero:
                column = [item[key] for item in items]
                out[key] = _pad_collator(0, self.side, self.return_lengths).collate(
                    column, (*path, key), allocate
                )
            out = {k: out[k] for k in items[0]}  # the rows' key order
            if type(items[0]) is not dict:
                with contextlib.suppress(TypeError):
                    out = type(items[0])(out)
        if "input_ids" in items[0] and "attention_mask" not in items[0]:
            out["attention_mask"] = _attention_mask(items, self.side)
        return out


def _attention_mask(items: Sequence[Any], side: Side) -> Any:
    """1 for each row's tokens, 0 for its padding: int64, shaped like the padded ``input_ids``
    (rows x longest), a tensor when the ids are tensors."""
    ids = [item["input_ids"] for item in items]
    lengths = [len(x) for x in ids]
    longest = max(lengths, default=0)
    mask = np.zeros((len(ids), longest), dtype=np.int64)
    for row, n in zip(mask, lengths, strict=True):
        if side == "right":
            row[:n] = 1
        else:
            row[longest - n :] = 1
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(ids[0], torch.Tensor):
        return torch.from_numpy(mask)
    return mask


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
