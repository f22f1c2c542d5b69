"""ProtoNet, SiameseNet and TripletNet as few-shot classifiers, checked against direct computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metalearn_lite import Conv4, EpisodeSampler, FewShotClassifier
from metalearn_lite.algorithms import METHODS, ProtoNet, SiameseNet, TripletNet, build_method
from metalearn_lite.algorithms.metric import contrastive_loss, triplet_loss
from metalearn_lite.fewshot import class_means as prototypes

LABELS = torch.tensor([7, 7, 3, 3, 9, 9])  # arbitrary, unsorted labels: 3-way 2-shot
CLASSES = [3, 7, 9]  # column order of the logits: increasing label


def make_task(seed: int = 0, queries: int = 5):
    g = torch.Generator().manual_seed(seed)
    support_x = torch.rand(len(LABELS), 1, 28, 28, generator=g)
    query_x = torch.rand(queries, 1, 28, 28, generator=g)
    return support_x, LABELS.clone(), query_x


def make_model(cls, norm="batch", **kwargs):
    torch.manual_seed(0)
    return cls(Conv4(hidden=8, norm=norm), **kwargs).eval()


def direct_embeddings(model, support_x, query_x):
    """Support and query embeddings from ONE pass of the encoder (batch norm sees the same batch)."""
    z = model.encoder(torch.cat([support_x, query_x]))
    return z[: len(support_x)], z[len(support_x) :]


def direct_means(zs, support_y):
    means = []
    for c in CLASSES:
        members = [zs[i] for i in range(len(support_y)) if int(support_y[i]) == c]
        total = torch.zeros_like(zs[0])
        for m in members:
            total = total + m
        means.append(total / len(members))
    return torch.stack(means)


def sq_dist(u, v):
    return ((u - v) ** 2).sum()


def cos_dist(u, v):
    return 1.0 - (u @ v) / (u.norm() * v.norm())


# ---------------------------------------------------------------- prototypes


def test_prototypes_are_class_means():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 6, 3, generator=g)
    targets = torch.tensor([[2, 0, 1, 0, 2, 2], [1, 1, 0, 0, 2, 2]])
    p = prototypes(z, targets, ways=3)
    assert p.shape == (2, 3, 3)
    for t in range(2):
        for c in range(3):
            torch.testing.assert_close(p[t, c], z[t][targets[t] == c].mean(0))
    torch.testing.assert_close(p[0, 2], (z[0, 0] + z[0, 4] + z[0, 5]) / 3)


# ---------------------------------------------------------------- ProtoNet


@torch.no_grad()
def test_protonet_logits_match_direct_computation():
    model = make_model(ProtoNet)
    sx, sy, qx = make_task()
    logits = model.logits(sx, sy, qx)
    zs, zq = direct_embeddings(model, sx, qx)
    protos = direct_means(zs, sy)
    expected = torch.tensor([[-sq_dist(zq[q], protos[c]).item() for c in range(3)] for q in range(len(qx))])
    assert logits.shape == (len(qx), 3)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_protonet_predict_returns_support_labels():
    model = make_model(ProtoNet)
    sx, sy, qx = make_task()
    pred = model.predict(sx, sy, qx)
    assert pred.shape == (len(qx),)
    assert set(pred.tolist()) <= set(CLASSES)
    torch.testing.assert_close(pred, torch.tensor(CLASSES)[model.logits(sx, sy, qx).argmax(-1)])
    # with 1 shot, a query identical to a support example is at distance 0 from its prototype
    sx1, sy1 = sx[[0, 2, 4]], torch.tensor([7, 3, 9])
    assert model.predict(sx1, sy1, sx1[[2, 0, 1]].clone()).tolist() == [9, 7, 3]


@torch.no_grad()
def test_protonet_cosine_logits_are_scaled_cosine():
    model = make_model(ProtoNet, distance="cosine")
    assert model.scale is not None and model.scale.item() == pytest.approx(10.0)
    with torch.no_grad():
        model.scale.fill_(3.5)
    sx, sy, qx = make_task(1)
    zs, zq = direct_embeddings(model, sx, qx)
    protos = direct_means(zs, sy)
    expected = 3.5 * F.cosine_similarity(zq.unsqueeze(1), protos.unsqueeze(0), dim=-1)
    torch.testing.assert_close(model.logits(sx, sy, qx), expected, atol=1e-5, rtol=1e-5)


def test_protonet_rejects_unknown_distance():
    with pytest.raises(ValueError, match="unknown distance"):
        ProtoNet(Conv4(hidden=8), distance="manhattan")


def test_protonet_loss_on_sampled_episode(test_split):
    model = make_model(ProtoNet).train()
    ep = EpisodeSampler(test_split.images, ways=5, shots=2, queries=3, seed=0).sample(2)
    loss, acc = model.loss(ep)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert 0.0 <= acc.item() <= 1.0
    # 5-way cross-entropy of an untrained model is near log(5), and the loss is differentiable
    assert 0.0 < loss.item() < 10 * torch.log(torch.tensor(5.0)).item()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@torch.no_grad()
def test_protonet_loss_is_cross_entropy_of_task_logits():
    # without batch statistics, the batched loss equals the per-task computation through logits()
    model = make_model(ProtoNet, norm="none")
    g = torch.Generator().manual_seed(4)
    x = torch.rand(6, 5, 1, 28, 28, generator=g)
    ep = EpisodeSampler(x, ways=3, shots=2, queries=2, seed=1).sample(2)
    loss, acc = model.loss(ep)
    per_task, correct = [], []
    for t in range(2):
        sx, sy, qx, qy = ep.task(t).unbatched()
        logits = model.logits(sx, sy, qx)
        per_task.append(F.cross_entropy(logits, qy, reduction="none"))
        correct.append(logits.argmax(-1) == qy)
    torch.testing.assert_close(loss, torch.cat(per_task).mean(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(acc, torch.cat(correct).float().mean())


# ---------------------------------------------------------------- Siamese / triplet


@pytest.mark.parametrize("cls", [SiameseNet, TripletNet])
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("classify", ["prototype", "neighbour"])
@torch.no_grad()
def test_metric_embedding_logits_match_direct_computation(cls, distance, classify):
    model = make_model(cls, distance=distance, classify=classify)
    sx, sy, qx = make_task(2)
    dist = sq_dist if distance == "euclidean" else cos_dist
    zs, zq = direct_embeddings(model, sx, qx)
    expected = torch.empty(len(qx), 3)
    if classify == "prototype":
        protos = direct_means(zs, sy)
        for q in range(len(qx)):
            for c in range(3):
                expected[q, c] = -dist(zq[q], protos[c])
    else:
        for q in range(len(qx)):
            for c, label in enumerate(CLASSES):
                expected[q, c] = -min(dist(zq[q], zs[i]).item() for i in range(len(sy)) if int(sy[i]) == label)
    logits = model.logits(sx, sy, qx)
    assert logits.shape == (len(qx), 3)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    pred = model.predict(sx, sy, qx)
    torch.testing.assert_close(pred, torch.tensor(CLASSES)[expected.argmax(-1)])


@torch.no_grad()
def test_neighbour_classifies_copies_of_support_examples():
    model = make_model(SiameseNet, classify="neighbour")
    sx, sy, _ = make_task(3)
    # each support example as a query (same batch composition as the support set itself)
    assert model.predict(sx, sy, sx.clone()).tolist() == sy.tolist()


@pytest.mark.parametrize(
    "kwargs", [{"distance": "l1"}, {"mining": "hardest"}, {"classify": "knn"}], ids=["distance", "mining", "classify"]
)
def test_metric_embedding_rejects_unknown_options(kwargs):
    with pytest.raises(ValueError, match="unknown"):
        TripletNet(Conv4(hidden=8), **kwargs)


@pytest.mark.parametrize("cls", [SiameseNet, TripletNet])
def test_metric_loss_on_pair_batches(cls):
    # two tasks of 3 classes x 2 examples; labels 0..2 in both tasks are different classes
    model = make_model(cls, norm="none", margin=0.5, mining="all").train()
    g = torch.Generator().manual_seed(5)
    x = torch.rand(8, 4, 1, 28, 28, generator=g)
    ep = EpisodeSampler(x, ways=3, shots=2, queries=0, seed=0).sample(2)
    loss, acc = model.loss(ep)
    assert torch.isfinite(loss) and 0.0 <= acc.item() <= 1.0
    z = model.encoder(ep.support_x.flatten(0, 1))
    y = torch.tensor([0, 0, 1, 1, 2, 2, 10, 10, 11, 11, 12, 12])
    ref = contrastive_loss(z, y, 0.5) if cls is SiameseNet else triplet_loss(z, y, 0.5, "all")
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


# ---------------------------------------------------------------- contract and registry


@pytest.mark.parametrize("cls", [ProtoNet, SiameseNet, TripletNet])
def test_methods_are_few_shot_classifiers(cls):
    model = cls(Conv4(hidden=8))
    assert isinstance(model, FewShotClassifier)
    assert METHODS[cls.name] is cls
    rebuilt = build_method(cls.name, **model.config)
    assert type(rebuilt) is cls and rebuilt.config == model.config


def test_build_method_errors():
    with pytest.raises(ValueError, match="unknown method"):
        build_method("maml++")
    with pytest.raises(ValueError, match="bad config"):
        build_method("protonet", margin=1.0)
