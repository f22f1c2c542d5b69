"""What the gradient-based learners share: MAML and its variants, Proto-MAML, Reptile and Meta-LSTM.

Each adapts a network ``f_theta`` to a task from its support set ``S`` and scores the task's queries with the
adapted weights,

    ``theta' = U_S(theta)``,      ``scores = f_{theta'}(query_x)``,

and they differ only in the update ``U`` (gradient steps, or learned ones) and in what meta-training minimises.
:class:`GradientLearner` owns everything else: the network and its head (with ``zero_head``, a zero head built
for each task's classes), the task loss and its checks, the weights every task starts from,
:meth:`~GradientLearner.adapt`, :meth:`~GradientLearner.logits`, ``forward`` and
:meth:`~GradientLearner.init_body`.  A method implements ``adapted_params`` (its ``U`` on a meta-batch) and
``loss`` (its meta-training loss).

The network is any ``nn.Module``; its weights go through ``torch.func.functional_call``, so adapted weights are
ordinary tensors and no module is copied or changed per task.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..episodes import Episode
from ..fewshot import check_task
from ..finite import check_input
from ..models import Conv4
from ..validation import non_negative_int, positive_int
from .base import EpisodicMethod
from .head import check_class_scores, default_zero_head, find_head, zero_and_freeze_head
from .inner_loop import LossFn, Params, forward_tasks, params_of

LOSSES: dict[str, LossFn] = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}


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


def loss_name(loss: str | LossFn) -> str | dict[str, str]:
    """How a checkpoint stores ``loss``: its name in :data:`LOSSES`, or ``{"custom": name}`` for a callable."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {list(LOSSES)} or pass a callable "
                             "(output, target) -> scalar")
        return loss
    if not callable(loss):
        raise ValueError(f"loss must be a name ({list(LOSSES)}) or a callable (output, target) -> scalar; "
                         f"got {type(loss).__name__}")
    return {"custom": getattr(loss, "__name__", type(loss).__name__)}


def with_gradient(value: torch.Tensor, weights: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
    """A scalar equal to ``value`` whose gradient with respect to ``weights`` is ``grads``:
    ``value + sum_w <w, g_w> - (same, detached)``."""
    dot = sum((w * g).sum() for w, g in zip(weights, grads))
    return value.detach() + dot - dot.detach()


class TaskGradients:
    """A meta-batch's gradient ``g = sum_i grad_w L_i`` summed task by task, so that only one task's graph is
    alive at a time (as a loop that calls ``backward`` per task), and handed back as a loss: ``loss.backward()``
    gives the same result as one backward through every task's graph."""

    def __init__(self, module: nn.Module) -> None:
        self.weights = [p for p in module.parameters() if p.requires_grad]
        self.total = [torch.zeros_like(p) for p in self.weights]

    def add(self, task_loss: torch.Tensor) -> None:
        """Add one task's ``grad_w L_i`` (``task_loss`` is its share of the meta-loss), in place."""
        for t, g in zip(self.total, torch.autograd.grad(task_loss, self.weights, allow_unused=True)):
            if g is not None:
                t.add_(g)

    @staticmethod
    def combine(parts: list[TaskGradients]) -> TaskGradients:
        """The sums of several shares of a meta-batch (worker threads), added in the order given."""
        total = parts[0]
        for part in parts[1:]:
            for t, g in zip(total.total, part.total):
                t.add_(g)
        return total

    def loss(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` (the meta-loss) carrying the summed gradient (:func:`with_gradient`)."""
        return with_gradient(value, self.weights, self.total)


class AdaptedModel:
    """One task's adapted network, as :meth:`GradientLearner.adapt` returns it: ``adapted(x) -> outputs``.

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


class GradientLearner(EpisodicMethod):
    """Base of the learners that adapt a network to each task from its support set (see the module docstring).

    A subclass passes its constructor's arguments to ``__init__`` by keyword, in its signature's order (what a
    checkpoint stores to rebuild it).  The base checks and resolves those every learner takes: ``model`` (any
    ``nn.Module``; ``None`` gives the course's Conv-4, ``norm="batch"``, with a ``ways``-output head), ``ways``,
    ``inner_steps``, ``test_steps`` and ``head`` (the output layer's submodule name, stored as its parameter
    prefix, :func:`~metalearn_lite.algorithms.head.find_head`); and, where the method takes them, ``zero_head``
    (``None``: :func:`~metalearn_lite.algorithms.head.default_zero_head`; default ``False``) and ``loss``
    (``"cross_entropy"``, the default, ``"mse"`` or a callable ``(output, target) -> scalar``).
    """

    module_args = ("model",)
    adapts_with_gradients = True  # evaluation keeps autograd on: adaptation takes the network's gradients

    def __init__(self, **config: Any) -> None:
        loss = config.get("loss", "cross_entropy")
        model = self._learner(config["model"], config["ways"], loss)
        head = find_head(model, config["head"])
        zero_head = config.get("zero_head", False)
        if zero_head is None:
            zero_head = default_zero_head(model, head, loss)
        elif not isinstance(zero_head, bool):
            raise ValueError(f"zero_head must be True, False or None (automatic); got {zero_head!r}")
        resolved = {**config, "model": model, "head": head}  # the same keys, in the same order
        if "zero_head" in config:
            resolved["zero_head"] = zero_head
        if "loss" in config:
            resolved["loss"] = loss_name(loss)
        super().__init__(**resolved)
        for name in ("inner_steps", "test_steps"):
            non_negative_int(name, config[name])
        self.net, self.ways, self.head_prefix = model, config["ways"], head
        self.inner_steps, self.test_steps = config["inner_steps"], config["test_steps"]
        self.loss_name = loss if isinstance(loss, str) else None
        self._loss_fn: LossFn = LOSSES[loss] if isinstance(loss, str) else loss
        self.classifier = loss == "cross_entropy"
        self.zero_head = zero_head
        if zero_head:  # the stored head stays zero and is never meta-trained; each task builds its own
            if not self.classifier:
                raise ValueError(f"zero_head=True needs a classifier whose head is an nn.Linear; this model "
                                 f"regresses with loss {loss!r}")
            zero_and_freeze_head(self.net, head)

    @staticmethod
    def _learner(model: nn.Module | None, ways: int, loss: str | LossFn) -> nn.Module:
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

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EpisodicMethod:
        if isinstance(config.get("loss"), dict):
            raise ValueError(f"this {cls.name} was trained with your own loss function ({config['loss']['custom']}), "
                             "which a checkpoint cannot rebuild: build the method as for training and pass it, "
                             f"e.g. load_checkpoint(path, method={cls.__name__}(model, loss=your_loss))")
        return super().from_config(config)

    # ------------------------------------------------------------------ the network, its loss and its start

    def _zeroed(self, name: str) -> bool:
        return self.zero_head and name.startswith(self.head_prefix)

    def trainable_names(self) -> list[str]:
        """The parameters adaptation changes: the trainable ones, and a zero head."""
        return [n for n, p in self.net.named_parameters() if p.requires_grad or self._zeroed(n)]

    def task_classes(self, labels: torch.Tensor) -> int | None:
        """The number of classes ``N`` of tasks labelled ``0..N-1`` (``None`` for a regressor)."""
        return int(labels.max()) + 1 if self.classifier else None

    def task_loss(self, output: torch.Tensor, target: torch.Tensor, classes: int | None = None) -> torch.Tensor:
        """The loss of one task's outputs, with the mistakes that would silently give wrong results refused:
        a classifier's scores must have one column per class (``classes`` of them, when given), a regressor's
        outputs the targets' shape."""
        if self.classifier:
            check_class_scores(output, target, classes)
        elif self.loss_name == "mse" and output.shape != target.shape:
            raise ValueError(f"the model's outputs {tuple(output.shape)} and the targets {tuple(target.shape)} differ "
                             "in shape: the squared error would broadcast them; make the model output the targets' "
                             "shape (e.g. (B, 1) for (B, 1) targets)")
        return self._loss_fn(output, target)

    def task_loss_for(self, classes: int | None) -> LossFn:
        """:meth:`task_loss` for tasks of ``classes`` classes, as the inner loop calls it: ``(output, target)``."""
        return partial(self.task_loss, classes=classes)

    def start_params(self, detach: bool = False, ways: int | None = None) -> Params:
        """The weights every task starts from: ``{name: tensor}``.  With ``zero_head``, a fresh zero head with
        ``ways`` rows (default: the stored head's)."""
        params = params_of(self.net, detach=detach)
        if self.zero_head:
            params.update({n: p.new_zeros((p.shape[0] if ways is None else ways, *p.shape[1:]), requires_grad=True)
                           for n, p in params.items() if self._zeroed(n)})
        return params

    # ------------------------------------------------------------------ adaptation at test time

    def adapted_params(self, x: torch.Tensor, y: torch.Tensor, steps: int | None = None) -> Params:
        """The adapted weights ``{name: (T, *shape)}`` of every task of a meta-batch ``x`` ``(T, S, ...)``,
        ``y`` ``(T, S, ...)`` (class labels ``0..N-1``) after ``steps`` updates (default ``test_steps``), detached:
        the meta-learned weights receive no gradient."""
        raise NotImplementedError

    def _steps(self, steps: int | None) -> int:
        return self.test_steps if steps is None else non_negative_int("steps", steps)

    def resolve_batching(self, first_order: bool, device: torch.device) -> str:
        """How the tasks of a meta-batch run: here one after another (``"loop"``)."""
        return "loop"

    def forward_with(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """The network with task weights ``{name: (T, *shape)}`` on inputs ``(T, B, ...)``."""
        return forward_tasks(self.net, params, x, self.resolve_batching(True, x.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The meta-learned initial network itself (for a zero head: all-zero scores)."""
        return self.net(x)

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, steps: int | None = None) -> AdaptedModel:
        """The network adapted to one task's support set ``(S, *x)``, ``(S, ...)``: ``adapted(query_x) -> outputs``.

        ``steps`` updates (default ``test_steps``) from the meta-learned weights, which are not changed.  For a
        classifier the labels may be any integers; output column ``j`` is for the ``j``-th smallest.
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
        params = self.adapted_params(support_x[None], support_y[None], steps)
        return AdaptedModel(self.net, {n: p[0] for n, p in params.items()}, classes)

    def logits(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        """One task: adapt ``test_steps`` steps on the support set, then score the queries ``(Q, N)``.

        With a batch-statistics norm the query batch is normalised with its own statistics (transductive).
        """
        if not self.classifier:
            raise ValueError(f"logits() is for classifiers; this {type(self).__name__} is a regressor: use adapt() "
                             "or query_losses()")
        classes, targets = check_task(support_x, support_y, query_x)
        params = self.adapted_params(support_x[None], targets[None])
        return self.forward_with(params, query_x[None])[0]

    def query_losses(self, episode: Episode, steps: int | None = None) -> torch.Tensor:
        """Per-task query loss ``(T,)`` after ``test_steps`` (or ``steps``) updates on each support set
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

    @torch.no_grad()
    def init_body(self, backbone: Conv4) -> list[str]:
        """Start meta-training from a trained Conv-4 body (e.g. ``pretrained-omniglot``'s backbone).

        Copies the convolution weights and the normalisation's scale and shift (not running
        statistics: this network normalises with batch statistics); the head is left as it is.
        Returns the names of the parameters copied.
        """
        if not isinstance(self.net, Conv4):
            raise ValueError(f"init_body copies a Conv-4 body into a Conv-4 learner; this learner is a "
                             f"{type(self.net).__name__}: load your own weights into it before building "
                             f"{type(self).__name__}")
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
