"""Checks for lesson 01's exercises: an honest train/held-out split, and the random-label control.

Each check runs the reader's function on cases whose answer is known (every image is filled with
its own id, so the check can tell exactly which drawing went where) and says *what* is wrong:
a drawing in both sets, a class missing, labels that do not follow the images, a shuffle that
changes the class counts or ignores the generator.  ``check_x(fn)`` prints "Correct! ..." or
"Not yet: ..." and returns a bool; ``strict=True`` raises :class:`CheckFailed` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .exercises import CheckFailed, report

__all__ = ["CheckFailed", "check_random_labels", "check_split"]


def _id_images(classes: int, drawings: int, side: int = 4) -> torch.Tensor:
    """``(classes, drawings, 1, side, side)``: image ``(c, d)`` is filled with the value ``c * 100 + d``."""
    ids = (torch.arange(classes).unsqueeze(1) * 100 + torch.arange(drawings)).float()
    return ids.view(classes, drawings, 1, 1, 1).expand(classes, drawings, 1, side, side).clone()


def _tensor(got: Any, what: str) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what} is a {type(got).__name__}; return torch tensors")
    return got


def _split(fn: Callable[[torch.Tensor, int, int, torch.Generator], Any]) -> str:
    for classes, drawings, shots, held_out in [(4, 20, 1, 5), (6, 20, 5, 5), (3, 10, 7, 3)]:
        images = _id_images(classes, drawings)
        got = fn(images.clone(), shots, held_out, torch.Generator().manual_seed(0))
        if got is None:
            raise CheckFailed("your function returned None: return (x_train, y_train, x_test, y_test)")
        if not isinstance(got, (tuple, list)) or len(got) != 4:
            raise CheckFailed("return four things: (x_train, y_train, x_test, y_test)")
        xtr, ytr, xte, yte = (_tensor(t, name) for t, name in zip(got, ("x_train", "y_train", "x_test", "y_test")))
        case = f"{classes} classes of {drawings} drawings, shots={shots}, held_out={held_out}"
        want = {"x_train": (classes * shots, 1, 4, 4), "y_train": (classes * shots,),
                "x_test": (classes * held_out, 1, 4, 4), "y_test": (classes * held_out,)}
        for (name, shape), t in zip(want.items(), (xtr, ytr, xte, yte)):
            if tuple(t.shape) != shape:
                raise CheckFailed(f"with {case}, {name} has shape {tuple(t.shape)} but should be {shape}: "
                                  "flatten (class, drawing) into one batch dimension")
        id_tr, id_te = xtr[:, 0, 0, 0].long(), xte[:, 0, 0, 0].long()
        for ids, y, name in ((id_tr, ytr, "training"), (id_te, yte, "held-out")):
            if not torch.equal(ids // 100, y.long()):
                raise CheckFailed(f"with {case}, some {name} labels do not belong to their images: the label of a "
                                  "drawing of class c must be c (use the class index, not the drawing's position)")
            counts = torch.bincount(ids // 100, minlength=classes)
            per = shots if name == "training" else held_out
            if not torch.equal(counts, torch.full((classes,), per)):
                raise CheckFailed(f"with {case}, the {name} set has {counts.tolist()} drawings per class; every "
                                  f"class needs exactly {per}. Split each class's drawings, not the whole pile")
            if len(set(ids.tolist())) != len(ids):
                raise CheckFailed(f"with {case}, the {name} set holds the same drawing twice")
        shared = set(id_tr.tolist()) & set(id_te.tolist())
        if shared:
            first = min(shared)
            raise CheckFailed(f"with {case}, {len(shared)} drawing(s) are in both sets (e.g. drawing {first % 100} "
                              f"of class {first // 100}): a held-out drawing must never be trained on")
    return "every class gives K drawings to training and different ones to the held-out set."


def check_split(fn: Callable[[torch.Tensor, int, int, torch.Generator], Any], strict: bool = False) -> None:
    """``fn(images (C, D, 1, H, W), shots, held_out, generator) -> (x_train, y_train, x_test, y_test)``."""
    return report(_split, fn, strict)


def _random_labels(fn: Callable[[torch.Tensor, torch.Generator], Any]) -> str:
    y = torch.arange(10).repeat_interleave(5)
    a = _tensor(fn(y.clone(), torch.Generator().manual_seed(0)), "the result")
    if a.shape != y.shape:
        raise CheckFailed(f"the result has shape {tuple(a.shape)}; it must have y's shape {tuple(y.shape)}")
    if torch.equal(a, y):
        raise CheckFailed("the labels came back unchanged: shuffle them (torch.randperm with the generator)")
    if not torch.equal(torch.bincount(a, minlength=10), torch.bincount(y, minlength=10)):
        raise CheckFailed("the classes no longer have 5 examples each: drawing new labels at random (randint) changes "
                          "the counts; permute the existing labels instead, so only the image-label pairing is lost")
    again = _tensor(fn(y.clone(), torch.Generator().manual_seed(0)), "the result")
    other = _tensor(fn(y.clone(), torch.Generator().manual_seed(1)), "the result")
    if not torch.equal(a, again):
        raise CheckFailed("the same generator seed gave two different shuffles: draw the permutation from the "
                          "generator you are given (torch.randperm(n, generator=generator))")
    if torch.equal(a, other):
        raise CheckFailed("two different generator seeds gave the same shuffle: use the generator argument")
    return "the labels are permuted: every class keeps its count, but which image has which label is now noise."


def check_random_labels(fn: Callable[[torch.Tensor, torch.Generator], Any], strict: bool = False) -> None:
    """``fn(y (B,), generator) -> (B,)``: the same labels in a random order."""
    return report(_random_labels, fn, strict)
