"""Matching Networks (Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra, 2016).

A query ``x`` is labelled by attention over the support set ``S = {(x_i, y_i)}``:

    ``P(y = k | x, S) = sum_i a(x, x_i) 1[y_i = k]``,
    ``a(x, x_i) = exp(c_i / tau) / sum_j exp(c_j / tau)``,   ``c_i = cos(f(x), g(x_i))``,

a soft nearest-neighbour vote: each support example votes for its label with the softmax weight of its
cosine similarity to the query.  Training minimises the negative log-likelihood of the query labels,
``-log P(y_q | x_q, S)``, on episodes shaped like the test tasks (the episodic protocol, introduced by
this paper).  Compared with ProtoNet, the support examples of a class are not averaged into one
prototype: each keeps its own attention weight.

``tau`` is a temperature.  The paper's softmax runs over the raw cosines (``tau = 1``), which lie in
``[-1, 1]``, so the weights can differ by a factor ``e^2`` at most: a flat vote.  Here ``tau`` starts at
``temperature`` (0.1) and is learned with the encoder (as ``log tau``, so it stays positive), or fixed with
``learn_temperature=False``.  As ``tau -> 0`` the attention puts all its weight on the most similar support
example (cosine nearest neighbour); as ``tau -> inf`` it is uniform (the class frequencies of ``S``).

``f = g`` is the one encoder (the paper's embedding without context).  Full-context embeddings (a
bidirectional LSTM over the support set for ``g``, an attention LSTM for ``f``) are not implemented.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..distances import cosine_similarity
from ..models import Conv4
from .batched_classifier import BatchedClassifier
from .protonet import embed_tasks


def attention_log_probs(similarity: torch.Tensor, targets: torch.Tensor, ways: int, temperature: torch.Tensor
                        ) -> torch.Tensor:
    """``log P(y = k | x, S)`` from the cosines ``(..., Q, S)`` and support labels ``(..., S)`` in ``0..ways-1``
    -> ``(..., Q, ways)``.

    ``log sum_{i: y_i = k} a_i = logsumexp_{i: y_i = k}(c_i / tau) - logsumexp_i(c_i / tau)``: the log of the
    attention mass on each class, exact even when ``tau`` is tiny (no softmax underflows to a log of zero).
    """
    scores = similarity / temperature
    member = F.one_hot(targets, ways).transpose(-1, -2).unsqueeze(-3).bool()  # (..., 1, N, S)
    per_class = scores.unsqueeze(-2).masked_fill(~member, torch.finfo(scores.dtype).min)  # (..., Q, N, S)
    return torch.logsumexp(per_class, -1) - torch.logsumexp(scores, -1, keepdim=True)


class MatchingNet(BatchedClassifier):
    """Matching Network on any embedding network (see the module docstring).

    Args:
        encoder: any ``nn.Module`` mapping ``(B, *x)`` to ``(B, D)`` (other output shapes are flattened);
            ``None`` gives the course's Conv-4 (64 filters, ``norm="batch"``, one channel).
        temperature: ``tau > 0``, the softmax temperature of the attention (its start when learned).
        learn_temperature: learn ``tau`` with the encoder (default) or keep it fixed.

    ``logits`` are the log-probabilities ``log P(y = k | x, S)`` (each row's exponentials sum to 1).

    Example::

        method = MatchingNet(my_cnn)
        method.predict(support_x, support_y, query_x)        # labels taken from support_y
    """

    name = "matching"
    module_args = ("encoder",)

    def __init__(self, encoder: nn.Module | None = None, temperature: float = 0.1,
                 learn_temperature: bool = True) -> None:
        if encoder is None:
            encoder = Conv4()
        if not isinstance(encoder, nn.Module):
            raise ValueError(f"encoder must be a torch.nn.Module (or None for Conv-4); got {type(encoder).__name__}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0 \
                or not math.isfinite(temperature):
            raise ValueError(f"temperature must be a number > 0 (it divides the cosine similarities; 0.1 is a good "
                             f"start); got {temperature!r}")
        if not isinstance(learn_temperature, bool):
            raise ValueError(f"learn_temperature must be True or False; got {learn_temperature!r}")
        super().__init__(encoder=encoder, temperature=temperature, learn_temperature=learn_temperature)
        self.encoder = encoder
        log_tau = torch.tensor(math.log(temperature))
        if learn_temperature:
            self.log_temperature = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_temperature", log_tau)

    @property
    def temperature(self) -> torch.Tensor:
        """``tau``, the attention's softmax temperature (a scalar tensor)."""
        return self.log_temperature.exp()

    def task_logits(
        self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor, ways: int
    ) -> torch.Tensor:
        """Batched log-probabilities: support ``(T, S, ...)``, labels ``(T, S)`` in ``0..N-1`` -> ``(T, Q, N)``."""
        zs, zq = embed_tasks(self.encoder, support_x, query_x)
        return attention_log_probs(cosine_similarity(zq, zs), support_y, ways, self.temperature)

    def episode_loss(self, logits: torch.Tensor, query_y: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood: :meth:`task_logits` are already log-probabilities."""
        return F.nll_loss(logits.flatten(0, 1), query_y.flatten())
