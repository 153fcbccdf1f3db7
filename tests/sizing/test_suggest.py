"""suggest_batch_size: B* from the noise scale and the throughput fit, capped, labelled."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minibatcher import ConfigError, DataLoader
from minibatcher.sizing import suggest_batch_size
from minibatcher.sizing.suggest import optimal_batch_size


@pytest.fixture(scope="module")
def problem() -> tuple[DataLoader[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Linear regression, N = 2048, batch size 64; the parameters a dict of arrays."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2048, 16))
    y = x @ rng.standard_normal(16) + rng.standard_normal(2048)
    return DataLoader({"x": x, "y": y}, batch_size=64, shuffle=True, seed=0), {"w": np.zeros(16)}


def grad_of(params: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    return lambda b: (b["x"] * (b["x"] @ params["w"] - b["y"])[:, None]).mean(axis=0)


def step_of(params: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    def step(b: dict[str, np.ndarray]) -> None:
        params["w"] -= 0.01 * grad_of(params)(b)
    return step


def test_suggestion_with_noise_scale(problem) -> None:  # type: ignore[no-untyped-def]
    """B* = sqrt(B_noise alpha / beta) rounded, within [1, ceiling]; the table is printed."""
    dl, params = problem
    s = suggest_batch_size(dl, step_of(params), grad=grad_of(params), state=params, seconds=2)
    assert s.noise is not None
    assert s.noise.value > 0
    expected = optimal_batch_size(s.noise.value, s.throughput.alpha, s.throughput.beta)
    if math.isfinite(expected):
        assert s.batch_size == min(max(1, round(expected)), s.ceiling.batch_size)
    else:
        assert s.batch_size == s.ceiling.batch_size
    assert s.ceiling.batch_size == 2048
    text = " ".join(str(s).split())  # wrapped at 100 columns
    for words in ("Suggested batch size", "ms/step", "items/s", "peak MiB", "steps (rel)",
                  "time (rel)", "B_simple", "90% interval", "parameters fixed",
                  "grows as the loss falls", "not, the critical batch size"):
        assert words in text
    np.testing.assert_array_equal(params["w"], np.zeros(16))
    n = s.noise.value
    assert s.lr_factor(64) == pytest.approx((1 + n / 64) / (1 + n / s.batch_size))
    assert s.lr_factor(64, "linear") == pytest.approx(s.batch_size / 64)
    assert s.lr_factor(64, "sqrt") == pytest.approx(math.sqrt(s.batch_size / 64))


def test_throughput_only_without_grad(problem) -> None:  # type: ignore[no-untyped-def]
    """No grad: the measured size with the most items/s, labelled as throughput only."""
    dl, params = problem
    s = suggest_batch_size(dl, step_of(params), state=params, seconds=1, sizes=[8, 64, 512])
    assert s.noise is None
    assert math.isnan(s.optimum)
    assert s.basis.startswith("throughput only (no grad=)")
    assert s.batch_size == max(s.throughput.points, key=lambda p: p.items_per_s).batch_size
    assert "No noise scale" in str(s)
    with pytest.raises(ValueError, match="rule='sgd' needs a finite noise scale"):
        s.lr_factor(64)
    with pytest.raises(ConfigError, match="rule must be"):
        s.lr_factor(64, "cubic")  # type: ignore[arg-type]


def test_capped_at_the_memory_ceiling(problem) -> None:  # type: ignore[no-untyped-def]
    """A tiny budget: the suggestion never exceeds the ceiling, nor do the timed sizes."""
    dl, params = problem
    s = suggest_batch_size(dl, step_of(params), grad=grad_of(params), state=params, seconds=1,
                           budget=1)
    assert s.ceiling.batch_size < 2048
    assert s.batch_size <= s.ceiling.batch_size
    assert all(p.batch_size <= s.ceiling.batch_size for p in s.throughput.points)


def test_optimal_batch_size() -> None:
    """The minimum of (1 + n/B)(alpha + beta B)."""
    b = optimal_batch_size(100.0, 1e-3, 1e-5)
    assert b == pytest.approx(100.0)
    cost = [(1 + 100 / x) * (1e-3 + 1e-5 * x) for x in (b * 0.9, b, b * 1.1)]
    assert cost[1] < min(cost[0], cost[2])
    assert optimal_batch_size(100.0, 1e-3, 0.0) == math.inf
