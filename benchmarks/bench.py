"""minibatcher side by side with PyTorch's DataLoader and the raw NumPy limit.

Runs the workloads of ``../shared/BENCHMARKS.md`` (W1 seed ints, W2 array rows, W3 (int, str)
pairs; plus any defined in ``benchmarks/workers.py``), each (workload, competitor) cell in a fresh
subprocess: a warm-up epoch, then the median of the timed epochs. Prints items/s and the ratios
as markdown tables, and the RSS of importing minibatcher without torch.

Usage::

    .venv/bin/python benchmarks/bench.py              # the full workloads (N = 1,000,000)
    .venv/bin/python benchmarks/bench.py --quick      # N = 200,000, 3 epochs: labelled QUICK
    .venv/bin/python benchmarks/bench.py --only W1,W3 --epochs 7
    .venv/bin/python benchmarks/bench.py --rounds 3   # each cell 3 times, interleaved: best
    .venv/bin/python benchmarks/bench.py --cell W2 torch   # one cell, printed as JSON

fastai and grain columns appear only where those packages are installed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from harness import (
    Cell,
    Config,
    Target,
    Workload,
    drain,
    rate,
    results_table,
    targets_table,
    torch_loader,
)

CELL_TIMEOUT_S = 900  # one cell: a full W2 epoch of torch's default path takes seconds, not minutes

W1_FULL, W1_QUICK, W1_BATCH = 1_000_000, 200_000, 64
W2_FULL, W2_QUICK, W2_BATCH, W2_WIDTH = 1_000_000, 200_000, 256, 128
W3_FULL, W3_QUICK, W3_BATCH = 1_000_000, 200_000, 64
GRAIN_MAX = 200_000  # grain is ~20x slower: it reads at most this many items (rate is per item)


# -- data ---------------------------------------------------------------------------------------
def w2_array(n: int) -> np.ndarray:
    """W2's dataset: an (n, 128) float32 array."""
    return np.random.default_rng(0).random((n, W2_WIDTH), dtype=np.float32)


def w3_pairs(n: int) -> list[tuple[int, str]]:
    """W3's dataset: (int, short str) pairs."""
    return list(enumerate(f"item-{i}" for i in range(n)))


def numpy_gather_rate(columns: Sequence[np.ndarray], batch_size: int, config: Config) -> float:
    """The NumPy limit: a fresh permutation per epoch, then ``col[perm[i:i+bs]]`` in a loop.

    Object columns are gathered the same way and turned into lists (``.tolist()``), as a loader
    hands strings over.
    """
    n = len(columns[0])
    objects = [c.dtype == object for c in columns]

    def epoch(e: int) -> None:
        perm = np.random.default_rng(e).permutation(n)
        for i in range(0, n, batch_size):
            index = perm[i : i + batch_size]
            for col, is_object in zip(columns, objects, strict=True):
                batch = col[index]
                if is_object:
                    batch.tolist()

    return rate(epoch, n, config)


def loader_rate(loader: Any, items: int, config: Config) -> float:
    """Items/s of a loader whose every ``iter()`` is one epoch (minibatcher, torch, fastai)."""
    return rate(lambda _e: drain(loader), items, config)




# -- W1: range(1M), batch_size 64, shuffle ---------------------------------------------------------
def w1_numpy(config: Config) -> float:
    n = config.size(W1_FULL, W1_QUICK)
    return numpy_gather_rate([np.arange(n)], W1_BATCH, config)


def w1_minibatcher(config: Config) -> float:
    from minibatcher import DataLoader

    n = config.size(W1_FULL, W1_QUICK)
    return loader_rate(DataLoader(range(n), batch_size=W1_BATCH, shuffle=True, seed=0), n, config)


def w1_torch(config: Config) -> float:

    n = config.size(W1_FULL, W1_QUICK)
    return loader_rate(torch_loader(range(n), batch_size=W1_BATCH, shuffle=True), n, config)


def w1_fastai(config: Config) -> float:
    from fastai.data.load import DataLoader as FastaiLoader

    n = config.size(W1_FULL, W1_QUICK)
    return loader_rate(FastaiLoader(range(n), bs=W1_BATCH, shuffle=True), n, config)


def w1_grain(config: Config) -> float:
    return grain_rate(range(min(config.size(W1_FULL, W1_QUICK), GRAIN_MAX)), W1_BATCH, config)


# -- W2: float32 (1M, 128), batch_size 256, shuffle ------------------------------------------------
def w2_numpy(config: Config) -> float:
    x = w2_array(config.size(W2_FULL, W2_QUICK))
    return numpy_gather_rate([x], W2_BATCH, config)


def w2_minibatcher(config: Config) -> float:
    from minibatcher import DataLoader

    x = w2_array(config.size(W2_FULL, W2_QUICK))
    return loader_rate(DataLoader(x, batch_size=W2_BATCH, shuffle=True, seed=0), len(x), config)


def w2_torch(config: Config) -> float:

    x = w2_array(config.size(W2_FULL, W2_QUICK))
    return loader_rate(torch_loader(x, batch_size=W2_BATCH, shuffle=True), len(x), config)


def w2_torch_batched(config: Config) -> float:
    """torch with a BatchSampler and a dataset whose ``__getitems__`` gathers the whole batch."""
    import torch
    import torch.utils.data as tud

    class Rows(tud.Dataset):
        def __init__(self, x: np.ndarray) -> None:
            self.x = x

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i: int) -> Any:
            return torch.from_numpy(self.x[i])

        def __getitems__(self, indices: list[int]) -> Any:
            return torch.from_numpy(self.x[indices])

    rows = Rows(w2_array(config.size(W2_FULL, W2_QUICK)))
    sampler = tud.BatchSampler(tud.RandomSampler(rows), W2_BATCH, drop_last=False)
    loader = tud.DataLoader(rows, batch_sampler=sampler, collate_fn=_as_is)
    return loader_rate(loader, len(rows), config)


def _as_is(batch: Any) -> Any:
    return batch


def w2_fastai(config: Config) -> float:
    from fastai.data.load import DataLoader as FastaiLoader

    x = w2_array(config.size(W2_FULL, W2_QUICK))
    return loader_rate(FastaiLoader(x, bs=W2_BATCH, shuffle=True), len(x), config)


def w2_grain(config: Config) -> float:
    return grain_rate(w2_array(min(config.size(W2_FULL, W2_QUICK), GRAIN_MAX)), W2_BATCH, config)


# -- W3: 1M (int, str) pairs, batch_size 64, shuffle ----------------------------------------------
def w3_numpy(config: Config) -> float:
    pairs = w3_pairs(config.size(W3_FULL, W3_QUICK))
    ints = np.array([i for i, _ in pairs], dtype=np.int64)
    strings = np.empty(len(pairs), dtype=object)
    strings[:] = [s for _, s in pairs]
    return numpy_gather_rate([ints, strings], W3_BATCH, config)


def w3_minibatcher(config: Config) -> float:
    from minibatcher import DataLoader

    pairs = w3_pairs(config.size(W3_FULL, W3_QUICK))
    loader: DataLoader[Any] = DataLoader(pairs, batch_size=W3_BATCH, shuffle=True, seed=0)
    return loader_rate(loader, len(pairs), config)


def w3_torch(config: Config) -> float:

    pairs = w3_pairs(config.size(W3_FULL, W3_QUICK))
    loader = torch_loader(pairs, batch_size=W3_BATCH, shuffle=True)
    return loader_rate(loader, len(pairs), config)


def w3_fastai(config: Config) -> float:
    from fastai.data.load import DataLoader as FastaiLoader

    pairs = w3_pairs(config.size(W3_FULL, W3_QUICK))
    return loader_rate(FastaiLoader(pairs, bs=W3_BATCH, shuffle=True), len(pairs), config)


def w3_grain(config: Config) -> float:
    return grain_rate(w3_pairs(min(config.size(W3_FULL, W3_QUICK), GRAIN_MAX)), W3_BATCH, config)


def grain_rate(data: Any, batch_size: int, config: Config) -> float:
    """Grain's MapDataset: source -> shuffle (seeded by epoch) -> batch, iterated."""
    import grain

    def epoch(e: int) -> None:
        dataset = grain.MapDataset.source(data).shuffle(seed=e).batch(batch_size)
        drain(dataset.to_iter_dataset())

    return rate(epoch, len(data), config)


def _cells(prefix: str, batched_torch: bool = False) -> tuple[Cell, ...]:
    table = globals()
    cells = [
        Cell(competitor="NumPy limit", run=table[f"{prefix}_numpy"]),
        Cell(competitor="minibatcher", run=table[f"{prefix}_minibatcher"]),
        Cell(competitor="torch", run=table[f"{prefix}_torch"], requires=("torch",)),
    ]
    if batched_torch:
        cells.append(
            Cell(competitor="torch batched fetch", run=table[f"{prefix}_torch_batched"],
                 requires=("torch",))
        )
    cells.append(Cell(competitor="fastai", run=table[f"{prefix}_fastai"], requires=("fastai",)))
    cells.append(Cell(competitor="grain", run=table[f"{prefix}_grain"], requires=("grain",)))
    return tuple(cells)


CORE_WORKLOADS: tuple[Workload, ...] = (
    Workload(
        id="W1",
        title="range(N), bs 64, shuffle",
        cells=_cells("w1"),
        targets=(
            Target(numerator="minibatcher", denominator="torch", at_least=8.0),
            Target(numerator="minibatcher", denominator="NumPy limit"),
        ),
    ),
    Workload(
        id="W2",
        title="float32 (N, 128), bs 256, shuffle",
        cells=_cells("w2", batched_torch=True),
        targets=(
            Target(numerator="minibatcher", denominator="NumPy limit", at_least=0.85),
            Target(numerator="minibatcher", denominator="torch"),
            Target(numerator="minibatcher", denominator="torch batched fetch"),
        ),
    ),
    Workload(
        id="W3",
        title="N (int, str) pairs, bs 64, shuffle",
        cells=_cells("w3"),
        targets=(
            Target(numerator="minibatcher", denominator="torch", at_least=2.0),
            Target(numerator="minibatcher", denominator="NumPy limit"),
        ),
    ),
)


def all_workloads() -> tuple[Workload, ...]:
    """W1-W3, then the workloads of ``benchmarks/workers.py`` and ``benchmarks/realistic.py``
    (W8-W10b, Parquet) when those modules exist."""
    found = CORE_WORKLOADS
    for name in ("workers", "realistic"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        found += tuple(module.WORKLOADS)
    return found


# -- import memory --------------------------------------------------------------------------------
_RSS_SNIPPET = """
import json, sys
{imports}
def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
print(json.dumps({{"rss_mib": rss_mib(), "torch": "torch" in sys.modules}}))
"""


def import_rss(imports: str) -> dict[str, Any]:
    """RSS (MiB) of a fresh interpreter after ``imports``, and whether torch got imported."""
    code = _RSS_SNIPPET.format(imports=imports)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- running ------------------------------------------------------------------------------------
def run_cell(workload: Workload, competitor: str, config: Config) -> float | str:
    """Run one cell in a fresh subprocess; its value, or a short error text for the table."""
    command = [sys.executable, os.path.abspath(__file__), "--cell", workload.id, competitor,
               "--epochs", str(config.epochs)]
    if config.quick:
        command.append("--quick")
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=CELL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"timeout > {CELL_TIMEOUT_S}s"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        print(f"[{workload.id} {competitor}] failed: {out.stderr}", file=sys.stderr)
        return f"error: {last[:60]}"
    return float(json.loads(out.stdout.strip().splitlines()[-1])["value"])


def run_all(
    workloads: Sequence[Workload], config: Config, rounds: int = 1, progress: bool = True
) -> dict[tuple[str, str], float | str]:
    """Every available cell of every workload, each in its own subprocess.

    With ``rounds > 1`` the cells of a workload run in turn, round after round (the order
    reversed every other round), and each cell reports its best round (each round being the
    median of its epochs): on a shared machine whose load comes and goes, every competitor is
    then measured at its least disturbed, and the ratios hold.
    """
    results: dict[tuple[str, str], float | str] = {}
    for w in workloads:
        cells = [cell for cell in w.cells if cell.available()]
        values: dict[str, list[float]] = {cell.competitor: [] for cell in cells}
        for r in range(rounds):
            for cell in cells if r % 2 == 0 else cells[::-1]:
                if progress:
                    print(f"running {w.id} {cell.competitor} (round {r + 1}/{rounds}) ...",
                          file=sys.stderr, flush=True)
                value = run_cell(w, cell.competitor, config)
                if isinstance(value, str):
                    results[(w.id, cell.competitor)] = value
                else:
                    values[cell.competitor].append(value)
        for name, measured in values.items():
            if measured and (w.id, name) not in results:
                results[(w.id, name)] = max(measured) if w.higher_is_better else min(measured)
    return results


def report(
    workloads: Sequence[Workload],
    results: dict[tuple[str, str], float | str],
    config: Config,
    rounds: int = 1,
) -> str:
    """The whole report: header, results table, targets table, import memory."""
    import numpy

    mode = "QUICK (smaller N, W1-W3 at 200,000: not comparable)" if config.quick else "full"
    header = (
        f"minibatcher benchmark, {mode}: warm-up {config.warmup} epoch, median of "
        f"{config.epochs} epochs, each cell in a fresh process"
        f"{f', best of {rounds} interleaved rounds' if rounds > 1 else ''}. "
        f"Python {platform.python_version()}, "
        f"NumPy {numpy.__version__}, {os.cpu_count()} CPUs."
    )
    ratios, _ = targets_table(workloads, results)
    bare = import_rss("import numpy")
    ours = import_rss("import minibatcher")
    memory = (
        f"Import RSS: `import minibatcher` {ours['rss_mib']:.1f} MiB (torch imported: "
        f"{'yes' if ours['torch'] else 'no'}; target < 60 MiB); `import numpy` alone "
        f"{bare['rss_mib']:.1f} MiB."
    )
    return "\n\n".join([header, results_table(workloads, results), ratios, memory])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller N (200,000), 3 epochs")
    parser.add_argument(
        "--epochs", type=int, default=None, help="timed epochs (default 5; 3 with --quick)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="run every cell this many times, interleaved; report its best round (noisy machines)",
    )
    parser.add_argument("--only", default=None, help="comma-separated workload ids, e.g. W1,W3")
    parser.add_argument("--cell", nargs=2, metavar=("WORKLOAD", "COMPETITOR"),
                        help="run one cell in this process and print its value as JSON")
    args = parser.parse_args(argv)
    epochs = args.epochs if args.epochs is not None else (3 if args.quick else 5)
    if epochs < 3:
        parser.error(f"--epochs must be at least 3 (a median of >= 3 epochs), got {epochs}")
    config = Config(quick=args.quick, epochs=epochs)
    workloads = all_workloads()
    if args.cell:
        by_id = {w.id: w for w in workloads}
        workload_id, competitor = args.cell
        value = by_id[workload_id].cell(competitor).run(config)
        print(json.dumps({"value": value}))
        return 0
    if args.only:
        wanted = [name.strip() for name in args.only.split(",")]
        unknown = set(wanted) - {w.id for w in workloads}
        if unknown:
            known = [w.id for w in workloads]
            parser.error(f"unknown workload(s) {sorted(unknown)}; known: {known}")
        workloads = tuple(w for w in workloads if w.id in wanted)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    results = run_all(workloads, config, rounds=args.rounds)
    print(report(workloads, results, config, rounds=args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
