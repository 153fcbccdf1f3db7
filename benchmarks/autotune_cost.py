"""What ``num_workers="auto"`` costs and how consistently it chooses, on stand-ins of W8-W10.

For each workload, rounds alternate the fixed candidates (``num_workers=0``, 2 threads, 2
processes) and ``"auto"``, each a fresh loader timed over two epochs (the first pays start-up,
and for ``"auto"`` the trials). Reported per workload:

- the rate of each fixed candidate (median over rounds of its second epoch) and which is best;
- ``"auto"``'s choice in every round, and the chosen candidate's rate against the best one's
  (the target: within 10%, every round);
- the cost of the trials: ``"auto"``'s first epoch against the best fixed candidate's first epoch
  (median over rounds), as a share of that epoch (the target: at most 10%); and, less noisy,
  paired within each loader: what auto's first epoch adds to its own second epoch, less what
  the best candidate's first epoch adds to its own (fresh loaders of one configuration differ
  by up to 40% on this machine, two epochs of one loader by a few %).

A warm-up round (one epoch of each, not reported) comes first: the first reads of W8's files
and W9's memmap fill the page cache, and made the first reported round's fixed candidates
up to 2.7x slower than the later rounds'.

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
import re
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
    print(f"data under {root}", flush=True)
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


def measure(
    name: str, make: Callable[[dict[str, Any]], DataLoader[Any]], rounds: int,
    verbose: bool = False,
) -> None:
    """Rounds of (each fixed candidate, then auto); ratios are paired within a round, since
    the load of a shared machine drifts between rounds."""
    print(f"\n{name}: {len(make({'num_workers': 0}))} batches per epoch, {rounds} rounds",
          flush=True)
    for key in (*CONFIGS, "auto"):  # a warm-up round, not reported: the first reads of the
        epochs(make(CONFIGS.get(key, {"num_workers": "auto"})), 1)  # files fill the page cache
    gc.collect()
    costs, ratios, choices, tunings, own, paired = [], [], [], [], [], []
    for r in range(rounds):
        first: dict[str, float] = {}
        later: dict[str, float] = {}
        for key in (*CONFIGS, "auto"):
            loader = make(CONFIGS.get(key, {"num_workers": "auto"}))
            first[key], later[key] = epochs(loader)
            if key == "auto":
                report = loader.stats.autotune or ""
                choices.append(chosen_name(report))
                tunings.append(report.split("measured on the epoch's first ", 1)[-1].split(":")[0])
                found = re.search(r"\(~([0-9.]+) s more than", report)
                if found:  # the tuning's own estimate, paired in time with its batches
                    own.append(float(found.group(1)) / later["auto"])
                if verbose:
                    print(f"      {report}", flush=True)
            del loader
            gc.collect()
        best_first = min(CONFIGS, key=first.__getitem__)
        best_later = min(CONFIGS, key=later.__getitem__)
        cost = (first["auto"] - first[best_first]) / first[best_first]
        # Paired within each loader: what auto's first epoch adds to its own later epoch, less
        # what the best candidate's first epoch adds to its own (start-up): two loaders of the
        # same configuration differ by up to 40% here, two epochs of one loader by a few %.
        paired.append((first["auto"] - later["auto"]) / later["auto"]
                      - (first[best_first] - later[best_first]) / later[best_first])
        ratio = later[best_later] / later[choices[-1]] if choices[-1] in later else float("nan")
        costs.append(cost)
        ratios.append(ratio)
        cells = ", ".join(f"{k} {first[k]:.2f}/{later[k]:.2f}" for k in (*CONFIGS, "auto"))
        print(f"  round {r}: first/later epoch s: {cells}; auto chose {choices[-1]} "
              f"({ratio:.2f}x the best later epoch, {best_later}); auto's first epoch "
              f"{cost * 100:+.0f}% vs the best first epoch ({best_first}); "
              f"tuning {tunings[-1]}", flush=True)
    print(f"  {name} summary: choices {choices}; chosen/best rate median "
          f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}); cost median "
          f"{statistics.median(costs) * 100:+.1f}% of an epoch "
          f"[{', '.join(f'{c * 100:+.0f}%' for c in costs)}]; paired within each loader "
          f"{statistics.median(paired) * 100:+.1f}% "
          f"[{', '.join(f'{c * 100:+.0f}%' for c in paired)}]; the tuning's own cost estimate "
          f"[{', '.join(f'{c * 100:.1f}%' for c in own)}] of auto's later epoch", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=None)
    parser.add_argument("--verbose", action="store_true", help="print every epoch and report")
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "mb-autotune"))
    args = parser.parse_args()
    root = Path(args.data)
    root.mkdir(parents=True, exist_ok=True)
    print(f"python {sys.version.split()[0]}, {len(os.sched_getaffinity(0))} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    for name, make in workloads(root, args.quick).items():
        if args.only is None or name in args.only.split(","):
            measure(name, make, args.rounds, args.verbose)


if __name__ == "__main__":
    main()
