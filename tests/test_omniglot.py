"""Omniglot loading, deduplication, splits, rotations, the disk cache and read_image."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from conftest import OMNIGLOT_DIR, REPO

from metalearn_lite import load_omniglot, omniglot_split, read_image
from metalearn_lite.datasets import omniglot as omniglot_module

EXPECTED_ALPHABETS = {
    "Balinese",
    "Early_Aramaic",
    "Greek",
    "Japanese_(katakana)",
    "Korean",
    "Latin",
    "Sanskrit",
    "Tagalog",
}
SPLIT_ALPHABETS = {
    "train": {"Balinese", "Greek", "Korean", "Latin", "Sanskrit"},
    "val": {"Early_Aramaic"},
    "test": {"Japanese_(katakana)", "Tagalog"},
}
SPLIT_SIZES = {"train": 156, "val": 22, "test": 64}


def _character_folders(zip_name: str, alphabet: str) -> set[str]:
    with zipfile.ZipFile(OMNIGLOT_DIR / zip_name) as zf:
        return {
            parts[2]
            for parts in (n.split("/") for n in zf.namelist())
            if len(parts) == 4 and parts[1] == alphabet and parts[3].endswith(".png")
        }


# ---------------------------------------------------------------- the full data set


def test_shape_dtype_and_range(omniglot):
    im = omniglot.images
    assert tuple(im.shape) == (242, 20, 1, 28, 28)
    assert im.dtype == torch.float32
    assert float(im.min()) == 0.0
    assert float(im.max()) == 1.0
    assert len(omniglot) == 242


def test_strokes_on_black_background(omniglot):
    im = omniglot.images
    # the top-left corner is background in every drawing, all four corners in nearly all
    assert bool((im[..., 0, 0] == 0).all())
    corners = im[..., [0, 0, -1, -1], [0, -1, 0, -1]]
    assert float((corners == 0).all(-1).float().mean()) > 0.99
    # most pixels are background; every drawing has at least one full-intensity stroke pixel
    assert float((im == 0).float().mean()) > 0.5
    assert bool((im.flatten(1).amax(1) == 1.0).all())


def test_exactly_eight_alphabets(omniglot):
    assert set(omniglot.alphabets) == EXPECTED_ALPHABETS
    assert len(omniglot.alphabet_names) == 8
    assert len(omniglot.alphabets) == len(omniglot.characters) == 242
    assert len(set(omniglot.names)) == 242


@pytest.mark.parametrize("alphabet", ["Greek", "Latin"])
def test_duplicated_alphabets_appear_once(omniglot, alphabet):
    folders = _character_folders("images_background_small1.zip", alphabet)
    assert folders == _character_folders("images_background_small2.zip", alphabet)
    assert len(folders) > 0
    assert omniglot.alphabets.count(alphabet) == len(folders)
    assert {c for a, c in zip(omniglot.alphabets, omniglot.characters, strict=True) if a == alphabet} == folders


def test_characters_ordered_by_alphabet_then_name(omniglot):
    keys = list(zip(omniglot.alphabets, omniglot.characters, strict=True))
    assert keys == sorted(keys)


def test_no_two_drawings_identical(omniglot):
    assert torch.unique(omniglot.images.flatten(1), dim=0).shape[0] == 242
    assert torch.unique(omniglot.images.flatten(0, 1).flatten(1), dim=0).shape[0] == 242 * 20


# ---------------------------------------------------------------- splits


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_alphabet_split(split):
    data = omniglot_split(split)
    assert len(data) == SPLIT_SIZES[split]
    assert set(data.alphabets) == SPLIT_ALPHABETS[split]
    assert tuple(data.images.shape[1:]) == (20, 1, 28, 28)


def test_alphabet_splits_disjoint_and_cover_everything(omniglot):
    names = {s: set(omniglot_split(s).names) for s in SPLIT_SIZES}
    assert not names["train"] & names["val"]
    assert not names["train"] & names["test"]
    assert not names["val"] & names["test"]
    assert names["train"] | names["val"] | names["test"] == set(omniglot.names)


def test_split_images_match_full_data(omniglot):
    data = omniglot_split("val")
    index = [omniglot.names.index(n) for n in data.names]
    assert torch.equal(data.images, omniglot.images[index])


def test_character_split_sizes_disjoint_and_mixed(omniglot):
    splits = {s: omniglot_split(s, by="character", seed=3) for s in SPLIT_SIZES}
    for s, data in splits.items():
        assert len(data) == SPLIT_SIZES[s]
    names = {s: set(d.names) for s, d in splits.items()}
    assert not names["train"] & names["val"]
    assert not names["train"] & names["test"]
    assert not names["val"] & names["test"]
    assert len(names["train"] | names["val"] | names["test"]) == 242
    # a character split mixes alphabets: the test split is no longer just the two test alphabets
    assert len(set(splits["test"].alphabets)) > 2
    assert len(set(splits["val"].alphabets)) > 1
    assert set(splits["train"].alphabets) != SPLIT_ALPHABETS["train"]


def test_character_split_deterministic_for_seed():
    a = omniglot_split("test", by="character", seed=7)
    b = omniglot_split("test", by="character", seed=7)
    c = omniglot_split("test", by="character", seed=8)
    assert a.names == b.names
    assert torch.equal(a.images, b.images)
    assert a.names != c.names


# ---------------------------------------------------------------- rotations


def test_rotations_quadruple_training_classes():
    plain = omniglot_split("train")
    rot = omniglot_split("train", rotations=True)
    n = len(plain)
    assert len(rot) == 4 * n == 624
    assert tuple(rot.images.shape) == (624, 20, 1, 28, 28)
    assert torch.equal(rot.images[:n], plain.images)
    for k, suffix in enumerate(["", "/rot90", "/rot180", "/rot270"]):
        block = rot.images[k * n : (k + 1) * n]
        assert torch.equal(block, torch.rot90(plain.images, k, dims=(-2, -1)))
        assert rot.characters[k * n : (k + 1) * n] == tuple(c + suffix for c in plain.characters)
    # one image by hand
    assert torch.equal(rot.images[n + 5, 3, 0], torch.rot90(plain.images[5, 3, 0]))
    assert not torch.equal(rot.images[n + 5, 3, 0], plain.images[5, 3, 0])
    assert len(set(rot.names)) == 624


@pytest.mark.parametrize("split", ["val", "test"])
def test_rotations_refused_outside_training(split):
    with pytest.raises(ValueError, match="rotations"):
        omniglot_split(split, rotations=True)


def test_mirrors_double_the_training_classes_after_rotations():
    rot = omniglot_split("train", rotations=True)
    both = omniglot_split("train", rotations=True, mirrors=True)
    n = len(rot.characters)
    assert both.images.shape[0] == 2 * n
    assert torch.equal(both.images[:n], rot.images)
    assert torch.equal(both.images[n:], torch.flip(rot.images, dims=(-1,)))
    assert both.characters[n + 5] == rot.characters[5] + "/mirror" and both.alphabets[n + 5] == rot.alphabets[5]
    with pytest.raises(ValueError, match="mirrors"):
        omniglot_split("test", mirrors=True)


# ---------------------------------------------------------------- sizes


def test_custom_size():
    data = load_omniglot(size=32)
    assert tuple(data.images.shape) == (242, 20, 1, 32, 32)
    assert data.images.dtype == torch.float32
    assert 0.0 <= float(data.images.min()) and float(data.images.max()) <= 1.0
    split = omniglot_split("val", size=32)
    assert tuple(split.images.shape) == (22, 20, 1, 32, 32)


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_bad_size_rejected(size):
    with pytest.raises(ValueError, match="positive int"):
        load_omniglot(size=size)


# ---------------------------------------------------------------- the disk cache

_SUBPROCESS = """
import sys, time
import torch
from metalearn_lite import load_omniglot
t0 = time.perf_counter()
data = load_omniglot()
seconds = time.perf_counter() - t0
torch.save({"images": data.images, "names": list(data.names)}, sys.argv[1])
print(f"SECONDS={seconds:.6f}")
"""


def test_disk_cache_makes_a_fresh_process_fast(omniglot, private_cache, tmp_path):
    files = sorted(private_cache.glob("omniglot-28px-*.pt"))
    assert len(files) == 1, f"expected one cache file in {private_cache}, found {files}"
    out = tmp_path / "loaded.pt"
    env = dict(os.environ, METALEARN_LITE_CACHE=str(private_cache))
    proc = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS, str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    line = [x for x in proc.stdout.splitlines() if x.startswith("SECONDS=")]
    seconds = float(line[-1].split("=")[1])
    assert seconds < 1.0, f"cached load took {seconds:.2f} s in a fresh process"
    blob = torch.load(out, weights_only=True)
    assert torch.equal(blob["images"], omniglot.images)
    assert tuple(blob["names"]) == omniglot.names


def test_corrupt_cache_is_rebuilt(omniglot, private_cache, tmp_path, monkeypatch):
    name = sorted(private_cache.glob("omniglot-28px-*.pt"))[0].name
    folder = tmp_path / "cache"
    folder.mkdir()
    bad = folder / name
    bad.write_bytes(b"this is not a torch file")
    monkeypatch.setenv("METALEARN_LITE_CACHE", str(folder))
    monkeypatch.setattr(omniglot_module, "_MEMORY", {})  # force a read of the disk cache
    data = load_omniglot()
    assert torch.equal(data.images, omniglot.images)
    assert data.names == omniglot.names
    # the damaged file was replaced by a good one
    blob = torch.load(bad, weights_only=True)
    assert torch.equal(blob["images"], omniglot.images)


def test_cache_false_decodes_and_writes_nothing(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("METALEARN_LITE_CACHE", str(folder))
    data = load_omniglot(size=20, cache=False)
    assert tuple(data.images.shape) == (242, 20, 1, 20, 20)
    assert not folder.exists() or not any(folder.iterdir())


def test_loaded_copy_is_independent(omniglot):
    a = load_omniglot()
    a.images.zero_()
    b = load_omniglot()
    assert torch.equal(b.images, omniglot.images)


# ---------------------------------------------------------------- read_image


@pytest.fixture(scope="module")
def tagalog_png(tmp_path_factory):
    """``(path, bytes)`` of the first drawing of Tagalog/character01, taken from the zip."""
    with zipfile.ZipFile(OMNIGLOT_DIR / "images_background_small2.zip") as zf:
        names = sorted(
            n for n in zf.namelist() if n.startswith("images_background_small2/Tagalog/character01/")
            and n.endswith(".png")
        )
        assert len(names) == 20
        raw = zf.read(names[0])
    path = tmp_path_factory.mktemp("png") / names[0].split("/")[-1]
    path.write_bytes(raw)
    return path, raw


def _loader_tensor(omniglot) -> torch.Tensor:
    index = omniglot.names.index("Tagalog/character01")
    return omniglot.images[index, 0]


def test_read_image_path_matches_loader(omniglot, tagalog_png):
    path, _ = tagalog_png
    expected = _loader_tensor(omniglot)
    for source in (path, str(path)):
        got = read_image(source)
        assert got.shape == (1, 28, 28)
        assert got.dtype == torch.float32
        assert torch.equal(got, expected)
    # and it is not some other drawing of the same character
    assert not torch.equal(read_image(path), omniglot.images[omniglot.names.index("Tagalog/character01"), 1])


def test_read_image_file_object_matches_loader(omniglot, tagalog_png):
    path, _ = tagalog_png
    with open(path, "rb") as f:
        got = read_image(f)
    assert torch.equal(got, _loader_tensor(omniglot))


def test_read_image_bytes_matches_loader(omniglot, tagalog_png):
    _, raw = tagalog_png
    assert torch.equal(read_image(raw), _loader_tensor(omniglot))
    assert torch.equal(read_image(io.BytesIO(raw)), _loader_tensor(omniglot))


def test_read_image_other_size(tagalog_png):
    _, raw = tagalog_png
    big = read_image(raw, size=105)
    assert big.shape == (1, 105, 105)
    # the original is 1-bit: at full size every pixel is exactly stroke or background
    assert set(np.unique(big.numpy()).tolist()) == {0.0, 1.0}


def test_read_image_rejects_non_images():
    with pytest.raises(ValueError, match="PNG"):
        read_image(b"definitely not a png file")


def test_read_image_rejects_size_zero(tagalog_png):
    _, raw = tagalog_png
    with pytest.raises(ValueError, match="positive int"):
        read_image(raw, size=0)
