"""Checks for lesson 06's exercises: a cosine-classifier head, and freezing the first Conv-4 blocks.

As everywhere in the course, ``check_x(fn)`` prints "Correct! ..." or "Not yet: ..." with what was
wrong (an unnormalised vector, a missing scale, the wrong blocks frozen, batch-norm parameters
left trainable) and returns a bool; ``strict=True`` raises :class:`CheckFailed` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..models import Conv4
from .exercises import CheckFailed, report

__all__ = ["CheckFailed", "check_cosine_logits", "check_freeze"]


def _cosine_logits(fn: Callable[[torch.Tensor, torch.Tensor, float], Any]) -> str:
    g = torch.Generator().manual_seed(5)
    z = torch.randn(7, 6, generator=g) * torch.rand(7, 1, generator=g) * 5  # rows of very different lengths
    w = torch.randn(3, 6, generator=g) * torch.tensor([[0.1], [1.0], [9.0]])
    scale = 4.0
    got = fn(z.clone(), w.clone(), scale)
    if got is None:
        raise CheckFailed("your function returned None: return the (Q, N) logits")
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"your function returned a {type(got).__name__}; return a torch.Tensor")
    if tuple(got.shape) != (7, 3):
        raise CheckFailed(f"for z of shape (7, 6) and w of shape (3, 6) the logits must be (7, 3); got "
                          f"{tuple(got.shape)} (one row per query, one column per class)")
    zn, wn = F.normalize(z, dim=-1), F.normalize(w, dim=-1)
    want = scale * zn @ wn.T
    got = got.double()
    if torch.allclose(got, want.double(), atol=1e-4):
        return "logits = scale * cos(z, w_c): only directions count, so no class wins by the length of its vector."
    if torch.allclose(got, (zn @ wn.T).double(), atol=1e-4):
        raise CheckFailed("these are plain cosines in [-1, 1]: multiply by scale, or the softmax stays nearly flat")
    if torch.allclose(got, (scale * zn @ w.T).double(), atol=1e-4):
        raise CheckFailed("the class vectors w are not normalised: the class with the longest w (the third) wins "
                          "too often. Normalise w along its feature dimension too")
    if torch.allclose(got, (scale * z @ wn.T).double(), atol=1e-4):
        raise CheckFailed("the features z are not normalised: normalise each row of z (F.normalize(z, dim=-1))")
    if torch.allclose(got, (scale * z @ w.T).double(), atol=1e-4):
        raise CheckFailed("this is a plain (scaled) dot product: normalise both z and w to unit length first")
    raise CheckFailed("the values are not scale * cos(z_i, w_c); compute F.normalize(z, dim=-1) @ "
                      "F.normalize(w, dim=-1).T and multiply by scale")


def check_cosine_logits(fn: Callable[[torch.Tensor, torch.Tensor, float], Any], strict: bool = False) -> None:
    """``fn(z (Q, D), w (N, D), scale) -> (Q, N)`` logits ``scale * cos(z_i, w_c)``."""
    return report(_cosine_logits, fn, strict)


def _freeze(fn: Callable[[Conv4, int], Any]) -> str:
    for layers in (0, 1, 3, 4):
        model = Conv4(1, 8, norm="running")
        fn(model, layers)
        blocks = [list(model.features)[i : i + 4] for i in range(0, 16, 4)]
        params = [(b, type(m).__name__, name, p) for b, block in enumerate(blocks) for m in block
                  for name, p in m.named_parameters()]
        for b, kind, pname, p in params:  # first: nothing that should train may be frozen
            if b >= layers and not p.requires_grad:
                raise CheckFailed(f"with layers={layers}, block {b} ({kind}.{pname}) is frozen but should train: "
                                  f"freeze only the first {layers} block(s), counted from the input")
        for b, kind, pname, p in params:
            if b < layers and p.requires_grad:
                hint = (": batch-norm weights are parameters of the block too" if "Norm" in kind else
                        ": set requires_grad_(False) on every parameter of the first blocks")
                raise CheckFailed(f"with layers={layers}, block {b}'s {kind}.{pname} still has requires_grad=True"
                                  + hint)
    return "the first blocks keep their pretrained weights; the optimiser only sees the rest."


def check_freeze(fn: Callable[[Conv4, int], Any], strict: bool = False) -> None:
    """``fn(backbone: Conv4, layers)``: freeze (``requires_grad=False``) the first ``layers`` blocks."""
    return report(_freeze, fn, strict)
