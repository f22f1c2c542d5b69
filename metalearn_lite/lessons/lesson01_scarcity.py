"""Lesson 01's experiments: what happens to ordinary classifiers when each class has few examples.

Everything here is a plain supervised problem on a fixed set of Omniglot characters: ``k``
drawings per character to train on, a fixed number of *other* drawings of the same characters
to test on.  The models are scikit-learn classifiers on raw pixels and a small Conv-4 trained
from scratch with Adam; the learning curve repeats this for growing ``k``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..augment import random_affine
from ..models import MLP, Conv4
from .splits import Split, split_drawings

__all__ = ["Split", "split_drawings"]  # shown by lesson 01; they live in splits.py


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
) -> dict[str, dict[str, np.ndarray]]:
    """Train and held-out *error* of every model for every ``shots``: ``{model: {"train": (S, R),
    "test": (S, R)}}`` with ``S = len(shots)`` and ``R = len(seeds)`` (a seed draws the split and
    the CNN's initialisation).  The CNN's fits go through ``explorer`` when one is given (built on
    the same ``images``, ``held_out`` and ``cnn_steps``), which keeps them for the capacity widget."""
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
    for i, k in enumerate(shots):
        for j, seed in enumerate(seeds):
            split = split_drawings(images, k, held_out, seed)
            for name, fit in models.items():
                train_acc, test_acc = fit(split, k, seed)
                out[name]["train"][i, j], out[name]["test"][i, j] = 1 - train_acc, 1 - test_acc
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
