"""Lesson 02's support code: the exercise checks accept right answers and name the mistake in wrong
ones, and the deliberately wrong metric loss really does blow the embedding up."""

from __future__ import annotations

import pytest
import torch
from conftest import check_passes

from metalearn_lite.algorithms.metric import contrastive_loss
from metalearn_lite.lessons.exercises import CheckFailed
from metalearn_lite.lessons.lesson02 import (
    check_batch_hard_prediction,
    check_contrastive_loss,
    check_push_only,
    check_scaling_exponents,
    distance_stats,
    fit_small_embedding,
    naive_metric_loss,
    scaling_exponent,
    scaling_losses,
    toy_batch,
)

# ---------------------------------------------------------------------------------------------- predict: batch-hard


def test_batch_hard_prediction_right(capsys) -> None:
    z, y = toy_batch()
    assert "farthest positive, point 2" in check_passes(check_batch_hard_prediction, (2, 3), z, y)


@pytest.mark.parametrize(
    ("predicted", "message"),
    [
        (None, "set my_prediction"),
        ((1, 3), "EASIEST positive"),
        ((2, 5), "nearest point of any other class"),
        ((0, 3), "not a positive"),
        ((2, 1), "has the anchor's class"),
        ((9, 3), "points 0..6"),
        ("x", "pair of point indices"),
    ],
)
def test_batch_hard_prediction_wrong(predicted, message) -> None:
    z, y = toy_batch()
    with pytest.raises(CheckFailed, match=message):
        check_batch_hard_prediction(predicted, z, y, strict=True)


def test_prediction_left_empty_prints_not_yet(capsys) -> None:
    z, y = toy_batch()
    assert check_batch_hard_prediction(None, z, y) is None
    assert capsys.readouterr().out.startswith("Not yet: set my_prediction")


# ---------------------------------------------------------------------------------------------- derive: scaling


def test_measured_exponents() -> None:
    got = {name: scaling_exponent(f) for name, f in scaling_losses().items()}
    assert got == pytest.approx({"contrastive": 2.0, "triplet": 1.0, "naive": 1.0}, abs=1e-6)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (None, "set my_exponents"),
        ({"contrastive": 2, "triplet": 1}, "no entry"),
        ({"contrastive": 1, "triplet": 1, "naive": 1}, "squared length"),
        ({"contrastive": 2, "triplet": 2, "naive": 1}, "not squared"),
        ({"contrastive": 2, "triplet": 1, "naive": 0}, "no margin"),
        ({"contrastive": 2, "triplet": 1, "naive": "one"}, "must be a number"),
    ],
)
def test_scaling_wrong(answer, message) -> None:
    with pytest.raises(CheckFailed, match=message):
        check_scaling_exponents(answer, strict=True)


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


# ---------------------------------------------------------------------------------------------- ablate: push only


def _push(z, y, m):
    d = torch.cdist(z, z)
    return ((m - d[y[:, None] != y[None, :]]).clamp_min(0) ** 2).mean()


def test_push_only_right() -> None:
    x, y = _clusters()
    printed = check_passes(check_push_only, _push, "C", x, y)
    assert "same/different" in printed


@pytest.mark.parametrize(
    ("fn", "claim", "message"),
    [
        (None, "C", "returned None"),
        (lambda z, y, m: contrastive_right(z, y, m), "C", "full contrastive loss"),
        (lambda z, y, m: contrastive_right(z, y, m) - _push(z, y, m), "C", "kept the pull term"),
        (lambda z, y, m: 2 * _push(z, y, m), "C", "mean over different-class pairs"),
        (_push, None, "set my_claim"),
        (_push, "A", "is not what happened"),
        (_push, "B", "is not what happened"),
    ],
)
def test_push_only_wrong(fn, claim, message) -> None:
    x, y = _clusters()
    with pytest.raises(CheckFailed, match=message):
        check_push_only(fn, claim, x, y, strict=True)


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


# ------------------------------------------------------------------------------ bridge: a learned comparison


def test_relation_matrix_is_the_models_own_scores_in_both_orders() -> None:
    from metalearn_lite.algorithms import RelationNet
    from metalearn_lite.lessons.lesson02 import plot_relation_matrix, relation_matrix
    from metalearn_lite.models import Conv4

    torch.manual_seed(0)
    model = RelationNet(Conv4(hidden=8, pools=2, flatten=False)).train()
    x = torch.rand(4, 1, 28, 28)
    scores = relation_matrix(model, x)
    assert model.training  # restored
    with torch.no_grad():
        raw = model.eval().logits(x, torch.arange(4), x)
    assert scores.shape == (4, 4) and torch.allclose(scores, torch.sigmoid(raw).T)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert len(plot_relation_matrix(scores, x, "t").axes) == 2
    with pytest.raises(ValueError, match="drawings"):
        relation_matrix(model, x[0])


def test_accuracy_grid_places_each_setting_in_its_row_and_column() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metalearn_lite.lessons.lesson02 import plot_accuracy_grid

    acc = {(0.5, "euclidean", "all"): 71.0, (2.0, "euclidean", "all"): 55.0, (0.5, "cosine", "batch_hard"): 62.0}
    fig, ax = plt.subplots()
    plot_accuracy_grid(ax, acc, chosen=(2.0, "euclidean", "all"))
    image = ax.images[0].get_array()
    # rows in order of appearance: euclidean/all, then cosine/batch_hard; columns by margin: 0.5 then 2.0
    assert image[0, 0] == 71.0 and image[0, 1] == 55.0 and image[1, 0] == 62.0
    assert bool(image.mask[1, 1]) or image[1, 1] != image[1, 1]   # the missing setting stays blank (NaN)
    assert sorted(t.get_text() for t in ax.texts) == ["55", "62", "71"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["euclidean, all", "cosine, batch_hard"]
    (box,) = ax.patches
    assert box.get_xy() == (0.5, -0.5)   # the chosen setting: row 0, column 1
    plt.close(fig)
