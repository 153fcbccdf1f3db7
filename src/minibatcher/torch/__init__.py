"""PyTorch drop-in: ``from minibatcher.torch import DataLoader`` in place of torch's.

Same signature, defaults, errors, attributes, batches and order as
``torch.utils.data.DataLoader`` (torch 2.13); see :mod:`minibatcher.torch.loader` for how, and
the user guide page "PyTorch drop-in" for what is added (exact resume, shared-memory transport,
fast paths). Importing this package imports torch; nothing else in minibatcher does unless asked.
"""

from __future__ import annotations

from . import sizing as _sizing  # noqa: F401  (lets minibatcher.sizing measure these loaders)
from .loader import DataLoader

__all__ = ["DataLoader"]
