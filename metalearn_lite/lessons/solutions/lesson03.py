"""Worked solutions of lesson 03's exercises (Prototypical Networks): try each exercise first."""

from __future__ import annotations

import torch.nn.functional as F

from .. import lesson03
from ..exercises import Exercise


def _my_prototypes(z, targets, ways):
    onehot = F.one_hot(targets, ways).to(z.dtype)               # (T, S, N): which class each example is
    sums = onehot.transpose(1, 2) @ z                             # (T, N, D): per-class sums
    return sums / onehot.sum(1).unsqueeze(-1)                     # divide by per-class counts


def _my_logits(query_z, protos):
    diff = query_z[:, :, None, :] - protos[:, None, :, :]         # (T, Q, N, D)
    return -(diff ** 2).sum(-1)


def _prototypes_logits():
    return _my_prototypes, _my_logits


def _my_boundary(p_a, p_b):
    # ||z - p_a||^2 < ||z - p_b||^2  <=>  -2 p_a.z + |p_a|^2 < -2 p_b.z + |p_b|^2
    #                                 <=>  2 (p_a - p_b).z + |p_b|^2 - |p_a|^2 > 0
    return 2 * (p_a - p_b), (p_b ** 2).sum() - (p_a ** 2).sum()


def _boundary():
    return (_my_boundary,)


def _my_attention(zs, sy, zq, ways):
    d2 = ((zq[:, :, None, :] - zs[:, None, :, :]) ** 2).sum(-1)   # (T, Q, S) squared distances to each example
    weights = (-d2).softmax(-1)                                   # attention over the support examples
    return weights @ F.one_hot(sy, ways).to(weights.dtype)        # (T, Q, N): the weights summed per class


def _attention():
    from ...checkpoints import load_pretrained
    from ...datasets.omniglot import omniglot_split

    model = load_pretrained("protonet-omniglot")
    return _my_attention, model, omniglot_split("test").images, 20


def _my_matching_limit(similarity, support_y, ways):
    # a_i = 1 / sum_j exp((c_j - c_i) / tau): as tau -> 0 the most similar example keeps weight 1, every other
    # example's weight goes to 0, so P(y = k | x, S) is 1 for the class of the most similar example.
    nearest = similarity.argmax(-1)                               # (T, Q): index of the most similar example
    label = support_y.gather(-1, nearest)                         # (T, Q): its class (labels, not positions)
    return F.one_hot(label, ways).to(similarity.dtype)            # (T, Q, ways)


def _matching_limit():
    from ...checkpoints import load_pretrained
    from ...datasets.omniglot import omniglot_split

    return _my_matching_limit, load_pretrained("matching-omniglot"), omniglot_split("test").images, 10


EXERCISES = [
    Exercise("prototypes_logits", "implement", lesson03.check_prototypes_and_logits, _prototypes_logits),
    Exercise("boundary", "derive", lesson03.check_boundary, _boundary),
    Exercise("attention", "extend", lesson03.check_attention_classifier, _attention),
    Exercise("matching_limit", "derive", lesson03.check_matching_limit, _matching_limit),
]
