"""Worked solutions of lesson 01's exercises (shown on request by ``show_solution("01", name)``)."""

from __future__ import annotations

import torch

from ...datasets.omniglot import omniglot_split
from ..exercises import Exercise
from ..lesson01 import (
    check_random_label_prediction,
    check_random_labels,
    check_split,
    check_weight_decay_penalty,
    memorisation,
    pick_classes,
    split_drawings,
)


def _my_split(images, shots, held_out, generator):
    c, d = images.shape[:2]
    order = torch.rand(c, d, generator=generator).argsort(1)        # a random order of each class's drawings
    rows = torch.arange(c).unsqueeze(1)
    train, test = images[rows, order[:, :shots]], images[rows, order[:, d - held_out:]]
    labels = torch.arange(c)
    return (train.flatten(0, 1), labels.repeat_interleave(shots),
            test.flatten(0, 1), labels.repeat_interleave(held_out))


def split():
    return (_my_split,)


def _my_random_labels(y, generator):
    return y[torch.randperm(len(y), generator=generator)]   # a permutation keeps every class's count


def random_labels():
    return (_my_random_labels,)


def _penalty(weights, wd):
    # d/dw (wd / 2) w^2 = wd * w: exactly the term Adam(weight_decay=wd) adds to the gradient
    return wd / 2 * sum((w ** 2).sum() for w in weights)


def weight_decay_penalty():
    return (_penalty,)


def random_label_accuracy():
    # Reasoning: shuffled labels carry no information about the drawings, so nothing learned from them
    # transfers to new drawings: expect chance, 100 / 20 classes = 5 %.  Measured on a smaller network
    # than the lesson's (the conclusion does not depend on its size).
    chars = pick_classes(omniglot_split("train").images, 20, seed=0)
    run = memorisation(split_drawings(chars, 5, 5, seed=0), hidden=128, steps=40)
    return 5.0, 100 * run["random labels"].test_acc, 20


EXERCISES = [
    Exercise("split", "implement", check_split, split),
    Exercise("random_labels", "extend", check_random_labels, random_labels),
    Exercise("weight_decay_penalty", "derive", check_weight_decay_penalty, weight_decay_penalty),
    Exercise("random_label_accuracy", "predict", check_random_label_prediction, random_label_accuracy),
]
