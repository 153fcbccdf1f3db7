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



def as_mapping_type(kind: type, out: dict[Any, Any]) -> Any:
    """``out`` as a mapping of type ``kind`` (OrderedDict, a user's Mapping) where that type can
    be built from a dict, else the dict itself."""
    if kind is dict:
        return out
    try:
        return kind(out)
    except TypeError:
        return out

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
        return lambda batch: convert_leaves(batch, _to_numpy, output)
    if output == "torch":
        torch = require("torch", output)
        return lambda batch: convert_leaves(batch, lambda x: _to_torch(torch, x), output)
    jnp = require("jax.numpy", output)
    return lambda batch: convert_leaves(batch, lambda x: _to_jax(jnp, x), output)


def convert_leaves(batch: Any, fn: Callable[[Any], Any], output: str) -> Any:
    """:func:`map_leaves` for ``output=``: a leaf that fails to convert is named in the error."""
    try:
        return map_leaves(batch, fn)
    except (TypeError, ValueError, RuntimeError):
        pass
    # The error path only: find the leaf again, with its place in the batch.
    def named(path: str, leaf: Any) -> Any:
        try:
            return fn(leaf)
        except (TypeError, ValueError, RuntimeError) as e:
            dtype = getattr(leaf, "dtype", None)
            what = type(leaf).__name__ + ("" if dtype is None else f" of dtype {dtype}")
            raise TypeError(
                f"output={output!r} cannot convert {path} (a {what}): {e}; use output='auto' "
                "(each leaf as collated), or convert that field in a batch_transform"
            ) from e

    return _map_with_paths(batch, named, "batch")


def map_leaves(batch: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` to every leaf of a batch, keeping the structure (lists of str stay lists;
    mappings keep their type where it can be rebuilt from a dict, e.g. OrderedDict)."""
    return _map_with_paths(batch, lambda _, leaf: fn(leaf), None)


def _map_with_paths(batch: Any, fn: Callable[[Any, Any], Any], path: str | None) -> Any:
    def sub(key: Any) -> str | None:
        return None if path is None else f"{path}[{key!r}]"

    kind = type(batch)
    if kind is dict or isinstance(batch, Mapping):
        return as_mapping_type(kind, {k: _map_with_paths(v, fn, sub(k)) for k, v in batch.items()})
    if kind is tuple:
        return tuple(_map_with_paths(v, fn, sub(i)) for i, v in enumerate(batch))
    if isinstance(batch, tuple) and hasattr(kind, "_fields"):
        return kind(*(_map_with_paths(v, fn, sub(i)) for i, v in enumerate(batch)))
    if kind is list:
        if batch and isinstance(batch[0], (str, bytes, type(None))):
            return batch
        return [_map_with_paths(v, fn, sub(i)) for i, v in enumerate(batch)]
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        fields = {
            f.name: _map_with_paths(getattr(batch, f.name), fn, sub(f.name))
            for f in dataclasses.fields(batch)
            if f.init
        }
        return kind(**fields)
    return fn(path, batch)


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
        if not x.dtype.isnative:  # torch refuses the other byte order: the values, native
            x = x.astype(x.dtype.newbyteorder("="))
        elif not x.flags.writeable:
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
