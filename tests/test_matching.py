"""Matching Networks: the attention equation against a direct computation, the temperature's limits (nearest
neighbour, class frequencies), a user's own encoder trained through ``ml.train``, checkpoints, the CLI recipe
and the errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import metalearn_lite as ml
from metalearn_lite.algorithms import METHODS, build_method
from metalearn_lite.checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from metalearn_lite.cli import main
from metalearn_lite.episodes import Episode

LABELS = torch.tensor([7, 7, 3, 3, 9, 9])  # arbitrary, unsorted labels: 3-way 2-shot
CLASSES = [3, 7, 9]


class OwnEncoder(nn.Module):
    """A reader's own embedding network (no normalisation: every example is embedded on its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def make_task(seed: int = 0, queries: int = 5, labels: torch.Tensor = LABELS):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(labels), 1, 16, 16, generator=g), labels.clone(), torch.randn(queries, 1, 16, 16,
                                                                                          generator=g)


def method(**kw) -> ml.MatchingNet:
    torch.manual_seed(0)
    return ml.MatchingNet(OwnEncoder(), **kw)


@torch.no_grad()
def test_logits_are_the_log_attention_mass_of_each_class():
    m = method(temperature=0.3)
    sx, sy, qx = make_task()
    logits = m.logits(sx, sy, qx)
    assert logits.shape == (5, 3) and isinstance(m, ml.FewShotClassifier)
    zs, zq = m.encoder(sx), m.encoder(qx)
    for q in range(5):
        cos = torch.stack([F.cosine_similarity(zq[q], zs[i], dim=0) for i in range(6)])
        a = torch.softmax(cos / 0.3, 0)  # a(x, x_i)
        for k, label in enumerate(CLASSES):
            mass = sum(a[i] for i in range(6) if int(sy[i]) == label)
            torch.testing.assert_close(logits[q, k], mass.log(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits.exp().sum(-1), torch.ones(5))
    pred = m.predict(sx, sy, qx)
    assert pred.shape == (5,) and set(pred.tolist()) <= set(CLASSES)
    torch.testing.assert_close(pred, torch.tensor(CLASSES)[logits.argmax(-1)])


@torch.no_grad()
def test_one_shot_and_temperature_to_zero_is_cosine_nearest_neighbour():
    sx, sy, qx = make_task(1, queries=40, labels=torch.tensor([4, 0, 2, 6, 1]))  # 5-way 1-shot
    sx, qx = sx.double(), qx.double()  # an untrained encoder's cosines differ in the 5th decimal
    zs, zq = method().double().encoder(sx), method().double().encoder(qx)
    cos = F.cosine_similarity(zq.unsqueeze(1), zs.unsqueeze(0), dim=-1)  # (Q, S)
    nearest = sy[cos.argmax(1)]
    assert len(set(nearest.tolist())) > 1  # the queries are not all nearest to one example
    sharpest = []
    for tau in (1e-2, 1e-4, 1e-6, 1e-9):
        m = method(temperature=tau, learn_temperature=False).double()
        sharpest.append(m.logits(sx, sy, qx).exp().amax(-1).min().item())
    assert sharpest == sorted(sharpest) and sharpest[0] < 0.9 and sharpest[-1] > 0.999, sharpest
    assert torch.equal(m.predict(sx, sy, qx), nearest)  # the attention is all on the nearest example


@torch.no_grad()
def test_a_very_high_temperature_votes_the_class_frequencies():
    sx, sy, qx = make_task(2, labels=torch.tensor([5, 5, 5, 8]))  # 3 of one class, 1 of the other
    probs = method(temperature=1e6, learn_temperature=False).logits(sx, sy, qx).exp()
    torch.testing.assert_close(probs, torch.tensor([[0.75, 0.25]]).expand(5, 2), atol=1e-5, rtol=0)


def test_the_temperature_is_learned_or_fixed():
    learned, fixed = method(), method(learn_temperature=False)
    assert learned.temperature.item() == pytest.approx(0.1) and fixed.temperature.item() == pytest.approx(0.1)
    assert "log_temperature" in dict(learned.named_parameters())
    assert "log_temperature" not in dict(fixed.named_parameters()) and "log_temperature" in fixed.state_dict()
    ep = ml.EpisodeSampler(torch.randn(4, 3, 1, 16, 16), ways=3, shots=1, queries=2, seed=0).sample(2)
    learned.loss(ep)[0].backward()
    assert learned.log_temperature.grad is not None and learned.log_temperature.grad != 0


@torch.no_grad()
def test_batched_loss_is_the_nll_of_each_tasks_logits():
    m = method()
    ep = ml.EpisodeSampler(torch.randn(6, 5, 1, 16, 16), ways=3, shots=2, queries=2, seed=1).sample(3)
    loss, acc = m.loss(ep)
    per_task = [m.logits(*ep.task(t).unbatched()[:3]) for t in range(3)]
    expected = torch.cat([F.nll_loss(lg, ep.query_y[t], reduction="none") for t, lg in enumerate(per_task)]).mean()
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)
    correct = torch.cat([lg.argmax(-1) == ep.query_y[t] for t, lg in enumerate(per_task)])
    torch.testing.assert_close(acc, correct.float().mean())


def test_trains_your_own_encoder_through_ml_train(easy_images, tmp_path):
    x, y = easy_images
    seen = y < 12
    m = method()
    losses = []
    ml.train(m, ml.EpisodeSampler(x[seen], y[seen], ways=5, shots=1, queries=4, seed=0), steps=200, lr=3e-3,
             out_dir=tmp_path / "run", progress=False, callbacks=lambda e: losses.append(e.metrics.get("loss")))
    losses = [v for v in losses if v is not None]
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:20]) / 20, (losses[:20], losses[-20:])
    result = ml.evaluate(m.eval(), (x[~seen], y[~seen]), ways=4, shots=1, queries=5, episodes=40, seed=0)
    assert result.mean - result.ci95 > 0.25, result  # chance is 25 % on the held-out classes


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    m = ml.MatchingNet(ml.Conv4(hidden=8, norm="none", image_size=16), temperature=0.2)
    with torch.no_grad():
        m.log_temperature.fill_(-1.5)
    path = save_checkpoint(tmp_path / "m.pt", m)
    loaded = load_checkpoint(path)  # rebuilt from the registry: the package's own Conv-4
    assert type(loaded) is ml.MatchingNet and METHODS["matching"] is ml.MatchingNet
    sx, sy, qx = make_task(3)
    torch.testing.assert_close(loaded.logits(sx, sy, qx), m.eval().logits(sx, sy, qx))
    assert loaded.temperature.item() == pytest.approx(torch.tensor(-1.5).exp().item())
    own = method()
    save_checkpoint(tmp_path / "own.pt", own)
    with pytest.raises(ValueError, match=r"your own network \(encoder=OwnEncoder\).*method=MatchingNet"):
        load_checkpoint(tmp_path / "own.pt")
    assert load_checkpoint(tmp_path / "own.pt", method=ml.MatchingNet(OwnEncoder())).config == own.config
    assert build_method("matching", **m.config).config == m.config


@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": 0}, "temperature must be a number > 0"),
    ({"temperature": -0.5}, "temperature must be a number > 0"),
    ({"temperature": float("nan")}, "temperature must be a number > 0"),
    ({"temperature": "0.1"}, "temperature must be a number > 0"),
    ({"learn_temperature": "yes"}, "learn_temperature must be True or False"),
    ({"encoder": "conv4"}, "encoder must be a torch.nn.Module"),
])
def test_bad_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ml.MatchingNet(**{"encoder": OwnEncoder(), **kwargs})


def test_bad_inputs_are_clear_errors():
    m = method()
    sx, sy, qx = make_task()
    with pytest.raises(ValueError, match="one label per support example"):
        m.logits(sx, sy[:4], qx)
    with pytest.raises(ValueError, match="both must be"):
        m.logits(sx, sy, torch.randn(3, 1, 8, 8))
    ep = ml.EpisodeSampler(torch.randn(4, 3, 1, 16, 16), ways=3, shots=1, queries=1, seed=0).sample(1)
    wrong = Episode(ep.support_x, ep.support_y, ep.query_x, ep.query_y + 1)  # a query class with no support
    with pytest.raises(ValueError, match=r"query labels must be among the support labels 0..2"):
        m.loss(wrong)
    with pytest.raises(ValueError, match="keep the batch|one row per example"):
        ml.MatchingNet(nn.Flatten(0)).logits(sx[:3], sy[:3], qx)


def test_cli_recipe_trains_two_steps_and_loads(tmp_path):
    save_as = tmp_path / "matching.pt"
    assert main(["train", "matching", "--out", str(tmp_path / "run"), "--steps", "2", "--ways", "5", "--shots", "1",
                 "--queries", "2", "--hidden", "8", "--temperature", "0.2", "--no-learn-temperature",
                 "--val-every", "1", "--val-episodes", "3", "--no-progress", "--device", "cpu",
                 "--save-as", str(save_as), "--set", "rotations=false"]) == 0
    blob = read_checkpoint(save_as)
    assert blob["recipe"] == "matching" and blob["config"]["temperature"] == 0.2
    assert blob["config"]["learn_temperature"] is False
    assert isinstance(load_checkpoint(save_as), ml.MatchingNet)
