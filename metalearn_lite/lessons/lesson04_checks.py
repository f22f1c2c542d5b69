"""Checks for lesson 04's exercises: a correct MAML meta-gradient, and the Reptile update.

Each check runs the reader's function on small cases whose answers the package computes, and says
*which* mistake it sees: the gradient taken at the adapted weights (the copied snippet's bug), the
Hessian term dropped, no adaptation at all, a wrong sign or a sum instead of a mean.  The pattern is
that of :mod:`metalearn_lite.lessons.exercises`: ``check_x(fn)`` prints "Correct! ..." or
"Not yet: ..." and returns a bool; ``strict=True`` raises :class:`CheckFailed` instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..algorithms.inner_loop import adapt
from ..datasets.sinusoid import SinusoidTasks
from ..models import MLP
from .exercises import CheckFailed, report

__all__ = ["CheckFailed", "check_meta_gradient", "check_reptile_update", "meta_gradient_case"]

MetaGradFn = Callable[..., dict[str, torch.Tensor]]


def meta_gradient_case(seed: int = 0) -> tuple[torch.nn.Module, dict[str, torch.Tensor], tuple[torch.Tensor, ...]]:
    """A small float64 MLP, its weights ``{name: tensor}`` and one sinusoid task ``(sx, sy, qx, qy)``."""
    torch.manual_seed(seed)
    net = MLP(1, (10, 10), 1).double()
    ep = SinusoidTasks(seed=seed + 1).sample(1, 5, 8)
    task = tuple(t[0].double() for t in (ep.support_x, ep.support_y, ep.query_x, ep.query_y))
    return net, {n: p.detach().clone() for n, p in net.named_parameters()}, task


def _grads_of(net, params, loss_of_params) -> dict[str, torch.Tensor]:
    leaves = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    g = torch.autograd.grad(loss_of_params(leaves), list(leaves.values()))
    return dict(zip(leaves, g))


def _references(net, params, task, lr) -> dict[str, dict[str, torch.Tensor]]:
    sx, sy, qx, qy = task

    def query_after(first_order: bool):
        def f(leaves):
            adapted, _ = adapt(net, leaves, sx, sy, F.mse_loss, 1, lr, first_order=first_order)
            return F.mse_loss(functional_call(net, adapted, (qx,)), qy)
        return f

    adapted, _ = adapt(net, {n: p.clone().requires_grad_(True) for n, p in params.items()}, sx, sy, F.mse_loss, 1, lr)
    adapted = {n: p.detach() for n, p in adapted.items()}
    return {
        "second": _grads_of(net, params, query_after(False)),
        "at_adapted": _grads_of(net, adapted, lambda p: F.mse_loss(functional_call(net, p, (qx,)), qy)),
        "no_adaptation": _grads_of(net, params, lambda p: F.mse_loss(functional_call(net, p, (qx,)), qy)),
    }


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float = 1e-6) -> bool:
    return all(torch.allclose(a[n].double(), b[n].double(), rtol=tol, atol=tol * 1e-2) for n in b)


def _meta_gradient(fn: MetaGradFn) -> str:
    for seed, lr in ((0, 0.1), (3, 0.3)):
        net, params, task = meta_gradient_case(seed)
        before = {n: p.clone() for n, p in params.items()}
        weights_before = {n: p.detach().clone() for n, p in net.named_parameters()}
        got = fn(net, {n: p.clone() for n, p in params.items()}, *task, lr)
        if got is None:
            raise CheckFailed("your function returned None: return a dict {name: meta-gradient}")
        if not isinstance(got, dict) or set(got) != set(params):
            raise CheckFailed(f"return a dict with one gradient per parameter name {sorted(params)}; got "
                              f"{sorted(got) if isinstance(got, dict) else type(got).__name__}")
        for n, g in got.items():
            if not isinstance(g, torch.Tensor) or g.shape != params[n].shape:
                raise CheckFailed(f"the gradient for {n!r} must be a tensor of shape {tuple(params[n].shape)}")
        if any(not torch.equal(p.detach(), weights_before[n]) for n, p in net.named_parameters()):
            raise CheckFailed("your function changed the network's own weights: that is the snippet's bug. Keep the "
                              "initial weights untouched and compute the adapted ones as new tensors "
                              "(theta' = theta - lr * grad), then run the network with functional_call")
        ref = _references(net, before, task, lr)
        if _same(got, ref["second"]):
            continue
        if _same(got, ref["at_adapted"]):  # equal to ref["first"]: FOMAML's gradient is taken at theta'
            raise CheckFailed("this is the gradient at the adapted weights, grad_{theta'} L_Q(theta'), which is what "
                              "the copied snippet computes, and also first-order MAML's approximation. MAML "
                              "differentiates with respect to the initial weights theta *through* the inner step: "
                              "build the inner gradient with torch.autograd.grad(..., create_graph=True) so that the "
                              "(I - lr H) factor appears")
        if _same(got, ref["no_adaptation"]):
            raise CheckFailed("this is the query-loss gradient at theta without any inner step: adapt on the "
                              "support set first")
        err = max(float((got[n] - ref["second"][n]).abs().max()) for n in params)
        raise CheckFailed(f"the meta-gradient differs from MAML's by up to {err:.3g}. Hint: one inner step on "
                          "(sx, sy) with create_graph=True, the query loss at the adapted weights, and the "
                          "gradient of that loss with respect to the initial weights")
    return "this is MAML's second-order meta-gradient, (I - lr H_S) grad L_Q(theta'), the same as the package's."


def check_meta_gradient(fn: MetaGradFn, strict: bool = False) -> None:
    """``fn(net, params, sx, sy, qx, qy, lr) -> {name: dL_Q(theta')/dtheta}`` for one inner step of SGD."""
    return report(_meta_gradient, fn, strict)


def _reptile_update(fn: Callable[[dict, dict, float], dict]) -> str:
    theta = {"w": torch.tensor([1.0, -2.0]), "b": torch.tensor([0.5])}
    phis = {"w": torch.tensor([[2.0, 0.0], [4.0, -1.0], [0.0, -3.0]]), "b": torch.tensor([[1.5], [0.5], [2.5]])}
    eps = 0.25
    got = fn({k: v.clone() for k, v in theta.items()}, {k: v.clone() for k, v in phis.items()}, eps)
    if got is None:
        raise CheckFailed("your function returned None: return the new initialisation {name: tensor}")
    if not isinstance(got, dict) or set(got) != set(theta):
        raise CheckFailed(f"return a dict with the keys {sorted(theta)}")
    want = {k: theta[k] + eps * (phis[k].mean(0) - theta[k]) for k in theta}

    def same(candidate):
        return all(torch.allclose(got[k].float(), candidate[k], atol=1e-6) for k in theta)

    if same(want):
        return "theta + eps * (mean_i phi_i - theta): the initialisation moves toward the adapted weights."
    if same({k: theta[k] - eps * (phis[k].mean(0) - theta[k]) for k in theta}):
        raise CheckFailed("the sign is reversed: Reptile moves theta *toward* the adapted weights phi_i")
    if same({k: theta[k] + eps * (phis[k].sum(0) - theta[k]) for k in theta}) or same(
            {k: theta[k] + eps * (phis[k] - theta[k]).sum(0) for k in theta}):
        raise CheckFailed("you summed over the tasks; average them (the step should not grow with the meta-batch)")
    if same({k: phis[k].mean(0) for k in theta}):
        raise CheckFailed("you replaced theta by the mean of the phi_i: scale the move by eps")
    raise CheckFailed("not the Reptile update. Hint: phis[name] has shape (T, *shape); "
                      "new = theta + eps * (phis.mean(0) - theta)")


def check_reptile_update(fn: Callable[[dict, dict, float], dict], strict: bool = False) -> None:
    """``fn(theta, phis, eps) -> new theta``: ``theta`` ``{name: tensor}``, ``phis`` ``{name: (T, *shape)}``."""
    return report(_reptile_update, fn, strict)


def solution_meta_gradient(net, params, sx, sy, qx, qy, lr) -> dict[str, torch.Tensor]:
    """A reference answer (used by the tests)."""
    theta = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    support = F.mse_loss(functional_call(net, theta, (sx,)), sy)
    grads = torch.autograd.grad(support, list(theta.values()), create_graph=True)
    adapted = {n: p - lr * g for (n, p), g in zip(theta.items(), grads)}
    query = F.mse_loss(functional_call(net, adapted, (qx,)), qy)
    return dict(zip(theta, torch.autograd.grad(query, list(theta.values()))))

