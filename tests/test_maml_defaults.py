"""MAML's defaults learn on a small network of the user's own: the zero head is on for classifiers.

A user who writes ``MAML(my_net, ways=5)`` and trains a few hundred meta-steps must get a learner well
above chance; before ``zero_head`` became automatic for classifiers, lesson 00's demo of exactly this
ended near chance.  The shipped checkpoints are untouched: their configs (and the CLI's recipes) name
``zero_head`` explicitly.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import metalearn_lite as ml
from metalearn_lite.algorithms.head import default_zero_head, find_head


class TinyCNN(nn.Module):
    """A user's network: plain torch layers, batch statistics, a linear head with ``outputs`` scores."""

    def __init__(self, outputs: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16, track_running_stats=False), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16, track_running_stats=False), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(16, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_zero_head_is_the_default_for_classifiers_only():
    assert ml.MAML(TinyCNN(5), ways=5).zero_head is True
    assert ml.MAML(ways=5).config["zero_head"] is True  # the default Conv-4 classifier too
    assert ml.MAML(TinyCNN(5), ways=5, zero_head=False).zero_head is False
    assert ml.MAML(nn.Linear(1, 1), loss="mse").zero_head is False  # a regressor keeps its head
    no_bias = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False))
    assert default_zero_head(no_bias, find_head(no_bias), "cross_entropy") is False
    assert ml.MAML(no_bias, ways=3).zero_head is False
    with pytest.raises(ValueError, match="zero_head must be True, False or None"):
        ml.MAML(TinyCNN(5), ways=5, zero_head="yes")


def test_the_defaults_learn_on_a_small_own_network(tmp_path):
    folder = ml.make_shapes(tmp_path / "shapes", classes=20, per_class=12, size=16, seed=0)
    x, y, _ = ml.image_folder(folder, size=16, grayscale=False)
    seen = y < 14
    tasks = ml.EpisodeSampler(x[seen], y[seen], ways=5, shots=1, queries=5, seed=0)
    torch.manual_seed(0)
    maml = ml.MAML(TinyCNN(5), ways=5)  # every setting left at its default
    ml.train(maml, tasks, steps=200, tasks_per_step=4, out_dir=tmp_path / "run", progress=False)
    result = ml.evaluate(maml, (x[~seen], y[~seen]), ways=5, shots=1, queries=5, episodes=100, seed=0)
    # chance is 20 %; new classes, 100 tasks
    assert result.mean - result.ci95 > 0.40, result
