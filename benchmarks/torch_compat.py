"""The workloads of ../shared/BENCHMARKS.md through ``minibatcher.torch.DataLoader``, called with
exactly the arguments a torch user passes to ``torch.utils.data.DataLoader`` today (only the
import differs), side by side with torch's in the same invocation; ratios ours / torch.

Each cell runs in a fresh subprocess; a warm-up epoch, then the median of the timed epochs.

    python benchmarks/torch_compat.py            # full sizes
    python benchmarks/torch_compat.py --quick    # smaller workloads (the table says so)
    python benchmarks/torch_compat.py --rounds 5 # timed epochs per cell (default 3)

W7 (memory) is measured by ``workers.py``'s W7 cell, with the facade as the loader class.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
from harness import Config

from workers import CpuBound, Images, w7

EPOCHS = 3


CPU_BOUND_ROUNDS = 1500
"""W4 here: ~0.3 ms an item (workers.py's W4 uses 900 rounds)."""


def cpu_bound(n: int) -> CpuBound:
    return CpuBound(n, CPU_BOUND_ROUNDS)


def workloads(quick: bool) -> dict[str, tuple[Any, dict[str, Any], str, float]]:
    """id -> (dataset factory, DataLoader kwargs, unit, items per epoch scale)."""
    n1 = 200_000 if quick else 1_000_000
    n4 = 4_000 if quick else 20_000
    n5 = 512 if quick else 2_048
    return {
        "W1 range, bs 64, shuffle": (lambda: range(n1), {"batch_size": 64, "shuffle": True},
                                     "items/s", 1.0),
        "W2 float32 array (N,128), bs 256": (
            lambda: np.random.default_rng(0).random((n1, 128), dtype=np.float32),
            {"batch_size": 256, "shuffle": True}, "items/s", 1.0),
        "W3 (int, str) pairs, bs 64": (lambda: list(enumerate(f"s{i}" for i in range(n1))),
                                       {"batch_size": 64, "shuffle": True}, "items/s", 1.0),
        "W4 cpu-bound, 0 workers": (lambda: cpu_bound(n4), {"batch_size": 32}, "items/s", 1.0),
        "W4 cpu-bound, 2 workers": (lambda: cpu_bound(n4), {"batch_size": 32, "num_workers": 2},
                                    "items/s", 1.0),
        "W5 (3,224,224) uint8, 2 workers": (lambda: Images(n5),
                                            {"batch_size": 32, "num_workers": 2}, "MB/s",
                                            3 * 224 * 224 / 1e6),
        "W1 via 2 persistent workers": (lambda: range(n1 // 4),
                                        {"batch_size": 64, "shuffle": True, "num_workers": 2,
                                         "persistent_workers": True}, "items/s", 1.0),
        "W6 first batch, 2 workers (ms)": (lambda: cpu_bound(2_000),
                                           {"batch_size": 32, "num_workers": 2}, "ms", 0.0),
        # W7: measured by workers.py's own W7 cell (2M small dicts, or 200k with --quick; bs 64,
        # shuffle, 2 workers): the growth of the workers' USS over one epoch
        "W7 2M small dicts, 2 workers: USS growth": (list, {}, "MiB", 0.0),
    }  # fmt: skip


def loader_class(name: str) -> Any:
    if name == "torch":
        from torch.utils.data import DataLoader
    else:
        from minibatcher.torch import DataLoader
    return DataLoader


def run_cell(workload: str, competitor: str, quick: bool, rounds: int = EPOCHS) -> float:
    make, kwargs, unit, scale = workloads(quick)[workload]
    import torch

    torch.manual_seed(0)
    if unit == "MiB":  # W7: one epoch is the unit (see workers.py)
        return float(w7(loader_class(competitor))(Config(quick=quick)))
    data = make()
    dl = loader_class(competitor)(data, **kwargs)
    if unit == "ms":  # time to the first batch, a fresh loader each time
        times = []
        for _ in range(rounds):
            fresh = loader_class(competitor)(data, **kwargs)
            start = time.perf_counter()
            it = iter(fresh)
            next(it)
            times.append((time.perf_counter() - start) * 1e3)
            del it
        return statistics.median(times)
    rates = []
    for epoch in range(rounds + 1):
        start = time.perf_counter()
        count = 0
        for batch in dl:
            first = batch[0] if isinstance(batch, list) else batch
            count += len(first)
        elapsed = time.perf_counter() - start
        if epoch:  # the first is the warm-up
            rates.append(count * scale / elapsed)
    close = getattr(dl, "close", None)
    if close is not None:
        close()
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cell", nargs=2, metavar=("WORKLOAD", "COMPETITOR"))
    parser.add_argument("--only", help="run the workloads whose id starts with this")
    parser.add_argument("--rounds", type=int, default=EPOCHS,
                        help=f"timed epochs per cell, after a warm-up (default {EPOCHS})")
    args = parser.parse_args()
    if args.cell:
        print(json.dumps(run_cell(args.cell[0], args.cell[1], args.quick, args.rounds)))
        return
    rows = []
    for workload, (_, _, unit, _) in workloads(args.quick).items():
        if args.only and not workload.startswith(args.only):
            continue
        got = {}
        for competitor in ("torch", "minibatcher.torch"):
            cmd = [sys.executable, __file__, "--cell", workload, competitor]
            cmd += ["--quick"] if args.quick else []
            cmd += ["--rounds", str(args.rounds)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900)
            got[competitor] = float(out.stdout.strip().splitlines()[-1])
        ratio = got["minibatcher.torch"] / got["torch"]
        if unit == "ms":
            ratio = got["torch"] / got["minibatcher.torch"]  # faster = higher
        if unit == "MiB":  # memory growth: ours as a share of torch's (lower is better)
            ratio = got["minibatcher.torch"] / got["torch"] if got["torch"] else float("nan")
        rows.append((workload, unit, got["torch"], got["minibatcher.torch"], ratio))
        print(f"{workload:36s} {unit:8s} torch {got['torch']:>12,.1f}  ours "
              f"{got['minibatcher.torch']:>12,.1f}  x{ratio:.2f}", flush=True)  # fmt: skip
    print()
    print(f"| workload{' (quick)' if args.quick else ''} | unit | torch | minibatcher.torch "
          "| ratio (higher is better; MiB: ours / torch, lower is better) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for workload, unit, torch_value, ours, ratio in rows:
        print(f"| {workload} | {unit} | {torch_value:,.1f} | {ours:,.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
