"""Time to the first batch with process workers while another thread is alive (a notebook
kernel's, tqdm's): the default start method (fork, as torch) against forkserver, the method
the loader used to switch to. Run: ``python benchmarks/start_method.py``."""

from __future__ import annotations

import threading
import time

import numpy as np

from minibatcher import DataLoader


def first_batch_ms(data: np.ndarray, method: str | None, repeats: int = 3) -> float:
    """Best of ``repeats``: milliseconds from building the loader to holding its first batch."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        it = iter(DataLoader(data, batch_size=64, num_workers=2, mp_context=method))
        next(it)
        times.append(time.perf_counter() - start)
        del it
    return min(times) * 1e3


def main() -> None:
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()  # a live thread
    data = np.zeros((20_000, 256), dtype=np.float32)
    default = first_batch_ms(data, None)
    forkserver = first_batch_ms(data, "forkserver")
    print(f"default (fork): {default:.0f} ms to the first batch")
    print(f"forkserver:     {forkserver:.0f} ms ({forkserver / default:.0f}x later)")


if __name__ == "__main__":
    main()
