"""The throughput curve: sizes measured on real batches, the fit, the default sizes."""

from __future__ import annotations

import numpy as np
import pytest

from minibatcher import ConfigError, DataLoader
from minibatcher.sizing import throughput_curve
from minibatcher.sizing.throughput import fit_line, powers_of_two


def test_points_at_each_size_on_full_batches() -> None:
    """One point per size at most N; every timed batch is full; warm-up steps not timed."""
    seen: list[int] = []
    dl = DataLoader(np.ones((100, 3)), batch_size=10, shuffle=True, seed=0)
    curve = throughput_curve(dl, lambda b: seen.append(len(b)), sizes=[4, 32, 500], repeats=3,
                             warmup=2)
    assert [p.batch_size for p in curve.points] == [4, 32]
    assert seen == [4] * 5 + [32] * 5
    assert all(p.items_per_s == pytest.approx(p.batch_size / p.seconds) for p in curve.points)
    assert min(curve.alpha, curve.beta) >= 0
    assert "items/s" in str(curve)
    assert dl.epoch == 0  # the user's loader was not iterated


def test_fit_line_recovers_alpha_and_beta() -> None:
    """Exact data, exact fit; a decreasing curve gives beta = 0, never negative."""
    sizes = [8, 16, 64, 256]
    alpha, beta = fit_line(sizes, [1e-3 + 2e-6 * b for b in sizes])
    assert (alpha, beta) == pytest.approx((1e-3, 2e-6))
    assert fit_line([8, 16], [2.0, 1.0])[1] == 0.0
    assert fit_line([8], [1.0]) == (1.0, 0.0)


def test_default_sizes() -> None:
    """Powers of two up to N, N itself included, at most 10."""
    assert powers_of_two(100) == [8, 16, 32, 64, 100]
    assert powers_of_two(64) == [8, 16, 32, 64]
    long = powers_of_two(2**20)
    assert (len(long), long[0], long[-1]) == (10, 8, 2**20)


def test_sizes_all_above_n_is_an_error() -> None:
    """Named, with N."""
    with pytest.raises(ConfigError, match="above the data set's 10 items"):
        throughput_curve(DataLoader(np.ones(10), batch_size=2), lambda b: None, sizes=[20])
