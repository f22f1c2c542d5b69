"""Lesson 07 in one module: a learned optimiser against hand-designed ones, Meta-LSTM's gates, and the checks
of the lesson's exercises.

Sections: the quadratic experiment (a learned optimiser against hand-designed ones with tuned learning
rates), its figures, Meta-LSTM's gate figure, Meta-LSTM where the update rule is the only thing learned
(:func:`rule_features`, :func:`rule_learner`, :func:`train_rule`, :func:`schedule_accuracy`), and the
exercises' checks (each prints "Correct! ..." or "Not yet: ..." and returns ``None``; ``strict=True``
raises :class:`~metalearn_lite.lessons.exercises.CheckFailed` instead).

The quadratic experiment's set-up is fixed here so that the notebook and ``benchmarks/learned_optimizer.py``
measure the same thing: meta-training functions from ``QuadraticProblems(seed=TRAIN_SEED)``; the hand-designed
optimisers' learning rates tuned on the first ``TUNE_PROBLEMS`` of those training functions; the learned
optimiser's early stopping on ``VAL_PROBLEMS`` functions of seed ``VAL_SEED``; and every number reported on
``TEST_PROBLEMS`` held-out functions of seed ``TEST_SEED``. The same seeds serve the other problem family
(:class:`~metalearn_lite.datasets.quadratics.MLPProblems`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from scipy import stats
from torch import nn
from torch.func import functional_call
from tqdm.auto import tqdm

from ..algorithms.learned_optimizer import (
    HAND_DESIGNED,
    LR_GRID,
    LearnedOptimizer,
    MetaTrainResult,
    TunedRate,
    hand_designed,
    meta_train,
    optimize,
    preprocess_gradient,
    tune_learning_rate,
)
from ..algorithms.meta_lstm import MetaLSTM
from ..checkpoints import FORMAT, checkpoint_dir, pretrained_backbone, read_checkpoint, write_blob
from ..datasets.omniglot import omniglot_split
from ..datasets.quadratics import MLPProblems, QuadraticProblems
from ..episodes import EpisodeSampler
from ..evaluation import EvalResult, evaluate, mean_ci
from .exercises import CheckFailed, answer_tensor, close, report

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
    return write_blob(path, blob)


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


# ----------------------------------------------------------------------------- Meta-LSTM's gates


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


# ----------------------------------------------------------------------------- Meta-LSTM where the rule matters

#: the task shape, learned updates per task, meta-learner's Adam rate, tasks per meta-step and meta-steps
RULE_WAYS, RULE_SHOTS, RULE_QUERIES, RULE_STEPS = 5, 1, 5, 5
RULE_LR, RULE_TASKS, RULE_ITERATIONS = 1e-2, 8, 400
#: the learner's (and meta-learner's) initial weights, the training tasks' and the test episodes' seeds
RULE_SEED, RULE_TRAIN_SEED, RULE_TEST_SEED = 0, 1, 0
#: learning rates tried for the hand-designed schedules (four per decade, 1e-3 to 10^0.5)
RATE_GRID = tuple(10 ** (k / 4) for k in range(-12, 3))
#: scikit-learn's ``invscaling`` exponent (``power_t``) of ``MLPClassifier``/``SGDClassifier``
POWER_T = 0.5


def rule_features(splits: Sequence[str] = ("train", "test"), body: str = "pretrained-omniglot",
                  chunk: int = 20) -> dict[str, torch.Tensor]:
    """Every Omniglot drawing of each split through ``body``'s frozen Conv-4: ``{split: (classes, 20, D)}``.

    The body normalises with batch statistics; the drawings go through it ``chunk`` characters at a time."""
    backbone = pretrained_backbone(body)
    out = {}
    with torch.no_grad():
        for split in splits:
            images = omniglot_split(split).images
            parts = [backbone(images[i:i + chunk].flatten(0, 1)) for i in range(0, len(images), chunk)]
            out[split] = torch.cat(parts).reshape(*images.shape[:2], -1)
    return out


def rule_learner(dim: int = 64, ways: int = RULE_WAYS, steps: int = RULE_STEPS, seed: int = RULE_SEED,
                 lstm_hidden: int = 8) -> MetaLSTM:
    """A Meta-LSTM whose learner is a linear classifier ``(B, dim) -> (B, ways)`` on features, started from
    PyTorch's random initialisation (seeded) at every task.

    Unlike the paper's, this ``c_0`` is frozen (``requires_grad=False``): meta-training can change only the
    update rule (the first LSTM layer and the gates), so any change in accuracy is the rule's."""
    torch.manual_seed(seed)
    net = nn.Sequential(OrderedDict(head=nn.Linear(dim, ways)))
    method = MetaLSTM(net, ways=ways, lstm_hidden=lstm_hidden, inner_steps=steps)
    for p in method.net.parameters():
        p.requires_grad_(False)
    return method


def train_rule(method: MetaLSTM, features: torch.Tensor, iterations: int = RULE_ITERATIONS, tasks: int = RULE_TASKS,
               lr: float = RULE_LR, seed: int = RULE_TRAIN_SEED, progress: bool = False) -> list[dict[str, float]]:
    """Meta-train ``method``'s trainable weights (Adam at ``lr``, gradient norm clipped to 1) on ``iterations``
    meta-batches of ``tasks`` tasks from ``features`` ``(classes, per_class, D)``; returns each meta-step's
    query loss and accuracy (``[{"iteration", "loss", "accuracy"}, ...]``)."""
    weights = [p for p in method.parameters() if p.requires_grad]
    if not weights:
        raise ValueError("the method has no trainable weights")
    opt = torch.optim.Adam(weights, lr=lr)
    sampler = EpisodeSampler(features, ways=method.ways, shots=RULE_SHOTS, queries=RULE_QUERIES, seed=seed)
    history = []
    for it in tqdm(range(iterations), disable=not progress, desc="meta-training the rule"):
        loss, acc = method.loss(sampler.sample(tasks))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(weights, 1.0)
        opt.step()
        history.append({"iteration": it + 1, "loss": float(loss.detach()), "accuracy": float(acc)})
    return history


def rule_accuracy(method: MetaLSTM, features: torch.Tensor, episodes: int = 600,
                  seed: int = RULE_TEST_SEED) -> EvalResult:
    """``method``'s accuracy on ``episodes`` 5-way 1-shot tasks (15 queries per class) of ``features``."""
    return evaluate(method, features, ways=method.ways, shots=RULE_SHOTS, queries=15, episodes=episodes,
                    seed=seed)


def schedule(kind: str, rate: float, steps: int = RULE_STEPS, power_t: float = POWER_T) -> list[float]:
    """The step sizes of a hand-designed schedule: ``"constant"`` (``rate`` at every step) or ``"invscaling"``
    (scikit-learn's ``eta_t = rate / t^power_t``, ``t = 1, 2, ...``)."""
    if kind == "constant":
        return [rate] * steps
    if kind == "invscaling":
        return [rate / t ** power_t for t in range(1, steps + 1)]
    raise ValueError(f"kind must be 'constant' or 'invscaling'; got {kind!r}")


def schedule_accuracy(method: MetaLSTM, features: torch.Tensor, rates: Sequence[float], episodes: int = 600,
                      seed: int = RULE_TEST_SEED, queries: int = 15) -> torch.Tensor:
    """Per-task query accuracy ``(episodes,)`` of plain gradient descent from ``method``'s ``c_0`` with step size
    ``rates[t]`` at update ``t`` (forget gate 1): the hand-designed rule the Meta-LSTM is compared with."""
    sampler = EpisodeSampler(features, ways=method.ways, shots=RULE_SHOTS, queries=queries, seed=seed)
    ep = sampler.sample(episodes)
    theta0, shapes = method.start(method.ways)
    accs = []
    for i in range(episodes):
        theta = theta0.detach()
        for rate in rates:
            grad, _ = method.support_gradient(theta, shapes, ep.support_x[i], ep.support_y[i])
            theta = theta - rate * grad
        with torch.no_grad():
            out = functional_call(method.net, method.params(theta, shapes), (ep.query_x[i],))
        accs.append((out.argmax(-1) == ep.query_y[i]).float().mean())
    return torch.stack(accs)


def tune_schedule(method: MetaLSTM, features: torch.Tensor, kind: str, grid: Sequence[float] = RATE_GRID,
                  episodes: int = 200, seed: int = RULE_TRAIN_SEED) -> tuple[float, dict[float, float]]:
    """The rate of schedule ``kind`` with the best mean query accuracy on ``episodes`` training tasks of
    ``features`` (ties: the smaller rate), and the accuracy of every rate tried."""
    scores = {r: float(schedule_accuracy(method, features, schedule(kind, r, method.inner_steps), episodes, seed,
                                         queries=RULE_QUERIES).mean()) for r in grid}
    return max(scores, key=lambda r: (scores[r], -r)), scores


def gate_summary(trace: dict[str, Any]) -> str:
    """A markdown table of the median input and forget gates (over all coordinates) at each update of a trace."""
    rows = ["| update | input gate (median) | 10th-90th percentile | forget gate (median) |", "|---|---|---|---|"]
    for t, (i, f) in enumerate(zip(trace["input_gate"], trace["forget_gate"]), 1):
        lo, hi = torch.quantile(i.double(), torch.tensor([0.1, 0.9], dtype=torch.float64)).tolist()
        rows.append(f"| {t} | {float(i.median()):.4f} | {lo:.4f} to {hi:.4f} | {float(f.median()):.4f} |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------- exercise: the Meta-LSTM cell's update

CellFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _cases() -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(0)
    theta, grad = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    gates = torch.rand(2, 6, generator=g, dtype=torch.float64)
    return [
        (theta, grad, torch.ones(6, dtype=torch.float64), torch.full((6,), 0.1, dtype=torch.float64)),  # f = 1, i = 0.1
        (theta, grad, gates[0], gates[1]),                                                                # any gates
    ]


def _cell_update(fn: CellFn) -> str:
    for theta, grad, forget, inp in _cases():
        answer = fn(theta.clone(), grad.clone(), forget.clone(), inp.clone())
        got = answer_tensor(answer, "update theta_t - theta_{t-1}", tuple(theta.shape))
        want = (forget - 1) * theta - inp * grad
        if close(got, want, 1e-8):
            continue
        if close(got, forget * theta - inp * grad, 1e-8):
            raise CheckFailed("you returned the new parameters theta_t = f * theta + i * (-grad); return the update, "
                              "theta_t - theta_{t-1}")
        if close(got, (forget - 1) * theta + inp * grad, 1e-8) or close(got, inp * grad, 1e-8):
            raise CheckFailed("the sign is wrong: the candidate cell value is minus the gradient, so the input gate "
                              "scales a step DOWN the gradient")
        if close(got, -inp * grad, 1e-8):
            raise CheckFailed("right when the forget gate is 1, but here it is not: theta_t = f * theta_{t-1} - i * "
                              "grad, so the update also contains (f - 1) * theta_{t-1}")
        if close(got, -forget * inp * grad, 1e-8) or close(got, -forget * grad, 1e-8):
            raise CheckFailed("the forget gate multiplies the previous cell state (the parameters), not the gradient")
        raise CheckFailed("not the cell's update. Hint: c_t = f * c_{t-1} + i * c~_t with c_t = theta_t and "
                          "c~_t = -grad; the update is c_t - c_{t-1}")
    return ("theta_t - theta_{t-1} = (f - 1) theta_{t-1} - i grad. With f = 1 and i = alpha it is -alpha grad: "
            "one step of SGD at rate alpha; a forget gate below 1 also shrinks the parameters toward 0, like "
            "weight decay.")


def check_cell_update(fn: CellFn, strict: bool = False) -> None:
    """``fn(theta, grad, forget, inp) -> theta_t - theta_{t-1}`` for a cell state that holds the parameters.
    Prints the verdict and returns ``None``."""
    return report(_cell_update, fn, strict)


# ----------------------------------------------------------------------------- exercise: derive the preprocessing

#: the gradients whose two inputs the reader derives by hand (p = 10): one above e^-10, one below
DERIVE_GRADIENTS = (-0.002, 2e-5)


def _preprocess_pairs(answer: Any) -> str:
    if answer is None:
        raise CheckFailed("my_pairs is None: write {-0.002: (first, second), 2e-05: (first, second)}")
    if not isinstance(answer, dict) or set(answer) != set(DERIVE_GRADIENTS):
        raise CheckFailed(f"my_pairs must be a dict with the keys {list(DERIVE_GRADIENTS)}; got {answer!r}")
    floor = math.exp(-10.0)
    for g in DERIVE_GRADIENTS:
        pair = answer[g]
        if pair is None or len(pair) != 2 or any(v is None for v in pair):
            raise CheckFailed(f"my_pairs[{g}] must be two numbers (first input, second input); got {pair!r}")
        got = (float(pair[0]), float(pair[1]))
        want = tuple(preprocess_gradient(torch.tensor([g], dtype=torch.float64), 10.0)[0].tolist())
        if all(abs(a - b) <= 0.01 * max(1.0, abs(b)) for a, b in zip(got, want)):
            continue
        big = abs(g) >= floor
        if big and abs(got[0] - math.log10(abs(g)) / 10) < 0.01:
            raise CheckFailed(f"for {g}: the first input uses the natural logarithm, log|g| / p with ln, not log10")
        if big and abs(got[0] - math.log(abs(g))) < 0.05:
            raise CheckFailed(f"for {g}: divide the logarithm by p = 10")
        if big and abs(got[1] - want[1]) > 0.01:
            raise CheckFailed(f"for {g}: above the threshold the second input is the sign of the gradient")
        if not big and abs(got[0] + 1) > 0.01:
            raise CheckFailed(f"{g} is below e^-10 = {floor:.3g}: it takes the second branch, whose first input is "
                              "-1 whatever the gradient")
        if not big and abs(got[1] - math.copysign(1.0, g)) < 0.01:
            raise CheckFailed(f"{g} is below e^-10 = {floor:.3g}: the second input is e^p * g (it shrinks to 0 with "
                              "the gradient), not the sign")
        raise CheckFailed(f"for the gradient {g} you wrote {got}, but the preprocessing gives "
                          f"({want[0]:.3f}, {want[1]:.3f}). Hint: first compare |g| with e^-10 = {floor:.3g}")
    return ("-0.002 is above e^-10 (about 4.5e-5): (ln 0.002 / 10, -1) = (-0.621, -1). 2e-5 is below: "
            "(-1, e^10 * 2e-5) = (-1, 0.441). Above the threshold the LSTM sees the order of magnitude and the "
            "sign; below it a value that goes linearly to 0.")


def check_preprocess_pairs(answer: Any, strict: bool = False) -> None:
    """``answer``: ``{-0.002: (first, second), 2e-05: (first, second)}``, the two inputs of each gradient for
    ``p = 10``, derived by hand (to two decimals).  Prints the verdict and returns ``None``."""
    return report(_preprocess_pairs, answer, strict)


# ----------------------------------------------------------------------------- exercise: predict the long horizon

ADAM = "Adam"


def _horizon(args: tuple[Any, dict[str, torch.Tensor]]) -> str:
    prediction, curves = args
    if prediction is None or not isinstance(prediction, dict) or set(prediction) != {"mean", "median"}:
        raise CheckFailed('my_prediction must be {"mean": ..., "median": ...}, each "LSTM" or "Adam"; got '
                          f"{prediction!r}")
    for key, value in prediction.items():
        if value not in ("LSTM", ADAM):
            raise CheckFailed(f'my_prediction["{key}"] must be "LSTM" or "Adam"; got {value!r}')
    for name in (LEARNED, ADAM):
        if name not in curves:
            raise CheckFailed(f"curves has no {name!r}: pass the curves of the cell above (l7.run_all(...))")
    last = {name: curves[name][-1] for name in (LEARNED, ADAM)}
    steps = curves[LEARNED].shape[0] - 1
    truth = {"mean": min(last, key=lambda n: float(last[n].mean())),
             "median": min(last, key=lambda n: float(last[n].median()))}
    truth = {k: "LSTM" if v == LEARNED else ADAM for k, v in truth.items()}
    numbers = (f"at step {steps}: mean {float(last[LEARNED].mean()):.3g} (LSTM) vs {float(last[ADAM].mean()):.3g} "
               f"(Adam), median {float(last[LEARNED].median()):.3g} vs {float(last[ADAM].median()):.3g}")
    wrong = [k for k in ("mean", "median") if prediction[k] != truth[k]]
    if wrong:
        raise CheckFailed(f"the run says otherwise for the {' and the '.join(wrong)}: {numbers}. The mean is "
                          "decided by the few ill-conditioned functions, the median by the typical one; which of "
                          "the two did the LSTM's training (100 steps, summed losses) reward?")
    return (f"{numbers}. The learned optimiser keeps the mean, which the hard functions dominate, but on the typical "
            "function it stalls in a regime it never saw, where Adam keeps converging.")


def check_horizon_prediction(prediction: Any, curves: dict[str, torch.Tensor], strict: bool = False) -> None:
    """``prediction``: ``{"mean": "LSTM" or "Adam", "median": ...}``, which optimiser ends lower at the last step of
    ``curves`` (``{label: losses (steps + 1, n)}``, with the learned optimiser and Adam).  Returns ``None``."""
    return report(_horizon, (prediction, curves), strict)
