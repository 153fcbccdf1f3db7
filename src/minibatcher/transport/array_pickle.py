"""How a batch's arrays cross the process boundary: laid out in a slot, described in the pickle.

In: a batch (any structure of NumPy arrays and torch tensors) and, in a worker, the slot the task
carries (a :class:`~minibatcher.transport.shm.Segment`). Out: a pickle in which every array leaf
is a small descriptor: ``(kind, offset, shape, dtype)`` of its bytes in the slot, or ``(kind +
"b", dtype, shape, raw bytes)`` out of band. State: none beyond one message (the slot's bump
allocator). Who owns the slot, and when it is unlinked, is NOTE [ Shared memory ownership ] in
``shm.py``.

- :class:`SlotWriter` (worker side) allocates a batch's stacked arrays inside the slot, so
  collate writes them in place, and copies in any other large leaf.
- :class:`ResultPickler` turns leaves into descriptors (both directions: the main process also
  uses it for task messages that carry items); :class:`ResultUnpickler` turns them back into
  views of the leased slot or arrays over the received bytes.
"""

from __future__ import annotations

import functools
import importlib
import io
import pickle
import sys
from typing import Any

import numpy as np

from .shm import MIN_SHARED_BYTES, Segment

ALIGN = 64
"""Every array in a slot starts at a multiple of this many bytes."""


def _align(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


class SlotWriter:
    """Worker side: allocates a batch's arrays in one slot and describes them for the pickle.

    With no slot (``segment=None``) it allocates ordinary memory and only counts
    :attr:`needed`, which the main process uses to size the slots of later tasks.
    """

    def __init__(self, segment: Segment | None) -> None:
        self.segment = segment
        self.used = 0
        self.needed = 0
        self._outside: set[int] = set()  # ids of arrays allocate() had to put outside the slot

    def _reserve(self, nbytes: int) -> int | None:
        start = self.used
        self.needed += _align(nbytes)
        segment = self.segment
        if segment is None or start + nbytes > segment.capacity:
            return None
        self.used = _align(start + nbytes)
        return start

    def allocate(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An uninitialised array, in the slot when it is big enough to be worth it."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes < MIN_SHARED_BYTES or dtype.hasobject:
            return np.empty(shape, dtype)
        start = self._reserve(nbytes)
        if start is None:
            array = np.empty(shape, dtype)
            self._outside.add(id(array))  # counted in ``needed`` already
            return array
        view = self.segment.view  # type: ignore[union-attr]
        return view[start : start + nbytes].view(dtype).reshape(shape)

    def describe(self, array: np.ndarray, kind: str) -> tuple[Any, ...] | None:
        """``(kind, offset, shape, dtype)`` of ``array`` in the slot (copied in if needed)."""
        dtype = array.dtype
        nbytes = array.nbytes
        if nbytes < MIN_SHARED_BYTES or dtype.hasobject or dtype.fields is not None:
            return None
        segment = self.segment
        if segment is not None and array.flags.c_contiguous:
            offset = array.__array_interface__["data"][0] - segment.address
            if offset >= 0 and offset + nbytes <= segment.capacity:
                return (kind, offset, array.shape, dtype.str)
        if id(array) in self._outside:
            return None
        start = self._reserve(nbytes)
        if start is None:
            return None
        view = segment.view  # type: ignore[union-attr]
        np.copyto(view[start : start + nbytes].view(dtype).reshape(array.shape), array)
        return (kind, start, array.shape, dtype.str)



class ResultPickler(pickle.Pickler):
    """Pickles a batch; array leaves travel as descriptors, not through NumPy's slow reduce.

    A leaf that lives in (or fits) the slot becomes ``(kind, offset, shape, dtype)``; a small
    array becomes ``(kind + "b", dtype, shape, raw bytes)`` (~1 us instead of ~20 us for
    ``ndarray.__reduce__``). ``kind`` is ``"n"`` for NumPy and ``"t"`` for torch. Without a
    writer (tasks), only the second form is used.
    """

    def __init__(self, file: io.BytesIO, writer: SlotWriter | None = None) -> None:
        # An instance attribute, set before the C pickler looks it up: a method would be kept
        # as a bound method, a cycle that holds the batch until a GC pass.
        self.__dict__["reducer_override"] = _leaf_reducer(writer)
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.writer = writer


def _leaf_reducer(writer: SlotWriter | None) -> Any:
    """The pickler's ``reducer_override``: arrays and tensors as leaf descriptors.

    The pickler calls it for containers and other objects, never for numbers or strings
    (``persistent_id``, which it calls for every object, made pickling a batch of small dicts
    ~4x slower: ~6 us an item of 3-key dicts)."""
    torch = sys.modules.get("torch")
    tensor_type = torch.Tensor if torch is not None else None

    def reduce(obj: Any) -> Any:
        described = None
        if type(obj) is np.ndarray:
            described = _describe(obj, "n", writer)
        elif tensor_type is not None and type(obj) is tensor_type:
            described = _describe_tensor(obj, writer)
        return NotImplemented if described is None else (_leaf, (described,))

    return reduce


def _describe_tensor(obj: Any, writer: SlotWriter | None) -> Any:
    if obj.device.type != "cpu" or obj.layout is not _strided():
        return None
    if obj.requires_grad:  # bytes plus the flag (the graph cannot cross processes)
        return _raw_tensor(obj)
    try:
        array = obj.numpy()
    except (TypeError, RuntimeError):  # dtypes NumPy lacks (bfloat16, float8), ...
        return _raw_tensor(obj)
    return _describe(array, "t", writer)


def _describe(array: np.ndarray, kind: str, writer: SlotWriter | None) -> Any:
    dtype = array.dtype
    if dtype.hasobject or dtype.fields is not None:
        return None
    if writer is not None:
        described = writer.describe(array, kind)
        if described is not None:
            return described
    if dtype.kind in "mM":  # datetimes cannot export a buffer: pickle them as usual
        return None
    if not (array.flags.c_contiguous and array.flags.writeable):
        array = array.copy()
    return (kind + "b", dtype.str, array.shape, pickle.PickleBuffer(array))  # type: ignore[arg-type]


def _raw_tensor(tensor: Any) -> Any:
    """``("tr", dtype name, shape, bytes)`` (``"tg"``: it requires grad) for a CPU tensor of a
    dtype NumPy lacks or that requires grad (torch's own pickle cannot even load float8 tensors
    back); None (pickled as usual) for conjugate or negative views."""
    if tensor.is_conj() or tensor.is_neg():
        return None
    try:
        flat = tensor.detach().contiguous().reshape(-1)
        raw = flat.view(sys.modules["torch"].uint8).numpy()
    except (TypeError, RuntimeError):
        return None
    name = str(tensor.dtype).removeprefix("torch.")
    kind = "tg" if tensor.requires_grad else "tr"
    return (kind, name, tuple(tensor.shape), pickle.PickleBuffer(raw))


def _strided() -> Any:
    return sys.modules["torch"].strided


def _leaf(described: Any) -> Any:
    """The callable a leaf descriptor is pickled with; :class:`ResultUnpickler` replaces it."""
    raise pickle.UnpicklingError("a batch leaf must be loaded by ResultUnpickler")


class ResultUnpickler(pickle.Unpickler):
    """Rebuilds a batch in the main process; descriptors become views of the leased slot
    (``raw``) or arrays over the received bytes."""

    def __init__(self, file: io.BytesIO, raw: np.ndarray | None = None) -> None:
        super().__init__(file)
        self.raw = raw

    def find_class(self, module: str, name: str) -> Any:
        if name == "_leaf" and module == __name__:
            # Not a bound method: the unpickler's memo keeps what this returns, and a cycle
            # through ``self`` would keep the slot leased (and mapped) until a GC pass.
            return functools.partial(_load_leaf, self.raw)
        return super().find_class(module, name)


def _load_leaf(raw: np.ndarray | None, pid: Any) -> Any:
    """The array or tensor of a leaf descriptor (:meth:`ResultPickler.reducer_override`), a
    view of the leased slot ``raw`` or an array over the received bytes."""
    kind, where, shape, dtype = pid
    if kind in ("tr", "tg"):  # (kind, torch dtype name, shape, bytearray)
        torch = sys.modules.get("torch") or importlib.import_module("torch")
        flat = torch.from_numpy(np.frombuffer(dtype, np.uint8))
        tensor = flat.view(getattr(torch, where)).reshape(shape)
        return tensor.requires_grad_(True) if kind == "tg" else tensor
    if len(kind) == 2:  # (kind + "b", dtype, shape, bytearray)
        array = np.frombuffer(dtype, np.dtype(where)).reshape(shape)
    else:
        dtype = np.dtype(dtype)
        count = 1
        for n in shape:
            count *= n
        assert raw is not None
        array = raw[where : where + count * dtype.itemsize].view(dtype).reshape(shape)
    if kind[0] == "t":
        torch = sys.modules.get("torch") or importlib.import_module("torch")
        return torch.from_numpy(array)
    return array
