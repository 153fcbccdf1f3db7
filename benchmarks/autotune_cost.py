"""What ``num_workers="auto"`` costs and how consistently it chooses, on stand-ins of W8-W10.

For each workload, rounds alternate the fixed candidates (``num_workers=0``, 2 threads, 2
processes) and ``"auto"``, each a fresh loader timed over two epochs (the first pays start-up,
and for ``"auto"`` the trials). Reported per workload:

- the rate of each fixed candidate (median over rounds of its second epoch) and which is best;
- ``"auto"``'s choice in every round, and the chosen candidate's rate against the best one's
  (the target: within 10%, every round);
- the cost of the trials: ``"auto"``'s first epoch against the best fixed candidate's first epoch
  (median over rounds), as a share of that epoch (the target: at most 10%).

Workloads (``../shared/BENCHMARKS.md``, built here under a temporary directory):
W8 JPEG folder (2,000 images 500x375, PIL decode + random-resized-crop to 224, batch 32), W9
token windows from a uint16 memmap (1,025-token windows, batch 32), W10 100,000 variable-length
int32 arrays padded per batch (batch 64). ``--quick`` shrinks them.

    PYTHONPATH=src python benchmarks/autotune_cost.py [--rounds 5] [--quick] [--only W8]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from minibatcher import DataLoader
from minibatcher.collation import pad_collate

CONFIGS: dict[str, dict[str, Any]] = {
    "0": {"num_workers": 0},
    "threads2": {"num_workers": 2, "worker_type": "thread"},
    "processes2": {"num_workers": 2, "worker_type": "process"},
}


class JpegFolder:
    """W8's item: read, decode, random-resized-crop (rng seeded by the index), resize to 224."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        from PIL import Image

        with Image.open(self.files[i]) as img:
            img = img.convert("RGB")
            w, h = img.size
            rng = np.random.default_rng(i)
            area = w * h * rng.uniform(0.08, 1.0)
            ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            cw = int(min(w, round(np.sqrt(area * ratio))))
            ch = int(min(h, round(np.sqrt(area / ratio))))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            out = img.resize((224, 224), Image.BILINEAR, box=(x, y, x + cw, y + ch))
        return np.asarray(out).transpose(2, 0, 1), i % 10


class TokenWindows:
    """W9's item: the 1,025-token window at a fixed random offset, as (x, y) int64."""

    def __init__(self, path: Path, tokens: int, n: int) -> None:
        self.data = np.memmap(path, dtype=np.uint16, mode="r", shape=(tokens,))
        self.offsets = np.random.default_rng(0).integers(0, tokens - 1025, size=n)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        w = self.data[self.offsets[i] : self.offsets[i] + 1025].astype(np.int64)
        return w[:-1], w[1:]


def make_w8(root: Path, n: int) -> JpegFolder:
    from PIL import Image

    folder = root / "w8"
    files = [folder / f"c{i % 10}" / f"{i}.jpg" for i in range(n)]
    if not all(f.exists() for f in files):
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:375, 0:500]
        for i, f in enumerate(files):
            f.parent.mkdir(parents=True, exist_ok=True)
            base = (np.sin(xx / (20 + i % 30)) + np.cos(yy / (15 + i % 17))) * 60 + 128
            pixels = base[..., None] + rng.normal(0, 25, (375, 500, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(f, quality=90)
    return JpegFolder(files)


def make_w9(root: Path, tokens: int, n: int) -> TokenWindows:
    path = root / f"w9-{tokens}.bin"
    if not path.exists():
        rng = np.random.default_rng(0)
        mm = np.memmap(path, dtype=np.uint16, mode="w+", shape=(tokens,))
        step = 10_000_000
        for s in range(0, tokens, step):
            mm[s : s + step] = rng.integers(0, 50257, size=min(step, tokens - s))
        mm.flush()
        del mm
    return TokenWindows(path, tokens, n)


def make_w10(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    lengths = np.clip(np.round(rng.lognormal(np.log(100), 1.1, n)), 8, 2048).astype(int)
    return [rng.integers(1, 50257, size=k, dtype=np.int32) for k in lengths]


def workloads(root: Path, quick: bool) -> dict[str, Callable[[dict[str, Any]], DataLoader[Any]]]:
    w8 = make_w8(root, 400 if quick else 2000)
    w9 = make_w9(root, 20_000_000 if quick else 100_000_000, 8_192 if quick else 32_768)
    w10 = make_w10(20_000 if quick else 100_000)
    return {
        "W8": lambda kw: DataLoader(w8, batch_size=32, shuffle=True, seed=0, **kw),
        "W9": lambda kw: DataLoader(w9, batch_size=32, shuffle=True, seed=0, **kw),
        "W10": lambda kw: DataLoader(w10, batch_size=64, shuffle=True, seed=0,
                                     collate_fn=pad_collate, **kw),
    }


def epochs(loader: DataLoader[Any], count: int = 2) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        for _batch in loader:
            pass
        times.append(time.perf_counter() - start)
    return times


def chosen_name(report: str) -> str:
    head = report.split(" (", 1)[0].removeprefix("chose ")
    for name, kw in CONFIGS.items():
        kind = "threads" if kw.get("worker_type") == "thread" else "processes"
        text = "num_workers=0" if kw["num_workers"] == 0 else f"num_workers=2 ({kind}"
        if report.removeprefix("chose ").startswith(text):
            return name
    return head


def measure(name: str, make: Callable[[dict[str, Any]], DataLoader[Any]], rounds: int) -> None:
    first: dict[str, list[float]] = {k: [] for k in (*CONFIGS, "auto")}
    steady: dict[str, list[float]] = {k: [] for k in (*CONFIGS, "auto")}
    choices: list[str] = []
    tuning: list[str] = []
    for _ in range(rounds):
        for key in (*CONFIGS, "auto"):
            kw = CONFIGS.get(key, {"num_workers": "auto"})
            loader = make(kw)
            t0, t1 = epochs(loader)
            first[key].append(t0)
            steady[key].append(t1)
            if key == "auto":
                report = loader.stats.autotune or ""
                choices.append(chosen_name(report))
                tuning.append(report.split("measured on the epoch's first ", 1)[-1].split(":")[0])
            del loader
            gc.collect()
    batches = len(make({"num_workers": 0}))
    med = {k: statistics.median(v) for k, v in steady.items()}
    med_first = {k: statistics.median(v) for k, v in first.items()}
    best = min(CONFIGS, key=med.__getitem__)
    best_first = min(CONFIGS, key=med_first.__getitem__)
    print(f"\n{name}: {batches} batches per epoch, {rounds} rounds")
    for key in (*CONFIGS, "auto"):
        print(f"  {key:>10}: epoch 1 {statistics.median(first[key]):7.3f} s, later epoch "
              f"{med[key]:7.3f} s ({med[best] / med[key]:5.2f}x the best)  "
              f"[{', '.join(f'{t:.3f}' for t in steady[key])}]")
    ratios = [med[best] / med[c] for c in choices]
    print(f"  auto chose: {choices}; chosen rate / best rate: "
          f"{', '.join(f'{r:.2f}' for r in ratios)} (best: {best})")
    costs = [(t - med_first[best_first]) / med_first[best_first] for t in first["auto"]]
    print(f"  auto first epoch vs best fixed first epoch ({best_first}): median cost "
          f"{statistics.median(costs) * 100:+.1f}% of an epoch "
          f"[{', '.join(f'{c * 100:+.0f}%' for c in costs)}]")
    print(f"  tuning: {tuning}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=None)
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "mb-autotune"))
    args = parser.parse_args()
    root = Path(args.data)
    root.mkdir(parents=True, exist_ok=True)
    print(f"python {sys.version.split()[0]}, {len(os.sched_getaffinity(0))} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    for name, make in workloads(root, args.quick).items():
        if args.only is None or name in args.only.split(","):
            measure(name, make, args.rounds)


if __name__ == "__main__":
    main()
