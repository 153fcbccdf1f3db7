"""The minibatcher command: demo, bench and info; exit codes 0 (ok), 1 (failed), 2 (usage)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from minibatcher.__main__ import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, find_benchmarks, main


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m minibatcher ARGS`` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "minibatcher", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_python_dash_m_info() -> None:
    """info prints versions, CPUs, /dev/shm and start methods, and exits 0."""
    done = run("info")
    assert done.returncode == EXIT_OK, done.stderr
    for word in ("minibatcher", "numpy", "torch", "jax", "cpus", "/dev/shm", "start methods"):
        assert word in done.stdout


def test_console_script_help() -> None:
    """The installed 'minibatcher' script lists the commands."""
    script = Path(sys.executable).with_name("minibatcher")
    if not script.exists():
        pytest.skip("the console script is not installed next to this Python")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == EXIT_OK
    assert all(name in done.stdout for name in ("demo", "bench", "info"))


@pytest.mark.parametrize(
    "argv",
    [[], ["nonsense"], ["demo", "--epochs", "0"], ["demo", "--batch-sizes", "8,x"],
     ["bench", "--only", "nope"], ["demo", "--seed", "-1"], ["batch-size", "--seed", "x"],
     ["demo", "--plot", "/nonexistent-folder-of-minibatcher/curves.png"]],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong command line exits 2 and says what is wrong."""
    assert main(argv) == EXIT_USAGE
    assert capsys.readouterr().err.strip()


def test_usage_error_exit_code_in_a_process() -> None:
    """The exit code reaches the shell."""
    done = run("demo", "--batch-sizes", "0")
    assert done.returncode == EXIT_USAGE
    assert "positive ints or 'full'" in done.stderr


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """--help on a command explains it."""
    assert main(["demo", "--help"]) == EXIT_OK
    assert "linear scaling rule" in capsys.readouterr().out


def test_demo_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    """demo with two batch sizes and two epochs prints the table and the answer."""
    pytest.importorskip("sklearn")
    assert main(["demo", "--epochs", "2", "--batch-sizes", "64,full", "--hidden", "16",
                 "--no-progress", "--suggest-seconds", "1"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "batch size" in out
    assert "items/s" in out
    assert "Answer:" in out
    assert "\n        64 " in out
    assert "\n      1437 " in out
    assert "Suggested batch size:" in out  # minibatcher.sizing beside the trained table
    assert "The measurement agrees" in out or "The measurement does not agree" in out


def test_demo_missing_optional_package(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A missing extra fails with exit 1 and the pip command, before any training."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["demo", "--plot", "x.png", "--epochs", "1"]) == EXIT_FAILURE
    assert "minibatcher[examples]" in capsys.readouterr().err


def test_bench_runs_the_scripts_of_a_folder(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """bench runs bench.py then workers.py with --quick, and fails if one fails."""
    (tmp_path / "bench.py").write_text("import sys; print('W1', sys.argv[1:])\n")
    assert main(["bench", "--path", str(tmp_path), "--quick"]) == EXIT_OK
    (tmp_path / "workers.py").write_text("import sys; sys.exit(3)\n")
    assert main(["bench", "--path", str(tmp_path)]) == EXIT_FAILURE
    assert main(["bench", "--path", str(tmp_path), "--only", "bench"]) == EXIT_OK
    captured = capsys.readouterr()
    assert "workers.py failed" in captured.err
    assert "--quick" in captured.out


def test_bench_without_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No benchmarks folder: exit 1, saying where it was looked for and what to pass."""
    assert main(["bench", "--path", str(tmp_path / "missing")]) == EXIT_FAILURE
    assert main(["bench", "--path", str(tmp_path)]) == EXIT_FAILURE  # a folder without scripts
    assert "--path" in capsys.readouterr().err


def test_benchmarks_folder_of_this_checkout() -> None:
    """From a source checkout, benchmarks/ is found next to src/."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks").is_dir():
        pytest.skip("no benchmarks/ in this checkout")
    assert find_benchmarks(None).resolve() == (root / "benchmarks").resolve()
