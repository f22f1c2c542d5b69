"""Lesson 06: every method on the same held-out tasks, measured by the one shared evaluation.

:func:`compare` runs :func:`metalearn_lite.evaluate` (imported here as ``evaluate``, the function
every lesson and the CLI use) once per method with the *same* seed, so all methods see the same
tasks: with fewer episodes, a method sees the first tasks of the same sequence.  It also times each
method, and :func:`shift_images` builds the domain-shifted test sets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from ..augment import random_affine
from ..evaluation import EvalResult, evaluate

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
