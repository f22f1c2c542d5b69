"""Figures for lesson 03 (Prototypical Networks).

* :func:`prototype_map`: one task's support embeddings, prototypes and queries in a 2-D PCA
  projection, over the cells of the nearest projected prototype (an illustration: the model
  itself decides in the full embedding space, and the map says how often the two agree).
* :func:`plot_history`: a training run's loss and accuracies from a checkpoint's ``history``.
* :func:`plot_centre_objectives`: where three "centre" objectives put their minimiser for a 2-D cloud
  (squared Euclidean: the mean; Euclidean: the geometric median; cosine: a direction).
* :func:`public_command`: a recorded command line with machine-specific paths shortened.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..distances import squared_euclidean
from ..episodes import Episode
from ..fewshot import class_means
from .plotting import pca_axes

#: Class colours of the lesson figures (matplotlib's tab10, then tab20's light shades).
COLOURS = [plt.get_cmap("tab10")(i) for i in range(10)] + [plt.get_cmap("tab20")(2 * i + 1) for i in range(10)]


@dataclass(frozen=True)
class PrototypeMap:
    """What :func:`prototype_map` drew, and the numbers its caption needs."""

    figure: Figure
    explained: float  # fraction of the embeddings' variance kept by the two principal axes
    accuracy_full: float  # the model's query accuracy (nearest prototype in the full space)
    accuracy_2d: float  # accuracy of the nearest prototype *in the projection*
    agreement: float  # fraction of queries on which the two rules agree
    dim: int  # embedding dimension


@torch.no_grad()
def prototype_map(model: torch.nn.Module, episode: Episode, task: int = 0, resolution: int = 400) -> PrototypeMap:
    """Draw one task in the 2-D PCA projection of its embeddings.

    Support points are dots, queries are crosses (coloured by their true class; a black ring marks
    a query the model gets wrong in the full space), prototypes are stars.  The shaded cells are
    the regions of the nearest *projected* prototype: an illustration of the decision rule, not
    the model's decision regions, which live in the full embedding space.

    Args:
        model: a :class:`~metalearn_lite.algorithms.protonet.ProtoNet` (uses ``embed_task``).
        episode: a meta-batch of image tasks; ``task`` picks one.
        resolution: grid points per side for the shaded cells.
    """
    ep = episode.task(task)
    ways = int(ep.support_y.max()) + 1
    zs, zq = model.embed_task(ep.support_x, ep.query_x)  # one pass, as the model classifies
    protos = class_means(zs, ep.support_y, ways)
    pred_full = (-squared_euclidean(zq, protos)).argmax(-1)[0]
    zs, zq, protos, sy, qy = zs[0], zq[0], protos[0], ep.support_y[0], ep.query_y[0]

    centre, axes, explained = pca_axes(torch.cat([zs, zq]))
    project = lambda z: ((z.double() - centre) @ axes.T).numpy()  # noqa: E731
    s2, q2, p2 = project(zs), project(zq), project(protos)
    pred_2d = ((q2[:, None, :] - p2[None]) ** 2).sum(-1).argmin(-1)

    everything = np.concatenate([s2, q2, p2])
    lo, hi = everything.min(0), everything.max(0)
    pad = 0.08 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    cells = ((grid[:, None, :] - p2[None]) ** 2).sum(-1).argmin(-1).reshape(gx.shape)

    colours = [COLOURS[c % len(COLOURS)] for c in range(ways)]
    fig, ax = plt.subplots(figsize=(7.2, 6.0))
    ax.imshow(cells, origin="lower", extent=(lo[0], hi[0], lo[1], hi[1]), cmap=ListedColormap(colours),
              vmin=-0.5, vmax=ways - 0.5, alpha=0.16, interpolation="nearest", aspect="auto")
    ax.contour(gx, gy, cells, levels=np.arange(ways - 1) + 0.5, colors="0.35", linewidths=0.6)
    sy_np, qy_np = sy.numpy(), qy.numpy()
    wrong = (pred_full != qy).numpy()
    for c in range(ways):
        ax.scatter(*s2[sy_np == c].T, s=36, color=colours[c], edgecolor="white", linewidth=0.6, zorder=3)
        ax.scatter(*q2[qy_np == c].T, s=34, color=colours[c], marker="x", linewidth=1.4, zorder=3)
        ax.scatter(*p2[c], s=320, color=colours[c], marker="*", edgecolor="black", linewidth=1.0, zorder=4)
    if wrong.any():
        ax.scatter(*q2[wrong].T, s=150, facecolor="none", edgecolor="black", linewidth=1.0, zorder=5)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel("first principal axis")
    ax.set_ylabel("second principal axis")
    dim = zs.shape[-1]
    ax.set_title(
        f"Illustration in a 2-D PCA projection ({100 * explained:.0f}% of the variance) of a {dim}-D embedding:\n"
        "shaded cells = nearest projected prototype; the model decides in the full space",
        fontsize=9,
    )
    legend = [
        Line2D([], [], marker="o", color="0.4", linestyle="", label="support"),
        Line2D([], [], marker="x", color="0.4", linestyle="", label="query (colour = true class)"),
        Line2D([], [], marker="*", color="0.4", markeredgecolor="black", markersize=13, linestyle="",
               label="prototype (class mean)"),
        Line2D([], [], marker="o", markerfacecolor="none", markeredgecolor="black", markersize=11, linestyle="",
               label="query the model gets wrong"),
    ]
    ax.legend(handles=legend, fontsize=8, loc="best", framealpha=0.85)
    fig.tight_layout()
    return PrototypeMap(
        figure=fig,
        explained=explained,
        accuracy_full=float((pred_full == qy).double().mean()),
        accuracy_2d=float((torch.from_numpy(pred_2d) == qy).double().mean()),
        agreement=float((torch.from_numpy(pred_2d) == pred_full).double().mean()),
        dim=dim,
    )


def plot_history(
    history: list[dict[str, float]], val_label: str = "validation episodes", title: str | None = None
) -> Figure:
    """Training loss (left) and training / validation accuracy (right) against the step.

    ``history`` is a checkpoint's list of ``{"step", "loss", "acc", "val_acc", "minutes"}``
    records (``loss`` and ``acc`` are running averages over the training episodes);
    ``val_label`` names the validation tasks in the legend.
    """
    if not history:
        raise ValueError("this model has no training history (it was saved without one)")
    step = [h["step"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    left.plot(step, [h["loss"] for h in history], marker="o", markersize=3, color="C3")
    left.set_ylabel("training loss (running mean)")
    right.plot(step, [100 * h["acc"] for h in history], marker="o", markersize=3, label="training episodes")
    right.plot(step, [100 * h["val_acc"] for h in history], marker="s", markersize=3, label=val_label)
    right.set_ylabel("accuracy (%)")
    right.legend(fontsize=8, loc="lower right")
    for ax in (left, right):
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    if "minutes" in history[-1]:
        fig.suptitle(title or f"training took {history[-1]['minutes']:.1f} minutes", fontsize=10)
    elif title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def public_command(command: str) -> str:
    """``command`` with absolute paths outside the repository shown as ``<scratch>/name``.

    Training commands record where their run folder was (often a temporary directory); that
    path says nothing about the model, and a lesson's output should not show it.
    """
    def shorten(match: re.Match[str]) -> str:
        return f"<scratch>/{PurePosixPath(match.group(0)).name}"

    return re.sub(r"(?<![\w.~-])/(?:[^\s/]+/)*[^\s/]+", shorten, command)


def _minimise(objective: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor) -> torch.Tensor:
    x = start.clone().double().requires_grad_(True)
    opt = torch.optim.LBFGS([x], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = objective(x)
        value.backward()
        return value

    opt.step(closure)
    return x.detach()


def centre_objectives(points: torch.Tensor) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The three summed distances from ``(n, D)`` points to a centre ``s``, as functions of ``s``.

    Each function takes centres ``(..., D)`` (one centre, or a grid of them) and returns ``(...)``.
    """
    z = points.double()

    def gaps(s: torch.Tensor) -> torch.Tensor:  # (..., D) -> (..., n) squared distances to the points
        return ((s.unsqueeze(-2) - z) ** 2).sum(-1)

    return {
        "squared Euclidean": lambda s: gaps(s).sum(-1),
        "Euclidean": lambda s: gaps(s).clamp_min(1e-24).sqrt().sum(-1),
        "cosine distance": lambda s: (1 - torch.nn.functional.cosine_similarity(s.unsqueeze(-2), z, dim=-1)).sum(-1),
    }


def best_centres(points: torch.Tensor, start: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Numerical minimiser of each objective of :func:`centre_objectives` (L-BFGS from ``start``)."""
    z = points.double()
    if start is None:
        start = z.mean(0) + z.std(0)  # deliberately not the mean: the optimiser must find its way
    return {name: _minimise(f, start) for name, f in centre_objectives(z).items()}


def plot_centre_objectives(points: torch.Tensor) -> Figure:
    """Contours of the three summed distances for a 2-D cloud, each with its minimiser marked.

    The mean is marked on every panel.  The cosine distance ignores length, so its minimisers
    form a ray from the origin (drawn as a line).
    """
    if points.dim() != 2 or points.shape[1] != 2:
        raise ValueError(f"plot_centre_objectives draws 2-D points (n, 2); got shape {tuple(points.shape)}")
    z = points.double()
    mean = z.mean(0)
    best = best_centres(z)
    lo = torch.minimum(z.min(0).values, torch.zeros(2)) - 0.6
    hi = z.max(0).values + 0.6
    gx, gy = torch.meshgrid(torch.linspace(float(lo[0]), float(hi[0]), 200, dtype=torch.float64),
                            torch.linspace(float(lo[1]), float(hi[1]), 200, dtype=torch.float64), indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.9))
    for ax, (name, f) in zip(axes, centre_objectives(z).items()):
        values = f(grid).reshape(gx.shape)
        ax.contourf(gx, gy, values, levels=25, cmap="Blues_r")
        ax.scatter(*z.T, color="black", s=22, zorder=3, label="points")
        ax.scatter(*mean, marker="+", s=200, color="C3", linewidth=2.2, zorder=4, label="mean")
        if name == "cosine distance":
            direction = best[name] / best[name].norm()
            ray = torch.stack([torch.zeros(2, dtype=torch.float64), direction * 2 * float(hi.norm())])
            ax.plot(*ray.T, color="C1", linewidth=2.2, zorder=4, label="minimisers (a ray)")
            ax.scatter(0, 0, marker="o", s=20, color="C1", zorder=4)
        else:
            ax.scatter(*best[name], marker="x", s=110, color="C1", linewidth=2.4, zorder=5, label="minimiser")
        ax.set_xlim(float(lo[0]), float(hi[0]))
        ax.set_ylim(float(lo[1]), float(hi[1]))
        ax.set_aspect("equal")
        ax.set_title(f"sum of {name} to the points", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
