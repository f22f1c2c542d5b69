"""Lesson 07's Meta-LSTM figure: what the learned optimiser does to one task, update by update."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure


def layer_groups(parameters: list[tuple[str, int]]) -> dict[str, slice]:
    """The coordinates ``0..P-1`` of each layer: ``{"features.0": slice, ..., "head": slice}`` from a trace's
    ``[(parameter name, count), ...]`` (a layer's weight and bias share its module's name)."""
    groups: dict[str, list[int]] = {}
    start = 0
    for name, count in parameters:
        layer = name.rsplit(".", 1)[0] if "." in name else name
        span = groups.setdefault(layer, [start, start])
        if span[1] != start:
            raise ValueError(f"the parameters of {layer} are not next to each other in the trace")
        span[1] = start + count
        start += count
    return {layer: slice(a, b) for layer, (a, b) in groups.items()}


def _gate_panel(ax: Any, gate: torch.Tensor, groups: dict[str, slice], title: str, log: bool) -> None:
    steps = torch.arange(1, gate.shape[0] + 1)
    if gate.shape[0] == 0:
        ax.text(0.5, 0.5, "no updates", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        return
    low, mid, high = torch.quantile(gate.double(), torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64), dim=1)
    ax.fill_between(steps, low, high, color="0.85", label="10-90 % of all coordinates")
    ax.plot(steps, mid, color="black", lw=2, label="median")
    for layer, where in groups.items():
        ax.plot(steps, gate[:, where].mean(1), lw=1, marker=".", label=f"{layer} (mean)")
    if log:
        ax.set_yscale("log")
    ax.set_xticks(steps.tolist())
    ax.set_xlabel("update t")
    ax.set_title(title)


def plot_gates(trace: dict[str, Any], by_layer: bool = True) -> Figure:
    """The input gate (learned step size), the forget gate (learned decay) and the support loss during one
    task's adaptation, from :meth:`MetaLSTM.adaptation_trace <metalearn_lite.MetaLSTM.adaptation_trace>`.

    Each gate panel shows the median over all ``P`` coordinates, the band from the 10th to the 90th
    percentile, and (``by_layer``) the mean of each layer's coordinates; the input gate on a log scale,
    since layers can differ by orders of magnitude.
    """
    for key in ("input_gate", "forget_gate", "loss"):
        if key not in trace:
            raise ValueError(f"the trace has no {key!r}: pass what MetaLSTM.adaptation_trace(...) returns")
    gates = {k: torch.as_tensor(trace[k]).detach().cpu() for k in ("input_gate", "forget_gate")}
    loss = torch.as_tensor(trace["loss"]).detach().cpu()
    if gates["input_gate"].dim() != 2 or gates["input_gate"].shape != gates["forget_gate"].shape \
            or loss.shape != (gates["input_gate"].shape[0] + 1,):
        raise ValueError(f"expected gates (steps, P) and losses (steps + 1,); got {tuple(gates['input_gate'].shape)}, "
                         f"{tuple(gates['forget_gate'].shape)} and {tuple(loss.shape)}")
    groups = layer_groups(trace["parameters"]) if by_layer and trace.get("parameters") else {}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    _gate_panel(axes[0], gates["input_gate"], groups, "input gate $i_t$ (step size)", log=True)
    _gate_panel(axes[1], gates["forget_gate"], groups, "forget gate $f_t$ (decay)", log=False)
    axes[2].plot(range(len(loss)), loss, marker="o", color="crimson")
    axes[2].set_xticks(list(range(len(loss))))
    axes[2].set_xlabel("after t updates")
    axes[2].set_title("support loss")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:  # one legend for both gate panels, below them
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8, frameon=False)
    rows = -(-len(labels) // 6)
    fig.tight_layout(rect=(0, 0.06 * rows + 0.02 if handles else 0, 1, 1))
    return fig
