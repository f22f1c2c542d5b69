"""Worked solutions of lesson 02's exercises (metric learning): try each exercise first."""

from __future__ import annotations

import torch

from .. import lesson02
from ..exercises import Exercise


def _batch_hard_pick():
    z, y = lesson02.toy_batch()
    # Anchor 0 is at the origin. Its class-0 companions are point 1 (d = 0.50) and point 2 (d = 1.63):
    # batch-hard takes the farther, 2. The other classes' points nearest to it: point 3 (d = 1.03).
    return (2, 3), z, y


def _scaling():
    # Contrastive: d^2 and max(0, m - d)^2 are squared lengths, so c^2. Triplet (Euclidean d, not squared):
    # max(0, c d_ap - c d_an + c m) = c max(0, d_ap - d_an + m), so c^1. Naive: a sum of distances, c^1.
    return ({"contrastive": 2, "triplet": 1, "naive": 1},)


def _my_contrastive(z, y, margin):
    d = (((z[:, None, :] - z[None, :, :]) ** 2).sum(-1) + 1e-12).sqrt()   # epsilon: finite gradient at d = 0
    same = y[:, None] == y[None, :]
    positive = same & ~torch.eye(len(y), dtype=torch.bool)
    negative = ~same
    return (d[positive] ** 2).mean() + ((margin - d[negative]).clamp_min(0) ** 2).mean()


def _contrastive():
    return (_my_contrastive,)


def _push_only_loss(z, y, margin):
    d = (((z[:, None, :] - z[None, :, :]) ** 2).sum(-1) + 1e-12).sqrt()
    negative = y[:, None] != y[None, :]
    return ((margin - d[negative]).clamp_min(0) ** 2).mean()


def _push_only():
    from ...datasets.omniglot import omniglot_split

    x = omniglot_split("train").images[:8, :10].flatten(0, 1)   # the pitfall section's 8 characters x 10
    y = torch.arange(8).repeat_interleave(10)
    # Nothing pulls a class together: the classes move apart as wholes, the ratio barely moves: claim C.
    return _push_only_loss, "C", x, y


EXERCISES = [
    Exercise("batch_hard_pick", "predict", lesson02.check_batch_hard_prediction, _batch_hard_pick),
    Exercise("scaling", "derive", lesson02.check_scaling_exponents, _scaling),
    Exercise("contrastive", "implement", lesson02.check_contrastive_loss, _contrastive),
    Exercise("push_only", "ablate", lesson02.check_push_only, _push_only),
]
