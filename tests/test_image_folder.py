"""image_folder: layout, ordering, pixel values, resizing and the errors for bad folders and files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metalearn_lite.datasets.image_folder import image_folder


def _save(path: Path, pixels: np.ndarray | tuple[int, ...], mode: str = "RGB", size: int = 10) -> None:
    """Save an image: a solid colour (a tuple) or the given uint8 pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(pixels, tuple):
        img = Image.new(mode, (size, size), pixels if len(pixels) > 1 else pixels[0])
    else:
        img = Image.fromarray(pixels)
    img.save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Classes b_dog (3 images, one nested), a_cat (2), c (1); plus files and folders that must be skipped."""
    _save(tmp_path / "b_dog" / "2.JPG", (0, 0, 255))
    _save(tmp_path / "b_dog" / "1.png", (255, 0, 0))
    _save(tmp_path / "b_dog" / "sub" / "3.Png", (0, 255, 0))
    _save(tmp_path / "a_cat" / "x.bmp", (255, 255, 255))
    _save(tmp_path / "a_cat" / "y.webp", (51, 51, 51))
    _save(tmp_path / "c" / "only.gif", (0, 0, 0), mode="P")
    _save(tmp_path / "c" / ".hidden.png", (9, 9, 9))
    _save(tmp_path / "c" / ".ipynb_checkpoints" / "only-checkpoint.png", (9, 9, 9))
    _save(tmp_path / ".ipynb_checkpoints" / "x.png", (9, 9, 9))  # a hidden folder is not a class
    (tmp_path / "c" / "notes.txt").write_text("not an image")
    (tmp_path / "README.md").write_text("loose files in root are ignored")
    return tmp_path


def test_layout_labels_and_order(folder):
    x, y, names = image_folder(folder, size=6, grayscale=False)
    assert names == ["a_cat", "b_dog", "c"]
    assert x.shape == (6, 3, 6, 6) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist() == [0, 0, 1, 1, 1, 2]
    # ordered by class, then by path: x.bmp, y.webp | 1.png, 2.JPG, sub/3.Png | only.gif
    colours = x.mean(dim=(2, 3))
    expected = torch.tensor([[1, 1, 1], [0.2, 0.2, 0.2], [1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 0]])
    torch.testing.assert_close(colours, expected, atol=0.02, rtol=0)  # webp and JPEG are lossy


def test_grayscale_is_luminance_and_not_inverted(folder):
    x, y, _ = image_folder(folder, size=5)
    assert x.shape == (6, 1, 5, 5)
    levels = x.mean(dim=(1, 2, 3))
    # white stays 1.0 and black 0.0 (Omniglot's read_image would invert them); red is 0.299 luminance
    torch.testing.assert_close(levels[[0, 2, 5]], torch.tensor([1.0, 76 / 255, 0.0]), atol=0.01, rtol=0)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_resize_is_antialiased_and_stretches(tmp_path):
    checker = (np.indices((64, 96)).sum(0) % 2 * 255).astype(np.uint8)  # 1-pixel checkerboard, not square
    _save(tmp_path / "a" / "checker.png", checker)
    x, _, _ = image_folder(tmp_path, size=8)
    assert x.shape == (1, 1, 8, 8)
    # area-aware resampling averages the checkerboard to grey; nearest-neighbour would give only 0s or 1s
    torch.testing.assert_close(x, torch.full_like(x, 0.5), atol=0.03, rtol=0)


def test_transparency_16_bit_and_exif(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4] = (0, 0, 0, 255)  # top half opaque black, bottom half transparent (black underneath)
    _save(tmp_path / "a" / "alpha.png", rgba)
    deep = np.full((8, 8), 32768, np.uint16)  # 16-bit grey at half intensity
    _save(tmp_path / "a" / "deep.png", deep)
    img = Image.fromarray(np.array([[0] * 4 + [255] * 4] * 4, np.uint8))  # 8 wide, 4 tall: black | white
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: display rotated 90 degrees clockwise, as phones save portraits
    img.save(tmp_path / "a" / "photo.png", exif=exif)
    x, _, _ = image_folder(tmp_path, size=8)
    alpha, deep_x, photo = x[:, 0]
    torch.testing.assert_close(alpha[:3], torch.zeros(3, 8))
    torch.testing.assert_close(alpha[5:], torch.ones(3, 8))  # transparent shows white, not the black beneath
    torch.testing.assert_close(deep_x, torch.full((8, 8), 0.5), atol=0.01, rtol=0)  # not saturated to white
    assert float(photo[:3].max()) < 0.05 and float(photo[5:].min()) > 0.95  # black on top after rotation


def test_rgb_of_a_grayscale_file_repeats_the_channel(tmp_path):
    _save(tmp_path / "a" / "g.png", (102,), mode="L")
    x, _, _ = image_folder(tmp_path, size=4, grayscale=False)
    torch.testing.assert_close(x, torch.full((1, 3, 4, 4), 0.4))


def test_missing_and_non_folder_root(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        image_folder(tmp_path / "nope")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        image_folder(tmp_path / "file.png")


def test_no_class_subfolders(tmp_path):
    with pytest.raises(ValueError, match="no class subfolders: put each class"):
        image_folder(tmp_path)
    _save(tmp_path / "loose.png", (1, 2, 3))
    _save(tmp_path / ".hidden" / "a.png", (1, 2, 3))
    with pytest.raises(ValueError, match=r"no class subfolders \(it holds 1 images directly\)"):
        image_folder(tmp_path)


def test_class_without_images_is_named(tmp_path):
    _save(tmp_path / "full" / "a.png", (1, 2, 3))
    (tmp_path / "empty_one").mkdir()
    (tmp_path / "empty_one" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"class folder .*empty_one holds no images"):
        image_folder(tmp_path)


@pytest.mark.parametrize("content", [b"this is not an image", "truncated"])
def test_unreadable_image_is_named(tmp_path, content):
    _save(tmp_path / "a" / "good.png", (1, 2, 3))
    bad = tmp_path / "a" / "bad.jpg"
    if content == "truncated":
        _save(bad, (np.random.default_rng(0).integers(0, 256, (64, 64, 3))).astype(np.uint8))
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    else:
        bad.write_bytes(content)
    with pytest.raises(ValueError, match=r"could not read the image .*bad\.jpg.*Delete or replace"):
        image_folder(tmp_path)


@pytest.mark.parametrize("size", [0, -3, True, 2.5, "28"])
def test_bad_size(folder, size):
    with pytest.raises(ValueError, match="size must be a positive int"):
        image_folder(folder, size=size)
