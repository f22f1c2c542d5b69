"""Lesson 04's exercise checks and the buggy snippet it dissects."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import check_passes
from torch.func import functional_call

from metalearn_lite.lessons.lesson04_checks import (
    CheckFailed,
    check_meta_gradient,
    check_reptile_update,
    meta_gradient_case,
    solution_meta_gradient,
)
from metalearn_lite.lessons.lesson04_pitfalls import buggy_maml_step
from metalearn_lite.recipes.sinusoid import adapted_mse, eval_tasks, pretrain_regressor

# ----------------------------------------------------------------------------- meta-gradient answers


def meta_gradient_func(net, params, sx, sy, qx, qy, lr):
    """The same answer written with torch.func.grad instead of autograd.grad."""

    def query_loss(theta):
        g = torch.func.grad(lambda p: F.mse_loss(functional_call(net, p, (sx,)), sy))(theta)
        adapted = {n: theta[n] - lr * g[n] for n in theta}
        return F.mse_loss(functional_call(net, adapted, (qx,)), qy)

    return torch.func.grad(query_loss)(params)


def copied_snippet(net, params, sx, sy, qx, qy, lr):
    """The bug: adapted weights written into the model, gradient at the adapted weights."""
    net.load_state_dict(params)
    grads = torch.autograd.grad(F.mse_loss(net(sx), sy), list(net.parameters()))
    with torch.no_grad():
        for p, g in zip(net.parameters(), grads):
            p -= lr * g
    out = torch.autograd.grad(F.mse_loss(net(qx), qy), list(net.parameters()))
    return {n: g for (n, _), g in zip(net.named_parameters(), out)}


def gradient_at_adapted(net, params, sx, sy, qx, qy, lr):
    """The bug without touching the model: the gradient taken at theta' instead of theta."""
    theta = {n: p.clone().requires_grad_(True) for n, p in params.items()}
    g = torch.autograd.grad(F.mse_loss(functional_call(net, theta, (sx,)), sy), list(theta.values()))
    adapted = {n: (p - lr * gi).detach().requires_grad_(True) for (n, p), gi in zip(theta.items(), g)}
    out = torch.autograd.grad(F.mse_loss(functional_call(net, adapted, (qx,)), qy), list(adapted.values()))
    return dict(zip(adapted, out))


def first_order(net, params, sx, sy, qx, qy, lr):
    theta = {n: p.clone().requires_grad_(True) for n, p in params.items()}
    g = torch.autograd.grad(F.mse_loss(functional_call(net, theta, (sx,)), sy), list(theta.values()))
    adapted = {n: p - lr * gi for (n, p), gi in zip(theta.items(), g)}
    out = torch.autograd.grad(F.mse_loss(functional_call(net, adapted, (qx,)), qy), list(theta.values()))
    return dict(zip(theta, out))


def no_adaptation(net, params, sx, sy, qx, qy, lr):
    theta = {n: p.clone().requires_grad_(True) for n, p in params.items()}
    out = torch.autograd.grad(F.mse_loss(functional_call(net, theta, (qx,)), qy), list(theta.values()))
    return dict(zip(theta, out))


@pytest.mark.parametrize("fn", [solution_meta_gradient, meta_gradient_func])
def test_right_meta_gradients_pass(fn):
    check_passes(check_meta_gradient, fn)


@pytest.mark.parametrize(
    "fn, message",
    [
        (copied_snippet, "changed the network's own weights"),
        (gradient_at_adapted, "gradient at the adapted weights"),
        (first_order, "first-order MAML's approximation"),
        (no_adaptation, "without any inner step"),
        (lambda *a: None, "returned None"),
        (lambda net, params, *a: {n: torch.zeros_like(p) for n, p in params.items()}, "differs from MAML's"),
    ],
)
def test_wrong_meta_gradients_fail_with_the_specific_hint(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_meta_gradient(fn, strict=True)


def test_not_strict_prints_not_yet(capsys):
    assert check_meta_gradient(first_order) is None
    assert "Not yet:" in capsys.readouterr().out


# ----------------------------------------------------------------------------- Reptile update


def test_reptile_update_checks():
    check_passes(check_reptile_update, lambda t, p, e: {k: t[k] + e * (p[k].mean(0) - t[k]) for k in t})
    wrong = {
        "sign is reversed": lambda t, p, e: {k: t[k] - e * (p[k].mean(0) - t[k]) for k in t},
        "summed over the tasks": lambda t, p, e: {k: t[k] + e * (p[k] - t[k]).sum(0) for k in t},
        "scale the move by eps": lambda t, p, e: {k: p[k].mean(0) for k in t},
        "not the Reptile update": lambda t, p, e: {k: t[k] for k in t},
    }
    for message, fn in wrong.items():
        with pytest.raises(CheckFailed, match=message):
            check_reptile_update(fn, strict=True)


# ----------------------------------------------------------------------------- the buggy snippet and the baseline


def test_buggy_step_overwrites_the_initialisation():
    net, params, (sx, sy, qx, qy) = meta_gradient_case()
    ep_like = type("E", (), {"num_tasks": 1, "support_x": sx[None], "support_y": sy[None],
                             "query_x": qx[None], "query_y": qy[None]})()
    before = [p.detach().clone() for p in net.parameters()]
    buggy_maml_step(net, ep_like, inner_lr=0.1, outer_lr=0.0)  # no outer step at all ...
    after = list(net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before))  # ... and yet the weights moved


def test_pretrained_baseline_learns_the_average_and_adapts_poorly():
    net = pretrain_regressor(steps=2000)
    tasks = eval_tasks(100, seed=0)
    before = adapted_mse(net, tasks, steps=0, lr=0.01).mean()
    after = adapted_mse(net, tasks, steps=10, lr=0.01).mean()
    assert float(after) < float(before)  # fine-tuning helps a little ...
    assert float(after) > 1.5  # ... but a network fit to all tasks at once stays far from each one
