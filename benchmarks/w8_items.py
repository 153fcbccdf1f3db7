"""CPU per item of W8's item functions, in one process (robust on a loaded machine, unlike the
loaders' rates): ours on PIL items, ours on array items, and the limit's (and torch's) item.

    cd benchmarks && PYTHONPATH=../src python w8_items.py   # 100 files, 12 interleaved rounds

Also checks that the three give the same crops, pixel for pixel.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from realistic_images import (
    W8_FULL,
    W8Dataset,
    random_resized_crop,
    random_resized_crop_array,
    w8_folder,
)

ROUNDS, EVERY = 12, 20


def main() -> None:
    """Print min and median CPU ms per item of each item function."""
    from minibatcher.sources import ImageFolder
    from minibatcher.transforms import item_rng

    root = w8_folder(W8_FULL)
    pil, arrays, limit = ImageFolder(root, decode_to="pil"), ImageFolder(root), W8Dataset(root)

    def ours(folder: Any, recipe: Callable[..., Any]) -> Callable[[int], Any]:
        return lambda i: recipe(folder.fetch_items(np.array([i]))[0], item_rng(0, 0, i))

    functions: dict[str, Callable[[int], Any]] = {
        'ours, ImageFolder(decode_to="pil") + PIL recipe': ours(pil, random_resized_crop),
        "ours, array items + Image.fromarray recipe": ours(arrays, random_resized_crop_array),
        "W8Dataset (the limit's and torch's item)": limit.__getitem__,
    }
    indices = list(range(0, W8_FULL, EVERY))
    for i in indices[:50]:
        crops = [function(i)[0] for function in functions.values()]
        assert all((crop == crops[0]).all() for crop in crops), f"crops differ at {i}"
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(ROUNDS):
        for name, function in functions.items():
            start = time.thread_time()
            for i in indices:
                function(i)
            times[name].append((time.thread_time() - start) / len(indices) * 1e3)
    print("| item function | min ms | median ms |\n|---|---|---|")
    for name, values in times.items():
        values.sort()
        print(f"| {name} | {values[0]:.2f} | {values[len(values) // 2]:.2f} |")
    print("(the same crops, pixel for pixel, on 50 files)")


if __name__ == "__main__":
    main()
