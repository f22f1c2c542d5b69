"""Lesson 06 (transfer learning versus meta-learning): the comparison, the copied example, checks.

* :func:`compare` runs :func:`metalearn_lite.evaluate` (imported here as ``evaluate``, the function every
  lesson and the CLI use) once per method with the *same* seed, so all methods see the same tasks: with
  fewer episodes, a method sees the first tasks of the same sequence.  It also times each method, and
  :func:`shift_images` builds the domain-shifted test sets.
* :func:`copied_example`: a widely copied "transfer learning" snippet that trains a *source* model, then
  a *fresh* *target* model on the very same split; the target never reads the source.
* :func:`~metalearn_lite.lessons.plotting.plot_history` and :func:`~metalearn_lite.lessons.commands.public_command`
  (shared with lesson 03, imported here for the page's one import line): a checkpoint's training curves
  and its command without machine paths; :func:`plot_history` here labels the training curve "training
  batches" (pretraining trains on batches, not episodes).
* Exercise checks: ``check_x(answer)`` prints "Correct! ..." or "Not yet: ..." and returns ``None``;
  ``strict=True`` raises :class:`CheckFailed` instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from ..augment import random_affine
from ..evaluation import EvalResult, evaluate
from .commands import public_command as public_command  # re-exported for the page
from .exercises import CheckFailed, report
from .plotting import plot_history as _plot_history
from .splits import split_drawings

SHIFTS = ("none", "inverted", "distorted", "scrambled")
SHIFT_TEXT = {
    "none": "the meta-test alphabets as they are",
    "inverted": "white strokes on a black page (1 - x)",
    "distorted": "heavy random affine distortion (rotation up to 40°, zoom 0.7-1.3, shear 0.4, shift 15 %)",
    "scrambled": "every image's pixels in one fixed random order (no strokes left)",
}


def shift_images(images: torch.Tensor, shift: str, seed: int = 0) -> torch.Tensor:
    """A domain-shifted copy of grouped images ``(C, D, 1, H, W)`` (see ``SHIFT_TEXT``).

    ``"distorted"`` draws one distortion per drawing; ``"scrambled"`` applies one permutation of
    the pixel positions to every image (a linear model on pixels does not even notice it).
    """
    if shift not in SHIFTS:
        raise ValueError(f"unknown shift {shift!r}; choose one of {list(SHIFTS)}")
    if shift == "none":
        return images
    if shift == "inverted":
        return 1.0 - images
    g = torch.Generator().manual_seed(seed)
    if shift == "distorted":
        flat = images.flatten(0, 1)
        out = random_affine(flat, g, degrees=40.0, translate=0.15, scale=(0.7, 1.3), shear=0.4)
        return out.view_as(images)
    pixels = images.shape[-2] * images.shape[-1]
    perm = torch.randperm(pixels, generator=g).to(images.device)
    return images.flatten(-2)[..., perm].view_as(images)


@dataclass(frozen=True)
class Row:
    """One method on one task shape: its :class:`EvalResult` (``None`` if it cannot run the task,
    with ``note`` saying why) and the seconds per task (adaptation plus prediction)."""

    method: str
    shots: int
    shift: str
    result: EvalResult | None
    seconds_per_task: float
    note: str = ""

    @property
    def mean(self) -> float:
        return math.nan if self.result is None else self.result.mean

    @property
    def ci95(self) -> float:
        return math.nan if self.result is None else self.result.ci95


def compare(
    methods: Mapping[str, object],
    images: torch.Tensor,
    ways: int = 5,
    shots: int = 1,
    shift: str = "none",
    episodes: int = 300,
    episodes_for: Mapping[str, int] | None = None,
    queries: int | None = None,
    seed: int = 0,
) -> list[Row]:
    """Evaluate every method on the same ``ways``-way ``shots``-shot tasks of ``images`` under ``shift``.

    Args:
        methods: name -> few-shot classifier.
        images: grouped test images ``(C, D, 1, H, W)``; the shift is applied here.
        episodes: tasks per method; ``episodes_for`` overrides it for slow methods (the same seed
            makes those the first tasks of the same sequence).
        queries: per class; default ``min(15, drawings - shots)``.
        seed: task seed, the same for every method.

    A method that rejects the task shape with a ``ValueError`` (e.g. more classes than its output
    layer) gets a row with ``result=None`` and the reason in ``note``.
    """
    data = shift_images(images, shift)
    q = min(15, images.shape[1] - shots) if queries is None else queries
    rows = []
    for name, clf in methods.items():
        n = (episodes_for or {}).get(name, episodes)
        start = time.perf_counter()
        try:
            result = evaluate(clf, data, ways=ways, shots=shots, queries=q, episodes=n, seed=seed)
        except ValueError as err:
            rows.append(Row(name, shots, shift, None, math.nan, str(err).split(";")[0]))
            continue
        rows.append(Row(name, shots, shift, result, (time.perf_counter() - start) / n))
    return rows


def table_markdown(rows: Sequence[Row]) -> str:
    """A Markdown table: method, accuracy ± 95 % CI, tasks, milliseconds per task."""
    lines = ["| method | accuracy (± 95 % CI) | tasks | time per task |", "|---|---|---|---|"]
    for r in rows:
        if r.result is None:
            lines.append(f"| {r.method} | n/a: {r.note} | 0 | |")
            continue
        lines.append(f"| {r.method} | {100 * r.mean:.1f} ± {100 * r.ci95:.1f} % | {len(r.result.accuracies)} | "
                     f"{1000 * r.seconds_per_task:.0f} ms |")
    return "\n".join(lines)


def plot_by_shots(rows: Sequence[Row], shift: str, ways: int = 5) -> Figure:
    """Accuracy (with 95 % CI bars) against shots, one line per method, for one shift."""
    fig, ax = plt.subplots(figsize=(6.2, 3.6))
    names = list(dict.fromkeys(r.method for r in rows if r.shift == shift))
    for name in names:
        pts = sorted((r.shots, r.mean, r.ci95) for r in rows if r.method == name and r.shift == shift and r.result)
        if not pts:
            continue
        k, m, c = zip(*pts)
        ax.errorbar(k, [100 * v for v in m], yerr=[100 * v for v in c], marker="o", capsize=3, label=name)
    ax.axhline(100 / ways, color="gray", ls=":", lw=1)
    ax.set_ylim(0, 100)  # accuracy lives in [0, 100]: wide intervals of a few tasks must not stretch the axis
    ax.set_xlabel("shots (K)")
    ax.set_ylabel("accuracy (%)")
    ax.set_xticks(sorted({r.shots for r in rows}))
    ax.set_title(f"{ways}-way tasks, shift: {shift}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right", ncol=2)
    fig.tight_layout()
    return fig


def ranking(rows: Sequence[Row]) -> list[str]:
    """Method names from best to worst mean accuracy (methods without a result last)."""
    return [r.method for r in sorted(rows, key=lambda r: -r.mean if r.result else math.inf)]


def copied_example(images: torch.Tensor, shots: int = 5, held_out: int = 5, seed: int = 0) -> dict[str, object]:
    """The copied pattern on ``images`` ``(C, D, 1, H, W)``: source and target on the same split.

    Returns the source's and target's held-out accuracies, that of a model trained with no source
    at all, and whether the target's weights are identical to that model's.
    """
    from sklearn.linear_model import LogisticRegression

    def data(split_seed: int) -> tuple[np.ndarray, ...]:
        s = split_drawings(images, shots, held_out, split_seed)
        return s.x_train.flatten(1).numpy(), s.y_train.numpy(), s.x_test.flatten(1).numpy(), s.y_test.numpy()

    x_train, y_train, x_test, y_test = data(seed)
    source = LogisticRegression(random_state=42, max_iter=500).fit(x_train, y_train)  # "train the source model"
    xt_train, yt_train, xt_test, yt_test = data(seed)  # "the target task": the same split of the same data
    target = LogisticRegression(random_state=42, max_iter=500).fit(xt_train, yt_train)  # a fresh model
    alone = LogisticRegression(random_state=42, max_iter=500).fit(xt_train, yt_train)  # no source anywhere
    return {
        "source accuracy": float(np.mean(source.predict(x_test) == y_test)),
        "target accuracy": float(np.mean(target.predict(xt_test) == yt_test)),
        "no-source accuracy": float(np.mean(alone.predict(xt_test) == yt_test)),
        "identical weights": bool(np.array_equal(target.coef_, alone.coef_)
                                  and np.array_equal(target.intercept_, alone.intercept_)),
        "same data": bool(np.array_equal(x_train, xt_train)),
    }


def _cosine_logits(fn: Callable[[torch.Tensor, torch.Tensor, float], Any]) -> str:
    g = torch.Generator().manual_seed(5)
    z = torch.randn(7, 6, generator=g) * torch.rand(7, 1, generator=g) * 5  # rows of very different lengths
    w = torch.randn(3, 6, generator=g) * torch.tensor([[0.1], [1.0], [9.0]])
    scale = 4.0
    got = fn(z.clone(), w.clone(), scale)
    if got is None:
        raise CheckFailed("your function returned None: return the (Q, N) logits")
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"your function returned a {type(got).__name__}; return a torch.Tensor")
    if tuple(got.shape) != (7, 3):
        raise CheckFailed(f"for z of shape (7, 6) and w of shape (3, 6) the logits must be (7, 3); got "
                          f"{tuple(got.shape)} (one row per query, one column per class)")
    zn, wn = F.normalize(z, dim=-1), F.normalize(w, dim=-1)
    want = scale * zn @ wn.T
    got = got.double()
    if torch.allclose(got, want.double(), atol=1e-4):
        return "logits = scale * cos(z, w_c): only directions count, so no class wins by the length of its vector."
    if torch.allclose(got, (zn @ wn.T).double(), atol=1e-4):
        raise CheckFailed("these are plain cosines in [-1, 1]: multiply by scale, or the softmax stays nearly flat")
    if torch.allclose(got, (scale * zn @ w.T).double(), atol=1e-4):
        raise CheckFailed("the class vectors w are not normalised: the class with the longest w (the third) wins "
                          "too often. Normalise w along its feature dimension too")
    if torch.allclose(got, (scale * z @ wn.T).double(), atol=1e-4):
        raise CheckFailed("the features z are not normalised: normalise each row of z (F.normalize(z, dim=-1))")
    if torch.allclose(got, (scale * z @ w.T).double(), atol=1e-4):
        raise CheckFailed("this is a plain (scaled) dot product: normalise both z and w to unit length first")
    raise CheckFailed("the values are not scale * cos(z_i, w_c); compute F.normalize(z, dim=-1) @ "
                      "F.normalize(w, dim=-1).T and multiply by scale")


def check_cosine_logits(fn: Callable[[torch.Tensor, torch.Tensor, float], Any], strict: bool = False) -> None:
    """``fn(z (Q, D), w (N, D), scale) -> (Q, N)`` logits ``scale * cos(z_i, w_c)``."""
    return report(_cosine_logits, fn, strict)


# ---------------------------------------------------------------------------------------------
# A checkpoint's training curves
# ---------------------------------------------------------------------------------------------


def plot_history(history: list[dict[str, float]], val_label: str = "validation episodes") -> Figure:
    """A pretraining checkpoint's curves (:func:`metalearn_lite.lessons.plotting.plot_history`), its
    training accuracy labelled as measured on "training batches"."""
    return _plot_history(history, val_label=val_label, train_label="training batches")


# ---------------------------------------------------------------------------------------------
# Predict: which method wins under a domain shift, at 1 and at 5 shots
# ---------------------------------------------------------------------------------------------


def _tied_with_best(rows: Sequence[Row], name: str) -> tuple[bool, Row]:
    """Whether ``name``'s interval reaches the best method's: the data cannot tell them apart."""
    measured = [r for r in rows if r.result is not None]
    best = max(measured, key=lambda r: r.mean)
    mine = next(r for r in measured if r.method == name)
    return mine.mean + mine.ci95 >= best.mean - best.ci95, best


def _winners(args: tuple[Any, Mapping[int, Sequence[Row]]]) -> str:
    answer, rows = args
    if answer is None or not isinstance(answer, Mapping) or any(answer.get(k) is None for k in rows):
        names = sorted({r.method for rs in rows.values() for r in rs})
        raise CheckFailed(f"set my_winners = {{1: 'method', 5: 'method'}}, one method name per shot count, before "
                          f"the cell that measures them; names: {names}")
    lines = []
    for shots, measured in rows.items():
        names = [r.method for r in measured if r.result is not None]
        if answer[shots] not in names:
            raise CheckFailed(f"{answer[shots]!r} is not one of the measured methods: {names}")
        tied, best = _tied_with_best(measured, answer[shots])
        if not tied:
            mine = next(r for r in measured if r.method == answer[shots])
            raise CheckFailed(f"at {shots} shot(s) under '{best.shift}' the winner is {best.method} "
                              f"({100 * best.mean:.1f} %); {answer[shots]} reaches {100 * mine.mean:.1f} %, clearly "
                              "behind. Hint: which methods can refit something to the shifted support images, and "
                              "which carry statistics (batch-norm, a trained controller) from the original domain?")
        lines.append(f"{shots} shot(s): {best.method} first ({100 * best.mean:.1f} %)"
                     + ("" if best.method == answer[shots] else f", {answer[shots]} within the intervals"))
    return "; ".join(lines) + "."


def check_shift_winners(answer: Mapping[int, str] | None, rows: Mapping[int, Sequence[Row]],
                        strict: bool = False) -> None:
    """Lesson 06: ``answer = {shots: method}``, the predicted most accurate method at each shot count, against
    the measured ``rows`` ``{shots: [Row, ...]}``.  A method whose 95 % interval reaches the winner's passes
    (the data cannot tell them apart).  Returns ``None``."""
    return report(_winners, (answer, rows), strict)


# ---------------------------------------------------------------------------------------------
# Ablate: Baseline++ without its cosine head
# ---------------------------------------------------------------------------------------------

#: The findings a reader can state about the ablation, checked against the measurement.
HEAD_CLAIMS = ("cosine head clearly better", "no clear difference", "linear head clearly better")


def _head_ablation(args: tuple[Any, Any, Row, torch.Tensor, int]) -> str:
    ablated, claim, reference, images, episodes = args
    from ..algorithms.transfer import BaselinePlusPlus, FineTune

    if ablated is None:
        raise CheckFailed("build my_ablated: Baseline++'s adaptation with a linear head instead of the cosine one")
    if isinstance(ablated, BaselinePlusPlus) or not isinstance(ablated, FineTune):
        raise CheckFailed("build the ablation from FineTune (it takes head='linear'); BaselinePlusPlus always uses "
                          "the cosine head")
    reference_clf = BaselinePlusPlus(ablated.backbone)
    if ablated.head_kind != "linear":
        raise CheckFailed(f"the ablation changes the head: use head='linear' (you have head={ablated.head_kind!r})")
    if ablated.frozen_layers != 4:
        raise CheckFailed(f"Baseline++ keeps the backbone frozen: use frozen_layers=4 (you have "
                          f"{ablated.frozen_layers}); otherwise you change two things at once")
    if (ablated.steps, ablated.lr) != (reference_clf.steps, reference_clf.lr):
        raise CheckFailed(f"change one thing only: keep Baseline++'s steps={reference_clf.steps} and "
                          f"lr={reference_clf.lr:g} (you have steps={ablated.steps}, lr={ablated.lr:g})")
    if claim not in HEAD_CLAIMS:
        raise CheckFailed(f"set my_finding to one of {HEAD_CLAIMS}")
    n = min(episodes, len(reference.result.accuracies))
    ref_acc = reference.result.accuracies[:n]
    row = compare({"linear head": ablated}, images, ways=reference.result.ways, shots=reference.shots,
                  shift=reference.shift, episodes=n)[0]
    diff = row.result.accuracies - ref_acc  # the same tasks: a paired comparison
    mean = float(diff.mean())
    ci = float(1.96 * diff.std(unbiased=True) / math.sqrt(n)) if n > 1 else math.inf
    found = ("no clear difference" if abs(mean) <= ci else
             "cosine head clearly better" if mean < 0 else "linear head clearly better")
    summary = (f"on the same {n} tasks: cosine head {100 * float(ref_acc.mean()):.1f} %, linear head "
               f"{100 * row.mean:.1f} % (difference {100 * mean:+.1f} ± {100 * ci:.1f} points, paired 95 % interval)")
    if claim != found:
        raise CheckFailed(f"{summary}: that is '{found}', not '{claim}'. Hint: compare the difference with its "
                          "interval, not the two accuracies with each other")
    return (f"{summary}: {found}. On features this good, how the head compares a query with the class "
            "vectors matters little; the cosine head's advantage (no class wins by a longer vector) shows "
            "where feature lengths vary with the class, as in Chen et al. (2019)'s deeper backbones.")


def check_head_ablation(ablated: Any, claim: str | None, reference: Row, images: torch.Tensor, episodes: int = 100,
                        strict: bool = False) -> None:
    """Lesson 06: ``ablated`` (a :class:`~metalearn_lite.algorithms.transfer.FineTune` that is Baseline++ with
    a linear head: ``frozen_layers=4``, the same steps and learning rate) and ``claim`` (one of
    :data:`HEAD_CLAIMS`), checked by running it on the first ``episodes`` tasks of ``reference`` (Baseline++'s
    :class:`Row`) and comparing task by task.  Returns ``None``."""
    return report(_head_ablation, (ablated, claim, reference, images, episodes), strict)
