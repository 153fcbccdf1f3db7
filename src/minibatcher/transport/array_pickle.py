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
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.writer = writer
        torch = sys.modules.get("torch")
        self._tensor = torch.Tensor if torch is not None else None

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is np.ndarray:
            return self._describe(obj, "n")
        tensor = self._tensor
        if tensor is not None and type(obj) is tensor:
            if obj.device.type != "cpu" or obj.layout is not _strided():
                return None
            if obj.requires_grad:  # bytes plus the flag (the graph cannot cross processes)
                return _raw_tensor(obj)
            try:
                array = obj.numpy()
            except (TypeError, RuntimeError):  # dtypes NumPy lacks (bfloat16, float8), ...
                return _raw_tensor(obj)
            return self._describe(array, "t")
        return None

    def _describe(self, array: np.ndarray, kind: str) -> Any:
        dtype = array.dtype
        if dtype.hasobject or dtype.fields is not None:
            return None
        writer = self.writer
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


class ResultUnpickler(pickle.Unpickler):
    """Rebuilds a batch in the main process; descriptors become views of the leased slot
    (``raw``) or arrays over the received bytes."""

    def __init__(self, file: io.BytesIO, raw: np.ndarray | None = None) -> None:
        super().__init__(file)
        self.raw = raw

    def persistent_load(self, pid: Any) -> Any:
        kind, where, shape, dtype = pid
        if kind in ("tr", "tg"):  # (kind, torch dtype name, shape, bytearray)
            torch = sys.modules.get("torch") or importlib.import_module("torch")
            raw = torch.from_numpy(np.frombuffer(dtype, np.uint8))
            tensor = raw.view(getattr(torch, where)).reshape(shape)
            return tensor.requires_grad_(True) if kind == "tg" else tensor
        if len(kind) == 2:  # (kind + "b", dtype, shape, bytearray)
            array = np.frombuffer(dtype, np.dtype(where)).reshape(shape)
        else:
            dtype = np.dtype(dtype)
            count = 1
            for n in shape:
                count *= n
            assert self.raw is not None
            array = self.raw[where : where + count * dtype.itemsize].view(dtype).reshape(shape)
        if kind[0] == "t":
            torch = sys.modules.get("torch") or importlib.import_module("torch")
            return torch.from_numpy(array)
        return array
