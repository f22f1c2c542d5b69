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
* ``anil=True`` adapts only the head in the inner loop (the body is still meta-trained, through
  the query loss and the head's adaptation).
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

The inner loop is :mod:`metalearn_lite.algorithms.inner_loop` (``torch.func``); the tasks of a
meta-batch run under ``vmap`` or in a loop, chosen by measurement (``batching="auto"``, see
:meth:`GradientMetaLearner.resolve_batching`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..episodes import Episode
from ..fewshot import check_task
from ..models import Conv4
from .base import EpisodicMethod
from .inner_loop import (
    BATCHING,
    Params,
    Rate,
    adapt_tasks,
    check_batching,
    check_finite_inner,
    forward_tasks,
    params_of,
    task_outputs,
)


def with_gradient(value: torch.Tensor, weights: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
    """A scalar equal to ``value`` whose gradient with respect to ``weights`` is ``grads``:
    ``value + sum_w <w, g_w> - (same, detached)``."""
    dot = sum((w * g).sum() for w, g in zip(weights, grads))
    return value.detach() + dot - dot.detach()


class GradientMetaLearner(EpisodicMethod):
    """What the optimisation-based methods share: a network ``self.net``, its inner loop and options.

    Subclasses set ``self.net`` and ``head_prefix`` (the head's parameter names start with it) and
    implement ``task_loss(output, target)``.
    """

    adapts_with_gradients = True  # evaluation keeps autograd on: adaptation takes gradient steps
    head_prefix = "head."
    #: batching chosen by ``benchmarks/maml_step.py`` on a 2-core CPU when ``batching="auto"``
    cpu_batching = "loop"

    def _setup(self, inner_lr: float, inner_steps: int, test_steps: int, first_order: bool, meta_sgd: bool,
               anil: bool, batching: str, first_order_warmup: int = 0, zero_head: bool = False) -> None:
        if not inner_lr > 0:
            raise ValueError(f"inner_lr must be > 0; got {inner_lr}")
        for name, v in (("inner_steps", inner_steps), ("test_steps", test_steps), ("first_order_warmup",
                                                                                   first_order_warmup)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0; got {v!r}")
        if batching not in (*BATCHING, "auto"):
            raise ValueError(f"batching must be 'auto', 'vmap' or 'loop'; got {batching!r}")
        self.inner_lr, self.inner_steps, self.test_steps = inner_lr, inner_steps, test_steps
        self.first_order, self.anil, self.batching = first_order, anil, batching
        self.first_order_warmup = first_order_warmup
        self.zero_head = zero_head
        if zero_head:  # the stored head stays zero and is never meta-trained (see the module docstring)
            for n, p in self.net.named_parameters():
                if self._zeroed(n):
                    with torch.no_grad():
                        p.zero_()
                    p.requires_grad_(False)
        # meta-steps trained so far (a buffer, so that a resumed run knows where the warm-up ended)
        self.register_buffer("meta_step", torch.zeros((), dtype=torch.long))
        self.inner_lrs = None
        if meta_sgd:  # with a zero head, one rate per head column, shared by every class's row
            self.inner_lrs = nn.ParameterDict({
                self._key(n): nn.Parameter(torch.full_like(p[:1] if self._zeroed(n) else p, inner_lr))
                for n, p in self.net.named_parameters() if n in self.trainable_names()
            })

    def _zeroed(self, name: str) -> bool:
        return self.zero_head and name.startswith(self.head_prefix)

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "__")

    def task_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def trainable_names(self) -> list[str]:
        """The parameters the inner loop adapts (ANIL: the head only)."""
        names = [n for n, _ in self.net.named_parameters()]
        return [n for n in names if n.startswith(self.head_prefix)] if self.anil else names

    def rate(self) -> Rate:
        """The inner learning rate: ``inner_lr``, or Meta-SGD's ``{name: tensor}``."""
        if self.inner_lrs is None:
            return self.inner_lr
        return {n: self.inner_lrs[self._key(n)] for n in self.trainable_names()}

    def resolve_batching(self, first_order: bool, device: torch.device) -> str:
        """``auto``: ``vmap`` on a GPU, else the strategy measured fastest for this network on a CPU."""
        if self.batching != "auto":
            return self.batching
        choice = "vmap" if device.type == "cuda" else self.cpu_batching
        try:
            check_batching(self.net, choice, first_order)
        except ValueError:
            return "loop"
        return choice

    def start_params(self, detach: bool = False, labels: torch.Tensor | None = None) -> Params:
        """The weights every task starts from: ``{name: tensor}``.  With ``zero_head``, a fresh zero head,
        with one row per class of the support ``labels`` ``(T, S)`` when they are given."""
        params = params_of(self.net, detach=detach)
        if self.zero_head:
            ways = None if labels is None else int(labels.max()) + 1
            params.update({n: p.new_zeros((p.shape[0] if ways is None else ways, *p.shape[1:]), requires_grad=True)
                           for n, p in params.items() if self._zeroed(n)})
        return params

    def training_first_order(self) -> bool:
        return self.first_order or int(self.meta_step) < self.first_order_warmup

    def meta_losses(self, episode: Episode, first_order: bool | None = None,
                    steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The meta-batch's mean query loss after inner adaptation (differentiable), the per-task query
        losses ``(T,)`` and the query outputs ``(T, Q, ...)`` (both detached).

        With ``batching="loop"`` and autograd on, each task's meta-gradient is computed as soon as the
        task is done (``torch.autograd.grad``), so only one task's graph is alive at a time, as in a
        loop that calls ``backward`` per task; the returned loss then carries the summed gradient
        (:func:`with_gradient`), and ``loss.backward()`` gives the same result as one backward
        through every task's graph.
        """
        fo = self.training_first_order() if first_order is None else first_order
        lr = self.rate()
        steps = self.inner_steps if steps is None else steps
        batching = self.resolve_batching(fo, episode.support_x.device)
        args = (self.task_loss, steps, lr, fo, self.trainable_names())
        net_params = self.start_params(labels=episode.support_y)
        if batching == "loop" and torch.is_grad_enabled():
            weights = [p for p in self.parameters() if p.requires_grad]
            total = [torch.zeros_like(p) for p in weights]
            qlosses, outs, inners = [], [], []
            tasks = episode.num_tasks
            for i in range(tasks):
                sl = slice(i, i + 1)
                q, out, inner = task_outputs(self.net, net_params, episode.support_x[sl], episode.support_y[sl],
                                             episode.query_x[sl], episode.query_y[sl], *args, batching="loop")
                check_finite_inner(inner, self.inner_lr if isinstance(lr, dict) else lr, q)
                grads = torch.autograd.grad(q.sum() / tasks, weights, allow_unused=True)
                total = [t if g is None else t + g for t, g in zip(total, grads)]
                qlosses.append(q.detach())
                outs.append(out.detach())
                inners.append(inner)
            qloss, out = torch.cat(qlosses), torch.cat(outs)
            loss = with_gradient(qloss.mean(), weights, total)
        else:
            qloss, out, inner = task_outputs(self.net, net_params, episode.support_x, episode.support_y,
                                             episode.query_x, episode.query_y, *args, batching=batching)
            check_finite_inner(inner, self.inner_lr if isinstance(lr, dict) else lr, qloss)
            loss, qloss, out = qloss.mean(), qloss.detach(), out.detach()
        if self.training and torch.is_grad_enabled():
            self.meta_step += 1
        return loss, qloss, out

    def adapted(self, x: torch.Tensor, y: torch.Tensor, steps: int | None = None) -> Params:
        """Test-time adaptation of every task in ``x`` ``(T, S, ...)``: ``{name: (T, *shape)}``.

        The stored weights receive no gradient; the steps are first-order (nothing is differentiated
        through them) and use ``test_steps`` unless ``steps`` is given.
        """
        steps = self.test_steps if steps is None else steps
        lr = self.rate()
        if isinstance(lr, dict):
            lr = {n: v.detach() for n, v in lr.items()}
        with torch.enable_grad():
            adapted, inner = adapt_tasks(self.net, self.start_params(True, y), x, y, self.task_loss, steps, lr,
                                         True, self.trainable_names(), self.resolve_batching(True, x.device))
        check_finite_inner(inner, lr)
        return {n: p.detach() for n, p in adapted.items()}

    def forward_with(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """The network with task weights ``{name: (T, *shape)}`` on inputs ``(T, B, ...)``."""
        return forward_tasks(self.net, params, x, self.resolve_batching(True, x.device))


class MAML(GradientMetaLearner):
    """MAML on a Conv-4 classifier with an ``ways``-output linear head.

    Args:
        ways: classes per task (the head's outputs); test tasks must have this many, except with
            ``zero_head``, where the head is built for each task's classes.
        hidden, norm, in_channels: Conv-4's (``norm`` must be ``"batch"`` or ``"none"``: running
            statistics would be updated in place by every inner forward).
        inner_lr: ``alpha``; inner_steps: inner steps in training; test_steps: at test time.
        first_order: FOMAML; first_order_warmup: train this many meta-steps first-order, then second-order.
        meta_sgd: learn a rate per parameter; anil: adapt only the head.
        zero_head: start every task from a zero head (the zeroing trick; module docstring).
        batching: ``"auto"``, ``"vmap"`` or ``"loop"`` over the tasks of a meta-batch.
    """

    name = "maml"
    train_defaults: dict[str, Any] = dict(ways=5, shots=1, queries=5, tasks=8, steps=20000, lr=1e-3,
                                          lr_decay_every=100000, rotations=True, val_every=250, val_episodes=200)

    def __init__(self, ways: int = 5, hidden: int = 64, norm: str = "batch", in_channels: int = 1,
                 inner_lr: float = 0.4, inner_steps: int = 1, test_steps: int = 3, first_order: bool = False,
                 first_order_warmup: int = 0, meta_sgd: bool = False, anil: bool = False, batching: str = "auto",
                 image_size: int = 28, zero_head: bool = False) -> None:
        super().__init__(ways=ways, hidden=hidden, norm=norm, in_channels=in_channels, inner_lr=inner_lr,
                         inner_steps=inner_steps, test_steps=test_steps, first_order=first_order,
                         first_order_warmup=first_order_warmup, meta_sgd=meta_sgd, anil=anil, batching=batching,
                         image_size=image_size, zero_head=zero_head)
        if norm == "running":
            raise ValueError("MAML needs norm='batch' or 'none': running statistics would be updated in place by "
                             "every inner-loop forward pass")
        if isinstance(ways, bool) or not isinstance(ways, int) or ways < 2:
            raise ValueError(f"ways must be an int >= 2; got {ways!r}")
        self.ways = ways
        self.net = Conv4(in_channels, hidden, norm, out_features=ways, image_size=image_size)
        self._setup(inner_lr, inner_steps, test_steps, first_order, meta_sgd, anil, batching, first_order_warmup,
                    zero_head)

    def task_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    @torch.no_grad()
    def init_body(self, backbone: Conv4) -> list[str]:
        """Start meta-training from a trained Conv-4 body (e.g. ``pretrained-omniglot``'s backbone).

        Copies the convolution weights and the normalisation's scale and shift (not running
        statistics: this network normalises with batch statistics); the head is left as it is.
        Returns the names of the parameters copied.
        """
        if not isinstance(backbone, Conv4):
            raise ValueError(f"init_body needs a Conv4 backbone; got {type(backbone).__name__}")
        if (backbone.in_channels, backbone.hidden) != (self.net.in_channels, self.net.hidden):
            raise ValueError(f"the backbone has {backbone.in_channels} input channels and {backbone.hidden} filters, "
                             f"this model {self.net.in_channels} and {self.net.hidden}: build it with --hidden "
                             f"{backbone.hidden}")
        if (backbone.norm == "none") != (self.net.norm == "none"):
            raise ValueError(f"the backbone was built with norm={backbone.norm!r} and this model with "
                             f"norm={self.net.norm!r}: one has normalisation parameters the other lacks")
        source = dict(backbone.features.named_parameters())
        copied = []
        for name, p in self.net.features.named_parameters():
            p.copy_(source[name].to(p.device, p.dtype))
            copied.append(f"features.{name}")
        return copied

    def loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.zero_head and int(episode.support_y.max()) + 1 != self.ways:
            raise ValueError(f"this MAML model has {self.ways} outputs; train it on {self.ways}-way tasks (--ways)")
        loss, _, logits = self.meta_losses(episode)
        acc = (logits.argmax(-1) == episode.query_y).float().mean()
        return loss, acc

    def logits(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        """One task: adapt ``test_steps`` steps on the support set, then score the queries ``(Q, N)``.

        With ``norm="batch"`` the query batch is normalised with its own statistics (transductive).
        """
        classes, targets = check_task(support_x, support_y, query_x)
        if not self.zero_head and len(classes) != self.ways:
            raise ValueError(f"this MAML model classifies {self.ways}-way tasks; the support set has {len(classes)} "
                             f"classes (train a {len(classes)}-way model with --ways {len(classes)}, or one "
                             "with --zero-head, which classifies tasks of any number of classes)")
        params = self.adapted(support_x[None], targets[None])
        return self.forward_with(params, query_x[None])[0]
