"""Lesson 07's experiment: a learned optimiser against hand-designed ones with tuned learning rates.

The set-up is fixed here so that the notebook and ``benchmarks/learned_optimizer.py`` measure the same
thing: meta-training functions from ``QuadraticProblems(seed=TRAIN_SEED)``; the hand-designed
optimisers' learning rates tuned on the first ``TUNE_PROBLEMS`` of those training functions; the
learned optimiser's early stopping on ``VAL_PROBLEMS`` functions of seed ``VAL_SEED``; and every
number reported on ``TEST_PROBLEMS`` held-out functions of seed ``TEST_SEED``.  The same seeds serve
the other problem family (:class:`~metalearn_lite.datasets.quadratics.MLPProblems`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from scipy import stats

from ..algorithms.learned_optimizer import (
    HAND_DESIGNED,
    LR_GRID,
    LearnedOptimizer,
    MetaTrainResult,
    TunedRate,
    hand_designed,
    meta_train,
    optimize,
    tune_learning_rate,
)
from ..checkpoints import FORMAT, checkpoint_dir, read_checkpoint
from ..datasets.quadratics import MLPProblems, QuadraticProblems
from ..evaluation import mean_ci

TRAIN_SEED, VAL_SEED, TEST_SEED = 0, 2, 3
TUNE_PROBLEMS, VAL_PROBLEMS, TEST_PROBLEMS = 128, 128, 100
HORIZON = 100  # the steps the learned optimiser is trained for, and the hand-designed rates tuned for
CHECKPOINT = "learned-optimizer-quadratic"
LEARNED = "LSTM (learned)"
#: how the lesson names the hand-designed optimisers of :data:`HAND_DESIGNED`
LABELS = {"sgd": "SGD", "momentum": "momentum", "rmsprop": "RMSprop", "adam": "Adam"}
COLORS = {LEARNED: "black", "SGD": "tab:blue", "momentum": "tab:orange", "RMSprop": "tab:green", "Adam": "tab:red"}

FAMILIES: dict[str, Callable[..., Any]] = {"quadratic": QuadraticProblems, "mlp": MLPProblems}


def problems(family: str = "quadratic", split: str = "test", **options: Any) -> Any:
    """The lesson's fixed batches: ``split`` is ``"tune"`` (the first training functions), ``"val"`` or ``"test"``."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {list(FAMILIES)}; got {family!r}")
    seed, n = {"tune": (TRAIN_SEED, TUNE_PROBLEMS), "val": (VAL_SEED, VAL_PROBLEMS),
               "test": (TEST_SEED, TEST_PROBLEMS)}[split]
    return FAMILIES[family](seed=seed, **options).sample(n)


def train_learned_optimizer(iterations: int = 500, seed: int = 0, lr: float = 3e-3, batch: int = 128,
                            time_limit_s: float | None = None, progress: bool = False) -> tuple[LearnedOptimizer,
                                                                                               MetaTrainResult]:
    """Meta-train the paper's optimiser (2 x 20 LSTM) on the lesson's quadratics: unrolls of 20 steps, horizon 100,
    Adam at ``lr``, early stopping on the validation functions every 25 iterations.  ``seed`` seeds the LSTM's
    initial weights; the functions come from their own seeds."""
    torch.manual_seed(seed)
    lstm = LearnedOptimizer()

    def show(row: dict[str, float]) -> None:
        print(f"iteration {row['iteration']:4d}  meta-loss per step {row['train_loss']:.3f}  "
              f"validation loss at step {HORIZON} {row['val_loss']:.4f}  ({row['minutes']:.1f} min)", flush=True)

    result = meta_train(lstm, QuadraticProblems(seed=TRAIN_SEED), iterations, batch=batch, unroll_steps=20,
                        horizon=HORIZON, lr=lr, val_problem=problems("quadratic", "val"), val_every=25,
                        time_limit_s=time_limit_s, callback=show if progress else None)
    return lstm.eval(), result


def save_learned_optimizer(path: str | Path, lstm: LearnedOptimizer, result: MetaTrainResult, command: str,
                           seed: int) -> Path:
    """Write the weights with how they were made, in the format of the package's checkpoints (readable with
    ``torch.load(weights_only=True)``; ``python -m metalearn_lite list`` shows it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": FORMAT, "method": "learned_optimizer", "config": dict(lstm.config),
            "state_dict": {k: v.detach().cpu() for k, v in lstm.state_dict().items()}, "command": command,
            "seed": seed, "history": result.history, "iterations": result.iterations,
            "best_iteration": result.best_iteration, "best_val": result.best_val, "minutes": result.minutes,
            "cpu_minutes": result.cpu_minutes, "torch_version": str(torch.__version__)}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(blob, tmp)
    tmp.replace(path)
    return path


def load_learned_optimizer(path: str | Path | None = None) -> LearnedOptimizer:
    """The shipped learned optimiser (``data/checkpoints/learned-optimizer-quadratic.pt``) or the one at ``path``,
    with ``.command``, ``.seed``, ``.history``, ``.best_iteration``, ``.minutes`` and ``.cpu_minutes`` attached."""
    blob = read_checkpoint(Path(path) if path is not None else checkpoint_dir() / f"{CHECKPOINT}.pt")
    if blob.get("method") != "learned_optimizer":
        raise ValueError(f"this checkpoint holds a {blob.get('method')!r} model, not a learned optimiser")
    lstm = LearnedOptimizer(**blob["config"])
    lstm.load_state_dict(blob["state_dict"])
    for key in ("command", "seed", "history", "iterations", "best_iteration", "best_val", "minutes", "cpu_minutes"):
        setattr(lstm, key, blob.get(key))
    return lstm.eval()


def tune_baselines(problem: Any, steps: int = HORIZON, grid: Sequence[float] = LR_GRID) -> dict[str, TunedRate]:
    """Each hand-designed optimiser's learning rate tuned on ``problem`` (training functions) over ``grid``, keyed
    by its label."""
    return {LABELS[name]: tune_learning_rate(name, problem, steps, grid) for name in HAND_DESIGNED}


def optimizers(lstm: LearnedOptimizer | None, tuned: dict[str, TunedRate]) -> dict[str, Any]:
    """``{label: optimiser}`` for :func:`~metalearn_lite.algorithms.learned_optimizer.optimize`: the learned one
    (if given) first, then the hand-designed ones at their tuned rates."""
    out: dict[str, Any] = {LEARNED: lstm} if lstm is not None else {}
    out.update({label: hand_designed(rate.name, rate.lr) for label, rate in tuned.items()})
    return out


def run_all(problem: Any, opts: dict[str, Any], steps: int) -> dict[str, torch.Tensor]:
    """``{label: losses (steps + 1, n)}``: every optimiser on the same functions."""
    return {label: optimize(problem, opt, steps) for label, opt in opts.items()}


def comparison_table(curves: dict[str, torch.Tensor], step: int, tuned: dict[str, TunedRate] | None = None,
                     reference: str = LEARNED) -> str:
    """A markdown table of the loss at ``step``: mean ± 95 % CI over the problems, median, and the paired
    difference (this optimiser minus ``reference``, problem by problem; positive: the reference is lower)."""
    ref = curves.get(reference)
    head = f"| optimiser | learning rate | mean loss at step {step} (± 95 % CI) | median |"
    rule = "|---|---|---|---|"
    if ref is not None:
        head += f" minus {reference}, paired (± 95 % CI) | problems where {reference} is lower |"
        rule += "---|---|"
    rows = [head, rule]
    for label, losses in curves.items():
        final = losses[step].double()
        mean, ci = mean_ci(final)
        lr = f"{tuned[label].lr:.3g}" if tuned and label in tuned else "learned"
        row = f"| {label} | {lr} | {_num(mean)} ± {_num(ci)} | {_num(float(final.median()))} |"
        if ref is not None:
            if label == reference:
                row += " | |"
            else:
                diff = final - ref[step].double()
                d, dci = mean_ci(diff)
                row += f" {_num(d, signed=True)} ± {_num(dci)} | {int((diff > 0).sum())} of {len(diff)} |"
        rows.append(row)
    return "\n".join(rows)


def _num(v: float, signed: bool = False) -> str:
    if not math.isfinite(v):
        return str(v)
    text = f"{v:+.3g}" if signed else f"{v:.3g}"
    return text if "e" not in text else f"{v:{'+' if signed else ''}.2e}"


@dataclass(frozen=True)
class CurveSummary:
    """Per-step statistics of one optimiser's losses ``(steps + 1, n)`` over ``n`` problems, each ``(steps + 1,)``:
    the mean and the half-width of its 95 % confidence interval (Student t, as
    :func:`~metalearn_lite.evaluation.mean_ci`), and the 25th, 50th and 75th percentiles."""

    mean: np.ndarray
    ci: np.ndarray
    q25: np.ndarray
    median: np.ndarray
    q75: np.ndarray
    n: int

    def cut(self, steps: int | None) -> CurveSummary:
        """The first ``steps + 1`` entries (all of them for ``None``)."""
        end = None if steps is None else steps + 1
        return CurveSummary(self.mean[:end], self.ci[:end], self.q25[:end], self.median[:end], self.q75[:end], self.n)


def summarize(losses: torch.Tensor, confidence: float = 0.95) -> CurveSummary:
    """The :class:`CurveSummary` of ``losses`` ``(steps + 1, n)`` (computed once, so that a widget only redraws)."""
    x = losses.detach().double().cpu().numpy()
    n = x.shape[1]
    mean = x.mean(1)
    if n > 1:
        t = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1))
        ci = t * x.std(1, ddof=1) / math.sqrt(n)
    else:
        ci = np.full_like(mean, math.inf)
    q25, median, q75 = np.nanquantile(x, [0.25, 0.5, 0.75], axis=1)
    return CurveSummary(mean, ci, q25, median, q75, n)


def plot_loss_curves(curves: dict[str, torch.Tensor | CurveSummary], steps: int | None = None,
                     title: str | None = None, mark: int | None = None) -> Figure:
    """Two panels over the optimisation steps: the mean loss with its 95 % confidence band (left), and the
    median with the band between the 25th and 75th percentiles (right), log scale.  ``curves`` maps a name to
    losses ``(steps + 1, n)`` or their :func:`summarize`; ``steps`` cuts the curves; ``mark`` draws a vertical
    line (e.g. the horizon the learned optimiser was trained for)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    n = 0
    for label, losses in curves.items():
        s = (losses if isinstance(losses, CurveSummary) else summarize(losses)).cut(steps)
        n = s.n
        t = np.arange(len(s.mean))
        color = COLORS.get(label)
        lw = 2.2 if label == LEARNED else 1.4
        left.plot(t, s.mean, color=color, lw=lw, label=label)
        left.fill_between(t, np.maximum(s.mean - s.ci, 1e-12), s.mean + s.ci, color=color, alpha=0.15, lw=0)
        right.plot(t, s.median, color=color, lw=lw, label=label)
        right.fill_between(t, s.q25, s.q75, color=color, alpha=0.15, lw=0)
    left.set_title(f"mean over {n} problems, 95 % CI")
    right.set_title("median, 25th-75th percentile")
    for ax in (left, right):
        ax.set_yscale("log")
        ax.set_xlabel("optimisation step")
        if mark is not None:
            ax.axvline(mark, color="gray", ls=":", lw=1)
    left.set_ylabel("loss")
    left.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    # fixed margins instead of tight_layout, which costs the widget a second per redraw
    fig.subplots_adjust(left=0.075, right=0.99, bottom=0.13, top=0.84 if title else 0.92, wspace=0.04)
    return fig


def first_step_response(lstm: LearnedOptimizer, grads: torch.Tensor) -> torch.Tensor:
    """The learned optimiser's first update (zero state) for each gradient value in ``grads`` ``(G,)``."""
    with torch.no_grad():
        return lstm.step(grads, None)[0]


def plot_first_step_response(lstm: LearnedOptimizer, tuned: dict[str, TunedRate]) -> Figure:
    """The first update, from a zero state, as a function of the gradient's magnitude: the step taken *down* the
    gradient (``-update * sign(grad)``; negative means uphill), learned and hand-designed.

    From a zero state SGD and momentum step ``lr |g|``; RMSprop ``lr |g| / sqrt(0.01 g^2) = 10 lr`` and Adam
    ``lr`` (up to their small epsilon), whatever the gradient's size."""
    g = torch.logspace(-6, 3, 400)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for label, rate in tuned.items():
        if label in ("SGD", "momentum"):
            response = rate.lr * g
        elif label == "RMSprop":
            response = rate.lr * g / (torch.sqrt(0.01 * g**2) + 1e-8)
        else:
            response = rate.lr * g / (g + 1e-8)
        ax.plot(g, response, color=COLORS.get(label), lw=1.2, alpha=0.8,
                ls="--" if label == "RMSprop" else "-", label=f"{label} (lr {rate.lr:.3g})")
    for sign, style in ((1.0, "-"), (-1.0, ":")):
        down = -sign * first_step_response(lstm, sign * g)
        ax.plot(g, down, style, color=COLORS[LEARNED], lw=2,
                label=f"{LEARNED}, gradient {'> 0' if sign > 0 else '< 0'}")
    ax.axhline(0, color="gray", lw=0.8)
    ax.axvline(math.exp(-lstm.p), color="gray", ls=":", lw=1)
    ax.set_xscale("log")
    top = max(r.lr for r in tuned.values()) * 10 if "RMSprop" in tuned else 0.4
    ax.set_ylim(-0.05, min(top, 0.5) * 1.1)
    ax.set_xlabel("|gradient|")
    ax.set_ylabel("step down the gradient")
    ax.set_title("first update from a zero state")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def plot_tuning(tuned: dict[str, TunedRate], steps: int = HORIZON) -> Figure:
    """Each hand-designed optimiser's mean loss after ``steps`` steps against its learning rate (the tuning
    grid), the chosen rate circled; rates at which some run diverged are left out."""
    fig, ax = plt.subplots(figsize=(6.2, 3.6))
    for label, rate in tuned.items():
        lrs = [r for r, s in rate.scores.items() if math.isfinite(s)]
        ax.plot(lrs, [rate.scores[r] for r in lrs], "o-", ms=3, color=COLORS.get(label), label=label)
        ax.plot([rate.lr], [rate.scores[rate.lr]], "o", ms=10, mfc="none", color=COLORS.get(label))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"mean loss after {steps} steps")
    ax.set_title("tuning on training functions (circles: chosen)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_meta_training(history: list[dict[str, float]], label: str = "") -> Figure:
    """Validation loss (mean loss after the horizon on the validation functions) over meta-training."""
    fig, ax = plt.subplots(figsize=(6.2, 3.4))
    ax.plot([h["iteration"] for h in history], [h["val_loss"] for h in history], "o-", color="black", label=label
            or None)
    ax.set_xlabel("meta-training iteration (128 functions, 5 unrolls of 20 steps)")
    ax.set_ylabel(f"validation: mean loss at step {HORIZON}")
    ax.set_yscale("log")
    if label:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_paired(curves: dict[str, torch.Tensor], other: str, step: int, reference: str = LEARNED) -> Figure:
    """Problem by problem: ``other``'s loss at ``step`` (x) against ``reference``'s (y), log-log; below the
    diagonal the reference did better on that function."""
    x, y = curves[other][step].double(), curves[reference][step].double()
    fig, ax = plt.subplots(figsize=(4.6, 4.3))
    floor = 1e-14
    ax.scatter(x.clamp_min(floor), y.clamp_min(floor), s=14, color=COLORS.get(other), alpha=0.7)
    both = torch.cat([x, y]).clamp_min(floor)
    lo, hi = float(both.min()) / 2, float(both.max()) * 2
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel(f"{other}: loss at step {step}")
    ax.set_ylabel(f"{reference}: loss at step {step}")
    below = int((y < x).sum())
    ax.set_title(f"{below} of {len(x)} functions below the diagonal", fontsize=10)
    fig.tight_layout()
    return fig


def show_curves(curves: dict[str, dict[str, torch.Tensor | CurveSummary]], family: str,
                chosen: tuple[str, ...] | list[str], horizon: int) -> Figure:
    """The widget's figure: :func:`plot_loss_curves` of the ``chosen`` optimisers on one ``family`` of
    precomputed curves (``{family: {label: losses or their summarize()}}``), cut at ``horizon`` steps, with the
    training horizon marked."""
    if family not in curves:
        raise ValueError(f"family must be one of {list(curves)}; got {family!r}")
    picked = {k: v for k, v in curves[family].items() if k in chosen}
    if not picked:
        fig, ax = plt.subplots(figsize=(11, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, "pick at least one optimiser", ha="center", va="center")
        return fig
    return plot_loss_curves(picked, steps=horizon, mark=HORIZON if horizon > HORIZON else None,
                            title=f"{family}: {horizon} steps")
