"""Worked solutions of lesson 00's exercises (shown on request by ``show_solution("00", name)``)."""

from __future__ import annotations

import math

import torch

from ...datasets.omniglot import omniglot_split
from ...evaluation import evaluate
from ...fewshot import FewShotMixin, check_task, class_means
from ..exercises import Exercise
from ..lesson00 import check_ci_width, check_episode_sizes, check_ways_prediction


def _episode_sizes(ways, shots, queries):
    return ways * shots, ways * queries     # every class gives `shots` support and `queries` query images


def episode_sizes():
    return (_episode_sizes,)


def _predicted_ci(ci, episodes, new_episodes):
    # half-width = 1.96 * std / sqrt(n): it scales as 1 / sqrt(n)
    return ci * math.sqrt(episodes / new_episodes)


class _PixelNearestMean(FewShotMixin):
    """The lesson's baseline: minus the squared pixel distance to each class's mean support image."""

    def logits(self, support_x, support_y, query_x):
        classes, targets = check_task(support_x, support_y, query_x)
        means = class_means(support_x.flatten(1), targets, len(classes))
        return -torch.cdist(query_x.flatten(1), means) ** 2


def ci_width():
    test = omniglot_split("test").images
    many = evaluate(_PixelNearestMean(), test, ways=5, shots=1, queries=5, episodes=400).ci95
    few = evaluate(_PixelNearestMean(), test, ways=5, shots=1, queries=5, episodes=100, seed=1).ci95
    return _predicted_ci, many, 400, 100, few


def ways_prediction():
    test = omniglot_split("test").images
    acc5 = evaluate(_PixelNearestMean(), test, ways=5, shots=1, queries=5, episodes=50).mean
    acc20 = evaluate(_PixelNearestMean(), test, ways=20, shots=1, queries=5, episodes=50).mean
    return "b", acc5, acc20


EXERCISES = [
    Exercise("episode_sizes", "derive", check_episode_sizes, episode_sizes),
    Exercise("ci_width", "derive", check_ci_width, ci_width),
    Exercise("ways_prediction", "predict", check_ways_prediction, ways_prediction),
]
