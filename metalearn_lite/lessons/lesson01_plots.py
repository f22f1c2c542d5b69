"""Lesson 01's figures: learning curves, and train versus held-out accuracy of one model."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .lesson01_scarcity import Fit


def plot_learning_curves(curves: dict[str, dict[str, np.ndarray]], shots: Sequence[int], chance: float) -> Figure:
    """One panel per model: training and held-out error (mean and range over seeds) against shots."""
    n = len(curves)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.2), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (name, c) in zip(axes, curves.items()):
        for key, colour, label in (("train", "tab:blue", "training error"), ("test", "tab:red", "held-out error")):
            v = 100 * c[key]
            ax.plot(shots, v.mean(1), "o-", color=colour, label=label)
            ax.fill_between(shots, v.min(1), v.max(1), color=colour, alpha=0.15)
        ax.axhline(100 * (1 - chance), color="gray", ls=":", lw=1, label="guessing")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("drawings per class (K)")
        ax.set_xscale("log")
        ax.set_xticks(list(shots), [str(k) for k in shots])
        ax.minorticks_off()
    axes[0].set_ylabel("error (%)")
    axes[0].set_ylim(-3, 103)
    axes[-1].legend(fontsize=8, loc="center right")
    fig.tight_layout()
    return fig


def plot_fit(fit: Fit, title: str, chance: float) -> Figure:
    """Two bars, training and held-out accuracy, with the gap between them marked."""
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    bars = ax.bar(["training", "held out"], [100 * fit.train_acc, 100 * fit.test_acc],
                  color=["tab:blue", "tab:red"], width=0.5)
    for bar in bars:
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 1.5, f"{bar.get_height():.0f}%", ha="center")
    ax.axhline(100 * chance, color="gray", ls=":", lw=1)
    ax.set_ylim(0, 110)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{title}\ngap {100 * (fit.train_acc - fit.test_acc):.0f} points, {fit.parameters:,} parameters",
                 fontsize=9)
    fig.tight_layout()
    return fig
