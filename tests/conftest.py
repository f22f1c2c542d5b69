"""Shared fixtures: a private decoding cache for the whole session, and Omniglot loaded once."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
OMNIGLOT_DIR = REPO / "metalearn_lite" / "data" / "omniglot"

# The tests use small tensors: one thread is as fast, and on a small or busy machine (2 cores
# shared with other work) torch's multi-threaded small ops slow down by 10-100x from thread
# oversubscription.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point METALEARN_LITE_CACHE at a fresh temporary folder so no test touches ~/.cache."""
    folder = tmp_path_factory.mktemp("metalearn_cache")
    old = os.environ.get("METALEARN_LITE_CACHE")
    os.environ["METALEARN_LITE_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("METALEARN_LITE_CACHE", None)
    else:
        os.environ["METALEARN_LITE_CACHE"] = old


@pytest.fixture(scope="session")
def omniglot(private_cache: Path):
    """All 242 characters at 28 px (decoded once, then from memory)."""
    from metalearn_lite import load_omniglot

    return load_omniglot()


@pytest.fixture(scope="session")
def test_split(private_cache: Path):
    from metalearn_lite import omniglot_split

    return omniglot_split("test")


def find_drawing(data_images: torch.Tensor, image: torch.Tensor) -> tuple[int, int]:
    """``(character, drawing)`` of the one drawing in ``(C, D, ...)`` equal to ``image``."""
    hits = (data_images == image).flatten(2).all(-1).nonzero().tolist()
    assert len(hits) >= 1, "image not found in the data"
    return tuple(hits[0])


def check_passes(check, *args) -> str:
    """Run an exercise check in strict mode on a right answer: it must print "Correct!" and return None
    (a notebook cell ending in the check then shows the verdict alone, no echoed value).  Returns what
    the check printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = check(*args, strict=True)
    assert result is None, f"the check returned {result!r}: a notebook cell would echo it after the verdict"
    assert printed.getvalue().startswith("Correct!"), printed.getvalue()
    return printed.getvalue()


def check_fails(check, fn, *words: str) -> str:
    """Run an exercise check in strict mode on a wrong answer: it must fail, naming every one of ``words``."""
    from metalearn_lite.lessons.exercises import CheckFailed

    with pytest.raises(CheckFailed) as err:
        check(fn, strict=True)
    message = str(err.value)
    for word in words:
        assert word in message, f"{word!r} not in: {message}"
    return message


@pytest.fixture(scope="session")
def easy_images() -> tuple[torch.Tensor, torch.Tensor]:
    """An easy synthetic image set for short training tests: 16 classes x 10 noisy copies of a random 1x16x16
    template each, ``(x (160, 1, 16, 16), y (160,))``; train on classes 0..11, test on 12..15."""
    g = torch.Generator().manual_seed(0)
    templates = torch.rand(16, 1, 1, 16, 16, generator=g)
    x = (templates + 0.35 * torch.randn(16, 10, 1, 16, 16, generator=g)).flatten(0, 1)
    return x, torch.arange(16).repeat_interleave(10)
