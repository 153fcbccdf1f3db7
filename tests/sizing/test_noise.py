"""The noise scale against exact values: linear and logistic regression, finite data sets."""

from __future__ import annotations

import numpy as np
import pytest

from minibatcher import ConfigError, DataLoader
from minibatcher.sizing import NoiseScale, noise_scale

D = 10


def linear_problem(n: int, s2: float, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """x ~ N(0, I_d), y = x.w* + eps, eps ~ N(0, s2); parameters w = w* + delta, |delta| = 1."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D))
    w_star = rng.standard_normal(D)
    y = x @ w_star + rng.standard_normal(n) * np.sqrt(s2)
    delta = rng.standard_normal(D)
    return {"x": x, "y": y}, w_star + delta / np.linalg.norm(delta)


def linear_grad(w: np.ndarray):  # type: ignore[no-untyped-def]
    """The mean gradient of (x.w - y)^2 / 2 over a batch."""
    return lambda b: (b["x"] * (b["x"] @ w - b["y"])[:, None]).mean(axis=0)


def exact_finite(per_example: np.ndarray) -> float:
    """B_simple of a finite data set: (mean |g_i|^2 - |mean g|^2) / |mean g|^2."""
    g = per_example.mean(axis=0)
    return float(((per_example**2).sum(axis=1).mean() - g @ g) / (g @ g))


def test_linear_regression_large_data_set() -> None:
    """N = 8192, B = 256 in 8 micro-batches: the estimate is within 4% of the finite data set's
    exact value and of the population formula 1 + d (1 + s2 / |delta|^2)."""
    data, w = linear_problem(8192, s2=1.0)
    per_example = data["x"] * (data["x"] @ w - data["y"])[:, None]
    dl = DataLoader(data, batch_size=256, shuffle=True, seed=1)
    result = noise_scale(dl, linear_grad(w), micro=8, batches=320)
    assert result.value == pytest.approx(exact_finite(per_example), rel=0.04)
    assert result.value == pytest.approx(1 + D * (1 + 1.0), rel=0.04)
    low, high = result.interval
    assert low < result.value < high
    assert (result.batches, result.batch_size, result.micro, result.population) == (
        320, 256, 8, 8192)
    assert result.value == pytest.approx(result.trace / result.gradient_sq_norm)


@pytest.fixture(scope="module")
def half_of_n() -> tuple[DataLoader[dict[str, np.ndarray]], np.ndarray, float]:
    """N = 512 and B = 256 = N / 2, with B_simple ~ 100, a fifth of N."""
    data, w = linear_problem(512, s2=9.0)
    per_example = data["x"] * (data["x"] @ w - data["y"])[:, None]
    return DataLoader(data, batch_size=256, shuffle=True, seed=3), w, exact_finite(per_example)


def test_corrected_estimate_is_unbiased_when_batches_are_half_the_data(
        half_of_n: tuple[DataLoader[dict[str, np.ndarray]], np.ndarray, float]) -> None:
    """With the finite-population correction: within 4% of the exact value."""
    dl, w, exact = half_of_n
    result = noise_scale(dl, linear_grad(w), micro=8, batches=400)
    assert result.value == pytest.approx(exact, rel=0.04)
    assert result.interval[0] < exact < result.interval[1]


def test_uncorrected_estimate_is_biased_when_batches_are_half_the_data(
        half_of_n: tuple[DataLoader[dict[str, np.ndarray]], np.ndarray, float]) -> None:
    """Without it, the same batches give about B / (1 - B/N): 20% too high or more, and the
    exact value lies outside its 90% interval."""
    dl, w, exact = half_of_n
    result = noise_scale(dl, linear_grad(w), micro=8, batches=400, correction=False)
    assert result.population is None
    assert result.value > 1.15 * exact
    assert result.interval[0] > exact


def test_logistic_regression_at_zero() -> None:
    """Labels from a logistic model; at w = 0, B_simple = d / (4 |G|^2) - 1 (|G|^2 of the data
    set; and |G|^2 = |w*|^2 E[sigma'(x.w*)]^2 for the population)."""
    rng = np.random.default_rng(5)
    n = 20_000
    x = rng.standard_normal((n, D))
    w_star = rng.standard_normal(D)
    w_star *= 2.0 / np.linalg.norm(w_star)
    y = (rng.random(n) < 1 / (1 + np.exp(-x @ w_star))).astype(np.float64)
    per_example = (0.5 - y)[:, None] * x  # sigma(0) - y, times x
    g = per_example.mean(axis=0)
    z, weights = np.polynomial.hermite_e.hermegauss(80)  # E over z ~ N(0, |w*|^2)
    sig = 1 / (1 + np.exp(-2.0 * z))
    population_g2 = 4.0 * float((weights * sig * (1 - sig)).sum() / weights.sum()) ** 2
    dl = DataLoader({"x": x, "y": y}, batch_size=512, shuffle=True, seed=2)
    result = noise_scale(dl, lambda b: ((0.5 - b["y"])[:, None] * b["x"]).mean(axis=0),
                         micro=8, batches=160)
    assert result.value == pytest.approx(D / (4 * float(g @ g)) - 1, rel=0.05)
    assert result.value == pytest.approx(exact_finite(per_example), rel=0.05)
    assert result.value == pytest.approx(D / (4 * population_g2) - 1, rel=0.08)


@pytest.mark.timeout(120)
def test_same_estimate_whatever_the_workers() -> None:
    """0 workers, 2 threads, 2 processes: the same batches, so the same estimate."""
    data, w = linear_problem(2048, s2=1.0)
    values = []
    for workers, kind in ((0, "process"), (2, "thread"), (2, "process")):
        dl = DataLoader(data, batch_size=128, shuffle=True, seed=7, num_workers=workers,
                        worker_type=kind)  # type: ignore[arg-type]
        values.append(noise_scale(dl, linear_grad(w), micro=4, batches=24))
    assert values[0].value == values[1].value == values[2].value
    assert values[0].interval == values[1].interval == values[2].interval


def test_structured_batches_and_torch_gradients() -> None:
    """Tuples of arrays in, a list of torch tensors out (flattened, float64 on its device)."""
    torch = pytest.importorskip("torch")
    data, w = linear_problem(1024, s2=1.0)
    pairs = list(zip(data["x"].astype(np.float32), data["y"].astype(np.float32), strict=True))
    dl = DataLoader(pairs, batch_size=128, shuffle=True, seed=0, output="torch")
    wt = torch.tensor(w, dtype=torch.float32)

    def grad(batch):  # type: ignore[no-untyped-def]
        x, y = batch
        g = (x * (x @ wt - y)[:, None]).mean(dim=0)
        return [g[:4], {"rest": g[4:]}]

    as_numpy = DataLoader(data, batch_size=128, shuffle=True, seed=0)
    ours = noise_scale(dl, grad, micro=4, batches=16)
    reference = noise_scale(as_numpy, linear_grad(w), micro=4, batches=16)
    assert ours.value == pytest.approx(reference.value, rel=1e-4)


def test_online_micro_batches_match_noise_scale() -> None:
    """Feeding NoiseScale.update from a training loop gives noise_scale's answer."""
    data, w = linear_problem(1024, s2=1.0)
    dl = DataLoader(data, batch_size=64, shuffle=True, seed=0, drop_last=True)
    grad = linear_grad(w)
    online = NoiseScale(population=1024)
    for _ in range(2):
        for batch in dl:
            slices = [{k: v[i * 8:(i + 1) * 8] for k, v in batch.items()} for i in range(8)]
            online.update((grad(s) for s in slices), [8] * 8)
    measured = noise_scale(DataLoader(data, batch_size=64, shuffle=True, seed=0, drop_last=True),
                           grad, micro=8, batches=32)
    assert online.count == 32
    assert online.value == pytest.approx(measured.value, rel=1e-12)


def test_online_pairs_as_under_ddp() -> None:
    """4 simulated ranks of 64 items each, the all-reduced gradient of 256: update_pair with
    rank 0's local gradient covers the exact value with its interval; update_sq_norms with the
    rank-averaged |local|^2 is within 4% of it."""
    data, w = linear_problem(8192, s2=1.0)
    per_example = data["x"] * (data["x"] @ w - data["y"])[:, None]
    exact = exact_finite(per_example)
    one_rank, all_ranks = NoiseScale(population=8192), NoiseScale(population=8192)
    rng = np.random.default_rng(0)
    for _ in range(40):
        order = rng.permutation(8192)
        for start in range(0, 8192, 256):
            ranks = order[start:start + 256].reshape(4, 64)
            local = [per_example[r].mean(axis=0) for r in ranks]
            reduced = np.mean(local, axis=0)
            one_rank.update_pair(local[0], 64, reduced, 256)
            local_sq = float(np.mean([g @ g for g in local]))
            all_ranks.update_sq_norms(local_sq, 64, float(reduced @ reduced), 256)
    assert one_rank.interval[0] < exact < one_rank.interval[1]
    assert all_ranks.value == pytest.approx(exact, rel=0.04)
    assert all_ranks.result().batch_size == 256


def test_window_keeps_the_latest_updates() -> None:
    """window=3 averages the last three updates only."""
    online = NoiseScale(window=3)
    for _ in range(5):
        online.update_pair(np.ones(2), 1, np.ones(2) * 0.5, 4)
    assert online.count == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"micro": 1}, "micro must be an int >= 2"), ({"micro": 64}, "at most the batch size"),
     ({"batches": 0}, "batches must be positive"), ({"seconds": -1.0}, "seconds must be")],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    """Each bad argument is named, with its value."""
    dl = DataLoader(np.zeros((64, 2)), batch_size=32)
    with pytest.raises(ConfigError, match=message):
        noise_scale(dl, lambda b: b.mean(0), **kwargs)  # type: ignore[arg-type]


def test_unbatched_loader_is_refused() -> None:
    """A loader without a batch_size cannot be rebuilt at other sizes."""
    with pytest.raises(ConfigError, match="batch by batch_size"):
        noise_scale(DataLoader(np.zeros(8), batch_size=None), lambda b: b)


def test_unshuffled_loader_warns() -> None:
    """Fixed batches are not random draws: the estimate says so."""
    data, w = linear_problem(256, s2=1.0)
    with pytest.warns(UserWarning, match="does not shuffle"):
        noise_scale(DataLoader(data, batch_size=64), linear_grad(w), micro=4, batches=4)


def test_gradient_buffers_reused_between_calls() -> None:
    """grad() returning the same buffer, overwritten at each call (as p.grad is), gives the same
    estimate as fresh arrays: each gradient is read before the next call."""
    data, w = linear_problem(1024, s2=1.0)
    fresh = linear_grad(w)
    buffer = np.zeros(D)

    def reused(batch):  # type: ignore[no-untyped-def]
        buffer[...] = fresh(batch)
        return buffer

    def loader() -> DataLoader[dict[str, np.ndarray]]:
        return DataLoader(data, batch_size=64, shuffle=True, seed=4)

    assert noise_scale(loader(), reused, batches=8).value == noise_scale(
        loader(), fresh, batches=8).value
