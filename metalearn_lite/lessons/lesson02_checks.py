"""Automatic checks for the exercises of lesson 02 (metric learning).

Each ``check_*`` takes the reader's function and returns ``True`` after printing a confirmation, or
``False`` after printing what was wrong and a hint; ``strict=True`` raises
:class:`~metalearn_lite.lessons.exercises.CheckFailed` instead.  The diagnoses compare the answer
with the usual wrong variants, so the hint names the mistake actually made.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..algorithms.metric import contrastive_loss
from .exercises import CheckFailed, close, report

Tensor = torch.Tensor


def _as_tensor(got: object, what: str) -> Tensor:
    if got is None:
        raise CheckFailed(f"your function returned None: return {what}")
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"your function returned a {type(got).__name__}: return {what} (a torch.Tensor)")
    return got


# ----------------------------------------------------------------------------------------------
# Exercise 1: pairwise squared Euclidean distances


def _pairwise_cases() -> list[tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(2)
    a1, b1 = torch.randn(4, 3, generator=g), torch.randn(6, 3, generator=g)
    a2 = torch.randn(5, 8, generator=g)
    a3, b3 = torch.randn(1, 2, generator=g), torch.randn(3, 2, generator=g)
    return [(a1, b1), (a2, a2.clone()), (a3, b3)]


def _pairwise_sq_dists(fn: Callable[[Tensor, Tensor], Tensor]) -> str:
    for a, b in _pairwise_cases():
        m, n = len(a), len(b)
        want = ((a.double().unsqueeze(1) - b.double().unsqueeze(0)) ** 2).sum(-1)
        got = _as_tensor(fn(a.clone(), b.clone()), f"a tensor of shape ({m}, {n}) holding the squared distances")
        if tuple(got.shape) != (m, n):
            if tuple(got.shape) == (n, m):
                raise CheckFailed(
                    f"for a of shape {tuple(a.shape)} and b of shape {tuple(b.shape)} you returned shape "
                    f"{tuple(got.shape)}: it is transposed. Entry [i, j] must be the distance from a[i] to b[j], "
                    f"so the result is ({m}, {n})"
                )
            raise CheckFailed(
                f"for a of shape {tuple(a.shape)} and b of shape {tuple(b.shape)} you returned shape "
                f"{tuple(got.shape)}, not ({m}, {n}). Hint: broadcast a[:, None, :] - b[None, :, :] to "
                f"({m}, {n}, D), square, and sum over the last dimension"
            )
        if close(got, want):
            continue
        if close(got, want.sqrt()):
            raise CheckFailed(
                "you returned the Euclidean distance ||a_i - b_j||; the exercise asks for its square. "
                "Drop the square root (it is also what makes gradients blow up at zero distance)"
            )
        if (got < -1e-6).any():
            raise CheckFailed(
                f"your distances include negative values (smallest {float(got.min()):.2e}); a squared distance "
                "is never negative. If you expanded it, check the signs in |a|^2 - 2 a.b + |b|^2 (and clamp the "
                "tiny negatives that rounding leaves with .clamp_min(0))"
            )
        if close(got, ((a.double().unsqueeze(1) - b.double().unsqueeze(0)) ** 2).mean(-1)):
            raise CheckFailed("you averaged the squared differences over the D features; sum them instead")
        i, j = divmod(int((got.double() - want).abs().argmax()), n)
        raise CheckFailed(
            f"entry [{i}, {j}] should be ||a[{i}] - b[{j}]||^2 = {float(want[i, j]):.4f}, you returned "
            f"{float(got[i, j]):.4f}. Hint: sum over the features of (a[i] - b[j]) ** 2"
        )
    return "squared Euclidean distances for every pair, with the (M, N) layout every metric method uses."


def check_pairwise_sq_dists(fn: Callable[[Tensor, Tensor], Tensor], strict: bool = False) -> None:
    """Exercise 1: ``fn(a (M, D), b (N, D)) -> (M, N)`` with entries ``||a_i - b_j||^2``."""
    return report(_pairwise_sq_dists, fn, strict)


# ----------------------------------------------------------------------------------------------
# Exercise 2: the contrastive loss over a batch


def _contrastive_cases() -> list[tuple[Tensor, Tensor, float]]:
    g = torch.Generator().manual_seed(3)
    z1 = torch.randn(9, 2, generator=g) * 0.8  # distances around the margin: some hinges active, some not
    y1 = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    z2 = torch.randn(8, 5, generator=g) * 0.6
    y2 = torch.tensor([3, 3, 7, 7, 7, 7, 9, 9])
    z3 = torch.randn(6, 3, generator=g)
    y3 = torch.tensor([1, 0, 1, 0, 2, 2])  # labels not grouped
    return [(z1, y1, 1.0), (z2, y2, 1.5), (z3, y3, 0.7)]


def _contrastive_variants(z: Tensor, y: Tensor, m: float) -> dict[str, Tensor]:
    """The usual wrong versions, each with the hint that names its mistake."""
    z = z.double()
    d2 = ((z.unsqueeze(1) - z.unsqueeze(0)) ** 2).sum(-1)
    d = d2.sqrt()
    same = y.unsqueeze(0) == y.unsqueeze(1)
    eye = torch.eye(len(y), dtype=torch.bool)
    pos, neg = same & ~eye, ~same
    hinge = (m - d).clamp_min(0)
    return {
        "your positive pairs include each example paired with itself (i == j). Those pairs have distance 0: "
        "they do not change the sum but they do change the mean. Exclude the diagonal":
            (d[same] ** 2).mean() + (hinge[neg] ** 2).mean(),
        "negative pairs that are already farther apart than the margin must contribute nothing: use "
        "max(0, m - d) (torch.clamp_min(m - d, 0)) before squaring, not (m - d) alone":
            (d[pos] ** 2).mean() + ((m - d[neg]) ** 2).mean(),
        "square the hinge: the negative term is max(0, m - d)^2, not max(0, m - d)":
            (d[pos] ** 2).mean() + hinge[neg].mean(),
        "d is the Euclidean distance (with the square root); you used the squared distance inside the loss":
            (d2[pos] ** 2).mean() + ((m - d2[neg]).clamp_min(0) ** 2).mean(),
        "the two terms are means, one over the positive pairs and one over the negative pairs, so both kinds "
        "weigh the same whatever their counts; you summed instead of averaging":
            (d[pos] ** 2).sum() + (hinge[neg] ** 2).sum(),
        "you took one mean over all pairs together; take a separate mean over positive pairs and over "
        "negative pairs (there are many more negatives, and they would otherwise dominate)":
            torch.cat([d[pos] ** 2, hinge[neg] ** 2]).mean(),
        "the roles are swapped: same-class pairs are pulled together (d^2) and different-class pairs are "
        "pushed apart (max(0, m - d)^2)":
            (d[neg] ** 2).mean() + (hinge[pos] ** 2).mean(),
    }


def _contrastive(fn: Callable[[Tensor, Tensor, float], Tensor]) -> str:
    for z, y, m in _contrastive_cases():
        got = _as_tensor(fn(z.clone(), y.clone(), m), "the loss as a 0-dimensional tensor")
        if got.numel() != 1:
            raise CheckFailed(
                f"your function returned a tensor of shape {tuple(got.shape)}; the loss is one number: "
                "reduce the pair terms with .mean() (one mean per kind of pair)"
            )
        got = got.reshape(())
        want = contrastive_loss(z.double(), y, margin=m)
        if close(got, want, 1e-5):
            continue
        for hint, value in _contrastive_variants(z, y, m).items():
            if close(got, value, 1e-5):
                raise CheckFailed(hint)
        raise CheckFailed(
            f"for a batch of {len(y)} embeddings with labels {y.tolist()} and margin {m} the loss is "
            f"{float(want):.5f}; you returned {float(got):.5f}. Recall L = mean over same-class pairs (i != j) "
            "of d^2 + mean over different-class pairs of max(0, m - d)^2, with d = ||z_i - z_j||"
        )
    return "your loss matches metalearn_lite.algorithms.metric.contrastive_loss on every batch."


def check_contrastive_loss(fn: Callable[[Tensor, Tensor, float], Tensor], strict: bool = False) -> None:
    """Exercise 2: ``fn(z (B, D), y (B,), margin) -> scalar`` equal to the package's contrastive loss."""
    return report(_contrastive, fn, strict)


# ----------------------------------------------------------------------------------------------
# Exercise 3: which triplets batch-hard mining picks


def _batch_hard_cases() -> list[tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(4)
    out = []
    for labels in ([0, 0, 0, 1, 1, 1, 2, 2, 2], [5, 2, 5, 2, 2, 5, 8, 8]):
        y = torch.tensor(labels)
        z = torch.randn(len(y), 2, generator=g)
        out.append((((z.unsqueeze(1) - z.unsqueeze(0)) ** 2).sum(-1).sqrt(), y))
    return out


def _batch_hard(fn: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]) -> str:
    for d, y in _batch_hard_cases():
        b = len(y)
        got = fn(d.clone(), y.clone())
        if got is None:
            raise CheckFailed("your function returned None: return a pair (positives, negatives) of index tensors")
        try:
            pos, neg = got
        except (TypeError, ValueError) as err:
            raise CheckFailed("return a pair (positives, negatives), two index tensors of shape (B,)") from err
        pos, neg = torch.as_tensor(pos).long().flatten(), torch.as_tensor(neg).long().flatten()
        if len(pos) != b or len(neg) != b:
            raise CheckFailed(
                f"for a batch of {b} anchors return {b} positive and {b} negative indices (one per anchor); "
                f"you returned {len(pos)} and {len(neg)}"
            )
        same = y.unsqueeze(0) == y.unsqueeze(1)
        pos_d = torch.where(same & ~torch.eye(b, dtype=torch.bool), d, torch.full_like(d, -1.0))
        neg_d = torch.where(~same, d, torch.full_like(d, float("inf")))
        want_pos, want_neg = pos_d.argmax(1), neg_d.argmin(1)
        for a in range(b):
            p, n = int(pos[a]), int(neg[a])
            if not (0 <= p < b and 0 <= n < b):
                raise CheckFailed(f"anchor {a}: indices must lie in 0..{b - 1}; you returned ({p}, {n})")
            if p == a:
                raise CheckFailed(
                    f"anchor {a}: you picked the anchor itself as its positive. A positive is another example "
                    "of the same class: mask out the diagonal"
                )
            if y[p] != y[a]:
                raise CheckFailed(f"anchor {a} has label {int(y[a])} but your positive {p} has label {int(y[p])}")
            if y[n] == y[a]:
                raise CheckFailed(f"anchor {a} has label {int(y[a])} and so does your negative {n}: a negative "
                                  "must come from another class")
        if not torch.equal(pos, want_pos):
            nearest = torch.where(same & ~torch.eye(b, dtype=torch.bool), d, torch.full_like(d, float("inf")))
            if torch.equal(pos, nearest.argmin(1)):
                raise CheckFailed(
                    "you chose each anchor's nearest positive: that is the easiest one. Batch-hard takes the "
                    "hardest, the farthest same-class example (argmax of the distance over positives)"
                )
            a = int((pos != want_pos).nonzero()[0])
            raise CheckFailed(
                f"anchor {a}: the farthest example of its class is {int(want_pos[a])} "
                f"(distance {float(d[a, want_pos[a]]):.3f}), you picked {int(pos[a])} "
                f"(distance {float(d[a, pos[a]]):.3f})"
            )
        if not torch.equal(neg, want_neg):
            if torch.equal(neg, torch.where(~same, d, torch.full_like(d, -1.0)).argmax(1)):
                raise CheckFailed(
                    "you chose each anchor's farthest negative: that one is already far away and teaches "
                    "nothing. Batch-hard takes the nearest other-class example (argmin over negatives)"
                )
            a = int((neg != want_neg).nonzero()[0])
            raise CheckFailed(
                f"anchor {a}: the nearest example of another class is {int(want_neg[a])} "
                f"(distance {float(d[a, want_neg[a]]):.3f}), you picked {int(neg[a])} "
                f"(distance {float(d[a, neg[a]]):.3f})"
            )
    return "for every anchor, the farthest positive and the nearest negative: the hardest triplet in the batch."


def check_batch_hard(fn: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], strict: bool = False) -> None:
    """Exercise 3: ``fn(d (B, B) distances, y (B,)) -> (positive index (B,), negative index (B,))``."""
    return report(_batch_hard, fn, strict)
