"""Looking at embeddings: embed a set of images, project to 2-D, draw, and score the grouping.

Used by lesson 02 (metric learning) to compare pixel space, an untrained network and a trained one
on the same held-out characters.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from torch import nn

from ..distances import pairwise_distance
from .plotting import pca_axes


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Embeddings ``(N, D)`` of images ``x`` ``(N, C, H, W)`` in one batch, without autograd.

    ``model`` is a metric method (its ``.encoder`` is used) or any module mapping images to
    vectors.  The module is put in ``eval()`` mode for the call and restored afterwards.  With the
    Conv-4 ``norm="batch"`` the statistics come from ``x`` itself, so embed the whole set at once.
    """
    net = getattr(model, "encoder", model)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            return net(x).flatten(1)
    finally:
        net.train(was_training)


def pca_2d(z: torch.Tensor) -> torch.Tensor:
    """Project ``z`` ``(N, D)`` onto its two principal axes (:func:`pca_axes`) -> ``(N, 2)`` float32."""
    centre, axes, _ = pca_axes(z)
    return ((z.double() - centre) @ axes.T).float()


def tsne_2d(z: torch.Tensor, perplexity: float = 15.0, seed: int = 0) -> torch.Tensor:
    """t-SNE map of ``z`` ``(N, D)`` to ``(N, 2)`` (scikit-learn, PCA start, fixed seed).

    t-SNE keeps *neighbourhoods*: points that are near in ``D`` dimensions stay near in the plane.
    It does not keep distances between groups or the sizes of groups, so read it for "which points
    gather", never for "how far apart".  A second or so for a few hundred points.
    """
    from sklearn.manifold import TSNE  # imported here: scikit-learn is slow to import

    n = len(z)
    tsne = TSNE(2, perplexity=min(perplexity, (n - 1) / 3), init="pca", random_state=seed)
    return torch.from_numpy(tsne.fit_transform(z.double().cpu().numpy())).float()


def as_distance_space(z: torch.Tensor, distance: str = "euclidean") -> torch.Tensor:
    """The vectors whose Euclidean geometry a distance sees: ``z`` itself, or ``z/|z|`` for cosine."""
    return F.normalize(z, dim=-1) if distance == "cosine" else z


def nearest_neighbour_accuracy(z: torch.Tensor, y: torch.Tensor, distance: str = "euclidean") -> float:
    """Leave-one-out 1-nearest-neighbour accuracy: how often an example's nearest *other* example
    (under ``distance``) has its label.  Scale-free; 1.0 when every class forms a tight group."""
    d = pairwise_distance(z, z, distance)
    d.fill_diagonal_(float("inf"))
    return float((y[d.argmin(1)] == y).float().mean())


def plot_embedding(
    ax: Axes,
    z2: torch.Tensor,
    y: torch.Tensor,
    title: str = "",
    thumbnails: torch.Tensor | None = None,
    zoom: float = 0.6,
) -> Axes:
    """Scatter 2-D points ``z2`` ``(N, 2)`` coloured by label ``y``.

    Args:
        thumbnails: optional ``(classes, 1, H, W)`` images, one per label ``0..classes-1``, drawn
            at the mean of that class's points.
        zoom: thumbnail size.
    """
    cmap = plt.get_cmap("tab10")
    labels = sorted(set(y.tolist()))
    for i, c in enumerate(labels):
        pts = z2[y == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=12, color=cmap(i % 10), alpha=0.75, linewidths=0)
        if thumbnails is not None and c < len(thumbnails):
            img = OffsetImage(thumbnails[c, 0].cpu().numpy(), cmap="gray_r", zoom=zoom)
            box = AnnotationBbox(img, pts.mean(0).tolist(), frameon=True, pad=0.1,
                                 bboxprops={"edgecolor": cmap(i % 10), "linewidth": 1.5})
            ax.add_artist(box)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax
