"""A folder of images, one subfolder per class, read into tensors.

The layout is torchvision's ``ImageFolder``'s::

    root/
        cat/  001.png  002.jpg ...
        dog/  a.png  b/c.jpeg ...       (images in nested folders belong to the class too)

Unlike :func:`~metalearn_lite.datasets.omniglot.read_image`, which inverts Omniglot's dark strokes to
1.0 on a 0.0 background, nothing is inverted here: pixel values are the image's own, scaled to ``[0, 1]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..validation import positive_int
from .omniglot import SIZE_HINT

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` (any depth), sorted, skipping hidden files and folders."""
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not _hidden(p, folder)
    )


def _pixels(img: Image.Image, size: int, grayscale: bool) -> np.ndarray:
    """An open image -> ``(size, size)`` or ``(size, size, 3)`` float32 in ``[0, 1]``."""
    img = ImageOps.exif_transpose(img)  # photos taken sideways come out upright
    if img.mode.startswith("I"):  # 16-bit grayscale PNG: convert("L") would saturate it to white
        img = Image.fromarray(np.asarray(img, dtype=np.float32) / 65535.0)
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.LANCZOS)
        gray = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return gray if grayscale else np.repeat(gray[..., None], 3, axis=-1)
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA"))
    img = img.convert("L" if grayscale else "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.float32) / 255.0


def _read(path: Path, size: int, grayscale: bool) -> np.ndarray:
    """One image file -> ``(C, size, size)`` float32 in ``[0, 1]``."""
    try:
        with Image.open(path) as img:
            pixels = _pixels(img, size, grayscale)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"could not read the image {path}: {err}. Delete or replace the file (or give it a "
                         "non-image extension so that it is skipped)") from err
    return pixels[None] if grayscale else pixels.transpose(2, 0, 1)


def image_folder(
    root: str | os.PathLike, size: int = 28, grayscale: bool = True
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Read every image under ``root``, labelled by its class subfolder.

    Args:
        root: a folder with one subfolder per class.  Class names are the subfolder names, sorted; class
            ``i`` is the ``i``-th.  Images are files ending in .png .jpg .jpeg .bmp .gif .webp (any case),
            at any depth below their class folder; other files and anything hidden (``.name``, e.g.
            ``.ipynb_checkpoints``) are skipped.
        size: side of the square output in pixels.  Images are resized (antialiased) to ``size x size``;
            images that are not square are stretched, not cropped.
        grayscale: one channel (luminance) if true, else three (RGB).

    Returns:
        ``(x, y, class_names)``: ``x`` ``(num_images, C, size, size)`` float32 in ``[0, 1]`` (``C`` = 1 or 3;
        not inverted, transparent pixels shown on white, the first frame of an animation), ``y``
        ``(num_images,)`` int64 class ids, and the class names.  Images are ordered by class, then by path.
        Use them as ``EpisodeSampler(x, y)``.
    """
    size = positive_int("size", size, SIZE_HINT)
    folder = Path(root)
    if not folder.exists():
        raise ValueError(f"image folder {folder} does not exist: pass the folder that holds one subfolder per class")
    if not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder: pass the folder that holds one subfolder per class")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        loose = len(_image_files(folder))
        raise ValueError(
            f"{folder} has no class subfolders" + (f" (it holds {loose} images directly)" if loose else "")
            + ": put each class's images in a subfolder of its own, named after the class"
        )
    files = [_image_files(folder / name) for name in classes]
    for name, found in zip(classes, files):
        if not found:
            raise ValueError(f"class folder {folder / name} holds no images ({', '.join(IMAGE_SUFFIXES)}): "
                             "add some, or move the folder out of the dataset")
    paths = [p for found in files for p in found]
    x = np.empty((len(paths), 1 if grayscale else 3, size, size), dtype=np.float32)
    for i, path in enumerate(paths):
        x[i] = _read(path, size, grayscale)
    y = torch.arange(len(classes)).repeat_interleave(torch.tensor([len(f) for f in files]))
    return torch.from_numpy(x), y, classes
