"""Meta-LSTM (Ravi & Larochelle, ICLR 2017, "Optimization as a model for few-shot learning").

A gradient step looks like the cell update of an LSTM.  Write the learner's weights ``theta`` (all of
them, flattened into ``P`` coordinates) as the LSTM's cell state ``c``; then

    ``c_t = f_t ⊙ c_{t-1} + i_t ⊙ c~_t``,     ``c~_t = -grad_{theta_{t-1}} L_t``,     ``theta_t = c_t``   (1)

is plain SGD when the forget gate ``f_t = 1`` and the input gate ``i_t = alpha``.  Meta-LSTM *learns*
the gates: the input gate is a step size and the forget gate a decay of the weights, each chosen per
coordinate and per step from what the optimiser sees,

    ``i_t = sigmoid(W_I . [grad_t, L_t, theta_{t-1}, i_{t-1}] + b_I)``                          (2)
    ``f_t = sigmoid(W_F . [grad_t, L_t, theta_{t-1}, f_{t-1}] + b_F)``                          (3)

where ``L_t`` is the learner's loss on the support set at ``theta_{t-1}`` and ``grad_t`` its gradient.
The initial cell state ``c_0`` is the learner's initial weights, meta-learned with the gates, so the
method learns an initialisation (as MAML does) *and* an update rule.

As in the paper:

* **Coordinate-wise.** One small network runs on every coordinate of ``theta`` independently (its
  weights are shared by all ``P`` coordinates; each coordinate has its own state), so it works for a
  learner of any size.  In the code the coordinates are the rows of ``(P, ...)`` tensors.
* **Two layers.** ``grad_t`` and ``L_t`` enter (2) and (3) through a first, ordinary LSTM layer with
  ``lstm_hidden`` units (20 in the paper) whose input is the preprocessed pair, 4 numbers per
  coordinate; its output ``h_t`` ``(P, H)`` replaces them in the gates:
  ``i_t = sigmoid(h_t w_I^h + theta_{t-1} w_I^theta + i_{t-1} w_I^i + b_I)`` (and ``f_t`` alike).
* **Preprocessing** (Andrychowicz et al. 2016, ``p = 10``): a number ``x`` of any magnitude becomes
  ``(log|x| / p, sign x)`` if ``|x| >= e^-p`` and ``(-1, e^p x)`` otherwise
  (:func:`~metalearn_lite.algorithms.lstm.preprocess_gradient`, shared with the learned optimiser).
* **Initialisation.** Every weight of the meta-learner is drawn from ``U(-0.01, 0.01)``; the biases
  from ``b_F ~ U(4, 5)`` and ``b_I ~ U(-5, -4)`` (``forget_bias`` and ``input_bias`` ± 0.5), so
  training starts from gradient descent with a small step (``i ≈ 0.01``) and almost no decay
  (``f ≈ 0.99``).  The previous gates start at ``f_0 = i_0 = 0``, the first layer's state at zero.
* **No second derivatives.** The learner's gradients and losses are treated as constants: the
  meta-gradient flows through ``theta_{t-1}`` in (1)-(3) and through the meta-learner's own weights,
  but not through ``grad_t`` or ``L_t`` (which would need the learner's Hessian).

Meta-training runs ``inner_steps`` updates (1) on a task's support set (each on the whole support
set) and minimises the cross-entropy of the final learner ``theta_T`` on the task's queries, with
respect to ``c_0``, the first layer and the gates' weights.  At test time the same updates run
``test_steps`` times and classify the queries.

Two options the paper does not have, shared with the course's MAML
(:class:`~metalearn_lite.algorithms.gradient_learner.GradientLearner`):
``zero_head=True`` starts every task's output layer at zero (the zeroing trick of Kao et al. 2022: a
head built for each task's number of classes, never meta-trained), and :meth:`MetaLSTM.init_body`
starts meta-training from a pretrained Conv-4 body.  From a zero head the first update (1) gives the
head ``-i_1 ⊙ grad_1``, a prototype-like classifier scaled by the learned step sizes (the body's
gradient is zero at that step, since the scores do not depend on the features yet).

The learner is any classifier ``nn.Module``; its weights go through ``torch.func.functional_call``, so
the adapted weights are ordinary tensors and the module is never copied or changed per task.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.func import functional_call

from ..episodes import Episode
from ..fewshot import check_task
from ..validation import finite_number, int_at_least
from .gradient_learner import GradientLearner, TaskGradients
from .inner_loop import Params, over_tasks
from .lstm import preprocess_gradient


class MetaLSTMState(NamedTuple):
    """The meta-learner's state between two updates, one row per coordinate of ``theta``:
    the first layer's ``h`` and ``c`` ``(P, H)``, and the last forget and input gates ``(P,)``."""

    h: torch.Tensor
    c: torch.Tensor
    forget: torch.Tensor
    input: torch.Tensor


class Unrolled(NamedTuple):
    """What :meth:`MetaLSTM.unroll` returns: the final weights ``(P,)``, and per update ``t``, the support
    loss ``L_t`` (a 0-d tensor), the gradient ``grad_t`` ``(P,)`` (both constants) and the gates ``(P,)``."""

    theta: torch.Tensor
    losses: list[torch.Tensor]
    grads: list[torch.Tensor]
    forget: list[torch.Tensor]
    input: list[torch.Tensor]


class MetaLSTM(GradientLearner):
    """The Meta-LSTM of Ravi & Larochelle (2017) on any classifier (see the module docstring).

    Args:
        model: the learner, any classifier ``nn.Module`` with one output per class; ``None`` gives the
            course's Conv-4 (``norm="batch"``) with a ``ways``-output head.  Normalisation must not keep
            running statistics (every update would change them in place).
        ways: classes per task (the default model's outputs; a model's outputs must match the tasks'
            classes, except with ``zero_head``).
        lstm_hidden: units of the first LSTM layer (20 in the paper).
        inner_steps: updates (1) on the support set in meta-training (``T``).
        test_steps: updates at test time (default: ``inner_steps``).
        zero_head: start every task from a zero output layer built for its classes (needs an ``nn.Linear``
            head with a bias); the stored head stays zero and is not meta-trained.
        head: the output layer's submodule name (default: ``model.head``, else the last layer with weights).
        forget_bias, input_bias: centres of the gate biases' initial ranges (± 0.5): the paper's
            ``U(4, 5)`` and ``U(-5, -4)``.

    Example::

        method = MetaLSTM(my_net_with_5_outputs, ways=5, inner_steps=5)
        adapted = method.adapt(support_x, support_y)     # 5 learned updates on one task
        adapted(query_x)                                 # (Q, 5) scores
        trace = method.adaptation_trace(support_x, support_y)   # the gates and support losses, step by step
    """

    name = "meta_lstm"

    def __init__(self, model: nn.Module | None = None, ways: int = 5, lstm_hidden: int = 20, inner_steps: int = 5,
                 test_steps: int | None = None, zero_head: bool = False, head: str | None = None,
                 forget_bias: float = 4.5, input_bias: float = -4.5) -> None:
        int_at_least("lstm_hidden", lstm_hidden, 1)
        for key, v in (("forget_bias", forget_bias), ("input_bias", input_bias)):
            finite_number(key, v)
        super().__init__(model=model, ways=ways, lstm_hidden=lstm_hidden, inner_steps=inner_steps,
                         test_steps=inner_steps if test_steps is None else test_steps, zero_head=zero_head,
                         head=head, forget_bias=float(forget_bias), input_bias=float(input_bias))
        self.names = self.trainable_names()  # the coordinates of theta, in order
        # the meta-learner: the first layer on the preprocessed (gradient, loss), and the two gates, whose
        # weights act on [h (lstm_hidden), theta, previous gate]
        self.lstm = nn.LSTMCell(4, lstm_hidden)
        self.forget_w = nn.Parameter(torch.empty(lstm_hidden + 2))
        self.input_w = nn.Parameter(torch.empty(lstm_hidden + 2))
        self.forget_b = nn.Parameter(torch.empty(()))
        self.input_b = nn.Parameter(torch.empty(()))
        with torch.no_grad():
            for p in (*self.lstm.parameters(), self.forget_w, self.input_w):
                p.uniform_(-0.01, 0.01)
            self.forget_b.uniform_(forget_bias - 0.5, forget_bias + 0.5)
            self.input_b.uniform_(input_bias - 0.5, input_bias + 0.5)

    # ------------------------------------------------------------------ the learner's weights as one vector

    def start(self, ways: int | None = None) -> tuple[torch.Tensor, list[tuple[str, torch.Size]]]:
        """``c_0``: the meta-learned initial weights as one vector ``(P,)`` (differentiable), and the
        ``(name, shape)`` of each parameter in it, in order.  With ``zero_head`` the head is zeros with
        ``ways`` rows (default: the stored head's)."""
        params = self.start_params(ways=ways)
        return torch.cat([params[n].reshape(-1) for n in self.names]), [(n, params[n].shape) for n in self.names]

    def params(self, theta: torch.Tensor, shapes: list[tuple[str, torch.Size]]) -> Params:
        """The learner's ``{name: tensor}`` from a weight vector ``(P,)`` (views of it), with the parameters
        that are not adapted (``requires_grad=False``) as they are."""
        fixed = {n: p for n, p in self.net.named_parameters() if n not in self.names}
        pieces = theta.split([math.prod(s) for _, s in shapes])
        return {**fixed, **{n: t.view(s) for (n, s), t in zip(shapes, pieces)}}

    def support_gradient(self, theta: torch.Tensor, shapes: list[tuple[str, torch.Size]], x: torch.Tensor,
                         y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(grad_t, L_t)``: the gradient ``(P,)`` and the loss (0-d) of the learner at ``theta`` on ``x``,
        ``y`` (labels ``0..N-1``), both constants (detached: no second derivatives)."""
        with torch.enable_grad():
            leaf = theta.detach().requires_grad_(True)
            loss = self.task_loss(functional_call(self.net, self.params(leaf, shapes), (x,)), y, self.task_classes(y))
            (grad,) = torch.autograd.grad(loss, leaf)
        return grad, loss.detach()

    # ------------------------------------------------------------------ the meta-learner

    def update(self, theta: torch.Tensor, grad: torch.Tensor, loss: torch.Tensor,
               state: MetaLSTMState | None = None) -> tuple[torch.Tensor, MetaLSTMState]:
        """One update (1)-(3): ``theta_{t-1}`` ``(P,)``, ``grad_t`` ``(P,)``, ``L_t`` (0-d) -> ``theta_t`` ``(P,)``
        and the new state (``state=None``: the first update, from zero state and ``f_0 = i_0 = 0``)."""
        rows = theta.shape[0]
        if state is None:
            zeros = theta.new_zeros(rows, self.lstm.hidden_size)
            state = MetaLSTMState(zeros, zeros, theta.new_zeros(rows), theta.new_zeros(rows))
        x = torch.cat([preprocess_gradient(grad), preprocess_gradient(loss.reshape(())).expand(rows, 2)], 1)  # (P, 4)
        h, c = self.lstm(x, (state.h, state.c))  # (P, H)
        k = self.lstm.hidden_size
        forget = torch.sigmoid(h @ self.forget_w[:k] + theta * self.forget_w[k] + state.forget * self.forget_w[k + 1]
                               + self.forget_b)
        gate_in = torch.sigmoid(h @ self.input_w[:k] + theta * self.input_w[k] + state.input * self.input_w[k + 1]
                                + self.input_b)
        return forget * theta - gate_in * grad, MetaLSTMState(h, c, forget, gate_in)

    def unroll(self, theta: torch.Tensor, shapes: list[tuple[str, torch.Size]], x: torch.Tensor, y: torch.Tensor,
               steps: int, given: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> Unrolled:
        """``steps`` updates from ``theta`` ``(P,)`` on one task's support set ``x`` ``(S, ...)``, ``y`` ``(S,)``.

        The updates are differentiable with respect to ``theta`` and the meta-learner when autograd is on.
        ``given`` replaces the learner's ``(grad_t, L_t)`` of each step by fixed values (the tests use it to
        differentiate the unrolled updates numerically with the gradients held constant, as the
        meta-gradient treats them).
        """
        state, losses, grads, forget, gate_in = None, [], [], [], []
        for t in range(steps):
            grad, loss = given[t] if given is not None else self.support_gradient(theta, shapes, x, y)
            if not bool(torch.isfinite(loss)):
                raise FloatingPointError(
                    f"the learner's support loss is {float(loss)} before update {t + 1} of {steps}: "
                    + ("the meta-learned initial weights diverged; lower the learning rate (--lr)" if t == 0 else
                       "the learned updates diverged; lower the learning rate (--lr), clip the gradients "
                       "(grad_clip) or take fewer steps")
                )
            theta, state = self.update(theta, grad, loss, state)
            losses.append(loss)
            grads.append(grad)
            forget.append(state.forget)
            gate_in.append(state.input)
        return Unrolled(theta, losses, grads, forget, gate_in)

    # ------------------------------------------------------------------ meta-training

    def task_query_loss(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor,
                        query_y: torch.Tensor, steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One task with labels ``0..N-1``: the query loss after ``steps`` (default ``inner_steps``) updates from
        ``c_0`` (differentiable when autograd is on) and the query scores ``(Q, N)``."""
        ways = self.task_classes(support_y)
        theta, shapes = self.start(ways)
        final = self.unroll(theta, shapes, support_x, support_y, self.inner_steps if steps is None else steps).theta
        out = functional_call(self.net, self.params(final, shapes), (query_x,))
        return self.task_loss(out, query_y, ways), out

    def loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean query loss of a meta-batch after ``inner_steps`` updates per task, and the query accuracy.

        Each task's meta-gradient is computed as soon as the task is done, so only one task's graph is
        alive at a time; the returned loss carries their mean (``loss.backward()`` gives the same result
        as one backward through every task's graph).
        """
        if not isinstance(episode, Episode):
            raise ValueError(f"loss() takes a meta-batch (an Episode, e.g. EpisodeSampler(...).sample(4)); "
                             f"got {type(episode).__name__}")
        tasks = episode.num_tasks
        grads = TaskGradients(self) if torch.is_grad_enabled() else None
        losses, correct = [], []
        for i in range(tasks):
            q, out = self.task_query_loss(episode.support_x[i], episode.support_y[i], episode.query_x[i],
                                          episode.query_y[i])
            if not bool(torch.isfinite(q)):
                raise FloatingPointError(f"the query loss after the learned updates is {float(q)}: lower the learning "
                                         "rate (--lr), clip the gradients (grad_clip) or take fewer steps")
            if grads is not None:
                grads.add(q / tasks)
            losses.append(q.detach())
            correct.append((out.detach().argmax(-1) == episode.query_y[i]).float().mean())
        mean = torch.stack(losses).mean()
        return mean if grads is None else grads.loss(mean), torch.stack(correct).mean()

    # ------------------------------------------------------------------ adaptation at test time

    def adapted_params(self, x: torch.Tensor, y: torch.Tensor, steps: int | None = None) -> Params:
        """The learner's weights ``{name: (T, *shape)}`` after ``steps`` (default ``test_steps``) updates on each
        task of ``x`` ``(T, S, ...)``, ``y`` ``(T, S)`` (labels ``0..N-1``); nothing is differentiated, the
        meta-learned weights are unchanged."""
        steps = self._steps(steps)

        def one(support_x: torch.Tensor, targets: torch.Tensor, functional: bool) -> Params:
            theta, shapes = self.start(self.task_classes(targets))
            return self.params(self.unroll(theta, shapes, support_x, targets, steps).theta, shapes)

        with torch.no_grad():
            return over_tasks(one, "loop", x, y)

    def adaptation_trace(self, support_x: torch.Tensor, support_y: torch.Tensor,
                         steps: int | None = None) -> dict[str, Any]:
        """What the meta-learner does on one task, update by update (detached, on the CPU).

        Returns a dict with ``"input_gate"`` and ``"forget_gate"`` ``(steps, P)`` (the gates of every
        coordinate at each update), ``"loss"`` ``(steps + 1,)`` (the support loss before each update and
        after the last), ``"grad_norm"`` ``(steps,)`` and ``"parameters"``: ``[(name, count), ...]``, the
        learner's parameters in the order of the ``P`` coordinates (to split the gates by layer).
        """
        _, targets = check_task(support_x, support_y, support_x)
        steps = self._steps(steps)
        with torch.no_grad():
            theta, shapes = self.start(self.task_classes(targets))
            run = self.unroll(theta, shapes, support_x, targets, steps)
            _, last = self.support_gradient(run.theta, shapes, support_x, targets)
        empty = theta.new_zeros(0, theta.numel())
        return {
            "input_gate": (torch.stack(run.input) if steps else empty).cpu(),
            "forget_gate": (torch.stack(run.forget) if steps else empty).cpu(),
            "loss": torch.stack([*run.losses, last]).cpu(),
            "grad_norm": torch.stack([g.norm() for g in run.grads]).cpu() if steps else theta.new_zeros(0).cpu(),
            "parameters": [(n, math.prod(s)) for n, s in shapes],
        }
