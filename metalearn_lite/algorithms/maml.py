"""MAML (Finn, Abbeel & Levine, 2017), first-order MAML, Meta-SGD (Li et al., 2017) and ANIL (Raghu et al., 2020).

MAML learns an initialisation ``theta`` from which a few gradient steps on a task's support set
``S`` give weights that do well on its query set ``Q``:

    ``min_theta  sum_tasks L_Q(theta'),   theta' = U_S(theta) = theta - alpha grad L_S(theta)``  (k steps)

By the chain rule the meta-gradient of one task (one inner step) is

    ``grad_theta L_Q(theta') = (I - alpha H_S(theta)) grad L_Q(theta')``,   ``H_S`` = Hessian of ``L_S``,

and for ``k`` steps the product of ``(I - alpha H_S(theta_j))`` over the steps.  Autograd computes the
Hessian-vector products when the inner gradients are built with ``create_graph=True``.

* ``first_order=True`` (FOMAML) drops the Hessian terms: the meta-gradient is ``grad L_Q(theta')``.
* ``meta_sgd=True`` replaces the scalar ``alpha`` by a learned tensor per parameter, initialised
  at ``inner_lr`` and trained by the outer optimiser with ``theta``:
  ``theta' = theta - alpha ⊙ grad L_S(theta)``.
* ``zero_head=True`` is the "zeroing trick" of Kao, Chiu & Chen (ICLR 2022): every task starts
  from a head ``W = 0, b = 0`` instead of a meta-learned one.  Labels are shuffled per task, so a
  learned head can only add a random bias that the inner loop must first undo.  From zero, one
  inner step on cross-entropy (uniform predictions, ``N`` classes, ``S`` support features ``phi``) gives

      ``w_c' = alpha / S * sum_i (1[y_i = c] - 1/N) phi_i``,   ``b' = 0`` (balanced classes),

  so a query's logit for class ``c`` is ``alpha`` times its inner product with class ``c``'s
  support features (minus the mean over classes): a prototype classifier whose features the outer
  loop learns, which trains much faster.  The head is then built for each task's number of
  classes, so a model can train on 20-way tasks and be tested on 5-way ones; and since the classes
  are exchangeable, Meta-SGD learns one head rate per feature (shape ``(1, F)``), shared by the rows.
  It is the default (``zero_head=None``) for a classifier whose head is an ``nn.Linear`` with a bias:
  from random weights on a small network of one's own, a meta-learned head learned much more slowly
  (lesson 00's demo; ``tests/test_maml_defaults.py`` checks that the default learns).  Pass ``zero_head=False``
  for a meta-learned head (the CLI's recipes pass it explicitly, so no shipped checkpoint changes).
* ``anil=True`` adapts only the head in the inner loop (the body is still meta-trained, through
  the query loss and the head's adaptation).

The model is any ``nn.Module``: its parameters (and buffers) go through ``torch.func.functional_call``,
so adapted weights are ordinary tensors and no module is copied per task.  ``loss`` chooses what is
learned: ``"cross_entropy"`` (classification, the default), ``"mse"`` (regression, e.g. the sinusoids
of the paper's section 5.1) or any callable ``(output, target) -> scalar``.

The inner loop is :mod:`metalearn_lite.algorithms.inner_loop` (``torch.func``); the tasks of a
meta-batch run under ``vmap`` or in a loop, chosen by measurement (``batching="auto"``, see
:meth:`~metalearn_lite.algorithms.sgd_learner.SGDLearner.resolve_batching`).  What MAML shares with the other
gradient-based learners (the network and its head, the task loss, ``adapt``, ``logits``, ``init_body``) is
:class:`~metalearn_lite.algorithms.gradient_learner.GradientLearner`'s; this file holds the meta-objective and
its variants, in the order above.
"""

from __future__ import annotations

import torch
from torch import nn

from ..episodes import Episode
from ..validation import non_negative_int
from .gradient_learner import TaskGradients
from .inner_loop import LossFn, Rate, check_finite_inner, task_outputs
from .sgd_learner import SGDLearner
from .task_threads import run_chunks


def _key(name: str) -> str:
    """A parameter's name as a key of Meta-SGD's ``nn.ParameterDict`` (which refuses dots)."""
    return name.replace(".", "__")


class MAML(SGDLearner):
    """MAML and its variants on any network (see the module docstring).

    Args:
        model: any ``nn.Module``; ``None`` gives the course's Conv-4 (``norm="batch"``) with a ``ways``-output
            head.  Normalisation must not keep running statistics.
        ways: classes per task (the default model's outputs; a classifier's outputs must match the tasks'
            classes, except with ``zero_head``, where the head is built for each task's classes).
        inner_lr: ``alpha``; inner_steps: inner steps in training; test_steps: at test time.
        first_order: FOMAML; first_order_warmup: train this many meta-steps first-order, then second-order.
        meta_sgd: learn a rate per parameter; anil: adapt only the head.
        zero_head: start every task from a zero head (the zeroing trick; needs an ``nn.Linear`` head).
            ``None`` (the default): on for a classifier (``loss="cross_entropy"``) whose head is an
            ``nn.Linear`` with a bias, off otherwise (see :func:`~metalearn_lite.algorithms.head.default_zero_head`).
        loss: ``"cross_entropy"``, ``"mse"`` or a callable ``(output, target) -> scalar``.
        head: the output layer's submodule name (default: ``model.head``, else the last layer with weights).
        batching: ``"auto"``, ``"vmap"``, ``"loop"`` or ``"threads"`` over the tasks of a meta-batch.

    Example::

        maml = MAML(my_net, ways=5, inner_lr=0.4, first_order=True)
        adapted = maml.adapt(support_x, support_y)        # a few steps on one task's support set
        adapted(query_x)                                  # (Q, 5) scores
    """

    name = "maml"

    def __init__(self, model: nn.Module | None = None, ways: int = 5, inner_lr: float = 0.4, inner_steps: int = 1,
                 test_steps: int = 3, first_order: bool = False, first_order_warmup: int = 0, meta_sgd: bool = False,
                 anil: bool = False, zero_head: bool | None = None, loss: str | LossFn = "cross_entropy",
                 head: str | None = None, batching: str = "auto") -> None:
        non_negative_int("first_order_warmup", first_order_warmup)
        super().__init__(model=model, ways=ways, inner_lr=inner_lr, inner_steps=inner_steps, test_steps=test_steps,
                         first_order=first_order, first_order_warmup=first_order_warmup, meta_sgd=meta_sgd,
                         anil=anil, zero_head=zero_head, loss=loss, head=head, batching=batching)
        self.first_order, self.first_order_warmup, self.anil = first_order, first_order_warmup, anil
        if anil and not self.trainable_names():
            raise ValueError(f"anil=True adapts only the head ({self.head_prefix!r}), which has no trainable "
                             "parameters")
        self.inner_lrs = None
        if meta_sgd:  # with a zero head, one rate per head column, shared by every class's row
            self.inner_lrs = nn.ParameterDict({
                _key(n): nn.Parameter(torch.full_like(p[:1] if self._zeroed(n) else p, inner_lr))
                for n, p in self.net.named_parameters() if n in self.trainable_names()
            })

    # ------------------------------------------------------------------ min_theta sum_tasks L_Q(U_S(theta))

    def meta_losses(self, episode: Episode, first_order: bool | None = None,
                    steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The meta-batch's mean query loss after inner adaptation (differentiable), the per-task query
        losses ``(T,)`` and the query outputs ``(T, Q, ...)`` (both detached).

        With ``batching="loop"`` and autograd on, each task's meta-gradient is computed as soon as the
        task is done (:class:`~metalearn_lite.algorithms.gradient_learner.TaskGradients`), so only one task's
        graph is alive at a time; ``loss.backward()`` gives the same result as one backward through every
        task's graph.  ``"threads"`` does the same on each worker's share of the tasks (one graph alive per
        worker) and adds the workers' sums in order.
        """
        fo = self.training_first_order() if first_order is None else first_order
        lr = self.rate()
        steps = self.inner_steps if steps is None else steps
        batching = self.resolve_batching(fo, episode.support_x.device)
        ways = self.task_classes(episode.support_y)
        theta = self.start_params(ways=ways)
        args = (self.task_loss_for(ways), steps, lr, fo, self.trainable_names())
        what = self.inner_lr if isinstance(lr, dict) else lr  # the rate that a divergence message names
        if batching in ("loop", "threads") and torch.is_grad_enabled():
            tasks = episode.num_tasks

            def share(first: int, stop: int) -> tuple[TaskGradients, list[torch.Tensor], list[torch.Tensor]]:
                grads, qlosses, outs = TaskGradients(self), [], []
                for i in range(first, stop):
                    one = slice(i, i + 1)
                    q, out, inner = task_outputs(self.net, theta, episode.support_x[one], episode.support_y[one],
                                                 episode.query_x[one], episode.query_y[one], *args, batching="loop",
                                                 start=self.task_start)
                    check_finite_inner(inner, what, q)
                    grads.add(q.sum() / tasks)
                    qlosses.append(q.detach())
                    outs.append(out.detach())
                return grads, qlosses, outs

            shares = run_chunks(tasks, share) if batching == "threads" else [share(0, tasks)]
            qloss = torch.cat([q for _, qs, _ in shares for q in qs])
            out = torch.cat([o for _, _, os in shares for o in os])
            loss = TaskGradients.combine([g for g, _, _ in shares]).loss(qloss.mean())
        else:
            qloss, out, inner = task_outputs(self.net, theta, episode.support_x, episode.support_y, episode.query_x,
                                             episode.query_y, *args, batching=batching, start=self.task_start)
            check_finite_inner(inner, what, qloss)
            loss, qloss, out = qloss.mean(), qloss.detach(), out.detach()
        self.count_meta_step()
        return loss, qloss, out

    def loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """The meta-loss of a meta-batch, and the query accuracy (classifier) or query loss (regressor)."""
        loss, qloss, out = self.meta_losses(episode)
        if self.classifier:
            return loss, (out.argmax(-1) == episode.query_y).float().mean()
        return loss, qloss.mean()

    # ------------------------------------------------------------------ first order: grad L_Q(theta') alone

    def training_first_order(self) -> bool:
        """Whether this meta-step drops the Hessian terms (``first_order``, or still in the warm-up)."""
        return self.first_order or int(self.meta_step) < self.first_order_warmup

    # ------------------------------------------------------------------ Meta-SGD: theta - alpha ⊙ grad L_S(theta)

    def rate(self) -> Rate:
        """The inner learning rate: ``inner_lr``, or Meta-SGD's ``{name: tensor}``."""
        if self.inner_lrs is None:
            return self.inner_lr
        return {n: self.inner_lrs[_key(n)] for n in self.trainable_names()}

    # ------------------------------------------------------------------ ANIL: the head alone in the inner loop

    def trainable_names(self) -> list[str]:
        """The parameters the inner loop adapts (ANIL: the head only)."""
        names = super().trainable_names()
        return [n for n in names if n.startswith(self.head_prefix)] if self.anil else names
