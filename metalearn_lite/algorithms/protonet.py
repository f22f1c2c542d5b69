"""Prototypical Networks (Snell, Swersky & Zemel, 2017).

Each class ``c`` is represented by the mean of its embedded support examples,

    ``p_c = 1/|S_c| sum_{x in S_c} f(x)``,

and a query is classified by a softmax over negative distances to the prototypes,

    ``p(y = c | x) = softmax_c( -d(f(x), p_c) )``,

trained with cross-entropy on the queries of each episode.  With the squared Euclidean distance (a
Bregman divergence) the mean is exactly the point minimising the summed distance to a class's
embeddings, and the classifier is linear in ``f(x)``.  ``distance="cosine"`` uses
``logits = s * cos(f(x), p_c)`` with a learned scale ``s`` (cosine lies in ``[-1, 1]``, too
flat a softmax without one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..episodes import Episode
from ..fewshot import check_task
from ..models import Conv4
from .base import EpisodicMethod
from .distances import DISTANCES, cosine_similarity, squared_euclidean


def prototypes(z: torch.Tensor, targets: torch.Tensor, ways: int) -> torch.Tensor:
    """Class means: ``z`` ``(T, S, D)``, ``targets`` ``(T, S)`` in ``0..ways-1`` -> ``(T, ways, D)``."""
    onehot = F.one_hot(targets, ways).to(z.dtype)  # (T, S, N)
    sums = onehot.transpose(1, 2) @ z  # (T, N, D)
    return sums / onehot.sum(1).unsqueeze(-1).clamp_min(1.0)


class ProtoNet(EpisodicMethod):
    """Prototypical Network on a Conv-4 embedding.

    Args:
        hidden: Conv-4 filters per block.
        norm: Conv-4 normalisation (``"batch"``, ``"running"``, ``"none"``).
        distance: ``"euclidean"`` (squared, the paper's) or ``"cosine"``.
        in_channels: image channels.
    """

    name = "protonet"

    def __init__(self, hidden: int = 64, norm: str = "batch", distance: str = "euclidean", in_channels: int = 1):
        super().__init__(hidden=hidden, norm=norm, distance=distance, in_channels=in_channels)
        if distance not in DISTANCES:
            raise ValueError(f"unknown distance {distance!r}; choose one of {list(DISTANCES)}")
        self.encoder = Conv4(in_channels, hidden, norm)
        self.distance = distance
        self.scale = nn.Parameter(torch.tensor(10.0)) if distance == "cosine" else None

    def embed_task(self, support_x: torch.Tensor, query_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed ``(T, S, C, H, W)`` and ``(T, Q, C, H, W)`` in one pass -> ``(T, S, D), (T, Q, D)``."""
        t, s, q = support_x.shape[0], support_x.shape[1], query_x.shape[1]
        z = self.encoder(torch.cat([support_x.flatten(0, 1), query_x.flatten(0, 1)]))
        return z[: t * s].view(t, s, -1), z[t * s :].view(t, q, -1)

    def task_logits(
        self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor, ways: int
    ) -> torch.Tensor:
        """Batched logits: support ``(T, N*K, ...)``, labels ``(T, N*K)`` in ``0..N-1`` -> ``(T, Q, N)``."""
        zs, zq = self.embed_task(support_x, query_x)
        protos = prototypes(zs, support_y, ways)
        if self.distance == "euclidean":
            return -squared_euclidean(zq, protos)
        return self.scale * cosine_similarity(zq, protos)

    def loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        ways = int(episode.support_y.max()) + 1
        logits = self.task_logits(episode.support_x, episode.support_y, episode.query_x, ways)
        loss = F.cross_entropy(logits.flatten(0, 1), episode.query_y.flatten())
        acc = (logits.argmax(-1) == episode.query_y).float().mean()
        return loss, acc

    def logits(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        """One task: ``(S, C, H, W), (S,), (Q, C, H, W) -> (Q, N)``."""
        classes, targets = check_task(support_x, support_y, query_x)
        return self.task_logits(support_x[None], targets[None], query_x[None], len(classes))[0]
