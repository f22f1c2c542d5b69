"""Lesson 04's figures and measurements: sinusoid fits as they adapt, and the cost of inner steps."""

from __future__ import annotations

import statistics
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from ..algorithms.inner_loop import adapt_tasks, forward_tasks, params_of, task_outputs
from ..datasets.sinusoid import SinusoidTasks
from ..episodes import Episode


def fits_after(net: torch.nn.Module, task: Episode, steps: list[int], lr: float, x: torch.Tensor) -> list[torch.Tensor]:
    """Predictions ``(P,)`` on ``x`` ``(P, 1)`` of ``net`` after each number of ``steps`` on ``task``'s support set."""
    out = []
    for k in steps:
        with torch.enable_grad():
            params, _ = adapt_tasks(net, params_of(net, detach=True), task.support_x, task.support_y, F.mse_loss, k, lr,
                                    True, None, "loop")
        with torch.no_grad():
            out.append(forward_tasks(net, {n: p.detach() for n, p in params.items()}, x[None])[0, :, 0])
    return out


def plot_sinusoid_fits(models: dict[str, torch.nn.Module], steps: int = 10, lr: float = 0.01, shots: int = 5,
                       seed: int = 0, axes=None) -> None:
    """One sinusoid task, ``shots`` support points; for each model its fit before adapting, after
    1 step and after ``steps`` steps of SGD at ``lr`` (one panel per model)."""
    task = SinusoidTasks(seed=seed).sample(1, shots, 0)
    x = torch.linspace(-5, 5, 200).unsqueeze(1)
    truth = SinusoidTasks.curve(task.info, x[None])[0, :, 0]
    if axes is None:
        _, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 3.4), sharey=True)
    shown = sorted({0, min(1, steps), steps})
    for ax, (name, net) in zip(axes, models.items()):
        ax.plot(x[:, 0], truth, color="black", lw=2, label="true function")
        for k, y, style in zip(shown, fits_after(net, task, shown, lr, x), (":", "--", "-")):
            mse = float(((y - truth) ** 2).mean())
            ax.plot(x[:, 0], y, style, label=f"{k} step{'s' if k != 1 else ''} (MSE {mse:.2f})")
        ax.scatter(task.support_x[0, :, 0], task.support_y[0, :, 0], color="crimson", zorder=3,
                   label=f"{shots} support points")
        ax.set_title(name)
        ax.set_xlabel("x")
        ax.legend(fontsize=8, loc="lower left")
    axes[0].set_ylabel("y")
    plt.tight_layout()


def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for the backward pass while ``fn()`` runs (the graph's memory)."""
    total = 0

    def pack(t: torch.Tensor):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return total, out


def cost_of_inner_steps(net: torch.nn.Module, loss_fn, episode: Episode, steps: list[int], lr: float,
                        repeats: int = 3) -> dict[str, dict[int, float]]:
    """Milliseconds per meta-step (forward, inner loop, outer backward) and MB of tensors saved for the
    backward pass, for first- and second-order MAML, per number of inner steps.

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
            ms[k], mb[k] = 1e3 * statistics.median(times), size / 2**20
        result[f"{order} order ms"], result[f"{order} order MB"] = ms, mb
    return result
