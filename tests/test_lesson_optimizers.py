"""Lesson 07's exercise checks, its fixed set-up, the saved optimiser's round trip and its figures."""

from __future__ import annotations

import math

import matplotlib
import pytest
import torch
from conftest import check_fails, check_passes

from metalearn_lite.algorithms.learned_optimizer import (
    LearnedOptimizer,
    MetaTrainResult,
    TunedRate,
    optimize,
    preprocess_gradient,
)
from metalearn_lite.checkpoints import read_checkpoint
from metalearn_lite.evaluation import mean_ci
from metalearn_lite.lessons import lesson07_optimizers as lesson
from metalearn_lite.lessons.lesson07_checks import (
    check_cell_update,
    check_preprocess,
    solution_cell_update,
    solution_preprocess,
)

matplotlib.use("Agg")

# ----------------------------------------------------------------------------- exercise 1: preprocessing


def test_right_preprocessing_passes():
    check_passes(check_preprocess, solution_preprocess)
    check_passes(check_preprocess, preprocess_gradient)  # the package's own


def wrong_preprocess(kind):
    def fn(g, p):
        big = g.abs() >= math.exp(-p)
        log = {"log10": torch.log10, "natural": torch.log}["log10" if kind == "log10" else "natural"]
        first = torch.where(big, log(g.abs().clamp_min(1e-300)) / (1 if kind == "no_p" else p), -torch.ones_like(g))
        small = {"e_minus_p": math.exp(-p) * g, "sign": torch.sign(g)}.get(kind, math.exp(p) * g)
        second = torch.where(big, torch.sign(g), small)
        if kind == "one_branch":
            first, second = torch.log(g.abs()) / p, torch.sign(g)
        out = torch.stack([second, first] if kind == "swapped" else [first, second], dim=-1)
        return out.movedim(-1, 0) if kind == "first_dim" else out
    return fn


@pytest.mark.parametrize("kind, words", [
    ("swapped", ["wrong order"]),
    ("log10", ["natural logarithm"]),
    ("no_p", ["divide the logarithm by p"]),
    ("e_minus_p", ["multiplied by e^p"]),
    ("sign", ["not the sign"]),
    ("one_branch", ["second branch"]),
    ("first_dim", ["LAST"]),
])
def test_wrong_preprocessing_gets_its_hint(kind, words):
    check_fails(check_preprocess, wrong_preprocess(kind), *words)


def test_preprocessing_check_reports_other_mistakes_and_bad_returns():
    check_fails(check_preprocess, lambda g, p: None, "returned None")
    check_fails(check_preprocess, lambda g, p: torch.zeros(*g.shape, 2, dtype=torch.float64), "for the gradient")
    check_fails(check_preprocess, lambda g, p: [0.0], "torch.Tensor")


def test_not_strict_prints_not_yet(capsys):
    assert check_preprocess(wrong_preprocess("log10")) is None
    assert capsys.readouterr().out.startswith("Not yet:")


# ----------------------------------------------------------------------------- exercise 2: the cell update


def test_right_cell_update_passes_and_names_sgd():
    printed = check_passes(check_cell_update, solution_cell_update)
    assert "SGD" in printed
    check_passes(check_cell_update, lambda th, g, f, i: (f - 1) * th - i * g)


@pytest.mark.parametrize("fn, words", [
    (lambda th, g, f, i: f * th - i * g, ["new parameters"]),
    (lambda th, g, f, i: (f - 1) * th + i * g, ["sign"]),
    (lambda th, g, f, i: -i * g, ["forget gate is 1", "(f - 1)"]),
    (lambda th, g, f, i: -f * i * g, ["not the gradient"]),
    (lambda th, g, f, i: th, ["not the cell's update"]),
    (lambda th, g, f, i: None, ["returned None"]),
])
def test_wrong_cell_updates_get_their_hint(fn, words):
    check_fails(check_cell_update, fn, *words)


# ----------------------------------------------------------------------------- the set-up, saving, the figures


def test_fixed_batches_are_the_lessons_seeds_and_sizes():
    tune, val, test = (lesson.problems("quadratic", s) for s in ("tune", "val", "test"))
    assert (tune.n, val.n, test.n) == (128, 128, 100)
    assert torch.equal(tune.W, lesson.QuadraticProblems(seed=lesson.TRAIN_SEED).sample(128).W)  # training functions
    assert not torch.equal(test.W[:5], tune.W[:5]) and not torch.equal(test.W[:5], val.W[:5])
    assert lesson.problems("mlp", "test").theta0.shape == (100, 102)
    with pytest.raises(ValueError, match="family"):
        lesson.problems("cubic")


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    lstm = LearnedOptimizer()
    result = MetaTrainResult([{"iteration": 1, "train_loss": 1.0, "val_loss": 0.5, "minutes": 0.1}], 1, 0.1, 0.1, 1,
                             0.5)
    path = lesson.save_learned_optimizer(tmp_path / "lo.pt", lstm, result, "python benchmarks/x.py", seed=0)
    blob = read_checkpoint(path)  # the package's own safe reader accepts it
    assert blob["method"] == "learned_optimizer" and blob["config"] == lstm.config
    loaded = lesson.load_learned_optimizer(path)
    assert loaded.command == "python benchmarks/x.py" and loaded.best_iteration == 1 and not loaded.training
    g = torch.randn(4, 10)
    assert torch.equal(loaded.step(g)[0], lstm.step(g)[0])


def test_shipped_optimizer_beats_every_tuned_baseline_on_the_test_functions():
    if not (lesson.checkpoint_dir() / f"{lesson.CHECKPOINT}.pt").exists():
        pytest.skip("no shipped learned optimiser")
    lstm = lesson.load_learned_optimizer()
    test = lesson.problems("quadratic", "test")
    ours = float(optimize(test, lstm, lesson.HORIZON)[-1].mean())
    tuned = {"momentum": TunedRate("momentum", 0.0316), "adam": TunedRate("adam", 0.316)}
    for label, rate in tuned.items():
        theirs = float(optimize(test, lesson.hand_designed(rate.name, rate.lr), lesson.HORIZON)[-1].mean())
        assert ours < theirs, label


def test_table_and_figures():
    test = lesson.QuadraticProblems(seed=5).sample(12)
    tuned = {"SGD": TunedRate("sgd", 0.01), "Adam": TunedRate("adam", 0.1)}
    torch.manual_seed(0)
    curves = lesson.run_all(test, lesson.optimizers(LearnedOptimizer(), tuned), 30)
    assert list(curves) == [lesson.LEARNED, "SGD", "Adam"] and curves["SGD"].shape == (31, 12)
    table = lesson.comparison_table(curves, 30, tuned)
    lines = table.splitlines()
    assert len(lines) == 5 and "0.01" in lines[3] and "of 12 |" in lines[3]
    sgd = curves["SGD"][30].double()
    assert f"{sgd.mean():.3g}" in lines[3]
    fig = lesson.plot_loss_curves(curves, steps=20, title="t", mark=10)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 3 + 1
    assert len(fig.axes[0].lines[0].get_xdata()) == 21
    summaries = {k: lesson.summarize(v) for k, v in curves.items()}
    fig = lesson.show_curves({"quadratic": summaries}, "quadratic", ["SGD"], 25)
    assert len(fig.axes[1].lines) == 1 and len(fig.axes[1].lines[0].get_xdata()) == 26
    assert lesson.show_curves({"quadratic": summaries}, "quadratic", [], 25).axes[0].texts  # "pick at least one"
    with pytest.raises(ValueError, match="family"):
        lesson.show_curves({"quadratic": summaries}, "mlp", ["SGD"], 25)
    fig = lesson.plot_paired(curves, "SGD", 30)
    assert "of 12 functions below the diagonal" in fig.axes[0].get_title()
    assert len(lesson.plot_tuning(tuned_for_plot()).axes[0].lines) == 2 * 2
    fig = lesson.plot_first_step_response(LearnedOptimizer(), tuned)
    assert len(fig.axes[0].lines) == 2 + 2 + 2  # two baselines, both signs, the zero line and the threshold


def tuned_for_plot() -> dict[str, TunedRate]:
    return {"SGD": TunedRate("sgd", 0.01, {0.001: 2.0, 0.01: 1.0, 0.1: math.inf}),
            "Adam": TunedRate("adam", 0.1, {0.01: 3.0, 0.1: 0.5})}


def test_summary_matches_mean_ci_and_quantiles():
    losses = torch.rand(7, 30, generator=torch.Generator().manual_seed(0)).double()
    s = lesson.summarize(losses)
    for t in (0, 6):
        mean, ci = mean_ci(losses[t])
        assert s.mean[t] == pytest.approx(mean) and s.ci[t] == pytest.approx(ci)
        assert s.median[t] == pytest.approx(float(losses[t].median()), abs=0.05)  # torch's median is the lower one
        assert s.q25[t] == pytest.approx(float(torch.quantile(losses[t], 0.25)))
    assert len(s.cut(3).mean) == 4 and s.cut(None).mean.shape == (7,)
