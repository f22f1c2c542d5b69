"""Lesson 06: the comparison table comes from the shared evaluate; shifts; the exercise checks."""

from __future__ import annotations

import math
import re

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from conftest import check_passes

import metalearn_lite.lessons.lesson06 as comparison
from metalearn_lite import evaluate
from metalearn_lite.algorithms.transfer import BaselinePlusPlus, CosineHead, FineTune, LinearProbe, Pretrained
from metalearn_lite.evaluation import EvalResult
from metalearn_lite.lessons.lesson06 import (
    HEAD_CLAIMS,
    SHIFTS,
    CheckFailed,
    Row,
    check_cosine_logits,
    check_head_ablation,
    check_shift_winners,
    compare,
    copied_example,
    plot_by_shots,
    ranking,
    shift_images,
    table_markdown,
)
from metalearn_lite.models import Conv4

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def small(omniglot):
    return omniglot.images[:10]


@pytest.fixture(scope="module")
def methods():
    torch.manual_seed(0)
    return {"pixels": LinearProbe(None, head="centroid"), "random conv":
            Pretrained(Conv4(hidden=8, norm="running"), classes=10).eval()}


def test_table_numbers_are_those_of_the_shared_evaluate(small, methods):
    rows = compare(methods, small, ways=3, shots=2, episodes=6, episodes_for={"random conv": 4}, seed=3)
    assert [r.method for r in rows] == ["pixels", "random conv"]
    for row, n in zip(rows, (6, 4)):
        direct = evaluate(methods[row.method], small, ways=3, shots=2, queries=15, episodes=n, seed=3)
        assert torch.equal(row.result.accuracies, direct.accuracies)  # same tasks, same numbers
        assert f"{100 * direct.mean:.1f} ± {100 * direct.ci95:.1f} %" in table_markdown(rows)
        assert row.seconds_per_task > 0


def test_compare_calls_the_evaluate_function_every_lesson_uses(small, methods, monkeypatch):
    calls = []

    def spy(clf, data, ways, shots, queries, episodes, seed):
        calls.append((clf, ways, shots, queries, episodes, seed))
        return EvalResult(torch.full((episodes,), 0.5, dtype=torch.float64), ways, shots, queries)

    assert comparison.evaluate is evaluate  # the module uses the package's one evaluation function
    monkeypatch.setattr(comparison, "evaluate", spy)
    rows = compare(methods, small, ways=4, shots=5, episodes=7, seed=9)
    assert [c[1:] for c in calls] == [(4, 5, 15, 7, 9)] * 2  # same tasks (seed) for every method
    assert [c[0] for c in calls] == list(methods.values())
    assert all(r.mean == 0.5 for r in rows)


def test_compare_reports_methods_that_cannot_run_the_task(small):
    class ThreeWayOnly(LinearProbe):
        def logits(self, sx, sy, qx):
            if len(sy.unique()) > 3:
                raise ValueError("this model answers at most 3 classes per task; the support set has more")
            return super().logits(sx, sy, qx)

    rows = compare({"3-way": ThreeWayOnly(None)}, small, ways=5, shots=1, episodes=2)
    assert rows[0].result is None and math.isnan(rows[0].mean) and "at most 3 classes" in rows[0].note
    assert "n/a" in table_markdown(rows)


def test_shifts(small):
    assert shift_images(small, "none") is small
    torch.testing.assert_close(shift_images(small, "inverted"), 1 - small)
    scrambled = shift_images(small, "scrambled")
    # the same pixels, in another order, with one order for every image
    torch.testing.assert_close(scrambled.flatten(-2).sort(-1).values, small.flatten(-2).sort(-1).values)
    perm = shift_images(torch.arange(784.0).view(1, 1, 1, 28, 28).expand(2, 3, 1, 28, 28), "scrambled")
    assert torch.equal(perm[0, 0], perm[1, 2]) and not torch.equal(perm[0, 0], torch.arange(784.0).view(1, 28, 28))
    distorted = shift_images(small, "distorted")
    assert distorted.shape == small.shape and not torch.equal(distorted, small)
    assert torch.equal(distorted, shift_images(small, "distorted"))  # seeded
    assert set(SHIFTS) == {"none", "inverted", "distorted", "scrambled"}
    with pytest.raises(ValueError, match="unknown shift"):
        shift_images(small, "blurred")


def test_plot_and_ranking(small, methods):
    rows = compare(methods, small, ways=3, shots=1, episodes=3) + compare(methods, small, ways=3, shots=2, episodes=3)
    assert plot_by_shots(rows, "none", ways=3) is not None
    assert sorted(ranking(rows[:2])) == ["pixels", "random conv"]


def test_copied_example_moves_no_knowledge(small):
    out = copied_example(small[:5], shots=5, held_out=5)
    assert out["identical weights"] and out["target accuracy"] == out["no-source accuracy"]


# ----------------------------------------------------------------------------- exercise checks


def test_check_cosine_logits():
    def right(z, w, s):
        return s * F.normalize(z, dim=-1) @ F.normalize(w, dim=-1).T

    check_passes(check_cosine_logits, right)

    def with_the_package_head(z, w, s):
        head = CosineHead(w.shape[1], w.shape[0], scale=s)
        head.weight.data = w
        return head(z)

    check_passes(check_cosine_logits, with_the_package_head)
    cases = [
        (lambda z, w, s: F.normalize(z, dim=-1) @ F.normalize(w, dim=-1).T, "multiply by scale"),
        (lambda z, w, s: s * F.normalize(z, dim=-1) @ w.T, "w are not normalised"),
        (lambda z, w, s: s * z @ F.normalize(w, dim=-1).T, "features z are not normalised"),
        (lambda z, w, s: s * z @ w.T, "plain .*dot product"),
        (lambda z, w, s: right(z, w, s).T, "must be \\(7, 3\\)"),
        (lambda z, w, s: None, "returned None"),
    ]
    for fn, match in cases:
        with pytest.raises(CheckFailed, match=match):
            check_cosine_logits(fn, strict=True)


# ----------------------------------------------------------------------------- new exercises


def _row(method: str, accuracies: list[float], shots: int = 1) -> Row:
    return Row(method, shots, "inverted", EvalResult(torch.tensor(accuracies), 5, shots, 15), 0.01)


def test_check_shift_winners_accepts_ties_and_rejects_a_clear_loser():
    rows = {1: [_row("probe", [0.70, 0.72, 0.68, 0.71]), _row("fine-tune", [0.72, 0.60, 0.85, 0.70]),
                _row("MANN", [0.20, 0.22, 0.18, 0.21])],
            5: [_row("probe", [0.86, 0.87, 0.85, 0.86], 5), _row("MANN", [0.20, 0.21, 0.22, 0.19], 5)]}
    check_passes(check_shift_winners, {1: "probe", 5: "probe"}, rows)
    check_passes(check_shift_winners, {1: "fine-tune", 5: "probe"}, rows)  # within the intervals at 1 shot
    with pytest.raises(CheckFailed, match="winner is probe"):
        check_shift_winners({1: "probe", 5: "MANN"}, rows, strict=True)
    with pytest.raises(CheckFailed, match="not one of the measured"):
        check_shift_winners({1: "MAML", 5: "probe"}, rows, strict=True)
    with pytest.raises(CheckFailed, match="my_winners"):
        check_shift_winners({1: None, 5: None}, rows, strict=True)


def test_check_head_ablation_rejects_changing_more_than_the_head(small):
    torch.manual_seed(0)
    net = Pretrained(Conv4(hidden=8, norm="running"), classes=10).eval()
    ref = compare({"Baseline++": BaselinePlusPlus(net, steps=5)}, small, ways=3, shots=1, episodes=2)[0]
    cases = [
        (None, "my_ablated"),
        (BaselinePlusPlus(net), "FineTune"),
        (FineTune(net, frozen_layers=4, head="cosine", steps=100, lr=1e-2), "head='linear'"),
        (FineTune(net, head="linear", steps=100, lr=1e-2), "frozen_layers=4"),
        (FineTune(net, frozen_layers=4, head="linear", steps=50, lr=1e-2), "one thing only"),
    ]
    for ablated, words in cases:
        with pytest.raises(CheckFailed, match=re.escape(words)):
            check_head_ablation(ablated, "no clear difference", ref, small, episodes=2, strict=True)
    right = FineTune(net, frozen_layers=4, head="linear", steps=100, lr=1e-2)
    with pytest.raises(CheckFailed, match="HEAD_CLAIMS|one of"):
        check_head_ablation(right, "the head matters", ref, small, episodes=2, strict=True)
    outcomes = []
    for claim in HEAD_CLAIMS:  # exactly one claim matches the measurement
        try:
            check_head_ablation(right, claim, ref, small, episodes=2, strict=True)
            outcomes.append(claim)
        except CheckFailed as err:
            assert "paired 95 % interval" in str(err)
    assert len(outcomes) == 1
