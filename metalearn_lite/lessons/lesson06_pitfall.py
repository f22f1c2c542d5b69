"""Lesson 06's pitfall: a "transfer learning" example in which no knowledge is transferred.

A widely copied snippet trains a *source* model, then splits the very same data the very same way
and trains a *fresh* *target* model on it.  The target never looks at the source: the result is
exactly what training the target alone gives.  :func:`copied_example` reproduces that pattern on
Omniglot pixels and proves it by comparing weights; the lesson then shows the correct version
(source = other classes, target = new classes with few examples, initialised from the source).
"""

from __future__ import annotations

import numpy as np
import torch

from .splits import split_drawings


def copied_example(images: torch.Tensor, shots: int = 5, held_out: int = 5, seed: int = 0) -> dict[str, object]:
    """The copied pattern on ``images`` ``(C, D, 1, H, W)``: source and target on the same split.

    Returns the source's and target's held-out accuracies, that of a model trained with no source
    at all, and whether the target's weights are identical to that model's.
    """
    from sklearn.linear_model import LogisticRegression

    def data(split_seed: int) -> tuple[np.ndarray, ...]:
        s = split_drawings(images, shots, held_out, split_seed)
        return s.x_train.flatten(1).numpy(), s.y_train.numpy(), s.x_test.flatten(1).numpy(), s.y_test.numpy()

    x_train, y_train, x_test, y_test = data(seed)
    source = LogisticRegression(random_state=42, max_iter=500).fit(x_train, y_train)  # "train the source model"
    xt_train, yt_train, xt_test, yt_test = data(seed)  # "the target task": the same split of the same data
    target = LogisticRegression(random_state=42, max_iter=500).fit(xt_train, yt_train)  # a fresh model
    alone = LogisticRegression(random_state=42, max_iter=500).fit(xt_train, yt_train)  # no source anywhere
    return {
        "source accuracy": float(np.mean(source.predict(x_test) == y_test)),
        "target accuracy": float(np.mean(target.predict(xt_test) == yt_test)),
        "no-source accuracy": float(np.mean(alone.predict(xt_test) == yt_test)),
        "identical weights": bool(np.array_equal(target.coef_, alone.coef_)
                                  and np.array_equal(target.intercept_, alone.intercept_)),
        "same data": bool(np.array_equal(x_train, xt_train)),
    }
