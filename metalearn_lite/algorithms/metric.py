"""Metric-learning losses: contrastive (Siamese) and triplet with mining.

Both act on a batch of embeddings ``z`` ``(B, D)`` with integer labels ``y`` ``(B,)`` (a batch of
``P`` classes x ``K`` examples, as :class:`~metalearn_lite.episodes.EpisodeSampler` draws with
``queries=0``), and use every pair or triplet the batch contains.
"""

from __future__ import annotations

import torch

from ..distances import pairwise_distance

MINING = ("batch_hard", "semi_hard", "all")


def _pair_masks(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = y.unsqueeze(0) == y.unsqueeze(1)
    eye = torch.eye(len(y), dtype=torch.bool, device=y.device)
    return same & ~eye, ~same


def _distance(z: torch.Tensor, distance: str) -> torch.Tensor:
    """Pairwise distance used by the losses: Euclidean (not squared) or cosine distance."""
    d = pairwise_distance(z, z, distance)
    return (d + 1e-12).sqrt() if distance == "euclidean" else d


def _checked_pairs(
    z: torch.Tensor, y: torch.Tensor, margin: float, distance: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate a loss's inputs; return the positive and negative pair masks and the distances."""
    if margin <= 0:
        raise ValueError(f"margin must be > 0; got {margin}")
    pos, neg = _pair_masks(y)
    if not pos.any() or not neg.any():
        raise ValueError("the batch needs at least two classes and two examples of some class (shots >= 2)")
    return pos, neg, _distance(z, distance)


def contrastive_loss(
    z: torch.Tensor, y: torch.Tensor, margin: float = 1.0, distance: str = "euclidean"
) -> torch.Tensor:
    """Contrastive loss of Hadsell, Chopra & LeCun (2006) over every pair in the batch.

    ``L = mean_{same} d^2  +  mean_{different} max(0, m - d)^2``

    Same-class pairs are pulled together; different-class pairs are pushed apart only until they
    are ``margin`` apart.  Without the margin the second term has no floor and the loss is
    minimised by sending the embeddings to infinity.  The two means weigh positive and negative
    pairs equally, whatever their counts.

    Args:
        z: ``(B, D)`` embeddings.  y: ``(B,)`` labels.  margin: ``m > 0``.
        distance: ``"euclidean"`` (``d = ||z_i - z_j||``) or ``"cosine"`` (``d = 1 - cos``).
    """
    pos, neg, d = _checked_pairs(z, y, margin, distance)
    return (d[pos] ** 2).mean() + ((margin - d[neg]).clamp_min(0.0) ** 2).mean()


def triplet_loss(
    z: torch.Tensor, y: torch.Tensor, margin: float = 0.5, mining: str = "batch_hard", distance: str = "euclidean"
) -> torch.Tensor:
    """Triplet loss ``max(0, d(a, p) - d(a, n) + m)`` (Schroff et al. 2015) with in-batch mining.

    * ``"batch_hard"`` (Hermans et al. 2017): for each anchor, its farthest positive and nearest
      negative; mean over anchors.
    * ``"semi_hard"`` (Schroff et al. 2015): every (anchor, positive) pair with, as negative, the
      nearest one that is still farther than the positive (``d(a,p) < d(a,n)``); pairs without
      such a negative use the farthest negative.  Mean over pairs.
    * ``"all"``: mean over all triplets with a non-zero loss.

    Args:
        z: ``(B, D)`` embeddings.  y: ``(B,)`` labels.  margin: ``m > 0``.
    """
    if mining not in MINING:
        raise ValueError(f"unknown mining {mining!r}; choose one of {list(MINING)}")
    pos, neg, d = _checked_pairs(z, y, margin, distance)
    big = d.detach().max() + 1.0
    if mining == "batch_hard":
        hardest_pos = torch.where(pos, d, torch.zeros_like(d)).max(dim=1).values
        hardest_neg = torch.where(neg, d, d + big).min(dim=1).values
        has = pos.any(dim=1)
        return (hardest_pos - hardest_neg + margin).clamp_min(0.0)[has].mean()
    if mining == "semi_hard":
        a, p = pos.nonzero(as_tuple=True)
        d_ap = d[a, p].unsqueeze(1)  # (pairs, 1)
        d_an = d[a]  # (pairs, B)
        negs = neg[a]
        semi = negs & (d_an > d_ap)
        nearest_semi = torch.where(semi, d_an, d_an + big).min(dim=1).values
        farthest = torch.where(negs, d_an, torch.zeros_like(d_an)).max(dim=1).values
        d_n = torch.where(semi.any(dim=1), nearest_semi, farthest)
        return (d_ap.squeeze(1) - d_n + margin).clamp_min(0.0).mean()
    if mining == "all":
        losses = d.unsqueeze(2) - d.unsqueeze(1) + margin  # [a, p, n]
        valid = pos.unsqueeze(2) & neg.unsqueeze(1)
        active = losses[valid].clamp_min(0.0)
        n_active = (active > 0).sum()
        return active.sum() / n_active.clamp_min(1)
    raise ValueError(f"unknown mining {mining!r}; choose one of {list(MINING)}")
