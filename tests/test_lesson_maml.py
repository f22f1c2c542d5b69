"""Lesson 04's module: the closed-form average of the sine waves, the bug-hunt snippet, and the exercise
checks (right answers pass, typical wrong answers fail with a hint that names the mistake)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import check_fails, check_passes
from torch.func import functional_call

from metalearn_lite import MAML, MLP
from metalearn_lite.datasets.sinusoid import SinusoidTasks
from metalearn_lite.episodes import Episode
from metalearn_lite.lessons.lesson04 import (
    CheckFailed,
    average_sine,
    check_first_order_prediction,
    check_meta_step,
    check_quadratic_meta_gradient,
    check_zero_head_prediction,
    head_only,
    meta_gradient_case,
    overwriting_meta_step,
    snippet_meta_step,
)
from metalearn_lite.lessons.solutions.lesson04 import _fixed_meta_step, _quadratic_meta_gradient
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
    full = maml.adapted(x, y)
    with head_only(maml):
        assert maml.trainable_names() == ["2.weight", "2.bias"]
        head = maml.adapted(x, y)
    assert not maml.anil  # restored
    assert all(torch.equal(full[n], head[n]) for n in full)
    full3, head3 = maml.adapted(x, y, steps=3), None
    with head_only(maml):
        head3 = maml.adapted(x, y, steps=3)
    assert not torch.equal(full3["0.weight"], head3["0.weight"])  # from the second step on, the body moves


def test_head_only_on_a_regressor():
    maml = MAML(MLP(1, (8, 8), 1), loss="mse", inner_lr=0.01)
    with head_only(maml):
        assert maml.trainable_names() == ["net.4.weight", "net.4.bias"]
    assert len(maml.trainable_names()) == 6
