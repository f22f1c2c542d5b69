"""make_shapes: layout, determinism, refusing to overwrite user files, learnability and speed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from metalearn_lite.datasets.image_folder import image_folder
from metalearn_lite.datasets.shapes import MARKER, make_shapes
from metalearn_lite.episodes import EpisodeSampler


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("shapes") / "shapes")


def test_layout(shapes):
    assert (shapes / MARKER).is_file()
    classes = sorted(p.name for p in shapes.iterdir() if p.is_dir())
    assert classes == [f"class_{c:02d}" for c in range(20)]
    for name in classes:
        assert sorted(p.name for p in (shapes / name).iterdir()) == [f"{j:02d}.png" for j in range(20)]
    with Image.open(shapes / "class_07" / "13.png") as img:
        assert img.mode == "RGB" and img.size == (32, 32) and img.format == "PNG"


def test_reads_back_as_coloured_varied_images(shapes):
    x, y, names = image_folder(shapes, size=32, grayscale=False)
    assert x.shape == (400, 3, 32, 32) and names[0] == "class_00"
    assert torch.equal(y, torch.arange(20).repeat_interleave(20))
    assert float((x[:, 0] - x[:, 1]).abs().mean()) > 0.05  # colour, not grey like Omniglot
    assert torch.unique(x.flatten(1), dim=0).shape[0] == 400  # every example differs


def test_same_seed_same_bytes_other_seed_differs(shapes, tmp_path):
    again = _files(make_shapes(tmp_path / "again"))
    assert again == _files(shapes)
    other = _files(make_shapes(tmp_path / "other", seed=1))
    assert other.keys() == again.keys()
    assert sum(other[k] == again[k] for k in again) == 0
    # a class's pattern and examples do not depend on how many classes or examples are asked for
    small = _files(make_shapes(tmp_path / "small", classes=3, per_class=5))
    assert small == {k: v for k, v in again.items() if k[:8] in ("class_00", "class_01", "class_02")
                     and int(k[9:11]) < 5}


def test_rewrites_its_own_output_only(tmp_path):
    root = make_shapes(tmp_path / "s", classes=4, per_class=2, size=8)
    make_shapes(root, classes=2, per_class=3, size=8)  # its own output: replaced, stale classes removed
    assert sorted(p.name for p in root.iterdir()) == [MARKER, "class_00", "class_01"]
    assert len(list(root.rglob("*.png"))) == 6
    mine = root / "class_01" / "my_drawing.png"
    mine.write_bytes(b"precious")
    with pytest.raises(ValueError, match=r"also .*my_drawing\.png, which make_shapes did not write"):
        make_shapes(root, classes=2, per_class=3, size=8)
    assert mine.read_bytes() == b"precious" and len(list(root.rglob("*.png"))) == 7  # nothing deleted


def test_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty and was not written by make_shapes"):
        make_shapes(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    with pytest.raises(ValueError, match="is a file"):
        make_shapes(tmp_path / "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(list(make_shapes(empty, classes=2, per_class=2, size=8).rglob("*.png"))) == 4


def test_wide_numbering_sorts(tmp_path):
    root = make_shapes(tmp_path / "s", classes=101, per_class=1, size=8)
    _, y, names = image_folder(root, size=8)
    assert names[:2] == ["class_000", "class_001"] and names[-1] == "class_100"
    assert torch.equal(y, torch.arange(101))


@pytest.mark.parametrize("kwargs, match", [
    ({"classes": 0}, "classes must be an int >= 1"),
    ({"per_class": True}, "per_class must be an int >= 1"),
    ({"size": 4}, "size must be an int >= 8"),
    ({"seed": -1}, "seed must be an int >= 0"),
    ({"seed": 1.5}, "seed must be an int >= 0"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_shapes(tmp_path / "s", **kwargs)
    assert not (tmp_path / "s").exists()


def test_learnable_but_not_trivial(shapes):
    """5-way 1-shot nearest neighbour on raw pixels: measured 55.7 % (chance is 20 %)."""
    x, y, _ = image_folder(shapes, size=32, grayscale=False)
    ep = EpisodeSampler(x, y, ways=5, shots=1, queries=5, seed=0).sample(1000)
    nearest = torch.cdist(ep.query_x.flatten(2), ep.support_x.flatten(2)).argmin(-1)
    accuracy = float((ep.support_y.gather(1, nearest) == ep.query_y).float().mean())
    assert 0.35 < accuracy < 0.85, accuracy


def test_generation_is_fast(tmp_path):
    times = []
    for i in range(3):  # best of up to 3: a smoke check on a possibly busy machine (measured 0.16 s)
        start = time.perf_counter()
        make_shapes(tmp_path / str(i))
        times.append(time.perf_counter() - start)
        if times[-1] < 2.0:
            break
    assert min(times) < 2.0, f"400 images took {min(times):.2f} s at best"
