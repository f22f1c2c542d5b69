"""Lesson 02's support code: the exercise checks accept right answers and name the mistake in wrong
ones, and the deliberately wrong metric loss really does blow the embedding up."""

from __future__ import annotations

import pytest
import torch
from conftest import check_passes

from metalearn_lite.algorithms.metric import contrastive_loss
from metalearn_lite.lessons.exercises import CheckFailed
from metalearn_lite.lessons.lesson02_checks import check_batch_hard, check_contrastive_loss, check_pairwise_sq_dists
from metalearn_lite.lessons.lesson02_pitfalls import distance_stats, fit_small_embedding, naive_metric_loss

# ---------------------------------------------------------------------------------------------- exercise 1


def sq_right(a, b):
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def sq_expanded(a, b):  # the matrix-product form, clamped: also right
    return ((a * a).sum(1, keepdim=True) - 2 * a @ b.T + (b * b).sum(1)).clamp_min(0)


@pytest.mark.parametrize("fn", [sq_right, sq_expanded])
def test_pairwise_check_accepts_right_answers(fn) -> None:
    check_passes(check_pairwise_sq_dists, fn)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda a, b: None, "returned None"),
        (lambda a, b: sq_right(a, b).tolist(), "torch.Tensor"),
        (lambda a, b: sq_right(b, a), "transposed"),
        (lambda a, b: sq_right(a, b).sum(1), "not ("),
        (lambda a, b: sq_right(a, b).sqrt(), "Drop the square root"),
        (lambda a, b: ((a[:, None, :] - b[None, :, :]) ** 2).mean(-1), "sum them instead"),
        (lambda a, b: (a * a).sum(1, keepdim=True) - 2 * a @ b.T - (b * b).sum(1), "never negative"),
        (lambda a, b: sq_right(a, b) + 1.0, "should be ||a["),
        (lambda a, b: 1 / 0, "ZeroDivisionError"),
    ],
)
def test_pairwise_check_names_the_mistake(fn, message) -> None:
    with pytest.raises(CheckFailed, match=message.replace("[", r"\[").replace("(", r"\(")):
        check_pairwise_sq_dists(fn, strict=True)


def test_checks_print_not_yet_and_return_none_when_not_strict(capsys) -> None:
    assert check_pairwise_sq_dists(lambda a, b: None) is None
    assert capsys.readouterr().out.startswith("Not yet: your function returned None")


# ---------------------------------------------------------------------------------------------- exercise 2


def _pairs(z, y):
    d = torch.cdist(z, z)
    same = y[:, None] == y[None, :]
    eye = torch.eye(len(y), dtype=torch.bool)
    return d, same & ~eye, ~same, same


def contrastive_right(z, y, margin):
    d, pos, neg, _ = _pairs(z, y)
    return (d[pos] ** 2).mean() + ((margin - d[neg]).clamp_min(0) ** 2).mean()


def test_contrastive_check_accepts_right_answers() -> None:
    check_passes(check_contrastive_loss, contrastive_right)
    check_passes(check_contrastive_loss, lambda z, y, m: contrastive_loss(z, y, margin=m))


def _wrong_contrastive(kind):
    def fn(z, y, m):
        d, pos, neg, same = _pairs(z, y)
        hinge = (m - d).clamp_min(0)
        return {
            "diagonal": (d[same] ** 2).mean() + (hinge[neg] ** 2).mean(),
            "no_hinge": (d[pos] ** 2).mean() + ((m - d[neg]) ** 2).mean(),
            "unsquared_hinge": (d[pos] ** 2).mean() + hinge[neg].mean(),
            "squared_d": (d[pos] ** 4).mean() + ((m - d[neg] ** 2).clamp_min(0) ** 2).mean(),
            "sums": (d[pos] ** 2).sum() + (hinge[neg] ** 2).sum(),
            "one_mean": torch.cat([d[pos] ** 2, hinge[neg] ** 2]).mean(),
            "swapped": (d[neg] ** 2).mean() + (hinge[pos] ** 2).mean(),
            "per_pair": d ** 2,
            "other": (d[pos] ** 2).mean() + (hinge[neg] ** 2).mean() + 0.1,
        }[kind]

    return fn


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("diagonal", "Exclude the diagonal"),
        ("no_hinge", "max(0, m - d)"),
        ("unsquared_hinge", "square the hinge"),
        ("squared_d", "you used the squared distance"),
        ("sums", "you summed instead of averaging"),
        ("one_mean", "separate mean"),
        ("swapped", "roles are swapped"),
        ("per_pair", "the loss is one number"),
        ("other", "Recall L = mean"),
    ],
)
def test_contrastive_check_names_the_mistake(kind, message) -> None:
    with pytest.raises(CheckFailed) as err:
        check_contrastive_loss(_wrong_contrastive(kind), strict=True)
    assert message in str(err.value)


# ---------------------------------------------------------------------------------------------- exercise 3


def batch_hard_right(d, y):
    same = y[:, None] == y[None, :]
    eye = torch.eye(len(y), dtype=torch.bool)
    pos = torch.where(same & ~eye, d, torch.full_like(d, -1.0)).argmax(1)
    neg = torch.where(~same, d, torch.full_like(d, float("inf"))).argmin(1)
    return pos, neg


def _wrong_batch_hard(kind):
    def fn(d, y):
        same = y[:, None] == y[None, :]
        eye = torch.eye(len(y), dtype=torch.bool)
        pos, neg = batch_hard_right(d, y)
        if kind == "nearest_pos":
            pos = torch.where(same & ~eye, d, torch.full_like(d, float("inf"))).argmin(1)
        elif kind == "self_pos":
            pos = torch.where(same, d, torch.full_like(d, float("inf"))).argmin(1)
        elif kind == "farthest_neg":
            neg = torch.where(~same, d, torch.full_like(d, -1.0)).argmax(1)
        elif kind == "any_neg":
            neg = torch.where(~eye, d, torch.full_like(d, float("inf"))).argmin(1)
        elif kind == "short":
            return pos[:2], neg[:2]
        elif kind == "single":
            return pos
        return pos, neg

    return fn


def test_batch_hard_check_accepts_right_answer() -> None:
    check_passes(check_batch_hard, batch_hard_right)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("nearest_pos", "nearest positive"),
        ("self_pos", "the anchor itself"),
        ("farthest_neg", "farthest negative"),
        ("any_neg", "must come from another class"),
        ("short", "one per anchor"),
        ("single", "return a pair"),
    ],
)
def test_batch_hard_check_names_the_mistake(kind, message) -> None:
    with pytest.raises(CheckFailed) as err:
        check_batch_hard(_wrong_batch_hard(kind), strict=True)
    assert message in str(err.value)


# ---------------------------------------------------------------------------------------------- the pitfall


def _clusters(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, 30, generator=g)
    y = torch.arange(4).repeat_interleave(8)
    return centres[y] + 0.5 * torch.randn(len(y), 30, generator=g), y


def test_naive_loss_is_minus_the_different_class_distances_and_scales_linearly() -> None:
    z, y = _clusters()
    d = torch.cdist(z, z)
    assert torch.allclose(naive_metric_loss(z, y), -d[y[:, None] != y[None, :]].sum(), rtol=1e-4)
    assert torch.allclose(naive_metric_loss(3 * z, y), 3 * naive_metric_loss(z, y), rtol=1e-4)


def test_naive_loss_blows_up_the_embedding_while_contrastive_stays_bounded() -> None:
    x, y = _clusters()
    naive = fit_small_embedding(naive_metric_loss, x, y, steps=40)
    good = fit_small_embedding(lambda z, t: contrastive_loss(z, t, margin=1.0), x, y, steps=40)
    assert naive.spreads[0] == pytest.approx(good.spreads[0])  # same start
    assert naive.spreads[-1] > 100 * naive.spreads[0]
    assert naive.losses[-1] < 100 * naive.losses[0] < 0  # ever more negative, no floor
    assert good.spreads[-1] < 5.0  # the margin (1.0) sets the scale
    assert good.losses[-1] < good.losses[0]
    assert distance_stats(good.z, y)[1] < distance_stats(naive.z, y)[1]  # classes tighter with the margin loss
