"""W8 of ``../shared/BENCHMARKS.md``: an image folder, decode-bound (see ``realistic.py``).

2,000 JPEGs of 500x375 (photo-like, quality 90) in 10 class folders; item = PIL decode,
random-resized-crop box from the item's rng, bilinear resize to 224x224, uint8 CHW; bs 32.
Ours: ``ImageFolder(decode_to="pil")`` + the guide's crop recipe on the PIL image ("array
items": the default HWC-array items, cropped via ``Image.fromarray``). "decode limit" (the
"NumPy limit" column): 2 x one core running the same item function in a plain loop; "2 plain
processes": that function in 2 forked processes (what 2 cores give); "minibatcher, torch's
item": our loader on torch's dataset.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from harness import (
    BENCH_DATA,
    Cell,
    Config,
    Target,
    Workload,
    loader_epochs,
    our_loader,
    plain_processes,
    rate,
    torch_loader,
)

WORKERS = 2
SEED = 0
W8_FULL, W8_QUICK, W8_BATCH, W8_SIZE, W8_CROP = 2_000, 400, 32, (500, 375), 224


def w8_folder(n: int) -> str:
    """``n`` photo-like JPEGs in 10 class folders (made once)."""
    root = os.path.join(BENCH_DATA, f"w8-{n}")
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
    """Ours: the guide's recipe on ``ImageFolder(decode_to="pil")``'s (PIL image, label)."""
    from PIL import Image

    image, label = item
    box = crop_box(image.width, image.height, rng)
    crop = image.resize((W8_CROP, W8_CROP), Image.Resampling.BILINEAR, box=box)
    return np.asarray(crop).transpose(2, 0, 1), label


def random_resized_crop_array(item: Any, rng: np.random.Generator) -> Any:
    """Ours, the array recipe: on ImageFolder's default (HWC array, label) items, cropped
    through ``Image.fromarray`` (a copy of the image each way)."""
    from PIL import Image

    image, label = item
    box = crop_box(image.shape[1], image.shape[0], rng)
    crop = Image.fromarray(image).resize((W8_CROP, W8_CROP), Image.Resampling.BILINEAR, box=box)
    return np.asarray(crop).transpose(2, 0, 1), label


class W8Dataset:
    """torch's side (and the limit's loop): the same item function, file to CHW array, as
    cheap as ours (torchvision's ``pil_loader`` would also copy the RGB image in ``convert``)."""

    def __init__(self, root: str) -> None:
        from minibatcher.sources import ImageFolder

        folder = ImageFolder(root)
        self.files, self.targets = folder.files, folder.targets.tolist()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Any:
        from PIL import Image

        from minibatcher.transforms import item_rng

        with Image.open(self.files[i]) as raw:  # (no convert() of an RGB JPEG: a copy)
            image = raw if raw.mode == "RGB" else raw.convert("RGB")
            image.load()
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


def _w8(
    make: Callable[..., Any], items: str = "pil", **kwargs: Any
) -> Callable[[Config], float]:
    """``items``: ours reads ``ImageFolder`` with the guide's recipe, on PIL images
    (``"pil"``, ``decode_to="pil"``) or HWC arrays (``"array"``, cropped via
    ``Image.fromarray``); ``"torch"``: every loader reads :class:`W8Dataset` (file to CHW)."""

    def run(config: Config) -> float:
        n = config.size(W8_FULL, W8_QUICK)
        root = w8_folder(n)
        if make is our_loader and items != "torch":
            from minibatcher.sources import ImageFolder

            data: Any = ImageFolder(root, decode_to="pil" if items == "pil" else "array")
            recipe = random_resized_crop if items == "pil" else random_resized_crop_array
            kwargs.setdefault("transform", recipe)
        else:
            data = W8Dataset(root)
        loader = make(data, batch_size=W8_BATCH, shuffle=True, num_workers=WORKERS, **kwargs)
        return loader_epochs(loader, n, config)

    return run


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
            Cell(competitor="minibatcher, torch's item", run=_w8(our_loader, items="torch"),
                 requires=("PIL",)),
            Cell(competitor="minibatcher, array items", run=_w8(our_loader, items="array"),
                 requires=("PIL",)),
        ),
        targets=(
            Target(numerator="minibatcher", denominator="NumPy limit", at_least=0.85),
            Target(numerator="minibatcher", denominator="torch"),
            Target(numerator="minibatcher", denominator="2 plain processes"),
            Target(numerator="minibatcher threads", denominator="2 plain processes"),
            Target(numerator="minibatcher, torch's item", denominator="2 plain processes"),
            Target(numerator="minibatcher, array items", denominator="2 plain processes"),
            Target(numerator="torch", denominator="2 plain processes"),
        ),
    ),
)
"""W8, for ``realistic.py``."""
