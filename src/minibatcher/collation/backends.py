"""Converting a batch's array leaves to the framework the user asked for (``output=``).

``"auto"`` keeps each leaf as collated (NumPy for NumPy and Python numbers, torch for torch
tensors); ``"numpy"``, ``"torch"`` and ``"jax"`` convert every array leaf, without a copy where
the frameworks allow it. torch and JAX are imported only when a conversion needs them.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

OUTPUTS = ("auto", "numpy", "torch", "jax")


def check_output(output: object) -> str:
    """Return ``output`` if it is a known output kind, else raise naming the argument."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(map(repr, OUTPUTS))}, got {output!r}")
    return str(output)


def require(module: str, output: str) -> Any:
    """Import ``module`` for ``output=``, or raise an ImportError that names the extra."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        extra = "torch" if module == "torch" else "jax"
        raise ImportError(
            f"output={output!r} needs {module}, which is not installed: "
            f"pip install 'minibatcher[{extra}]'"
        ) from e


def converter(output: str) -> Callable[[Any], Any] | None:
    """The function that converts a batch's leaves for ``output`` (None: nothing to do)."""
    if output == "auto":
        return None
    if output == "numpy":
        return lambda batch: map_leaves(batch, _to_numpy)
    if output == "torch":
        torch = require("torch", output)
        return lambda batch: map_leaves(batch, lambda x: _to_torch(torch, x))
    jnp = require("jax.numpy", output)
    return lambda batch: map_leaves(batch, lambda x: _to_jax(jnp, x))


def map_leaves(batch: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` to every leaf of a batch, keeping the structure (lists of str stay lists)."""
    kind = type(batch)
    if kind is dict or isinstance(batch, Mapping):
        return {k: map_leaves(v, fn) for k, v in batch.items()}
    if kind is tuple:
        return tuple(map_leaves(v, fn) for v in batch)
    if isinstance(batch, tuple) and hasattr(kind, "_fields"):
        return kind(*(map_leaves(v, fn) for v in batch))
    if kind is list:
        if batch and isinstance(batch[0], (str, bytes, type(None))):
            return batch
        return [map_leaves(v, fn) for v in batch]
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        fields = {
            f.name: map_leaves(getattr(batch, f.name), fn)
            for f in dataclasses.fields(batch)
            if f.init
        }
        return kind(**fields)
    return fn(batch)


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _to_numpy(x: Any) -> Any:
    if _is_tensor(x):
        return x.detach().cpu().numpy()
    if type(x).__module__.startswith("jax"):
        return np.asarray(x)
    return x


def _to_torch(torch: Any, x: Any) -> Any:
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "US O":
            return x
        if not x.flags.writeable:
            x = x.copy()
        return torch.from_numpy(x)
    if isinstance(x, np.generic):
        return torch.as_tensor(x)
    if type(x).__module__.startswith("jax"):
        return torch.from_numpy(np.asarray(x).copy())
    return x


def _to_jax(jnp: Any, x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x if x.dtype.kind in "US O" else jnp.asarray(x)
    if _is_tensor(x):
        return jnp.asarray(x.detach().cpu().numpy())
    return x
