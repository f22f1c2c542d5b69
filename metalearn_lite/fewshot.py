"""The contract every few-shot classification method keeps.

A method is given one task: a labelled support set and unlabelled queries.  Whatever it does
inside (average embeddings, take gradient steps, write to a memory), it answers the same two calls:

* ``logits(support_x, support_y, query_x)`` -> ``(Q, N)`` scores, column ``j`` for the ``j``-th
  smallest label in ``support_y``;
* ``predict(support_x, support_y, query_x)`` -> ``(Q,)`` labels taken from ``support_y``'s values.

Labels may be any integers (``[3, 3, 7, 7]`` is a 2-way 2-shot support set), and any N and K work.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from .finite import check_input, check_scores


@runtime_checkable
class FewShotClassifier(Protocol):
    """Anything that classifies queries from a labelled support set (see the module docstring)."""

    def logits(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        """``(S, ...)``, ``(S,)``, ``(Q, ...)`` -> ``(Q, N)`` class scores."""
        ...

    def predict(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        """``(S, ...)``, ``(S,)``, ``(Q, ...)`` -> ``(Q,)`` predicted labels from ``support_y``."""
        ...


def check_task(
    support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate one task and relabel its support set.

    Returns:
        ``classes`` ``(N,)``: the distinct support labels in increasing order, and
        ``targets`` ``(S,)``: each support label's position in ``classes`` (``0..N-1``).
    """
    for name, t in (("support_x", support_x), ("support_y", support_y), ("query_x", query_x)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor; got {type(t).__name__}")
    if support_x.dim() < 1 or support_x.shape[0] == 0:
        raise ValueError("the support set is empty: give at least one labelled example per class")
    if support_y.dim() != 1 or support_y.shape[0] != support_x.shape[0]:
        raise ValueError(
            f"support_y must be 1-D with one label per support example: support_x has "
            f"{support_x.shape[0]} examples, support_y has shape {tuple(support_y.shape)}. "
            "For a meta-batch from EpisodeSampler, pass one task: episode.task(i).unbatched()"
        )
    if support_y.dtype.is_floating_point or support_y.dtype == torch.bool:
        raise ValueError(f"support_y must hold integer labels; got dtype {support_y.dtype}")
    if query_x.shape[1:] != support_x.shape[1:]:
        raise ValueError(
            f"query_x examples have shape {tuple(query_x.shape[1:])} but support_x examples have "
            f"{tuple(support_x.shape[1:])}: both must be (count, *example_shape)"
        )
    if not support_x.dtype.is_floating_point or not query_x.dtype.is_floating_point:
        raise ValueError(
            f"support_x and query_x must be floating point; got {support_x.dtype} and {query_x.dtype}. "
            "Convert with .float()"
        )
    check_input(support_x, "support_x")
    check_input(query_x, "query_x")
    classes, targets = torch.unique(support_y, sorted=True, return_inverse=True)
    return classes, targets


def class_means(z: torch.Tensor, targets: torch.Tensor, ways: int) -> torch.Tensor:
    """The mean embedding of each class (a prototype): ``z`` ``(..., S, D)``, ``targets`` ``(..., S)`` in
    ``0..ways-1`` -> ``(..., ways, D)``.

    ``p_c = 1/|S_c| sum_{i: y_i = c} z_i``, one matrix product per task; a class without examples gets zeros.
    The one class-mean function of the package: ProtoNet, the metric embeddings and the transfer baselines use it.
    """
    onehot = torch.nn.functional.one_hot(targets, ways).to(z.dtype)  # (..., S, N)
    sums = onehot.transpose(-1, -2) @ z  # (..., N, D)
    return sums / onehot.sum(-2).unsqueeze(-1).clamp_min(1.0)


def episode_ways(support_y: torch.Tensor, query_y: torch.Tensor) -> int:
    """``N``, the classes of a training meta-batch labelled ``0..N-1`` in every task (support ``(T, S)``,
    query ``(T, Q)`` labels, as :class:`~metalearn_lite.EpisodeSampler` draws them); ``ValueError`` saying what
    to change when they are not such labels or a query's class has no support example."""
    if support_y.dim() != 2 or query_y.dim() != 2 or support_y.shape[0] != query_y.shape[0]:
        raise ValueError(f"a meta-batch has labels (tasks, examples): support {tuple(support_y.shape)} and query "
                         f"{tuple(query_y.shape)} do not fit; for one task use logits() or predict()")
    if support_y.dtype.is_floating_point or support_y.dtype == torch.bool or query_y.dtype != support_y.dtype:
        raise ValueError(f"the labels must be integers; got {support_y.dtype} (support) and {query_y.dtype} (query)")
    if support_y.numel() == 0 or int(support_y.min()) < 0:
        raise ValueError("every task needs support examples labelled 0..N-1 (EpisodeSampler relabels its tasks so)")
    ways = int(support_y.max()) + 1
    if query_y.numel() and (int(query_y.min()) < 0 or int(query_y.max()) >= ways):
        raise ValueError(f"query labels must be among the support labels 0..{ways - 1}; got "
                         f"{sorted(set(query_y.unique().tolist()))[:8]}: relabel both sets with the same map")
    return ways


class FewShotMixin:
    """Gives a class with ``logits`` the matching ``predict``."""

    def predict(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        classes, _ = check_task(support_x, support_y, query_x)
        scores = self.logits(support_x, support_y, query_x)
        check_scores(scores, f"{type(self).__name__}'s query scores")
        return classes[scores.argmax(dim=-1)]
