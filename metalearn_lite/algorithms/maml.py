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
  It is the default (``zero_head=None``) for a classifier whose head is an ``nn.Linear`` with a bias:
  from random weights on a small network of one's own, a meta-learned head learned much more slowly
  (lesson 00's demo; ``tests/test_maml_defaults.py`` checks that the default learns).  Pass ``zero_head=False``
  for a meta-learned head (the CLI's recipes pass it explicitly, so no shipped checkpoint changes).

The model is any ``nn.Module``: its parameters (and buffers) go through ``torch.func.functional_call``,
so adapted weights are ordinary tensors and no module is copied per task.  ``loss`` chooses what is
learned: ``"cross_entropy"`` (classification, the default), ``"mse"`` (regression, e.g. the sinusoids
of the paper's section 5.1) or any callable ``(output, target) -> scalar``.

The inner loop is :mod:`metalearn_lite.algorithms.inner_loop` (``torch.func``); the tasks of a
meta-batch run under ``vmap`` or in a loop, chosen by measurement (``batching="auto"``, see
:meth:`MAML.resolve_batching`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..episodes import Episode
from ..fewshot import check_task
from ..finite import check_input, check_weights
from ..models import MLP, Conv4
from ..validation import non_negative_int, positive_int
from .base import EpisodicMethod
from .inner_loop import (
    BATCHING,
    LossFn,
    Params,
    Rate,
    adapted_params_tasks,
    check_batching,
    check_finite_inner,
    forward_tasks,
    params_of,
    task_outputs,
)

LOSSES: dict[str, LossFn] = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}


def with_gradient(value: torch.Tensor, weights: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
    """A scalar equal to ``value`` whose gradient with respect to ``weights`` is ``grads``:
    ``value + sum_w <w, g_w> - (same, detached)``."""
    dot = sum((w * g).sum() for w, g in zip(weights, grads))
    return value.detach() + dot - dot.detach()


def find_head(net: nn.Module, head: str | None = None) -> str:
    """The parameter-name prefix of ``net``'s output layer (ANIL adapts only it; ``zero_head`` zeroes it).

    ``head`` names it (a submodule name such as ``"fc"``); by default ``net.head`` if it exists, else the
    last submodule that holds parameters of its own.
    """
    names = [n for n, _ in net.named_parameters()]
    if head is not None:
        prefix = head.rstrip(".") + "."
        if not any(n.startswith(prefix) for n in names):
            raise ValueError(f"the model has no parameters under head={head!r}; its parameters are {names[:6]}...: "
                             "name the output layer's submodule")
        return prefix
    if isinstance(getattr(net, "head", None), nn.Module) and any(n.startswith("head.") for n in names):
        return "head."
    owners = [m for m, mod in net.named_modules() if any(True for _ in mod.parameters(recurse=False))]
    if not owners:
        raise ValueError("the model has no submodule with parameters to act as its head; pass head=NAME")
    return owners[-1] + "." if owners[-1] else ""  # a one-layer model is its own head


def check_adaptable(net: nn.Module) -> None:
    """``ValueError`` for a model the inner loop cannot adapt: no trainable parameters, or normalisation
    layers that keep running statistics (every inner-loop forward pass would update them in place)."""
    if not any(p.requires_grad for p in net.parameters()):
        raise ValueError(f"the model {type(net).__name__} has no trainable parameters to adapt: give MAML a network "
                         "with parameters (requires_grad=True)")
    for name, m in net.named_modules():
        if getattr(m, "track_running_stats", False):
            raise ValueError(
                f"layer {name or type(net).__name__} ({type(m).__name__}) keeps running statistics, which every "
                f"inner-loop step would update in place; build it with track_running_stats=False (statistics of "
                f"each batch), use metalearn_lite.models.BatchStatNorm2d, or remove the normalisation"
            )


def check_class_scores(output: torch.Tensor, target: torch.Tensor, classes: int | None) -> None:
    """``ValueError`` unless ``output`` holds one score per class for each of the ``target`` examples."""
    if output.dim() != 2 or (classes is not None and output.shape[-1] != classes):
        raise ValueError(
            f"the model outputs {tuple(output.shape)} for {target.shape[0]} examples, but each needs one score "
            f"per class ({classes} classes in these tasks): give its last layer {classes} outputs (e.g. "
            f"nn.Linear(features, {classes})), train on {output.shape[-1]}-way tasks, or use "
            "zero_head=True, which builds the head for each task's classes"
        )


def zero_and_freeze_head(net: nn.Module, head: str) -> None:
    """The zeroing trick's stored head: the layer under ``head`` (an ``nn.Linear`` with a bias, else a
    ``ValueError``) set to zero and excluded from meta-training; every task builds its own from zero."""
    layer = net.get_submodule(head.rstrip(".")) if head else net
    if not isinstance(layer, nn.Linear) or layer.bias is None:
        raise ValueError(f"zero_head=True needs a classifier whose head ({head.rstrip('.') or 'the model'}) is an "
                         f"nn.Linear with a bias; got {type(layer).__name__}")
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
    layer.requires_grad_(False)


def default_zero_head(net: nn.Module, head: str, loss: str | LossFn) -> bool:
    """``zero_head=None`` resolved: ``True`` for a classifier (``loss="cross_entropy"``) whose head (the layer
    under the prefix ``head``) is an ``nn.Linear`` with a bias, ``False`` for anything else."""
    if loss != "cross_entropy":
        return False
    layer = net.get_submodule(head.rstrip(".")) if head else net
    return isinstance(layer, nn.Linear) and layer.bias is not None


class AdaptedModel:
    """One task's adapted network, as :meth:`MAML.adapt` returns it: ``adapted(x) -> outputs``.

    ``params`` are the adapted weights ``{name: tensor}`` (the meta-learned ones are untouched); for a
    classifier, output column ``j`` belongs to ``classes[j]``, the ``j``-th smallest support label.
    """

    def __init__(self, net: nn.Module, params: Params, classes: torch.Tensor | None = None) -> None:
        self.net, self.params, self.classes = net, params, classes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.net, self.params, (x,))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Labels from the support set's labels ``(B,)`` (classifiers only)."""
        if self.classes is None:
            raise ValueError("predict() is for classifiers; call the adapted model for a regressor's outputs")
        return self.classes[self(x).argmax(-1)]


class MAML(EpisodicMethod):
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
            ``nn.Linear`` with a bias, off otherwise (see :func:`default_zero_head`).
        loss: ``"cross_entropy"``, ``"mse"`` or a callable ``(output, target) -> scalar``.
        head: the output layer's submodule name (default: ``model.head``, else the last layer with weights).
        batching: ``"auto"``, ``"vmap"`` or ``"loop"`` over the tasks of a meta-batch.

    Example::

        maml = MAML(my_net, ways=5, inner_lr=0.4, first_order=True)
        adapted = maml.adapt(support_x, support_y)        # a few steps on one task's support set
        adapted(query_x)                                  # (Q, 5) scores
    """

    name = "maml"
    module_args = ("model",)
    adapts_with_gradients = True  # evaluation keeps autograd on: adaptation takes gradient steps

    def __init__(self, model: nn.Module | None = None, ways: int = 5, inner_lr: float = 0.4, inner_steps: int = 1,
                 test_steps: int = 3, first_order: bool = False, first_order_warmup: int = 0, meta_sgd: bool = False,
                 anil: bool = False, zero_head: bool | None = None, loss: str | LossFn = "cross_entropy",
                 head: str | None = None, batching: str = "auto") -> None:
        model = self._default_model(model, ways, loss)
        if zero_head is None:
            zero_head = default_zero_head(model, find_head(model, head), loss)
        elif not isinstance(zero_head, bool):
            raise ValueError(f"zero_head must be True, False or None (automatic); got {zero_head!r}")
        super().__init__(model=model, ways=ways, inner_lr=inner_lr, inner_steps=inner_steps, test_steps=test_steps,
                         first_order=first_order, first_order_warmup=first_order_warmup, meta_sgd=meta_sgd,
                         anil=anil, zero_head=zero_head, loss=self._loss_name(loss), head=find_head(model, head),
                         batching=batching)
        self._setup(model, ways, inner_lr, inner_steps, test_steps, first_order, first_order_warmup, meta_sgd, anil,
                    zero_head, loss, self.config["head"], batching)

    # ------------------------------------------------------------------ construction

    @staticmethod
    def _default_model(model: nn.Module | None, ways: int, loss: str | LossFn) -> nn.Module:
        positive_int("ways", ways)
        if model is None:
            if loss != "cross_entropy":
                raise ValueError("a regressor needs your network: e.g. MAML(model=MLP(1, (40, 40), 1), loss='mse') "
                                 "(the default Conv-4 is a classifier)")
            return Conv4(norm="batch", out_features=ways)
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module (or None for Conv-4); got {type(model).__name__}")
        check_adaptable(model)
        return model

    @staticmethod
    def _loss_name(loss: str | LossFn) -> str | dict[str, str]:
        if isinstance(loss, str):
            if loss not in LOSSES:
                raise ValueError(f"unknown loss {loss!r}; choose one of {list(LOSSES)} or pass a callable "
                                 "(output, target) -> scalar")
            return loss
        if not callable(loss):
            raise ValueError(f"loss must be a name ({list(LOSSES)}) or a callable (output, target) -> scalar; "
                             f"got {type(loss).__name__}")
        return {"custom": getattr(loss, "__name__", type(loss).__name__)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EpisodicMethod:
        if isinstance(config.get("loss"), dict):
            raise ValueError(f"this {cls.name} was trained with your own loss function ({config['loss']['custom']}), "
                             "which a checkpoint cannot rebuild: build the method as for training and pass it, "
                             f"e.g. load_checkpoint(path, method={cls.__name__}(model, loss=your_loss))")
        return super().from_config(config)

    def _setup(self, model: nn.Module, ways: int, inner_lr: float, inner_steps: int, test_steps: int,
               first_order: bool, first_order_warmup: int, meta_sgd: bool, anil: bool, zero_head: bool,
               loss: str | LossFn, head: str, batching: str) -> None:
        if not inner_lr > 0:
            raise ValueError(f"inner_lr must be > 0; got {inner_lr}")
        for name, v in (("inner_steps", inner_steps), ("test_steps", test_steps),
                        ("first_order_warmup", first_order_warmup)):
            non_negative_int(name, v)
        if batching not in (*BATCHING, "auto"):
            raise ValueError(f"batching must be 'auto', 'vmap' or 'loop'; got {batching!r}")
        check_adaptable(model)
        self.net = model
        self.ways, self.head_prefix = ways, head
        self.loss_name = loss if isinstance(loss, str) else None
        self._loss_fn: LossFn = LOSSES[loss] if isinstance(loss, str) else loss
        self.classifier = loss == "cross_entropy"
        self.inner_lr, self.inner_steps, self.test_steps = inner_lr, inner_steps, test_steps
        self.first_order, self.anil, self.batching = first_order, anil, batching
        self.first_order_warmup = first_order_warmup
        self.zero_head = zero_head
        if anil and not self.trainable_names():
            raise ValueError(f"anil=True adapts only the head ({head!r}), which has no trainable parameters")
        if zero_head:  # the stored head stays zero and is never meta-trained (see the module docstring)
            if not self.classifier:
                raise ValueError(f"zero_head=True needs a classifier whose head is an nn.Linear; this model "
                                 f"regresses with loss {loss!r}")
            zero_and_freeze_head(self.net, head)
        # meta-steps trained so far (a buffer, so that a resumed run knows where the warm-up ended)
        self.register_buffer("meta_step", torch.zeros((), dtype=torch.long))
        self.inner_lrs = None
        if meta_sgd:  # with a zero head, one rate per head column, shared by every class's row
            self.inner_lrs = nn.ParameterDict({
                self._key(n): nn.Parameter(torch.full_like(p[:1] if self._zeroed(n) else p, inner_lr))
                for n, p in self.net.named_parameters() if n in self.trainable_names()
            })

    # ------------------------------------------------------------------ the pieces of the inner loop

    def _zeroed(self, name: str) -> bool:
        return self.zero_head and name.startswith(self.head_prefix)

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "__")

    def task_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of one task's outputs, with the mistakes that would silently give wrong results refused:
        a classifier's scores must have one column per class, a regressor's outputs the targets' shape."""
        if self.classifier:
            check_class_scores(output, target, self._task_classes)
        elif self.loss_name == "mse" and output.shape != target.shape:
            raise ValueError(f"the model's outputs {tuple(output.shape)} and the targets {tuple(target.shape)} differ "
                             "in shape: the squared error would broadcast them; make the model output the targets' "
                             "shape (e.g. (B, 1) for (B, 1) targets)")
        return self._loss_fn(output, target)

    _task_classes: int | None = None

    def _with_classes(self, labels: torch.Tensor) -> None:
        """Remember the number of classes of the tasks at hand (for :meth:`task_loss`'s check)."""
        self._task_classes = int(labels.max()) + 1 if self.classifier else None

    def trainable_names(self) -> list[str]:
        """The parameters the inner loop adapts (ANIL: the head only)."""
        names = [n for n, p in self.net.named_parameters() if p.requires_grad or self._zeroed(n)]
        return [n for n in names if n.startswith(self.head_prefix)] if self.anil else names

    def rate(self) -> Rate:
        """The inner learning rate: ``inner_lr``, or Meta-SGD's ``{name: tensor}``."""
        if self.inner_lrs is None:
            return self.inner_lr
        return {n: self.inner_lrs[self._key(n)] for n in self.trainable_names()}

    def resolve_batching(self, first_order: bool, device: torch.device) -> str:
        """``auto``: measured per network (``benchmarks/maml_step.py``): on a CPU, ``vmap`` for the small
        MLP (about 7x faster than a loop) and a loop for Conv-4; on a GPU ``vmap``.  Your own network runs
        in a loop unless you ask for ``vmap`` (not every module can run under it)."""
        if self.batching != "auto":
            return self.batching
        own = type(self.net) in (Conv4, MLP)
        if not own:
            return "loop"
        choice = "vmap" if device.type == "cuda" or isinstance(self.net, MLP) else "loop"
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

    def task_start(self, params: Params, support_x: torch.Tensor, support_y: torch.Tensor) -> Params:
        """One task's starting weights from :meth:`start_params` and its support set ``(S, ...)``: the same for
        every task here; Proto-MAML overrides it to build the head from the support prototypes."""
        return params

    def training_first_order(self) -> bool:
        return self.first_order or int(self.meta_step) < self.first_order_warmup

    # ------------------------------------------------------------------ meta-training

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
        self._with_classes(episode.support_y)
        args = (self.task_loss, steps, lr, fo, self.trainable_names())
        net_params = self.start_params(labels=episode.support_y if self.classifier else None)
        if batching == "loop" and torch.is_grad_enabled():
            weights = [p for p in self.parameters() if p.requires_grad]
            total = [torch.zeros_like(p) for p in weights]
            qlosses, outs, inners = [], [], []
            tasks = episode.num_tasks
            for i in range(tasks):
                sl = slice(i, i + 1)
                q, out, inner = task_outputs(self.net, net_params, episode.support_x[sl], episode.support_y[sl],
                                             episode.query_x[sl], episode.query_y[sl], *args, batching="loop",
                                             start=self.task_start)
                check_finite_inner(inner, self.inner_lr if isinstance(lr, dict) else lr, q)
                grads = torch.autograd.grad(q.sum() / tasks, weights, allow_unused=True)
                for t, g in zip(total, grads):
                    if g is not None:
                        t.add_(g)  # in place: no new buffer per task
                qlosses.append(q.detach())
                outs.append(out.detach())
                inners.append(inner)
            qloss, out = torch.cat(qlosses), torch.cat(outs)
            loss = with_gradient(qloss.mean(), weights, total)
        else:
            qloss, out, inner = task_outputs(self.net, net_params, episode.support_x, episode.support_y,
                                             episode.query_x, episode.query_y, *args, batching=batching,
                                             start=self.task_start)
            check_finite_inner(inner, self.inner_lr if isinstance(lr, dict) else lr, qloss)
            loss, qloss, out = qloss.mean(), qloss.detach(), out.detach()
        if self.training and torch.is_grad_enabled():
            self.meta_step += 1
        return loss, qloss, out

    def loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """The meta-loss of a meta-batch, and the query accuracy (classifier) or query loss (regressor)."""
        loss, qloss, out = self.meta_losses(episode)
        if self.classifier:
            return loss, (out.argmax(-1) == episode.query_y).float().mean()
        return loss, qloss.mean()

    # ------------------------------------------------------------------ adaptation at test time

    def adapted_params(self, x: torch.Tensor, y: torch.Tensor, steps: int | None = None) -> Params:
        """Test-time adaptation of every task in ``x`` ``(T, S, ...)``: ``{name: (T, *shape)}``.

        The stored weights receive no gradient; the steps are first-order (nothing is differentiated
        through them) and use ``test_steps`` unless ``steps`` is given.
        """
        steps = self.test_steps if steps is None else steps
        lr = self.rate()
        if isinstance(lr, dict):
            lr = {n: v.detach() for n, v in lr.items()}
        self._with_classes(y)
        with torch.enable_grad():
            adapted, inner = adapted_params_tasks(self.net, self.start_params(True, y if self.classifier else None), x,
                                                  y, self.task_loss, steps, lr, True, self.trainable_names(),
                                                  self.resolve_batching(True, x.device), start=self.task_start)
        check_finite_inner(inner, lr)
        return {n: p.detach() for n, p in adapted.items()}

    def forward_with(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """The network with task weights ``{name: (T, *shape)}`` on inputs ``(T, B, ...)``."""
        return forward_tasks(self.net, params, x, self.resolve_batching(True, x.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The meta-learned initialisation itself (for a zero head: all-zero scores)."""
        return self.net(x)

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, steps: int | None = None) -> AdaptedModel:
        """The network adapted to one task's support set ``(S, *x)``, ``(S, ...)``: ``adapted(query_x) -> outputs``.

        ``steps`` gradient steps (default ``test_steps``) from the meta-learned weights, which are not changed.
        For a classifier the labels may be any integers; output column ``j`` is for the ``j``-th smallest.
        """
        classes = None
        if self.classifier:
            classes, support_y = check_task(support_x, support_y, support_x)
        elif not isinstance(support_x, torch.Tensor) or not isinstance(support_y, torch.Tensor) \
                or support_x.shape[0] != support_y.shape[0]:
            raise ValueError("support_x and support_y must be tensors with one target per example")
        else:
            check_input(support_x, "support_x")
            check_input(support_y, "support_y")
        check_weights(self, "this MAML")
        params = self.adapted_params(support_x[None], support_y[None], steps)
        return AdaptedModel(self.net, {n: p[0] for n, p in params.items()}, classes)

    def query_losses(self, episode: Episode, steps: int | None = None) -> torch.Tensor:
        """Per-task query loss ``(T,)`` after ``test_steps`` (or ``steps``) steps on each support set
        (for a regressor on ``"mse"``: the query mean squared error)."""
        params = self.adapted_params(episode.support_x, episode.support_y, steps)
        with torch.no_grad():
            out = self.forward_with(params, episode.query_x)
            return torch.stack([self._loss_fn(o, y) for o, y in zip(out, episode.query_y)])

    def validation_score(self, episode: Episode) -> tuple[float, dict[str, float]]:
        """Accuracy for a classifier; minus the query loss after adaptation for anything else."""
        if self.classifier:
            return super().validation_score(episode)
        loss = float(self.query_losses(episode).mean())
        key = "val_mse" if self.loss_name == "mse" else "val_loss"
        return -loss, {key: loss}

    def logits(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        """One task: adapt ``test_steps`` steps on the support set, then score the queries ``(Q, N)``.

        With a batch-statistics norm the query batch is normalised with its own statistics (transductive).
        """
        if not self.classifier:
            raise ValueError("logits() is for classifiers; this MAML is a regressor: use adapt() or query_losses()")
        classes, targets = check_task(support_x, support_y, query_x)
        params = self.adapted_params(support_x[None], targets[None])
        return self.forward_with(params, query_x[None])[0]

    @torch.no_grad()
    def init_body(self, backbone: Conv4) -> list[str]:
        """Start meta-training from a trained Conv-4 body (e.g. ``pretrained-omniglot``'s backbone).

        Copies the convolution weights and the normalisation's scale and shift (not running
        statistics: this network normalises with batch statistics); the head is left as it is.
        Returns the names of the parameters copied.
        """
        if not isinstance(self.net, Conv4):
            raise ValueError(f"init_body copies a Conv-4 body into a Conv-4 model; this model is a "
                             f"{type(self.net).__name__}: load your own weights into it before building MAML")
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

