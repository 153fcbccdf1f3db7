"""``suggest_batch_size``: the batch size that reaches a target loss soonest, within memory.

With the gradient noise scale B_noise (``noise.py``, B_simple measured), training needs
S = S_min (1 + B_noise / B) steps (McCandlish et al. 2018) and a step takes
t(B) = alpha + beta B (``throughput.py``), so the time to a target loss is proportional to
(1 + B_noise / B)(alpha + beta B), smallest at B* = sqrt(B_noise alpha / beta); capped at the
memory ceiling (``memory.py``). Pollux / AdaptDL's "goodput" optimises the same product. Without
``grad`` there is no noise scale, and the answer is the measured size with the most items per
second, labelled "throughput only": it cannot say whether a bigger batch still helps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import textwrap
from collections.abc import Callable, Sequence
from typing import Any, Literal

from ..errors import ConfigError
from ..loader import DataLoader
from . import _loaders
from ._state import preserved
from .memory import MemoryCeiling, memory_ceiling
from .noise import NoiseResult, noise_scale
from .throughput import ThroughputCurve, powers_of_two, throughput_curve

Rule = Literal["sgd", "linear", "sqrt"]
NOISE_SHARE = 0.5
THROUGHPUT_SHARE = 0.4


@dataclasses.dataclass(frozen=True)
class Suggestion:
    """The suggested batch size and the three measurements behind it."""

    batch_size: int
    noise: NoiseResult | None
    """The measured noise scale (None without ``grad``)."""
    ceiling: MemoryCeiling
    throughput: ThroughputCurve
    basis: str
    """How ``batch_size`` was chosen, in words."""
    optimum: float
    """B* = sqrt(B_noise alpha / beta) before the cap (nan without a noise scale)."""

    def lr_factor(self, from_batch_size: int, rule: Rule = "sgd") -> float:
        """The learning-rate multiplier for moving from ``from_batch_size`` to
        :attr:`batch_size`.

        ``"sgd"``: (1 + B_noise/B_from) / (1 + B_noise/B_to), the optimal SGD step's ratio in
        McCandlish et al.'s model (needs the noise scale); ``"linear"``: B_to / B_from (Goyal et
        al. 2017); ``"sqrt"``: sqrt(B_to / B_from) (often used with Adam).
        """
        if isinstance(from_batch_size, bool) or not isinstance(from_batch_size, int) or (
                from_batch_size < 1):
            raise ConfigError(f"from_batch_size must be a positive int, got {from_batch_size!r}")
        ratio = self.batch_size / from_batch_size
        if rule == "linear":
            return ratio
        if rule == "sqrt":
            return math.sqrt(ratio)
        if rule != "sgd":
            raise ConfigError(f"rule must be 'sgd', 'linear' or 'sqrt', got {rule!r}")
        n = self.noise.value if self.noise is not None else math.nan
        if not math.isfinite(n) or n < 0:
            raise ValueError("rule='sgd' needs a finite noise scale: pass grad= to "
                             "suggest_batch_size, or use rule='linear' or 'sqrt'")
        return (1 + n / from_batch_size) / (1 + n / self.batch_size)

    def relative_steps(self, batch_size: float) -> float:
        """Predicted steps to a target at ``batch_size``, relative to S_min: 1 + B_noise / B."""
        n = self.noise.value if self.noise is not None else math.nan
        return 1 + n / batch_size

    def _rows(self) -> list[tuple[int, float, bool]]:
        """(batch size, seconds per step, measured?) for the table, the suggestion included."""
        rows = [(p.batch_size, p.seconds, True) for p in self.throughput.points]
        if all(r[0] != self.batch_size for r in rows):
            rows.append((self.batch_size, self.throughput.seconds(self.batch_size), False))
        return sorted(rows)

    def __str__(self) -> str:
        rows = self._rows()
        noise = self.noise.value if self.noise is not None else math.nan
        known = math.isfinite(noise)
        fitted = self.throughput.seconds
        times = {b: self.relative_steps(b) * fitted(b) for b, _, _ in rows} if known else {}
        best = min(times, key=times.__getitem__) if times else None
        head = (f"{'batch size':>12} {'ms/step':>9} {'items/s':>11} {'peak MiB':>9} "
                f"{'steps (rel)':>11} {'time (rel)':>10}")
        lines = [f"Suggested batch size: {self.batch_size:,} ({self.basis})", "", head,
                 "-" * len(head)]
        for b, t, measured in rows:
            mark = ("* " if b == self.batch_size else "  ") + (" " if measured else "~")
            steps = f"{self.relative_steps(b) / self.relative_steps(best):>11.2f}" if (
                best is not None) else f"{'-':>11}"
            rel = f"{times[b] / times[best]:>10.2f}" if best is not None else f"{'-':>10}"
            lines.append(f"{b:>9,}{mark} {t * 1e3:>9.3f} {b / t:>11,.0f} "
                         f"{self.ceiling.peak(b) / 2**20:>9.1f} {steps} {rel}")
        lines += [
            "", "* suggested; ~ predicted, not measured. Peak memory: the fit (fixed + per item) "
            "of the measured peaks. Steps: 1 + B_noise/B; time: steps x the fitted step time "
            "alpha + beta B; both relative to the row with the least time.",
            f"Step time: {self.throughput.alpha * 1e3:.4g} ms + "
            f"{self.throughput.beta * 1e6:.4g} us per item; {self.ceiling}.",
        ]
        if self.noise is not None:
            lines.append(f"Noise scale: {self.noise}.")
            lines.append(
                f"Measured on {self.throughput.device} with the parameters fixed at their current "
                "values. The noise scale grows as the loss falls: measure again later in "
                "training. B_simple approximates, but is not, the critical batch size; the "
                "steps assume S = S_min (1 + B_noise/B) with a learning rate tuned per size "
                "(see lr_factor).")
        else:
            lines.append("No noise scale (no grad=): the steps a batch size needs are unknown, "
                         "so only throughput was compared.")
        return "\n".join(textwrap.fill(line, 100, break_on_hyphens=False)
                         if len(line) > 100 and not line.startswith(" ") else line
                         for line in lines)


def optimal_batch_size(noise: float, alpha: float, beta: float) -> float:
    """B* = sqrt(noise alpha / beta), minimising (1 + noise/B)(alpha + beta B)."""
    if beta <= 0:
        return math.inf  # bigger batches cost no measurable extra time
    return math.sqrt(max(noise, 0.0) * max(alpha, 0.0) / beta)


def suggest_batch_size(
    dl: DataLoader[Any],
    step: Callable[[Any], Any],
    *,
    grad: Callable[[Any], Any] | None = None,
    state: Any = None,
    device: Any = None,
    seconds: float = 30.0,
    micro: int = 8,
    sizes: Sequence[int] | None = None,
    budget: float | None = None,
    progress: bool = False,
) -> Suggestion:
    """Measure the memory ceiling, the throughput curve and (with ``grad``) the noise scale,
    and suggest B* = sqrt(B_noise alpha / beta) capped at the ceiling.

    Args:
        dl: the training loader (copies of it are measured; it is not iterated).
        step: ``step(batch)``: one optimiser step.
        grad: ``grad(batch)``: the mean loss gradient over ``batch`` at fixed parameters (see
            :func:`~minibatcher.sizing.noise_scale`); None: a throughput-only answer.
        state: what ``step`` mutates: restored, so measuring never trains the model.
        device: where ``step`` runs (default: the loader's ``device`` or the model's).
        seconds: the time budget of the throughput and noise measurements (roughly).
        micro: micro-batches per batch for the noise scale.
        sizes: the batch sizes timed (default: powers of two from 8 to the ceiling).
        budget: memory bytes a step may use (default: a fraction of what is available).
        progress: draw progress bars (tqdm, when installed).
    """
    dl = _loaders.check_loader(dl)
    if isinstance(seconds, bool) or not seconds > 0:
        raise ConfigError(f"seconds must be a positive number, got {seconds!r}")
    ceiling = memory_ceiling(dl, step, state=state, device=device, budget=budget,
                             progress=progress)
    if sizes is None:
        sizes = powers_of_two(ceiling.batch_size)
    sizes = [s for s in sizes if s <= ceiling.batch_size] or [ceiling.batch_size]
    curve = throughput_curve(dl, step, sizes=sizes, state=state, device=device,
                             seconds=THROUGHPUT_SHARE * seconds, progress=progress)
    noise = None
    if grad is not None:
        noise = _measure_noise(dl, grad, state, micro, NOISE_SHARE * seconds, progress)
    if noise is not None and math.isfinite(noise.value):
        optimum = optimal_batch_size(noise.value, curve.alpha, curve.beta)
        choice = int(min(max(1, round(optimum)), ceiling.batch_size)) if math.isfinite(
            optimum) else ceiling.batch_size
        basis = (f"noise scale and throughput: B* = sqrt(B_noise alpha / beta) = "
                 f"{optimum:,.0f}" + (f", capped at the memory ceiling {ceiling.batch_size:,}"
                                      if choice < optimum - 0.5 else ""))
    else:
        best = max(curve.points, key=lambda p: p.items_per_s)
        optimum, choice = math.nan, best.batch_size
        why = "no grad=" if noise is None else "the noise scale was not measurable"
        basis = (f"throughput only ({why}): the measured size with the most items/s; whether a "
                 "bigger batch still helps training is not known")
    return Suggestion(choice, noise, ceiling, curve, basis, optimum)


def _measure_noise(dl: DataLoader[Any], grad: Callable[[Any], Any], state: Any, micro: int,
                   seconds: float, progress: bool) -> NoiseResult:
    """The noise scale on ``dl``'s batches (on a copy with bigger batches when ``dl``'s are
    too small to cut into ``micro`` slices of at least 2 items)."""
    size = dl.options.batch_size or 1
    n = _loaders.population(dl)
    with contextlib.ExitStack() as stack:
        if size < 2 * micro:
            size = 8 * micro if n is None else min(n, 8 * micro)
            dl = stack.enter_context(_loaders.loader_like(dl, size))
        stack.enter_context(preserved(state))
        return noise_scale(dl, grad, micro=min(micro, size), seconds=seconds, progress=progress)
