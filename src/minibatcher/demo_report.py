"""The demo's report: the table of runs, what it says in words, the curves, and the verdict on
the measured suggestion.

In: the :class:`~minibatcher.demo.RunResult` of each batch size (``demo.run_demo``) and, for
:func:`agreement`, the suggestion of ``demo.suggest``. Out: text for the terminal and, with
``--plot``, a PNG. Nothing here trains or measures; the training is ``demo.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .demo import BASE_LR, EXAMPLES_HINT, MAX_LR, RunResult


def format_table(results: Sequence[RunResult]) -> str:
    """The comparison table: one row per batch size."""
    head = (f"{'batch size':>10} {'lr':>6} {'steps':>7} {'wall s':>7} {'items/s':>10} "
            f"{'data wait':>9} {'val acc':>8}")
    rows = [
        f"{r.batch_size:>10} {r.lr:>6.3g} {r.steps:>7,} {r.seconds:>7.2f} "
        f"{r.items_per_s:>10,.0f} {_share(r.data_wait):>9} {r.accuracy:>8.1%}"
        for r in results
    ]
    return "\n".join([head, "-" * len(head), *rows])


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def explain(results: Sequence[RunResult]) -> str:
    """What the table says, in words computed from it."""
    if not results:
        return ""
    best = max(r.accuracy for r in results)
    good = [r for r in results if r.accuracy >= best - 0.01]
    pick = min(good, key=lambda r: r.seconds)
    lines = [
        f"Every run trained {len(results[0].train_loss)} epochs (each item seen as often) from "
        f"the same initial weights, with lr = min({BASE_LR} x batch size, {MAX_LR}). "
        "'data wait' is the share of the training time spent waiting for the next batch (the "
        "loader's dl.stats).",
    ]
    if len(results) > 1:
        slowest = min(results, key=lambda r: r.items_per_s)
        fastest = max(results, key=lambda r: r.items_per_s)
        lines.append(
            f"Batch size {slowest.batch_size} is the slowest ({slowest.items_per_s:,.0f} items/s):"
            f" {slowest.steps:,} steps, each paying a fixed cost (loading, Python, kernel calls) "
            f"for few items. Batch size {fastest.batch_size} is the fastest "
            f"({fastest.items_per_s:,.0f} items/s, "
            f"{fastest.items_per_s / max(slowest.items_per_s, 1):.0f}x) with "
            f"{fastest.steps:,} steps."
        )
        if fastest.accuracy < best - 0.01:
            lines.append(
                f"But {fastest.steps:,} steps are too few to learn as much: "
                f"{fastest.accuracy:.1%} against {best:.1%}. Per epoch, large batches average "
                "away the gradient noise but take fewer steps."
            )
    lines.append(
        f"Answer: batch size {pick.batch_size} reaches {pick.accuracy:.1%} (within 1 point of "
        f"the best, {best:.1%}) in the least time, {pick.seconds:.2f} s. Mini-batches of tens to "
        "a few hundred items usually buy most of the accuracy of small batches at nearly the "
        "speed of large ones."
    )
    return "\n".join(lines)


def require_matplotlib() -> Any:
    """``matplotlib.pyplot`` (drawing to files), or an ImportError naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(f"--plot draws with matplotlib, which is not installed: {EXAMPLES_HINT}"
                          " (or pip install matplotlib)") from e
    return plt


def save_plot(results: Sequence[RunResult], path: str) -> None:
    """Training loss and validation accuracy per epoch, one curve per batch size."""
    plt = require_matplotlib()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        epochs = range(1, len(r.train_loss) + 1)
        ax_loss.plot(epochs, r.train_loss, marker=".", label=f"batch size {r.batch_size}")
        ax_acc.plot(epochs, r.val_accuracy, marker=".", label=f"batch size {r.batch_size}")
    ax_loss.set(xlabel="epoch", ylabel="mean training loss", yscale="log",
                title="Training loss (digits, 1-hidden-layer MLP)")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def agreement(suggestion: Any, results: Sequence[RunResult]) -> str:
    """Whether the trained table agrees with the suggestion: is the trained size nearest to it
    (on a log scale) the one :func:`explain` picks?"""
    if not results:
        return ""
    best = max(r.accuracy for r in results)
    pick = min((r for r in results if r.accuracy >= best - 0.01), key=lambda r: r.seconds)
    target = suggestion.batch_size
    nearest = min(results, key=lambda r: abs(np.log(r.batch_size / target)))
    if nearest.batch_size == pick.batch_size:
        return (f"The measurement agrees: of the batch sizes trained, {pick.batch_size} is the "
                f"nearest to the suggested {target} and the one that reached within 1 point of "
                "the best accuracy in the least time.")
    return (f"The measurement does not agree: the suggestion is {target} (nearest trained size "
            f"{nearest.batch_size}), but the table's answer is {pick.batch_size}. The suggestion "
            "models the time to a target loss at the initial weights; the table compares "
            "accuracy after a fixed number of epochs, with a learning-rate rule that may not "
            "suit every size.")
