"""Lesson 01, data scarcity: its experiments, figures and exercise checks in one place.

Everything here is a plain supervised problem on a fixed set of Omniglot characters: ``k``
drawings per character to train on, a fixed number of *other* drawings of the same characters
to test on.  The models are scikit-learn classifiers on raw pixels and a small Conv-4 trained
from scratch with Adam; the learning curve repeats this for growing ``k``.

Sections: experiments (splits, models, training, the capacity explorer, memorisation), the
arg-max loss demonstration, figures, and the checks of the lesson's exercises.  A check prints
"Correct! ..." or "Not yet: ..." and returns ``None``; ``strict=True`` raises
:class:`~metalearn_lite.lessons.exercises.CheckFailed` instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from ..augment import random_affine
from ..models import MLP, Conv4
from .exercises import CheckFailed, report
from .splits import Split, split_drawings

__all__ = [
    "CapacityExplorer", "CheckFailed", "Fit", "Split", "accuracy", "fit_cnn", "fit_sklearn", "learning_curves",
    "memorisation", "pick_classes", "plot_fit", "plot_learning_curves", "sklearn_models", "small_cnn",
    "split_drawings", "train_classifier", "argmax_has_no_gradient", "loss_along_direction",
    "plot_loss_along_direction", "check_split", "check_random_labels", "check_weight_decay_penalty",
    "check_random_label_prediction",
]

# ============================================================================ experiments

def pick_classes(images: torch.Tensor, classes: int, seed: int = 0) -> torch.Tensor:
    """``classes`` characters of ``images`` ``(C, D, ...)`` chosen at random (seeded)."""
    g = torch.Generator().manual_seed(seed)
    return images[torch.randperm(images.shape[0], generator=g)[:classes]]


def sklearn_models() -> dict[str, Callable[[], object]]:
    """Fresh scikit-learn classifiers on flattened pixels, by name."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    return {
        "logistic regression": lambda: LogisticRegression(C=1.0, max_iter=500),
        "1-nearest neighbour": lambda: KNeighborsClassifier(n_neighbors=1),
        "SVM (RBF kernel)": lambda: SVC(C=10.0, gamma="scale"),
    }


def fit_sklearn(factory: Callable[[], object], split: Split) -> tuple[float, float]:
    """Train a scikit-learn model on pixels: ``(train accuracy, test accuracy)``."""
    xtr, xte = split.x_train.flatten(1).numpy(), split.x_test.flatten(1).numpy()
    model = factory()
    model.fit(xtr, split.y_train.numpy())
    return (float(np.mean(model.predict(xtr) == split.y_train.numpy())),
            float(np.mean(model.predict(xte) == split.y_test.numpy())))


def small_cnn(classes: int, width: int = 32, seed: int = 0) -> Conv4:
    """A Conv-4 (``width`` filters per block, running batch norm) with a ``classes``-way head."""
    torch.manual_seed(seed)
    return Conv4(1, width, norm="running", out_features=classes)


def train_classifier(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 150,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    augment: bool = False,
    batch_size: int = 128,
    seed: int = 0,
) -> list[float]:
    """Adam on cross-entropy: ``steps`` mini-batches (all of ``x`` when it is smaller than
    ``batch_size``); ``augment`` distorts every image of every batch anew.  Returns the losses.

    A convolutional model runs in ``channels_last`` memory format (measured 1.3-1.4x faster on a
    2-core CPU for this Conv-4: same maths, another order of the same numbers in memory).
    """
    g = torch.Generator().manual_seed(seed)
    flat = isinstance(model, MLP)
    if not flat:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randperm(len(x), generator=g)[:batch_size]
        xb = random_affine(x[idx], g) if augment else x[idx]
        if not flat:
            xb = xb.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(xb.flatten(1) if flat else xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` that ``model`` (in eval mode) labels ``y``."""
    model.eval()
    with torch.no_grad():
        out = model(x.flatten(1) if isinstance(model, MLP) else x)
    return float((out.argmax(-1) == y).float().mean())


@dataclass(frozen=True)
class Fit:
    """One trained model: accuracies, its parameter count and the seconds it took."""

    train_acc: float
    test_acc: float
    parameters: int
    seconds: float


def fit_cnn(split: Split, width: int = 32, weight_decay: float = 0.0, augment: bool = False,
            steps: int = 150, seed: int = 0) -> Fit:
    """Train a fresh :func:`small_cnn` on ``split`` and measure it."""
    start = time.perf_counter()
    classes = int(split.y_train.max()) + 1
    model = small_cnn(classes, width, seed)
    train_classifier(model, split.x_train, split.y_train, steps=steps, weight_decay=weight_decay,
                     augment=augment, seed=seed)
    return Fit(accuracy(model, split.x_train, split.y_train), accuracy(model, split.x_test, split.y_test),
               sum(p.numel() for p in model.parameters()), time.perf_counter() - start)


class CapacityExplorer:
    """What the capacity widget shows: :func:`fit_cnn` on ``split_drawings(images, shots, held_out)``
    for a setting ``(shots, width, weight_decay, augment)``, each setting trained once.

    Training is deterministic (seeded), so a setting trained before (by the widget, the learning
    curves or the lesson's table) is answered from memory at once; a new one trains (seconds to a minute:
    :attr:`Fit.seconds` says how long it took).
    """

    def __init__(self, images: torch.Tensor, held_out: int = 5, steps: int = 150) -> None:
        self.images, self.held_out, self.steps = images, held_out, steps
        self.fits: dict[tuple[int, int, float, bool, int], Fit] = {}

    @staticmethod
    def _key(shots: int, width: int, weight_decay: float, augment: bool,
             seed: int) -> tuple[int, int, float, bool, int]:
        return int(shots), int(width), float(weight_decay), bool(augment), int(seed)

    def fit(self, shots: int, width: int = 32, weight_decay: float = 0.0, augment: bool = False, seed: int = 0) -> Fit:
        """The trained model's :class:`Fit` for this setting (trained now unless seen before); ``seed``
        draws the split of the drawings and the network's initialisation."""
        key = self._key(shots, width, weight_decay, augment, seed)
        if key not in self.fits:
            split = split_drawings(self.images, key[0], self.held_out, seed=key[4])
            self.fits[key] = fit_cnn(split, width=key[1], weight_decay=key[2], augment=key[3], steps=self.steps,
                                     seed=key[4])
        return self.fits[key]

    def seen(self, shots: int, width: int = 32, weight_decay: float = 0.0, augment: bool = False,
             seed: int = 0) -> bool:
        """Whether this setting is already trained (so :meth:`fit` answers at once)."""
        return self._key(shots, width, weight_decay, augment, seed) in self.fits


def learning_curves(
    images: torch.Tensor,
    shots: Sequence[int],
    seeds: Sequence[int] = (0, 1),
    cnn_steps: int = 150,
    held_out: int = 5,
    explorer: CapacityExplorer | None = None,
    progress: bool = False,
) -> dict[str, dict[str, np.ndarray]]:
    """Train and held-out *error* of every model for every ``shots``: ``{model: {"train": (S, R),
    "test": (S, R)}}`` with ``S = len(shots)`` and ``R = len(seeds)`` (a seed draws the split and
    the CNN's initialisation).  The CNN's fits go through ``explorer`` when one is given (built on
    the same ``images``, ``held_out`` and ``cnn_steps``), which keeps them for the capacity widget;
    ``progress`` shows a ``tqdm`` bar over the ``(K, seed)`` pairs."""
    from tqdm.auto import tqdm

    if explorer is None:
        explorer = CapacityExplorer(images, held_out, cnn_steps)
    elif explorer.images is not images or explorer.held_out != held_out or explorer.steps != cnn_steps:
        raise ValueError("explorer must be built on the same images, held_out and cnn_steps as the learning curves: "
                         f"got held_out {explorer.held_out} vs {held_out}, steps {explorer.steps} vs {cnn_steps}, "
                         f"same images: {explorer.images is images}")
    models: dict[str, Callable[[Split, int, int], tuple[float, float]]] = {
        name: (lambda split, k, seed, f=factory: fit_sklearn(f, split)) for name, factory in sklearn_models().items()
    }
    models["small CNN (Conv-4, 32 filters)"] = lambda split, k, seed: (
        lambda fit: (fit.train_acc, fit.test_acc))(explorer.fit(k, seed=seed))
    out = {name: {"train": np.zeros((len(shots), len(seeds))), "test": np.zeros((len(shots), len(seeds)))}
           for name in models}
    bar = tqdm(total=len(shots) * len(seeds), disable=not progress, desc="learning curves")
    for i, k in enumerate(shots):
        for j, seed in enumerate(seeds):
            bar.update()
            split = split_drawings(images, k, held_out, seed)
            for name, fit in models.items():
                train_acc, test_acc = fit(split, k, seed)
                out[name]["train"][i, j], out[name]["test"][i, j] = 1 - train_acc, 1 - test_acc
    bar.close()
    return out


def memorisation(split: Split, hidden: int = 1024, steps: int = 300, seed: int = 0) -> dict[str, Fit]:
    """A wide MLP on pixels trained on the true labels and on randomly permuted labels.

    Zhang et al. (2017)'s test: if the network can reach 100 % training accuracy on labels that
    carry no information, its training accuracy on the true labels says nothing about learning.
    """
    g = torch.Generator().manual_seed(seed)
    shuffled = split.y_train[torch.randperm(len(split.y_train), generator=g)]
    classes = int(split.y_train.max()) + 1
    out = {}
    for name, labels in (("true labels", split.y_train), ("random labels", shuffled)):
        torch.manual_seed(seed)
        mlp = MLP(split.x_train[0].numel(), (hidden, hidden), classes)
        start = time.perf_counter()
        train_classifier(mlp, split.x_train, labels, steps=steps, lr=1e-3, seed=seed)
        out[name] = Fit(accuracy(mlp, split.x_train, labels), accuracy(mlp, split.x_test, split.y_test),
                        sum(p.numel() for p in mlp.parameters()), time.perf_counter() - start)
    return out


# ============================================================================ a loss on the arg-max


def loss_along_direction(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, scales: Sequence[float],
                         seed: int = 0) -> dict[str, np.ndarray]:
    """Cross-entropy and the 0-1 error (the fraction of arg-max predictions that are wrong) of ``model`` on
    ``(x, y)`` with every weight moved to ``theta + s * d`` for each ``s`` of ``scales``, ``d`` a random
    direction with ``||d|| = ||theta||`` (so ``s`` is a relative step).

    The 0-1 error is a step function of the weights: between the few ``s`` where some prediction flips,
    it is flat, so its derivative is zero almost everywhere; the cross-entropy changes smoothly.
    Returns ``{"scale", "cross-entropy", "0-1 error"}`` arrays.
    """
    from torch.func import functional_call

    g = torch.Generator().manual_seed(seed)
    params = {n: p.detach() for n, p in model.named_parameters()}
    direction = {n: torch.randn(p.shape, generator=g) for n, p in params.items()}
    norm = torch.sqrt(sum((p ** 2).sum() for p in params.values()))
    dnorm = torch.sqrt(sum((d ** 2).sum() for d in direction.values()))
    model.eval()
    ce, err = [], []
    with torch.no_grad():
        for s in scales:
            moved = {n: p + float(s) * norm / dnorm * direction[n] for n, p in params.items()}
            out = functional_call(model, moved, (x.flatten(1) if isinstance(model, MLP) else x,))
            ce.append(float(F.cross_entropy(out, y)))
            err.append(float((out.argmax(-1) != y).float().mean()))
    return {"scale": np.asarray(scales, dtype=float), "cross-entropy": np.array(ce), "0-1 error": np.array(err)}


def argmax_has_no_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> str:
    """What autograd says about a loss built on the arg-max prediction: the message of the error raised by
    ``backward`` (the arg-max is an integer, outside the graph), or a note if it ran."""
    out = model(x.flatten(1) if isinstance(model, MLP) else x)
    wrong = (out.argmax(-1) != y).float().mean()          # the 0-1 error: nothing connects it to the weights
    try:
        wrong.backward()
    except RuntimeError as err:
        return f"RuntimeError: {err}"
    return "backward ran"  # pragma: no cover - torch has always refused it


# ============================================================================ figures


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


def plot_fit(fit: Fit, title: str, chance: float, reference: Fit | None = None,
             reference_label: str = "default") -> Figure:
    """Two bars, training and held-out accuracy, with the gap between them marked; ``reference`` (another
    setting's :class:`Fit`) is drawn as a black tick on each bar, for comparison."""
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    bars = ax.bar(["training", "held out"], [100 * fit.train_acc, 100 * fit.test_acc],
                  color=["tab:blue", "tab:red"], width=0.5)
    for bar in bars:
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 1.5, f"{bar.get_height():.0f}%", ha="center")
    if reference is not None:
        for bar, value in zip(bars, (reference.train_acc, reference.test_acc)):
            ax.hlines(100 * value, bar.get_x() - 0.05, bar.get_x() + bar.get_width() + 0.05, color="k", lw=2.5,
                      label=reference_label if bar is bars[0] else None)
        ax.legend(fontsize=8, loc="upper right", frameon=False)
    ax.axhline(100 * chance, color="gray", ls=":", lw=1)
    ax.set_ylim(0, 118 if reference is not None else 110)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{title}\ngap {100 * (fit.train_acc - fit.test_acc):.0f} points, {fit.parameters:,} parameters",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_loss_along_direction(curves: dict[str, np.ndarray]) -> Figure:
    """The two losses of :func:`loss_along_direction` against the step ``s``: a smooth curve and a staircase."""
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 2.8), sharex=True)
    for ax, key, colour in zip(axes, ("cross-entropy", "0-1 error"), ("tab:blue", "tab:red")):
        ax.plot(curves["scale"], curves[key], ".-" if key == "cross-entropy" else "-", color=colour,
                drawstyle="default" if key == "cross-entropy" else "steps-mid", lw=1.2, ms=3)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step s along a random direction (relative to ||weights||)")
    axes[0].set_ylabel("loss on the training drawings")
    fig.tight_layout()
    return fig


# ============================================================================ exercise checks


def _id_images(classes: int, drawings: int, side: int = 4) -> torch.Tensor:
    """``(classes, drawings, 1, side, side)``: image ``(c, d)`` is filled with the value ``c * 100 + d``."""
    ids = (torch.arange(classes).unsqueeze(1) * 100 + torch.arange(drawings)).float()
    return ids.view(classes, drawings, 1, 1, 1).expand(classes, drawings, 1, side, side).clone()


def _tensor(got: Any, what: str) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what} is a {type(got).__name__}; return torch tensors")
    return got


def _split(fn: Callable[[torch.Tensor, int, int, torch.Generator], Any]) -> str:
    for classes, drawings, shots, held_out in [(4, 20, 1, 5), (6, 20, 5, 5), (3, 10, 7, 3)]:
        images = _id_images(classes, drawings)
        got = fn(images.clone(), shots, held_out, torch.Generator().manual_seed(0))
        if got is None:
            raise CheckFailed("your function returned None: return (x_train, y_train, x_test, y_test)")
        if not isinstance(got, (tuple, list)) or len(got) != 4:
            raise CheckFailed("return four things: (x_train, y_train, x_test, y_test)")
        xtr, ytr, xte, yte = (_tensor(t, name) for t, name in zip(got, ("x_train", "y_train", "x_test", "y_test")))
        case = f"{classes} classes of {drawings} drawings, shots={shots}, held_out={held_out}"
        want = {"x_train": (classes * shots, 1, 4, 4), "y_train": (classes * shots,),
                "x_test": (classes * held_out, 1, 4, 4), "y_test": (classes * held_out,)}
        for (name, shape), t in zip(want.items(), (xtr, ytr, xte, yte)):
            if tuple(t.shape) != shape:
                raise CheckFailed(f"with {case}, {name} has shape {tuple(t.shape)} but should be {shape}: "
                                  "flatten (class, drawing) into one batch dimension")
        id_tr, id_te = xtr[:, 0, 0, 0].long(), xte[:, 0, 0, 0].long()
        for ids, y, name in ((id_tr, ytr, "training"), (id_te, yte, "held-out")):
            if not torch.equal(ids // 100, y.long()):
                raise CheckFailed(f"with {case}, some {name} labels do not belong to their images: the label of a "
                                  "drawing of class c must be c (use the class index, not the drawing's position)")
            counts = torch.bincount(ids // 100, minlength=classes)
            per = shots if name == "training" else held_out
            if not torch.equal(counts, torch.full((classes,), per)):
                raise CheckFailed(f"with {case}, the {name} set has {counts.tolist()} drawings per class; every "
                                  f"class needs exactly {per}. Split each class's drawings, not the whole pile")
            if len(set(ids.tolist())) != len(ids):
                raise CheckFailed(f"with {case}, the {name} set holds the same drawing twice")
        shared = set(id_tr.tolist()) & set(id_te.tolist())
        if shared:
            first = min(shared)
            raise CheckFailed(f"with {case}, {len(shared)} drawing(s) are in both sets (e.g. drawing {first % 100} "
                              f"of class {first // 100}): a held-out drawing must never be trained on")
    return "every class gives K drawings to training and different ones to the held-out set."


def check_split(fn: Callable[[torch.Tensor, int, int, torch.Generator], Any], strict: bool = False) -> None:
    """``fn(images (C, D, 1, H, W), shots, held_out, generator) -> (x_train, y_train, x_test, y_test)``.
    Prints the verdict and returns ``None``."""
    return report(_split, fn, strict)


def _random_labels(fn: Callable[[torch.Tensor, torch.Generator], Any]) -> str:
    y = torch.arange(10).repeat_interleave(5)
    a = _tensor(fn(y.clone(), torch.Generator().manual_seed(0)), "the result")
    if a.shape != y.shape:
        raise CheckFailed(f"the result has shape {tuple(a.shape)}; it must have y's shape {tuple(y.shape)}")
    if torch.equal(a, y):
        raise CheckFailed("the labels came back unchanged: shuffle them (torch.randperm with the generator)")
    if not torch.equal(torch.bincount(a, minlength=10), torch.bincount(y, minlength=10)):
        raise CheckFailed("the classes no longer have 5 examples each: drawing new labels at random (randint) changes "
                          "the counts; permute the existing labels instead, so only the image-label pairing is lost")
    again = _tensor(fn(y.clone(), torch.Generator().manual_seed(0)), "the result")
    other = _tensor(fn(y.clone(), torch.Generator().manual_seed(1)), "the result")
    if not torch.equal(a, again):
        raise CheckFailed("the same generator seed gave two different shuffles: draw the permutation from the "
                          "generator you are given (torch.randperm(n, generator=generator))")
    if torch.equal(a, other):
        raise CheckFailed("two different generator seeds gave the same shuffle: use the generator argument")
    return "the labels are permuted: every class keeps its count, but which image has which label is now noise."


def check_random_labels(fn: Callable[[torch.Tensor, torch.Generator], Any], strict: bool = False) -> None:
    """``fn(y (B,), generator) -> (B,)``: the same labels in a random order.  Prints the verdict and returns
    ``None``."""
    return report(_random_labels, fn, strict)


def _weight_decay_penalty(fn: Callable[[list[torch.Tensor], float], torch.Tensor]) -> str:
    torch.manual_seed(0)
    for wd in (0.01, 0.3):
        weights = [torch.randn(3, 4, requires_grad=True), torch.randn(4, requires_grad=True)]
        penalty = fn(weights, wd)
        if not isinstance(penalty, torch.Tensor) or penalty.dim() != 0:
            raise CheckFailed("penalty(weights, wd) must return one number (a 0-dim torch tensor) built from the "
                              "weights, e.g. with (w ** 2).sum()")
        if not penalty.requires_grad:
            raise CheckFailed("the penalty has no gradient: compute it from the weights themselves (no .detach(), "
                              "no .item())")
        grads = torch.autograd.grad(penalty, weights, allow_unused=True)
        for w, g in zip(weights, grads):
            g = torch.zeros_like(w) if g is None else g
            if torch.allclose(g, wd * w, atol=1e-6):
                continue
            if torch.allclose(g, 2 * wd * w, atol=1e-6):
                raise CheckFailed(f"with wd={wd} your penalty's gradient is 2*wd*w, twice what Adam's weight_decay "
                                  "adds. Hint: d/dw (c * w^2) = 2 c w; which c makes that wd * w?")
            ratio = float((g * w).sum() / (w * w).sum())
            raise CheckFailed(f"with wd={wd} your penalty's gradient is not wd * w (it is about {ratio:.3g} * w "
                              "along w). Hint: Adam's weight_decay adds wd * w to every gradient; find the "
                              "c * sum(w^2) whose gradient that is")
    # the same in training: Adam with weight_decay=wd and Adam on loss + penalty take the same steps
    torch.manual_seed(1)
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    runs = []
    for explicit in (False, True):
        torch.manual_seed(2)
        layer = torch.nn.Linear(5, 3)
        opt = torch.optim.Adam(layer.parameters(), lr=0.05, weight_decay=0.0 if explicit else 0.1)
        for _ in range(5):
            loss = F.cross_entropy(layer(x), y)
            if explicit:
                loss = loss + fn(list(layer.parameters()), 0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        runs.append(torch.cat([p.detach().flatten() for p in layer.parameters()]))
    if not torch.allclose(runs[0], runs[1], atol=1e-5):
        raise CheckFailed("five Adam steps on loss + penalty differ from Adam(weight_decay=wd) on the loss alone")
    return ("the penalty is (wd / 2) * sum of w^2: its gradient wd * w is what Adam's weight_decay adds, and five "
            "Adam steps on loss + penalty equal five steps with weight_decay=wd.")


def check_weight_decay_penalty(fn: Callable[[list[torch.Tensor], float], torch.Tensor],
                               strict: bool = False) -> None:
    """``fn(weights, wd) -> scalar``: the penalty whose gradient is what ``Adam(weight_decay=wd)`` adds.
    Prints the verdict and returns ``None``."""
    return report(_weight_decay_penalty, fn, strict)


def check_random_label_prediction(predicted: float | None, measured: float, classes: int,
                                  strict: bool = False) -> None:
    """Predict-then-run: ``predicted`` held-out accuracy (in %) of the network trained on shuffled labels,
    against the ``measured`` one (in %) of the lesson's run with ``classes`` classes.  Prints the verdict and
    returns ``None``."""

    def judge(p: float | None) -> str:
        if p is None:
            raise CheckFailed("set predicted_random_labels to a number (a percentage) before running the cell "
                              "that trains on shuffled labels")
        if not isinstance(p, (int, float)) or not 0 <= p <= 100:
            raise CheckFailed(f"the prediction must be a percentage between 0 and 100; got {p!r}")
        if abs(p - measured) > 5:
            raise CheckFailed(f"you predicted {p:g} %, the run measured {measured:.0f} %. Hint: after shuffling, "
                              "a training drawing's label says nothing about its character; what can a network "
                              f"that learned only those labels do on new drawings of {classes} classes?")
        return (f"you predicted {p:g} %, the run measured {measured:.0f} %: chance is {100 / classes:.0f} %, "
                "since labels that carry no information teach nothing that carries over to new drawings.")

    return report(judge, predicted, strict)
