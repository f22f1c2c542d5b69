"""The library on a learner's own network and data: a user-defined CNN trained as a ProtoNet and as MAML
through ``ml.train`` on a generated image folder (not Omniglot), reloaded from ``best.pt``; the errors a
user meets on the way."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import metalearn_lite as ml
from metalearn_lite.cli import main


class SmallCNN(nn.Module):
    """A reader's own network: RGB in, ``features`` out, optionally with a classifier head ``fc``."""

    def __init__(self, outputs: int | None = None, norm: bool = False) -> None:
        super().__init__()
        layers = [nn.Conv2d(3, 8, 3, padding=1)]
        if norm:
            layers.append(nn.BatchNorm2d(8, track_running_stats=False))
        layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                   nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.fc = None if outputs is None else nn.Linear(32, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.body(x)
        return z if self.fc is None else self.fc(z)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A generated folder of 12 shape classes x 10 RGB images; 9 classes to train on, 3 held out."""
    root = ml.make_shapes(tmp_path_factory.mktemp("shapes") / "shapes", classes=12, per_class=10, size=16)
    x, y, names = ml.image_folder(root, size=16, grayscale=False)
    train = y < 9
    return root, (x[train], y[train]), (x[~train], y[~train]), names


def test_image_folder_is_not_omniglot(shapes):
    root, (x, y), (vx, vy), names = shapes
    assert x.shape == (90, 3, 16, 16) and vx.shape == (30, 3, 16, 16)
    assert len(names) == 12 and sorted(y.unique().tolist()) == list(range(9))


def test_protonet_on_your_own_cnn_trains_reloads_and_evaluates(shapes, tmp_path):
    _, (x, y), (vx, vy), _ = shapes
    torch.manual_seed(0)
    method = ml.ProtoNet(SmallCNN())
    tasks = ml.EpisodeSampler(x, y, ways=5, shots=2, queries=3, seed=0)
    val = ml.EpisodeSampler(vx, vy, ways=3, shots=1, queries=5, seed=1)
    result = ml.train(method, tasks, val_tasks=val, steps=12, val_every=4, val_episodes=10, save_every=4,
                      out_dir=tmp_path / "proto", progress=False)
    assert result.step == 12 and [h["step"] for h in result.history] == [4, 8, 12]
    assert result.best_val == max(h["val_acc"] for h in result.history)
    assert result.best_path.is_file() and result.last_path.is_file()
    # a custom network cannot be rebuilt from the file: say how to load it
    with pytest.raises(ValueError, match=r"your own network \(encoder=SmallCNN\).*method=ProtoNet"):
        ml.load_checkpoint(result.best_path)
    fresh = ml.ProtoNet(SmallCNN())
    loaded = ml.load_checkpoint(result.best_path, method=fresh)
    assert loaded is fresh and not loaded.training
    blob = torch.load(result.best_path, weights_only=True)
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, blob["state_dict"][k]), k
    acc = ml.evaluate(loaded, (vx, vy), ways=3, shots=1, queries=5, episodes=30, seed=0)
    assert 1 / 3 < acc.mean <= 1.0  # above chance on classes never trained on
    with pytest.raises(ValueError, match="do not fit"):  # another network's weights
        ml.load_checkpoint(result.best_path, method=ml.ProtoNet(nn.Sequential(nn.Flatten(), nn.Linear(768, 4))))


def test_maml_on_your_own_cnn_trains_adapts_and_reloads(shapes, tmp_path):
    _, (x, y), (vx, vy), _ = shapes
    torch.manual_seed(0)
    method = ml.MAML(SmallCNN(outputs=3, norm=True), ways=3, inner_lr=0.5, inner_steps=1, test_steps=2)
    assert method.head_prefix == "fc."  # the last layer with weights is the head
    tasks = ml.EpisodeSampler(x, y, ways=3, shots=1, queries=3, seed=0)
    val = ml.EpisodeSampler(vx, vy, ways=3, shots=1, queries=3, seed=1)
    before = {k: v.clone() for k, v in method.state_dict().items()}
    result = ml.train(method, tasks, val, steps=6, tasks_per_step=2, val_every=3, val_episodes=6, save_every=3,
                      out_dir=tmp_path / "maml", progress=False)
    assert result.step == 6 and all(0 <= h["val_acc"] <= 1 for h in result.history)
    assert any(not torch.equal(before[k], v) for k, v in method.state_dict().items())
    loaded = ml.load_checkpoint(result.best_path, method=ml.MAML(SmallCNN(outputs=3, norm=True), ways=3,
                                                                  inner_lr=0.5, inner_steps=1, test_steps=2))
    # adapt() gives a callable model for one task; the meta-learned weights do not move
    sx, sy, qx, qy = val.sample(1).unbatched()
    weights = {k: v.clone() for k, v in loaded.state_dict().items()}
    adapted = loaded.adapt(sx, sy + 10)  # any integer labels: column j is the j-th smallest
    out = adapted(qx)
    assert out.shape == (9, 3) and adapted.classes.tolist() == [10, 11, 12]
    assert torch.equal(adapted.predict(qx), loaded.predict(sx, sy + 10, qx))
    assert all(torch.equal(v, weights[k]) for k, v in loaded.state_dict().items())
    assert not torch.equal(out, loaded(qx))  # the steps changed the outputs


def test_maml_on_your_own_regressor_with_a_custom_loss():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))

    def l1(out, target):
        return (out - target).abs().mean()

    method = ml.MAML(net, loss=l1, inner_lr=0.05)
    ep = ml.SinusoidTasks(seed=0).sample(4, 5, 5)
    loss, metric = method.loss(ep)
    loss.backward()
    assert torch.isfinite(loss) and metric > 0 and net[0].weight.grad.abs().sum() > 0
    score, metrics = method.validation_score(ep)
    assert score == -metrics["val_loss"] < 0
    adapted = method.adapt(ep.support_x[0], ep.support_y[0], steps=3)
    assert adapted(ep.query_x[0]).shape == (5, 1)
    with pytest.raises(ValueError, match="your own loss function \\(l1\\)"):
        ml.MAML.from_config(method.config)


def test_maml_buffers_reach_the_model_and_the_meta_gradient_matches_finite_differences():
    """A user module with a buffer (a fixed input scale): functional_call passes it, and the second-order
    meta-gradient through the user's module matches central differences."""

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("scale", torch.tensor(2.0, dtype=torch.float64))
            self.hidden = nn.Linear(1, 6).double()
            self.out = nn.Linear(6, 1).double()

        def forward(self, x):
            return self.out(torch.tanh(self.hidden(x * self.scale)))

    torch.manual_seed(0)
    method = ml.MAML(Scaled(), loss="mse", inner_lr=0.1, inner_steps=2)
    ep = ml.SinusoidTasks(seed=1).sample(2, 5, 5)
    ep = ml.Episode(ep.support_x.double(), ep.support_y.double(), ep.query_x.double(), ep.query_y.double())
    params = list(method.parameters())
    loss, _ = method.loss(ep)
    grads = torch.autograd.grad(loss, params)
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
        analytic = sum((gi * vi).sum() for gi, vi in zip(grads, v))
        with torch.no_grad():
            for p, vi in zip(params, v):
                p.add_(1e-6 * vi)
        plus = method.loss(ep)[0].item()
        with torch.no_grad():
            for p, vi in zip(params, v):
                p.sub_(2e-6 * vi)
        minus = method.loss(ep)[0].item()
        with torch.no_grad():
            for p, vi in zip(params, v):
                p.add_(1e-6 * vi)
        assert abs(analytic.item() - (plus - minus) / 2e-6) < 1e-5 * max(1.0, abs(analytic.item()))
    with torch.no_grad():
        method.net.scale.fill_(0.0)  # the buffer is used: with a zero scale the input is ignored
    out = method(ep.query_x[0])
    assert torch.allclose(out, out[:1].expand_as(out))


def test_maml_refuses_what_would_go_wrong_with_a_clear_error():
    ep = ml.Episode(torch.rand(1, 5, 3, 16, 16), torch.arange(5)[None], torch.rand(1, 5, 3, 16, 16),
                    torch.arange(5)[None])
    with pytest.raises(ValueError, match="give its last layer 5 outputs"):
        ml.MAML(SmallCNN(outputs=3), ways=5, zero_head=False).loss(ep)  # a meta-learned head fixes the ways
    with pytest.raises(ValueError, match="track_running_stats=False"):
        ml.MAML(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(5)))
    with pytest.raises(ValueError, match="no trainable parameters"):
        ml.MAML(nn.Sequential(nn.Flatten()))
    frozen = nn.Linear(3, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        ml.MAML(frozen)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        ml.MAML(SmallCNN(outputs=5), loss="hinge")
    with pytest.raises(ValueError, match="regressor needs your network"):
        ml.MAML(loss="mse")
    with pytest.raises(ValueError, match="must be a torch.nn.Module"):
        ml.MAML("conv4")
    with pytest.raises(ValueError, match="no parameters under head='classifier'"):
        ml.MAML(SmallCNN(outputs=5), head="classifier")
    with pytest.raises(ValueError, match="zero_head=True needs a classifier whose head"):
        ml.MAML(nn.Sequential(nn.Flatten(), nn.Bilinear(2, 2, 2)), zero_head=True)
    regressor = ml.MAML(nn.Linear(1, 2), loss="mse")
    sin = ml.SinusoidTasks(seed=0).sample(1, 3, 3)
    with pytest.raises(ValueError, match="differ in shape"):
        regressor.loss(sin)


def test_metric_methods_take_your_encoder_and_explain_a_wrong_output(shapes):
    _, (x, y), _, _ = shapes
    ep = ml.EpisodeSampler(x, y, ways=3, shots=2, queries=0, seed=0).sample(1)
    for cls in (ml.SiameseNet, ml.TripletNet):
        method = cls(SmallCNN())
        loss, _ = method.loss(ep)
        loss.backward()
        assert method.encoder.body[0].weight.grad.abs().sum() > 0
    # an encoder with a spatial output is flattened; one that drops the batch dimension is refused
    spatial = ml.ProtoNet(nn.Conv2d(3, 2, 3))
    assert spatial.logits(x[:4], y[:4], x[4:6]).shape[0] == 2
    with pytest.raises(ValueError, match="map a batch .* to embeddings"):
        ml.ProtoNet(nn.Sequential(nn.Flatten(0))).logits(x[:4], y[:4], x[4:6])
    with pytest.raises(ValueError, match="encoder must be a torch.nn.Module"):
        ml.ProtoNet("conv4")


def test_train_on_a_torch_dataset_through_from_dataset(shapes, tmp_path):
    _, (x, y), _, _ = shapes

    class Folder(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.targets = y.tolist()

        def __len__(self) -> int:
            return len(x)

        def __getitem__(self, i: int):
            return x[i], int(y[i])

    tasks = ml.EpisodeSampler.from_dataset(Folder(), ways=3, shots=1, queries=2, seed=0)
    result = ml.train(ml.ProtoNet(SmallCNN()), tasks, steps=3, val_every=3, save_every=3, out_dir=tmp_path / "ds",
                      progress=False)
    assert result.step == 3 and result.best_path.is_file()  # without val_tasks: best by training loss


def test_cli_trains_on_an_image_folder(shapes, tmp_path, capsys):
    root = shapes[0]
    out = tmp_path / "cli"
    argv = ["train", "protonet", "--data", str(root), "--val-classes", "0.25", "--out", str(out), "--steps", "2",
            "--ways", "3", "--shots", "1", "--queries", "2", "--hidden", "8", "--val-every", "2", "--val-episodes",
            "4", "--set", "image_size=16", "grayscale=false", "val_ways=3", "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    model = ml.load_checkpoint(out / "best.pt")  # the course's Conv-4 (3 channels): rebuilt from the file
    assert model.encoder.in_channels == 3 and model.recipe == "protonet"
    blob = torch.load(out / "best.pt", weights_only=True)
    assert blob["task_config"]["data"] == str(root) and blob["task_config"]["rotations"] is False
    capsys.readouterr()
    assert main(["evaluate", str(out / "best.pt"), "--data", str(root), "--ways", "3", "--episodes", "4",
                 "--device", "cpu"]) == 2  # 15 queries per class by default, but the folder has 10 images a class
    assert "lower shots or queries" in capsys.readouterr().err
    assert main(["evaluate", str(out / "best.pt"), "--data", str(root), "--ways", "3", "--queries", "5",
                 "--episodes", "4", "--device", "cpu"]) == 0
    assert "3-way 1-shot, 4 episodes" in capsys.readouterr().out
    # the folder's episodes take the run's task shape (pair batches for siamese: no queries)
    from metalearn_lite.recipes import RECIPES

    for name, queries in (("protonet", 2), ("siamese", 0)):
        recipe = RECIPES[name]
        source = recipe.tasks(None, recipe.settings(data=str(root), queries=2, ways=3, shots=1, val_ways=3,
                                                    image_size=16, grayscale=False), torch.device("cpu"),
                              recipe.run_config(val_episodes=2))
        assert source.sample(1).query_x.shape[1] == 3 * queries, name
    # too few classes for the asked split: a clear error exit
    assert main([*argv[:5], "0.9", *argv[6:]]) == 2
    assert "split into" in capsys.readouterr().err
