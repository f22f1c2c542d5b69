"""A generated image-folder dataset of coloured shape patterns, for trying the library on "your own" data.

Each class is a random composition of 2-4 filled polygons, ellipses and stars in colours from a class
palette; each example is that pattern redrawn at a random small rotation, scale and offset, with small
colour changes, on a randomly tinted background.  The result is an ordinary image folder
(``root/class_XX/NN.png``, RGB) to read with :func:`~metalearn_lite.datasets.image_folder.image_folder`::

    x, y, names = image_folder(make_shapes("my_shapes"), size=32, grayscale=False)   # x (400, 3, 32, 32)
"""

from __future__ import annotations

import colorsys
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..validation import int_at_least

MARKER = ".metalearn_lite_shapes"
_SUPERSAMPLE = 4  # drawn this many times larger, then area-averaged down: antialiased edges
_CLASS_DIR = re.compile(r"class_\d+")
_IMAGE_FILE = re.compile(r"\d+\.png")

Part = tuple[np.ndarray, np.ndarray]  # (points (P, 2) in [-1, 1] coordinates, RGB colour (3,) in [0, 255])


def _check_int(name: str, value: int, low: int) -> int:
    """:func:`~metalearn_lite.validation.int_at_least`, also for numpy's integers (returned as ``int``)."""
    return int_at_least(name, int(value) if isinstance(value, np.integer) else value, low)


def _outline(rng: np.random.Generator) -> np.ndarray:
    """One random polygon, ellipse or star around the origin: ``(P, 2)`` points, radius about 1."""
    kind = rng.integers(3)
    if kind == 0:  # an irregular convex-ish polygon of 3-7 vertices
        n = int(rng.integers(3, 8))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(0.7, 1.0, n)
    elif kind == 1:  # an ellipse
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        radii = 1.0 / np.sqrt(np.cos(angles) ** 2 + (np.sin(angles) / rng.uniform(0.35, 1.0)) ** 2)
    else:  # a star of 4-7 points
        n = int(rng.integers(4, 8))
        angles = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
        radii = np.where(np.arange(2 * n) % 2 == 0, 1.0, rng.uniform(0.3, 0.6))
    turn = rng.uniform(0, 2 * np.pi)
    return np.stack([radii * np.cos(angles + turn), radii * np.sin(angles + turn)], axis=1)


def _pattern(rng: np.random.Generator) -> list[Part]:
    """A class's pattern: 2-4 shapes at random places and sizes, coloured from a 3-colour palette."""
    hue = rng.uniform()
    palette = [
        np.array(colorsys.hsv_to_rgb((hue + rng.uniform(-0.15, 0.15)) % 1.0, rng.uniform(0.4, 1.0),
                                     rng.uniform(0.25, 0.9))) * 255
        for _ in range(3)
    ]
    parts = []
    for _ in range(int(rng.integers(2, 5))):
        points = _outline(rng) * rng.uniform(0.2, 0.55) + rng.uniform(-0.45, 0.45, 2)
        parts.append((points, palette[int(rng.integers(3))]))
    return parts


def _draw(parts: list[Part], rng: np.random.Generator, size: int) -> Image.Image:
    """One example of a pattern: rotated (+-20 degrees), scaled (0.8-1.1), shifted, recoloured slightly."""
    big = size * _SUPERSAMPLE
    background = tuple(int(c) for c in rng.integers(150, 256, 3))
    img = Image.new("RGB", (big, big), background)
    pen = ImageDraw.Draw(img)
    angle, scale = rng.uniform(-0.35, 0.35), rng.uniform(0.8, 1.1)
    turn = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shift = rng.uniform(-0.12, 0.12, 2)
    for points, colour in parts:
        xy = ((points @ turn.T + shift) * 0.45 + 0.5) * big  # [-1, 1] -> pixels, with a margin
        tint = np.clip(colour * rng.uniform(0.85, 1.15) + rng.uniform(-15, 15, 3), 0, 255)
        pen.polygon([tuple(p) for p in xy.tolist()], fill=tuple(int(c) for c in tint))
    return img.resize((size, size), Image.Resampling.BOX)


def _prepare(root: Path) -> None:
    """Make ``root`` an empty folder holding only the marker, refusing to delete anything make_shapes did not write."""
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} is a file: pass a folder (new or empty) for make_shapes to write into")
    if root.is_dir() and any(root.iterdir()):
        if not (root / MARKER).is_file():
            raise ValueError(f"{root} is not empty and was not written by make_shapes: refusing to write into it so "
                             "that nothing saved there is lost; choose a new or empty folder")
        ours = [d for d in root.iterdir() if _CLASS_DIR.fullmatch(d.name) and d.is_dir() and not d.is_symlink()]
        files = [f for d in ours for f in d.iterdir()]
        foreign = [p for p in root.iterdir() if p.name != MARKER and p not in ours] + [
            f for f in files if not (_IMAGE_FILE.fullmatch(f.name) and f.is_file() and not f.is_symlink())
        ]
        if foreign:
            names = ", ".join(str(p) for p in sorted(foreign)[:3]) + (" ..." if len(foreign) > 3 else "")
            raise ValueError(f"{root} holds an earlier make_shapes dataset but also {names}, which make_shapes did "
                             "not write: move those out, or choose a new or empty folder")
        for f in files:
            f.unlink()
        for d in ours:
            d.rmdir()
    root.mkdir(parents=True, exist_ok=True)


def make_shapes(
    root: str | os.PathLike, classes: int = 20, per_class: int = 20, size: int = 32, seed: int = 0
) -> Path:
    """Write ``classes x per_class`` RGB PNGs of ``size x size`` pixels to ``root/class_XX/NN.png``.

    The same arguments give byte-identical files.  ``root`` must be new, empty, or an earlier make_shapes
    output (recognised by its ``.metalearn_lite_shapes`` marker file), which is replaced; anything else is
    refused, so nothing you saved is overwritten.  Takes well under a second for the default 400 images.

    Returns:
        ``root`` as a ``Path``.
    """
    classes, per_class = _check_int("classes", classes, 1), _check_int("per_class", per_class, 1)
    size, seed = _check_int("size", size, 8), _check_int("seed", seed, 0)
    root = Path(root)
    _prepare(root)
    (root / MARKER).write_text(
        f"written by metalearn_lite make_shapes(classes={classes}, per_class={per_class}, size={size}, seed={seed}); "
        "make_shapes replaces this folder when asked to write here again\n"
    )
    class_digits, file_digits = max(2, len(str(classes - 1))), max(2, len(str(per_class - 1)))
    for c in range(classes):
        parts = _pattern(np.random.default_rng([seed, 0, c]))
        folder = root / f"class_{c:0{class_digits}d}"
        folder.mkdir()
        for j in range(per_class):
            image = _draw(parts, np.random.default_rng([seed, 1, c, j]), size)
            image.save(folder / f"{j:0{file_digits}d}.png", format="PNG")
    return root
