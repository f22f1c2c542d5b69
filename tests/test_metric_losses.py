"""Distances and metric-learning losses (contrastive, triplet with mining) on hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from metalearn_lite.algorithms.metric import contrastive_loss, triplet_loss
from metalearn_lite.distances import (
    cosine_distance,
    cosine_similarity,
    pairwise_distance,
    squared_euclidean,
)

# ---------------------------------------------------------------- distances


def test_squared_euclidean_by_hand():
    a = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    b = torch.tensor([[3.0, 4.0], [1.0, 0.0], [1.0, 2.0]])
    expected = torch.tensor(
        [
            [25.0, 1.0, 5.0],  # (0,0) to (3,4), (1,0), (1,2)
            [8.0, 4.0, 0.0],  # (1,2) to (3,4): 4 + 4; to (1,0): 4; to itself: 0
        ]
    )
    d = squared_euclidean(a, b)
    assert d.shape == (2, 3)
    torch.testing.assert_close(d, expected)
    assert (d >= 0).all()


def test_squared_euclidean_matches_cdist():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 7, generator=g), torch.randn(4, 7, generator=g)
    torch.testing.assert_close(squared_euclidean(a, b), torch.cdist(a, b) ** 2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pairwise_distance(a, b, "euclidean"), torch.cdist(a, b) ** 2, atol=1e-5, rtol=1e-5)


def test_squared_euclidean_never_negative_for_equal_points():
    a = torch.full((3, 16), 1234.567)
    assert (squared_euclidean(a, a) >= 0).all()


def test_cosine_distance_by_hand():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    r = 1.0 / math.sqrt(2.0)
    expected = torch.tensor(
        [
            [0.0, 1.0, 2.0],  # same direction, orthogonal, opposite
            [1.0 - r, 1.0 - r, 1.0 + r],  # 45 degrees, 45 degrees, 135 degrees
        ]
    )
    torch.testing.assert_close(cosine_distance(a, b), expected)
    torch.testing.assert_close(cosine_similarity(a, b), 1.0 - expected)


def test_cosine_matches_functional():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(5, 6, generator=g), torch.randn(3, 6, generator=g)
    ref = F.cosine_similarity(a.unsqueeze(1), b.unsqueeze(0), dim=-1)  # (5, 3)
    torch.testing.assert_close(cosine_similarity(a, b), ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(cosine_distance(a, b), 1.0 - ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(pairwise_distance(a, b, "cosine"), 1.0 - ref, atol=1e-6, rtol=1e-5)
    d = cosine_distance(a, b)
    assert (d >= -1e-6).all() and (d <= 2 + 1e-6).all()


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_batched_shapes_match_per_task(distance):
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(3, 4, 5, generator=g), torch.randn(3, 6, 5, generator=g)  # (T, M, D), (T, N, D)
    d = pairwise_distance(a, b, distance)
    assert d.shape == (3, 4, 6)
    for t in range(3):
        torch.testing.assert_close(d[t], pairwise_distance(a[t], b[t], distance))
    if distance == "euclidean":
        torch.testing.assert_close(d, torch.cdist(a, b) ** 2, atol=1e-5, rtol=1e-5)


def test_unknown_distance():
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="unknown distance"):
        pairwise_distance(z, z, "manhattan")


# ---------------------------------------------------------------- contrastive loss

# 1-D points 0, 1 (class 0) and 3, 3.5 (class 1); Euclidean distances:
#   positives d(0,1) = 1, d(3,3.5) = 0.5
#   negatives d(0,3) = 3, d(0,3.5) = 3.5, d(1,3) = 2, d(1,3.5) = 2.5
Z1 = torch.tensor([[0.0], [1.0], [3.0], [3.5]])
Y1 = torch.tensor([0, 0, 1, 1])


def test_contrastive_by_hand_1d():
    # positives: mean(1^2, 0.5^2) = 0.625 (each pair counted in both orders, same mean)
    # negatives with margin 3: mean(max(0,3-3)^2, max(0,3-3.5)^2, (3-2)^2, (3-2.5)^2) = (0+0+1+0.25)/4 = 0.3125
    loss = contrastive_loss(Z1, Y1, margin=3.0)
    assert loss.item() == pytest.approx(0.625 + 0.3125, abs=1e-5)


def test_contrastive_by_hand_2d():
    # (0,0) and (3,4) class 0: positive distance 5 -> 25
    # (0,1) class 1: negatives at distance 1 and sqrt(9+9)=4.243; margin 2: (2-1)^2 = 1, 0
    z = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    y = torch.tensor([5, 5, 2])
    loss = contrastive_loss(z, y, margin=2.0)
    assert loss.item() == pytest.approx(25.0 + (1.0 + 0.0) / 2, abs=1e-4)


def test_contrastive_cosine_by_hand():
    # class 0: (1,0), (1,1) -> d = 1 - 1/sqrt(2); class 1: (0,1) -> negatives d = 1 and 1 - 1/sqrt(2)
    z = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    y = torch.tensor([0, 0, 1])
    r = 1.0 / math.sqrt(2.0)
    margin = 0.5
    expected = (1 - r) ** 2 + (max(0.0, margin - 1.0) ** 2 + max(0.0, margin - (1 - r)) ** 2) / 2
    loss = contrastive_loss(z, y, margin=margin, distance="cosine")
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_contrastive_zero_when_positives_coincide_and_negatives_beyond_margin():
    z = torch.tensor([[1.0, 1.0], [1.0, 1.0], [5.0, 1.0], [5.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])
    assert contrastive_loss(z, y, margin=3.9).item() == pytest.approx(0.0, abs=1e-6)
    # ... and positive once the margin exceeds the gap of 4: (4.5 - 4)^2 on every negative pair
    assert contrastive_loss(z, y, margin=4.5).item() == pytest.approx(0.25, abs=1e-4)


# ---------------------------------------------------------------- triplet loss

# 1-D points 0, 2 (class 0) and 3, 4 (class 1), margin 1.5.  Distances:
#   d(0,2)=2  d(0,3)=3  d(0,4)=4  d(2,3)=1  d(2,4)=2  d(3,4)=1
Z2 = torch.tensor([[0.0], [2.0], [3.0], [4.0]])
Y2 = torch.tensor([0, 0, 1, 1])
M2 = 1.5


def test_triplet_batch_hard_by_hand():
    # anchor 0: hardest pos 2, nearest neg 3  -> 2 - 3 + 1.5 = 0.5
    # anchor 2: hardest pos 2, nearest neg 1  -> 2 - 1 + 1.5 = 2.5
    # anchor 3: hardest pos 1, nearest neg 1  -> 1 - 1 + 1.5 = 1.5
    # anchor 4: hardest pos 1, nearest neg 2  -> 1 - 2 + 1.5 = 0.5
    # mean = 5 / 4
    loss = triplet_loss(Z2, Y2, margin=M2, mining="batch_hard")
    assert loss.item() == pytest.approx(1.25, abs=1e-5)


def test_triplet_semi_hard_by_hand():
    # (a, p) = (0, 2): d_ap 2, negatives 3, 4 both farther -> nearest 3: 2 - 3 + 1.5 = 0.5
    # (a, p) = (2, 0): d_ap 2, negatives 1, 2, none farther -> farthest 2: 2 - 2 + 1.5 = 1.5
    # (a, p) = (3, 4): d_ap 1, negatives 3, 1 -> only 3 is farther: 1 - 3 + 1.5 < 0 -> 0
    # (a, p) = (4, 3): d_ap 1, negatives 4, 2 -> nearest farther 2: 1 - 2 + 1.5 = 0.5
    # mean over the 4 pairs = 2.5 / 4
    loss = triplet_loss(Z2, Y2, margin=M2, mining="semi_hard")
    assert loss.item() == pytest.approx(0.625, abs=1e-5)


def test_triplet_all_by_hand():
    # (a,p,n): (0,2,3) 0.5  (0,2,4) 0  (2,0,3) 2.5  (2,0,4) 1.5
    #          (3,4,0) 0    (3,4,2) 1.5  (4,3,0) 0  (4,3,2) 0.5
    # mean over the 5 active triplets = 6.5 / 5
    loss = triplet_loss(Z2, Y2, margin=M2, mining="all")
    assert loss.item() == pytest.approx(1.3, abs=1e-5)


def test_triplet_all_zero_when_separated():
    z = torch.tensor([[0.0], [0.1], [10.0], [10.1]])
    y = torch.tensor([0, 0, 1, 1])
    for mining in ("batch_hard", "semi_hard", "all"):
        assert triplet_loss(z, y, margin=1.0, mining=mining).item() == pytest.approx(0.0, abs=1e-6)


def test_triplet_anchors_without_positive_are_skipped():
    # class 7 has a single example: it is a negative for others but never an anchor in batch_hard
    # anchor 0: pos 1, neg min(d(0,5)=5, d(0,-1)=1) = 1 -> 1 - 1 + 1 = 1;  anchor 1: pos 1, neg min(4, 2) = 2 -> 0
    z = torch.tensor([[0.0], [1.0], [5.0], [-1.0]])
    y = torch.tensor([0, 0, 7, 9])
    assert triplet_loss(z, y, margin=1.0, mining="batch_hard").item() == pytest.approx(0.5, abs=1e-5)


def test_triplet_cosine_batch_hard_by_hand():
    # class 0: (1,0), (1,1); class 1: (0,1), (-1,0).  r = 1/sqrt(2), margin 0.5
    # anchor (1,0): pos d = 1-r, negs 1 and 2 -> (1-r) - 1 + 0.5 = 0.5 - r < 0 -> 0
    # anchor (1,1): pos d = 1-r, negs 1-r and 1+r -> 0.5
    # anchor (0,1): pos d = 1 (to (-1,0)), negs 1, 1-r -> 1 - (1-r) + 0.5 = r + 0.5
    # anchor (-1,0): pos 1, negs 2, 1+r -> 1 - (1+r) + 0.5 = 0.5 - r < 0 -> 0
    z = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    y = torch.tensor([0, 0, 1, 1])
    r = 1.0 / math.sqrt(2.0)
    loss = triplet_loss(z, y, margin=0.5, mining="batch_hard", distance="cosine")
    assert loss.item() == pytest.approx((0.5 + r + 0.5) / 4, abs=1e-5)


# ---------------------------------------------------------------- errors and gradients


@pytest.mark.parametrize("margin", [0.0, -1.0])
def test_margin_must_be_positive(margin):
    with pytest.raises(ValueError, match="margin"):
        contrastive_loss(Z1, Y1, margin=margin)
    with pytest.raises(ValueError, match="margin"):
        triplet_loss(Z1, Y1, margin=margin)


def test_unknown_mining_and_distance():
    with pytest.raises(ValueError, match="unknown mining"):
        triplet_loss(Z1, Y1, mining="hardest")
    with pytest.raises(ValueError, match="unknown distance"):
        triplet_loss(Z1, Y1, distance="l1")
    with pytest.raises(ValueError, match="unknown distance"):
        contrastive_loss(Z1, Y1, distance="l1")


@pytest.mark.parametrize(
    "y",
    [torch.tensor([3, 3, 3, 3]), torch.tensor([0, 1, 2, 3])],
    ids=["single-class", "no-positive-pair"],
)
def test_batch_needs_two_classes_and_a_pair(y):
    with pytest.raises(ValueError, match="two classes"):
        contrastive_loss(Z1, y)
    for mining in ("batch_hard", "semi_hard", "all"):
        with pytest.raises(ValueError, match="two classes"):
            triplet_loss(Z1, y, mining=mining)


@pytest.mark.parametrize(
    "loss_fn",
    [
        lambda z, y: contrastive_loss(z, y, margin=3.0),
        lambda z, y: contrastive_loss(z, y, margin=1.0, distance="cosine"),
        lambda z, y: triplet_loss(z, y, margin=1.5, mining="batch_hard"),
        lambda z, y: triplet_loss(z, y, margin=1.5, mining="semi_hard"),
        lambda z, y: triplet_loss(z, y, margin=1.5, mining="all"),
        lambda z, y: triplet_loss(z, y, margin=1.0, distance="cosine"),
    ],
    ids=["contrastive", "contrastive-cosine", "batch_hard", "semi_hard", "all", "triplet-cosine"],
)
def test_gradients_flow(loss_fn):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(8, 4, generator=g).requires_grad_(True)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss = loss_fn(z, y)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    assert z.grad.abs().sum() > 0


def test_gradient_finite_for_coincident_points():
    z = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.5, 1.0], [1.5, 1.0]], requires_grad=True)
    y = torch.tensor([0, 0, 1, 1])
    for loss in (contrastive_loss(z, y, margin=1.0), triplet_loss(z, y, margin=1.0)):
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
