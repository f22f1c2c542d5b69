"""Worked solutions to lesson 06's exercises (shown by ``ml.lessons.show_solution("06", name)``)."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from ..exercises import Exercise
from ..lesson06 import check_cosine_logits, check_head_ablation, check_shift_winners, compare

#: tasks the solutions measure on (few, so that the test stays fast; the notebook uses more)
_EPISODES = 10


@lru_cache(maxsize=1)
def _test_images() -> torch.Tensor:
    from ...datasets.omniglot import omniglot_split

    return omniglot_split("test").images


@lru_cache(maxsize=1)
def _pretrained():
    from ...checkpoints import load_pretrained

    return load_pretrained("pretrained-omniglot")


def cosine_logits():
    def my_cosine_logits(z, w, scale):
        return scale * F.normalize(z, dim=-1) @ F.normalize(w, dim=-1).T

    return (my_cosine_logits,)


def shift_winners():
    # Inverted strokes: every method that refits a classifier to the (inverted) support features keeps most
    # of its accuracy; ProtoNet and MAML carry batch statistics and a learned procedure fitted to dark strokes
    # on white, and fall further. The frozen probe is first or tied with the first at 1 and at 5 shots.
    from ...algorithms.transfer import LinearProbe
    from ...checkpoints import load_pretrained

    my_winners = {1: "linear probe", 5: "linear probe"}
    methods = {"linear probe": LinearProbe(_pretrained()), "ProtoNet": load_pretrained("protonet-omniglot")}
    rows = {s: compare(methods, _test_images(), shots=s, shift="inverted", episodes=_EPISODES) for s in (1, 5)}
    return my_winners, rows


def head_ablation():
    from ...algorithms.transfer import BaselinePlusPlus, FineTune

    pretrained = _pretrained()
    reference = BaselinePlusPlus(pretrained)
    my_ablated = FineTune(pretrained, frozen_layers=4, head="linear", steps=reference.steps, lr=reference.lr)
    my_finding = "no clear difference"
    baseline_pp = compare({"Baseline++": reference}, _test_images(), shots=1, episodes=_EPISODES)[0]
    return my_ablated, my_finding, baseline_pp, _test_images(), _EPISODES


EXERCISES = [
    Exercise("cosine_logits", "implement", check_cosine_logits, cosine_logits),
    Exercise("shift_winners", "predict", check_shift_winners, shift_winners),
    Exercise("head_ablation", "ablate", check_head_ablation, head_ablation),
]
