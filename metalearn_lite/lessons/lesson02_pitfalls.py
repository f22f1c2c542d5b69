"""Mistakes worth seeing once, kept here so that the lessons can run them (never use them for real work).

* :func:`naive_metric_loss` is a "metric learning loss" copied from post to post: the sum of the
  distances of same-class pairs minus the sum over all pairs.  It is WRONG; lesson 02 trains with
  it to show what happens.
* :func:`fit_small_embedding` trains a tiny embedding with any loss ``loss_fn(z, y)`` and records
  how its scale evolves, which is how the lesson compares the wrong loss with a correct one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..distances import squared_euclidean
from ..models import MLP


def naive_metric_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """WRONG, for demonstration only: ``sum_{same class} d(z_i, z_j) - sum_{all pairs} d(z_i, z_j)``.

    ``d`` is the Euclidean distance and pairs run over ``i != j``.  The loss is wrong for two reasons:

    1. "all pairs" contains the same-class pairs, so the first sum cancels against part of the
       second, and what is left is ``-sum_{different class} d(z_i, z_j)``: nothing pulls examples
       of one class together any more.
    2. What is left is linear in the distances with a negative sign, so it is unbounded below:
       scaling every embedding by ``c`` scales the loss by ``c``
       (``naive_metric_loss(c * z, y) == c * naive_metric_loss(z, y)``).  Gradient descent
       lowers it most cheaply by blowing the embedding up, without bound, whatever the classes.

    The contrastive loss (:func:`~metalearn_lite.algorithms.metric.contrastive_loss`) fixes both:
    positive pairs are pulled in by ``d^2``, and negative pairs are pushed only until they are a
    margin ``m`` apart (``max(0, m - d)^2`` is zero beyond it), so the margin sets the scale.

    Args:
        z: ``(B, D)`` embeddings.  y: ``(B,)`` integer labels.
    """
    d = (squared_euclidean(z, z) + 1e-12).sqrt()
    off_diagonal = ~torch.eye(len(y), dtype=torch.bool, device=z.device)
    same = (y.unsqueeze(0) == y.unsqueeze(1)) & off_diagonal
    return d[same].sum() - d[off_diagonal].sum()


@dataclass
class EmbeddingRun:
    """What :func:`fit_small_embedding` recorded, one entry per step (before that step's update).

    Attributes:
        losses: the training loss.
        spreads: the mean Euclidean distance between two embeddings of the batch (the scale).
        ratios: mean same-class distance / mean different-class distance (scale-free: below 1 means
            classes are tighter than the gaps between them).
        z: the final embeddings ``(B, D)``, after the last update.
    """

    losses: list[float] = field(default_factory=list)
    spreads: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    z: torch.Tensor | None = None


def distance_stats(z: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """``(mean distance over all pairs, mean same-class / mean different-class distance)``."""
    d = (squared_euclidean(z, z) + 1e-12).sqrt()
    off = ~torch.eye(len(y), dtype=torch.bool, device=z.device)
    same = (y.unsqueeze(0) == y.unsqueeze(1)) & off
    diff = y.unsqueeze(0) != y.unsqueeze(1)
    return float(d[off].mean()), float(d[same].mean() / d[diff].mean().clamp_min(1e-12))


def fit_small_embedding(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 60,
    lr: float = 1e-2,
    hidden: int = 64,
    out_features: int = 2,
    seed: int = 0,
) -> EmbeddingRun:
    """Train a one-hidden-layer MLP embedding of ``x`` with ``loss_fn(z, y)`` by full-batch Adam.

    Small on purpose (a fraction of a second for a hundred images): it exists to watch what a loss
    does to the *scale* and the *grouping* of an embedding, not to make a good one.

    Args:
        loss_fn: ``(z (B, D), y (B,)) -> scalar``.
        x: ``(B, ...)`` inputs (flattened to ``(B, features)``).  y: ``(B,)`` labels.
        steps: optimisation steps.  lr: Adam's learning rate.
        hidden, out_features: the MLP's hidden width and embedding size.
        seed: seeds the MLP's initial weights.
    """
    x = x.reshape(len(x), -1).float()
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    net = MLP(x.shape[1], (hidden,), out_features)
    torch.set_rng_state(gen_state)  # leave the caller's random stream as it was
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    run = EmbeddingRun()
    for _ in range(steps):
        z = net(x)
        loss = loss_fn(z, y)
        spread, ratio = distance_stats(z.detach(), y)
        run.losses.append(float(loss.detach()))
        run.spreads.append(spread)
        run.ratios.append(ratio)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        run.z = net(x)
    return run
