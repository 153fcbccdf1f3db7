"""``minibatcher demo``: how many items per mini-batch? Train the same model and see.

A one-hidden-layer MLP written in NumPy (no framework needed) is trained with mini-batch SGD on
scikit-learn's bundled handwritten digits (1,797 8x8 images, nothing downloaded), fed by a
shuffled, seeded :class:`~minibatcher.DataLoader`; an unshuffled loader reads the validation
split. The same model, from the same initial weights, for the same number of epochs, is trained
once per batch size, and a table compares steps, wall time, items/s and validation accuracy.

Learning rates follow the linear scaling rule (Goyal et al., 2017): ``lr = base_lr * batch_size``,
capped at ``max_lr`` where bigger steps would diverge. Each run then moves the weights about as
far per epoch, so the comparison is about the batch size, not a badly tuned learning rate.

scikit-learn, tqdm and matplotlib come with ``pip install 'minibatcher[examples]'``; tqdm and
matplotlib are optional (plain prints without tqdm; ``--plot`` names the extra it needs).

This module trains and measures; the table, its explanation, the curves and the verdict on the
measured suggestion are ``demo_report.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from .loader import DataLoader

EXAMPLES_HINT = "pip install 'minibatcher[examples]'"
DEFAULT_BATCH_SIZES: tuple[int | None, ...] = (1, 16, 128, None)  # None: the whole training set
BASE_LR = 0.01
MAX_LR = 0.8


@dataclasses.dataclass
class RunResult:
    """One training run: its batch size and what it cost and reached."""

    batch_size: int
    lr: float
    steps: int
    seconds: float
    items: int
    accuracy: float
    data_wait: float | None
    """Share of the training loop's time spent waiting for batches (``dl.stats``)."""
    train_loss: list[float]
    """Mean training loss of each epoch."""
    val_accuracy: list[float]
    """Validation accuracy after each epoch."""

    @property
    def items_per_s(self) -> float:
        """Training items per second of wall time (loading and the SGD steps)."""
        return self.items / self.seconds if self.seconds > 0 else 0.0


def learning_rate(batch_size: int, base_lr: float = BASE_LR, max_lr: float = MAX_LR) -> float:
    """The linear scaling rule, capped: ``min(base_lr * batch_size, max_lr)``."""
    return min(base_lr * batch_size, max_lr)


def load_digits_split(seed: int, val_fraction: float = 0.2) -> tuple[np.ndarray, ...]:
    """Digits as float32 in [0, 1]: ``(x_train, y_train, x_val, y_val)``, split by ``seed``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError(
            f"the demo trains on scikit-learn's bundled digits: {EXAMPLES_HINT}"
        ) from e
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * (1 - val_fraction))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


class NumpyMLP:
    """``64 -> hidden (ReLU) -> 10`` with softmax cross-entropy; one SGD step per batch."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        self.p = {k: v.copy() for k, v in params.items()}

    @staticmethod
    def init(n_in: int, hidden: int, n_out: int, seed: int) -> dict[str, np.ndarray]:
        """He-initialised weights, zero biases, from ``seed`` (shared by every run)."""
        rng = np.random.default_rng(seed)
        return {
            "w1": (rng.standard_normal((n_in, hidden)) * np.sqrt(2 / n_in)).astype(np.float32),
            "b1": np.zeros(hidden, np.float32),
            "w2": (rng.standard_normal((hidden, n_out)) * np.sqrt(1 / hidden)).astype(np.float32),
            "b2": np.zeros(n_out, np.float32),
        }

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Class scores for a batch of inputs."""
        p = self.p
        return np.maximum(x @ p["w1"] + p["b1"], 0) @ p["w2"] + p["b2"]

    def gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """The batch's mean loss and its gradient with respect to each parameter."""
        p = self.p
        hidden = np.maximum(x @ p["w1"] + p["b1"], 0)
        z = hidden @ p["w2"] + p["b2"]
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        probs = e / e.sum(axis=1, keepdims=True)
        rows = np.arange(len(y))
        loss = float(-np.log(probs[rows, y] + 1e-12).mean())
        probs[rows, y] -= 1
        probs /= len(y)  # d loss / d logits
        d_hidden = (probs @ p["w2"].T) * (hidden > 0)
        return loss, {"w2": hidden.T @ probs, "b2": probs.sum(axis=0),
                      "w1": x.T @ d_hidden, "b1": d_hidden.sum(axis=0)}

    def step(self, x: np.ndarray, y: np.ndarray, lr: float) -> float:
        """One SGD step on the batch; returns its mean loss."""
        loss, grads = self.gradients(x, y)
        for name, g in grads.items():
            self.p[name] -= lr * g
        return loss


class TorchMLP:
    """The same model and the same SGD, in torch (``--torch``), from the same initial weights."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        try:
            import torch
        except ImportError as e:
            raise ImportError("--torch needs torch: pip install 'minibatcher[torch]'") from e
        self.torch: Any = torch
        hidden, n_out = params["w2"].shape
        self.net: Any = torch.nn.Sequential(
            torch.nn.Linear(params["w1"].shape[0], hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, n_out),
        )
        layers: list[tuple[Any, str, str]] = [(self.net[0], "w1", "b1"), (self.net[2], "w2", "b2")]
        with torch.no_grad():
            for layer, w, b in layers:
                layer.weight.copy_(torch.from_numpy(params[w].T.copy()))
                layer.bias.copy_(torch.from_numpy(params[b]))
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.1)
        # torch's first backward pass costs seconds of one-off set-up: pay it before the clock
        # starts (lr=0 leaves the weights as they are).
        self.step(torch.zeros(2, params["w1"].shape[0]), torch.zeros(2, dtype=torch.int64), 0.0)

    def logits(self, x: Any) -> np.ndarray:
        """Class scores for a batch of inputs."""
        with self.torch.no_grad():
            return self.net(self.torch.as_tensor(x)).numpy()

    def step(self, x: Any, y: Any, lr: float) -> float:
        """One SGD step on the batch; returns its mean loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad()
        loss: Any = self.torch.nn.functional.cross_entropy(self.net(x), y)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def _bar(total: int, description: str, progress: bool) -> Any:
    """A tqdm bar, or None (no tqdm, or progress off): runs then print one line each."""
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description, unit="step", leave=True)


def train(
    batch_size: int | None,
    data: Sequence[np.ndarray],
    params: dict[str, np.ndarray],
    *,
    epochs: int,
    seed: int,
    backend: str = "numpy",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train one model with ``batch_size`` (None: the whole training set) for ``epochs``."""
    x_train, y_train, x_val, y_val = data
    size = len(x_train) if batch_size is None else batch_size
    lr = learning_rate(size)
    output: Literal["numpy", "torch"] = "torch" if backend == "torch" else "numpy"
    model: NumpyMLP | TorchMLP = TorchMLP(params) if backend == "torch" else NumpyMLP(params)
    train_dl: DataLoader[dict[str, Any]] = DataLoader(
        {"x": x_train, "y": y_train}, batch_size=size, shuffle=True, seed=seed, output=output
    )
    val_dl: DataLoader[dict[str, Any]] = DataLoader({"x": x_val, "y": y_val}, batch_size=512)
    steps_per_epoch = len(train_dl)
    bar = _bar(epochs * steps_per_epoch, f"batch size {size:>5}", progress)
    losses: list[float] = []
    accuracies: list[float] = []
    seconds = waited = 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        total = 0.0
        for batch in train_dl:
            total += model.step(batch["x"], batch["y"], lr)
        seconds += time.perf_counter() - start
        waited += train_dl.stats.waiting
        losses.append(total / steps_per_epoch)
        correct = sum(int((model.logits(b["x"]).argmax(1) == b["y"]).sum()) for b in val_dl)
        accuracies.append(correct / len(y_val))
        if bar is not None:
            bar.update(steps_per_epoch)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", val_acc=f"{accuracies[-1]:.1%}")
    if bar is not None:
        bar.close()
    else:
        log(f"batch size {size:>5}: {epochs} epochs, loss {losses[-1]:.3f}, "
            f"validation accuracy {accuracies[-1]:.1%}")
    return RunResult(size, lr, epochs * steps_per_epoch, seconds, epochs * len(x_train),
                     accuracies[-1], waited / seconds if seconds > 0 else None, losses,
                     accuracies)


def run_demo(
    batch_sizes: Sequence[int | None] = DEFAULT_BATCH_SIZES,
    *,
    epochs: int = 20,
    hidden: int = 64,
    seed: int = 0,
    backend: str = "numpy",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[RunResult]:
    """Train one run per batch size from the same initial weights; return their results."""
    data = load_digits_split(seed)
    params = NumpyMLP.init(data[0].shape[1], hidden, 10, seed)
    with _one_blas_thread():
        return [
            train(size, data, params, epochs=epochs, seed=seed, backend=backend,
                  progress=progress, log=log)
            for size in batch_sizes
        ]


def _one_blas_thread() -> Any:
    """Run NumPy's BLAS on one thread: matrices this small gain nothing from more, and on a busy
    machine BLAS threads that wait for each other make the timings meaningless.
    (threadpoolctl comes with scikit-learn; without it, nothing changes.)"""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


# -- the measured answer: minibatcher.sizing on the same model -----------------------------
SUGGEST_BATCH_SIZE = 64
"""The training loader's batch size the noise scale is measured with (8 micro-batches of 8)."""


def suggest(
    *, hidden: int = 64, seed: int = 0, seconds: float = 5.0, progress: bool = True,
    batch_size: int = SUGGEST_BATCH_SIZE,
) -> Any:
    """:func:`minibatcher.sizing.suggest_batch_size` on the demo's model at its initial weights
    (the same split, weights, loader and learning-rate rule as :func:`run_demo`)."""
    from .sizing import suggest_batch_size

    x_train, y_train, _, _ = load_digits_split(seed)
    model = NumpyMLP(NumpyMLP.init(x_train.shape[1], hidden, 10, seed))
    dl: DataLoader[dict[str, Any]] = DataLoader(
        {"x": x_train, "y": y_train}, batch_size=batch_size, shuffle=True, seed=seed)

    def step(batch: dict[str, np.ndarray]) -> float:
        return model.step(batch["x"], batch["y"], learning_rate(len(batch["y"])))

    def grad(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return model.gradients(batch["x"], batch["y"])[1]

    with _one_blas_thread():
        return suggest_batch_size(dl, step, grad=grad, state=model.p, seconds=seconds,
                                  progress=progress)
