"""Omniglot (Lake et al. 2015) read straight from the shipped zips.

The two "minimal" background zips hold 10 alphabets between them, Greek and Latin twice with
identical images; after removing the duplicates there are 242 characters from 8 alphabets, drawn
20 times each by different people.  Images are returned as float tensors with strokes at 1.0 on
a 0.0 background, shape ``(characters, 20, 1, size, size)``.

The default split is by alphabet, so every method in every lesson is tested on alphabets it has
never seen:

============  =============================================  ==========
split         alphabets                                      characters
============  =============================================  ==========
``train``     Balinese, Greek, Korean, Latin, Sanskrit        156
``val``       Early_Aramaic                                   22
``test``      Japanese_(katakana), Tagalog                    64
============  =============================================  ==========
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..integrity import atomic_write, content_digest, file_sha256
from ..paths import cache_dir, data_root, data_root_origin
from ..validation import positive_int

ZIP_NAMES = ("images_background_small1.zip", "images_background_small2.zip")
DRAWINGS_PER_CHARACTER = 20
ALPHABET_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("Balinese", "Greek", "Korean", "Latin", "Sanskrit"),
    "val": ("Early_Aramaic",),
    "test": ("Japanese_(katakana)", "Tagalog"),
}
SPLITS = tuple(ALPHABET_SPLITS)
_CACHE_VERSION = 1
_MEMORY: dict[tuple[str, int], Omniglot] = {}


def _decode(source: str | os.PathLike | BinaryIO | bytes, size: int) -> np.ndarray:
    """PNG -> ``(size, size)`` float32 array, strokes 1.0 on 0.0 (area-averaged when shrunk)."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with Image.open(source) as img:
            gray = img.convert("L")
    except UnidentifiedImageError as err:
        raise ValueError(
            f"could not read {source!r} as an image: give the path of (or an open file holding) a PNG"
            " drawing in Omniglot's format, dark strokes on a light background"
        ) from err
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.Resampling.BOX)
    return 1.0 - np.asarray(gray, dtype=np.float32) / 255.0


#: how a drawing's side is checked (:func:`read_image`, :func:`load_omniglot`, :func:`~.image_folder.image_folder`)
SIZE_HINT = " (pixels per side, e.g. 28)"


def read_image(source: str | os.PathLike | BinaryIO | bytes, size: int = 28) -> torch.Tensor:
    """Read one Omniglot-format PNG exactly as the loader does.

    Args:
        source: a path, an open binary file or the PNG's bytes.
        size: side of the square output in pixels.

    Returns:
        ``(1, size, size)`` float32 tensor, strokes 1.0 on a 0.0 background.
    """
    return torch.from_numpy(_decode(source, positive_int("size", size, SIZE_HINT))).unsqueeze(0)


@dataclass(frozen=True)
class Omniglot:
    """Characters and their drawings.

    Attributes:
        images: ``(characters, drawings, 1, H, W)`` float32, strokes 1.0 on 0.0.
        alphabets: the alphabet of each character.
        characters: each character's folder name within its alphabet (``character01`` ...),
            with a ``/rot90`` style suffix for rotated copies.
    """

    images: torch.Tensor
    alphabets: tuple[str, ...]
    characters: tuple[str, ...]

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def names(self) -> tuple[str, ...]:
        """``Alphabet/characterNN`` for every character."""
        return tuple(f"{a}/{c}" for a, c in zip(self.alphabets, self.characters))

    @property
    def alphabet_names(self) -> tuple[str, ...]:
        """The distinct alphabets, in order of first appearance."""
        return tuple(dict.fromkeys(self.alphabets))

    @property
    def alphabet_versions(self) -> tuple[str, ...]:
        """The alphabet of every character, with its rotation and mirroring: ``Greek``, ``Greek/rot90``, ...

        A rotated or mirrored alphabet is an alphabet of its own (see :meth:`rotated`, :meth:`mirrored`).
        """
        return tuple(a + c[c.index("/"):] if "/" in c else a for a, c in zip(self.alphabets, self.characters))

    def subset(self, index: list[int] | torch.Tensor) -> Omniglot:
        """The characters at ``index`` (a list of positions)."""
        index = torch.as_tensor(index, dtype=torch.long)
        pos = index.tolist()
        return Omniglot(
            self.images[index],
            tuple(self.alphabets[i] for i in pos),
            tuple(self.characters[i] for i in pos),
        )

    def select(self, alphabets: str | tuple[str, ...] | list[str]) -> Omniglot:
        """Only the characters of the named alphabets."""
        if isinstance(alphabets, str):
            alphabets = (alphabets,)
        known = self.alphabet_names
        unknown = [a for a in alphabets if a not in known]
        if unknown:
            raise ValueError(f"unknown alphabet(s) {unknown}; choose from {list(known)}")
        wanted = set(alphabets)
        return self.subset([i for i, a in enumerate(self.alphabets) if a in wanted])

    def rotated(self) -> Omniglot:
        """Add the 90, 180 and 270 degree rotations of every character as new characters.

        Returns 4x the characters; use for training data only, never for evaluation.
        """
        turns = [torch.rot90(self.images, k, dims=(-2, -1)) for k in range(4)]
        suffix = ["", "/rot90", "/rot180", "/rot270"]
        return Omniglot(
            torch.cat(turns),
            self.alphabets * 4,
            tuple(c + s for s in suffix for c in self.characters),
        )

    def mirrored(self) -> Omniglot:
        """Add the left-right mirror image of every character as a new character.

        Returns 2x the characters (after :meth:`rotated`, the 8 symmetries of the square); use for
        training data only, never for evaluation.
        """
        return Omniglot(
            torch.cat([self.images, torch.flip(self.images, dims=(-1,))]),
            self.alphabets * 2,
            self.characters + tuple(c + "/mirror" for c in self.characters),
        )

    def flat(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``: all drawings as ``(characters*drawings, 1, H, W)`` and their class ids."""
        c, d = self.images.shape[:2]
        x = self.images.reshape(c * d, *self.images.shape[2:])
        y = torch.arange(c).repeat_interleave(d)
        return x, y


def _zip_paths(root: str | os.PathLike | None) -> list[Path]:
    folder = Path(root) if root is not None else data_root() / "omniglot"
    paths = [folder / name for name in ZIP_NAMES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        origin = "root=" if root is not None else data_root_origin()
        raise ValueError(
            f"Omniglot data not found: {missing} missing from {folder} (looked there because of {origin}). "
            "The zips ship inside the package, in metalearn_lite/data/omniglot/; in a repository checkout "
            "restore them (git checkout metalearn_lite/data/omniglot), else reinstall the package; or pass root= "
            "the folder that holds the two zips, or point METALEARN_LITE_DATA at a folder whose omniglot/ "
            "subfolder holds them."
        )
    return paths


_ZIP_HASHES: dict[tuple[str, int, int], str] = {}


def _zip_hash(path: Path) -> str:
    """SHA-256 of a zip's bytes (remembered while its size and modification time stay the same)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _ZIP_HASHES:
        _ZIP_HASHES[key] = file_sha256(path)
    return _ZIP_HASHES[key]


def _cache_key(paths: list[Path], size: int) -> str:
    """The decoded data's name: the image size and the SHA-256 of each zip's bytes."""
    h = hashlib.sha256(f"v{_CACHE_VERSION}-{size}".encode())
    for p in paths:
        h.update(f"{p.name}-{_zip_hash(p)}".encode())
    return h.hexdigest()[:16]


def restore_hint(path: Path) -> str:
    """How to get a shipped data file back: a ``git checkout`` when it lies in a git checkout, else a reinstall."""
    path = path.resolve()
    root = next((p for p in path.parents if (p / ".git").exists()), None)
    if root is not None:
        return (f"restore it with `git -C {root} checkout -- {path.relative_to(root)}`, or reinstall the package")
    return "put an intact copy back (the repository's data/omniglot/ folder holds it), or reinstall the package"


def _read_zip(path: Path) -> dict[str, bytes]:
    """Every PNG of a zip, its bytes checked against the zip's CRC; ``ValueError`` naming a damaged file."""
    try:
        with zipfile.ZipFile(path) as zf:
            return {name: zf.read(name) for name in sorted(zf.namelist()) if name.endswith(".png")}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
        raise ValueError(f"the Omniglot zip {path} is damaged ({type(err).__name__}: {err}); "
                         f"{restore_hint(path)}") from err


def _decode_zips(paths: list[Path], size: int) -> Omniglot:
    entries: dict[tuple[str, str], list[bytes]] = {}
    for path in paths:
        seen_here: set[tuple[str, str]] = set()
        for name, data in _read_zip(path).items():
            parts = name.split("/")
            if len(parts) != 4 or not parts[3].endswith(".png"):
                continue
            key = (parts[1], parts[2])
            if key in entries and key not in seen_here:
                continue  # Greek and Latin are in both zips: keep the first copy
            seen_here.add(key)
            entries.setdefault(key, []).append(data)
    keys = sorted(entries)
    bad = [k for k in keys if len(entries[k]) != DRAWINGS_PER_CHARACTER]
    if bad:
        raise ValueError(f"corrupt Omniglot zips: {bad[:3]} do not hold 20 drawings each; "
                         f"{restore_hint(paths[0])} (and the other zip beside it)")
    images = np.stack([np.stack([_decode(b, size) for b in entries[k]]) for k in keys])
    return Omniglot(
        torch.from_numpy(images).unsqueeze(2),
        tuple(k[0] for k in keys),
        tuple(k[1] for k in keys),
    )


def load_omniglot(size: int = 28, root: str | os.PathLike | None = None, cache: bool = True) -> Omniglot:
    """All 242 characters x 20 drawings of the shipped minimal splits, duplicates removed.

    Decoding the 4840 PNGs takes a few seconds; the result is kept in memory and on disk (under
    ``$METALEARN_LITE_CACHE``, default ``~/.cache/metalearn_lite``) so later loads take well under
    a second.  The disk cache is named by the SHA-256 of the zips' bytes and carries a SHA-256 of the decoded
    images, checked when it is read: a cache that does not match is decoded again, never trusted.

    Args:
        size: side of the square images in pixels (default 28; 105 is the original).
        root: folder holding the two zips (default: the package's ``data/omniglot``, or
            ``$METALEARN_LITE_DATA/omniglot``).
        cache: read and write the caches; ``False`` always decodes from the zips.
    """
    size = positive_int("size", size, SIZE_HINT)
    paths = _zip_paths(root)
    key = _cache_key(paths, size)
    mem_key = (str(paths[0].resolve().parent) + key, size)
    if cache and mem_key in _MEMORY:
        return _copy(_MEMORY[mem_key])
    file = cache_dir() / f"omniglot-{size}px-{key}.pt"
    data = None
    if cache and file.is_file():
        try:
            blob = torch.load(file, weights_only=True)
            digest = blob.pop("sha256")
            if digest == content_digest(blob):
                data = Omniglot(blob["images"], tuple(blob["alphabets"]), tuple(blob["characters"]))
        except Exception:  # a damaged cache is rebuilt, never trusted
            data = None
    if data is None:
        data = _decode_zips(paths, size)
        if cache:
            _write_cache(file, data)
    if cache:
        _MEMORY[mem_key] = data
        return _copy(data)
    return data


def _copy(data: Omniglot) -> Omniglot:
    return Omniglot(data.images.clone(), data.alphabets, data.characters)


def _write_cache(file: Path, data: Omniglot) -> None:
    try:
        blob = {"images": data.images, "alphabets": list(data.alphabets), "characters": list(data.characters)}
        blob["sha256"] = content_digest(blob)
        buffer = io.BytesIO()
        torch.save(blob, buffer)
        atomic_write(file, buffer.getvalue())
    except OSError:
        pass  # a read-only home is no reason to fail; we simply decode again next time


def omniglot_split(
    split: str = "train",
    size: int = 28,
    by: str = "alphabet",
    rotations: bool = False,
    root: str | os.PathLike | None = None,
    seed: int = 0,
    mirrors: bool = False,
) -> Omniglot:
    """One split of Omniglot.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: image side in pixels.
        by: ``"alphabet"`` (default: test alphabets are never seen in training) or
            ``"character"`` (characters shuffled with ``seed`` and cut 156/22/64, so every
            alphabet appears in every split).
        rotations: add 90/180/270 degree rotations as extra classes (training split only).
        root: folder holding the zips.
        seed: shuffling seed for ``by="character"``.
        mirrors: add the mirror image of every class (after rotations) as an extra class
            (training split only).
    """
    if split not in ALPHABET_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
    for name, on in (("rotations", rotations), ("mirrors", mirrors)):
        if on and split != "train":
            raise ValueError(
                f"{name} add training classes; they are not allowed on the {split!r} split "
                "(evaluate on the real characters only)"
            )
    data = load_omniglot(size=size, root=root)
    if by == "alphabet":
        out = data.select(ALPHABET_SPLITS[split])
    elif by == "character":
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
        counts = {s: len(data.select(a)) for s, a in ALPHABET_SPLITS.items()}
        start = {"train": 0, "val": counts["train"], "test": counts["train"] + counts["val"]}[split]
        out = data.subset(order[start : start + counts[split]].sort().values)
    else:
        raise ValueError(f"unknown split kind by={by!r}; choose 'alphabet' or 'character'")
    out = out.rotated() if rotations else out
    return out.mirrored() if mirrors else out
