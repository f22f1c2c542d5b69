"""Worked solutions to lesson 05's exercises (shown by ``ml.lessons.show_solution("05", name)``)."""

from __future__ import annotations

import torch

from ..exercises import Exercise
from ..lesson05 import (
    LRU_QUESTION,
    check_content_weighting,
    check_lru_ablation,
    check_next_write_slot,
    check_presentation_prediction,
    check_topk_weighting,
)

#: episodes the solutions measure on (few, so that the test stays fast; the notebook uses more): 40 for
#: the accuracy at a first presentation (about 3 points of standard error), 16 for the ablation
_EPISODES = 16


def _test_episodes(episodes: int = _EPISODES) -> tuple[torch.Tensor, torch.Tensor]:
    from ...datasets.omniglot import omniglot_split
    from ...datasets.omniglot_sequences import SequenceEpisodes

    return SequenceEpisodes(omniglot_split("test").images, ways=5, shots=10, seed=0).sample(episodes)


def _mann():
    from ...checkpoints import load_pretrained

    return load_pretrained("mann-omniglot")


def content_weighting():
    def my_content_weighting(key, memory, beta):
        dot = (memory @ key.unsqueeze(-1)).squeeze(-1)                              # (B, N)
        cos = dot / (key.norm(dim=-1, keepdim=True) * memory.norm(dim=-1) + 1e-8)  # (B, N)
        return torch.softmax(beta * cos, dim=-1)

    return (my_content_weighting,)


def next_write_slot():
    # g = 0: the whole write goes to the least-used slot, whatever was read last
    usage = LRU_QUESTION["usage"]
    return (min(range(len(usage)), key=usage.__getitem__),)


def first_vs_second():
    # 1st: above chance (labels already told belong to other drawings are excluded), below the 45.7 % of
    # perfect exclusion; 2nd: one stored example of the class, retrieved by cosine, is usually right
    my_prediction = (35.0, 75.0)
    images, labels = _test_episodes(40)
    acc = _mann().presentation_accuracy(images, labels).nanmean(0)
    return my_prediction, (100 * float(acc[0]), 100 * float(acc[1]))


def lru_ablation():
    def my_write_rule(usage, n):
        # always the first n slots, whatever their usage: each write zeroes and overwrites the last one
        rows = torch.nn.functional.one_hot(torch.arange(n), usage.shape[-1]).to(usage.dtype)
        return rows.expand(usage.shape[0], n, usage.shape[-1])

    my_claim = "about chance"
    images, labels = _test_episodes()
    return my_write_rule, my_claim, _mann(), images, labels


def topk_weighting():
    def my_topk_weighting(key, memory, beta, k):
        cos = torch.nn.functional.cosine_similarity(memory, key.unsqueeze(1), dim=-1, eps=1e-8)  # (B, N)
        scores = beta * cos
        top = scores.topk(k, dim=-1).indices
        masked = torch.full_like(scores, float("-inf")).scatter(-1, top, scores.gather(-1, top))
        return torch.softmax(masked, dim=-1)

    return (my_topk_weighting,)


EXERCISES = [
    Exercise("content_weighting", "implement", check_content_weighting, content_weighting),
    Exercise("next_write_slot", "predict", check_next_write_slot, next_write_slot),
    Exercise("first_vs_second", "predict", check_presentation_prediction, first_vs_second),
    Exercise("lru_ablation", "ablate", check_lru_ablation, lru_ablation),
    Exercise("topk_weighting", "extend", check_topk_weighting, topk_weighting),
]
