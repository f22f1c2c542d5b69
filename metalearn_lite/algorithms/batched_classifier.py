"""What the metric methods share: one function that scores a whole meta-batch of tasks at once.

ProtoNet, Matching Networks and Relation Networks differ only in how a query is compared with a task's
support set.  Each writes that comparison once, batched over tasks,

    ``task_logits(support_x (T, S, ...), support_y (T, S), query_x (T, Q, ...), ways) -> (T, Q, N)``,

and this base turns it into the training loss of a meta-batch (cross-entropy unless the method says
otherwise) and the one-task ``logits(support_x, support_y, query_x) -> (Q, N)`` of every few-shot classifier.
A method of your own needs only ``task_logits`` (and ``name`` and its config, as every method).

:meth:`BatchedClassifier.compile_training` (``train(..., compile=True)``, ``--compile``) is the fast training
path: convolutional sub-networks in ``channels_last`` and ``task_logits`` under ``torch.compile`` in training
mode; evaluation stays eager.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..compiling import compile_for_training
from ..episodes import Episode
from ..fewshot import check_task, episode_ways
from .base import EpisodicMethod


class BatchedClassifier(EpisodicMethod):
    """Base of the methods that score every task of a meta-batch in one call (see the module docstring)."""

    _compiled_logits = None  # set by compile_training(); used in training mode only

    def compile_training(self) -> None:
        """The fast training path: every convolutional sub-network (the encoder, RelationNet's relation module)
        moves to ``channels_last`` (its images are converted in its forward), and :meth:`task_logits` is compiled
        with ``torch.compile`` for training; evaluation keeps the eager ``task_logits`` (in ``channels_last``).

        The gradients are the eager ones up to float rounding (``tests/test_compiled_metric.py``).  Compiling
        is paid at the first training step (the trainer prints how long it took) and again for each new
        episode shape.  On a CPU ``torch.compile`` needs a C++ compiler: without one this raises ``ValueError``
        (as :meth:`MANN.compile_training <metalearn_lite.algorithms.MANN.compile_training>` does) rather than
        silently training the slower way.
        """
        if self._compiled_logits is not None:
            return  # already compiled (a second call would convert the inputs twice)
        self._compiled_logits = compile_for_training(self, self.task_logits)

    def task_logits(
        self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor, ways: int
    ) -> torch.Tensor:
        """Class scores ``(T, Q, N)`` of every query of every task; support labels ``(T, S)`` in ``0..N-1``."""
        raise NotImplementedError

    def episode_loss(self, logits: torch.Tensor, query_y: torch.Tensor) -> torch.Tensor:
        """The loss of a meta-batch's scores ``(T, Q, N)`` against its query labels ``(T, Q)``: cross-entropy."""
        return F.cross_entropy(logits.flatten(0, 1), query_y.flatten())

    def class_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores in ``[0, 1]`` from logits ``(..., N)``: the softmax over the classes."""
        return logits.softmax(-1)

    def loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        ways = episode_ways(episode.support_y, episode.query_y)
        compiled = self._compiled_logits is not None and self.training
        logits = (self._compiled_logits if compiled else self.task_logits)(
            episode.support_x, episode.support_y, episode.query_x, ways)
        acc = (logits.argmax(-1) == episode.query_y).float().mean()
        return self.episode_loss(logits, episode.query_y), acc

    def logits(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        """One task: ``(S, *x), (S,), (Q, *x) -> (Q, N)``, classes in the order of ``support_y.unique()``."""
        classes, targets = check_task(support_x, support_y, query_x)
        return self.task_logits(support_x[None], targets[None], query_x[None], len(classes))[0]
