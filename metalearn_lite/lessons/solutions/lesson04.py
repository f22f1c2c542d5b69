"""Worked solutions to lesson 04's exercises (try them first: ``show_solution("04", name)`` prints one)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ...algorithms.maml import MAML
from ...datasets.sinusoid import SinusoidTasks
from ...models import MLP
from ..exercises import Exercise
from ..lesson04 import (
    check_first_order_prediction,
    check_meta_step,
    check_proto_head,
    check_quadratic_meta_gradient,
    check_zero_head_prediction,
)


def _fixed_meta_step(net, episode, inner_lr, outer_lr):
    """The snippet with its three mistakes fixed (each marked FIX)."""
    params = dict(net.named_parameters())
    meta_grads = {n: torch.zeros_like(p) for n, p in params.items()}
    query_losses = []
    for i in range(episode.num_tasks):
        sx, sy = episode.support_x[i], episode.support_y[i]
        qx, qy = episode.query_x[i], episode.query_y[i]
        support_loss = F.mse_loss(functional_call(net, params, (sx,)), sy)
        # FIX 1: create_graph=True keeps the inner gradient differentiable, so that the outer gradient
        # contains the Hessian term (I - inner_lr H_S); without it the step is first-order MAML.
        grads = torch.autograd.grad(support_loss, list(params.values()), create_graph=True)
        adapted = {n: p - inner_lr * g for (n, p), g in zip(params.items(), grads)}
        # FIX 2: the outer loss scores the adapted weights on the QUERY set, not on the support set they were
        # fitted to (the snippet computed the query loss only for logging).
        outer_loss = F.mse_loss(functional_call(net, adapted, (qx,)), qy)
        # FIX 3: differentiate with respect to the initial weights theta (the parameters), not the adapted ones:
        # the gradient with respect to theta' is the gradient at the adapted point, first-order MAML again.
        task_grads = torch.autograd.grad(outer_loss, list(params.values()))
        for n, g in zip(params, task_grads):
            meta_grads[n] += g / episode.num_tasks
        query_losses.append(outer_loss.item())
    with torch.no_grad():
        for n, p in params.items():
            p -= outer_lr * meta_grads[n]
    return sum(query_losses) / len(query_losses)


def fix_the_snippet():
    return (_fixed_meta_step,)


def _quadratic_meta_gradient(theta, A, a, B, b, P, alpha):
    """theta' = theta - alpha P A (theta - a); its Jacobian is J = I - alpha P A; the gradient of L_Q(theta')
    with respect to theta is J^T grad L_Q(theta') = (I - alpha A P^T) B (theta' - b)  (A, B symmetric)."""
    adapted = theta - alpha * P @ (A @ (theta - a))
    jacobian = torch.eye(len(theta), dtype=theta.dtype) - alpha * P @ A
    return jacobian.T @ (B @ (adapted - b))


def derive_transpose():
    return (_quadratic_meta_gradient,)


def _first_order_errors(rates=(0.001, 0.03), seed=7):
    """|g_FO - g| / |g| for the 40-40 sinusoid MLP at a random initialisation, one inner step, 10 tasks."""
    tasks = SinusoidTasks(seed=seed).sample(10, 10, 10)
    torch.manual_seed(0)
    state = MLP(1, (40, 40), 1).state_dict()
    errors = {}
    for lr in rates:
        grads = []
        for first_order in (False, True):
            maml = MAML(MLP(1, (40, 40), 1), loss="mse", inner_lr=lr, inner_steps=1, first_order=first_order,
                        batching="loop")
            maml.net.load_state_dict(state)
            loss, _ = maml.loss(tasks)
            grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(maml.net.parameters()))]))
        errors[lr] = float((grads[1] - grads[0]).norm() / grads[0].norm())
    return errors


def predict_first_order():
    # The dropped term is alpha H_S grad L_Q(theta'): it vanishes as alpha -> 0.
    return "small", _first_order_errors()


def predict_zero_head():
    # Logits W phi + b with W = 0: the loss's gradient with respect to phi is W^T (p - y) = 0, so the body's
    # weights get a zero gradient on the first inner step; one step of full adaptation changes the head only,
    # exactly as ANIL does, and the accuracies are identical.  The check compares with the lesson's
    # measurement; here we measure the same thing on a small zero-head classifier.
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    full = MAML(net, ways=3, inner_lr=0.5, zero_head=True, test_steps=1)
    x = torch.randn(1, 9, 6)
    y = torch.arange(3).repeat(3)[None]
    adapted = full.adapted_params(x, y)
    full.anil = True
    head = full.adapted_params(x, y)
    queries, labels = torch.randn(1, 30, 6), torch.randint(0, 3, (30,))
    accuracy = [100 * float((full.forward_with(p, queries)[0].argmax(-1) == labels).float().mean())
                for p in (adapted, head)]
    return 0.0, accuracy[0] - accuracy[1]


def _proto_head(prototypes):
    """-|phi - c_k|^2 = 2 c_k . phi - |c_k|^2 - |phi|^2.  The last term is the same for every class k, and adding
    the same number to every logit leaves the softmax unchanged, so drop it: what is left is linear in phi, with
    weight 2 c_k and bias -|c_k|^2."""
    return 2 * prototypes, -(prototypes * prototypes).sum(-1)


def derive_proto_head():
    return (_proto_head,)


EXERCISES = [
    Exercise("fix_the_snippet", "implement", check_meta_step, fix_the_snippet),
    Exercise("derive_transpose", "derive", check_quadratic_meta_gradient, derive_transpose),
    Exercise("predict_first_order", "predict", check_first_order_prediction, predict_first_order),
    Exercise("predict_zero_head", "predict", check_zero_head_prediction, predict_zero_head),
    Exercise("derive_proto_head", "derive", check_proto_head, derive_proto_head),
]
