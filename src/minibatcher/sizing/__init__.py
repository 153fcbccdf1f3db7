"""Which batch size? Measured: memory ceiling, throughput curve and gradient noise scale.

Above the loader (nothing in the core imports it), NumPy only; torch is used where the user's
model or device is torch's. See docs/sizing.md for the model behind each number::

    from minibatcher.sizing import noise_scale, throughput_curve, memory_ceiling, suggest_batch_size

    s = suggest_batch_size(dl, step, grad=grad, state=model_state)
    print(s)                     # the table: step time, items/s, memory, predicted steps/time
    s.batch_size, s.lr_factor(64)
"""

from __future__ import annotations

from .memory import MemoryCeiling, available_memory, memory_ceiling
from .noise import NoiseResult, NoiseScale, noise_scale
from .suggest import Suggestion, suggest_batch_size
from .throughput import ThroughputCurve, ThroughputPoint, throughput_curve

__all__ = [
    "MemoryCeiling",
    "NoiseResult",
    "NoiseScale",
    "Suggestion",
    "ThroughputCurve",
    "ThroughputPoint",
    "available_memory",
    "memory_ceiling",
    "noise_scale",
    "suggest_batch_size",
    "throughput_curve",
]
