"""Inline, thread and process executors collate identically: the same batch (values, dtypes,
byte order, container types) or the same error, for any item structure.

Process workers stack big arrays straight into a shared-memory slot; that may change where a
batch lives, never what it is (NOTE [ Stacking into given memory ] in collation/default.py).
The executors are built once and reused across the examples (the items travel inside the tasks,
as a stream's do), so the property stays fast.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict, namedtuple
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minibatcher import DataLoader
from minibatcher.transport.executor import InlineExecutor
from minibatcher.transport.processes import ProcessExecutor
from minibatcher.transport.threads import ThreadExecutor
from minibatcher.work import BatchWork

pytestmark = pytest.mark.timeout(120)

Pair = namedtuple("Pair", ["left", "right"])


@dataclasses.dataclass
class Record:
    first: Any
    second: Any


NUMPY_DTYPES = [
    "bool", "int8", "uint8", "<i2", ">i2", "int32", ">i4", "int64", ">i8", "uint64", "float16",
    "float32", ">f4", "float64", ">f8", "complex64", ">c8", "complex128", "datetime64[s]", "U3",
]  # fmt: skip
TORCH_DTYPES = [
    torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
    torch.bfloat16, torch.float8_e4m3fn, torch.float32, torch.float64, torch.complex64,
]  # fmt: skip
LENGTHS = [0, 1, 3, 9000]  # 2 items of 9000 bytes or more go through shared memory


def numpy_array(dtype: str, length: int, scale: int) -> np.ndarray:
    values = (np.arange(length) * scale) % 97
    if dtype == "U3":
        return values.astype("U3")
    return values.astype(np.dtype(dtype))


def torch_tensor(dtype: Any, length: int, scale: int, grad: bool) -> torch.Tensor:
    tensor = ((torch.arange(length) * scale) % 97).to(dtype)
    if grad and (dtype.is_floating_point or dtype.is_complex):
        tensor.requires_grad_(True)
    return tensor


# A leaf "spec" is drawn once per field; each item then makes its own value from it, with its
# own dtype and length where the spec says the items vary (so some batches mix dtypes or shapes).
leaf_specs = st.one_of(
    st.tuples(st.just("int"), st.integers(-(2**40), 2**40)),
    st.tuples(st.just("float"), st.sampled_from([0.5, -1.25, math.inf, math.nan])),
    st.tuples(st.just("bool"), st.booleans()),
    st.tuples(st.just("str"), st.text(max_size=3)),
    st.tuples(st.just("none"), st.none()),
    st.tuples(st.just("complex"), st.just(1 + 2j)),
    st.tuples(st.just("bytes"), st.binary(max_size=3)),
    st.tuples(st.just("zero_d"), st.sampled_from(NUMPY_DTYPES)),  # 0-d arrays stack to 1-D
    st.tuples(st.just("optional"), st.sampled_from(NUMPY_DTYPES), st.sampled_from(LENGTHS)),
    st.tuples(st.just("npscalar"), st.sampled_from(NUMPY_DTYPES[:-2])),
    st.tuples(
        st.just("ndarray"),
        st.lists(st.sampled_from(NUMPY_DTYPES), min_size=1, max_size=3),
        st.lists(st.sampled_from(LENGTHS), min_size=1, max_size=2),
        st.booleans(),  # two-dimensional
    ),
    st.tuples(
        st.just("tensor"),
        st.lists(st.sampled_from(TORCH_DTYPES), min_size=1, max_size=3),
        st.lists(st.sampled_from(LENGTHS), min_size=1, max_size=2),
        st.booleans(),  # requires_grad (float and complex tensors)
    ),
)

CONTAINERS = ["tuple", "list", "dict", "ordered", "namedtuple", "dataclass"]
structures = st.recursive(
    leaf_specs,
    lambda inner: st.tuples(
        st.sampled_from(CONTAINERS), st.lists(inner, min_size=2, max_size=3)
    ),
    max_leaves=6,
)


def make(spec: Any, item: int) -> Any:
    """Item number ``item``'s value for ``spec``."""
    kind = spec[0]
    if kind in CONTAINERS:
        children = [make(child, item) for child in spec[1]]
        if kind == "tuple":
            return tuple(children)
        if kind == "list":
            return children
        if kind == "dict":
            return {f"k{i}": c for i, c in enumerate(children)}
        if kind == "ordered":
            return OrderedDict((i, c) for i, c in enumerate(children))
        if kind == "namedtuple":
            return Pair(children[0], children[1])
        return Record(children[0], children[1])
    if kind in ("int", "float", "bool", "str", "none", "complex", "bytes"):
        return spec[1]
    if kind == "zero_d":
        return numpy_array(spec[1], 1, item + 1).reshape(())
    if kind == "optional":  # None in every other item: wherever it falls, a list
        return None if item % 2 else numpy_array(spec[1], spec[2], item + 1)
    if kind == "npscalar":
        return np.dtype(spec[1]).type(item % 2)
    dtypes, lengths, flag = spec[1], spec[2], spec[3]
    dtype, length = dtypes[item % len(dtypes)], lengths[item % len(lengths)]
    if kind == "ndarray":
        array = numpy_array(dtype, length, item + 1)
        return array.reshape(-1, 1) if flag else array
    return torch_tensor(dtype, length, item + 1, grad=flag)


def assert_same(got: Any, ref: Any, where: str = "batch") -> None:
    assert type(got) is type(ref), f"{where}: {type(got)} != {type(ref)}"
    if isinstance(ref, np.ndarray):
        assert got.dtype.str == ref.dtype.str, f"{where}: {got.dtype.str} != {ref.dtype.str}"
        assert got.shape == ref.shape, f"{where}: {got.shape} != {ref.shape}"
        assert got.tobytes() == ref.tobytes(), f"{where}: values differ"
    elif isinstance(ref, np.generic):
        assert got.dtype == ref.dtype, where
        assert got.tobytes() == ref.tobytes(), where
    elif isinstance(ref, torch.Tensor):
        assert got.dtype == ref.dtype, f"{where}: {got.dtype} != {ref.dtype}"
        assert got.shape == ref.shape, f"{where}: {got.shape} != {ref.shape}"
        assert got.requires_grad == ref.requires_grad, f"{where}: requires_grad differs"
        as_bytes = [t.detach().contiguous().flatten().view(torch.uint8) for t in (got, ref)]
        assert torch.equal(*as_bytes), f"{where}: values differ"
    elif isinstance(ref, dict):
        assert list(got) == list(ref), f"{where}: keys {list(got)} != {list(ref)}"
        for key in ref:
            assert_same(got[key], ref[key], f"{where}[{key!r}]")
    elif isinstance(ref, (list, tuple)):
        assert len(got) == len(ref), f"{where}: length {len(got)} != {len(ref)}"
        for i, (g, r) in enumerate(zip(got, ref, strict=True)):
            assert_same(g, r, f"{where}[{i}]")
    elif dataclasses.is_dataclass(ref):
        for field in dataclasses.fields(ref):
            assert_same(getattr(got, field.name), getattr(ref, field.name), f"{where}.{field.name}")
    else:
        assert repr(got) == repr(ref), f"{where}: {got!r} != {ref!r}"


def outcome(executor: Any, items: list[Any]) -> tuple[str, Any]:
    task = (0, 0, np.arange(len(items), dtype=np.int64), items)
    try:
        [(_, batch)] = list(executor.run(iter([task])))
    except Exception as e:
        return "error", (type(e), str(e))
    return "batch", batch


def test_every_executor_collates_alike() -> None:
    work = BatchWork(None, seed=0)
    inline = InlineExecutor(work)
    threads = ThreadExecutor(work, 2, seed=0)
    processes = [ProcessExecutor(work, 2, seed=0, start_method="fork")]
    try:

        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
        @given(spec=structures, count=st.integers(1, 3))
        def check(spec: Any, count: int) -> None:
            if processes[0].closed:  # an error closed it: this example gets new workers
                processes[0] = ProcessExecutor(work, 2, seed=0, start_method="fork")
            items = [make(spec, i) for i in range(count)]
            ref = outcome(inline, items)
            for executor in (threads, processes[0]):
                got = outcome(executor, items)
                assert got[0] == ref[0], f"{executor}: {got} but inline gave {ref}"
                if ref[0] == "error":
                    assert got[1] == ref[1]
                else:
                    assert_same(got[1], ref[1])

        check()
    finally:
        threads.close()
        processes[0].close()


def test_loader_collates_reported_cases_alike() -> None:
    """The reported cases, end to end: mixed int64/float64 and float32/float64 arrays of one
    shape, big-endian arrays and tensors that require grad, read by process workers."""
    n = 4096

    def item(i: int) -> tuple[Any, ...]:
        return (
            np.zeros(n, [np.int64, np.float64][i]),
            np.zeros(n, [np.float32, np.float64][i]),
            np.arange(n, dtype=">f8"),
            torch.ones(n, requires_grad=True),
        )

    data = [item(0), item(1)]
    ref = list(DataLoader(data, batch_size=2))
    for worker_type in ("thread", "process"):
        with DataLoader(data, batch_size=2, num_workers=2, worker_type=worker_type) as dl:
            got = list(dl)
        assert_same(got, ref)
    assert [a.dtype.str for a in ref[0][:3]] == ["<f8", "<f8", "<f8"]


def test_tensor_sources_that_cannot_be_taken_into_shared_memory_still_load() -> None:
    """A tensor dataset requiring grad (``index_select(out=)`` refuses autograd) or of a dtype
    NumPy lacks (float8) failed with process workers only."""
    n = 40_000  # a batch of 8192 float32 goes through shared memory
    datasets = [
        torch.randn(n, requires_grad=True),
        torch.utils.data.TensorDataset(torch.randn(n, 2, requires_grad=True), torch.arange(n)),
        torch.randn(n).to(torch.float8_e4m3fn),
    ]
    for data in datasets:
        ref = next(iter(DataLoader(data, batch_size=8192)))
        with DataLoader(data, batch_size=8192, num_workers=1) as dl:
            got = next(iter(dl))
        assert_same(got, ref)
