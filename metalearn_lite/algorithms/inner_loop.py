"""The functional inner loop that MAML, Meta-SGD, ANIL and Reptile share (built on ``torch.func``).

A network's weights are a dict ``params = {name: tensor}``, and ``functional_call(net, params, x)``
runs the network with them, so adapted weights are ordinary tensors in the autograd graph: no
module is copied or patched per task.  One inner step on a task's support set ``S`` is

    ``theta_{j+1} = theta_j - alpha * grad_theta L_S(theta_j)``                       (1)

for the names in ``trainable`` (all of them, or ANIL's head); ``alpha`` is a number, or one tensor
per parameter (Meta-SGD's learned rates).  With ``first_order=False`` the gradient in (1) is itself
differentiable (``create_graph=True``), so the outer loss ``L_Q(theta_k)`` on the query set can be
differentiated through the whole inner loop, Hessian-vector products included.

A meta-batch of ``T`` tasks runs either

* ``batching="vmap"``: one call of ``torch.func.vmap`` over the tasks, with ``torch.func.grad``
  for (1); fastest when each task is small (the sinusoid MLP) or on a GPU;
* ``batching="loop"``: the tasks one after another with ``torch.autograd.grad``; on a CPU a
  Conv-4 task is already large enough to keep the cores busy, and ``vmap`` costs time and memory.
  This is also the reference the tests compare ``vmap`` against;
* ``batching="threads"``: the loop, its tasks shared among worker threads, one core each
  (:mod:`~metalearn_lite.algorithms.task_threads`); in a worker, :func:`functional_call` runs the
  worker's own copy of the network.

``benchmarks/maml_step.py`` measures both.  Second-order gradients through
``torch.nn.functional.batch_norm`` under ``vmap`` are wrong (relative errors of 1e-2 and more
against finite differences), so :func:`check_batching` refuses that combination; Conv-4's
``norm="batch"`` (:class:`~metalearn_lite.models.BatchStatNorm2d`, written from mean/var ops) is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from .task_threads import run_tasks, worker_net

Params = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``start(params, support_x, support_y) -> params``: one task's starting weights from the shared ones and its
#: support set (Proto-MAML's head from the support prototypes); ``None``: every task starts from ``params``
StartFn = Callable[[Params, torch.Tensor, torch.Tensor], Params]
Rate = float | dict[str, torch.Tensor]

BATCHING = ("vmap", "loop", "threads")


def functional_call(net: nn.Module, params: Params, args: tuple) -> Any:
    """``torch.func.functional_call(net, params, args)``, on the calling worker's copy of ``net`` when the tasks
    run on threads (:func:`~metalearn_lite.algorithms.task_threads.worker_net`; elsewhere ``net`` itself)."""
    return torch.func.functional_call(worker_net(net), params, args)


def params_of(net: nn.Module, detach: bool = False) -> Params:
    """``{name: parameter}`` of ``net``; ``detach=True`` gives fresh leaves that require grad
    (test-time adaptation, where no gradient should reach the stored weights)."""
    if detach:
        return {n: p.detach().requires_grad_(True) for n, p in net.named_parameters()}
    return dict(net.named_parameters())


def _rate(lr: Rate, name: str) -> torch.Tensor | float:
    return lr[name] if isinstance(lr, dict) else lr


def adapted_params(
    net: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    steps: int,
    lr: Rate,
    first_order: bool = False,
    trainable: Iterable[str] | None = None,
    functional: bool = False,
) -> tuple[Params, torch.Tensor]:
    """``steps`` gradient steps (1) on one task's data ``x`` ``(S, ...)``, ``y`` ``(S, ...)``.

    Args:
        net: the network whose ``forward`` is run with ``params``.
        params: the starting weights (all of ``net``'s parameters).
        loss_fn: ``loss_fn(net_output, y) -> scalar``.
        steps: inner steps (0 returns ``params``).
        lr: inner learning rate, a float or ``{name: tensor}`` shaped like the parameters (Meta-SGD).
        first_order: drop the second-order terms (the inner gradients are constants to the outer loss).
        trainable: the names adapted (default all); the others pass through unchanged (ANIL).
        functional: use ``torch.func.grad`` (required under ``vmap``) instead of ``torch.autograd.grad``.

    Returns:
        the adapted weights and the support losses ``(steps,)`` before each step (detached).
    """
    names = list(params) if trainable is None else list(trainable)
    losses = []
    for _ in range(steps):
        if functional:
            fixed = {n: p for n, p in params.items() if n not in names}

            def support_loss(sub: Params, fixed: Params = fixed) -> torch.Tensor:
                return loss_fn(functional_call(net, {**fixed, **sub}, (x,)), y)

            grads, loss = torch.func.grad_and_value(support_loss)({n: params[n] for n in names})
            if first_order:
                grads = {n: g.detach() for n, g in grads.items()}
        else:
            loss = loss_fn(functional_call(net, params, (x,)), y)
            g = torch.autograd.grad(loss, [params[n] for n in names], create_graph=not first_order)
            grads = dict(zip(names, g))
        params = {**params, **{n: params[n] - _rate(lr, n) * grads[n] for n in names}}
        losses.append(loss.detach())
    return params, torch.stack(losses) if losses else x.new_zeros(0)


def _task(value: Any, i: int) -> Any:
    """Task ``i`` of a batched tensor, or of each tensor of a ``{name: tensor}`` dict."""
    return {k: v[i] for k, v in value.items()} if isinstance(value, dict) else value[i]


def _stack(outs: list[Any]) -> Any:
    """Stack per-task results (tensors, or tuples / dicts of them) along a new first dimension."""
    first = outs[0]
    if isinstance(first, dict):
        return {k: _stack([o[k] for o in outs]) for k in first}
    if isinstance(first, tuple):
        return tuple(_stack(list(z)) for z in zip(*outs))
    return torch.stack(outs)


def over_tasks(one: Callable[..., Any], batching: str, *tasks: Any) -> Any:
    """``one(*task_i, functional=...)`` for every task of a meta-batch, stacked along the task dimension.

    ``tasks`` are tensors ``(T, ...)`` or ``{name: (T, ...)}`` dicts.  ``batching="vmap"`` runs one
    ``torch.func.vmap`` call (``functional=True``: ``one`` must use ``torch.func`` transforms); ``"loop"``
    runs the tasks one after another (``functional=False``), ``"threads"`` shares them among worker threads.
    """
    if batching == "vmap":
        return torch.func.vmap(lambda *a: one(*a, functional=True))(*tasks)
    count = len(next(iter(tasks[0].values())) if isinstance(tasks[0], dict) else tasks[0])
    if batching == "threads":
        return _stack(run_tasks(count, lambda i: one(*(_task(t, i) for t in tasks), functional=False)))
    return _stack([one(*(_task(t, i) for t in tasks), functional=False) for i in range(count)])


def check_batching(net: nn.Module, batching: str, first_order: bool) -> None:
    """``ValueError`` for an unknown strategy, or for second-order ``vmap`` through ``F.batch_norm``."""
    if batching not in BATCHING:
        raise ValueError(f"batching must be one of {list(BATCHING)} (or 'auto' on a method); got {batching!r}")
    if batching == "vmap" and not first_order:
        bad = [type(m).__name__ for m in net.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
        if bad:
            raise ValueError(
                f"second-order meta-gradients under vmap through torch.nn.functional.batch_norm ({bad[0]}) are "
                "wrong (relative errors of 1e-2 and more against finite differences); use batching='loop', "
                "first_order=True, or a norm written from mean/var ops (Conv4(norm='batch'))"
            )


def task_outputs(
    net: nn.Module,
    params: Params,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    query_y: torch.Tensor,
    loss_fn: LossFn,
    steps: int,
    lr: Rate,
    first_order: bool = False,
    trainable: Iterable[str] | None = None,
    batching: str = "loop",
    start: StartFn | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adapt on each task's support set and score its queries, for a meta-batch.

    Shapes: support ``(T, S, ...)``, query ``(T, Q, ...)``.  Returns the query losses ``(T,)``,
    the query outputs ``(T, Q, ...)`` and the inner support losses ``(T, steps)``.  The query losses
    are differentiable with respect to ``params`` (and ``lr`` tensors) through the inner loop
    (and through ``start``, which builds each task's starting weights: :data:`StartFn`).
    """
    check_batching(net, batching, first_order)
    trainable = None if trainable is None else list(trainable)

    def one(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor, functional: bool):
        first = params if start is None else start(params, sx, sy)
        adapted, inner = adapted_params(net, first, sx, sy, loss_fn, steps, lr, first_order, trainable, functional)
        out = functional_call(net, adapted, (qx,))
        return loss_fn(out, qy), out, inner

    return over_tasks(one, batching, support_x, support_y, query_x, query_y)


def adapted_params_tasks(
    net: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    steps: int,
    lr: Rate,
    first_order: bool = True,
    trainable: Iterable[str] | None = None,
    batching: str = "loop",
    start: StartFn | None = None,
) -> tuple[Params, torch.Tensor]:
    """Adapted weights of every task in a meta-batch ``x`` ``(T, S, ...)``: ``{name: (T, *shape)}``
    and the inner losses ``(T, steps)`` (Reptile's inner loop, and test-time adaptation)."""
    check_batching(net, batching, first_order)
    trainable = None if trainable is None else list(trainable)

    def one(xi: torch.Tensor, yi: torch.Tensor, functional: bool):
        first = params if start is None else start(params, xi, yi)
        return adapted_params(net, first, xi, yi, loss_fn, steps, lr, first_order, trainable, functional)

    return over_tasks(one, batching, x, y)


def forward_tasks(net: nn.Module, params: Params, x: torch.Tensor, batching: str = "loop") -> torch.Tensor:
    """``net`` with per-task weights ``{name: (T, *shape)}`` on inputs ``(T, B, ...)`` -> ``(T, B, ...)``."""
    return over_tasks(lambda p, xi, functional: functional_call(net, p, (xi,)), batching, params, x)


def check_finite_inner(inner_losses: torch.Tensor, lr: Rate, query_losses: torch.Tensor | None = None) -> None:
    """``FloatingPointError`` naming the first inner step whose support loss is not finite.

    ``inner_losses`` ``(T, steps)`` are the losses before each step; a non-finite query loss after
    finite support losses means the last step diverged.
    """
    steps = inner_losses.shape[-1]
    what = "learned per-parameter rates" if isinstance(lr, dict) else f"inner_lr={lr:g}"
    bad = ~torch.isfinite(inner_losses.reshape(-1, steps)).all(0) if steps else torch.zeros(0, dtype=torch.bool)
    if bad.any():
        step = int(bad.nonzero()[0]) + 1
        if step == 1:
            raise FloatingPointError(
                "the support loss is not finite before the first inner step: the meta-parameters themselves "
                "diverged; lower the outer learning rate (--lr)"
            )
        raise FloatingPointError(
            f"the inner loop diverged: the support loss became non-finite after inner step {step - 1} of {steps} "
            f"({what}); use a smaller inner learning rate (--inner-lr) or fewer inner steps"
        )
    if query_losses is not None and not bool(torch.isfinite(query_losses.detach()).all()):
        raise FloatingPointError(
            f"the inner loop diverged: the query loss is non-finite after the last inner step ({steps}, {what}); "
            "use a smaller inner learning rate (--inner-lr) or fewer inner steps"
        )
    check_growth(inner_losses, what, query_losses)


#: an adapted loss this many times the loss before adaptation (and above 1e6) means the inner loop diverged
GROWTH = 1e6


def check_growth(inner_losses: torch.Tensor, what: str, query_losses: torch.Tensor | None = None) -> None:
    """``FloatingPointError`` when adaptation multiplied a task's loss by more than :data:`GROWTH` (finite but
    exploding: gradient steps far too long), comparing the support loss before the first step with the query
    loss after the last one (or, without it, the support loss before the last step)."""
    if inner_losses.numel() == 0:
        return
    before = inner_losses.detach().reshape(-1, inner_losses.shape[-1])[:, 0]
    after = (query_losses.detach().reshape(-1) if query_losses is not None
             else inner_losses.detach().reshape(-1, inner_losses.shape[-1])[:, -1])
    if after.shape != before.shape:
        return
    grew = (after > GROWTH * before.clamp_min(1.0)) & (after > GROWTH)
    if bool(grew.any()):
        i = int(grew.nonzero()[0])
        raise FloatingPointError(
            f"the inner loop diverged: adaptation raised a task's loss from {float(before[i]):.3g} to "
            f"{float(after[i]):.3g} ({what}); use a smaller inner learning rate inner_lr (--inner-lr) or fewer "
            "inner steps"
        )
