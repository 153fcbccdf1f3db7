"""The realistic workloads of ``../shared/BENCHMARKS.md``: W8-W10b, plus Parquet on disk.

Each runs minibatcher and PyTorch's DataLoader side by side (2 workers or threads), every cell in
a fresh subprocess through ``bench.py``'s harness; the data is made by the benchmark itself under
``$TMPDIR/minibatcher-bench`` (kept between cells and runs, remade if missing)::

    .venv/bin/python benchmarks/realistic.py            # full sizes
    .venv/bin/python benchmarks/realistic.py --quick    # smaller sizes (labelled QUICK)

- W8 image folder: 2,000 JPEGs of 500x375 (photo-like, quality 90) in 10 class folders; item =
  PIL decode, random-resized-crop box from the item's rng, bilinear resize to 224x224, uint8 CHW;
  bs 32. Ours: ``ImageFolder`` + the guide's crop recipe. "decode limit": 2 x one core running
  the same item function in a plain loop; "2 plain processes": that function in 2 forked
  processes (what 2 cores give); "minibatcher, torch's item": our loader on torch's dataset.
- W9 token windows: a 200M-token uint16 memmap (400 MB); 20,000 windows of 1,025 tokens at fixed
  random offsets, (x, y) int64, bs 32, shuffle. Ours: ``TokenWindows``; "nanoGPT get_batch":
  nanoGPT's function in the main process. W9rss: the main process's peak RSS (MiB).
- W10 variable length: 100,000 int32 token arrays (lognormal lengths, W10's), bs 64, padded to
  the batch's longest. W10b: the same, length-bucketed (ours: ``BucketBatchSampler``; torch: the
  hand-written sampler of BENCHMARKS.md). W10f: ms from creating the loader to its first batch
  (the list is made before). W10p: padding, percent.
- Wpq Parquet: 2M rows x 4 numeric columns in row groups of 64k rows, bs 256, read through
  ``DataLoader(ParquetFile)`` against the same rows as an in-memory Arrow table.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from harness import (
    Cell,
    Config,
    Target,
    Workload,
    loader_epochs,
    median_ms,
    our_loader,
    plain_processes,
    rate,
    torch_loader,
)

WORKERS = 2
SEED = 0
ROOT = os.path.join(tempfile.gettempdir(), "minibatcher-bench")

W8_FULL, W8_QUICK, W8_BATCH, W8_SIZE, W8_CROP = 2_000, 400, 32, (500, 375), 224
W9_TOKENS, W9_TOKENS_QUICK, W9_WINDOWS, W9_WINDOWS_QUICK = 200_000_000, 20_000_000, 20_000, 4_000
W9_CONTEXT, W9_BATCH = 1_024, 32
W10_FULL, W10_QUICK, W10_BATCH = 100_000, 20_000, 64
PQ_FULL, PQ_QUICK, PQ_GROUP, PQ_BATCH = 2_000_000, 400_000, 65_536, 256








# -- W8 -----------------------------------------------------------------------------------------
def w8_folder(n: int) -> str:
    """``n`` photo-like JPEGs in 10 class folders (made once)."""
    root = os.path.join(ROOT, f"w8-{n}")
    done = os.path.join(root, ".done")
    if os.path.exists(done):
        return root
    from PIL import Image

    rng = np.random.default_rng(SEED)
    width, height = W8_SIZE
    for i in range(n):
        folder = os.path.join(root, f"class{i % 10}")
        os.makedirs(folder, exist_ok=True)
        coarse = rng.integers(0, 256, (height // 25 + 1, width // 25 + 1, 3), dtype=np.uint8)
        smooth = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        noisy = np.asarray(smooth).astype(np.int16) + rng.integers(-12, 13, (height, width, 3))
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
        image.save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)
    open(done, "w").close()
    return root


def crop_box(width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box (scale 0.08-1, ratio 3/4-4/3; fallback: whole)."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        w = round(float(np.sqrt(target * ratio)))
        h = round(float(np.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            x0 = int(rng.integers(0, width - w + 1))
            y0 = int(rng.integers(0, height - h + 1))
            return x0, y0, x0 + w, y0 + h
    return 0, 0, width, height


def random_resized_crop(item: Any, rng: np.random.Generator) -> Any:
    """Ours: the guide's recipe on ImageFolder's (HWC array, label) items."""
    from PIL import Image

    image, label = item
    box = crop_box(image.shape[1], image.shape[0], rng)
    crop = Image.fromarray(image).resize((W8_CROP, W8_CROP), Image.Resampling.BILINEAR, box=box)
    return np.asarray(crop).transpose(2, 0, 1), label


class W8Dataset:
    """torch's side (and the limit's loop): the same item function, file to CHW array."""

    def __init__(self, root: str) -> None:
        from minibatcher.sources import ImageFolder

        folder = ImageFolder(root)
        self.files, self.targets = folder.files, folder.targets.tolist()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Any:
        from PIL import Image

        from minibatcher.transforms import item_rng

        with Image.open(self.files[i]) as raw:
            image = raw.convert("RGB")
        box = crop_box(image.width, image.height, item_rng(SEED, 0, i))
        crop = image.resize((W8_CROP, W8_CROP), Image.Resampling.BILINEAR, box=box)
        return np.asarray(crop).transpose(2, 0, 1), self.targets[i]


def w8_limit(config: Config) -> float:
    """BENCHMARKS.md's decode limit: 2 x one core running the item function in a plain loop."""
    n = config.size(W8_FULL, W8_QUICK)
    data = W8Dataset(w8_folder(n))
    return WORKERS * rate(lambda _e: [data[i] for i in range(n)], n, config)


def w8_processes(config: Config) -> float:
    """The same item function in 2 plain forked processes (half the items each, per epoch):
    what 2 cores really give (W4's kind of limit; on these machines < 2x one core)."""
    n = config.size(W8_FULL, W8_QUICK)
    data = W8Dataset(w8_folder(n))

    def share(worker: int) -> None:
        for i in range(worker, n, WORKERS):
            data[i]

    return rate(lambda _e: plain_processes(share, WORKERS), n, config)


def _w8(make: Callable[..., Any], folder: bool = True, **kwargs: Any) -> Callable[[Config], float]:
    """``folder``: ours reads ``ImageFolder`` with the guide's recipe (HWC arrays, cropped via
    ``Image.fromarray``); otherwise every loader reads :class:`W8Dataset` (file to CHW)."""

    def run(config: Config) -> float:
        n = config.size(W8_FULL, W8_QUICK)
        root = w8_folder(n)
        if make is our_loader and folder:
            from minibatcher.sources import ImageFolder

            data: Any = ImageFolder(root)
            kwargs.setdefault("transform", random_resized_crop)
        else:
            data = W8Dataset(root)
        loader = make(data, batch_size=W8_BATCH, shuffle=True, num_workers=WORKERS, **kwargs)
        return loader_epochs(loader, n, config)

    return run


# -- W9 -----------------------------------------------------------------------------------------
def w9_tokens(config: Config) -> tuple[np.memmap, np.ndarray]:
    n = config.size(W9_TOKENS, W9_TOKENS_QUICK)
    path = os.path.join(ROOT, f"w9-{n}.bin")
    if not os.path.exists(path):
        os.makedirs(ROOT, exist_ok=True)
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

        def once() -> float:
            start = time.perf_counter()
            loader = _w10_loader(make, items, False, **kwargs)
            it = iter(loader)
            next(it)
            elapsed = time.perf_counter() - start
            del it, loader  # stopping the workers is not timed
            return elapsed

        return median_ms(once, config)

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


# -- Parquet ------------------------------------------------------------------------------------
def pq_path(config: Config) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = config.size(PQ_FULL, PQ_QUICK)
    path = os.path.join(ROOT, f"pq-{n}.parquet")
    if not os.path.exists(path):
        os.makedirs(ROOT, exist_ok=True)
        rng = np.random.default_rng(SEED)
        table = pa.table({
            "id": np.arange(n, dtype=np.int64),
            "x": rng.standard_normal(n).astype(np.float32),
            "y": rng.standard_normal(n),
            "label": rng.integers(0, 10, n, dtype=np.int32),
        })
        pq.write_table(table, path + ".part", row_group_size=PQ_GROUP)
        os.replace(path + ".part", path)
    return path


def _pq(kind: str, shuffle: bool) -> Callable[[Config], float]:
    def run(config: Config) -> float:
        import pyarrow.parquet as pq

        from minibatcher import DataLoader
        from minibatcher.samplers import ShardShuffleSampler
        from minibatcher.sources import ParquetSource

        path = pq_path(config)
        kwargs: dict[str, Any] = {"batch_size": PQ_BATCH, "seed": SEED}
        if kind == "memory":
            data: Any = pq.read_table(path)
            kwargs["shuffle"] = shuffle
        elif kind == "cached":  # every decoded row group kept: later epochs decode nothing
            groups = config.size(PQ_FULL, PQ_QUICK) // PQ_GROUP + 1
            data = ParquetSource(path, cache_row_groups=groups)
        else:
            data = pq.ParquetFile(path)
            if shuffle:  # random rows, read a row group at a time
                groups = [data.metadata.row_group(g).num_rows
                          for g in range(data.metadata.num_row_groups)]
                kwargs["sampler"] = ShardShuffleSampler(groups, buffer_size=PQ_GROUP)
        loader = DataLoader(data, **kwargs)
        return loader_epochs(loader, config.size(PQ_FULL, PQ_QUICK), config)

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
        id="W8",
        title="2,000 JPEGs 500x375, decode + random-resized-crop 224, bs 32, 2 workers",
        cells=(
            Cell(competitor="NumPy limit", run=w8_limit, requires=("PIL",)),
            Cell(competitor="minibatcher", run=_w8(our_loader), requires=("PIL",)),
            Cell(competitor="torch", run=_w8(torch_loader), requires=("PIL", "torch")),
            Cell(competitor="minibatcher threads", run=_w8(our_loader, worker_type="thread"),
                 requires=("PIL",)),
            Cell(competitor="2 plain processes", run=w8_processes, requires=("PIL",)),
            Cell(competitor="minibatcher, torch's item", run=_w8(our_loader, folder=False),
                 requires=("PIL",)),
        ),
        targets=(
            Target(numerator="minibatcher", denominator="NumPy limit", at_least=0.85),
            Target(numerator="minibatcher", denominator="torch"),
            Target(numerator="minibatcher", denominator="2 plain processes"),
            Target(numerator="minibatcher, torch's item", denominator="2 plain processes"),
            Target(numerator="torch", denominator="2 plain processes"),
        ),
    ),
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
    Workload(
        id="Wpq",
        title="Parquet 2M rows x 4 numeric cols, row groups of 64k, bs 256, in order",
        cells=(
            Cell(competitor="in-memory Arrow table", run=_pq("memory", False),
                 requires=("pyarrow",)),
            Cell(competitor="minibatcher", run=_pq("file", False), requires=("pyarrow",)),
            Cell(competitor="minibatcher, all row groups cached", run=_pq("cached", False),
                 requires=("pyarrow",)),
        ),
        targets=(
            Target(numerator="minibatcher", denominator="in-memory Arrow table", at_least=0.8),
            Target(numerator="minibatcher, all row groups cached",
                   denominator="in-memory Arrow table"),
        ),
    ),
    Workload(
        id="Wpqs",
        title="Parquet as Wpq, shuffled (on disk: shard shuffle, buffer of one row group)",
        cells=(
            Cell(competitor="in-memory Arrow table", run=_pq("memory", True),
                 requires=("pyarrow",)),
            Cell(competitor="minibatcher", run=_pq("file", True), requires=("pyarrow",)),
        ),
        targets=(Target(numerator="minibatcher", denominator="in-memory Arrow table"),),
    ),
)
"""The realistic workloads, for ``bench.py``."""


def main(argv: list[str] | None = None) -> int:
    """Run only the realistic workloads through ``bench.py``'s runner (same options)."""
    import bench

    args = list(sys.argv[1:] if argv is None else argv)
    if "--only" not in args and "--cell" not in args:
        args += ["--only", ",".join(w.id for w in WORKLOADS)]
    return bench.main(args)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
