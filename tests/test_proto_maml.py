"""Proto-MAML: the head's start from the prototypes (W = 2c, b = -|c|^2, ProtoNet's classifier before any step),
the meta-gradient through that start against finite differences in float64, vmap against the loop, a user's own
network trained through ``ml.train``, checkpoints, the CLI recipe and the errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import metalearn_lite as ml
from metalearn_lite.checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from metalearn_lite.cli import main
from metalearn_lite.distances import squared_euclidean
from metalearn_lite.episodes import Episode
from metalearn_lite.fewshot import class_means


class OwnNet(nn.Module):
    """A reader's own classifier: a small CNN body and a linear head ``fc``."""

    def __init__(self, outputs: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2),
                                  nn.Conv2d(4, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.fc = nn.Linear(16, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


def tasks(n=2, ways=3, shots=2, queries=2, side=8, dtype=torch.float64, seed=0) -> Episode:
    g = torch.Generator().manual_seed(seed)
    sx = torch.randn(n, ways * shots, 1, side, side, generator=g, dtype=dtype)
    qx = torch.randn(n, ways * queries, 1, side, side, generator=g, dtype=dtype)
    sy = torch.arange(ways).repeat_interleave(shots).expand(n, -1).contiguous()
    qy = torch.arange(ways).repeat_interleave(queries).expand(n, -1).contiguous()
    return Episode(sx, sy, qx, qy)


def proto_maml(**kw) -> ml.ProtoMAML:
    torch.manual_seed(0)
    return ml.ProtoMAML(OwnNet(), ways=3, **{"inner_lr": 0.1, **kw}).double()


@torch.no_grad()
def test_the_head_starts_from_the_prototypes_and_classifies_like_protonet():
    m = proto_maml()
    ep = tasks(seed=1)
    start = m.adapted_params(ep.support_x, ep.support_y, steps=0)
    for t in range(2):
        phi = m.net.body(ep.support_x[t])
        c = class_means(phi, ep.support_y[t], 3)
        torch.testing.assert_close(start["fc.weight"][t], 2 * c)
        torch.testing.assert_close(start["fc.bias"][t], -(c * c).sum(-1))
        scores = m.forward_with({n: p[t:t + 1] for n, p in start.items()}, ep.query_x[t:t + 1])[0]
        protonet = -squared_euclidean(m.net.body(ep.query_x[t]), c)  # differs by -|phi(x)|^2 per query only
        torch.testing.assert_close(scores.softmax(-1), protonet.softmax(-1))
    # the stored head is zero and never trained; any number of classes works
    assert torch.count_nonzero(m.net.fc.weight) == 0 and not m.net.fc.weight.requires_grad
    five = tasks(n=1, ways=5, shots=1, queries=2, seed=2)
    assert m.logits(five.support_x[0], five.support_y[0] + 10, five.query_x[0]).shape == (10, 5)
    assert set(m.predict(five.support_x[0], five.support_y[0] + 10, five.query_x[0]).tolist()) <= set(range(10, 15))


def meta_loss_fd_check(m: ml.ProtoMAML, ep: Episode, eps: float = 1e-6) -> None:
    params = [p for p in m.parameters() if p.requires_grad]
    loss, _ = m.loss(ep)
    grads = torch.autograd.grad(loss, params)
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        v = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
        analytic = sum((gi * vi).sum() for gi, vi in zip(grads, v)).item()
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                for p, vi in zip(params, v):
                    p.add_(sign * eps * vi)
            values.append(m.loss(ep)[0].item())
            with torch.no_grad():
                for p, vi in zip(params, v):
                    p.sub_(sign * eps * vi)
        numeric = (values[0] - values[1]) / (2 * eps)
        assert abs(analytic - numeric) <= 1e-5 * max(abs(numeric), 1e-3), (analytic, numeric)


@pytest.mark.parametrize("kw", [{"inner_steps": 0}, {"inner_steps": 2}, {"inner_steps": 1, "anil": True},
                                {"inner_steps": 1, "meta_sgd": True}],
                         ids=["no-step", "second-order", "anil", "meta-sgd"])
def test_meta_gradient_through_the_prototype_start_matches_finite_differences(kw):
    m = proto_maml(batching="loop", **kw)
    meta_loss_fd_check(m, tasks(seed=3))
    # the start's contribution is real: with no inner step the body's gradient comes only through c and phi(query)
    loss, _ = m.loss(tasks(seed=3))
    assert m.net.body[0].weight.grad is None
    loss.backward()
    assert m.net.body[0].weight.grad.abs().sum() > 0 and m.net.fc.weight.grad is None


def test_first_order_keeps_the_gradient_through_the_start_and_drops_only_the_hessian():
    ep = tasks(seed=3)
    grads = {}
    for first_order in (False, True):
        m = proto_maml(batching="loop", inner_steps=1, first_order=first_order)
        m.loss(ep)[0].backward()
        grads[first_order] = m.net.body[0].weight.grad
    assert grads[True].abs().sum() > 0 and not torch.allclose(grads[True], grads[False])
    # with no inner step there is no Hessian term: first and second order agree exactly
    same = [proto_maml(batching="loop", inner_steps=0, first_order=fo) for fo in (False, True)]
    g = [torch.autograd.grad(m.loss(ep)[0], m.net.body[0].weight)[0] for m in same]
    torch.testing.assert_close(g[0], g[1])


def test_vmap_and_loop_agree():
    ep = tasks(n=3, seed=4)
    grads = {}
    for batching in ("vmap", "loop"):
        m = proto_maml(batching=batching, inner_steps=2)
        loss, _ = m.loss(ep)
        grads[batching] = (loss.item(), torch.autograd.grad(loss, [p for p in m.parameters() if p.requires_grad]))
    assert grads["vmap"][0] == pytest.approx(grads["loop"][0], rel=1e-10)
    for a, b in zip(grads["vmap"][1], grads["loop"][1]):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_trains_your_own_network_through_ml_train(easy_images, tmp_path):
    x, y = easy_images
    seen = y < 12
    torch.manual_seed(0)
    m = ml.ProtoMAML(OwnNet(), inner_lr=0.5, first_order=True)
    losses = []
    ml.train(m, ml.EpisodeSampler(x[seen], y[seen], ways=4, shots=1, queries=3, seed=0), steps=150, lr=1e-2,
             tasks_per_step=2, out_dir=tmp_path / "run", progress=False,
             callbacks=lambda e: losses.append(e.metrics.get("loss")))
    losses = [v for v in losses if v is not None]
    assert sum(losses[-20:]) / 20 < 0.92 * sum(losses[:20]) / 20, (losses[:20], losses[-20:])
    result = ml.evaluate(m.eval(), (x[~seen], y[~seen]), ways=4, shots=1, queries=5, episodes=40, seed=0)
    assert result.mean - result.ci95 > 0.25, result  # chance is 25 %


def test_checkpoint_round_trip_and_config(tmp_path):
    torch.manual_seed(2)
    m = ml.ProtoMAML(ml.Conv4(1, 4, out_features=5, image_size=16), ways=5, inner_lr=0.2, first_order=True)
    assert "zero_head" not in m.config and "loss" not in m.config
    assert ml.algorithms.METHODS["proto_maml"] is ml.ProtoMAML
    path = save_checkpoint(tmp_path / "p.pt", m)
    loaded = load_checkpoint(path)
    assert type(loaded) is ml.ProtoMAML and loaded.config == m.config
    ep = tasks(n=1, ways=5, shots=1, side=16, dtype=torch.float32, seed=6)
    sx, sy, qx, _ = ep.unbatched()
    torch.testing.assert_close(loaded.logits(sx, sy, qx), m.eval().logits(sx, sy, qx))
    own = proto_maml()
    save_checkpoint(tmp_path / "own.pt", own)
    with pytest.raises(ValueError, match=r"your own network \(model=OwnNet\).*method=ProtoMAML"):
        load_checkpoint(tmp_path / "own.pt")


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match=r"head \(3\) must be an nn.Linear with a bias.*head=NAME"):
        ml.ProtoMAML(nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3, bias=False)))
    with pytest.raises(ValueError, match="Proto-MAML sets zero_head itself"):
        ml.ProtoMAML(OwnNet(), zero_head=False)
    with pytest.raises(ValueError, match="Proto-MAML sets loss itself"):
        ml.ProtoMAML(OwnNet(), loss="mse")
    with pytest.raises(ValueError, match="inner_lr must be > 0"):
        ml.ProtoMAML(OwnNet(), inner_lr=0)
    with pytest.raises(ValueError, match="ways must be a positive int"):
        ml.ProtoMAML(ways=0)
    with pytest.raises(ValueError, match="no parameters under head='classifier'"):
        ml.ProtoMAML(OwnNet(), head="classifier")
    m = proto_maml()
    ep = tasks(n=1, seed=7)
    sx, sy, qx, _ = ep.unbatched()
    with pytest.raises(ValueError, match="one label per support example"):
        m.logits(sx, sy[:-1], qx)


def test_cli_recipe_trains_two_steps_and_loads(tmp_path):
    save_as = tmp_path / "proto_maml.pt"
    assert main(["train", "proto_maml", "--out", str(tmp_path / "run"), "--steps", "2", "--ways", "5", "--shots",
                 "1", "--queries", "2", "--hidden", "8", "--first-order", "--tasks", "2", "--val-every", "1",
                 "--val-episodes", "3", "--no-progress", "--device", "cpu", "--save-as", str(save_as),
                 "--set", "rotations=false"]) == 0
    blob = read_checkpoint(save_as)
    assert blob["recipe"] == "proto_maml" and blob["config"]["first_order"] is True
    assert isinstance(load_checkpoint(save_as), ml.ProtoMAML)
