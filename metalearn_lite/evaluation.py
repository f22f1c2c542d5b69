"""Accuracy over many test episodes, reported as mean +- 95% confidence interval."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from ._malloc import tune_for_training
from .episode_loader import evaluation_tasks
from .fewshot import FewShotClassifier
from .finite import check_input, check_weights
from .validation import positive_int


def mean_ci(values: torch.Tensor | list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of its ``confidence`` interval (Student t, ``n - 1`` degrees of freedom).

    ``half_width = t_{(1+c)/2, n-1} * s / sqrt(n)`` with ``s`` the sample standard deviation;
    for 600 episodes ``t`` is 1.964, close to the normal 1.96.
    """
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() == 0:
        raise ValueError("mean_ci needs at least one value")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95); got {confidence}")
    n = v.numel()
    mean = float(v.mean())
    if n == 1:
        return mean, math.inf
    from scipy import stats  # lazy: scipy costs ~0.8 s at import, and only this line needs it

    t = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1))
    return mean, t * float(v.std(unbiased=True)) / math.sqrt(n)


@dataclass(frozen=True)
class EvalResult:
    """Per-episode accuracies and their summary (fractions in ``[0, 1]``)."""

    accuracies: torch.Tensor
    ways: int
    shots: int
    queries: int

    @property
    def mean(self) -> float:
        return mean_ci(self.accuracies)[0]

    @property
    def ci95(self) -> float:
        return mean_ci(self.accuracies)[1]

    def __str__(self) -> str:
        return (
            f"{100 * self.mean:.2f} ± {100 * self.ci95:.2f} % "
            f"({self.ways}-way {self.shots}-shot, {len(self.accuracies)} episodes)"
        )


def evaluate(
    classifier: FewShotClassifier,
    data: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | Dataset | DataLoader,
    ways: int = 5,
    shots: int = 1,
    queries: int = 15,
    episodes: int = 600,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> EvalResult:
    """Accuracy of ``classifier`` over ``episodes`` seeded test episodes.

    Args:
        classifier: anything implementing :class:`FewShotClassifier`.
        data: grouped examples ``(classes, per_class, ...)``, e.g. ``omniglot_split("test").images``,
            ``(x, y)``: examples ``(N, ...)`` with integer labels ``(N,)`` (e.g. from :func:`image_folder`), a
            map-style ``Dataset`` of ``(x, label)`` items (only the drawn items are loaded), or a ``DataLoader``
            over an :class:`~metalearn_lite.EpisodeBatchSampler` (whose task shape and seed then apply).
        ways, shots, queries: the task shape (not with a ``DataLoader``).
        episodes: number of tasks (>= 600 for the numbers we report).
        seed: sampling seed; every method evaluated with the same seed sees the same tasks.
        device: where the tasks are sent (default: the device of ``data``).

    A ``torch.nn.Module`` classifier is put in ``eval()`` mode for the evaluation and restored
    after.  Autograd is off unless the classifier sets ``adapts_with_gradients = True``.
    """
    if not isinstance(classifier, FewShotClassifier):
        raise ValueError(
            f"{type(classifier).__name__} is not a few-shot classifier: it needs "
            "logits(support_x, support_y, query_x) and predict(...) (see metalearn_lite.fewshot)"
        )
    if queries < 1:
        raise ValueError(f"evaluation needs queries >= 1 to score; got {queries}")
    positive_int("episodes", episodes, " (600 or more for a reported number)")
    if isinstance(data, torch.Tensor):
        check_input(data, "the evaluation data")
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        check_input(data[0], "the evaluation data")
    check_weights(classifier, type(classifier).__name__)
    tune_for_training()
    tasks, (ways, shots, queries) = evaluation_tasks(data, ways, shots, queries, seed, device)
    accs = torch.empty(episodes, dtype=torch.float64)
    was_training = getattr(classifier, "training", None)
    if was_training:
        classifier.eval()  # type: ignore[attr-defined]
    # Methods that adapt by gradient steps at test time say so; the rest run without autograd.
    grad = getattr(classifier, "adapts_with_gradients", False)
    try:
        with nullcontext() if grad else torch.no_grad():
            for i in range(episodes):
                sx, sy, qx, qy = next(tasks).unbatched()
                accs[i] = (classifier.predict(sx, sy, qx) == qy).double().mean().cpu()
    finally:
        if was_training:
            classifier.train()  # type: ignore[attr-defined]
    return EvalResult(accs, ways, shots, queries)


def presentation_index(labels: torch.Tensor) -> torch.Tensor:
    """How many times each step's class has been shown so far, this step included (1 = first time).

    ``labels`` ``(T, L)`` integer class labels of ``T`` sequences -> ``(T, L)`` counts from 1.
    """
    onehot = torch.nn.functional.one_hot(labels.long(), int(labels.max()) + 1)
    return (onehot.cumsum(1) * onehot).sum(-1)


def presentation_accuracy(correct: torch.Tensor, labels: torch.Tensor, presentations: int) -> torch.Tensor:
    """Accuracy of each sequence at the 1st, 2nd, ... presentation of a class (Santoro et al. 2016).

    Args:
        correct: ``(T, L)`` whether the prediction at each step was right.
        labels: ``(T, L)`` the class shown at each step.
        presentations: how many presentations to report.

    Returns ``(T, presentations)`` float64: entry ``[t, k-1]`` is the fraction of right answers among
    the steps of sequence ``t`` that show a class for the ``k``-th time (NaN if there is none).
    """
    if correct.shape != labels.shape or correct.dim() != 2:
        raise ValueError(f"correct and labels must both be (sequences, steps); got {tuple(correct.shape)} "
                         f"and {tuple(labels.shape)}")
    index = presentation_index(labels)
    onehot = torch.nn.functional.one_hot((index - 1).clamp_max(presentations), presentations + 1)[..., :presentations]
    onehot = onehot.to(torch.float64)
    hits = (onehot * correct.to(torch.float64).unsqueeze(-1)).sum(1)
    counts = onehot.sum(1)
    return hits / counts  # 0/0 -> NaN where a presentation never happens
