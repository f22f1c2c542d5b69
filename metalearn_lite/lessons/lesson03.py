"""Lesson 03 (Prototypical Networks) in one place: its figures, its widget's helper and its exercise checks.

* Figures: :func:`prototype_map` (one task in a 2-D PCA projection over the cells of the nearest
  projected prototype), :func:`plot_centre_objectives` (where three "centre" objectives put their
  minimiser).  The page also imports from here, for one import line, two shared helpers:
  :func:`~metalearn_lite.lessons.plotting.plot_history` (a checkpoint's training curves) and
  :func:`~metalearn_lite.lessons.commands.public_command` (a recorded command without machine paths).
* Prototypes against attention: :func:`compare_classifiers` measures a classifier on ProtoNet's
  embedding against the prototype rule on the same tasks.
* ProtoNet, Matching and Relation Networks on the same task: :func:`class_scores`, :func:`plot_method_scores`;
  a Matching Network's temperature: :func:`matching_cosines`, :func:`temperature_sweep` (the same tasks at
  other temperatures, embedded once), :func:`plot_temperature_sweep`, :func:`plot_attention` (the widget's
  picture), and the two limits :func:`nearest_example_probs` (``tau -> 0``) and :func:`mean_similarity_probs`
  (the prediction as ``tau -> inf``).
* The exercises' checks (``check_*``): each prints "Correct! ..." or "Not yet: ..." and returns ``None``;
  ``strict=True`` raises :class:`~metalearn_lite.lessons.exercises.CheckFailed` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..distances import squared_euclidean
from ..episodes import Episode
from ..fewshot import class_means
from .commands import public_command
from .exercises import CheckFailed, answer_tensor, close, report
from .plotting import pca_axes, plot_history

__all__ = [
    "CheckFailed", "MethodScores", "PrototypeMap", "TemperatureSweep", "best_centres", "centre_objectives",
    "check_attention_classifier", "check_matching_limit", "class_scores", "matching_cosines",
    "mean_similarity_probs", "nearest_example_probs", "plot_attention", "plot_method_scores",
    "plot_temperature_sweep", "temperature_sweep",
    "check_boundary", "check_logits", "check_prototypes_and_logits", "check_protonet_logits", "check_prototypes",
    "compare_classifiers",
    "plot_centre_objectives", "plot_history", "prototype_map", "public_command",
]


# ============================================================================================== figures

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


# ============================================================================================== exercise checks

def _differentiable(got: torch.Tensor, name: str) -> None:
    if not got.requires_grad:
        raise CheckFailed(
            f"the values are right, but no gradient flows back to {name}: the encoder is trained through "
            "this function, so keep everything in torch (no .detach(), .numpy(), .item() or torch.tensor(...) "
            "rebuilt from the values)"
        )


# ---------------------------------------------------------------------------------------------
# prototypes(z, targets, ways) -> (T, ways, D)
# ---------------------------------------------------------------------------------------------


def _reference_prototypes(z: torch.Tensor, targets: torch.Tensor, ways: int) -> torch.Tensor:
    """Class means by an explicit loop (independent of the package's implementation)."""
    out = torch.zeros(z.shape[0], ways, z.shape[2], dtype=z.dtype)
    for t in range(z.shape[0]):
        for c in range(ways):
            out[t, c] = z[t, targets[t] == c].mean(0)
    return out


def _prototype_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, int]]:
    g = torch.Generator().manual_seed(3)
    t, ways, shots, d = 2, 3, 4, 6
    z = torch.randn(t, ways * shots, d, generator=g) + 2.0  # away from 0: a sum and a mean differ visibly
    sorted_y = torch.arange(ways).repeat_interleave(shots).expand(t, -1).contiguous()
    shuffled_y = torch.stack([sorted_y[i, torch.randperm(ways * shots, generator=g)] for i in range(t)])
    uneven_y = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2], [2, 1, 2, 2, 2, 2, 0, 2, 2, 1, 2, 1]])
    return [
        ("class-sorted", z, sorted_y, ways),
        ("shuffled", z, shuffled_y, ways),
        ("uneven", z, uneven_y, ways),
    ]


def _prototypes(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> str:
    for kind, z, y, ways in _prototype_cases():
        t, s, d = z.shape
        shots = s // ways
        zz = z.clone().requires_grad_(True)
        got = answer_tensor(fn(zz, y.clone(), ways), f"({t}, {ways}, {d}) tensor of class means")
        want = _reference_prototypes(z, y, ways)
        if got.shape != want.shape:
            shape = tuple(got.shape)
            if shape == (ways, d):
                hint = "the task dimension is missing: z holds T tasks, return one set of prototypes per task"
            elif shape == (t, d, ways):
                hint = "the last two dimensions are swapped: one row per class, one column per feature"
            elif shape == (t, s, d):
                hint = "you returned one vector per support example; average the examples of each class"
            elif shape == (t, d):
                hint = "you averaged over all support examples at once; average within each class"
            else:
                hint = "one prototype per task and class, each a D-dimensional vector"
            raise CheckFailed(
                f"for z of shape {tuple(z.shape)} (T={t} tasks, {s} support examples, D={d}) and ways={ways} "
                f"you returned shape {shape}, but it should be {(t, ways, d)}. Hint: {hint}"
            )
        got_d = got.detach()
        if close(got_d, want):
            _differentiable(got, "z")
            continue
        counts = torch.stack([torch.bincount(y[i], minlength=ways) for i in range(t)]).unsqueeze(-1)
        if close(got_d, want * counts):
            raise CheckFailed(
                "your prototypes are the *sums* of each class's embeddings; a prototype is their mean: "
                "divide each class's sum by its number of support examples"
            )
        if close(got_d, z.mean(1, keepdim=True).expand_as(want)):
            raise CheckFailed(
                "every prototype equals the mean of the whole support set; average only the embeddings "
                "whose label is c (for example with z[t, targets[t] == c] or a one-hot matrix)"
            )
        if kind == "shuffled":
            raise CheckFailed(
                "your prototypes are right when the support set is sorted by class, but wrong when the same "
                "examples come in another order: use the labels in targets, not the positions (a reshape to "
                "(T, ways, shots, D) assumes the order; EpisodeSampler sorts its support sets, but "
                "ProtoNet.logits accepts any order)"
            )
        if kind == "uneven":
            raise CheckFailed(
                "your prototypes are right when every class has the same number of support examples, but "
                f"wrong when they differ (here {counts[0].flatten().tolist()} examples of classes 0, 1, 2): "
                f"divide each class's sum by its own count, not by S / ways = {s}/{ways} = {shots}"
            )
        err = (got_d - want).abs().max().item()
        raise CheckFailed(
            f"on a {kind} support set your prototypes differ from the class means by up to {err:.3g}; "
            "p_c must be the average of the embeddings z[t, i] with targets[t, i] == c"
        )
    return (
        "prototypes are class means, for any order of the support set and any number of examples per class, "
        "and gradients flow back to the embeddings."
    )


def check_prototypes(
    fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor], strict: bool = False
) -> None:
    """Lesson 03: ``fn(z (T, S, D), targets (T, S), ways) -> (T, ways, D)`` class means.  Prints the verdict
    and returns ``None``."""
    return report(_prototypes, fn, strict)


# ---------------------------------------------------------------------------------------------
# logits(query_z, protos) -> (T, Q, N) = -||query_z - p||^2
# ---------------------------------------------------------------------------------------------


def _logits(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> str:
    g = torch.Generator().manual_seed(5)
    t, q, n, d = 2, 7, 4, 5
    zq = torch.randn(t, q, d, generator=g) * 1.5
    protos = torch.randn(t, n, d, generator=g) * 1.5 + 0.5
    zq_leaf = zq.clone().requires_grad_(True)
    p_leaf = protos.clone().requires_grad_(True)
    got = answer_tensor(fn(zq_leaf, p_leaf), f"({t}, {q}, {n}) tensor of logits")
    if got.shape != (t, q, n):
        shape = tuple(got.shape)
        if shape == (t, n, q):
            hint = "the last two dimensions are swapped: one row per query, one column per class"
        elif shape == (q, n):
            hint = "the task dimension is missing: compare each task's queries with that task's prototypes"
        elif len(shape) == 4:
            hint = "sum the squared differences over the feature dimension (the last one)"
        else:
            hint = "logits[t, i, c] scores query i of task t against prototype c of task t"
        raise CheckFailed(
            f"for query embeddings {tuple(zq.shape)} (T, Q, D) and prototypes {tuple(protos.shape)} (T, N, D) "
            f"you returned shape {shape}, but it should be {(t, q, n)}. Hint: {hint}"
        )
    got_d = got.detach().double()
    d2 = ((zq.double().unsqueeze(2) - protos.double().unsqueeze(1)) ** 2).sum(-1)  # (T, Q, N)
    if close(got_d, -d2):
        _differentiable(got, "the embeddings")
        return "logits are minus the squared Euclidean distances, and gradients flow to both inputs."
    if close(got_d, d2):
        raise CheckFailed(
            "these are the squared distances themselves; a logit must be *larger* for a more likely class, "
            "and the nearest prototype is the most likely: return minus the squared distance"
        )
    if close(got_d, -d2.sqrt()):
        raise CheckFailed(
            "these are minus the plain Euclidean distances (torch.cdist or .norm() give ||a - b||, not its "
            "square). Prototypical Networks use the squared distance: it is a Bregman divergence, for which "
            "the class mean is the best prototype, and it makes the classifier linear in the query embedding"
        )
    if close(got_d, d2.sqrt()):
        raise CheckFailed(
            "these are the plain Euclidean distances: square them, and negate them so that nearer means larger"
        )
    ratio = (got_d / -d2).flatten()
    if torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4) and float(ratio[0]) > 0:
        raise CheckFailed(
            f"your logits are {float(ratio[0]):.4g} times minus the squared distance; use no factor. A scale "
            "is a softmax temperature: it leaves the predictions alone but changes the probabilities and the "
            "loss the network is trained with"
        )
    cos = torch.nn.functional.cosine_similarity(zq.double().unsqueeze(2), protos.double().unsqueeze(1), dim=-1)
    if close(got_d, cos) or close(got_d, cos - 1):
        raise CheckFailed("this is the cosine similarity; this exercise asks for minus the squared Euclidean distance")
    dots = zq.double() @ protos.double().transpose(1, 2)
    if close(got_d, dots) or close(got_d, 2 * dots):
        raise CheckFailed(
            "these are dot products z . p_c (or twice them). Expanding -||z - p_c||^2 = -||z||^2 + 2 z . p_c - "
            "||p_c||^2: the first term may go (it is the same for every class), but -||p_c||^2 differs between "
            "classes and must stay"
        )
    shift = got_d + d2  # a correct answer up to a per-query constant has the same softmax
    if torch.allclose(shift, shift[..., :1].expand_as(shift), rtol=1e-4, atol=1e-4):
        _differentiable(got, "the embeddings")
        return (
            "your logits differ from -||z - p_c||^2 only by a term that is the same for every class of a query, "
            "so the softmax, the loss and the predictions are identical. (Dropping -||z||^2 is exactly the "
            "linear-layer form of this lesson.)"
        )
    err = (got_d + d2).abs().max().item()
    raise CheckFailed(
        f"your logits differ from -||z_i - p_c||^2 by up to {err:.3g}. Hint: for each task t, query i and class c, "
        "sum (zq[t, i] - protos[t, c])**2 over the features and negate; broadcasting zq[:, :, None, :] against "
        "protos[:, None, :, :] does all of them at once"
    )


def check_logits(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], strict: bool = False) -> None:
    """Lesson 03: ``fn(query_z (T, Q, D), protos (T, N, D)) -> (T, Q, N)`` logits ``-||z - p_c||^2``.  Prints
    the verdict and returns ``None``."""
    return report(_logits, fn, strict)


# ---------------------------------------------------------------------------------------------
# the two together, inside a real model
# ---------------------------------------------------------------------------------------------


def _protonet_logits(
    functions: tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]], model: Any, episode: Any
) -> str:
    prototypes_fn, logits_fn = functions
    ways = int(episode.support_y.max()) + 1
    with torch.no_grad():
        zs, zq = model.embed_task(episode.support_x, episode.query_x)
        want = model.task_logits(episode.support_x, episode.support_y, episode.query_x, ways)
        got = answer_tensor(logits_fn(zq, prototypes_fn(zs, episode.support_y, ways)), f"{tuple(want.shape)} logits")
    if got.shape != want.shape:
        raise CheckFailed(
            f"on this episode your functions give logits of shape {tuple(got.shape)}, the model's are "
            f"{tuple(want.shape)}: run check_prototypes and check_logits first"
        )
    same_prediction = (got.argmax(-1) == want.argmax(-1)).double().mean().item()
    scale = want.abs().max().clamp_min(1.0)
    shift = got.double() - want.double()
    if shift.abs().max() > 1e-4 * scale:
        # a per-query constant (e.g. -||z||^2 left out) changes neither the softmax nor the prediction
        if (shift - shift[..., :1]).abs().max() > 1e-4 * scale:
            raise CheckFailed(
                f"your functions do not reproduce the model's logits (they pick the same class for "
                f"{100 * same_prediction:.0f}% of the queries): run check_prototypes and check_logits first"
            )
    acc = (got.argmax(-1) == episode.query_y).double().mean().item()
    return (
        f"with your two functions the pretrained encoder classifies this episode exactly as ProtoNet does: "
        f"{100 * acc:.1f}% of its {episode.query_y.numel()} queries right."
    )


def check_protonet_logits(
    prototypes_fn: Callable[..., torch.Tensor],
    logits_fn: Callable[..., torch.Tensor],
    model: Any,
    episode: Any,
    strict: bool = False,
) -> None:
    """Lesson 03: the reader's two functions, on ``model``'s embeddings of ``episode``, give its logits.

    ``model`` is a squared-Euclidean :class:`~metalearn_lite.algorithms.protonet.ProtoNet`;
    ``episode`` a meta-batch of image tasks (all its tasks are checked at once).  Prints the verdict and
    returns ``None``.
    """
    if getattr(model, "distance", None) != "euclidean" or not hasattr(model, "embed_task"):
        raise ValueError("check_protonet_logits needs a ProtoNet with distance='euclidean'")
    return report(partial(_protonet_logits, model=model, episode=episode), (prototypes_fn, logits_fn), strict)


def check_prototypes_and_logits(
    prototypes_fn: Callable[..., torch.Tensor], logits_fn: Callable[..., torch.Tensor], strict: bool = False
) -> None:
    """Exercise "prototypes_logits": :func:`check_prototypes` then :func:`check_logits`.  Prints both verdicts
    and returns ``None``."""
    check_prototypes(prototypes_fn, strict)
    check_logits(logits_fn, strict)


# ---------------------------------------------------------------------------------------------
# Exercise "boundary" (derive): the hyperplane between two prototypes
# ---------------------------------------------------------------------------------------------


def _boundary(fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> str:
    g = torch.Generator().manual_seed(8)
    for dim in (2, 6):
        pa = torch.randn(dim, generator=g, dtype=torch.float64)
        pb = torch.randn(dim, generator=g, dtype=torch.float64) + 1
        got = fn(pa.clone(), pb.clone())
        if got is None:
            raise CheckFailed("your function returned None: return a pair (w, b)")
        if isinstance(got, torch.Tensor):
            raise CheckFailed("you returned one tensor; return a pair (w, b): a (D,) weight vector and a number")
        try:
            w, b = got
        except (TypeError, ValueError) as err:
            raise CheckFailed("return a pair (w, b): a (D,) weight vector and a number") from err
        w = torch.as_tensor(w, dtype=torch.float64).flatten()
        b = float(torch.as_tensor(b, dtype=torch.float64).reshape(()))
        if w.shape != (dim,):
            raise CheckFailed(f"w must have the prototypes' shape ({dim},); yours has {tuple(w.shape)}")
        z = 2 * torch.randn(400, dim, generator=g, dtype=torch.float64)
        nearer_a = ((z - pa) ** 2).sum(1) < ((z - pb) ** 2).sum(1)
        side = z @ w + b > 0
        midpoint = float((pa + pb) / 2 @ w + b)
        scale = float(w.norm()) * float((pa - pb).norm())
        if bool((side == ~nearer_a).all()):
            raise CheckFailed("your hyperplane is right but points the other way: w.z + b is positive on p_b's side. "
                              "Swap the roles of p_a and p_b (or negate w and b)")
        if abs(midpoint) > 1e-6 * max(scale, 1.0):
            raise CheckFailed(f"the point halfway between the prototypes must lie on the boundary, but w.m + b = "
                              f"{midpoint:.4g} there. Hint: expand ||z - p_a||^2 < ||z - p_b||^2; the |z|^2 terms "
                              "cancel, and what is left is linear in z, with b = ||p_b||^2 - ||p_a||^2")
        if not bool((side == nearer_a).all()):
            wrong = int((side != nearer_a).sum())
            raise CheckFailed(f"your hyperplane puts {wrong} of 400 random points on the wrong side. Hint: the "
                              "boundary is perpendicular to p_a - p_b, so w is a positive multiple of p_a - p_b")
    return ("the boundary between two prototypes is the hyperplane w.z + b = 0 with w = 2(p_a - p_b) and "
            "b = ||p_b||^2 - ||p_a||^2 (up to a positive factor): perpendicular to p_a - p_b, through their midpoint.")


def check_boundary(fn: Callable[[torch.Tensor, torch.Tensor], Any], strict: bool = False) -> None:
    """Exercise "boundary": ``fn(p_a (D,), p_b (D,)) -> (w (D,), b)`` with ``w.z + b > 0`` exactly where ``z`` is
    nearer ``p_a`` than ``p_b`` in squared Euclidean distance.  Prints the verdict and returns ``None``."""
    return report(_boundary, fn, strict)


# ---------------------------------------------------------------------------------------------
# Exercise "attention" (extend): attention over support examples on ProtoNet's embedding
# ---------------------------------------------------------------------------------------------


def prototype_probs(zs: torch.Tensor, sy: torch.Tensor, zq: torch.Tensor, ways: int) -> torch.Tensor:
    """ProtoNet's class probabilities ``(T, Q, N)``: a softmax over ``-||f(x) - p_c||^2``, the class means."""
    return (-squared_euclidean(zq, class_means(zs, sy, ways))).softmax(-1)


@torch.no_grad()
def compare_classifiers(
    model: Any,
    probs_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor],
    images: torch.Tensor,
    ways: int = 5,
    shots: int = 5,
    queries: int = 15,
    episodes: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy of ``probs_fn(zs, sy, zq, ways) -> (T, Q, N)`` and of ProtoNet's prototype rule on the same
    ``episodes`` seeded tasks, both on ``model``'s embedding (each task embedded once, in one batch).

    Returns ``{"probs": mean accuracy, "prototypes": mean accuracy, "difference": (mean, 95 % half-width)
    of the paired per-task difference (probs - prototypes), "disagree": fraction of queries the two label
    differently, "episodes": episodes}``.
    """
    from ..episodes import EpisodeSampler
    from ..evaluation import mean_ci

    was_training = model.training
    model.eval()
    try:
        sampler = EpisodeSampler(images, ways=ways, shots=shots, queries=queries, seed=seed)
        a_acc, p_acc, disagree = [], [], []
        for _ in range(episodes):
            ep = sampler.sample(1)
            zs, zq = model.embed_task(ep.support_x, ep.query_x)
            a = probs_fn(zs, ep.support_y, zq, ways).argmax(-1)
            p = prototype_probs(zs, ep.support_y, zq, ways).argmax(-1)
            a_acc.append((a == ep.query_y).double().mean())
            p_acc.append((p == ep.query_y).double().mean())
            disagree.append((a != p).double().mean())
    finally:
        model.train(was_training)
    a_t, p_t = torch.stack(a_acc), torch.stack(p_acc)
    diff, half = mean_ci(a_t - p_t)
    return {"probs": float(a_t.mean()), "prototypes": float(p_t.mean()), "difference": (float(diff), float(half)),
            "disagree": float(torch.stack(disagree).mean()), "episodes": episodes}


def _attention_reference(zs: torch.Tensor, sy: torch.Tensor, zq: torch.Tensor, ways: int) -> torch.Tensor:
    weights = (-squared_euclidean(zq, zs)).softmax(-1)                        # (T, Q, S)
    return weights @ torch.nn.functional.one_hot(sy, ways).to(weights.dtype)   # (T, Q, N)


def _attention(answer: tuple[Callable[..., torch.Tensor], Any, torch.Tensor, int]) -> str:
    fn, model, images, episodes = answer
    g = torch.Generator().manual_seed(9)
    t, ways, shots, q, d = 2, 3, 3, 4, 5
    zs = torch.randn(t, ways * shots, d, generator=g)
    zq = torch.randn(t, q, d, generator=g)
    sy = torch.stack([torch.randperm(ways * shots, generator=g) % ways for _ in range(t)])
    got = answer_tensor(fn(zs.clone(), sy.clone(), zq.clone(), ways) if fn is not None else None,
                        f"({t}, {q}, {ways}) tensor of class probabilities", (t, q, ways)).detach()
    want = _attention_reference(zs, sy, zq, ways)
    if close(got, prototype_probs(zs, sy, zq, ways), 1e-5):
        raise CheckFailed("these are ProtoNet's probabilities (distances to the class means); weigh every support "
                          "example by its own softmax weight, then add up the weights of each class")
    if (got < -1e-6).any() or not close(got.sum(-1), torch.ones(t, q), 1e-4):
        raise CheckFailed("each query's class probabilities must be non-negative and sum to 1: take ONE softmax over "
                          "all support examples of the task, then sum its weights per class")
    plain = (-squared_euclidean(zq, zs).sqrt()).softmax(-1) @ torch.nn.functional.one_hot(sy, ways).float()
    if close(got, plain, 1e-4):
        raise CheckFailed("you used the plain Euclidean distance; use the squared one, as ProtoNet does, so that the "
                          "two classifiers differ only in what the query is compared with")
    if not close(got, want, 1e-4):
        raise CheckFailed("p(c | x) = sum over support examples i of class c of softmax_i(-||f(x) - f(x_i)||^2); your "
                          "values differ. Check that the labels, not the positions, decide each example's class")
    one_shot = torch.randn(1, ways, d, generator=g), torch.arange(ways).unsqueeze(0)
    got_1 = fn(one_shot[0], one_shot[1], zq[:1], ways).detach()
    if not close(got_1, prototype_probs(one_shot[0], one_shot[1], zq[:1], ways)):
        raise CheckFailed("with one support example per class, attention and prototypes must agree exactly")
    r = compare_classifiers(model, fn, images, episodes=episodes)
    diff, half = r["difference"]
    verdict = "within" if abs(diff) <= half else ("above" if diff > 0 else "below")
    return (f"on {r['episodes']} 5-way 5-shot test tasks with the shipped model: attention over examples "
            f"{100 * r['probs']:.2f} %, prototypes {100 * r['prototypes']:.2f} %; paired difference "
            f"{100 * diff:+.2f} ± {100 * half:.2f} points ({verdict} the noise); the two label "
            f"{100 * r['disagree']:.2f} % of the queries differently. With one shot they are the same classifier.")


def check_attention_classifier(
    fn: Callable[..., torch.Tensor], model: Any, images: torch.Tensor, episodes: int = 100, strict: bool = False
) -> None:
    """Exercise "attention": ``fn(zs (T, S, D), sy (T, S), zq (T, Q, D), ways) -> (T, Q, ways)`` class
    probabilities from attention over the support examples, checked on known cases, then measured against
    the prototype rule with ``model`` on ``episodes`` 5-way 5-shot tasks of ``images``.  Prints the verdict
    and the measurement, and returns ``None``."""
    return report(_attention, (fn, model, images, episodes), strict)


# ============================================================================================== three methods, one task

def class_scores(model: Any, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
    """Per-query class scores ``(Q, N)`` in ``[0, 1]`` of a shipped metric method on one task.

    Each method says how (its ``class_scores``): ProtoNet and Matching Networks give probabilities (a softmax
    of their logits; a Matching Network's logits are already log-probabilities, so the softmax only
    exponentiates them); a Relation Network gives its relation scores, the sigmoid of its raw scores, which
    need not sum to 1 over the classes.
    """
    with torch.no_grad():
        return model.class_scores(model.logits(support_x, support_y, query_x))


@dataclass(frozen=True)
class MethodScores:
    """What :func:`plot_method_scores` drew, and the numbers its caption needs (one entry per model)."""

    figure: Figure
    scores: dict[str, torch.Tensor]  # (Q, N) class scores of each model
    accuracy: dict[str, float]  # fraction of the task's queries each model labels right
    true_score: dict[str, float]  # mean score given to the true class


def plot_method_scores(models: dict[str, Any], episode: Episode, task: int = 0) -> MethodScores:
    """Heat maps of the per-query class scores of several models on the same task, side by side.

    Rows are queries (grouped by true class), columns the classes; the true class of each query is
    outlined, and a red cross marks a query the model labels wrongly (its highest score is elsewhere).
    Each model is called as the package calls it, on the whole task at once (see :func:`class_scores`).
    """
    ep = episode.task(task)
    sx, sy, qx, qy = ep.unbatched()
    order = torch.argsort(qy, stable=True)
    qx, qy = qx[order], qy[order]
    ways = int(sy.max()) + 1
    fig, axes = plt.subplots(1, len(models), figsize=(3.3 * len(models), 0.24 * len(qy) + 1.6), sharey=True)
    axes = np.atleast_1d(axes)
    scores, accuracy, true_score = {}, {}, {}
    for ax, (name, model) in zip(axes, models.items()):
        s = class_scores(model, sx, sy, qx)
        scores[name] = s
        pred = s.argmax(-1)
        accuracy[name] = float((pred == qy).double().mean())
        true_score[name] = float(s.gather(1, qy[:, None]).double().mean())
        image = ax.imshow(s.numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        for i, c in enumerate(qy.tolist()):
            ax.add_patch(plt.Rectangle((c - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="white", linewidth=1.2))
            if pred[i] != c:
                ax.scatter(int(pred[i]), i, marker="x", color="red", s=40, linewidth=1.8)
        ax.set_xticks(range(ways))
        ax.set_xlabel("class")
        ax.set_title(f"{name}\n{100 * accuracy[name]:.0f}% of the queries right", fontsize=9)
    axes[0].set_ylabel("query (grouped by true class)")
    axes[0].set_yticks(range(len(qy)))
    axes[0].set_yticklabels([str(c) for c in qy.tolist()], fontsize=6)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="probability (relation score for Relation)")
    return MethodScores(fig, scores, accuracy, true_score)


# ============================================================================================== Matching's temperature

@torch.no_grad()
def matching_cosines(model: Any, episode: Episode) -> torch.Tensor:
    """The cosines ``(T, Q, S)`` between the query and support embeddings of a Matching Network, every
    task embedded in one pass as the model does (its attention is a softmax of these over ``tau``)."""
    from ..algorithms.protonet import embed_tasks
    from ..distances import cosine_similarity

    zs, zq = embed_tasks(model.encoder, episode.support_x, episode.query_x)
    return cosine_similarity(zq, zs)


def nearest_example_probs(similarity: torch.Tensor, support_y: torch.Tensor, ways: int) -> torch.Tensor:
    """The ``tau -> 0`` limit of the attention ``(..., Q, ways)``: all the weight on the class of the most similar
    support example (ties, which real cosines do not have, go to the first)."""
    nearest = similarity.argmax(-1)  # (..., Q)
    return F.one_hot(support_y.gather(-1, nearest), ways).to(similarity.dtype)


def mean_similarity_probs(similarity: torch.Tensor, support_y: torch.Tensor, ways: int) -> torch.Tensor:
    """One-hot ``(..., Q, ways)`` on the class with the largest *mean* similarity: with the same number of shots
    per class, the class the attention's highest probability tends to as ``tau -> inf``."""
    return F.one_hot(class_means(similarity.transpose(-1, -2), support_y, ways).transpose(-1, -2).argmax(-1),
                     ways).to(similarity.dtype)


@dataclass(frozen=True)
class TemperatureSweep:
    """Accuracy of a Matching Network's attention at other temperatures, on the same tasks."""

    temperatures: torch.Tensor  # (K,) the temperatures tried
    accuracy: torch.Tensor  # (K,) query accuracy at each
    learned: float  # the model's own tau
    learned_accuracy: float  # accuracy at the model's own tau (the model's accuracy)
    nearest: float  # accuracy of the tau -> 0 limit (nearest support example by cosine)
    mean_similarity: float  # accuracy of the tau -> inf prediction (largest mean cosine)
    episodes: int
    ways: int
    shots: int


@torch.no_grad()
def temperature_sweep(
    model: Any,
    images: torch.Tensor,
    temperatures: torch.Tensor,
    ways: int = 5,
    shots: int = 5,
    queries: int = 15,
    episodes: int = 100,
    seed: int = 0,
) -> TemperatureSweep:
    """Classify the same seeded tasks with a shipped Matching Network's attention at each temperature.

    The tasks are embedded once: the temperature only divides the cosines before the softmax
    (:func:`~metalearn_lite.algorithms.matching.attention_log_probs`), so changing it needs no new forward pass.
    """
    from ..algorithms.matching import attention_log_probs
    from ..episodes import EpisodeSampler

    was_training = model.training
    model.eval()
    try:
        sampler = EpisodeSampler(images, ways=ways, shots=shots, queries=queries, seed=seed)
        eps = [sampler.sample(1) for _ in range(episodes)]
        sims = torch.cat([matching_cosines(model, ep) for ep in eps])  # (E, Q, S)
    finally:
        model.train(was_training)
    sy = torch.cat([ep.support_y for ep in eps])
    qy = torch.cat([ep.query_y for ep in eps])

    def acc(probs: torch.Tensor) -> float:
        return float((probs.argmax(-1) == qy).double().mean())

    temperatures = torch.as_tensor(temperatures, dtype=torch.float64).flatten()
    accuracy = torch.tensor([acc(attention_log_probs(sims.double(), sy, ways, t)) for t in temperatures])
    learned = float(model.temperature.detach())
    return TemperatureSweep(
        temperatures=temperatures, accuracy=accuracy, learned=learned,
        learned_accuracy=acc(attention_log_probs(sims, sy, ways, model.temperature)),
        nearest=acc(nearest_example_probs(sims, sy, ways)),
        mean_similarity=acc(mean_similarity_probs(sims, sy, ways)),
        episodes=episodes, ways=ways, shots=shots,
    )


def plot_temperature_sweep(sweep: TemperatureSweep) -> Figure:
    """Accuracy against the temperature (log scale), with the model's own ``tau`` and the two limits."""
    fig, ax = plt.subplots(figsize=(7.2, 3.6))
    ax.semilogx(sweep.temperatures.numpy(), 100 * sweep.accuracy.numpy(), "o-", color="C0", markersize=3,
                label="attention at temperature tau")
    ax.axhline(100 * sweep.nearest, color="C1", linestyle="--",
               label=f"tau -> 0: nearest support example ({100 * sweep.nearest:.1f}%)")
    ax.axhline(100 * sweep.mean_similarity, color="C2", linestyle=":",
               label=f"tau -> inf: largest mean cosine ({100 * sweep.mean_similarity:.1f}%)")
    ax.axvline(sweep.learned, color="0.3", linewidth=0.8)
    ax.scatter([sweep.learned], [100 * sweep.learned_accuracy], color="black", zorder=5,
               label=f"the model's learned tau = {sweep.learned:.3f} ({100 * sweep.learned_accuracy:.1f}%)")
    ax.set_xlabel("temperature tau (log scale)")
    ax.set_ylabel("query accuracy (%)")
    ax.set_title(f"Matching Network, {sweep.episodes} test tasks, {sweep.ways}-way {sweep.shots}-shot: "
                 "only the temperature changes", fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def plot_attention(model: Any, episode: Episode, query: int, temperature: float, task: int = 0) -> Figure:
    """One query's attention weights over the support examples at ``temperature`` (bars coloured by class),
    and the class probabilities they add up to."""
    from ..algorithms.matching import attention_log_probs

    ep = episode.task(task)
    sim = matching_cosines(model, ep)[0, query]  # (S,)
    sy = ep.support_y[0]
    ways = int(sy.max()) + 1
    tau = torch.tensor(float(temperature), dtype=torch.float64)
    weights = (sim.double() / tau).softmax(-1)
    probs = attention_log_probs(sim.double()[None], sy, ways, tau)[0].exp()
    colours = [COLOURS[int(c) % len(COLOURS)] for c in sy]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 2.9), gridspec_kw={"width_ratios": [2.4, 1]})
    ax0.bar(range(len(sy)), weights.numpy(), color=colours)
    ax0.set_xlabel("support example (colour = class)")
    ax0.set_ylabel("attention weight")
    ax0.set_ylim(0, 1.02)
    ax0.set_title(f"query {query} (true class {int(ep.query_y[0, query])}), tau = {temperature:.3g}", fontsize=9)
    ax1.bar(range(ways), probs.numpy(), color=[COLOURS[c % len(COLOURS)] for c in range(ways)])
    ax1.set_xlabel("class")
    ax1.set_ylabel("P(class | query)")
    ax1.set_ylim(0, 1.02)
    ax1.set_xticks(range(ways))
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Exercise "matching_limit" (derive): Matching Networks as tau -> 0
# ---------------------------------------------------------------------------------------------


def _matching_limit(answer: tuple[Callable[..., torch.Tensor], Any, Any, int]) -> str:
    from ..algorithms.matching import attention_log_probs

    fn, model, images, episodes = answer
    g = torch.Generator().manual_seed(12)
    t, ways, shots, q = 2, 3, 3, 5
    sim = torch.rand(t, q, ways * shots, generator=g, dtype=torch.float64) * 2 - 1
    sy = torch.stack([torch.randperm(ways * shots, generator=g) % ways for _ in range(t)])
    got = fn(sim.clone(), sy.clone(), ways)
    if isinstance(got, torch.Tensor) and not got.dtype.is_floating_point and tuple(got.shape) == (t, q):
        raise CheckFailed("you returned the predicted labels; return the class probabilities (T, Q, ways): "
                          "what P(y = k | x, S) becomes, not only its argmax")
    got = answer_tensor(got, f"({t}, {q}, {ways}) tensor of class probabilities", (t, q, ways)).detach().double()
    want = nearest_example_probs(sim, sy, ways)
    if close(got, want):
        pass
    elif close(got, attention_log_probs(sim, sy, ways, torch.tensor(1.0, dtype=torch.float64)).exp()):
        raise CheckFailed("these are the attention's probabilities at tau = 1 (the paper's raw cosines); let tau "
                          "go to 0: divide the cosines by a smaller and smaller tau and see where the softmax's "
                          "weight goes")
    elif close(got, mean_similarity_probs(sim, sy, ways)):
        raise CheckFailed("you put all the mass on the class with the largest MEAN cosine: that is where the "
                          "highest probability goes as tau -> infinity (with equal shots). As tau -> 0, compare "
                          "exp(c_i / tau) between two examples: the ratio exp((c_i - c_j) / tau) explodes")
    elif close(got, F.one_hot(sy, ways).double().mean(-2, keepdim=True).expand_as(got)):
        raise CheckFailed("these are the class frequencies of the support set, the tau -> infinity limit of the "
                          "probabilities (uniform attention); the exercise asks for tau -> 0")
    elif close(got, F.one_hot(sim.argmax(-1) // shots, ways).double()):
        raise CheckFailed("your answer assumes the support set is sorted by class (position // shots); use the "
                          "labels: the class of the most similar example is support_y[..., argmax]")
    elif close(got, nearest_example_probs(-sim, sy, ways)):
        raise CheckFailed("you picked the LEAST similar example: a cosine is a similarity (largest = most alike), "
                          "not a distance")
    else:
        if (got < -1e-6).any() or not close(got.sum(-1), torch.ones(t, q, dtype=torch.float64)):
            raise CheckFailed("each query's probabilities must be non-negative and sum to 1")
        raise CheckFailed("not the limit. Hint: a_i = exp(c_i / tau) / sum_j exp(c_j / tau) = 1 / sum_j "
                          "exp((c_j - c_i) / tau); as tau -> 0 each term with c_j > c_i explodes, each with "
                          "c_j < c_i vanishes. Which example keeps its weight, and what does P(y = k) become?")
    tiny = attention_log_probs(sim, sy, ways, torch.tensor(1e-4, dtype=torch.float64)).exp()
    if not close(tiny, want, 1e-6):  # the package's own attention must agree at a tiny temperature
        raise AssertionError("the package's attention at tau = 1e-4 is not the nearest-example rule")
    message = ("as tau -> 0 all the attention goes to the single most similar support example, so P(y = k | x, S) "
               "is 1 for its class: a nearest-neighbour classifier under the cosine (with one shot per class, "
               "a nearest-neighbour rule at ANY tau, since exp(c / tau) keeps the order of the cosines).")
    if model is None:
        return message
    from ..episodes import EpisodeSampler

    measured = {}
    for shots in (5, 1):
        sampler = EpisodeSampler(images, ways=5, shots=shots, queries=15, seed=0)
        learned, yours = [], []
        for _ in range(episodes):
            ep = sampler.sample(1)
            sims = matching_cosines(model, ep)
            with torch.no_grad():
                learned.append(attention_log_probs(sims, ep.support_y, 5, model.temperature).argmax(-1) == ep.query_y)
                yours.append(fn(sims, ep.support_y, 5).argmax(-1) == ep.query_y)
        measured[shots] = (float(torch.cat(learned).double().mean()), float(torch.cat(yours).double().mean()))
    return (message + f" Measured on the shipped model's cosines, {episodes} 5-way test tasks, learned tau = "
            f"{float(model.temperature.detach()):.3g} against your tau -> 0 rule: 5-shot {100 * measured[5][0]:.2f} % "
            f"and {100 * measured[5][1]:.2f} %; 1-shot {100 * measured[1][0]:.2f} % and {100 * measured[1][1]:.2f} %.")


def check_matching_limit(
    fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
    model: Any = None,
    images: torch.Tensor | None = None,
    episodes: int = 50,
    strict: bool = False,
) -> None:
    """Exercise "matching_limit": ``fn(similarity (T, Q, S), support_y (T, S), ways) -> (T, Q, ways)``, the
    ``tau -> 0`` limit of a Matching Network's class probabilities.  Checked on known cases; with ``model``
    (a shipped :class:`~metalearn_lite.algorithms.matching.MatchingNet`) and ``images``, also measured
    against the model's learned temperature on ``episodes`` test tasks.  Prints the verdict and returns
    ``None``."""
    return report(_matching_limit, (fn, model, images, episodes), strict)
