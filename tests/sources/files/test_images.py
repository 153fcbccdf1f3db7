"""ImageFolder: torchvision's layout, decoded with PIL in the workers; the random-resized-crop
recipe of the guide, driven by the per-item rng."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from files_helpers import check_exact_resume, check_exactly_once

from minibatcher import DataLoader
from minibatcher.sources import ImageFolder

Image = pytest.importorskip("PIL.Image")
pytestmark = pytest.mark.timeout(60)

CLASSES = ("cat", "dog", "emu")
PER_CLASS = 5


def make_folder(root: Path) -> Path:
    """3 classes x 5 solid-grey 24x16 JPEGs; image k has grey level 10 * k (its identity)."""
    k = 0
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for j in range(PER_CLASS):
            pixels = np.full((16, 24, 3), 10 * k, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"img{j}.JPEG", quality=95)
            k += 1
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("images"))


def ids(batch: tuple[np.ndarray, np.ndarray]) -> list[int]:
    images, _labels = batch
    return np.rint(images.reshape(len(images), -1).mean(axis=1) / 10).astype(int).tolist()


def test_layout_classes_files_and_items(folder: Path) -> None:
    source = ImageFolder(folder)
    assert source.classes == list(CLASSES)
    assert source.class_to_idx == {"cat": 0, "dog": 1, "emu": 2}
    assert len(source) == len(source.files) == 15
    assert source.files[0].endswith("cat/img0.JPEG")
    assert source.targets.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    image, label = DataLoader(source, batch_size=None).one_batch()
    assert image.dtype == np.uint8
    assert image.shape == (16, 24, 3)
    assert label == 0


def test_each_image_exactly_once_everywhere(folder: Path) -> None:
    reference = check_exactly_once(
        ImageFolder(folder), ids, list(range(15)), batch_size=4, shuffle=True, seed=0
    )
    images, labels = reference[0]
    assert images.shape == (4, 16, 24, 3)
    assert labels.dtype == np.int64
    assert all((np.array(ids(b)) // PER_CLASS == b[1]).all() for b in reference)


def crop_box(width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """The guide's random-resized-crop box (docs/guide/files.md)."""
    area = height * width * rng.uniform(0.08, 1.0)
    ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    w = round(min(width, np.sqrt(area * ratio)))
    h = round(min(height, np.sqrt(area / ratio)))
    x0 = int(rng.integers(0, width - w + 1))
    y0 = int(rng.integers(0, height - h + 1))
    return x0, y0, x0 + w, y0 + h


def random_resized_crop(item: Any, rng: np.random.Generator) -> Any:
    """The guide's recipe (docs/guide/files.md), at 8x8."""
    image, label = item
    height, width = image.shape[:2]
    box = crop_box(width, height, rng)
    crop = Image.fromarray(image).resize((8, 8), Image.Resampling.BILINEAR, box=box)
    return np.asarray(crop).transpose(2, 0, 1), label


def test_random_resized_crop_recipe_is_the_same_whatever_the_workers(folder: Path) -> None:
    kwargs: dict[str, Any] = {"batch_size": 5, "shuffle": True, "seed": 1}
    kwargs["transform"] = random_resized_crop
    check_exactly_once(ImageFolder(folder), ids, list(range(15)), **kwargs)
    with DataLoader(ImageFolder(folder), **kwargs) as dl:
        (images, _), *_ = dl
    assert images.shape == (5, 3, 8, 8)
    assert images.dtype == np.uint8


def random_resized_crop_pil(item: Any, rng: np.random.Generator) -> Any:
    """The guide's recipe on ``decode_to="pil"`` items: the same box, cropped from the image."""
    image, label = item
    crop = image.resize((8, 8), Image.Resampling.BILINEAR, box=crop_box(*image.size, rng))
    return np.asarray(crop).transpose(2, 0, 1), label


def test_pil_items_crop_to_exactly_the_array_recipe_whatever_the_workers(tmp_path: Path) -> None:
    root = tmp_path / "noisy"
    rng = np.random.default_rng(0)
    for name in CLASSES:  # noisy images: a crop that differed by a pixel would show
        (root / name).mkdir(parents=True)
        for j in range(3):
            pixels = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"img{j}.png")
    pil = ImageFolder(root, decode_to="pil")
    image, label = pil.fetch_items(np.array([4]))[0]
    assert isinstance(image, Image.Image)
    assert image.mode == "RGB"
    assert (np.asarray(image) == ImageFolder(root).fetch_items(np.array([4]))[0][0]).all()
    assert label == 1
    kwargs: dict[str, Any] = {"batch_size": 4, "shuffle": True, "seed": 3}
    with DataLoader(ImageFolder(root), transform=random_resized_crop, **kwargs) as dl:
        expected = list(dl)
    for config in ({}, {"num_workers": 2, "worker_type": "thread"},
                   {"num_workers": 2, "mp_context": "fork"}):
        with DataLoader(pil, transform=random_resized_crop_pil, **kwargs, **config) as dl:
            got = list(dl)
        assert len(got) == len(expected)
        for (a, la), (b, lb) in zip(got, expected, strict=True):
            assert (a == b).all(), config
            assert (la == lb).all(), config
    check_exact_resume(pil, transform=random_resized_crop_pil, **kwargs)


def test_pil_items_name_a_corrupt_file_and_bad_options_are_refused(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    (root / "emu" / "img1.JPEG").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(OSError, match=r"cannot decode image .*emu/img1.JPEG"):
        list(DataLoader(ImageFolder(root, decode_to="pil"), batch_size=4,
                        transform=random_resized_crop_pil))
    with pytest.raises(ValueError, match=r"decode_to must be one of \('array', 'pil'\), got 'x'"):
        ImageFolder(root, decode_to="x")
    assert "decode_to='pil'" in repr(ImageFolder(root, decode_to="pil"))


def test_resume_at_every_batch(folder: Path) -> None:
    check_exact_resume(ImageFolder(folder), batch_size=4, shuffle=True, seed=2)


def test_a_corrupt_image_names_its_file(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    (root / "dog" / "img2.JPEG").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(OSError, match=r"cannot decode image .*dog/img2.JPEG"):
        list(DataLoader(ImageFolder(root), batch_size=4))


def test_bad_roots_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="root must be a folder"):
        ImageFolder(tmp_path / "missing")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds no images"):
        ImageFolder(tmp_path / "empty")


def test_items_by_index_as_torchvisions(folder: Path) -> None:
    source = ImageFolder(folder)
    image, label = source[6]
    assert (image.shape, label) == ((16, 24, 3), 1)
    assert abs(int(image.mean()) - 60) <= 2  # image k has grey level 10 * k
    assert source[-1][1] == 2
    with pytest.raises(IndexError, match="index 15 is out of range for 15 images"):
        source[15]
    with pytest.raises(TypeError, match="index must be an int, got str"):
        source["0"]  # type: ignore[index]


def test_an_empty_class_folder_is_refused_unless_allowed(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "root")
    (root / "fox").mkdir()
    (root / "fox" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"class folders \['fox'\] hold no images.*allow_empty"):
        ImageFolder(root)
    source = ImageFolder(root, allow_empty=True)
    assert source.classes == ["cat", "dog", "emu", "fox"]
    assert len(source) == 15
