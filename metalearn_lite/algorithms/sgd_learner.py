"""Learners whose update is plain gradient descent on the support loss: MAML and its variants, Proto-MAML, Reptile.

    ``U_S(theta)``:  ``theta_{j+1} = theta_j - alpha * grad L_S(theta_j)``,   ``inner_steps`` steps in meta-training,
    ``test_steps`` at test time,

with ``alpha`` = ``inner_lr`` (:meth:`SGDLearner.rate`; Meta-SGD learns it).  The steps are
:mod:`~metalearn_lite.algorithms.inner_loop`'s; the tasks of a meta-batch run under ``vmap`` or in a loop
(``batching``, :meth:`SGDLearner.resolve_batching`).
"""

from __future__ import annotations

from typing import Any

import torch

from ..finite import check_weights
from ..models import MLP, Conv4
from .gradient_learner import AdaptedModel, GradientLearner
from .inner_loop import BATCHING, Params, Rate, adapted_params_tasks, check_batching, check_finite_inner
from .task_threads import check_threads


class SGDLearner(GradientLearner):
    """A :class:`~metalearn_lite.algorithms.gradient_learner.GradientLearner` that adapts with gradient steps.

    Besides the base's arguments the method takes ``inner_lr`` (``alpha`` > 0) and ``batching`` (``"auto"``,
    ``"vmap"``, ``"loop"`` or ``"threads"`` over the tasks of a meta-batch).
    """

    def __init__(self, **config: Any) -> None:
        if not config["inner_lr"] > 0:
            raise ValueError(f"inner_lr must be > 0; got {config['inner_lr']}")
        if config["batching"] not in (*BATCHING, "auto"):
            raise ValueError(f"batching must be 'auto' or one of {list(BATCHING)}; got {config['batching']!r}")
        super().__init__(**config)
        self.inner_lr, self.batching = config["inner_lr"], config["batching"]
        # meta-steps trained so far (a buffer, so that a resumed run knows where a warm-up ended)
        self.register_buffer("meta_step", torch.zeros((), dtype=torch.long))

    def count_meta_step(self) -> None:
        """One more meta-step done (when training with autograd on)."""
        if self.training and torch.is_grad_enabled():
            self.meta_step += 1

    def rate(self) -> Rate:
        """The inner learning rate ``alpha``: ``inner_lr``."""
        return self.inner_lr

    def resolve_batching(self, first_order: bool, device: torch.device) -> str:
        """``auto``: measured per network (``benchmarks/maml_step.py``): on a CPU, ``vmap`` for the small
        MLP (about 7x faster than a loop) and a loop for Conv-4; on a GPU ``vmap``.  Your own network runs
        in a loop unless you ask for ``vmap`` (not every module can run under it).  ``"threads"`` (the loop on
        worker threads, :mod:`~metalearn_lite.algorithms.task_threads`) is never chosen for you: it changes the
        float rounding of training that the shipped checkpoints' commands reproduce."""
        if self.batching == "threads":
            check_threads(self.net, device)
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

    def task_start(self, params: Params, support_x: torch.Tensor, support_y: torch.Tensor) -> Params:
        """One task's starting weights from :meth:`start_params` and its support set ``(S, ...)``: the same for
        every task here; Proto-MAML overrides it to build the head from the support prototypes."""
        return params

    def adapted_params(self, x: torch.Tensor, y: torch.Tensor, steps: int | None = None) -> Params:
        """Test-time adaptation of every task in ``x`` ``(T, S, ...)``: ``{name: (T, *shape)}``.

        The stored weights receive no gradient; the steps are first-order (nothing is differentiated
        through them) and use ``test_steps`` unless ``steps`` is given.
        """
        steps = self._steps(steps)
        lr = self.rate()
        if isinstance(lr, dict):
            lr = {n: v.detach() for n, v in lr.items()}
        ways = self.task_classes(y)
        with torch.enable_grad():
            adapted, inner = adapted_params_tasks(self.net, self.start_params(True, ways), x, y,
                                                  self.task_loss_for(ways), steps, lr, True, self.trainable_names(),
                                                  self.resolve_batching(True, x.device), start=self.task_start)
        check_finite_inner(inner, lr)
        return {n: p.detach() for n, p in adapted.items()}

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, steps: int | None = None) -> AdaptedModel:
        # broken weights are named as such, before the inner loop would blame its steps for them
        check_weights(self, f"this {type(self).__name__}")
        return super().adapt(support_x, support_y, steps)
