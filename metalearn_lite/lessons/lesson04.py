"""Lesson 04 (MAML) in one place: its figures, measurements, the snippets it dissects, and its checks.

* The opening: :func:`average_sine`, the function a network fit to all sine waves at once converges to,
  :func:`plot_average_function` and :func:`plot_sinusoid_fits`.
* The cost of a longer inner loop: :func:`cost_of_inner_steps` (time and memory saved for backward).
* ANIL at test time: :func:`head_only` (adapt only the output layer of a trained MAML).
* The bug hunt: :func:`snippet_meta_step` (a MAML step with mistakes for the reader to find) and
  :func:`overwriting_meta_step` / :func:`train_overwriting_regressor` (the form of the snippet that writes
  the adapted weights into the model: it trains the jointly fit baseline, not MAML).
* Proto-MAML next to the zero head: :func:`adapting_steps` (evaluate a trained MAML after any number of test
  steps), :func:`accuracy_by_steps` (the package's :func:`~metalearn_lite.evaluate` per method and number of
  steps, on the same episodes) and :func:`plot_accuracy_by_steps`.
* The exercises' checks: :func:`check_meta_step`, :func:`check_quadratic_meta_gradient`,
  :func:`check_first_order_prediction`, :func:`check_zero_head_prediction`, :func:`check_proto_head`.  Each
  prints "Correct! ..." or "Not yet: ..." and returns ``None``; ``strict=True`` raises :class:`CheckFailed` instead.

The worked solutions are in :mod:`metalearn_lite.lessons.solutions.lesson04` (``show_solution("04", name)``).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..algorithms.inner_loop import adapted_params, adapted_params_tasks, forward_tasks, params_of, task_outputs
from ..algorithms.maml import MAML
from ..datasets.sinusoid import SinusoidTasks
from ..episodes import Episode
from ..evaluation import EvalResult, evaluate
from ..models import MLP
from ..validation import non_negative_int
from .exercises import CheckFailed, answer_tensor, report

__all__ = [
    "CheckFailed", "accuracy_by_steps", "adapting_steps", "average_sine", "check_first_order_prediction",
    "check_meta_step", "check_proto_head", "check_quadratic_meta_gradient", "check_zero_head_prediction",
    "cost_of_inner_steps", "head_only", "meta_gradient_case", "overwriting_meta_step", "plot_accuracy_by_steps",
    "plot_average_function", "plot_sinusoid_fits", "snippet_meta_step", "train_overwriting_regressor",
]

Params = dict[str, torch.Tensor]

# ----------------------------------------------------------------------------- the opening figure


def average_sine(x: torch.Tensor, amplitude: tuple[float, float] = (0.1, 5.0),
                 phase: tuple[float, float] = (0.0, math.pi)) -> torch.Tensor:
    """``E[A sin(x - phi)]`` for ``A ~ U[amplitude]`` and ``phi ~ U[phase]`` drawn independently:

        ``E[A] * (cos(x - phi_hi) - cos(x - phi_lo)) / (phi_hi - phi_lo)``,

    which for the paper's ``phi ~ U[0, pi]`` is ``-(2/pi) E[A] cos x``.  This is what a network trained by
    least squares on points of all tasks at once predicts at best (the conditional mean of ``y`` given ``x``).
    """
    mean_a = 0.5 * (amplitude[0] + amplitude[1])
    lo, hi = phase
    if hi == lo:
        return mean_a * torch.sin(x - lo)
    return mean_a * (torch.cos(x - hi) - torch.cos(x - lo)) / (hi - lo)


def plot_average_function(net: torch.nn.Module, tasks: int = 20000, seed: int = 1, ax=None) -> dict[str, float]:
    """The network's prediction on ``[-5, 5]``, the closed form :func:`average_sine` and the average of
    ``tasks`` sampled sine waves, on one axis.  Returns the largest gaps ``{"network - formula",
    "sampled - formula"}`` and the formula's largest value."""
    x = torch.linspace(-5, 5, 201).unsqueeze(1)
    with torch.no_grad():
        pred = net(x)[:, 0]
    formula = average_sine(x[:, 0])
    ep = SinusoidTasks(seed=seed).sample(tasks, 1, 0)
    sampled = SinusoidTasks.curve(ep.info, x).mean(0)[:, 0]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(x[:, 0], formula, color="black", lw=3, alpha=0.4, label=r"$-\frac{2}{\pi}\,\mathbb{E}[A]\cos x$")
    ax.plot(x[:, 0], sampled, ":", color="black", label=f"average of {tasks:,} sampled tasks")
    ax.plot(x[:, 0], pred, "--", color="tab:orange", label="jointly trained network, before adapting")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize=8)
    return {"network - formula": float((pred - formula).abs().max()),
            "sampled - formula": float((sampled - formula).abs().max()),
            "formula max": float(formula.abs().max())}


def fits_after(net: torch.nn.Module, task: Episode, steps: list[int], lr: float, x: torch.Tensor) -> list[torch.Tensor]:
    """Predictions ``(P,)`` on ``x`` ``(P, 1)`` of ``net`` after each number of ``steps`` on ``task``'s support set."""
    out = []
    for k in steps:
        with torch.enable_grad():
            params, _ = adapted_params_tasks(net, params_of(net, detach=True), task.support_x, task.support_y,
                                             F.mse_loss, k, lr, True, None, "loop")
        with torch.no_grad():
            out.append(forward_tasks(net, {n: p.detach() for n, p in params.items()}, x[None])[0, :, 0])
    return out


def plot_sinusoid_fits(models: dict[str, torch.nn.Module], steps: int = 10, lr: float = 0.01, shots: int = 5,
                       seed: int = 0, axes=None) -> dict[str, dict[int, float]]:
    """One sinusoid task (``SinusoidTasks(seed=seed)``'s first), ``shots`` support points; for each model its
    fit before adapting, after 1 step and after ``steps`` steps of SGD at ``lr`` (one panel per model).

    Returns ``{model: {steps: MSE against the true curve on [-5, 5]}}`` and the task's amplitude and phase
    under the key ``"task"``."""
    task = SinusoidTasks(seed=seed).sample(1, shots, 0)
    x = torch.linspace(-5, 5, 200).unsqueeze(1)
    truth = SinusoidTasks.curve(task.info, x[None])[0, :, 0]
    if axes is None:
        _, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 3.4), sharey=True)
    shown = sorted({0, min(1, steps), steps})
    errors: dict[str, Any] = {"task": {"amplitude": float(task.info["amplitude"][0]),
                                       "phase": float(task.info["phase"][0])}}
    for ax, (name, net) in zip(axes, models.items()):
        ax.plot(x[:, 0], truth, color="black", lw=2, label="true function")
        errors[name] = {}
        for k, y, style in zip(shown, fits_after(net, task, shown, lr, x), (":", "--", "-")):
            mse = float(((y - truth) ** 2).mean())
            errors[name][k] = mse
            ax.plot(x[:, 0], y, style, label=f"{k} step{'s' if k != 1 else ''} (MSE {mse:.2f})")
        ax.scatter(task.support_x[0, :, 0], task.support_y[0, :, 0], color="crimson", zorder=3,
                   label=f"{shots} support points")
        ax.set_title(name)
        ax.set_xlabel("x")
        ax.legend(fontsize=8, loc="lower left")
    axes[0].set_ylabel("y")
    plt.tight_layout()
    return errors


def meta_gradient_case(seed: int = 0, tasks: int = 1) -> tuple[torch.nn.Module, Params, tuple[torch.Tensor, ...]]:
    """A small float64 MLP (1-10-10-1), its weights ``{name: tensor}`` and one sinusoid task
    ``(sx, sy, qx, qy)`` with 5 support and 8 query points (``tasks > 1``: shapes ``(T, ...)``)."""
    torch.manual_seed(seed)
    net = MLP(1, (10, 10), 1).double()
    ep = SinusoidTasks(seed=seed + 1).sample(tasks, 5, 8)
    data = tuple(t.double() for t in (ep.support_x, ep.support_y, ep.query_x, ep.query_y))
    if tasks == 1:
        data = tuple(t[0] for t in data)
    return net, {n: p.detach().clone() for n, p in net.named_parameters()}, data


# ----------------------------------------------------------------------------- cost of the inner loop


def saved_bytes(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes of the tensors autograd saves for the backward pass while ``fn()`` runs, and ``fn()``'s result."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return total, out


def cost_of_inner_steps(net: torch.nn.Module, loss_fn, episode: Episode, steps: list[int], lr: float,
                        repeats: int = 3) -> dict[str, dict[int, float]]:
    """Milliseconds per meta-step (forward, inner loop, outer backward; the *fastest* of ``repeats`` runs,
    the least disturbed by other work on the machine) and MB of tensors saved for the backward pass, for
    first- and second-order MAML, per number of inner steps.

    Runs the per-task loop (``torch.func`` transforms do not support the saved-tensor hooks that count
    the graph's memory)."""
    result: dict[str, dict[int, float]] = {}
    params = params_of(net)
    for order in ("second", "first"):
        ms, mb = {}, {}
        for k in steps:
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                size, (qloss, _, _) = saved_bytes(lambda k=k, fo=order == "first": task_outputs(
                    net, params, episode.support_x, episode.support_y, episode.query_x, episode.query_y,
                    loss_fn, k, lr, fo, None, "loop"))
                torch.autograd.grad(qloss.mean(), list(params.values()))
                times.append(time.perf_counter() - t)
            ms[k], mb[k] = 1e3 * min(times), size / 2**20
        result[f"{order} order ms"], result[f"{order} order MB"] = ms, mb
    return result


def median_ms(fn: Callable[[], Any], repeats: int = 5) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


# ----------------------------------------------------------------------------- ANIL at test time


@contextmanager
def head_only(method: MAML) -> Iterator[MAML]:
    """Within the block, ``method`` adapts only its head at test time (ANIL's inner loop); afterwards it
    adapts as it was built.  The weights are not touched."""
    old = method.anil
    method.anil = True
    try:
        yield method
    finally:
        method.anil = old


# ----------------------------------------------------------------------------- zero head and Proto-MAML


@contextmanager
def adapting_steps(method: MAML, steps: int) -> Iterator[MAML]:
    """Within the block, ``method`` takes ``steps`` inner steps at test time (``test_steps``; 0: it predicts
    from the task's starting weights); afterwards its own number again.  The weights are not touched."""
    non_negative_int("steps", steps)
    old = method.test_steps
    method.test_steps = steps
    try:
        yield method
    finally:
        method.test_steps = old


def accuracy_by_steps(methods: Mapping[str, MAML], images: torch.Tensor, steps: Sequence[int] = (0, 1),
                      ways: int = 5, shots: int = 1, queries: int = 15, episodes: int = 100,
                      seed: int = 0) -> dict[str, dict[int, EvalResult]]:
    """``{name: {k: EvalResult}}``: each method evaluated by :func:`metalearn_lite.evaluate` after ``k`` test
    steps, for every ``k`` in ``steps``.  One seed for all, so every method and every ``k`` sees the same
    episodes (and a paired comparison is possible on ``EvalResult.accuracies``)."""
    results: dict[str, dict[int, EvalResult]] = {}
    for name, method in methods.items():
        results[name] = {}
        for k in steps:
            with adapting_steps(method, k):
                results[name][k] = evaluate(method, images, ways=ways, shots=shots, queries=queries,
                                            episodes=episodes, seed=seed)
    return results


def plot_accuracy_by_steps(results: Mapping[str, Mapping[int, EvalResult]], ax=None):
    """Grouped bars: accuracy (%) with its 95 % interval, one group per number of test steps, one bar per
    method, and chance (``1 / ways``) as a dotted line.  Returns the axis."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.4))
    names = list(results)
    ks = sorted({k for r in results.values() for k in r})
    width = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(ks))]
        means = [100 * results[name][k].mean if k in results[name] else math.nan for k in ks]
        cis = [100 * results[name][k].ci95 if k in results[name] else 0.0 for k in ks]
        bars = ax.bar(xs, means, width * 0.95, yerr=cis, capsize=3, label=name)
        for bar, m in zip(bars, means):
            if m == m:
                ax.annotate(f"{m:.1f}", (bar.get_x() + bar.get_width() / 2, m), ha="center", va="bottom",
                            fontsize=8, xytext=(0, 2), textcoords="offset points")
    ways = next(iter(next(iter(results.values())).values())).ways
    ax.axhline(100 / ways, color="gray", ls=":", lw=1, label=f"chance ({100 / ways:.0f} %)")
    ax.set_xticks(range(len(ks)), [f"{k} step{'s' if k != 1 else ''}" for k in ks])
    ax.set_ylim(0, 105)
    ax.set_ylabel("query accuracy (%)")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def proto_head_case(seed: int, ways: int = 4, features: int = 6, queries: int = 7) -> tuple[torch.Tensor, ...]:
    """Float64 prototypes ``(ways, features)`` of very different lengths and query features ``(queries,
    features)`` for :func:`check_proto_head`."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([0.2, 1.0, 2.5, 6.0], dtype=torch.float64).repeat(ways)[:ways, None]
    c = torch.randn(ways, features, generator=g, dtype=torch.float64) * lengths
    phi = c[torch.arange(queries) % ways] + 1.5 * torch.randn(queries, features, generator=g, dtype=torch.float64)
    return c, phi


def _proto_head(fn: Callable[[torch.Tensor], Any]) -> str:
    def spread(d: torch.Tensor) -> float:
        """How much ``d`` ``(Q, N)`` varies across classes, at its worst query (0: a shift per query only)."""
        return float((d.max(-1).values - d.min(-1).values).max())

    for seed in (0, 1, 2):
        c, phi = proto_head_case(seed)
        ways, features = c.shape
        got = fn(c.clone())
        if got is None:
            raise CheckFailed("your function returned None: return (W, b), W of shape (N, F) and b of shape (N,)")
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise CheckFailed(f"return a pair (W, b); got {type(got).__name__}"
                              + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""))
        w = answer_tensor(got[0], "head weight W (one row per class)", (ways, features)).detach().double()
        b = answer_tensor(got[1], "head bias b (one entry per class)", (ways,)).detach().double()
        logits = phi @ w.T + b                                   # what the linear head scores
        protonet = -((phi[:, None] - c[None]) ** 2).sum(-1)      # ProtoNet's logits, -|phi - c_k|^2
        scale = max(1.0, float(protonet.abs().max()))
        if spread(logits - protonet) <= 1e-8 * scale:
            continue
        if spread(logits + protonet) <= 1e-8 * scale:
            raise CheckFailed("your head scores +|phi - c_k|^2: the farthest prototype wins. ProtoNet's logit is the "
                              "*negative* squared distance; flip the signs of W and b")
        if spread(2 * logits - protonet) <= 1e-8 * scale:
            raise CheckFailed("your logits are half of ProtoNet's (-|phi - c_k|^2 / 2, up to a shift): the same "
                              "ranking, but a softmax at twice the temperature, so different probabilities and a "
                              "different loss to start the inner loop from. Expand the square: the cross term is "
                              "-2 c_k . phi")
        if spread(logits - phi @ w.T) == 0 and spread(protonet - phi @ w.T) > 1e-8 * scale:
            raise CheckFailed("with b the same for every class, the scores miss a term of the distance that depends "
                              "on the class. Hint: |phi - c_k|^2 = |phi|^2 - 2 c_k . phi + |c_k|^2; which of the "
                              "three terms may be dropped, and which must stay in the bias?")
        raise CheckFailed(f"for a query phi, logits minus (-|phi - c_k|^2) must be the same for every class k (then "
                          f"the softmax is ProtoNet's); yours differ by up to {spread(logits - protonet):.3g} between "
                          "classes. Hint: expand |phi - c_k|^2 = |phi|^2 - 2 c_k . phi + |c_k|^2 and match the terms "
                          "that depend on k with w_k . phi + b_k")
    return ("w_k . phi + b_k = -|phi - c_k|^2 + |phi|^2 for every class, and |phi|^2 is the same for all classes, so "
            "the softmax is ProtoNet's: W_k = 2 c_k, b_k = -|c_k|^2 (what ProtoMAML.task_start builds).")


def check_proto_head(fn: Callable[[torch.Tensor], Any], strict: bool = False) -> None:
    """``fn(prototypes (N, F)) -> (W (N, F), b (N,))``: a linear head whose softmax over ``W phi + b`` equals
    ProtoNet's over ``-|phi - c_k|^2`` for every feature vector ``phi``.  Tested by that property on random float64
    prototypes of very different lengths (any head that differs only by a shift common to all classes passes).
    Returns None."""
    return report(_proto_head, fn, strict)


# ----------------------------------------------------------------------------- the bug hunt


def snippet_meta_step(net: torch.nn.Module, episode: Episode, inner_lr: float, outer_lr: float) -> float:
    """One meta-step of "MAML" on a meta-batch of regression tasks, with SGD as the outer optimiser,
    as a blog post might write it.  It runs, and its loss goes down.  Returns the mean query loss."""
    params = dict(net.named_parameters())
    meta_grads = {n: torch.zeros_like(p) for n, p in params.items()}
    query_losses = []
    for i in range(episode.num_tasks):
        sx, sy = episode.support_x[i], episode.support_y[i]
        qx, qy = episode.query_x[i], episode.query_y[i]
        support_loss = F.mse_loss(functional_call(net, params, (sx,)), sy)
        grads = torch.autograd.grad(support_loss, list(params.values()))
        adapted = {n: p - inner_lr * g for (n, p), g in zip(params.items(), grads)}
        outer_loss = F.mse_loss(functional_call(net, adapted, (sx,)), sy)
        task_grads = torch.autograd.grad(outer_loss, list(adapted.values()))
        for n, g in zip(params, task_grads):
            meta_grads[n] += g / episode.num_tasks
        with torch.no_grad():
            query_losses.append(F.mse_loss(functional_call(net, adapted, (qx,)), qy).item())
    with torch.no_grad():
        for n, p in params.items():
            p -= outer_lr * meta_grads[n]
    return sum(query_losses) / len(query_losses)


def overwriting_meta_step(net: torch.nn.Module, episode: Episode, inner_lr: float, outer_lr: float) -> float:
    """WRONG, kept to show what it trains: the snippet of the source posts, which writes the adapted
    weights *into* the model (``p -= inner_lr * g``), then takes the query gradient at the model's
    weights, which are now the adapted ones, and steps from there.  The initial weights are lost after
    the first task: every "meta-step" is an SGD step on a task's support set followed by one on its
    query set, task after task, which is joint training on all tasks.  Returns the mean query loss."""
    losses = []
    for i in range(episode.num_tasks):
        support_loss = F.mse_loss(net(episode.support_x[i]), episode.support_y[i])
        grads = torch.autograd.grad(support_loss, list(net.parameters()))
        with torch.no_grad():
            for p, g in zip(net.parameters(), grads):
                p -= inner_lr * g
        query_loss = F.mse_loss(net(episode.query_x[i]), episode.query_y[i])
        meta_grads = torch.autograd.grad(query_loss, list(net.parameters()))
        with torch.no_grad():
            for p, g in zip(net.parameters(), meta_grads):
                p -= outer_lr * g
        losses.append(query_loss.item())
    return sum(losses) / len(losses)


def train_overwriting_regressor(steps: int = 600, tasks: int = 25, inner_lr: float = 0.01, outer_lr: float = 0.01,
                                seed: int = 0, progress: bool = False) -> MLP:
    """The sinusoid MLP trained with :func:`overwriting_meta_step` (10 support and 10 query points per task)."""
    from tqdm.auto import trange

    torch.manual_seed(seed)
    net = MLP()
    sampler = SinusoidTasks(seed=seed)
    for _ in trange(steps, disable=not progress, desc="overwriting snippet"):
        overwriting_meta_step(net, sampler.sample(tasks, 10, 10), inner_lr, outer_lr)
    return net


def _maml_meta_gradient(net: torch.nn.Module, params: Params, episode: Episode, inner_lr: float,
                        query: bool = True, first_order: bool = False) -> Params:
    """The mean over tasks of ``d L(theta') / d theta`` (one inner SGD step, squared error), with the outer
    loss on the query set (or the support set), second order (or first order)."""
    theta = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    total = {n: torch.zeros_like(p) for n, p in theta.items()}
    for i in range(episode.num_tasks):
        adapted, _ = adapted_params(net, theta, episode.support_x[i], episode.support_y[i], F.mse_loss, 1,
                                    inner_lr, first_order=first_order)
        x, y = (episode.query_x[i], episode.query_y[i]) if query else (episode.support_x[i], episode.support_y[i])
        g = torch.autograd.grad(F.mse_loss(functional_call(net, adapted, (x,)), y), list(theta.values()))
        for n, gi in zip(theta, g):
            total[n] += gi / episode.num_tasks
    return total


def _meta_step_case(seed: int) -> tuple[torch.nn.Module, Episode]:
    net, _, (sx, sy, qx, qy) = meta_gradient_case(seed, tasks=3)
    return net, Episode(sx, sy, qx, qy)


def _judge_meta_step(fn: Callable[[torch.nn.Module, Episode, float, float], Any], seed: int) -> None:
    """Run ``fn`` once on a small float64 case; :class:`CheckFailed` naming the mistake unless its update is
    ``-outer_lr`` times MAML's meta-gradient."""
    inner_lr, outer_lr = 0.1, 0.5
    net, episode = _meta_step_case(seed)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    fn(net, episode, inner_lr, outer_lr)
    after = {n: p.detach().clone() for n, p in net.named_parameters()}
    if set(after) != set(before) or any(a.shape != before[n].shape for n, a in after.items()):
        raise CheckFailed("your function changed which parameters the network has: update them in place")
    moved = {n: (before[n] - after[n]) / outer_lr for n in before}   # the gradient the step applied
    if all(float(m.abs().max()) == 0 for m in moved.values()):
        raise CheckFailed("the network's weights did not change: a meta-step ends by moving the initial weights "
                          "theta by -outer_lr times the meta-gradient")

    def same(ref: Params) -> bool:
        return all(torch.allclose(moved[n], ref[n], rtol=1e-6, atol=1e-9) for n in ref)

    def ref(**kw: bool) -> Params:
        return _maml_meta_gradient(net, before, episode, inner_lr, **kw)

    meta = ref()
    if same(meta):
        return
    if same(ref(first_order=True)):
        raise CheckFailed("the step follows first-order MAML: the gradient of the query loss at the adapted "
                          "weights, as if d theta'/d theta were the identity. Hint: the inner gradient must stay "
                          "in the graph, and the outer gradient must be taken with respect to the initial weights")
    if same(ref(query=False)) or same(ref(query=False, first_order=True)):
        raise CheckFailed("the outer loss is measured on the support set, the examples the inner step was "
                          "fitted to. Hint: MAML scores the adapted weights on the task's query set")
    if any(same({n: k * g for n, g in meta.items()}) for k in (episode.num_tasks, 1 / episode.num_tasks)):
        raise CheckFailed("the direction is MAML's, but its size is off by the number of tasks: average the "
                          "tasks' meta-gradients, as the snippet does")
    err = max(float((moved[n] - meta[n]).abs().max()) for n in meta)
    raise CheckFailed(f"the update differs from MAML's meta-gradient step by up to {err:.3g} (per unit of "
                      "outer_lr). Hint: keep the inner gradient in the graph, score the adapted weights on the "
                      "query set, differentiate with respect to the initial weights, and step once per meta-batch")


def _meta_step(fn: Callable[[torch.nn.Module, Episode, float, float], Any]) -> str:
    for seed in (0, 4):
        _judge_meta_step(fn, seed)
    return ("the update is outer_lr times MAML's second-order meta-gradient, averaged over the tasks, on a float64 "
            "network: the same as the package's inner loop gives.")


def check_meta_step(fn: Callable[[torch.nn.Module, Episode, float, float], Any], strict: bool = False) -> None:
    """``fn(net, episode, inner_lr, outer_lr)``: one MAML meta-step (one inner SGD step, squared error, outer
    SGD) that updates ``net``'s weights in place.  Recognised by what it does to the weights, not by its text:
    the change must be ``-outer_lr`` times MAML's meta-gradient on small float64 tasks.  Returns None."""
    return report(_meta_step, fn, strict)


# ----------------------------------------------------------------------------- derive: transposes


def quadratic_case(seed: int, dim: int = 4) -> dict[str, torch.Tensor | float]:
    """A random float64 case for the preconditioned-step exercise: symmetric positive definite ``A``, ``B``,
    vectors ``theta``, ``a``, ``b``, a non-symmetric ``P`` and ``alpha``."""
    g = torch.Generator().manual_seed(seed)

    def spd() -> torch.Tensor:
        m = torch.randn(dim, dim, generator=g, dtype=torch.float64)
        return m @ m.T / dim + 0.5 * torch.eye(dim, dtype=torch.float64)

    return {"theta": torch.randn(dim, generator=g, dtype=torch.float64), "A": spd(),
            "a": torch.randn(dim, generator=g, dtype=torch.float64), "B": spd(),
            "b": torch.randn(dim, generator=g, dtype=torch.float64),
            "P": torch.eye(dim, dtype=torch.float64) + torch.randn(dim, dim, generator=g, dtype=torch.float64),
            "alpha": 0.3}


def _quadratic(fn: Callable[..., torch.Tensor]) -> str:
    for seed in (0, 1, 2):
        c = quadratic_case(seed)
        theta, A, a, B, b, P, alpha = (c[k] for k in ("theta", "A", "a", "B", "b", "P", "alpha"))
        got = fn(theta.clone(), A.clone(), a.clone(), B.clone(), b.clone(), P.clone(), alpha)
        if got is None:
            raise CheckFailed("your function returned None: return the meta-gradient, a tensor shaped like theta")
        if not isinstance(got, torch.Tensor) or got.shape != theta.shape:
            raise CheckFailed(f"return a tensor of shape {tuple(theta.shape)} (the gradient with respect to theta)")
        got = got.detach().double()
        leaf = theta.clone().requires_grad_(True)
        adapted = leaf - alpha * P @ (A @ (leaf - a))
        want = torch.autograd.grad(0.5 * (adapted - b) @ B @ (adapted - b), leaf)[0]
        if torch.allclose(got, want, rtol=1e-8, atol=1e-10):
            continue
        adapted = adapted.detach()
        eye = torch.eye(len(theta), dtype=theta.dtype)
        if torch.allclose(got, (eye - alpha * P @ A) @ (B @ (adapted - b)), rtol=1e-8, atol=1e-10):
            raise CheckFailed("this is (I - alpha P A) B (theta' - b): the Jacobian of the inner step without its "
                              "transpose. The chain rule for a gradient multiplies by the *transposed* Jacobian, "
                              "(d theta'/d theta)^T; with a non-symmetric P that is a different vector")
        if torch.allclose(got, B @ (adapted - b), rtol=1e-8, atol=1e-10):
            raise CheckFailed("this is the gradient of L_Q at theta' (first-order MAML): multiply it by the "
                              "transposed Jacobian of the inner step")
        if torch.allclose(got, B @ (theta - b), rtol=1e-8, atol=1e-10):
            raise CheckFailed("this is the gradient of L_Q at theta, without the inner step: first compute "
                              "theta' = theta - alpha P A (theta - a)")
        raise CheckFailed(f"off by up to {float((got - want).abs().max()):.3g}. Hint: grad L_S(theta) = A (theta - a), "
                          "the Jacobian of theta' is I - alpha P A, and grad L_Q(theta') = B (theta' - b)")
    return ("grad_theta L_Q(theta') = (I - alpha P A)^T B (theta' - b) = (I - alpha A P^T) B (theta' - b): the "
            "transposed Jacobian of the inner step times the gradient at the adapted point.")


def check_quadratic_meta_gradient(fn: Callable[..., torch.Tensor], strict: bool = False) -> None:
    """``fn(theta, A, a, B, b, P, alpha)``: the meta-gradient ``d L_Q(theta') / d theta`` for
    ``theta' = theta - alpha P grad L_S(theta)``, ``L_S = 1/2 (t - a)^T A (t - a)``, ``L_Q = 1/2 (t - b)^T B (t - b)``,
    compared with autograd on random float64 cases with a non-symmetric ``P``.  Returns None."""
    return report(_quadratic, fn, strict)


# ----------------------------------------------------------------------------- predict then run


def _choice(prediction: Any, options: tuple[str, ...]) -> str:
    if prediction is None:
        raise CheckFailed(f"set your prediction first: one of {options}")
    if not isinstance(prediction, str) or prediction.strip().lower() not in options:
        raise CheckFailed(f"the prediction must be one of {options}; got {prediction!r}")
    return prediction.strip().lower()


def check_first_order_prediction(prediction: str | None, errors: dict[float, float] | None,
                                 strict: bool = False) -> None:
    """``prediction``: ``"small"`` or ``"large"``, the inner learning rates at which first-order MAML's
    meta-gradient is closer to MAML's; ``errors``: the measured relative error ``{inner_lr: |g_FO - g| / |g|}``.
    Returns None."""

    def verdict(pred: Any) -> str:
        choice = _choice(pred, ("small", "large"))
        if not errors:
            raise CheckFailed("run the measuring cell first: errors is empty")
        rates = sorted(errors)
        closer = "small" if errors[rates[0]] < errors[rates[-1]] else "large"
        table = ", ".join(f"{r:g}: {errors[r]:.3f}" for r in rates)
        if choice != closer:
            raise CheckFailed(f"the measured relative errors were {table}. Hint: for one step the dropped term is "
                              "alpha H_S grad L_Q(theta'); how does its size scale with alpha?")
        return (f"relative errors {table}. The term first-order MAML drops, alpha H_S grad L_Q(theta'), "
                "shrinks with alpha (for one step, linearly), so at small inner rates the two nearly coincide.")

    return report(verdict, prediction, strict)


def check_zero_head_prediction(prediction: float | None, measured: float | None, strict: bool = False) -> None:
    """``prediction``: the accuracy difference, in points, between adapting everything and adapting only the
    head, for the shipped zero-head model with one inner step; ``measured``: the difference the cell measured.
    Returns None."""

    def verdict(pred: Any) -> str:
        if pred is None:
            raise CheckFailed("set predicted_gap to a number first (in percentage points)")
        if isinstance(pred, bool) or not isinstance(pred, (int, float)):
            raise CheckFailed(f"predicted_gap must be a number of percentage points; got {type(pred).__name__}")
        if measured is None:
            raise CheckFailed("run the measuring cell first")
        if abs(float(pred) - measured) > 0.05:
            raise CheckFailed(f"the measured gap was {measured:.2f} points, you predicted {float(pred):.2f}. Hint: "
                              "with W = 0 the logits are W phi(x) + b; what is the gradient of the loss with respect "
                              "to the features phi, and so to the body's weights, on the first step?")
        return (f"the gap is {measured:.2f} points. With a zero head, d loss / d phi = W^T (p - y) = 0, so the first "
                "inner step changes the head alone: one step of full MAML from a zero head *is* ANIL.")

    return report(verdict, prediction, strict)
