"""Proto-MAML (Triantafillou et al., 2020, "Meta-Dataset"): MAML whose head starts from the support prototypes.

MAML's head is a linear layer ``s_k(x) = w_k . phi(x) + b_k`` on the body's features ``phi``.  A ProtoNet with
the squared Euclidean distance is such a layer too:

    ``-||phi(x) - c_k||^2 = 2 c_k . phi(x) - ||c_k||^2 - ||phi(x)||^2``,

and the last term is the same for every class, so it does not change the softmax.  Proto-MAML therefore starts
each task's head from the prototypes ``c_k = 1/|S_k| sum_{i: y_i = k} phi(x_i)`` of its support set,

    ``W_k = 2 c_k``,   ``b_k = -||c_k||^2``                                  ``W`` ``(N, F)``, ``b`` ``(N,)``,

(before any step it classifies like ProtoNet on the body's features), then adapts body and head with
MAML's inner loop, whose steps take each weight's partial derivative of the support loss (the head's start is
held fixed within a step, as any parameter is).  The meta-gradient flows through the initialisation: ``c_k``
depends on the body's weights, so the query loss reaches them both through the adapted weights and through the
head's start (in first-order mode too; there only the Hessian terms of the inner steps are dropped).
It answers the problem the zeroing trick (``MAML(zero_head=True)``) also addresses: a meta-learned head
carries a bias for label positions that are shuffled in every task.  Like the zeroing trick, the head is built
per task, for any number of classes; the stored head is never trained.

Everything else is MAML's (inner steps, first order, Meta-SGD, ANIL, batching); only
:meth:`ProtoMAML.task_start` differs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..fewshot import class_means
from .head import find_head, head_layer, is_linear_with_bias
from .inner_loop import Params, functional_call
from .maml import MAML
from .task_threads import worker_net


def check_linear_head(model: nn.Module, head: str | None) -> None:
    """``ValueError`` unless ``model``'s head (as :func:`~metalearn_lite.algorithms.head.find_head` finds it) is an
    ``nn.Linear`` with a bias, which the prototypes can fill."""
    prefix = find_head(model, head)
    layer = head_layer(model, prefix)
    if not is_linear_with_bias(layer):
        raise ValueError(f"Proto-MAML builds each task's head from the support prototypes (W = 2c, b = -|c|^2), so "
                         f"the model's head ({prefix.rstrip('.') or 'the model'}) must be an nn.Linear with a bias; "
                         f"got {type(layer).__name__}: end the model with one, or name it with head=NAME")


class ProtoMAML(MAML):
    """Proto-MAML on any classifier whose last layer is an ``nn.Linear`` (see the module docstring).

    Args:
        model: any ``nn.Module`` whose head (``model.head``, the last layer with weights, or ``head=NAME``) is an
            ``nn.Linear`` with a bias; its weights are never used (every task builds its own head).  ``None``
            gives the course's Conv-4 (``norm="batch"``) with a linear head.
        ways: the default model's head size (any number of classes works).
        **options: MAML's ``inner_lr``, ``inner_steps``, ``test_steps``, ``first_order``, ``first_order_warmup``,
            ``meta_sgd``, ``anil``, ``head`` and ``batching`` (:class:`~metalearn_lite.MAML`); the head and
            the loss (cross-entropy) are Proto-MAML's own.

    Example::

        method = ProtoMAML(my_net, inner_lr=0.4, first_order=True)
        method.predict(support_x, support_y, query_x)
    """

    name = "proto_maml"

    def __init__(self, model: nn.Module | None = None, ways: int = 5, **options: Any) -> None:
        for key in ("zero_head", "loss"):
            if key in options:
                raise ValueError(f"Proto-MAML sets {key} itself (its head starts from the support prototypes and "
                                 "it classifies with cross-entropy); leave it out, or use MAML")
        if isinstance(model, nn.Module):
            check_linear_head(model, options.get("head"))
        super().__init__(model, ways=ways, zero_head=True, loss="cross_entropy", **options)
        del self.config["zero_head"], self.config["loss"]  # what rebuilds it is Proto-MAML's own arguments

    def head_input(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """``phi(x)``: what the network with weights ``params`` feeds its head for inputs ``x`` ``(S, ...)`` ->
        ``(S, F)``."""
        net = worker_net(self.net)  # with batching="threads", this worker's copy
        layer = head_layer(net, self.head_prefix)
        seen: list[torch.Tensor] = []
        handle = layer.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
        try:
            functional_call(net, params, (x,))
        finally:
            handle.remove()
        return seen[0]

    def task_start(self, params: Params, support_x: torch.Tensor, support_y: torch.Tensor) -> Params:
        """The head's start from the prototypes of the support features: ``W_k = 2 c_k``, ``b_k = -||c_k||^2``.

        ``params`` hold a zero head with one row per class (:meth:`~metalearn_lite.MAML.start_params`); labels
        ``(S,)`` are ``0..N-1``.
        """
        weight, bias = self.head_prefix + "weight", self.head_prefix + "bias"
        c = class_means(self.head_input(params, support_x), support_y, params[weight].shape[0])  # (N, F)
        # the inner steps take partial derivatives (the head's start held fixed, as for any parameter): they
        # see aliases of the other weights, through which the start does not run; the meta-gradient still does
        aliases = {n: p.view_as(p) for n, p in params.items()}
        return {**aliases, weight: 2 * c, bias: -(c * c).sum(-1)}
