"""A widely copied MAML snippet that is WRONG, kept so that lesson 04 can run it (never use it for real work).

:func:`buggy_maml_step` is the shape of a MAML step found in many blog posts: for each task it takes
an inner step by writing the adapted weights *into the model* (``p.data -= lr * grad``), computes
the query loss, and takes "the meta-gradient" with ``autograd.grad(query_loss, model.parameters())``.
Two things go wrong:

1. After the assignment the model's parameters *are* the adapted weights ``theta'``, so the
   gradient is ``grad_{theta'} L_Q(theta')``, the gradient at the adapted point, not
   ``grad_theta L_Q(theta - alpha grad L_S(theta))``, the derivative with respect to the
   initialisation: the ``(I - alpha H_S)`` factor is gone, and so is any link between the
   inner step and the outer update (the data assignment is invisible to autograd).
2. The outer update is then applied to the adapted weights, so the initial weights are lost:
   each "meta-step" is plain SGD on the support set followed by plain SGD on the query set, one
   task after another.  That is joint training on all tasks, i.e. the *pretrained* baseline,
   which for sinusoids learns the average function (close to 0) and adapts poorly.

The fix keeps the initial weights untouched and the adapted ones as functions of them
(:func:`metalearn_lite.algorithms.inner_loop.adapt`), and differentiates with respect to the initial ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..datasets.sinusoid import SinusoidTasks
from ..episodes import Episode
from ..models import MLP


def buggy_maml_step(net: torch.nn.Module, episode: Episode, inner_lr: float, outer_lr: float) -> float:
    """WRONG, for demonstration only: one "MAML" step as the copied snippet writes it (see the module docstring).

    Returns the mean query loss of the meta-batch.
    """
    losses = []
    for i in range(episode.num_tasks):
        support_loss = F.mse_loss(net(episode.support_x[i]), episode.support_y[i])
        grads = torch.autograd.grad(support_loss, list(net.parameters()))
        with torch.no_grad():
            for p, g in zip(net.parameters(), grads):
                p.data -= inner_lr * g  # BUG: the adapted weights overwrite the initial ones
        query_loss = F.mse_loss(net(episode.query_x[i]), episode.query_y[i])
        meta_grads = torch.autograd.grad(query_loss, list(net.parameters()))  # BUG: gradient at the adapted weights
        with torch.no_grad():
            for p, g in zip(net.parameters(), meta_grads):
                p.data -= outer_lr * g  # BUG: applied to the adapted weights
        losses.append(query_loss.item())
    return sum(losses) / len(losses)


def train_buggy_regressor(steps: int = 2000, tasks: int = 25, inner_lr: float = 0.01, outer_lr: float = 0.01,
                          seed: int = 0) -> MLP:
    """Train the sinusoid MLP with :func:`buggy_maml_step` (10 support and 10 query points per task)."""
    torch.manual_seed(seed)
    net = MLP()
    sampler = SinusoidTasks(seed=seed)
    for _ in range(steps):
        buggy_maml_step(net, sampler.sample(tasks, 10, 10), inner_lr, outer_lr)
    return net
