"""A learned optimiser: "Learning to learn by gradient descent by gradient descent" (Andrychowicz et al., 2016).

A hand-designed optimiser is a fixed rule that turns the gradients seen so far into an update (SGD:
``u_t = -alpha grad_t``; momentum, RMSprop and Adam keep running averages of the gradients).  Here the
rule is a recurrent network ``m`` with weights ``phi``: the optimisee's parameters ``theta`` follow

    ``theta_{t+1} = theta_t + g_t``,   ``(g_t, h_{t+1}) = m(grad_t, h_t; phi)``,   ``grad_t = grad f(theta_t)``,

and ``phi`` is itself trained by gradient descent on the *meta-loss*, the optimisee's losses summed
along the trajectory, in expectation over a distribution of functions ``f``:

    ``L(phi) = E_f [ sum_{t=1}^{T} f(theta_t) ]``      (every step weighted 1, as in the paper).

**Coordinate-wise.** One small LSTM (two layers of 20 units), with the same weights ``phi``, runs on
every coordinate of ``theta`` separately, each coordinate with its own hidden and cell state: the
rule has a few thousand weights whatever the size of the optimisee, and does not depend on the
order of the parameters.  Each layer is the ordinary LSTM cell (:func:`lstm_cell`):

    ``i, f, o = sigma(W_{i,f,o} [x, h] + b_{i,f,o})``,   ``c~ = tanh(W_c [x, h] + b_c)``,
    ``c' = f * c + i * c~``,   ``h' = o * tanh(c')``,

and a linear layer reads the update out of the top layer's ``h'``, multiplied by ``output_scale``
(0.1) so that the untrained rule starts with small steps.

**Preprocessing** (the paper's appendix A).  Gradients span many orders of magnitude, which a
network with saturating units reads badly; each coordinate's gradient becomes two inputs

    ``grad -> ( log|grad| / p,  sgn(grad) )``   if ``|grad| >= e^{-p}``,
    ``grad -> ( -1,             e^p grad  )``   otherwise,

with ``p = 10``: the first input is a scale on a logarithmic axis, the second a direction (the two
branches agree at ``|grad| = e^{-p}``).

**Meta-training** (:func:`meta_train`) unrolls the optimisee for ``unroll`` steps (20), sums its
losses, back-propagates into ``phi`` through the unrolled steps (truncated back-propagation through
time) and takes an Adam step; the next ``unroll`` steps continue from where the last ones stopped,
until ``horizon`` steps (100), then new functions are drawn.  As in the paper the second derivatives
are dropped: the optimisee's gradient ``grad_t`` enters the LSTM as a constant
(``d grad_t / d phi`` taken as 0), so no Hessian of ``f`` is ever formed; ``second_order=True`` in
:func:`unroll` keeps them, for comparison.

Hand-designed baselines (:data:`HAND_DESIGNED`: SGD, momentum, RMSprop, Adam, PyTorch's own classes)
get their learning rate tuned on training functions by :func:`tune_learning_rate`, and every
optimiser, learned or not, runs through the same :func:`optimize`.

Example::

    problems = QuadraticProblems(seed=0)
    lstm = LearnedOptimizer()
    meta_train(lstm, problems, iterations=300)
    test = QuadraticProblems(seed=2).sample(100)
    optimize(test, lstm, steps=100)[-1].mean()                     # mean loss after 100 steps
    optimize(test, hand_designed("adam", lr=0.1), steps=100)[-1].mean()
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from ..validation import int_at_least, positive_number
from ..validation import int_at_least as _check_steps  # the name lesson 07 prints (in unroll's source)
from .lstm import lstm_cell, preprocess_gradient

#: per LSTM layer, ``(h, c)``, each ``(*coordinates, hidden)``
State = tuple[tuple[torch.Tensor, torch.Tensor], ...]


class Problem(Protocol):
    """What :func:`optimize` and :func:`meta_train` need of a batch of ``n`` problems with ``P`` parameters
    each (e.g. :class:`~metalearn_lite.datasets.quadratics.QuadraticBatch`)."""

    theta0: torch.Tensor  # (n, P)

    def loss(self, theta: torch.Tensor) -> torch.Tensor:  # (n, P) -> (n,)
        ...


class UpdateRule(Protocol):
    """Anything with ``step(grad, state) -> (update, state)``; ``state`` is ``None`` at the first step."""

    def step(self, grad: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        ...


# ------------------------------------------------------------------ the pieces


def detach_state(state: State | None) -> State | None:
    """The same state cut from the graph (where truncated back-propagation through time stops)."""
    if state is None:
        return None
    return tuple((h.detach(), c.detach()) for h, c in state)


# ------------------------------------------------------------------ the optimiser


class LearnedOptimizer(nn.Module):
    """The coordinate-wise LSTM optimiser of Andrychowicz et al. (2016): see the module docstring.

    Args:
        hidden: units per LSTM layer (20 in the paper).
        layers: LSTM layers (2).
        p: the preprocessing constant (10); ``preprocess=False`` feeds the raw gradient instead.
        output_scale: the read-out is multiplied by this (0.1).

    ``step(grad, state)`` maps a gradient of any shape ``(...)`` to an update of the same shape and the
    next state (``None`` to start).  The weights are ``cells.k`` (``Linear(inputs + hidden, 4 hidden)``
    of layer ``k``) and ``head`` (``Linear(hidden, 1)``): about 5,000 numbers with the defaults.

    Example::

        update, state = lstm.step(grad, None)        # grad (n, P) -> update (n, P)
        theta = theta + update
    """

    def __init__(self, hidden: int = 20, layers: int = 2, p: float = 10.0, output_scale: float = 0.1,
                 preprocess: bool = True) -> None:
        super().__init__()
        for name, v in (("hidden", hidden), ("layers", layers)):
            int_at_least(name, v, 1)
        if not p > 0:
            raise ValueError(f"p must be > 0; got {p}")
        positive_number("output_scale", output_scale)
        self.config = {"hidden": hidden, "layers": layers, "p": float(p), "output_scale": float(output_scale),
                       "preprocess": bool(preprocess)}
        self.hidden, self.p, self.output_scale, self.preprocess = hidden, float(p), float(output_scale), preprocess
        inputs = 2 if preprocess else 1
        self.cells = nn.ModuleList(nn.Linear((inputs if k == 0 else hidden) + hidden, 4 * hidden)
                                   for k in range(layers))
        self.head = nn.Linear(hidden, 1)

    def initial_state(self, grad: torch.Tensor) -> State:
        """Zero ``(h, c)`` for every layer, ``(*grad.shape, hidden)``, on ``grad``'s device and dtype."""
        zeros = grad.new_zeros(*grad.shape, self.hidden)
        return tuple((zeros, zeros) for _ in self.cells)

    def _check_state(self, grad: torch.Tensor, state: State) -> None:
        want = (*grad.shape, self.hidden)
        if (not isinstance(state, tuple) or len(state) != len(self.cells)
                or any(len(s) != 2 or tuple(t.shape) != want for s in state for t in s)):
            raise ValueError(f"state must be {len(self.cells)} pairs (h, c) of shape {want} for a gradient of "
                             f"shape {tuple(grad.shape)} (pass None at the first step); got "
                             f"{[tuple(t.shape) for s in state for t in s] if isinstance(state, tuple) else state}")

    def step(self, grad: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """``grad`` ``(...)`` -> ``(update (...), new state)``; every coordinate runs through the same LSTM."""
        if not isinstance(grad, torch.Tensor) or not grad.dtype.is_floating_point:
            raise ValueError(f"grad must be a floating-point tensor; got {type(grad).__name__}"
                             f"{'' if not isinstance(grad, torch.Tensor) else ' of dtype ' + str(grad.dtype)}")
        if state is None:
            state = self.initial_state(grad)
        self._check_state(grad, state)
        x = preprocess_gradient(grad, self.p) if self.preprocess else grad.unsqueeze(-1)
        new = []
        for layer, (h, c) in zip(self.cells, state):
            h, c = lstm_cell(x, h, c, layer)
            new.append((h, c))
            x = h
        return self.output_scale * self.head(x).squeeze(-1), tuple(new)

    def forward(self, grad: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        return self.step(grad, state)


# ------------------------------------------------------------------ hand-designed baselines

#: name -> (PyTorch optimiser class, its fixed options); the learning rate is tuned
HAND_DESIGNED: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "sgd": (torch.optim.SGD, {}),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "adam": (torch.optim.Adam, {}),
}

#: the learning rates :func:`tune_learning_rate` tries by default: 10^-4 ... 10^1.5, four per decade
LR_GRID: tuple[float, ...] = tuple(10 ** (k / 4) for k in range(-16, 7))


def hand_designed(name: str, lr: float) -> Callable[[list[torch.Tensor]], torch.optim.Optimizer]:
    """A factory ``params -> torch optimiser`` for one of :data:`HAND_DESIGNED` at learning rate ``lr``."""
    if name not in HAND_DESIGNED:
        raise ValueError(f"unknown optimiser {name!r}; choose one of {list(HAND_DESIGNED)}")
    positive_number("lr", lr)
    cls, options = HAND_DESIGNED[name]
    return functools.partial(cls, lr=lr, **options)


def _check_problem(problem: Any) -> torch.Tensor:
    theta0 = getattr(problem, "theta0", None)
    if not callable(getattr(problem, "loss", None)) or not isinstance(theta0, torch.Tensor) or theta0.dim() != 2:
        raise ValueError(f"problem must be a batch of problems with theta0 (n, P) and loss(theta) -> (n,), e.g. "
                         f"QuadraticProblems().sample(n); got {type(problem).__name__}")
    if not theta0.dtype.is_floating_point:
        raise ValueError(f"the problems' theta0 must be floating point; got {theta0.dtype}")
    return theta0


def optimize(problem: Problem, optimizer: UpdateRule | Callable[..., torch.optim.Optimizer],
             steps: int) -> torch.Tensor:
    """Run ``optimizer`` for ``steps`` steps on every problem of the batch; returns the losses ``(steps + 1, n)``.

    Row ``t`` holds each problem's loss at ``theta_t`` (row 0: at ``theta0``).  ``optimizer`` is either

    * an update rule with ``step(grad, state) -> (update, state)``, e.g. a :class:`LearnedOptimizer`
      (run without building a graph: this is evaluation, not meta-training), or
    * a factory ``params -> torch.optim.Optimizer``, e.g. ``hand_designed("adam", 0.1)``,
      ``functools.partial(torch.optim.SGD, lr=0.01)`` or ``torch.optim.Adam`` itself.

    All problems sit in one ``(n, P)`` tensor; for a coordinate-wise optimiser (all of the above) that
    is exactly ``n`` separate runs.  A loss that overflows is recorded as ``inf`` or ``nan``, not raised.
    """
    theta0 = _check_problem(problem)
    _check_steps("steps", steps, 0)
    rule = not isinstance(optimizer, type) and callable(getattr(optimizer, "step", None))
    if not rule and not callable(optimizer):
        raise ValueError(f"optimizer must have step(grad, state) (e.g. a LearnedOptimizer) or be a factory "
                         f"params -> torch.optim.Optimizer (e.g. hand_designed('adam', 0.1)); got "
                         f"{type(optimizer).__name__}")
    losses = []
    if rule:
        theta, state = theta0.detach().clone(), None
        for _ in range(steps):
            leaf = theta.requires_grad_(True)
            with torch.enable_grad():
                loss = problem.loss(leaf)
                (grad,) = torch.autograd.grad(loss.sum(), leaf)
            losses.append(loss.detach())
            with torch.no_grad():
                update, state = optimizer.step(grad, state)
                theta = theta.detach() + update
    else:
        theta = theta0.detach().clone().requires_grad_(True)
        opt = optimizer([theta])
        if not isinstance(opt, torch.optim.Optimizer):
            raise ValueError(f"the optimizer factory returned a {type(opt).__name__}, not a torch.optim.Optimizer")
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss = problem.loss(theta)
                loss.sum().backward()
            losses.append(loss.detach())
            opt.step()
    with torch.no_grad():
        losses.append(problem.loss(theta.detach()))
    return torch.stack(losses)


@dataclass(frozen=True)
class TunedRate:
    """The outcome of :func:`tune_learning_rate`: the best ``lr`` and the score of every rate tried
    (mean loss at the last step over the tuning problems; ``inf`` where any run diverged)."""

    name: str
    lr: float
    scores: dict[float, float] = field(default_factory=dict)

    @property
    def on_edge(self) -> bool:
        """Whether the best rate is the smallest or largest of the grid (then widen the grid)."""
        return self.lr in (min(self.scores), max(self.scores))


def tune_learning_rate(name: str, problem: Problem, steps: int = 100, grid: Iterable[float] = LR_GRID) -> TunedRate:
    """The learning rate of a hand-designed optimiser (:data:`HAND_DESIGNED`) with the lowest mean loss after
    ``steps`` steps on the (training) problems ``problem``, from ``grid`` (a log grid by default)."""
    grid = sorted(float(r) for r in grid)
    if not grid:
        raise ValueError("grid must hold at least one learning rate")
    scores = {}
    for lr in grid:
        final = optimize(problem, hand_designed(name, lr), steps)[-1]
        scores[lr] = float(final.mean()) if bool(torch.isfinite(final).all()) else math.inf
    best = min(grid, key=lambda r: scores[r])
    if not math.isfinite(scores[best]):
        raise ValueError(f"{name} diverged at every learning rate of the grid {grid}: try smaller rates")
    return TunedRate(name, best, scores)


# ------------------------------------------------------------------ meta-training


def unroll(optimizer: LearnedOptimizer, problem: Problem, theta: torch.Tensor, state: State | None, steps: int,
           second_order: bool = False) -> tuple[torch.Tensor, torch.Tensor, State]:
    """``steps`` steps of the learned rule from ``theta`` ``(n, P)``, recorded for back-propagation.

    Returns the losses ``(steps, n)`` at ``theta_1 ... theta_steps`` (still in the graph: their sum is the
    meta-loss of the segment), the last ``theta`` and the last state.  The optimisee's gradients enter
    as constants unless ``second_order`` (then ``d grad_t / d phi`` is kept through Hessian-vector
    products of ``f``).
    """
    _check_steps("steps", steps, 1)
    if not theta.requires_grad:
        theta = theta.detach().requires_grad_(True)
    loss = problem.loss(theta)
    losses = []
    for _ in range(steps):
        # the gradient at theta_t, from the same forward pass whose loss is in the meta-loss
        (grad,) = torch.autograd.grad(loss.sum(), theta, retain_graph=True, create_graph=second_order)
        update, state = optimizer.step(grad, state)
        theta = theta + update
        loss = problem.loss(theta)
        losses.append(loss)
    return torch.stack(losses), theta, state


def _on(problem: Any, device: torch.device) -> Any:
    """``problem`` moved to ``device`` if it is elsewhere and knows how to move (``.to``)."""
    if problem.theta0.device != device and callable(getattr(problem, "to", None)):
        return problem.to(device)
    return problem


@dataclass
class MetaTrainResult:
    """What :func:`meta_train` did: ``history`` holds one dict per validation (``iteration``, ``train_loss``:
    mean meta-loss per step since the last validation, ``val_loss``: mean loss after ``horizon`` steps on
    the validation problems, ``minutes``); ``best_iteration`` is where the kept weights come from;
    ``minutes`` is wall-clock time, ``cpu_minutes`` the process's CPU time (all its threads)."""

    history: list[dict[str, float]]
    iterations: int
    minutes: float
    cpu_minutes: float
    best_iteration: int
    best_val: float


def meta_train(optimizer: LearnedOptimizer, problems: Any, iterations: int, batch: int = 128, unroll_steps: int = 20,
               horizon: int = 100, lr: float = 3e-3, val_problem: Problem | None = None, val_every: int = 50,
               time_limit_s: float | None = None, grad_clip: float = 1.0,
               callback: Callable[[dict[str, float]], None] | None = None) -> MetaTrainResult:
    """Meta-train ``optimizer`` in place by truncated back-propagation through time (the module docstring).

    Each iteration draws ``batch`` problems from ``problems`` (anything with ``sample(n)``, e.g.
    :class:`~metalearn_lite.datasets.quadratics.QuadraticProblems`), optimises them for ``horizon`` steps
    in segments of ``unroll_steps``, and after each segment takes one Adam step (rate ``lr``, gradient norm
    clipped to ``grad_clip``; 0 turns clipping off) on the segment's meta-loss, the per-problem sum of the
    losses over the segment averaged over the batch.  Problems are moved to the optimiser's device.

    Every ``val_every`` iterations (and at the end) the rule runs ``horizon`` steps on ``val_problem``
    without training, and the weights with the lowest mean final loss are kept (the paper's early
    stopping): ``optimizer`` holds them when this returns.  Without ``val_problem`` the last weights are
    kept.  ``time_limit_s`` stops early after that many seconds.  Randomness comes only from
    ``problems`` (and the optimiser's initial weights): the same seeds give the same run.
    """
    _check_steps("iterations", iterations, 1)
    for name, v in (("batch", batch), ("unroll_steps", unroll_steps), ("horizon", horizon), ("val_every", val_every)):
        _check_steps(name, v, 1)
    if horizon % unroll_steps:
        raise ValueError(f"horizon ({horizon}) must be a multiple of unroll_steps ({unroll_steps})")
    if not callable(getattr(problems, "sample", None)):
        raise ValueError(f"problems must have sample(n) (e.g. QuadraticProblems(seed=0)); got "
                         f"{type(problems).__name__}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0; got {lr}")
    opt = torch.optim.Adam(optimizer.parameters(), lr=lr)
    params = list(optimizer.parameters())
    device = params[0].device
    if val_problem is not None:
        val_problem = _on(val_problem, device)
    start, cpu_start = time.perf_counter(), time.process_time()
    history: list[dict[str, float]] = []
    best_val, best_iteration, best_state = math.inf, 0, None
    running, count, done = 0.0, 0, 0

    def validate(iteration: int) -> None:
        nonlocal best_val, best_iteration, best_state, running, count
        row = {"iteration": iteration, "train_loss": running / max(count, 1),
               "minutes": (time.perf_counter() - start) / 60}
        if val_problem is not None:
            final = optimize(val_problem, optimizer, horizon)[-1]
            row["val_loss"] = float(final.mean()) if bool(torch.isfinite(final).all()) else math.inf
            if row["val_loss"] < best_val:
                best_val, best_iteration = row["val_loss"], iteration
                best_state = copy.deepcopy(optimizer.state_dict())
        history.append(row)
        running, count = 0.0, 0
        if callback is not None:
            callback(row)

    for it in range(1, iterations + 1):
        problem = _on(problems.sample(batch), device)
        theta, state = problem.theta0, None
        for _ in range(horizon // unroll_steps):
            losses, theta, state = unroll(optimizer, problem, theta, state, unroll_steps)
            meta_loss = losses.sum(0).mean()
            opt.zero_grad(set_to_none=True)
            meta_loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            theta, state = theta.detach(), detach_state(state)
            running += float(meta_loss.detach()) / unroll_steps
            count += 1
        done = it
        out_of_time = time_limit_s is not None and time.perf_counter() - start > time_limit_s
        if it % val_every == 0 or it == iterations or out_of_time:
            validate(it)
        if out_of_time:
            break
    if best_state is not None:
        optimizer.load_state_dict(best_state)
    else:
        best_iteration = done
    return MetaTrainResult(history, done, (time.perf_counter() - start) / 60, (time.process_time() - cpu_start) / 60,
                           best_iteration, best_val)
