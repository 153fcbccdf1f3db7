"""output=: converting a batch's leaves to NumPy or torch, and importing torch only when needed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from minibatcher import ConfigError, DataLoader


def test_output_torch_converts_numpy_leaves_and_keeps_strings() -> None:
    torch = pytest.importorskip("torch")
    data = {"x": np.arange(6, dtype=np.float32).reshape(3, 2), "s": ["a", "b", "c"]}
    (batch,) = list(DataLoader(data, batch_size=3, output="torch"))
    assert isinstance(batch["x"], torch.Tensor)
    assert batch["x"].dtype == torch.float32
    assert batch["s"] == ["a", "b", "c"]


def test_output_torch_on_the_item_path() -> None:
    torch = pytest.importorskip("torch")
    (batch,) = list(DataLoader([(1, 0.5), (2, 1.5)], batch_size=2, output="torch"))
    assert batch[0].dtype == torch.int64
    assert batch[0].tolist() == [1, 2]
    assert batch[1].dtype == torch.float64


def test_output_numpy_converts_tensors() -> None:
    torch = pytest.importorskip("torch")
    dl = DataLoader(torch.arange(4), batch_size=2, output="numpy")
    assert [type(b) for b in dl] == [np.ndarray, np.ndarray]
    assert [b.tolist() for b in dl] == [[0, 1], [2, 3]]


def test_output_auto_keeps_each_framework() -> None:
    torch = pytest.importorskip("torch")
    items = [(torch.tensor([1.0]), np.array([2.0])) for _ in range(2)]
    (batch,) = list(DataLoader(items, batch_size=2))
    assert isinstance(batch[0], torch.Tensor)
    assert isinstance(batch[1], np.ndarray)


def test_unknown_output_is_refused_at_construction() -> None:
    with pytest.raises(ConfigError, match="output must be one of 'auto', 'numpy', 'torch', 'jax'"):
        DataLoader(range(3), output="tensorflow")  # type: ignore[arg-type]


def test_output_jax_without_jax_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("jax", "jax.numpy"):  # None in sys.modules: `import jax` fails as if absent
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"minibatcher\[jax\]"):
        DataLoader(range(3), output="jax")


def test_output_jax_converts_leaves_inline_and_from_forked_workers() -> None:
    """Batches become jax Arrays in the main process, also when workers made them (workers
    never call JAX); forking after JAX started is said once, by us, not per worker by JAX."""
    # find_spec, not importorskip: importing JAX here would make every later test that forks
    # workers in this pytest process warn (and fail) that JAX is imported
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    code = textwrap.dedent(
        """
        import warnings
        import numpy as np
        import jax, jax.numpy as jnp
        from minibatcher import DataLoader
        data = {"x": np.arange(40, dtype=np.float32).reshape(20, 2), "s": list("abcdefghij" * 2)}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for workers in (0, 2, 2):
                dl = DataLoader(data, batch_size=8, shuffle=True, seed=0, output="jax",
                                num_workers=workers)
                batches = list(dl)
                assert all(isinstance(b["x"], jax.Array) for b in batches), batches
                assert batches[0]["s"] == [str(s) for s in batches[0]["s"]]
                assert float(jnp.sum(jnp.concatenate([b["x"] for b in batches]))) == 780.0
        ours = [w for w in caught if str(w.message).startswith("minibatcher forks")]
        print(len(ours), len(caught))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["1", "1"], out.stdout  # (ours, all warnings): ours alone, once


def test_a_numpy_only_run_never_imports_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import minibatcher
        from minibatcher import DataLoader, pad_collate
        for data in (range(10), np.zeros((10, 2)), [(i, str(i)) for i in range(10)],
                     {"a": np.arange(10)}, (i for i in range(10))):
            for batch in DataLoader(data, batch_size=3, shuffle=True, output="numpy"):
                pass
        list(DataLoader([np.arange(n) for n in range(1, 5)], batch_size=2,
                        collate_fn=pad_collate))
        print("torch" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_output_torch_names_the_field_it_cannot_convert_and_keeps_mapping_types() -> None:
    pytest.importorskip("torch")
    from collections import OrderedDict

    rows = [OrderedDict(x=float(i), when=np.datetime64("2020-01-01")) for i in range(4)]
    with pytest.raises(TypeError, match=r"output='torch' cannot convert batch\['when'\]"):
        next(iter(DataLoader(rows, batch_size=2, output="torch")))
    batch = next(iter(DataLoader([OrderedDict(x=float(i)) for i in range(4)], batch_size=2,
                                 output="torch")))
    assert type(batch) is OrderedDict


def test_output_numpy_names_a_tensor_numpy_cannot_hold() -> None:
    torch = pytest.importorskip("torch")
    data = {"x": torch.zeros(4, dtype=torch.bfloat16)}
    with pytest.raises(TypeError, match=r"output='numpy' cannot convert batch\['x'\]"):
        next(iter(DataLoader(data, batch_size=2, output="numpy")))
