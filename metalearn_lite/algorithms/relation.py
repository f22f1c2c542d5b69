"""Relation Networks (Sung, Yang, Zhang, Xiang, Torr & Hospedales, 2018): a distance that is learned.

The encoder ``f`` keeps feature maps (Conv-4 whose last two blocks do not pool: ``(C, 7, 7)`` on Omniglot).
Each class ``k`` is represented by the sum of its support maps (one map for one shot),

    ``m_k = sum_{i: y_i = k} f(x_i)``                                             ``(C, H, W)``,

which is concatenated along the channels with each query's map and scored by the relation module ``g``:

    ``r_{q,k} = sigmoid( g( [m_k ; f(x_q)] ) )``                                  in ``[0, 1]``.

The paper trains ``r`` by regression onto the one-hot targets, ``sum_{q,k} (r_{q,k} - 1[y_q = k])^2``
(``loss="mse"``, here the mean over queries and classes); ``loss="cross_entropy"`` treats the raw scores
``g(...)`` as logits of a softmax over the classes instead.  Compared with ProtoNet, whose distance to the class
mean is fixed (squared Euclidean), ``g`` learns how to compare a query with a class.

``reduce="mean"`` averages the support maps instead of summing them (the same for one shot).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..fewshot import class_means
from ..models import Conv4, RelationModule
from .batched_classifier import BatchedClassifier

LOSSES = ("mse", "cross_entropy")
REDUCE = ("sum", "mean")


def feature_maps(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``encoder(x)`` checked to be feature maps ``(B, C, H, W)``."""
    z = encoder(x)
    if not isinstance(z, torch.Tensor) or z.dim() != 4 or z.shape[0] != x.shape[0]:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"RelationNet's encoder must map a batch (B, ...) to feature maps (B, C, H, W); given "
                         f"{x.shape[0]} examples it returned {shape}. Return the maps before any flatten or global "
                         "pooling (for Conv-4: Conv4(pools=2, flatten=False))")
    return z


def feature_channels(encoder: nn.Module) -> int:
    """Channels ``C`` of the encoder's feature maps: Conv-4's ``hidden``, else the last ``nn.Conv2d``'s outputs."""
    if isinstance(encoder, Conv4):
        return encoder.hidden
    convs = [m for m in encoder.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"cannot tell the channels of {type(encoder).__name__}'s feature maps (it has no "
                         "nn.Conv2d): pass relation=your module, which scores pairs (P, 2C, H, W)")
    return convs[-1].out_channels


class RelationNet(BatchedClassifier):
    """Relation Network on any encoder that returns feature maps (see the module docstring).

    Args:
        encoder: any ``nn.Module`` mapping ``(B, *x)`` to feature maps ``(B, C, H, W)``; ``None`` gives Conv-4
            with 64 filters, ``norm="batch"`` and max-pools in its first two blocks only
            (``Conv4(pools=2, flatten=False)``).
        relation: any ``nn.Module`` mapping ``P`` pairs ``(P, 2C, H, W)`` to raw scores ``(P,)`` or ``(P, 1)``;
            ``None`` gives the paper's :class:`~metalearn_lite.models.RelationModule` with ``C`` filters (and
            the Conv-4 encoder's norm; batch statistics for an encoder of your own).
        loss: ``"mse"`` (the paper's) or ``"cross_entropy"``.
        reduce: a class's map is the ``"sum"`` (the paper's) or ``"mean"`` of its support maps.

    ``logits`` are the raw scores ``g([m_k ; f(x)])``; their sigmoid is the relation score ``r`` in ``[0, 1]``.
    """

    name = "relation"
    module_args = ("encoder", "relation")

    def __init__(self, encoder: nn.Module | None = None, relation: nn.Module | None = None, loss: str = "mse",
                 reduce: str = "sum") -> None:
        if encoder is None:
            encoder = Conv4(pools=2, flatten=False)
        if not isinstance(encoder, nn.Module):
            raise ValueError(f"encoder must be a torch.nn.Module (or None for Conv-4); got {type(encoder).__name__}")
        if isinstance(encoder, Conv4) and encoder.flatten:
            raise ValueError("RelationNet compares feature maps, but this Conv-4 flattens them: build it with "
                             "Conv4(..., pools=2, flatten=False)")
        if relation is None:
            channels = feature_channels(encoder)
            relation = RelationModule(2 * channels, channels,
                                      norm=encoder.norm if isinstance(encoder, Conv4) else "batch")
        elif not isinstance(relation, nn.Module):
            raise ValueError(f"relation must be a torch.nn.Module (or None for the paper's); got "
                             f"{type(relation).__name__}")
        for what, value, allowed in (("loss", loss, LOSSES), ("reduce", reduce, REDUCE)):
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r}; choose one of {list(allowed)}")
        super().__init__(encoder=encoder, relation=relation, loss=loss, reduce=reduce)
        self.encoder, self.relation = encoder, relation
        self.objective, self.reduce = loss, reduce

    def task_logits(
        self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor, ways: int
    ) -> torch.Tensor:
        """Batched raw relation scores: support ``(T, S, ...)``, labels ``(T, S)`` in ``0..N-1`` -> ``(T, Q, N)``."""
        t, s, q = support_x.shape[0], support_x.shape[1], query_x.shape[1]
        z = feature_maps(self.encoder, torch.cat([support_x.flatten(0, 1), query_x.flatten(0, 1)]))
        maps = z.shape[1:]  # (C, H, W)
        zs, zq = z[: t * s].view(t, s, *maps), z[t * s :].view(t, q, *maps)
        m = class_means(zs.flatten(2), support_y, ways)  # (T, N, C*H*W)
        if self.reduce == "sum":
            m = m * F.one_hot(support_y, ways).sum(1).to(m.dtype).unsqueeze(-1)
        m = m.view(t, 1, ways, *maps).expand(t, q, ways, *maps)
        pairs = torch.cat([m, zq.unsqueeze(2).expand(t, q, ways, *maps)], dim=3)  # (T, Q, N, 2C, H, W)
        raw = self.relation(pairs.flatten(0, 2))
        if not isinstance(raw, torch.Tensor) or raw.numel() != t * q * ways or raw.shape[0] != t * q * ways:
            shape = tuple(raw.shape) if isinstance(raw, torch.Tensor) else type(raw).__name__
            raise ValueError(f"the relation module must give one score per pair: {t * q * ways} pairs "
                             f"{tuple(pairs.shape[3:])} in, {shape} out; end it with a layer of one output")
        return raw.reshape(t, q, ways)

    def episode_loss(self, logits: torch.Tensor, query_y: torch.Tensor) -> torch.Tensor:
        """The paper's regression of ``sigmoid(g)`` onto one-hot targets (``loss="mse"``), or cross-entropy."""
        if self.objective == "mse":
            return F.mse_loss(torch.sigmoid(logits), F.one_hot(query_y, logits.shape[-1]).to(logits.dtype))
        return F.cross_entropy(logits.flatten(0, 1), query_y.flatten())

    def class_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """The relation scores ``sigmoid(g)`` in ``[0, 1]`` (they need not sum to 1 over the classes)."""
        return torch.sigmoid(logits)
