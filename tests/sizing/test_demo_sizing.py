"""The demo and the CLI show the measured suggestion on the digits model."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")

from minibatcher import demo, demo_report
from minibatcher.__main__ import EXIT_OK, EXIT_USAGE, main


def test_batch_size_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``minibatcher batch-size`` prints the table and the noise scale, and exits 0."""
    assert main(["batch-size", "--seconds", "1", "--hidden", "16", "--no-progress"]) == EXIT_OK
    out = capsys.readouterr().out
    for words in ("Suggested batch size:", "B* = sqrt(B_noise alpha / beta)", "ms/step",
                  "B_simple", "memory ceiling 1,437 items"):
        assert words in out


def test_batch_size_command_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad budget exits 2 and says why."""
    assert main(["batch-size", "--seconds", "0"]) == EXIT_USAGE
    assert "positive number of seconds" in capsys.readouterr().err


def test_suggest_on_the_digits_model() -> None:
    """suggest() measures the demo's model at its initial weights: a noise scale above 1 and a
    suggestion within [1, N]."""
    first = demo.suggest(hidden=16, seconds=0.5, progress=False)
    assert first.noise is not None
    assert first.noise.value > 1
    assert 1 <= first.batch_size <= 1437


def _result(batch_size: int, seconds: float, accuracy: float) -> demo.RunResult:
    return demo.RunResult(batch_size, 0.1, 10, seconds, 100, accuracy, None, [1.0], [accuracy])


def test_agreement_in_both_directions() -> None:
    """Agrees when the trained size nearest the suggestion (log scale) is the table's answer."""
    results = [_result(16, 1.0, 0.97), _result(128, 0.5, 0.97), _result(1437, 0.1, 0.8)]

    class Suggested:
        batch_size = 90

    assert demo_report.agreement(Suggested(), results).startswith("The measurement agrees")
    Suggested.batch_size = 20
    text = demo_report.agreement(Suggested(), results)
    assert text.startswith("The measurement does not agree")
    assert "table's answer is 128" in text
