"""Embeddings trained with a pairwise (Siamese, contrastive) or triplet loss.

Training batches hold ``P`` classes x ``K`` examples (episodes with ``queries=0``); the loss uses
every pair (:func:`~metalearn_lite.algorithms.metric.contrastive_loss`) or mined triplet
(:func:`~metalearn_lite.algorithms.metric.triplet_loss`) in the batch.  As a few-shot classifier
the embedding labels a query by its nearest class mean (``classify="prototype"``) or its nearest
support example (``classify="neighbour"``), under the same distance it was trained with.

:meth:`MetricEmbedding.compile_training` (``train(..., compile=True)``, ``--compile``) is the fast training
path: the encoder in ``channels_last`` and the batch's embedding under ``torch.compile``; evaluation stays eager.
"""

from __future__ import annotations

import torch
from torch import nn

from ..compiling import compile_for_training
from ..distances import DISTANCES, pairwise_distance
from ..episodes import Episode
from ..fewshot import check_task, class_means
from ..models import Conv4
from .base import EpisodicMethod
from .metric import MINING, contrastive_loss, triplet_loss
from .protonet import embed

CLASSIFY = ("prototype", "neighbour")


class MetricEmbedding(EpisodicMethod):
    """An embedding network trained by a metric loss (the cosine distance normalises inside the distance).

    Args:
        encoder: any ``nn.Module`` mapping ``(B, *x)`` to ``(B, D)``; ``None`` gives the course's Conv-4.
        distance: ``"euclidean"`` or ``"cosine"``.
        margin: the loss margin.
        mining: triplet mining (``"batch_hard"``, ``"semi_hard"``, ``"all"``); unused by the contrastive loss.
        classify: as a few-shot classifier, by the nearest class mean (``"prototype"``) or nearest
            support example (``"neighbour"``).

    Training batches are ``P`` classes x ``K`` examples: episodes with no queries (``queries=0``).
    """

    module_args = ("encoder",)
    _compiled_embed = None  # set by compile_training(); used in training mode only

    def __init__(
        self,
        encoder: nn.Module | None = None,
        distance: str = "euclidean",
        margin: float = 1.0,
        mining: str = "batch_hard",
        classify: str = "prototype",
    ):
        if encoder is None:
            encoder = Conv4()
        if not isinstance(encoder, nn.Module):
            raise ValueError(f"encoder must be a torch.nn.Module (or None for Conv-4); got {type(encoder).__name__}")
        super().__init__(encoder=encoder, distance=distance, margin=margin, mining=mining, classify=classify)
        for name, value, allowed in (("distance", distance, DISTANCES), ("mining", mining, MINING),
                                     ("classify", classify, CLASSIFY)):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; choose one of {list(allowed)}")
        self.encoder = encoder
        self.distance, self.margin, self.mining, self.classify = distance, margin, mining, classify

    def compile_training(self) -> None:
        """The fast training path: the encoder moves to ``channels_last`` and the embedding of a training batch,
        ``(B, *x) -> (B, D)``, runs under ``torch.compile``; evaluation keeps the eager embedding.

        The loss stays eager: its masks (``d[pos]``, the checks that the batch has positive and negative pairs)
        depend on the data and split a compiled embedding-and-loss into six graphs, measured no faster than
        the compiled embedding alone, which carries almost all of the work.  Gradients are the eager ones up to
        float rounding (``tests/test_compiled_training.py``); compiling is paid at the first training step; without
        a C++ compiler on a CPU this raises ``ValueError``, as
        :meth:`BatchedClassifier.compile_training <metalearn_lite.algorithms.ProtoNet.compile_training>` does.
        """
        if self._compiled_embed is None:  # a second call would convert the inputs twice
            self._compiled_embed = compile_for_training(self, self.embed_batch)

    def embed_batch(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *x)`` -> ``(B, D)`` embeddings."""
        return embed(self.encoder, x)

    def metric_loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        x = episode.support_x.flatten(0, 1)
        t, s = episode.support_y.shape
        y = (episode.support_y + (torch.arange(t, device=x.device) * s).unsqueeze(1)).flatten()
        compiled = self._compiled_embed is not None and self.training
        z = (self._compiled_embed if compiled else self.embed_batch)(x)
        loss = self.metric_loss(z, y)
        with torch.no_grad():  # leave-one-out nearest-neighbour accuracy within the batch
            d = pairwise_distance(z, z, self.distance)
            d.fill_diagonal_(float("inf"))
            acc = (y[d.argmin(1)] == y).float().mean()
        return loss, acc

    def logits(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        """One task: ``(S, C, H, W), (S,), (Q, C, H, W) -> (Q, N)`` negative distances."""
        classes, targets = check_task(support_x, support_y, query_x)
        z = embed(self.encoder, torch.cat([support_x, query_x]))
        zs, zq = z[: len(support_x)], z[len(support_x) :]
        if self.classify == "prototype":
            return -pairwise_distance(zq, class_means(zs, targets, len(classes)), self.distance)
        d = pairwise_distance(zq, zs, self.distance)  # (Q, S)
        mask = targets.unsqueeze(0) == torch.arange(len(classes), device=d.device).unsqueeze(1)  # (N, S)
        return -torch.where(mask.unsqueeze(0), d.unsqueeze(1), torch.full_like(d.unsqueeze(1), float("inf"))).amin(-1)


class SiameseNet(MetricEmbedding):
    """Siamese network: contrastive loss over every pair in the batch (Hadsell et al. 2006)."""

    name = "siamese"

    def metric_loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return contrastive_loss(z, y, self.margin, self.distance)


class TripletNet(MetricEmbedding):
    """Triplet network with batch-hard or semi-hard mining (Schroff et al. 2015; Hermans et al. 2017)."""

    name = "triplet"

    def metric_loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return triplet_loss(z, y, self.margin, self.mining, self.distance)
