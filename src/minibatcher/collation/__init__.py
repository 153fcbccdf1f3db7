"""Collation: items -> batch (``default.py``), padding (``pad.py``), output frameworks
(``backends.py``)."""

from __future__ import annotations

from .backends import OUTPUTS, check_output, converter, map_leaves
from .default import CollateFn, Collator, collate, format_path
from .pad import PadCollator, pad_collate

__all__ = [
    "OUTPUTS",
    "CollateFn",
    "Collator",
    "PadCollator",
    "check_output",
    "collate",
    "converter",
    "format_path",
    "map_leaves",
    "pad_collate",
]
