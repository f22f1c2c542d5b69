"""Distances between embeddings, in one place for every metric-based method.

All functions take ``a`` ``(..., M, D)`` and ``b`` ``(..., N, D)`` and return ``(..., M, N)``.

* squared Euclidean: ``d(a, b) = ||a - b||^2``; a Bregman divergence, so the mean of a class's
  embeddings is the point that minimises the summed distance to them (Prototypical Networks).
* cosine distance: ``1 - cos(a, b)``, in ``[0, 2]``. Cosine *similarity* is not a distance (it
  grows as points get closer); ``1 - cos`` is not a metric either (no triangle inequality), but
  it is zero for equal directions and grows as they part, which is what a classifier needs.
"""

from __future__ import annotations

import torch

DISTANCES = ("euclidean", "cosine")


def squared_euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a_i - b_j||^2`` for every pair: ``(..., M, D), (..., N, D) -> (..., M, N)``.

    Computed as ``|a|^2 - 2 a.b + |b|^2`` (one matrix product) and clamped at 0 against rounding.
    """
    aa = (a * a).sum(-1, keepdim=True)
    bb = (b * b).sum(-1).unsqueeze(-2)
    return (aa - 2.0 * a @ b.transpose(-1, -2) + bb).clamp_min(0.0)


def cosine_similarity(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``cos(a_i, b_j) = a_i . b_j / (|a_i| |b_j| + eps)`` for every pair: ``(..., M, D), (..., N, D) -> (..., M, N)``.

    The one cosine of the package: the metric methods, the NTM's and the MANN's memory reads use it.
    A zero vector (an empty memory slot) has cosine 0 with everything, and its gradient stays finite.
    """
    dot = a @ b.transpose(-1, -2)
    return dot / (a.norm(dim=-1).unsqueeze(-1) * b.norm(dim=-1).unsqueeze(-2) + eps)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``1 - cos(a_i, b_j)``: ``(..., M, D), (..., N, D) -> (..., M, N)``, values in ``[0, 2]``."""
    return 1.0 - cosine_similarity(a, b)


def pairwise_distance(a: torch.Tensor, b: torch.Tensor, distance: str = "euclidean") -> torch.Tensor:
    """The named distance (``"euclidean"``: squared Euclidean, or ``"cosine"``) for every pair."""
    if distance == "euclidean":
        return squared_euclidean(a, b)
    if distance == "cosine":
        return cosine_distance(a, b)
    raise ValueError(f"unknown distance {distance!r}; choose one of {list(DISTANCES)}")
