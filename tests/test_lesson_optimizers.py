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
from metalearn_lite.lessons import lesson07 as lesson
from metalearn_lite.lessons.exercises import CheckFailed
from metalearn_lite.lessons.lesson07 import (
    check_cell_update,
    check_horizon_prediction,
    check_preprocess_pairs,
)
from metalearn_lite.lessons.solutions.lesson07 import cell_update

matplotlib.use("Agg")

# ----------------------------------------------------------------------------- exercise: the preprocessing by hand


def right_pairs():
    return {-0.002: (math.log(0.002) / 10, -1.0), 2e-5: (-1.0, math.exp(10) * 2e-5)}


def test_right_pairs_pass_to_two_decimals():
    check_passes(check_preprocess_pairs, right_pairs())
    check_passes(check_preprocess_pairs, {-0.002: (-0.62, -1), 2e-5: (-1, 0.44)})
    assert torch.allclose(preprocess_gradient(torch.tensor([-0.002, 2e-5], dtype=torch.float64)),
                          torch.tensor(list(right_pairs().values()), dtype=torch.float64))


@pytest.mark.parametrize("change, words", [
    ({-0.002: (math.log10(0.002) / 10, -1.0)}, ["natural logarithm"]),
    ({-0.002: (math.log(0.002), -1.0)}, ["divide the logarithm by p"]),
    ({-0.002: (math.log(0.002) / 10, 1.0)}, ["sign"]),
    ({2e-5: (math.log(2e-5) / 10, 1.0)}, ["second branch", "-1"]),
    ({2e-5: (-1.0, 1.0)}, ["e^p * g", "not the sign"]),
    ({2e-5: (-1.0, math.exp(-10) * 2e-5)}, ["for the gradient 2e-05", "e^-10"]),
])
def test_wrong_pairs_get_their_hint(change, words):
    check_fails(check_preprocess_pairs, {**right_pairs(), **change}, *words)


def test_pairs_check_refuses_bad_shapes_and_prints_not_yet(capsys):
    check_fails(check_preprocess_pairs, None, "is None")
    check_fails(check_preprocess_pairs, {0.1: (0, 1)}, "keys")
    check_fails(check_preprocess_pairs, {-0.002: (1,), 2e-5: (1, 2)}, "two numbers")
    assert check_preprocess_pairs(None) is None
    assert capsys.readouterr().out.startswith("Not yet:")


# ----------------------------------------------------------------------------- exercise: predict the long horizon


def horizon_curves(lstm_last, adam_last):
    """Curves of 3 steps whose last row is given (the check reads the last step only)."""
    first = torch.ones(2, len(lstm_last))
    return {lesson.LEARNED: torch.cat([first, torch.tensor([lstm_last])]),
            "Adam": torch.cat([first, torch.tensor([adam_last])])}


def horizon_fails(prediction, curves, *words):
    with pytest.raises(CheckFailed) as err:
        check_horizon_prediction(prediction, curves, strict=True)
    for word in words:
        assert word in str(err.value), f"{word!r} not in: {err.value}"


def test_horizon_prediction_is_compared_with_the_run(capsys):
    curves = horizon_curves([1e-3, 1e-3, 1.0], [1e-6, 1e-6, 3.0])  # LSTM: lower mean, Adam: lower median
    printed = check_passes(check_horizon_prediction, {"mean": "LSTM", "median": "Adam"}, curves)
    assert "at step 2" in printed
    horizon_fails({"mean": "LSTM", "median": "LSTM"}, curves, "for the median", "typical")
    horizon_fails({"mean": "Adam", "median": "LSTM"}, curves, "mean and the median")
    horizon_fails({"mean": None, "median": "Adam"}, curves, '"LSTM" or "Adam"')
    horizon_fails(None, curves, "my_prediction must be")
    horizon_fails({"mean": "LSTM", "median": "Adam"}, {"SGD": curves["Adam"]}, "run_all")
    flipped = horizon_curves([1e-6, 1e-6, 3.0], [1e-3, 1e-3, 1.0])
    check_passes(check_horizon_prediction, {"mean": "Adam", "median": "LSTM"}, flipped)
    assert check_horizon_prediction({"mean": None, "median": None}, curves) is None  # the unanswered cell runs
    assert capsys.readouterr().out.startswith("Not yet:")


# ----------------------------------------------------------------------------- exercise: the cell update


def test_right_cell_update_passes_and_names_sgd():
    printed = check_passes(check_cell_update, *cell_update())
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


# ----------------------------------------------------------------------------- Meta-LSTM where only the rule is learned


def feature_tasks(classes=12, per_class=20, dim=8, seed=0):
    """Separable features: a class's examples scatter around its own random centre."""
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(classes, 1, dim, generator=g)
    return centres + torch.randn(classes, per_class, dim, generator=g)


def test_rule_learner_freezes_the_learner_and_training_moves_only_the_rule():
    feats = feature_tasks()
    method = lesson.rule_learner(dim=8, steps=2)
    c0 = {k: v.clone() for k, v in method.net.state_dict().items()}
    gates = method.input_b.detach().clone()
    history = lesson.train_rule(method, feats, iterations=3, tasks=2, lr=0.05)
    assert [h["iteration"] for h in history] == [1, 2, 3] and all(0 <= h["accuracy"] <= 1 for h in history)
    assert all(torch.equal(c0[k], v) for k, v in method.net.state_dict().items())  # c_0 is not meta-trained
    assert not torch.equal(gates, method.input_b.detach())                        # the rule is
    result = lesson.rule_accuracy(method, feats, episodes=4)
    assert len(result.accuracies) == 4


def test_schedules_and_plain_descent_from_c0():
    assert lesson.schedule("constant", 0.1, 3) == [0.1] * 3
    assert lesson.schedule("invscaling", 0.1, 3) == pytest.approx([0.1, 0.1 / 2 ** 0.5, 0.1 / 3 ** 0.5])
    with pytest.raises(ValueError, match="constant"):
        lesson.schedule("cosine", 0.1)
    feats = feature_tasks()
    method = lesson.rule_learner(dim=8, steps=2)
    # no step: the random c_0 alone; a tuned step on separable classes does better
    still = lesson.schedule_accuracy(method, feats, [0.0, 0.0], episodes=20, queries=3)
    moved = lesson.schedule_accuracy(method, feats, [0.5, 0.5], episodes=20, queries=3)
    assert still.shape == (20,) and moved.mean() > still.mean()
    best, scores = lesson.tune_schedule(method, feats, "constant", grid=(0.0, 0.5), episodes=10)
    assert best == 0.5 and set(scores) == {0.0, 0.5}
    method.eval()
    sx, sy, _, _ = lesson.EpisodeSampler(feats, ways=5, shots=1, queries=1, seed=0).sample(1).unbatched()
    table = lesson.gate_summary(method.adaptation_trace(sx, sy))
    assert table.count("\n") == 2 + 1 and "| 2 |" in table
