"""Lesson 02 (metric learning) in one place: its figures, its pitfall, its widget and its exercise checks.

* Looking at embeddings: :func:`embed`, :func:`pca_2d`, :func:`tsne_2d`, :func:`plot_embedding`,
  :func:`nearest_neighbour_accuracy`, :func:`as_distance_space`.
* The pitfall: :func:`naive_metric_loss` (a "metric loss" copied from post to post; WRONG, kept to watch
  it fail), :func:`fit_small_embedding` and :func:`distance_stats` to see what a loss does to an embedding.
* A learned comparison: :func:`relation_matrix` and :func:`plot_relation_matrix`, the relation scores of a
  shipped Relation Network between a few drawings (the bridge to lesson 03).
* The widget: :func:`train_triplet` (short triplet-network runs), :func:`embedding_accuracy` (each measured
  on the embeddings of the test drawings) and :func:`plot_accuracy_grid` (every setting's accuracy at once).
* The exercises' checks (``check_*``): each prints "Correct! ..." or "Not yet: ..." and returns ``None``;
  ``strict=True`` raises :class:`~metalearn_lite.lessons.exercises.CheckFailed` instead.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from torch import nn

from ..algorithms.metric import contrastive_loss, triplet_loss
from ..distances import pairwise_distance, squared_euclidean
from ..models import MLP
from .exercises import CheckFailed, close, report
from .plotting import pca_axes

Tensor = torch.Tensor


# ============================================================================================== a learned comparison

def relation_matrix(model: nn.Module, images: Tensor) -> Tensor:
    """Relation scores ``(n, n)`` of a :class:`~metalearn_lite.algorithms.relation.RelationNet` between ``n``
    drawings ``(n, C, H, W)``: entry ``[i, j]`` scores drawing ``j`` (the query) against drawing ``i`` (a class
    of one example), ``sigmoid(g([f(x_i) ; f(x_j)]))``.

    One call of the model's own ``logits``, with every drawing its own one-shot class and every drawing also a
    query, so the transpose holds the same pairs in the other order.  The model is put in ``eval()`` mode for
    the call and restored afterwards (with ``norm="batch"`` the statistics still come from these drawings).
    """
    if images.dim() != 4:
        raise ValueError(f"relation_matrix takes drawings (n, C, H, W); got shape {tuple(images.shape)}")
    n = images.shape[0]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            raw = model.logits(images, torch.arange(n), images)  # (queries j, classes i)
    finally:
        model.train(was_training)
    return torch.sigmoid(raw).T


def plot_relation_matrix(scores: Tensor, images: Tensor, title: str = "") -> plt.Figure:
    """The matrix of :func:`relation_matrix` as a heat map, with each drawing shown along both axes."""
    n = scores.shape[0]
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * n, 0.9 + 0.75 * n))
    im = ax.imshow(scores.numpy(), cmap="viridis", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{float(scores[i, j]):.2f}", ha="center", va="center", fontsize=7,
                    color="white" if scores[i, j] < 0.6 else "black")
        for xy, box in (((i, n - 0.35), (0, -20)), ((-0.55, i), (-20, 0))):
            thumb = OffsetImage(images[i, 0].numpy(), cmap="gray_r", zoom=0.7)
            ax.add_artist(AnnotationBbox(thumb, xy, xybox=box, boxcoords="offset points", frameon=False,
                                         annotation_clip=False))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("query drawing j", labelpad=36)
    ax.set_ylabel("one-shot class: drawing i", labelpad=36)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8, label="relation score")
    return fig


# ============================================================================================== embeddings

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


# ============================================================================================== the pitfall


def naive_metric_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """WRONG, for demonstration only: ``sum_{same class} d(z_i, z_j) - sum_{all pairs} d(z_i, z_j)``.

    ``d`` is the Euclidean distance and pairs run over ``i != j``.  The loss is wrong for two reasons:

    1. "all pairs" contains the same-class pairs, so the first sum cancels against part of the
       second, and what is left is ``-sum_{different class} d(z_i, z_j)``: nothing pulls examples
       of one class together any more.
    2. What is left is linear in the distances with a negative sign, so it is unbounded below:
       scaling every embedding by ``c`` scales the loss by ``c``
       (``naive_metric_loss(c * z, y) == c * naive_metric_loss(z, y)``).  Gradient descent
       lowers it most cheaply by blowing the embedding up, without bound, whatever the classes.

    The contrastive loss (:func:`~metalearn_lite.algorithms.metric.contrastive_loss`) fixes both:
    positive pairs are pulled in by ``d^2``, and negative pairs are pushed only until they are a
    margin ``m`` apart (``max(0, m - d)^2`` is zero beyond it), so the margin sets the scale.

    Args:
        z: ``(B, D)`` embeddings.  y: ``(B,)`` integer labels.
    """
    d = (squared_euclidean(z, z) + 1e-12).sqrt()
    off_diagonal = ~torch.eye(len(y), dtype=torch.bool, device=z.device)
    same = (y.unsqueeze(0) == y.unsqueeze(1)) & off_diagonal
    return d[same].sum() - d[off_diagonal].sum()


@dataclass
class EmbeddingRun:
    """What :func:`fit_small_embedding` recorded, one entry per step (before that step's update).

    Attributes:
        losses: the training loss.
        spreads: the mean Euclidean distance between two embeddings of the batch (the scale).
        ratios: mean same-class distance / mean different-class distance (scale-free: below 1 means
            classes are tighter than the gaps between them).
        z: the final embeddings ``(B, D)``, after the last update.
    """

    losses: list[float] = field(default_factory=list)
    spreads: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    z: torch.Tensor | None = None


def distance_stats(z: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """``(mean distance over all pairs, mean same-class / mean different-class distance)``."""
    d = (squared_euclidean(z, z) + 1e-12).sqrt()
    off = ~torch.eye(len(y), dtype=torch.bool, device=z.device)
    same = (y.unsqueeze(0) == y.unsqueeze(1)) & off
    diff = y.unsqueeze(0) != y.unsqueeze(1)
    return float(d[off].mean()), float(d[same].mean() / d[diff].mean().clamp_min(1e-12))


def fit_small_embedding(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 60,
    lr: float = 1e-2,
    hidden: int = 64,
    out_features: int = 2,
    seed: int = 0,
) -> EmbeddingRun:
    """Train a one-hidden-layer MLP embedding of ``x`` with ``loss_fn(z, y)`` by full-batch Adam.

    Small on purpose (a fraction of a second for a hundred images): it exists to watch what a loss
    does to the *scale* and the *grouping* of an embedding, not to make a good one.

    Args:
        loss_fn: ``(z (B, D), y (B,)) -> scalar``.
        x: ``(B, ...)`` inputs (flattened to ``(B, features)``).  y: ``(B,)`` labels.
        steps: optimisation steps.  lr: Adam's learning rate.
        hidden, out_features: the MLP's hidden width and embedding size.
        seed: seeds the MLP's initial weights.
    """
    x = x.reshape(len(x), -1).float()
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    net = MLP(x.shape[1], (hidden,), out_features)
    torch.set_rng_state(gen_state)  # leave the caller's random stream as it was
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    run = EmbeddingRun()
    for _ in range(steps):
        z = net(x)
        loss = loss_fn(z, y)
        spread, ratio = distance_stats(z.detach(), y)
        run.losses.append(float(loss.detach()))
        run.spreads.append(spread)
        run.ratios.append(ratio)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        run.z = net(x)
    return run


# ============================================================================================== the widget


def train_triplet(
    images: Tensor,
    margin: float = 0.5,
    distance: str = "euclidean",
    mining: str = "batch_hard",
    steps: int = 50,
    hidden: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = False,
) -> nn.Module:
    """A short triplet-network run for the lesson's widget: Conv-4 with ``hidden`` filters, batches of
    10 classes x 5 drawings of ``images`` ``(classes, drawings, 1, H, W)``, ``steps`` Adam steps.

    Short on purpose (the lesson trains one for each of its widget's settings): the networks it returns are
    far from converged, so compare settings with each other, not with the shipped model.
    """
    from ..algorithms import TripletNet
    from ..episodes import EpisodeSampler
    from ..models import Conv4
    from ..training import train

    torch.manual_seed(seed)
    model = TripletNet(Conv4(hidden=hidden), distance=distance, margin=margin, mining=mining)
    tasks = EpisodeSampler(images, ways=10, shots=5, queries=0, seed=seed)
    with tempfile.TemporaryDirectory() as out_dir:
        train(model, tasks, steps=steps, lr=lr, val_every=steps, save_every=steps, out_dir=out_dir,
              progress=progress, resume=False)
    return model


def plot_accuracy_grid(ax: Axes, accuracy: dict[tuple[float, str, str], float],
                       chosen: tuple[float, str, str] | None = None) -> Axes:
    """A heat map of ``accuracy`` (in %) keyed by ``(margin, distance, mining)``: one row per
    ``(distance, mining)`` (top to bottom in the order they first appear), one column per margin
    (ascending), each cell annotated; ``chosen`` is outlined.  Missing combinations stay blank."""
    margins = sorted({k[0] for k in accuracy})
    rows = list(dict.fromkeys(k[1:] for k in accuracy))
    grid = torch.full((len(rows), len(margins)), float("nan"))
    for (m, d, mi), acc in accuracy.items():
        grid[rows.index((d, mi)), margins.index(m)] = acc
    ax.imshow(grid.numpy(), cmap="viridis", vmin=20, vmax=100, aspect="auto")
    for r in range(len(rows)):
        for c in range(len(margins)):
            if not torch.isnan(grid[r, c]):
                ax.text(c, r, f"{grid[r, c]:.0f}", ha="center", va="center", fontsize=9,
                        color="white" if grid[r, c] < 60 else "black")
    if chosen is not None and chosen[0] in margins and chosen[1:] in rows:
        r, c = rows.index(chosen[1:]), margins.index(chosen[0])
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="tab:orange", linewidth=3))
    ax.set_xticks(range(len(margins)), [f"{m:g}" for m in margins])
    ax.set_yticks(range(len(rows)), [f"{d}, {mi}" for d, mi in rows], fontsize=8)
    ax.set_xlabel("margin")
    return ax


def embedding_accuracy(
    model: nn.Module, images: Tensor, ways: int = 5, shots: int = 1, episodes: int = 600, seed: int = 0
) -> tuple[Any, Tensor]:
    """``(EvalResult, embeddings (classes, drawings, D))``: embed every drawing of ``images``
    ``(classes, drawings, ...)`` once, in one batch, then score seeded ``ways``-way ``shots``-shot tasks by
    nearest class mean on those embeddings, with the model's distance.

    One forward pass instead of one per task: the tasks are the ones :func:`~metalearn_lite.evaluate` draws
    with the same seed, but the batch statistics of a ``norm="batch"`` encoder come from the whole set
    rather than from each task, so the numbers compare settings with each other, not with lesson tables.
    """
    from ..algorithms import TripletNet
    from ..evaluation import evaluate

    c, n = images.shape[:2]
    z = embed(model, images.flatten(0, 1)).reshape(c, n, -1)
    probe = TripletNet(nn.Identity(), distance=getattr(model, "distance", "euclidean"))
    return evaluate(probe, z, ways=ways, shots=shots, episodes=episodes, seed=seed), z


# ============================================================================================== exercise checks


def _as_tensor(got: object, what: str) -> Tensor:
    if got is None:
        raise CheckFailed(f"your function returned None: return {what}")
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"your function returned a {type(got).__name__}: return {what} (a torch.Tensor)")
    return got


# ----------------------------------------------------------------------------------------------
# Exercise "contrastive" (implement): the contrastive loss over a batch


def _contrastive_cases() -> list[tuple[Tensor, Tensor, float]]:
    g = torch.Generator().manual_seed(3)
    z1 = torch.randn(9, 2, generator=g) * 0.8  # distances around the margin: some hinges active, some not
    y1 = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    z2 = torch.randn(8, 5, generator=g) * 0.6
    y2 = torch.tensor([3, 3, 7, 7, 7, 7, 9, 9])
    z3 = torch.randn(6, 3, generator=g)
    y3 = torch.tensor([1, 0, 1, 0, 2, 2])  # labels not grouped
    return [(z1, y1, 1.0), (z2, y2, 1.5), (z3, y3, 0.7)]


def _contrastive_variants(z: Tensor, y: Tensor, m: float) -> dict[str, Tensor]:
    """The usual wrong versions, each with the hint that names its mistake."""
    z = z.double()
    d2 = ((z.unsqueeze(1) - z.unsqueeze(0)) ** 2).sum(-1)
    d = d2.sqrt()
    same = y.unsqueeze(0) == y.unsqueeze(1)
    eye = torch.eye(len(y), dtype=torch.bool)
    pos, neg = same & ~eye, ~same
    hinge = (m - d).clamp_min(0)
    return {
        "your positive pairs include each example paired with itself (i == j). Those pairs have distance 0: "
        "they do not change the sum but they do change the mean. Exclude the diagonal":
            (d[same] ** 2).mean() + (hinge[neg] ** 2).mean(),
        "negative pairs that are already farther apart than the margin must contribute nothing: use "
        "max(0, m - d) (torch.clamp_min(m - d, 0)) before squaring, not (m - d) alone":
            (d[pos] ** 2).mean() + ((m - d[neg]) ** 2).mean(),
        "square the hinge: the negative term is max(0, m - d)^2, not max(0, m - d)":
            (d[pos] ** 2).mean() + hinge[neg].mean(),
        "d is the Euclidean distance (with the square root); you used the squared distance inside the loss":
            (d2[pos] ** 2).mean() + ((m - d2[neg]).clamp_min(0) ** 2).mean(),
        "the two terms are means, one over the positive pairs and one over the negative pairs, so both kinds "
        "weigh the same whatever their counts; you summed instead of averaging":
            (d[pos] ** 2).sum() + (hinge[neg] ** 2).sum(),
        "you took one mean over all pairs together; take a separate mean over positive pairs and over "
        "negative pairs (there are many more negatives, and they would otherwise dominate)":
            torch.cat([d[pos] ** 2, hinge[neg] ** 2]).mean(),
        "the roles are swapped: same-class pairs are pulled together (d^2) and different-class pairs are "
        "pushed apart (max(0, m - d)^2)":
            (d[neg] ** 2).mean() + (hinge[pos] ** 2).mean(),
    }


def _contrastive(fn: Callable[[Tensor, Tensor, float], Tensor]) -> str:
    for z, y, m in _contrastive_cases():
        got = _as_tensor(fn(z.clone(), y.clone(), m), "the loss as a 0-dimensional tensor")
        if got.numel() != 1:
            raise CheckFailed(
                f"your function returned a tensor of shape {tuple(got.shape)}; the loss is one number: "
                "reduce the pair terms with .mean() (one mean per kind of pair)"
            )
        got = got.reshape(())
        want = contrastive_loss(z.double(), y, margin=m)
        if close(got, want, 1e-5):
            continue
        for hint, value in _contrastive_variants(z, y, m).items():
            if close(got, value, 1e-5):
                raise CheckFailed(hint)
        raise CheckFailed(
            f"for a batch of {len(y)} embeddings with labels {y.tolist()} and margin {m} the loss is "
            f"{float(want):.5f}; you returned {float(got):.5f}. Recall L = mean over same-class pairs (i != j) "
            "of d^2 + mean over different-class pairs of max(0, m - d)^2, with d = ||z_i - z_j||"
        )
    return "your loss matches metalearn_lite.algorithms.metric.contrastive_loss on every batch."


def check_contrastive_loss(fn: Callable[[Tensor, Tensor, float], Tensor], strict: bool = False) -> None:
    """Exercise "contrastive": ``fn(z (B, D), y (B,), margin) -> scalar`` equal to the package's contrastive
    loss.  Prints the verdict and returns ``None``."""
    return report(_contrastive, fn, strict)




# ----------------------------------------------------------------------------------------------
# Exercise "batch_hard_pick" (predict): which triplet does batch-hard mining pick for anchor 0?


def toy_batch() -> tuple[Tensor, Tensor]:
    """The lesson's toy batch: seven points in the plane, ``(7, 2)``, in three classes ``(7,)``."""
    z = torch.tensor([[0.0, 0.0], [0.4, 0.3], [1.6, -0.3],      # class 0
                      [0.9, 0.5], [2.4, 0.9],                  # class 1
                      [-0.8, 1.1], [-1.5, 0.2]])               # class 2
    return z, torch.tensor([0, 0, 0, 1, 1, 2, 2])


def batch_hard_picks(z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """For every anchor of the batch ``z`` ``(B, D)``, ``y`` ``(B,)``: the index of its farthest positive and
    of its nearest negative (Euclidean distance), the triplet batch-hard mining trains on."""
    d = (squared_euclidean(z, z) + 1e-12).sqrt()
    same = y.unsqueeze(0) == y.unsqueeze(1)
    eye = torch.eye(len(y), dtype=torch.bool)
    positives = torch.where(same & ~eye, d, torch.full_like(d, -1.0)).argmax(1)
    negatives = torch.where(~same, d, torch.full_like(d, float("inf"))).argmin(1)
    return positives, negatives


def _batch_hard_prediction(answer: tuple[Any, Tensor, Tensor]) -> str:
    predicted, z, y = answer
    if predicted is None:
        raise CheckFailed("set my_prediction = (positive, negative) to two point indices before running the cell")
    try:
        p, n = (int(v) for v in predicted)
    except (TypeError, ValueError) as err:
        raise CheckFailed("my_prediction must be a pair of point indices, (positive, negative)") from err
    pos, neg = batch_hard_picks(z, y)
    d = (squared_euclidean(z, z) + 1e-12).sqrt()[0]
    want = (int(pos[0]), int(neg[0]))
    if not (0 <= p < len(y) and 0 <= n < len(y)):
        raise CheckFailed(f"the batch has points 0..{len(y) - 1}; you named {p} and {n}")
    if p == 0 or y[p] != y[0]:
        raise CheckFailed(f"point {p} is not a positive of anchor 0: a positive is ANOTHER point of class {int(y[0])}")
    if y[n] == y[0]:
        raise CheckFailed(f"point {n} has the anchor's class; a negative comes from another class")
    if (p, n) == want:
        return (f"batch-hard takes anchor 0's farthest positive, point {p} (d = {float(d[p]):.2f}), and its nearest "
                f"negative, point {n} (d = {float(d[n]):.2f}): the worst triplet it has.")
    if p != want[0]:
        others = (y == y[0]) & (torch.arange(len(y)) != 0)
        easiest = int(torch.where(others, d, torch.full_like(d, float("inf"))).argmin())
        why = ("that is the EASIEST positive, the nearest one" if p == easiest else
               f"point {p} is at d = {float(d[p]):.2f}, not the farthest")
        raise CheckFailed(f"positive: {why}. Batch-hard takes the hardest positive: the farthest point of the "
                          "anchor's own class")
    raise CheckFailed(f"negative: point {n} is at d = {float(d[n]):.2f} from anchor 0; batch-hard takes the nearest "
                      "point of any other class, even when it is nearer than some positive")


def check_batch_hard_prediction(predicted: Any, z: Tensor, y: Tensor, strict: bool = False) -> None:
    """Exercise "batch_hard_pick": ``predicted`` = (positive, negative) indices that batch-hard mining picks for
    anchor 0 of the batch ``z``, ``y``.  Prints the verdict and returns ``None``."""
    return report(_batch_hard_prediction, (predicted, z, y), strict)


# ----------------------------------------------------------------------------------------------
# Exercise "scaling" (derive): how each loss scales when the embedding and the margin are scaled by c


def scaling_exponent(loss: Callable[[Tensor, Tensor, float], Tensor], c: float = 3.0, seed: int = 0) -> float:
    """The measured ``k`` in ``L(c z; c m) = c^k L(z; m)`` for ``loss(z, y, margin)`` on a random batch
    (margin 1; the loss must be non-zero there)."""
    g = torch.Generator().manual_seed(seed)
    z = 0.6 * torch.randn(12, 4, generator=g, dtype=torch.float64)
    y = torch.arange(4).repeat_interleave(3)
    base, scaled = float(loss(z, y, 1.0)), float(loss(c * z, y, c))
    if base == 0:
        raise ValueError("the loss is zero on the test batch: the exponent cannot be measured")
    return float(torch.log(torch.tensor(scaled / base)) / torch.log(torch.tensor(c)))


def scaling_losses() -> dict[str, Callable[[Tensor, Tensor, float], Tensor]]:
    """The three losses of the exercise, as ``loss(z, y, margin)`` (the naive loss has no margin)."""
    return {
        "contrastive": lambda z, y, m: contrastive_loss(z, y, margin=m),
        "triplet": lambda z, y, m: triplet_loss(z, y, margin=m, mining="all"),
        "naive": lambda z, y, m: naive_metric_loss(z, y),
    }


def _scaling(exponents: Any) -> str:
    if exponents is None or not isinstance(exponents, dict):
        raise CheckFailed("set my_exponents to a dict {'contrastive': k1, 'triplet': k2, 'naive': k3} of numbers")
    missing = set(scaling_losses()) - set(exponents)
    if missing:
        raise CheckFailed(f"my_exponents has no entry for {sorted(missing)}")
    measured = {name: scaling_exponent(f) for name, f in scaling_losses().items()}
    hints = {
        "contrastive": "every term is a squared length: d^2, or max(0, m - d)^2 with m and d both scaled by c",
        "triplet": "d(a,p) - d(a,n) + m is a length (Euclidean, not squared), and max(0, c t) = c max(0, t)",
        "naive": "the naive loss is a sum of distances with no margin; a distance scales like the embedding",
    }
    for name, k in measured.items():
        got = exponents[name]
        if not isinstance(got, (int, float)):
            raise CheckFailed(f"my_exponents[{name!r}] must be a number, not {type(got).__name__}")
        if abs(got - k) > 1e-3:
            raise CheckFailed(f"{name}: L(cz; cm) = c^k L(z; m) with k = {got} does not match the run. "
                              f"Hint: {hints[name]}")
    return (f"measured exponents {', '.join(f'{n} {k:.3f}' for n, k in measured.items())}. The margin is the unit of "
            "length of the contrastive and triplet losses; the naive loss has no such unit, so it can always gain by "
            "growing (c > 1 multiplies a negative loss by c).")


def check_scaling_exponents(exponents: Any, strict: bool = False) -> None:
    """Exercise "scaling": ``exponents`` = ``{"contrastive": k1, "triplet": k2, "naive": k3}`` with
    ``L(c z; c m) = c^k L(z; m)``, compared with :func:`scaling_exponent`.  Prints the verdict, returns ``None``."""
    return report(_scaling, exponents, strict)


# ----------------------------------------------------------------------------------------------
# Exercise "push_only" (ablate): the contrastive loss without its pull term

#: The claims the reader chooses from, about the push-only loss after training.
PUSH_ONLY_CLAIMS = {
    "A": "classes end about as tight as with the full contrastive loss",
    "B": "the embedding collapses to a point (spread below 0.01)",
    "C": "the embedding spreads out, but its classes end far less tight than with the full loss "
         "(same/different ratio at least 3 times as large)",
}


def _push_only(answer: tuple[Any, Any, Tensor, Tensor]) -> str:
    fn, claim, x, y = answer
    g = torch.Generator().manual_seed(6)
    z = 0.7 * torch.randn(9, 3, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    got = _as_tensor(fn(z.clone(), labels, 1.0) if fn is not None else None, "the push-only loss (a 0-d tensor)")
    d = (squared_euclidean(z, z) + 1e-12).sqrt()
    neg = labels.unsqueeze(0) != labels.unsqueeze(1)
    pos = ~neg & ~torch.eye(9, dtype=torch.bool)
    want = ((1.0 - d[neg]).clamp_min(0) ** 2).mean()
    if got.numel() != 1:
        raise CheckFailed(f"your loss has shape {tuple(got.shape)}; return one number (a mean over the negative pairs)")
    if not close(got.reshape(()), want, 1e-5):
        if close(got.reshape(()), want + (d[pos] ** 2).mean(), 1e-5):
            raise CheckFailed("this is the full contrastive loss: remove the pull term "
                              "(the mean of d^2 over same-class pairs)")
        if close(got.reshape(()), (d[pos] ** 2).mean(), 1e-5):
            raise CheckFailed("you kept the pull term and removed the push term; the exercise removes the pull")
        raise CheckFailed(f"the push-only loss on a test batch is {float(want):.5f}, yours {float(got):.5f}: "
                          "mean over different-class pairs of max(0, m - d)^2")
    if claim not in PUSH_ONLY_CLAIMS:
        raise CheckFailed(f"set my_claim to one of {sorted(PUSH_ONLY_CLAIMS)} before running the cell")
    run = fit_small_embedding(lambda zz, yy: fn(zz, yy, 1.0), x, y, steps=60)
    spread, ratio = distance_stats(run.z, y)
    full = distance_stats(fit_small_embedding(lambda zz, yy: contrastive_loss(zz, yy, 1.0), x, y, steps=60).z, y)[1]
    truth = "B" if spread < 0.01 else "C" if ratio >= 3 * full else "A"
    measured = (f"after 60 steps of the push-only loss: spread {run.spreads[0]:.3g} -> {spread:.3g}, "
                f"same/different {run.ratios[0]:.2f} -> {ratio:.2f} (the full loss: {full:.3f})")
    if claim != truth:
        raise CheckFailed(f"{measured}, so claim {claim} ({PUSH_ONLY_CLAIMS[claim]}) is not what happened. Hint: "
                          "without the pull term, what in the loss asks two drawings of one character to come close?")
    return (f"{measured}. Pushing only spreads the classes apart as wholes; nothing gathers a class, so it takes both "
            "terms: the pull groups, the push (with its margin) keeps the groups apart and sets the scale.")


def check_push_only(fn: Any, claim: Any, x: Tensor, y: Tensor, strict: bool = False) -> None:
    """Exercise "push_only": ``fn(z, y, margin)`` is the contrastive loss without its pull term and ``claim``
    (a key of :data:`PUSH_ONLY_CLAIMS`) what training with it does to ``x``, ``y``; the check trains
    :func:`fit_small_embedding` with ``fn`` and compares.  Prints the verdict and returns ``None``."""
    return report(_push_only, (fn, claim, x, y), strict)
