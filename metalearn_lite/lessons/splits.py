"""Train/held-out splits of Omniglot drawings, shared by lessons 01 and 06 (a plain supervised view:
the same characters on both sides, different drawings)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Split:
    """Flat train and held-out sets: ``x`` ``(B, 1, H, W)`` float, ``y`` ``(B,)`` in ``0..C-1``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def split_drawings(images: torch.Tensor, shots: int, held_out: int = 5, seed: int = 0) -> Split:
    """``shots`` training and ``held_out`` test drawings of every class of ``images`` ``(C, D, 1, H, W)``.

    The drawings of each class are shuffled (seeded) and the *last* ``held_out`` are the test set
    for every ``shots``, so a learning curve compares training sets of different sizes on the same
    test drawings.  Train and test never share a drawing.
    """
    if images.dim() != 5:
        raise ValueError(f"images must be grouped as (classes, drawings, 1, H, W); got {tuple(images.shape)}")
    c, d = images.shape[:2]
    if not 1 <= shots <= d - held_out or held_out < 1:
        raise ValueError(f"need 1 <= shots <= {d - held_out} (each class has {d} drawings, {held_out} held out); "
                         f"got shots={shots}, held_out={held_out}")
    g = torch.Generator().manual_seed(seed)
    order = torch.rand(c, d, generator=g).argsort(1)
    train_idx, test_idx = order[:, :shots], order[:, d - held_out :]
    rows = torch.arange(c).unsqueeze(1)
    labels = torch.arange(c)
    return Split(images[rows, train_idx].flatten(0, 1), labels.repeat_interleave(shots),
                 images[rows, test_idx].flatten(0, 1), labels.repeat_interleave(held_out))
