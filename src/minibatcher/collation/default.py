"""Collation: a list of items in, one batch out, with the items' structure preserved.

Rules (the type of the first item decides; the rest must agree):

- tuple -> tuple, list -> list, dict -> dict, namedtuple -> namedtuple, dataclass -> the same
  dataclass with batched fields; recursively.
- Python ``bool`` / ``int`` / ``float`` -> a 1-D NumPy array (bool, int64, float64); ints and
  floats together -> float64 whichever comes first; bools among numbers are an error wherever
  they fall.
- NumPy scalars and arrays of one shape -> one stacked array, dtype kept.
- torch tensors -> ``torch.stack``; JAX arrays -> ``jnp.stack`` (neither is imported otherwise).
- ``str``, ``bytes``, ``None`` and any other object -> a list; so is a field that is ``None`` in
  some items only (``[array, None]`` as ``[None, array]``: the batch never depends on which item
  a shuffle put first).

Types can be added with :meth:`Collator.register`. When the stacked output must live somewhere
particular (shared memory, in a worker), the caller passes an ``allocate`` function.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, overload

import numpy as np

from .._typing import Allocator
from ..errors import CollateError
from .backends import as_mapping_type

CollateFn = Callable[[Sequence[Any]], Any]
RuleT = TypeVar("RuleT", bound=Callable[..., Any])
Path = tuple[Any, ...]


def format_path(path: Path) -> str:
    """``('image', 0)`` -> ``"batch['image'][0]"``: where in the items a field lies."""
    return "batch" + "".join(f"[{key!r}]" for key in path)


def _types(items: Sequence[Any]) -> str:
    names = sorted({type(x).__name__ for x in items})
    return ", ".join(names)


class Collator:
    """The default ``collate_fn``: see the module docstring for the rules.

    Call it with a list of items; :meth:`register` adds or overrides the rule of a type.
    """

    def __init__(self) -> None:
        self._registry: dict[type, Callable[[Sequence[Any]], Any]] = {}
        self._exact: dict[type, Callable[[Collator, Sequence[Any], Path, Allocator | None], Any]]
        cls = type(self)  # subclasses (PadCollator) override rules: bind theirs
        self._exact = {
            bool: cls._bools,
            int: cls._ints,
            float: cls._floats,
            str: cls._objects,
            bytes: cls._objects,
            type(None): cls._objects,
            tuple: cls._tuples,
            list: cls._lists,
            dict: cls._mappings,
            np.ndarray: cls._arrays,
        }

    @overload
    def register(self, kind: type, fn: None = None) -> Callable[[RuleT], RuleT]: ...

    @overload
    def register(self, kind: type, fn: RuleT) -> RuleT: ...

    def register(self, kind: type, fn: RuleT | None = None) -> Any:
        """Collate items of type ``kind`` (or a subclass) with ``fn(items)``; returns ``fn``.

        Usable as a decorator: ``@collate.register(MyType)``.
        """
        if not isinstance(kind, type):
            raise TypeError(f"kind must be a type, got {kind!r}")
        if fn is None:
            def decorator(f: RuleT) -> RuleT:
                self._registry[kind] = f
                return f
            return decorator
        self._registry[kind] = fn
        return fn

    def __call__(self, items: Sequence[Any], allocate: Allocator | None = None) -> Any:
        if not items:
            raise CollateError("cannot collate an empty list of items")
        return self.collate(items, (), allocate)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(registered={[t.__name__ for t in self._registry]})"

    def collate(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> Any:
        """Collate ``items`` found at ``path`` (used recursively).

        A field that is ``None`` in some items is a list of the items as they are, whichever
        item comes first (the batch must not depend on the order a shuffle put them in)."""
        try:
            return self._dispatch(items, path, allocate)
        except CollateError:
            if items[0] is not None and any(x is None for x in items):
                return list(items)
            raise

    def _dispatch(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> Any:
        kind = type(items[0])
        if self._registry:
            for registered, fn in self._registry.items():
                if issubclass(kind, registered):
                    return fn(items)
        rule = self._exact.get(kind)
        if rule is not None:
            return rule(self, items, path, allocate)
        first = items[0]
        if isinstance(first, np.generic):
            return self._numpy_scalars(items, path, allocate)
        if isinstance(first, np.ndarray):
            return self._arrays(items, path, allocate)
        module = kind.__module__.split(".")[0]
        if module == "torch" and _is_tensor(first):
            return self._tensors(items, path, allocate)
        if module.startswith("jax") and hasattr(first, "shape"):
            return _jax_stack(items, path)
        if isinstance(first, tuple) and hasattr(kind, "_fields"):
            return kind(*self._columns(items, path, allocate))
        if dataclasses.is_dataclass(first):
            return self._dataclasses(items, path, allocate)
        if isinstance(first, Mapping):
            return self._mappings(items, path, allocate)
        if isinstance(first, bool):
            return self._bools(items, path, allocate)
        if isinstance(first, int):
            return self._ints(items, path, allocate)
        if isinstance(first, float):
            return self._floats(items, path, allocate)
        if isinstance(first, (str, bytes)):
            return list(items)
        if isinstance(first, tuple):
            return self._tuples(items, path, allocate)
        if isinstance(first, list):
            return self._lists(items, path, allocate)
        return list(items)

    # -- leaves ----------------------------------------------------------------------------
    def _objects(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> Any:
        return list(items)

    def _python_numbers(self, items: Sequence[Any], path: Path, kind: str, name: str) -> Any:
        # The result must not depend on the order a shuffle put the items in: ints and floats
        # together are float64 whichever comes first (as NumPy and torch give them); bools
        # among numbers are an error wherever they stand.
        try:
            array = np.array(items)
        except (ValueError, TypeError, OverflowError):
            array = np.empty(0, dtype=object)
        types = set(map(type, items))
        if types == {int, float}:  # numbers as JSON gives them (0 and 0.5): float64, any order
            return array.astype(np.float64, copy=False)
        narrower: set[type] = {bool} if kind == "i" else {bool, int} if kind == "f" else set()
        if array.ndim == 1 and array.dtype.kind == kind and not types & narrower:
            return array
        big = next((x for x in items if type(x) is int and not -(2**63) <= x < 2**63), None)
        if big is not None:
            raise CollateError(
                f"cannot collate {format_path(path)}: the Python int {big} is out of the "
                "int64 range; pass a collate_fn (or NumPy scalars of a wider type)"
            )
        raise CollateError(
            f"cannot collate {format_path(path)}: the first item is a {name} but the items "
            f"are of types {_types(items)}; make them one type or pass a collate_fn"
        )

    def _bools(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> Any:
        return self._python_numbers(items, path, "b", "bool")

    def _ints(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> Any:
        array = self._python_numbers(items, path, "i", "int")
        return array if array.dtype in (np.int64, np.float64) else array.astype(np.int64)

    def _floats(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> Any:
        return self._python_numbers(items, path, "f", "float")

    def _numpy_scalars(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> Any:
        # One scalar type: its dtype is kept (and strings get the width of the longest, which
        # the first item's dtype would truncate). Mixed NumPy numbers promote as NumPy does.
        numeric = (np.number, np.bool_)
        if len(set(map(type, items))) > 1 and not all(isinstance(x, numeric) for x in items):
            raise CollateError(
                f"cannot collate {format_path(path)}: NumPy scalars mixed with {_types(items)}; "
                "make them one type or pass a collate_fn"
            )
        try:
            return np.array(items)
        except (TypeError, ValueError, OverflowError) as e:
            raise CollateError(
                f"cannot collate {format_path(path)}: NumPy scalars of types {_types(items)}"
            ) from e

    def _arrays(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> Any:
        # NOTE [ Stacking into given memory ]: ``allocate`` (a worker's shared-memory slot) may
        # only change *where* the batch is written, never what it is. So it is used only when
        # the result is certain to be exactly ``np.stack(items)``'s: every item an ndarray of the
        # first item's native-byte-order dtype. Anything else (mixed dtypes that NumPy promotes,
        # big-endian items that NumPy returns in native order, lists among the arrays) is
        # stacked as without a slot, and the worker copies it into the slot when sending it.
        first = items[0]
        mixed = "torch" in sys.modules and any(type(x) is not np.ndarray for x in items)
        if mixed and any(_is_tensor(x) for x in items):  # torch.stack refuses arrays: so do we
            raise CollateError(
                f"cannot collate {format_path(path)}: NumPy arrays mixed with torch tensors "
                f"(types {_types(items)}); make them one kind or pass a collate_fn"
            )
        try:
            if allocate is None or not _uniform_arrays(items):
                return np.stack(items)
            out = allocate((len(items), *first.shape), first.dtype)
            return np.stack(items, out=out)
        except (ValueError, TypeError) as e:
            raise self._stack_error(items, path, e) from e

    def _tensors(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> Any:
        torch = sys.modules["torch"]
        first = items[0]
        try:
            dtype = _slot_dtype(torch, items) if allocate is not None else None
            if allocate is None or dtype is None:  # see NOTE [ Stacking into given memory ]
                return torch.stack(items)
            out = torch.from_numpy(allocate((len(items), *first.shape), dtype))
            return torch.stack(items, out=out)
        except (RuntimeError, TypeError) as e:
            raise self._stack_error(items, path, e) from e

    def _stack_error(self, items: Sequence[Any], path: Path, error: Exception) -> CollateError:
        """The error for items that do not stack: their shapes when they differ, else the cause."""
        shapes = {tuple(getattr(x, "shape", ())) for x in items}
        if len(shapes) > 1:
            return self._shape_error(items, path)
        return CollateError(
            f"cannot collate {format_path(path)}: items of types {_types(items)} and shape "
            f"{shapes.pop()} do not stack ({type(error).__name__}: {error})"
        )

    def _shape_error(self, items: Sequence[Any], path: Path) -> CollateError:
        shapes = [tuple(getattr(x, "shape", ())) for x in items]
        kinds = _types(items)
        return CollateError(
            f"cannot collate {format_path(path)}: items of types {kinds} have different "
            f"shapes {sorted(set(shapes))} (per item: {shapes[:8]}"
            f"{'...' if len(shapes) > 8 else ''})"
            "; to batch variable-length arrays use collate_fn=minibatcher.pad_collate"
        )

    # -- structures ------------------------------------------------------------------------
    def _columns(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> list[Any]:
        try:
            columns = list(zip(*items, strict=True))
        except TypeError as e:  # an item that is not iterable
            raise CollateError(
                f"cannot collate {format_path(path)}: the first item is a "
                f"{type(items[0]).__name__} but the items are of types {_types(items)}"
            ) from e
        except ValueError as e:
            lengths = sorted({len(x) for x in items})
            raise CollateError(
                f"cannot collate {format_path(path)}: sequences of different lengths {lengths}; "
                "to batch variable-length sequences use collate_fn=minibatcher.pad_collate"
            ) from e
        collate = self.collate
        return [collate(column, (*path, i), allocate) for i, column in enumerate(columns)]

    def _tuples(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> Any:
        return tuple(self._columns(items, path, allocate))

    def _lists(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> Any:
        return self._columns(items, path, allocate)

    def _mappings(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> Any:
        first = items[0]
        out = {}
        for key in first:
            try:
                values = [item[key] for item in items]
            except (KeyError, TypeError) as e:
                raise CollateError(
                    f"cannot collate {format_path(path)}: the first item has key {key!r} but "
                    f"another item (of type {_types(items)}) does not"
                ) from e
            out[key] = self.collate(values, (*path, key), allocate)
        return as_mapping_type(type(first), out)

    def _dataclasses(self, items: Sequence[Any], path: Path, allocate: Allocator | None) -> Any:
        first = items[0]
        kind = type(first)
        fields = [f.name for f in dataclasses.fields(first) if f.init]
        if not all(isinstance(item, kind) for item in items):
            raise CollateError(
                f"cannot collate {format_path(path)}: the first item is a {kind.__name__} "
                f"dataclass but the items are of types {_types(items)}"
            )
        values = {
            name: self.collate([getattr(item, name) for item in items], (*path, name), allocate)
            for name in fields
        }
        return kind(**values)


def _uniform_arrays(items: Sequence[Any]) -> bool:
    """Whether every item is an ndarray of the first one's dtype, in native byte order."""
    dtype = items[0].dtype
    return dtype.isnative and all(type(x) is np.ndarray and x.dtype == dtype for x in items)


def _slot_dtype(torch: Any, items: Sequence[Any]) -> Any:
    """The NumPy dtype to stack tensors into given memory with, or None where ``torch.stack``
    must allocate itself: mixed dtypes (promoted), autograd (``out=`` refuses it), other
    devices or layouts, dtypes NumPy lacks (bfloat16, float8, ...)."""
    first = items[0]
    dtype = first.dtype
    for x in items:
        if (
            type(x) is not torch.Tensor
            or x.dtype != dtype
            or x.requires_grad
            or x.device.type != "cpu"
            or x.layout is not torch.strided
        ):
            return None
    try:
        return torch.empty((), dtype=dtype).numpy().dtype
    except (TypeError, RuntimeError):
        return None


def _is_tensor(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _jax_stack(items: Sequence[Any], path: Path) -> Any:
    import jax.numpy as jnp

    try:
        return jnp.stack(items)
    except (ValueError, TypeError) as e:
        shapes = sorted({tuple(x.shape) for x in items})
        raise CollateError(
            f"cannot collate {format_path(path)}: JAX arrays of different shapes {shapes}; "
            "use collate_fn=minibatcher.pad_collate"
        ) from e


collate = Collator()
"""The default collate function (a :class:`Collator`)."""
