"""W9 and W10 of ``../shared/BENCHMARKS.md``: token windows and variable-length token arrays
(see ``realistic.py``).

- W9 token windows: a 200M-token uint16 memmap (400 MB); 20,000 windows of 1,025 tokens at fixed
  random offsets, (x, y) int64, bs 32, shuffle. Ours: ``TokenWindows``; "nanoGPT get_batch":
  nanoGPT's function in the main process. W9rss: the main process's peak RSS (MiB).
- W10 variable length: 100,000 int32 token arrays (lognormal lengths, W10's), bs 64, padded to
  the batch's longest. W10b: the same, length-bucketed (ours: ``BucketBatchSampler``; torch: the
  hand-written sampler of BENCHMARKS.md). W10f: ms from creating the loader to its first batch
  (the list is made before). W10p: padding, percent.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from typing import Any

import numpy as np
from harness import (
    BENCH_DATA,
    Cell,
    Config,
    Target,
    Workload,
    first_batch_ms,
    loader_epochs,
    our_loader,
    rate,
    torch_loader,
)

WORKERS = 2
SEED = 0
W9_TOKENS, W9_TOKENS_QUICK, W9_WINDOWS, W9_WINDOWS_QUICK = 200_000_000, 20_000_000, 20_000, 4_000
W9_CONTEXT, W9_BATCH = 1_024, 32
W10_FULL, W10_QUICK, W10_BATCH = 100_000, 20_000, 64


# -- W9 ---------------------------------------------------------------------------------------
def w9_tokens(config: Config) -> tuple[np.memmap, np.ndarray]:
    n = config.size(W9_TOKENS, W9_TOKENS_QUICK)
    path = os.path.join(BENCH_DATA, f"w9-{n}.bin")
    if not os.path.exists(path):
        os.makedirs(BENCH_DATA, exist_ok=True)
        rng = np.random.default_rng(SEED)
        with open(path + ".part", "wb") as f:
            for start in range(0, n, 10_000_000):
                rng.integers(0, 50257, min(10_000_000, n - start), dtype=np.uint16).tofile(f)
        os.replace(path + ".part", path)
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    windows = config.size(W9_WINDOWS, W9_WINDOWS_QUICK)
    offsets = np.random.default_rng(SEED).integers(0, n - W9_CONTEXT - 1, windows)
    return tokens, offsets


class W9Dataset:
    """torch's side: item i = (x, y) of the window at offsets[i], as int64 tensors."""

    def __init__(self, tokens: np.memmap, offsets: np.ndarray) -> None:
        self.tokens, self.offsets = tokens, offsets

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> Any:
        import torch

        o = int(self.offsets[i])
        w = torch.from_numpy(self.tokens[o : o + W9_CONTEXT + 1].astype(np.int64))
        return w[:-1], w[1:]


def w9_nanogpt(config: Config) -> float:
    """nanoGPT's get_batch, in the main process, over the same offsets."""
    import torch

    tokens, offsets = w9_tokens(config)
    block = W9_CONTEXT

    def epoch(e: int) -> None:
        order = np.random.default_rng(e).permutation(len(offsets))
        for first in range(0, len(order), W9_BATCH):
            ix = offsets[order[first : first + W9_BATCH]]
            torch.stack([torch.from_numpy(tokens[i : i + block].astype(np.int64)) for i in ix])
            torch.stack([torch.from_numpy(tokens[i + 1 : i + 1 + block].astype(np.int64))
                         for i in ix])

    return rate(epoch, len(offsets), config)


def _w9(make: Callable[..., Any], **kwargs: Any) -> Callable[[Config], float]:
    def run(config: Config) -> float:
        tokens, offsets = w9_tokens(config)
        if make is our_loader:
            from minibatcher.sources import TokenWindows

            data: Any = TokenWindows(tokens, W9_CONTEXT, offsets=offsets)
        else:
            data = W9Dataset(tokens, offsets)
        loader = make(data, batch_size=W9_BATCH, shuffle=True, num_workers=WORKERS, **kwargs)
        return loader_epochs(loader, len(offsets), config)

    return run


def _w9_rss(make: Callable[..., Any]) -> Callable[[Config], float]:
    def run(config: Config) -> float:
        _w9(make)(config)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    return run


# -- W10 ----------------------------------------------------------------------------------------
def w10_lengths(n: int) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    return np.clip(np.round(rng.lognormal(np.log(100), 1.1, n)), 8, 2048).astype(np.int64)


def w10_items(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(SEED + 1)
    return [rng.integers(1, 50257, int(k), dtype=np.int32) for k in w10_lengths(n)]


def pad_batch(items: list[np.ndarray]) -> np.ndarray:
    """torch's side: the user's pad-to-longest collate."""
    out = np.zeros((len(items), max(len(a) for a in items)), dtype=np.int32)
    for row, a in zip(out, items, strict=True):
        row[: len(a)] = a
    return out


class HandBucketSampler:
    """BENCHMARKS.md W10b's user-written sampler: a fresh permutation cut into chunks of 50
    batches, each chunk sorted by length and cut into batches, the batches shuffled."""

    def __init__(self, lengths: np.ndarray, batch_size: int) -> None:
        self.lengths, self.batch_size, self.epoch = lengths, batch_size, 0

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.epoch)
        perm, size = rng.permutation(len(self.lengths)), self.batch_size
        out = []
        for first in range(0, len(perm), 50 * size):
            chunk = perm[first : first + 50 * size]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            out += [chunk[i : i + size].tolist() for i in range(0, len(chunk), size)]
        return [out[i] for i in rng.permutation(len(out))]

    def __iter__(self) -> Any:
        self.epoch += 1
        return iter(self.batches())


def _w10(make: Callable[..., Any], bucketed: bool, **kwargs: Any) -> Callable[[Config], float]:
    def run(config: Config) -> float:
        n = config.size(W10_FULL, W10_QUICK)
        return loader_epochs(_w10_loader(make, w10_items(n), bucketed, **kwargs), n, config)

    return run


def _w10_loader(make: Callable[..., Any], items: list[np.ndarray], bucketed: bool,
                **kwargs: Any) -> Any:
    n = len(items)
    ours = make is our_loader
    if ours:
        from minibatcher import pad_collate

        kwargs["collate_fn"] = pad_collate
    else:
        kwargs["collate_fn"] = pad_batch
    if bucketed:
        if ours:
            from minibatcher.samplers import BucketBatchSampler

            kwargs["batch_sampler"] = BucketBatchSampler(w10_lengths(n), W10_BATCH)
        else:
            kwargs["batch_sampler"] = HandBucketSampler(w10_lengths(n), W10_BATCH)
    else:
        kwargs.update(batch_size=W10_BATCH, shuffle=True)
    return make(items, num_workers=WORKERS, **kwargs)


def _w10_first(make: Callable[..., Any], **kwargs: Any) -> Callable[[Config], float]:
    """ms from creating the loader to its first batch (the list is made before the clock
    starts: making 100k arrays takes ~1.3 s, whose noise hid the loaders' own ~0.1 s)."""

    def run(config: Config) -> float:
        items = w10_items(config.size(W10_FULL, W10_QUICK))

        return first_batch_ms(lambda: _w10_loader(make, items, False, **kwargs), config)

    return run


def _w10_padding(kind: str) -> Callable[[Config], float]:
    def run(config: Config) -> float:
        lengths = w10_lengths(config.size(W10_FULL, W10_QUICK))
        if kind == "random":
            perm = np.random.default_rng(SEED).permutation(len(lengths))
            batches = [perm[i : i + W10_BATCH] for i in range(0, len(perm), W10_BATCH)]
        elif kind == "hand":
            batches = [np.asarray(b) for b in HandBucketSampler(lengths, W10_BATCH).batches()]
        else:
            from minibatcher.samplers import BucketBatchSampler

            batches = BucketBatchSampler(lengths, W10_BATCH).batches(SEED, 0)
        real = sum(int(lengths[b].sum()) for b in batches)
        padded = sum(int(lengths[b].max()) * len(b) for b in batches)
        return 100 * (1 - real / padded)

    return run


def _ours_threads_torch(cell: Callable[..., Callable[[Config], float]]) -> tuple[Cell, ...]:
    """minibatcher (processes), minibatcher threads and torch: ``cell(make, **loader_kwargs)``."""
    return (
        Cell(competitor="minibatcher", run=cell(our_loader)),
        Cell(competitor="minibatcher threads", run=cell(our_loader, worker_type="thread")),
        Cell(competitor="torch", run=cell(torch_loader), requires=("torch",)),
    )


def _vs_torch(at_least: float) -> tuple[Target, ...]:
    return (
        Target(numerator="minibatcher", denominator="torch", at_least=at_least),
        Target(numerator="minibatcher threads", denominator="torch"),
    )


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        id="W9",
        title="token windows 1,025 of a 200M uint16 memmap, bs 32, 2 workers",
        cells=(
            Cell(competitor="minibatcher", run=_w9(our_loader)),
            Cell(competitor="torch", run=_w9(torch_loader), requires=("torch",)),
            Cell(competitor="nanoGPT get_batch", run=w9_nanogpt, requires=("torch",)),
        ),
        targets=(
            Target(numerator="minibatcher", denominator="torch", at_least=3.0),
            Target(numerator="minibatcher", denominator="nanoGPT get_batch"),
        ),
    ),
    Workload(
        id="W9rss",
        title="W9: peak RSS of the main process",
        unit="MiB",
        higher_is_better=False,
        cells=(
            Cell(competitor="minibatcher", run=_w9_rss(our_loader)),
            Cell(competitor="torch", run=_w9_rss(torch_loader), requires=("torch",)),
        ),
        targets=(Target(numerator="minibatcher", denominator="torch"),),
    ),
    Workload(
        id="W10",
        title="100k variable-length int32 arrays, bs 64, pad to longest, 2 workers",
        cells=_ours_threads_torch(lambda make, **kw: _w10(make, False, **kw)),
        targets=_vs_torch(at_least=2.0),
    ),
    Workload(
        id="W10b",
        title="W10 length-bucketed (ours: BucketBatchSampler; torch: hand-written)",
        cells=_ours_threads_torch(lambda make, **kw: _w10(make, True, **kw)),
        targets=_vs_torch(at_least=2.0),
    ),
    Workload(
        id="W10f",
        title="W10: create -> first batch, 2 workers",
        unit="ms",
        higher_is_better=False,
        cells=_ours_threads_torch(_w10_first),
        targets=(Target(numerator="minibatcher", denominator="torch", at_most=1.0),),
    ),
    Workload(
        id="W10p",
        title="W10's lengths: padding (pad / all tokens)",
        unit="%",
        higher_is_better=False,
        cells=(
            Cell(competitor="minibatcher", run=_w10_padding("ours")),
            Cell(competitor="hand-written bucketing", run=_w10_padding("hand")),
            Cell(competitor="random batches", run=_w10_padding("random")),
        ),
        targets=(Target(numerator="minibatcher", denominator="hand-written bucketing",
                        at_most=1.0),),
    ),
)
"""W9-W10p, for ``realistic.py``."""
