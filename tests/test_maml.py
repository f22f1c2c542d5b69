"""MAML, first-order MAML, Meta-SGD, ANIL and Reptile: meta-gradients checked against finite differences,
closed forms and hand computations; the batched (vmap) path against the per-task loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metalearn_lite.algorithms import MAML, Reptile
from metalearn_lite.algorithms.inner_loop import adapted_params, params_of, task_outputs
from metalearn_lite.algorithms.reptile import reptile_surrogate
from metalearn_lite.checkpoints import load_checkpoint, save_checkpoint
from metalearn_lite.datasets.sinusoid import SinusoidTasks
from metalearn_lite.episodes import Episode
from metalearn_lite.models import MLP, Conv4


def image_tasks(tasks=2, ways=2, shots=1, queries=2, side=16, dtype=torch.float64, seed=0) -> Episode:
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(tasks, ways * shots, 1, side, side, generator=g, dtype=dtype)
    qx = torch.rand(tasks, ways * queries, 1, side, side, generator=g, dtype=dtype)
    sy = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1).contiguous()
    qy = torch.arange(ways).repeat_interleave(queries).expand(tasks, -1).contiguous()
    return Episode(sx, sy, qx, qy)


def tiny_maml(ways: int = 2, norm: str = "batch", **kw) -> MAML:
    torch.manual_seed(0)
    net = Conv4(1, 3, norm, out_features=ways, image_size=16)
    return MAML(net, ways=ways, **{"inner_lr": 0.3, "zero_head": False, **kw}).double()  # a meta-learned head


def regressor(cls=MAML, hidden: int = 40, layers: int = 2, **kw):
    """MAML (or Reptile) regressing with the squared error on an MLP, the sinusoid recipe's network."""
    return cls(MLP(1, (hidden,) * layers, 1), loss="mse", **{"inner_lr": 0.01, **kw})


def sinusoid(tasks=3, shots=5, queries=6) -> Episode:
    ep = SinusoidTasks(seed=1).sample(tasks, shots, queries)
    return Episode(ep.support_x.double(), ep.support_y.double(), ep.query_x.double(), ep.query_y.double(), info=ep.info)


def meta_grad(method, episode) -> list[torch.Tensor]:
    loss, _ = method.loss(episode)
    return list(torch.autograd.grad(loss, [p for p in method.parameters() if p.requires_grad]))


def assert_matches_finite_differences(method, episode, directions=3, eps=1e-6, tol=1e-4) -> None:
    """Directional derivatives of the meta-loss along random directions vs central differences."""
    params = list(method.parameters())
    grads = meta_grad(method, episode)
    g = torch.Generator().manual_seed(5)
    for _ in range(directions):
        v = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
        analytic = sum((gi * vi).sum() for gi, vi in zip(grads, v))
        with torch.no_grad():
            for p, vi in zip(params, v):
                p.add_(eps * vi)
        plus = method.loss(episode)[0].item()
        with torch.no_grad():
            for p, vi in zip(params, v):
                p.sub_(2 * eps * vi)
        minus = method.loss(episode)[0].item()
        with torch.no_grad():
            for p, vi in zip(params, v):
                p.add_(eps * vi)
        numeric = (plus - minus) / (2 * eps)
        assert abs(analytic.item() - numeric) <= tol * max(abs(numeric), 1e-3), (analytic.item(), numeric)


@pytest.mark.parametrize("batching", ["vmap", "loop"])
def test_second_order_meta_gradient_matches_finite_differences_conv4_batch_norm(batching):
    # Conv-4 with batch-statistics normalisation, 2 inner steps, second order, on the batched path too
    method = tiny_maml(inner_steps=2, batching=batching)
    assert method.resolve_batching(False, torch.device("cpu")) == batching
    assert_matches_finite_differences(method, image_tasks())


def test_second_order_meta_gradient_matches_finite_differences_sinusoid_meta_sgd():
    torch.manual_seed(0)
    method = regressor(hidden=8, inner_steps=3, inner_lr=0.05, meta_sgd=True, batching="vmap").double()
    assert_matches_finite_differences(method, sinusoid())


@pytest.mark.parametrize("kw", [{}, {"first_order": True}, {"meta_sgd": True}, {"anil": True}, {"inner_steps": 3}])
def test_vmap_and_per_task_loop_agree(kw):
    ep = image_tasks(tasks=3, seed=2)
    grads = {}
    for batching in ("vmap", "loop"):
        method = tiny_maml(batching=batching, **kw)
        loss, acc = method.loss(ep)
        grads[batching] = (loss.detach(), acc, meta_grad(tiny_maml(batching=batching, **kw), ep))
    torch.testing.assert_close(grads["vmap"][0], grads["loop"][0], rtol=1e-5, atol=1e-5)
    assert grads["vmap"][1] == grads["loop"][1]
    for a, b in zip(grads["vmap"][2], grads["loop"][2]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_vmap_and_loop_agree_in_float32_on_the_sinusoid():
    ep = SinusoidTasks(seed=3).sample(25, 10, 10)
    out = {}
    for batching in ("vmap", "loop"):
        torch.manual_seed(0)
        out[batching] = meta_grad(regressor(inner_steps=2, batching=batching), ep)
    for a, b in zip(out["vmap"], out["loop"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_second_order_vmap_through_functional_batch_norm_is_refused():
    norm = torch.nn.BatchNorm2d(2, track_running_stats=False)  # calls F.batch_norm with batch statistics
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), norm, torch.nn.Flatten(), torch.nn.LazyLinear(2))
    net(torch.rand(2, 1, 6, 6))
    ep = image_tasks(tasks=2, side=6, dtype=torch.float32)
    args = (net, params_of(net), ep.support_x, ep.support_y, ep.query_x, ep.query_y, F.cross_entropy, 1, 0.1)
    with pytest.raises(ValueError, match="batch_norm.*loop"):
        task_outputs(*args, first_order=False, batching="vmap")
    task_outputs(*args, first_order=True, batching="vmap")  # first order is fine
    task_outputs(*args, first_order=False, batching="loop")
    with pytest.raises(ValueError, match="running statistics.*track_running_stats=False"):
        MAML(Conv4(norm="running", out_features=2), ways=2)


def test_first_order_drops_exactly_the_hessian_term():
    """A linear regressor with squared loss: L_S is quadratic, H_S = 2/n X^T X, everything in closed form."""
    ep = sinusoid(tasks=1, shots=4, queries=5)
    alpha = 0.05
    xs = torch.cat([ep.support_x[0], torch.ones(4, 1, dtype=torch.float64)], 1)  # features [x, 1]
    xq = torch.cat([ep.query_x[0], torch.ones(5, 1, dtype=torch.float64)], 1)
    ys, yq = ep.support_y[0], ep.query_y[0]
    results = {}
    for first_order in (False, True):
        torch.manual_seed(0)
        method = regressor(layers=0, inner_lr=alpha, first_order=first_order).double()
        w, b = method.net.net[0].weight, method.net.net[0].bias
        theta = torch.cat([w.detach().flatten(), b.detach()]).unsqueeze(1)  # (2, 1)
        loss, _ = method.loss(ep)
        loss.backward()
        results[first_order] = torch.cat([w.grad.flatten(), b.grad])
    hess = 2 / 4 * xs.T @ xs
    theta_adapted = theta - alpha * 2 / 4 * xs.T @ (xs @ theta - ys)
    grad_q = (2 / 5 * xq.T @ (xq @ theta_adapted - yq)).flatten()
    first = grad_q
    second = (torch.eye(2, dtype=torch.float64) - alpha * hess) @ grad_q
    torch.testing.assert_close(results[True], first, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(results[False], second, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(results[False] - results[True], -alpha * hess @ grad_q, rtol=1e-9, atol=1e-12)


def test_reptile_update_equals_its_definition_by_hand():
    """y = w x + b from w = b = 0 on the points (1, 2), (2, 4); two SGD steps of 0.1, outer SGD of 0.5.

    Step 1: residuals (-2, -4), dL/dw = mean(2 x r) = -10, dL/db = mean(2 r) = -6 -> (1.0, 0.6).
    Step 2: residuals (-0.4, -1.4), dL/dw = -3.2, dL/db = -1.8 -> phi = (1.32, 0.78).
    Reptile: theta + 0.5 (phi - theta) = (0.66, 0.39).
    """
    method = regressor(Reptile, layers=0, inner_lr=0.1, inner_steps=2).double()
    with torch.no_grad():
        for p in method.parameters():
            p.zero_()
    one = torch.ones(1, 1, 1, dtype=torch.float64)
    ep = Episode(one, 2 * one, 2 * one, 4 * one)  # support (1, 2), query (2, 4): Reptile uses both
    opt = torch.optim.SGD(method.parameters(), lr=0.5)
    surrogate, _ = method.loss(ep)
    surrogate.backward()
    torch.testing.assert_close(method.net.net[0].weight.grad.flatten(), torch.tensor([-1.32], dtype=torch.float64))
    torch.testing.assert_close(method.net.net[0].bias.grad, torch.tensor([-0.78], dtype=torch.float64))
    opt.step()
    torch.testing.assert_close(method.net.net[0].weight.detach().flatten(), torch.tensor([0.66], dtype=torch.float64))
    torch.testing.assert_close(method.net.net[0].bias.detach(), torch.tensor([0.39], dtype=torch.float64))
    # the surrogate of several tasks pulls toward their mean
    theta = {"w": torch.zeros(2, requires_grad=True)}
    reptile_surrogate(theta, {"w": torch.tensor([[1.0, 3.0], [3.0, 5.0]])}).backward()
    torch.testing.assert_close(theta["w"].grad, torch.tensor([-2.0, -4.0]))


def test_reptile_classifier_trains_and_batches_agree():
    ep = image_tasks(tasks=2, dtype=torch.float64)
    grads = []
    for batching in ("vmap", "loop"):
        torch.manual_seed(0)
        method = Reptile(Conv4(1, 3, out_features=2, image_size=16), ways=2, inner_steps=2, batching=batching).double()
        grads.append(meta_grad(method, ep))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)
    assert any(g.abs().sum() > 0 for g in grads[0])


def test_meta_sgd_learning_rates_receive_gradients_and_start_at_inner_lr():
    method = tiny_maml(meta_sgd=True)
    assert len(method.inner_lrs) == len(list(method.net.parameters()))
    assert all(torch.allclose(v, torch.full_like(v, 0.3)) for v in method.inner_lrs.values())
    loss, _ = method.loss(image_tasks())
    loss.backward()
    for key, v in method.inner_lrs.items():
        assert v.grad is not None and v.grad.abs().sum() > 0, key


def test_anil_inner_loop_leaves_the_body_untouched():
    method = tiny_maml(anil=True, inner_steps=2)
    assert method.trainable_names() == ["head.weight", "head.bias"]
    ep = image_tasks()
    params = params_of(method.net)
    adapted, inner = adapted_params(method.net, params, ep.support_x[0], ep.support_y[0], F.cross_entropy, 2, 0.3,
                           trainable=method.trainable_names())
    for name, p in params.items():
        if name.startswith("head."):
            assert not torch.equal(adapted[name], p), name
        else:
            assert adapted[name] is p, name
    batched = method.adapted_params(ep.support_x, ep.support_y)
    for name, p in params.items():
        if not name.startswith("head."):
            torch.testing.assert_close(batched[name], p.detach().expand_as(batched[name]), rtol=0, atol=0)
    loss, _ = method.loss(ep)
    loss.backward()  # the body is still meta-trained, through the adapted head
    assert method.net.features[0].weight.grad.abs().sum() > 0


def test_divergent_inner_loop_stops_with_a_clear_error():
    torch.manual_seed(0)
    method = regressor(inner_lr=1e4, inner_steps=5)
    with pytest.raises(FloatingPointError, match=r"inner step \d+ of 5.*smaller inner learning rate"):
        method.loss(SinusoidTasks(seed=0).sample(4, 10, 10))
    with pytest.raises(FloatingPointError, match="smaller inner learning rate"):
        method.query_losses(SinusoidTasks(seed=0).sample(2, 5, 5))


def test_first_order_warmup_switches_to_second_order_and_is_saved(tmp_path):
    method = tiny_maml(first_order_warmup=1)
    method.train()
    assert method.training_first_order()
    method.loss(image_tasks())
    assert int(method.meta_step) == 1 and not method.training_first_order()
    save_checkpoint(tmp_path / "m.pt", method)
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert int(loaded.meta_step) == 1 and loaded.config == method.config


def test_classifier_predicts_labels_and_checks_ways():
    method = tiny_maml().float()
    ep = image_tasks(dtype=torch.float32)
    sx, sy, qx, _ = ep.task(0).unbatched()
    pred = method.predict(sx, sy + 7, qx)
    assert pred.shape == (4,) and set(pred.tolist()) <= {7, 8}
    assert all(p.grad is None for p in method.parameters())  # test-time adaptation leaves the weights alone
    with pytest.raises(ValueError, match="2-way"):
        method.logits(torch.rand(3, 1, 16, 16), torch.arange(3), qx)


def test_regressor_trains_with_the_one_trainer_and_reports(tmp_path):
    from metalearn_lite.cli import main
    from metalearn_lite.recipes.sinusoid import eval_tasks, sinusoid_report
    from metalearn_lite.training import train

    torch.manual_seed(0)
    method = regressor(hidden=16, inner_steps=2)
    result = train(method, SinusoidTasks(seed=0), eval_tasks(10, seed=3), steps=30, tasks_per_step=25, val_every=15,
                   save_every=15, out_dir=tmp_path / "run", progress=False)
    assert [h["step"] for h in result.history] == [15, 30]
    assert all(h["val_mse"] > 0 for h in result.history)
    assert result.best_val == -min(h["val_mse"] for h in result.history)
    loaded = load_checkpoint(tmp_path / "run" / "best.pt")
    assert loaded.config["loss"] == "mse" and loaded.config["model"]["name"] == "mlp"
    report = sinusoid_report(loaded, episodes=20, seed=0)
    assert "MSE" in report and "pretrained baseline" in report
    assert main(["train", "maml_regressor", "--out", str(tmp_path / "cli"), "--steps", "4", "--val-every", "2",
                 "--val-episodes", "5", "--hidden", "8", "--meta-sgd", "--no-progress"]) == 0
    blob_model = load_checkpoint(tmp_path / "cli" / "best.pt")
    assert blob_model.config["meta_sgd"] is True and blob_model.recipe == "maml_regressor"


def test_zero_head_starts_every_task_from_zero_and_one_step_gives_the_closed_form():
    """The zeroing trick: one step from W = 0 on cross-entropy gives w_c = alpha/S sum_i (1[y_i=c] - 1/N) phi_i."""
    method = tiny_maml(zero_head=True, ways=3)
    head = method.net.head
    assert torch.count_nonzero(head.weight) == 0 and torch.count_nonzero(head.bias) == 0
    assert not head.weight.requires_grad and not head.bias.requires_grad
    ep = image_tasks(tasks=2, ways=3, shots=2, seed=4)
    adapted = method.adapted_params(ep.support_x, ep.support_y, steps=1)
    for t in range(2):
        phi = method.net.embed(ep.support_x[t]).detach()  # (S, D), the support's own batch statistics
        onehot = F.one_hot(ep.support_y[t], 3).double()
        expected = 0.3 / len(phi) * (onehot - 1 / 3).T @ phi  # (N, D)
        torch.testing.assert_close(adapted["head.weight"][t], expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(adapted["head.bias"][t], torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-12)
    # meta-training moves the body (and the rates) but never the stored head
    method.train()
    opt = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=0.1)
    loss, _ = method.loss(image_tasks(tasks=2, ways=3, seed=5))
    loss.backward()
    assert method.net.features[0].weight.grad.abs().sum() > 0
    opt.step()
    assert torch.count_nonzero(head.weight) == 0 and torch.count_nonzero(head.bias) == 0


@pytest.mark.parametrize("kw", [{}, {"meta_sgd": True}])
def test_zero_head_vmap_and_loop_agree(kw):
    ep = image_tasks(tasks=3, seed=2)
    out = {b: meta_grad(tiny_maml(batching=b, zero_head=True, **kw), ep) for b in ("vmap", "loop")}
    names = [n for n, p in tiny_maml(zero_head=True, **kw).named_parameters() if p.requires_grad]
    assert not any(n.startswith("net.head") for n in names)
    for a, b in zip(out["vmap"], out["loop"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_init_body_copies_the_conv_weights_and_norm_affine_but_not_the_head():
    from metalearn_lite.models import Conv4

    torch.manual_seed(3)
    source = Conv4(1, 3, norm="running").double()
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    method = tiny_maml()
    head = {n: p.clone() for n, p in method.net.head.named_parameters()}
    copied = method.init_body(source)
    assert len(copied) == 4 * 4  # conv weight and bias, norm weight and bias, per block
    for name, p in method.net.features.named_parameters():
        assert torch.equal(p, dict(source.features.named_parameters())[name])
    for n, p in method.net.head.named_parameters():
        assert torch.equal(p, head[n])
    with pytest.raises(ValueError, match="--hidden 5"):
        method.init_body(Conv4(1, 5))
    with pytest.raises(ValueError, match="norm='none'"):
        method.init_body(Conv4(1, 3, norm="none"))
    with pytest.raises(ValueError, match="needs a Conv4"):
        method.init_body(torch.nn.Linear(2, 2))


def test_zero_head_model_takes_tasks_of_any_number_of_classes():
    """The head is built per task: a model made for 2-way tasks trains on 4-way ones and classifies 3-way ones."""
    method = tiny_maml(zero_head=True, meta_sgd=True)  # ways=2
    assert method.inner_lrs["head__weight"].shape == (1, 3)  # one rate per feature, shared by the class rows
    assert method.inner_lrs["head__bias"].shape == (1,)
    method.train()
    loss, acc = method.loss(image_tasks(tasks=2, ways=4, seed=6))
    loss.backward()
    assert method.inner_lrs["head__weight"].grad.abs().sum() > 0
    ep = image_tasks(tasks=1, ways=3, shots=2, seed=7)
    adapted = method.adapted_params(ep.support_x, ep.support_y, steps=1)
    phi = method.net.embed(ep.support_x[0]).detach()
    rate = method.rate()["head.weight"].detach()
    expected = rate * ((F.one_hot(ep.support_y[0], 3).double() - 1 / 3).T @ phi) / len(phi)
    torch.testing.assert_close(adapted["head.weight"][0], expected, rtol=1e-10, atol=1e-12)
    assert method.logits(ep.support_x[0], ep.support_y[0], ep.query_x[0]).shape == (6, 3)
    with pytest.raises(ValueError, match="zero_head=True"):  # without the zeroing trick the head fixes the ways
        tiny_maml().logits(ep.support_x[0], ep.support_y[0], ep.query_x[0])


@pytest.mark.parametrize("first_order", [True, False])
def test_per_task_backward_equals_one_backward_through_every_task(first_order):
    """The loop backpropagates each task's query loss as soon as it is computed (one task's graph alive at a
    time); its meta-gradient equals one backward through every task's graph kept alive, in float64 to 1e-12."""
    ep = image_tasks(tasks=4, ways=3, queries=3, seed=3)
    method = tiny_maml(ways=3, batching="loop", first_order=first_order, inner_steps=2)
    weights = [p for p in method.parameters() if p.requires_grad]
    per_task = meta_grad(method, ep)
    q, _, _ = task_outputs(method.net, method.start_params(), ep.support_x, ep.support_y, ep.query_x, ep.query_y,
                           method.task_loss, 2, method.inner_lr, first_order, method.trainable_names(), batching="loop")
    one_backward = torch.autograd.grad(q.mean(), weights)
    assert any(g.abs().max() > 1e-3 for g in one_backward)
    for a, b in zip(per_task, one_backward):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
