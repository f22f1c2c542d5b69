"""Relation Networks: class maps, pairs and scores against a direct computation, the two losses, Conv-4's feature
maps, a user's own encoder trained through ``ml.train``, checkpoints, the CLI recipe and the errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import metalearn_lite as ml
from metalearn_lite.checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from metalearn_lite.cli import main
from metalearn_lite.episodes import Episode

LABELS = torch.tensor([7, 7, 3, 3, 9, 9])  # arbitrary, unsorted labels: 3-way 2-shot
CLASSES = [3, 7, 9]


class MapEncoder(nn.Module):
    """A reader's own encoder that keeps feature maps: ``(B, 1, 16, 16) -> (B, 8, 8, 8)``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class PairScore(nn.Module):
    """A relation module of one's own, without normalisation: a pair's score depends on that pair only."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(16, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4, 1))

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.net(pairs)  # (P, 1)


def make_task(seed: int = 0, queries: int = 4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(6, 1, 16, 16, generator=g), LABELS.clone(), torch.randn(queries, 1, 16, 16, generator=g)


def method(**kw) -> ml.RelationNet:
    torch.manual_seed(0)
    return ml.RelationNet(MapEncoder(), **kw)


@pytest.mark.parametrize("reduce", ["sum", "mean"])
@torch.no_grad()
def test_scores_are_the_relation_module_on_class_and_query_maps(reduce):
    m = method(relation=PairScore(), reduce=reduce)
    sx, sy, qx = make_task()
    logits = m.logits(sx, sy, qx)
    assert logits.shape == (4, 3) and isinstance(m, ml.FewShotClassifier)
    zs, zq = m.encoder(sx), m.encoder(qx)
    for k, label in enumerate(CLASSES):
        members = zs[sy == label]
        class_map = members.sum(0) if reduce == "sum" else members.mean(0)
        for q in range(4):
            expected = m.relation(torch.cat([class_map, zq[q]])[None])[0, 0]
            torch.testing.assert_close(logits[q, k], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m.predict(sx, sy, qx), torch.tensor(CLASSES)[logits.argmax(-1)])


def test_default_relation_module_and_conv4_feature_maps():
    m = method()
    assert isinstance(m.relation, ml.RelationModule) and m.relation.in_channels == 16 and m.relation.hidden == 8
    conv = ml.Conv4(hidden=8, pools=2, flatten=False)
    assert conv(torch.rand(3, 1, 28, 28)).shape == (3, 8, 7, 7)  # the paper's Omniglot encoder keeps 7x7 maps
    assert ml.Conv4(hidden=8).spec().keys() == {"name", "in_channels", "hidden", "norm", "out_features", "image_size"}
    default = ml.RelationNet()
    assert default.encoder.pools == 2 and not default.encoder.flatten and default.relation.in_channels == 128
    sx, sy, qx = make_task()
    scores = default.logits(F.interpolate(sx, 28), sy, F.interpolate(qx, 28))
    assert scores.shape == (4, 3) and torch.isfinite(scores).all()
    # the poolings stop at 1x1: a relation module takes maps of any size
    assert ml.RelationModule(4, 3)(torch.rand(5, 4, 1, 1)).shape == (5,)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@torch.no_grad()
def test_losses_are_the_papers_mse_or_cross_entropy(loss):
    m = method(relation=PairScore(), loss=loss)
    ep = ml.EpisodeSampler(torch.randn(5, 4, 1, 16, 16), ways=3, shots=2, queries=2, seed=0).sample(2)
    value, acc = m.loss(ep)
    raw = torch.stack([m.logits(*ep.task(t).unbatched()[:3]) for t in range(2)])  # (T, Q, N)
    if loss == "mse":
        expected = ((torch.sigmoid(raw) - F.one_hot(ep.query_y, 3).float()) ** 2).mean()
    else:
        expected = F.cross_entropy(raw.flatten(0, 1), ep.query_y.flatten())
    torch.testing.assert_close(value, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(acc, (raw.argmax(-1) == ep.query_y).float().mean())


def test_trains_your_own_encoder_through_ml_train(easy_images, tmp_path):
    x, y = easy_images
    seen = y < 12
    m = method()
    losses = []
    ml.train(m, ml.EpisodeSampler(x[seen], y[seen], ways=4, shots=1, queries=3, seed=0), steps=150, lr=3e-3,
             out_dir=tmp_path / "run", progress=False, callbacks=lambda e: losses.append(e.metrics.get("loss")))
    losses = [v for v in losses if v is not None]
    assert sum(losses[-20:]) / 20 < 0.8 * sum(losses[:20]) / 20, (losses[:20], losses[-20:])
    result = ml.evaluate(m.eval(), (x[~seen], y[~seen]), ways=4, shots=1, queries=5, episodes=40, seed=0)
    assert result.mean - result.ci95 > 0.25, result  # chance is 25 %


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(3)
    m = ml.RelationNet(ml.Conv4(hidden=4, pools=2, flatten=False, image_size=16), loss="cross_entropy")
    path = save_checkpoint(tmp_path / "r.pt", m)
    loaded = load_checkpoint(path)  # encoder and relation module both rebuilt from their specs
    assert type(loaded) is ml.RelationNet and loaded.config == m.config
    assert ml.algorithms.METHODS["relation"] is ml.RelationNet
    sx, sy, qx = make_task(1)
    torch.testing.assert_close(loaded.logits(sx, sy, qx), m.eval().logits(sx, sy, qx))
    save_checkpoint(tmp_path / "own.pt", method())
    with pytest.raises(ValueError, match=r"your own network \(encoder=MapEncoder\).*method=RelationNet"):
        load_checkpoint(tmp_path / "own.pt")
    assert isinstance(load_checkpoint(tmp_path / "own.pt", method=method()), ml.RelationNet)


def test_bad_arguments_and_inputs_are_clear_errors():
    with pytest.raises(ValueError, match=r"flattens them.*Conv4\(\.\.\., pools=2, flatten=False\)"):
        ml.RelationNet(ml.Conv4(hidden=8))
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        method(loss="hinge")
    with pytest.raises(ValueError, match="unknown reduce 'max'"):
        method(reduce="max")
    with pytest.raises(ValueError, match="relation must be a torch.nn.Module"):
        method(relation="mlp")
    with pytest.raises(ValueError, match="no nn.Conv2d.*pass relation="):
        ml.RelationNet(nn.Flatten())
    with pytest.raises(ValueError, match="hidden must be a positive int"):
        ml.RelationModule(8, hidden=0)
    with pytest.raises(ValueError, match="pools is how many"):
        ml.Conv4(pools=5)
    with pytest.raises(ValueError, match="has no linear head"):
        ml.Conv4(out_features=5, flatten=False)
    sx, sy, qx = make_task()
    flat = ml.RelationNet(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()), relation=PairScore())
    with pytest.raises(ValueError, match=r"feature maps \(B, C, H, W\).*before any flatten"):
        flat.logits(sx, sy, qx)
    with pytest.raises(ValueError, match=r"one score per pair.*one output"):
        method(relation=nn.Sequential(nn.Conv2d(16, 2, 1), nn.Flatten())).logits(sx, sy, qx)
    with pytest.raises(ValueError, match=r"\(P, 8, H, W\); got \(12, 16, 8, 8\).*twice the encoder's channels"):
        method(relation=ml.RelationModule(8, 4)).logits(sx, sy, qx)
    ep = ml.EpisodeSampler(torch.randn(4, 3, 1, 16, 16), ways=3, shots=1, queries=1, seed=0).sample(1)
    with pytest.raises(ValueError, match="query labels must be among the support labels"):
        method().loss(Episode(ep.support_x, ep.support_y, ep.query_x, ep.query_y + 1))


def test_cli_recipe_trains_two_steps_and_loads(tmp_path):
    save_as = tmp_path / "relation.pt"
    assert main(["train", "relation", "--out", str(tmp_path / "run"), "--steps", "2", "--ways", "5", "--shots", "1",
                 "--queries", "2", "--hidden", "8", "--loss", "cross_entropy", "--val-every", "1",
                 "--val-episodes", "3", "--no-progress", "--device", "cpu", "--save-as", str(save_as),
                 "--set", "rotations=false"]) == 0
    blob = read_checkpoint(save_as)
    assert blob["recipe"] == "relation" and blob["config"]["loss"] == "cross_entropy"
    assert blob["config"]["encoder"]["pools"] == 2 and blob["config"]["relation"]["in_channels"] == 16
    assert isinstance(load_checkpoint(save_as), ml.RelationNet)
