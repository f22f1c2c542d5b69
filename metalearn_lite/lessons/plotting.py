"""Figures shared by the lessons: a task, a grid of images, two principal axes, a checkpoint's training curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from ..episodes import Episode


def show_episode(episode: Episode, task: int = 0, max_queries: int = 5, title: str | None = None) -> Figure:
    """Draw one task: a row per class, its support images then (after a gap) its queries.

    Args:
        episode: a meta-batch from :class:`~metalearn_lite.episodes.EpisodeSampler` (images).
        task: which task of the meta-batch.
        max_queries: at most this many queries per class are drawn.
    """
    sx, sy, qx, qy = episode.task(task).unbatched()
    ways = int(sy.max()) + 1
    shots = sx.shape[0] // ways
    queries = min(qx.shape[0] // ways, max_queries)
    cols = shots + 1 + queries
    fig, axes = plt.subplots(ways, cols, figsize=(0.9 * cols, 0.95 * ways), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for c in range(ways):
        sup = sx[sy == c].cpu()
        qry = qx[qy == c].cpu()[:queries]
        for j in range(shots):
            axes[c, j].imshow(sup[j, 0], cmap="gray_r", vmin=0, vmax=1)
        for j in range(queries):
            axes[c, shots + 1 + j].imshow(qry[j, 0], cmap="gray_r", vmin=0, vmax=1)
        axes[c, 0].text(-4, 14, str(c), ha="right", va="center", fontsize=10)
    axes[0, 0].set_title("support", fontsize=9, loc="left")
    if queries:
        axes[0, shots + 1].set_title("query", fontsize=9, loc="left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def image_grid(images: torch.Tensor, cols: int = 10, scale: float = 0.8) -> Figure:
    """``(B, 1, H, W)`` images on a grid."""
    n = images.shape[0]
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(scale * cols, scale * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i, 0].cpu(), cmap="gray_r", vmin=0, vmax=1)
    fig.tight_layout()
    return fig


def pca_axes(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Two principal axes of ``(N, D)`` points: ``(centre (D,), axes (2, D), explained variance fraction)``.

    An exact SVD of the centred data (deterministic, unlike ``torch.pca_lowrank``), with each axis'
    sign fixed so that its largest loading is positive: the same data always gives the same picture.
    Computed in float64.
    """
    x = points.double()
    centre = x.mean(0)
    _, s, vh = torch.linalg.svd(x - centre, full_matrices=False)
    axes = vh[:2]
    axes = axes * torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    explained = float((s[:2] ** 2).sum() / (s**2).sum().clamp_min(1e-300))
    return centre, axes, explained


def plot_history(history: list[dict[str, float]], val_label: str = "validation episodes",
                 train_label: str = "training episodes", title: str | None = None) -> Figure:
    """Training loss (left) and training / validation accuracy (right) against the step.

    ``history`` is a checkpoint's list of ``{"step", "loss", "acc", "val_acc", "minutes"}`` records
    (``loss`` and ``acc`` are running averages over what it trained on); ``train_label`` and
    ``val_label`` name the training and validation data in the legend.  The title is ``title``, else
    the training time when the records carry one.
    """
    if not history:
        raise ValueError("this model has no training history (it was saved without one)")
    step = [h["step"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    left.plot(step, [h["loss"] for h in history], marker="o", markersize=3, color="C3")
    left.set_ylabel("training loss (running mean)")
    right.plot(step, [100 * h["acc"] for h in history], marker="o", markersize=3, label=train_label)
    right.plot(step, [100 * h["val_acc"] for h in history], marker="s", markersize=3, label=val_label)
    right.set_ylabel("accuracy (%)")
    right.legend(fontsize=8, loc="lower right")
    for ax in (left, right):
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    if title is None and "minutes" in history[-1]:
        title = f"training took {history[-1]['minutes']:.1f} minutes"
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
