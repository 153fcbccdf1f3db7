"""Host-to-accelerator feeding: minibatcher's device stage against PyTorch's pin_memory path.

Workload: W5's images (2,048 uint8 arrays of shape (3, 224, 224), batch_size=32) held as one NumPy
array, consumed by a training step that runs a fixed amount of GPU work per batch. Each
configuration runs a warm-up epoch then the median of 3 timed epochs, in one process, side by side:

- torch: ``DataLoader(pin_memory=True)`` + ``.to("cuda", non_blocking=True)`` in the loop
- torch, pageable: ``DataLoader()`` + ``.to("cuda")``
- minibatcher ``device="cuda"`` (pageable) and ``device="cuda", pin_memory=True`` (copies on a
  side stream one batch ahead)
- the limit: the same GPU steps on a batch already on the device (no transfer at all)

Run on a CUDA machine: ``python benchmarks/device.py [--step-ms 2]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--step-ms", type=float, default=2.0, help="GPU work per batch")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    import torch
    from torch.utils.data import DataLoader as TorchLoader

    from minibatcher import DataLoader

    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/device.py needs a CUDA device")
    images = np.random.default_rng(0).integers(0, 255, (args.items, 3, 224, 224), dtype=np.uint8)
    weight = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    matmuls = _calibrate(weight, args.step_ms)

    def step(batch: Any) -> None:
        x = batch.float().mean()
        y = weight
        for _ in range(matmuls):
            y = y @ weight
        del x, y  # no .item(): the step stays asynchronous, as in training

    class TorchImages(torch.utils.data.Dataset):  # type: ignore[misc]
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int) -> Any:
            return torch.from_numpy(images[i])

    bs = args.batch_size
    on_device = torch.from_numpy(images[:bs]).cuda()
    configs: dict[str, Callable[[], Iterable[Any]]] = {
        "limit (batch already on GPU)": lambda: (on_device for _ in range(len(images) // bs)),
        "torch pin_memory + non_blocking": lambda: (
            b.to("cuda", non_blocking=True)
            for b in TorchLoader(TorchImages(), batch_size=bs, pin_memory=True)
        ),
        "torch pageable .to(cuda)": lambda: (
            b.to("cuda") for b in TorchLoader(TorchImages(), batch_size=bs)
        ),
        "minibatcher device=cuda": lambda: DataLoader(images, bs, device="cuda"),
        "minibatcher device=cuda pin_memory": lambda: DataLoader(
            images, bs, device="cuda", pin_memory=True
        ),
    }
    megabytes = images.nbytes / 1e6
    rows = []
    for name, make in configs.items():
        times = []
        for epoch in range(args.epochs + 1):
            torch.cuda.synchronize()
            start = time.perf_counter()
            for batch in make():
                step(batch)
            torch.cuda.synchronize()
            if epoch:
                times.append(time.perf_counter() - start)
        rows.append((name, statistics.median(times)))
    torch_time = rows[1][1]
    print(f"\n{torch.cuda.get_device_name()}, {len(images)} images, batch {bs}, "
          f"GPU step {args.step_ms} ms x {len(images) // bs} batches\n")
    print("| configuration | epoch s | items/s | MB/s | vs torch pinned |")
    print("|---|---|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {len(images) / seconds:,.0f} | "
              f"{megabytes / seconds:,.0f} | {torch_time / seconds:.2f}x |")


def _calibrate(weight: Any, step_ms: float) -> int:
    """How many 4096^2 bf16 matmuls take ``step_ms`` on this GPU."""
    import torch

    y = weight @ weight
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(50):
        y = y @ weight
    torch.cuda.synchronize()
    per_matmul_ms = (time.perf_counter() - start) * 1000 / 50
    return max(1, round(step_ms / per_matmul_ms))


if __name__ == "__main__":
    main()
