"""Reptile (Nichol, Achiam & Schulman, 2018).

For each task of the meta-batch, Reptile runs ``k`` plain SGD steps from the initialisation
``theta`` on all of the task's training examples (support and query), reaching ``phi_i``, and
moves the initialisation toward the adapted weights:

    ``theta <- theta + epsilon * (1/T sum_i phi_i - theta)``.

Nothing is differentiated through the inner loop.  To reuse the one trainer (which minimises a
loss with Adam) the update is written as the gradient of a surrogate, with ``phi`` held constant:

    ``R(theta) = 1/2 || theta - mean_i phi_i ||^2``,     ``grad_theta R = theta - mean_i phi_i``,

so one SGD step of size ``epsilon`` on ``R`` is exactly the Reptile update (the trainer's Adam
follows the same direction with per-parameter step sizes, as the paper's Adam experiments do).
For ``k = 1`` the direction is ``alpha`` times the task-average gradient (joint training); for
``k > 1`` a Taylor expansion shows it also contains ``-alpha^2 H_j g_i`` terms that, in
expectation over the mini-batches, maximise the inner product of gradients of different batches
of a task: what makes the initialisation fast to adapt, as MAML's Hessian term does.
"""

from __future__ import annotations

from typing import Any

import torch

from ..episodes import Episode
from .inner_loop import Params, adapt_tasks, check_finite_inner, params_of
from .maml import MAML, GradientMetaLearner
from .maml_regression import MAMLRegressor


def reptile_surrogate(theta: Params, phi: Params) -> torch.Tensor:
    """``1/2 sum_name || theta - mean_i phi_i ||^2`` with ``phi`` ``{name: (T, *shape)}`` held constant."""
    return sum(0.5 * ((theta[n] - phi[n].detach().mean(0)) ** 2).sum() for n in theta)  # type: ignore[return-value]


def reptile_step(method: GradientMetaLearner, episode: Episode) -> tuple[torch.Tensor, Params]:
    """The surrogate ``R(theta)`` of a meta-batch and the adapted weights ``phi`` ``{name: (T, *shape)}``."""
    x = torch.cat([episode.support_x, episode.query_x], 1)
    y = torch.cat([episode.support_y, episode.query_y], 1)
    with torch.enable_grad():
        phi, inner = adapt_tasks(method.net, params_of(method.net, detach=True), x, y, method.task_loss,
                                 method.inner_steps, method.inner_lr, True, None,
                                 method.resolve_batching(True, x.device))
    check_finite_inner(inner, method.inner_lr)
    phi = {n: p.detach() for n, p in phi.items()}
    if method.training and torch.is_grad_enabled():
        method.meta_step += 1
    return reptile_surrogate(params_of(method.net), phi), phi


class Reptile(MAML):
    """Reptile on the Conv-4 classifier (test time: ``test_steps`` SGD steps on the support set, like MAML).

    Args: as :class:`~metalearn_lite.algorithms.maml.MAML` (``inner_steps`` is Reptile's ``k``).
    """

    name = "reptile"
    train_defaults: dict[str, Any] = dict(MAML.train_defaults, tasks=5, queries=5)

    def __init__(self, ways: int = 5, hidden: int = 64, norm: str = "batch", in_channels: int = 1,
                 inner_lr: float = 0.1, inner_steps: int = 5, test_steps: int = 10, batching: str = "auto",
                 image_size: int = 28) -> None:
        super().__init__(ways=ways, hidden=hidden, norm=norm, in_channels=in_channels, inner_lr=inner_lr,
                         inner_steps=inner_steps, test_steps=test_steps, first_order=True, batching=batching,
                         image_size=image_size)
        self.config = dict(ways=ways, hidden=hidden, norm=norm, in_channels=in_channels, inner_lr=inner_lr,
                           inner_steps=inner_steps, test_steps=test_steps, batching=batching, image_size=image_size)

    def loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        surrogate, phi = reptile_step(self, episode)
        with torch.no_grad():  # accuracy of the adapted weights on the queries (seen in the inner loop)
            acc = (self.forward_with(phi, episode.query_x).argmax(-1) == episode.query_y).float().mean()
        return surrogate, acc


class ReptileRegressor(MAMLRegressor):
    """Reptile on the sinusoid MLP; the metric is the adapted weights' query MSE."""

    name = "reptile_regressor"

    def __init__(self, hidden: int = 40, layers: int = 2, inner_lr: float = 0.01, inner_steps: int = 5,
                 test_steps: int = 10, batching: str = "auto") -> None:
        super().__init__(hidden=hidden, layers=layers, inner_lr=inner_lr, inner_steps=inner_steps,
                         test_steps=test_steps, first_order=True, batching=batching)
        self.config = dict(hidden=hidden, layers=layers, inner_lr=inner_lr, inner_steps=inner_steps,
                           test_steps=test_steps, batching=batching)

    def loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        surrogate, phi = reptile_step(self, episode)
        with torch.no_grad():
            mse = ((self.forward_with(phi, episode.query_x) - episode.query_y) ** 2).mean()
        return surrogate, mse
