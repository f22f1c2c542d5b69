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
from torch import nn

from ..distances import DISTANCES, cosine_similarity, squared_euclidean
from ..fewshot import class_means
from ..models import Conv4
from .batched_classifier import BatchedClassifier


def embed(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``encoder(x)`` flattened to one vector per example: ``(B, *x)`` -> ``(B, D)``, with a clear error when
    the encoder does not keep the batch dimension."""
    z = encoder(x)
    if not isinstance(z, torch.Tensor) or z.dim() < 1 or z.shape[0] != x.shape[0]:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"the encoder must map a batch (B, ...) to embeddings (B, D); given {x.shape[0]} examples it "
                         f"returned {shape}. Return one row per example (e.g. end forward() with .flatten(1))")
    return z.flatten(1)


def embed_tasks(
    encoder: nn.Module, support_x: torch.Tensor, query_x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed ``(T, S, *x)`` and ``(T, Q, *x)`` in one pass (a batch-statistics norm sees them together) ->
    ``(T, S, D), (T, Q, D)``."""
    t, s, q = support_x.shape[0], support_x.shape[1], query_x.shape[1]
    z = embed(encoder, torch.cat([support_x.flatten(0, 1), query_x.flatten(0, 1)]))
    return z[: t * s].view(t, s, -1), z[t * s :].view(t, q, -1)


class ProtoNet(BatchedClassifier):
    """Prototypical Network on any embedding network.

    Args:
        encoder: any ``nn.Module`` mapping ``(B, *x)`` to ``(B, D)`` (other output shapes are flattened);
            ``None`` gives the course's Conv-4 (64 filters, ``norm="batch"``, one channel).
        distance: ``"euclidean"`` (squared, the paper's) or ``"cosine"`` (with a learned scale).

    Example::

        net = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        method = ProtoNet(net)
        method.predict(support_x, support_y, query_x)        # labels taken from support_y
    """

    name = "protonet"
    module_args = ("encoder",)

    def __init__(self, encoder: nn.Module | None = None, distance: str = "euclidean") -> None:
        if encoder is None:
            encoder = Conv4()
        if not isinstance(encoder, nn.Module):
            raise ValueError(f"encoder must be a torch.nn.Module (or None for Conv-4); got {type(encoder).__name__}")
        super().__init__(encoder=encoder, distance=distance)
        if distance not in DISTANCES:
            raise ValueError(f"unknown distance {distance!r}; choose one of {list(DISTANCES)}")
        self.encoder = encoder
        self.distance = distance
        self.scale = nn.Parameter(torch.tensor(10.0)) if distance == "cosine" else None

    def embed_task(self, support_x: torch.Tensor, query_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed ``(T, S, *x)`` and ``(T, Q, *x)`` in one pass -> ``(T, S, D), (T, Q, D)``."""
        return embed_tasks(self.encoder, support_x, query_x)

    def task_logits(
        self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor, ways: int
    ) -> torch.Tensor:
        """Batched logits: support ``(T, N*K, ...)``, labels ``(T, N*K)`` in ``0..N-1`` -> ``(T, Q, N)``."""
        zs, zq = self.embed_task(support_x, query_x)
        protos = class_means(zs, support_y, ways)
        if self.distance == "euclidean":
            return -squared_euclidean(zq, protos)
        return self.scale * cosine_similarity(zq, protos)
