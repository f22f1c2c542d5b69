"""Checks for lesson 03's exercises: a Prototypical Network's prototypes and logits.

Every check runs the reader's function on small cases with known answers and, when it is wrong,
says *how*: a sum instead of a mean, labels ignored in favour of positions, distances used as
logits, a plain instead of a squared distance, a missing or transposed dimension.  They follow the
pattern of :mod:`metalearn_lite.lessons.exercises`: ``check_x(fn)`` prints "Correct! ..." or
"Not yet: ..." and returns a bool; ``strict=True`` raises :class:`CheckFailed` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from .exercises import CheckFailed, answer_tensor, close, report

__all__ = ["CheckFailed", "check_logits", "check_protonet_logits", "check_prototypes"]


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
    """Lesson 03: ``fn(z (T, S, D), targets (T, S), ways) -> (T, ways, D)`` class means."""
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
    """Lesson 03: ``fn(query_z (T, Q, D), protos (T, N, D)) -> (T, Q, N)`` logits ``-||z - p_c||^2``."""
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
    ``episode`` a meta-batch of image tasks (all its tasks are checked at once).
    """
    if getattr(model, "distance", None) != "euclidean" or not hasattr(model, "embed_task"):
        raise ValueError("check_protonet_logits needs a ProtoNet with distance='euclidean'")
    return report(partial(_protonet_logits, model=model, episode=episode), (prototypes_fn, logits_fn), strict)
