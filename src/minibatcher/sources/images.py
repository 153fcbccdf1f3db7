"""ImageFolder: a folder of images in torchvision's layout (``root/<class>/<file>``), no
torchvision needed.

In: a root directory whose subdirectories are the classes. Out: per index, ``(image, label)``:
the image decoded to a uint8 ``(height, width, 3)`` NumPy array (RGB), or with
``decode_to="pil"`` the decoded PIL image itself (for a transform that crops and resizes it
with PIL, skipping two copies of the full image); the label the class's position in the sorted
class names. State: none.

The folder is listed once, at construction, in the main process (classes sorted, files sorted
within each class, as torchvision does); decoding happens where the batch is fetched, in the
workers. Pillow is imported there, lazily (the ``images`` extra: ``pip install
minibatcher[images]``). For augmentation, pass a transform that takes ``rng`` (see the
random-resized-crop recipe in the "Files on disk" guide).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._typing import IndexArray
from .base import IndexedSource

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""The file extensions listed (case-insensitive), torchvision's list."""


DECODE_TO = ("array", "pil")
"""What ``ImageFolder(decode_to=...)`` accepts."""


class ImageFolder(IndexedSource):
    """Images in ``root/<class>/<file>``; item ``(uint8 HWC array, int label)``.

    Args:
        root: the folder whose subfolders are the classes.
        extensions: the file extensions to list (case-insensitive).
        mode: the PIL mode the images are converted to (``"RGB"``: 3 channels; ``"L"``: 1,
            as an ``(H, W)`` array).
        allow_empty: keep class folders without images (their labels then never occur);
            by default they are an error, as with torchvision's ``ImageFolder``.
        decode_to: ``"array"`` (default): items hold a uint8 NumPy array; ``"pil"``: the
            decoded ``PIL.Image.Image`` (already read, its file closed), for a per-item
            transform that works on PIL images and returns arrays (PIL images do not collate).
            An array costs a copy of the image, and a PIL transform another to make an image
            of it again: for random-resized-crop at 224 of 500x375 JPEGs, 15-20% of the
            item's CPU (0.5-1 ms of 3-5 ms; ``benchmarks/w8_items.py``).

    Attributes:
        classes: the class names, sorted; ``label`` indexes this list.
        class_to_idx: class name -> label.
        files: every image's path, in index order.
        targets: every image's label, in index order (a NumPy int64 array).

    Raises:
        ValueError: if ``root`` is not a folder, holds no class folder with images, or (unless
            ``allow_empty``) a class folder without images.
    """

    def __init__(
        self, root: str | os.PathLike[str], *, extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
        mode: str = "RGB", decode_to: str = "array", allow_empty: bool = False,
    ) -> None:
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise ValueError(f"root must be a folder of class folders, got {self.root!r}")
        if decode_to not in DECODE_TO:
            raise ValueError(f"decode_to must be one of {DECODE_TO}, got {decode_to!r}")
        self.decode_to = decode_to
        super().__init__(self.root)
        suffixes = tuple(e.lower() for e in extensions)
        self.classes = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        files: list[str] = []
        labels: list[int] = []
        for label, name in enumerate(self.classes):
            folder = os.path.join(self.root, name)
            for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
                dirnames.sort()
                for filename in sorted(filenames):
                    if filename.lower().endswith(suffixes):
                        files.append(os.path.join(dirpath, filename))
                        labels.append(label)
        if not files:
            raise ValueError(
                f"root {self.root!r} holds no images with extensions {suffixes} in class folders "
                "(expected root/<class>/<file>)"
            )
        empty = sorted(set(self.classes) - {self.classes[label] for label in set(labels)})
        if empty and not allow_empty:
            raise ValueError(
                f"root {self.root!r}: the class folders {empty} hold no images with extensions "
                f"{suffixes}; remove them or pass allow_empty=True"
            )
        self.files = files
        self.targets = np.asarray(labels, dtype=np.int64)
        self.mode = mode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Any:
        """Item ``index``, ``(image, label)``, as the loader's workers read it (``ds[0]``, as
        with torchvision's ``ImageFolder``)."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        n = len(self.files)
        if not -n <= index < n:
            raise IndexError(f"index {index} is out of range for {n} images")
        return self.fetch_items(np.asarray([index % n], dtype=np.int64))[0]

    def fetch_items(self, indices: IndexArray) -> list[Any]:
        read = self.open_image if self.decode_to == "pil" else self.decode
        return [(read(self.files[i]), int(self.targets[i])) for i in indices.tolist()]

    def decode(self, path: str) -> np.ndarray:
        """The image at ``path`` as a uint8 array (errors name the file)."""
        image = self.open_image(path)
        try:
            return np.asarray(image)
        finally:
            image.close()

    def open_image(self, path: str) -> Any:
        """The image at ``path`` as a decoded ``PIL.Image.Image`` in ``mode``, its file closed
        (errors name the file)."""
        image_module = _pil_image()
        try:
            with image_module.open(path) as image:
                if image.mode != self.mode:  # (a JPEG is RGB already: no copy to convert)
                    return image.convert(self.mode)
                image.load()  # decoded here, in the worker, before the file is closed
                return image
        except Exception as e:
            raise OSError(f"cannot decode image {path!r}: {e}") from e

    def __repr__(self) -> str:
        pil = ", decode_to='pil'" if self.decode_to == "pil" else ""
        return (
            f"ImageFolder(root={self.root!r}, classes={len(self.classes)}, images={len(self)}"
            f"{pil})"
        )


def _pil_image() -> Any:
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError(
            "ImageFolder decodes images with Pillow: pip install 'minibatcher[images]'"
        ) from e
    return Image
