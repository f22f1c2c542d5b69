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

import torch
from torch import nn

from ..episodes import Episode
from .inner_loop import LossFn, Params, adapted_params_tasks, check_finite_inner, params_of
from .sgd_learner import SGDLearner


def reptile_surrogate(theta: Params, phi: Params) -> torch.Tensor:
    """``1/2 sum_name || theta - mean_i phi_i ||^2`` with ``phi`` ``{name: (T, *shape)}`` held constant."""
    return sum(0.5 * ((theta[n] - phi[n].detach().mean(0)) ** 2).sum() for n in theta)  # type: ignore[return-value]


class Reptile(SGDLearner):
    """Reptile on any network (test time: ``test_steps`` SGD steps on the support set, like MAML).

    Args: as :class:`~metalearn_lite.algorithms.maml.MAML`'s of the same names (``inner_steps`` is Reptile's
    ``k``); nothing is differentiated through the inner loop, so there is no first-order switch.
    """

    name = "reptile"

    def __init__(self, model: nn.Module | None = None, ways: int = 5, inner_lr: float = 0.1, inner_steps: int = 5,
                 test_steps: int = 10, loss: str | LossFn = "cross_entropy", head: str | None = None,
                 batching: str = "auto") -> None:
        super().__init__(model=model, ways=ways, inner_lr=inner_lr, inner_steps=inner_steps, test_steps=test_steps,
                         loss=loss, head=head, batching=batching)

    def reptile_step(self, episode: Episode) -> tuple[torch.Tensor, Params]:
        """The surrogate ``R(theta)`` of a meta-batch and the adapted weights ``phi`` ``{name: (T, *shape)}``:
        every task's support and query examples are its training examples."""
        x = torch.cat([episode.support_x, episode.query_x], 1)
        y = torch.cat([episode.support_y, episode.query_y], 1)
        with torch.enable_grad():
            phi, inner = adapted_params_tasks(self.net, params_of(self.net, detach=True), x, y,
                                              self.task_loss_for(self.task_classes(y)), self.inner_steps,
                                              self.inner_lr, True, None, self.resolve_batching(True, x.device))
        check_finite_inner(inner, self.inner_lr)
        phi = {n: p.detach() for n, p in phi.items()}
        self.count_meta_step()
        return reptile_surrogate(params_of(self.net), phi), phi

    def loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """The surrogate, and the adapted weights' accuracy (classifier) or loss on the queries, which the inner
        loop has seen."""
        surrogate, phi = self.reptile_step(episode)
        with torch.no_grad():
            out = self.forward_with(phi, episode.query_x)
            if self.classifier:
                return surrogate, (out.argmax(-1) == episode.query_y).float().mean()
            return surrogate, torch.stack([self._loss_fn(o, t) for o, t in zip(out, episode.query_y)]).mean()
