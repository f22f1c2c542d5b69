"""Lesson 04's module: the closed-form average of the sine waves, the bug-hunt snippet, and the exercise
checks (right answers pass, typical wrong answers fail with a hint that names the mistake)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import check_fails, check_passes
from torch.func import functional_call

import metalearn_lite as ml
from metalearn_lite import MAML, MLP
from metalearn_lite.datasets.sinusoid import SinusoidTasks
from metalearn_lite.episodes import Episode
from metalearn_lite.lessons.lesson04 import (
    CheckFailed,
    accuracy_by_steps,
    adapting_steps,
    average_sine,
    check_first_order_prediction,
    check_meta_step,
    check_proto_head,
    check_quadratic_meta_gradient,
    check_zero_head_prediction,
    head_only,
    meta_gradient_case,
    overwriting_meta_step,
    plot_accuracy_by_steps,
    proto_head_case,
    snippet_meta_step,
)
from metalearn_lite.lessons.solutions.lesson04 import _fixed_meta_step, _proto_head, _quadratic_meta_gradient
from metalearn_lite.recipes.sinusoid import adapted_mse, eval_tasks, pretrain_regressor

# ----------------------------------------------------------------------------- the average sine wave


def test_average_sine_is_minus_two_over_pi_mean_amplitude_cos():
    x = torch.linspace(-5, 5, 101)
    assert torch.allclose(average_sine(x), -(2 / math.pi) * 2.55 * torch.cos(x), atol=1e-6)
    ep = SinusoidTasks(seed=3).sample(40000, 1, 0)
    sampled = SinusoidTasks.curve(ep.info, x[:, None]).mean(0)[:, 0]
    assert float((sampled - average_sine(x)).abs().max()) < 0.05  # Monte Carlo agrees with the closed form
    assert torch.allclose(average_sine(x, phase=(0.3, 0.3)), 2.55 * torch.sin(x - 0.3))


# ----------------------------------------------------------------------------- the bug hunt


def _snippet_variant(create_graph: bool, query: bool, wrt_initial: bool):
    """The snippet with any subset of its three mistakes fixed."""
    def step(net, episode, inner_lr, outer_lr):
        params = dict(net.named_parameters())
        total = {n: torch.zeros_like(p) for n, p in params.items()}
        for i in range(episode.num_tasks):
            sx, sy, qx, qy = (t[i] for t in (episode.support_x, episode.support_y, episode.query_x, episode.query_y))
            g = torch.autograd.grad(F.mse_loss(functional_call(net, params, (sx,)), sy), list(params.values()),
                                    create_graph=create_graph)
            adapted = {n: p - inner_lr * gi for (n, p), gi in zip(params.items(), g)}
            x, y = (qx, qy) if query else (sx, sy)
            outer = F.mse_loss(functional_call(net, adapted, (x,)), y)
            wrt = params if wrt_initial else adapted
            for n, gi in zip(params, torch.autograd.grad(outer, list(wrt.values()))):
                total[n] += gi / episode.num_tasks
        with torch.no_grad():
            for n, p in params.items():
                p -= outer_lr * total[n]
    return step


def test_the_fix_passes_and_all_three_fixes_are_needed():
    check_passes(check_meta_step, _fixed_meta_step)
    check_passes(check_meta_step, _snippet_variant(True, True, True))
    for fixes in [(False, True, True), (True, True, False), (False, True, False)]:
        check_fails(check_meta_step, _snippet_variant(*fixes), "first-order MAML")
    for fixes in [(True, False, True), (False, False, False), (True, False, False)]:
        check_fails(check_meta_step, _snippet_variant(*fixes), "support set")
    check_fails(check_meta_step, snippet_meta_step, "support set")


def test_meta_step_check_recognises_other_mistakes():
    check_fails(check_meta_step, lambda *a: None, "did not change")
    check_fails(check_meta_step, overwriting_meta_step, "differs from MAML's")

    def summed(net, episode, inner_lr, outer_lr):  # the tasks' meta-gradients summed, not averaged
        _fixed_meta_step(net, episode, inner_lr, outer_lr * episode.num_tasks)

    check_fails(check_meta_step, summed, "number of tasks")

    def not_implemented(*a):
        raise NotImplementedError

    with pytest.raises(CheckFailed, match="NotImplementedError"):
        check_meta_step(not_implemented, strict=True)


def test_not_strict_prints_not_yet(capsys):
    assert check_meta_step(snippet_meta_step) is None
    assert capsys.readouterr().out.startswith("Not yet:")


def test_overwriting_step_changes_the_weights_without_an_outer_step():
    net, _, (sx, sy, qx, qy) = meta_gradient_case()
    episode = Episode(sx[None], sy[None], qx[None], qy[None])
    before = [p.detach().clone() for p in net.parameters()]
    overwriting_meta_step(net, episode, inner_lr=0.1, outer_lr=0.0)  # no outer step at all ...
    assert any(not torch.equal(a, b) for a, b in zip(net.parameters(), before))  # ... and yet the weights moved


def test_pretrained_baseline_learns_the_average_and_adapts_poorly():
    net = pretrain_regressor(steps=2000)
    x = torch.linspace(-5, 5, 101)[:, None]
    with torch.no_grad():
        assert float((net(x)[:, 0] - average_sine(x[:, 0])).abs().max()) < 0.8   # near -1.6 cos x, not near 0
    tasks = eval_tasks(100, seed=0)
    before = adapted_mse(net, tasks, steps=0, lr=0.01).mean()
    after = adapted_mse(net, tasks, steps=10, lr=0.01).mean()
    assert float(after) < float(before)  # fine-tuning helps a little ...
    assert float(after) > 1.5  # ... but a network fit to all tasks at once stays far from each one


# ----------------------------------------------------------------------------- derive: the transposed Jacobian


def test_quadratic_meta_gradient_check():
    check_passes(check_quadratic_meta_gradient, _quadratic_meta_gradient)

    def autograd_answer(theta, A, a, B, b, P, alpha):  # any correct method passes, not one implementation
        t = theta.clone().requires_grad_(True)
        adapted = t - alpha * P @ A @ (t - a)
        return torch.autograd.grad(0.5 * (adapted - b) @ B @ (adapted - b), t)[0]

    check_passes(check_quadratic_meta_gradient, autograd_answer)

    def no_transpose(theta, A, a, B, b, P, alpha):
        adapted = theta - alpha * P @ A @ (theta - a)
        return (torch.eye(len(theta), dtype=theta.dtype) - alpha * P @ A) @ B @ (adapted - b)

    check_fails(check_quadratic_meta_gradient, no_transpose, "transpose")
    check_fails(check_quadratic_meta_gradient,
                lambda theta, A, a, B, b, P, alpha: B @ (theta - alpha * P @ A @ (theta - a) - b), "first-order")
    check_fails(check_quadratic_meta_gradient, lambda theta, A, a, B, b, P, alpha: B @ (theta - b), "without the inner")
    check_fails(check_quadratic_meta_gradient, lambda *a: None, "returned None")


# ----------------------------------------------------------------------------- predictions


def test_first_order_prediction_check():
    errors = {0.001: 0.02, 0.01: 0.2, 0.03: 0.6}
    check_passes(check_first_order_prediction, "small", errors)
    check_passes(check_first_order_prediction, " Small", errors)
    with pytest.raises(CheckFailed, match="how does its size scale"):
        check_first_order_prediction("large", errors, strict=True)
    with pytest.raises(CheckFailed, match="set your prediction"):
        check_first_order_prediction(None, errors, strict=True)
    with pytest.raises(CheckFailed, match="must be one of"):
        check_first_order_prediction(0.01, errors, strict=True)


def test_zero_head_prediction_check():
    check_passes(check_zero_head_prediction, 0, 0.0)
    with pytest.raises(CheckFailed, match="gradient of the loss with respect to the features"):
        check_zero_head_prediction(2.0, 0.0, strict=True)
    with pytest.raises(CheckFailed, match="set predicted_gap"):
        check_zero_head_prediction(None, 0.0, strict=True)


def test_one_step_from_a_zero_head_adapts_the_head_only():
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    maml = MAML(net, ways=3, inner_lr=0.5, zero_head=True, test_steps=1, meta_sgd=True)
    x, y = torch.randn(1, 6, 4), torch.arange(3).repeat(2)[None]
    full = maml.adapted_params(x, y)
    with head_only(maml):
        assert maml.trainable_names() == ["2.weight", "2.bias"]
        head = maml.adapted_params(x, y)
    assert not maml.anil  # restored
    assert all(torch.equal(full[n], head[n]) for n in full)
    full3, head3 = maml.adapted_params(x, y, steps=3), None
    with head_only(maml):
        head3 = maml.adapted_params(x, y, steps=3)
    assert not torch.equal(full3["0.weight"], head3["0.weight"])  # from the second step on, the body moves


def test_head_only_on_a_regressor():
    maml = MAML(MLP(1, (8, 8), 1), loss="mse", inner_lr=0.01)
    with head_only(maml):
        assert maml.trainable_names() == ["net.4.weight", "net.4.bias"]
    assert len(maml.trainable_names()) == 6


# ----------------------------------------------------------------------------- zero head and Proto-MAML


def _small_classifiers():
    """A zero-head MAML and a Proto-MAML on the same small network, and grouped images (6 classes x 6)."""
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Tanh())
    zero = MAML(torch.nn.Sequential(body, torch.nn.Linear(8, 3)), ways=3, inner_lr=0.3, zero_head=True, test_steps=1)
    proto = ml.ProtoMAML(torch.nn.Sequential(body, torch.nn.Linear(8, 3)), ways=3, inner_lr=0.3, test_steps=1)
    g = torch.Generator().manual_seed(1)
    centres = 2 * torch.randn(6, 1, 1, 4, 4, generator=g)
    images = centres + 0.5 * torch.randn(6, 6, 1, 4, 4, generator=g)
    return {"zero head": zero, "Proto-MAML": proto}, images


def test_adapting_steps_sets_and_restores_the_test_steps():
    methods, _ = _small_classifiers()
    m = methods["Proto-MAML"]
    with adapting_steps(m, 0):
        assert m.test_steps == 0
    assert m.test_steps == 1
    with pytest.raises(RuntimeError), adapting_steps(m, 4):
        raise RuntimeError
    assert m.test_steps == 1  # restored after an error too
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="steps"), adapting_steps(m, bad):
            pass


def test_accuracy_by_steps_uses_the_shared_evaluate_on_the_same_episodes():
    methods, images = _small_classifiers()
    results = accuracy_by_steps(methods, images, steps=(0, 1), ways=3, shots=1, queries=2, episodes=6, seed=3)
    assert set(results) == set(methods) and all(set(r) == {0, 1} for r in results.values())
    # a zero head scores every class 0 before any step: argmax picks the first class, exactly chance
    assert torch.allclose(results["zero head"][0].accuracies, torch.full((6,), 1 / 3, dtype=torch.float64))
    # the same call to the package's evaluate (same seed, same episodes) gives the same numbers
    with adapting_steps(methods["Proto-MAML"], 1):
        again = ml.evaluate(methods["Proto-MAML"], images, ways=3, shots=1, queries=2, episodes=6, seed=3)
    assert torch.equal(again.accuracies, results["Proto-MAML"][1].accuracies)
    assert methods["Proto-MAML"].test_steps == 1
    ax = plot_accuracy_by_steps(results)
    assert len(ax.patches) == 4
    import matplotlib.pyplot as plt

    plt.close("all")


def test_proto_maml_at_zero_steps_is_protonet_on_the_same_features():
    methods, images = _small_classifiers()
    proto = methods["Proto-MAML"]
    sx, sy, qx = images[:3, 0], torch.arange(3), images[:3, 1:].flatten(0, 1)
    start = proto.adapted_params(sx[None], sy[None], steps=0)
    with torch.no_grad():
        prototypes = proto.net[0](sx)  # one support example per class: the prototypes are its features
    w, b = _proto_head(prototypes)
    assert torch.allclose(start["1.weight"][0], w) and torch.allclose(start["1.bias"][0], b)
    with torch.no_grad():
        scores = proto.forward_with(start, qx[None])[0]
        phi = proto.net[0](qx)
        protonet = -((phi[:, None] - prototypes[None]) ** 2).sum(-1)
    assert torch.allclose(scores.softmax(-1), protonet.softmax(-1), atol=1e-6)


def test_proto_head_check():
    assert "2 c_k" in check_passes(check_proto_head, _proto_head)
    # any head that differs only by a shift common to all classes is the same classifier
    check_passes(check_proto_head, lambda c: (2 * c + 1.0, -(c * c).sum(-1) + 3.0))
    check_fails(check_proto_head, lambda c: (-2 * c, (c * c).sum(-1)), "farthest")
    check_fails(check_proto_head, lambda c: (c, -0.5 * (c * c).sum(-1)), "half", "temperature")
    check_fails(check_proto_head, lambda c: (2 * c, torch.zeros(len(c), dtype=c.dtype)), "Hint", "bias")
    check_fails(check_proto_head, lambda c: (2 * c, -c.norm(dim=-1)), "Hint", "differ by up to")
    check_fails(check_proto_head, lambda c: None, "returned None")
    check_fails(check_proto_head, lambda c: 2 * c, "pair")
    check_fails(check_proto_head, lambda c: (2 * c.T, -(c * c).sum(-1)), "shape")
    c, phi = proto_head_case(0)
    assert c.norm(dim=-1).max() > 5 * c.norm(dim=-1).min()  # lengths differ, so the bias matters
