"""Worked solutions of lesson 07's exercises (``show_solution("07", name)`` prints one)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..exercises import Exercise
from ..lesson07 import (
    LEARNED,
    check_cell_update,
    check_horizon_prediction,
    check_preprocess_pairs,
    hand_designed,
    load_learned_optimizer,
    optimize,
    problems,
)


def preprocess_by_hand() -> tuple[dict[float, tuple[float, float]]]:
    """p = 10, so the threshold is e^-10 = 4.54e-5.  |-0.002| is above it: (ln 0.002 / 10, sign) = (-0.621, -1).
    2e-5 is below it: (-1, e^10 * 2e-5) = (-1, 22026 * 2e-5) = (-1, 0.441)."""
    p = 10.0
    return ({-0.002: (math.log(0.002) / p, -1.0), 2e-5: (-1.0, math.exp(p) * 2e-5)},)


def horizon(steps: int = 500) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The learned optimiser was trained to lower the *sum* of losses over 100 steps, which the ill-conditioned
    functions dominate, and it has never seen a loss below about 1e-3.  Prediction: it keeps the lower mean
    (the hard functions) but loses the median (the typical function, where it stalls) to Adam.  Then the run:
    Adam at the rate the lesson tuned for 100 steps (``tuned["Adam"]``, printed there), both on the 100 test
    functions, ``steps`` steps."""
    prediction = {"mean": "LSTM", "median": "Adam"}
    test = problems("quadratic", "test")
    adam_lr = 10 ** -0.5  # tune_learning_rate("adam", problems("quadratic", "tune")).lr, as the lesson printed
    curves = {LEARNED: optimize(test, load_learned_optimizer(), steps),
              "Adam": optimize(test, hand_designed("adam", adam_lr), steps)}
    return prediction, curves


def cell_update() -> tuple[Any]:
    """theta_t = f * theta_{t-1} - i * grad, so the update theta_t - theta_{t-1} = (f - 1) * theta_{t-1} - i * grad."""

    def my_update(theta: torch.Tensor, grad: torch.Tensor, forget: torch.Tensor, inp: torch.Tensor) -> torch.Tensor:
        return (forget - 1) * theta - inp * grad

    return (my_update,)


EXERCISES = [
    Exercise("preprocess_by_hand", "derive", check_preprocess_pairs, preprocess_by_hand),
    Exercise("horizon", "predict", check_horizon_prediction, horizon),
    Exercise("cell_update", "implement", check_cell_update, cell_update),
]
