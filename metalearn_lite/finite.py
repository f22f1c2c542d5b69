"""Non-finite numbers (NaN, +-inf) are errors, never results: checks that name where they appeared.

A NaN in an input or a weight makes every score NaN, ``argmax`` then picks class 0 for every query, and
an evaluation reports chance accuracy with a tiny interval, a plausible and wrong answer.  These checks
turn such numbers into errors: :class:`ValueError` for the caller's inputs, :class:`FloatingPointError`
for a model's weights, losses and scores.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def count_non_finite(t: torch.Tensor) -> int:
    """How many entries of a floating-point tensor are NaN or infinite (0 for other dtypes)."""
    if not isinstance(t, torch.Tensor) or not (t.dtype.is_floating_point or t.dtype.is_complex):
        return 0
    return int((~torch.isfinite(t)).sum())


def check_input(t: torch.Tensor, name: str) -> None:
    """``ValueError`` if the input ``name`` holds NaN or infinite values."""
    bad = count_non_finite(t)
    if bad:
        raise ValueError(f"{name} holds {bad} non-finite value(s) (NaN or inf) of {t.numel()}: clean those examples "
                         "(e.g. torch.nan_to_num, or drop them) before passing them in")


def non_finite_weights(module: nn.Module) -> list[str]:
    """Names of ``module``'s parameters and floating-point buffers that hold NaN or infinite values."""
    named = [*module.named_parameters(), *module.named_buffers()]
    return [n for n, t in named if count_non_finite(t.detach())]


def check_weights(module: Any, what: str = "the model") -> None:
    """``FloatingPointError`` naming the weights of ``module`` that hold NaN or infinite values."""
    if not isinstance(module, nn.Module):
        return
    bad = non_finite_weights(module)
    if bad:
        raise FloatingPointError(f"{what}'s weights hold non-finite values (NaN or inf) in {bad[:3]}"
                                 f"{' and more' if len(bad) > 3 else ''}: it is broken (a diverged training run?); "
                                 "reload it from a checkpoint saved before it diverged")


def check_scores(scores: torch.Tensor, what: str) -> None:
    """``FloatingPointError`` if a model's outputs ``what`` hold NaN or infinite values."""
    bad = count_non_finite(scores)
    if bad:
        raise FloatingPointError(f"{what} hold {bad} non-finite value(s) (NaN or inf) on finite inputs: the model "
                                 "overflowed or its weights are broken; reload it from a checkpoint")


def tensors_of(batch: Any, prefix: str = "batch") -> list[tuple[str, torch.Tensor]]:
    """The tensors in a training batch (a tensor, an object with tensor attributes, a tuple, list or dict),
    with a name for each (``support_x``, ``batch[0]``, ...)."""
    if isinstance(batch, torch.Tensor):
        return [(prefix, batch)]
    if isinstance(batch, dict):
        items = list(batch.items())
    elif isinstance(batch, (tuple, list)):
        items = [(f"{prefix}[{i}]", v) for i, v in enumerate(batch)]
    elif hasattr(batch, "__dict__"):
        items = list(vars(batch).items())
    else:
        return []
    return [(str(k), v) for k, v in items if isinstance(v, torch.Tensor)]


def non_finite_inputs(batch: Any) -> list[str]:
    """Names of the tensors in a training batch that hold NaN or infinite values."""
    return [name for name, t in tensors_of(batch) if count_non_finite(t)]
