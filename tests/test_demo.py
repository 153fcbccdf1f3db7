"""The demo: a NumPy MLP on digits, one run per batch size, a table that answers the question."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from minibatcher import demo, demo_report


@pytest.fixture(scope="module")
def results() -> list[demo.RunResult]:
    """A tiny setting: 3 epochs, batch sizes 32 and the whole training set."""
    return demo.run_demo((32, None), epochs=3, hidden=32, seed=0, progress=False,
                         log=lambda _: None)


def test_runs_and_table_shape(results: list[demo.RunResult]) -> None:
    """One result per batch size; the table has a header, a rule and a row each."""
    assert [r.batch_size for r in results] == [32, 1437]
    assert [len(r.train_loss) for r in results] == [3, 3]
    assert results[0].steps == 3 * -(-1437 // 32)
    assert results[1].steps == 3
    lines = demo_report.format_table(results).splitlines()
    assert len(lines) == 2 + len(results)
    header = ["batch", "size", "lr", "steps", "wall", "s", "items/s", "data", "wait", "val", "acc"]
    assert lines[0].split() == header
    assert all(len(row.split()) == 7 for row in lines[2:])


def test_accuracy_beats_chance_by_far(results: list[demo.RunResult]) -> None:
    """Ten classes: chance is 10%; small batches learn far more in 3 epochs."""
    assert results[0].accuracy > 0.8
    assert results[0].train_loss[-1] < results[0].train_loss[0]


def test_explanation_names_the_answer(results: list[demo.RunResult]) -> None:
    """The text after the table is computed from it."""
    text = demo_report.explain(results)
    assert "Answer: batch size 32" in text


def test_learning_rate_rule() -> None:
    """Linear scaling with a cap."""
    assert demo.learning_rate(1) == pytest.approx(0.01)
    assert demo.learning_rate(16) == pytest.approx(0.16)
    assert demo.learning_rate(10_000) == demo.MAX_LR


def test_same_initial_weights_and_split_for_every_run() -> None:
    """Runs differ by batch size only: the split and the weights come from the seed."""
    a, b = demo.load_digits_split(3), demo.load_digits_split(3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert len(a[0]) + len(a[2]) == 1797
    w1, w2 = demo.NumpyMLP.init(64, 8, 10, 3), demo.NumpyMLP.init(64, 8, 10, 3)
    assert all(np.array_equal(w1[k], w2[k]) for k in w1)


def test_plot(tmp_path: Path, results: list[demo.RunResult]) -> None:
    """--plot saves a PNG of the curves."""
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    demo_report.save_plot(results, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_torch_backend_trains_the_same_model() -> None:
    """--torch: the same model and SGD in torch learns as well."""
    pytest.importorskip("torch")
    (run,) = demo.run_demo((32,), epochs=1, hidden=32, backend="torch", progress=False,
                           log=lambda _: None)
    assert run.accuracy > 0.6
