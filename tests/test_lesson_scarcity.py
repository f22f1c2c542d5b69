"""Lesson 01: the experiment helpers and the exercise checks (right answers pass, wrong ones explain)."""

from __future__ import annotations

import matplotlib
import pytest
import torch
from conftest import check_passes

from metalearn_lite.lessons.lesson01 import (
    CapacityExplorer,
    CheckFailed,
    Fit,
    Split,
    argmax_has_no_gradient,
    check_random_label_prediction,
    check_random_labels,
    check_split,
    check_weight_decay_penalty,
    fit_cnn,
    fit_sklearn,
    learning_curves,
    loss_along_direction,
    memorisation,
    pick_classes,
    plot_fit,
    plot_learning_curves,
    plot_loss_along_direction,
    sklearn_models,
    small_cnn,
    split_drawings,
)

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def chars(omniglot):
    return pick_classes(omniglot.images, 5, seed=0)


def test_split_drawings_is_disjoint_and_balanced(chars):
    s = split_drawings(chars, 3, held_out=5, seed=1)
    assert s.x_train.shape == (15, 1, 28, 28) and s.x_test.shape == (25, 1, 28, 28)
    assert torch.equal(torch.bincount(s.y_train), torch.full((5,), 3))
    assert torch.equal(torch.bincount(s.y_test), torch.full((5,), 5))
    flat = chars.flatten(0, 1).flatten(1)
    for x in torch.cat([s.x_train, s.x_test]):  # every image is a real drawing ...
        assert (flat == x.flatten()).all(1).any()
    shared = (s.x_train.flatten(1)[:, None] == s.x_test.flatten(1)[None]).all(-1)
    assert not shared.any()  # ... and no drawing is in both sets
    # the held-out drawings do not depend on K: a learning curve tests every K on the same images
    assert torch.equal(split_drawings(chars, 10, 5, seed=1).x_test, s.x_test)
    with pytest.raises(ValueError, match="shots"):
        split_drawings(chars, 16, held_out=5)


def test_models_fit_and_memorise(chars):
    s = split_drawings(chars, 2, held_out=3)
    for factory in sklearn_models().values():
        train_acc, test_acc = fit_sklearn(factory, s)
        assert train_acc == 1.0 and 0.0 <= test_acc <= 1.0  # 2 examples per class are always fitted
    fit = fit_cnn(s, width=8, steps=80)
    assert fit.train_acc >= 0.9 and fit.parameters > 0
    mem = memorisation(s, hidden=64, steps=150)
    assert mem["random labels"].train_acc == 1.0  # a big enough net fits labels that mean nothing


def test_learning_curves_shape_and_plots(chars):
    curves = learning_curves(chars, shots=[1, 3], seeds=[0], cnn_steps=5, held_out=2)
    assert len(curves) == 4
    for c in curves.values():
        assert c["train"].shape == (2, 1) and ((0 <= c["test"]) & (c["test"] <= 1)).all()
    assert plot_learning_curves(curves, [1, 3], chance=0.2) is not None
    fit = fit_cnn(split_drawings(chars, 1, 2), width=8, steps=3)
    assert plot_fit(fit, "x", 0.2) is not None
    other = Fit(train_acc=0.5, test_acc=0.25, parameters=1, seconds=0.0)
    ax = plot_fit(fit, "x", 0.2, reference=other, reference_label="width 32").axes[0]
    ticks = sorted(y for c in ax.collections for seg in c.get_segments() for y in {seg[0][1]})
    assert ticks == [25.0, 50.0]   # the reference's accuracies, in %, one tick per bar
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["width 32"]


# ----------------------------------------------------------------------------- exercise checks


def split_ok(images, shots, held_out, generator):
    s: Split = split_drawings(images, shots, held_out, seed=int(torch.randint(0, 99, (1,), generator=generator)))
    return s.x_train, s.y_train, s.x_test, s.y_test


def split_first_k(images, shots, held_out, generator):  # deterministic is fine too
    c = images.shape[0]
    y = torch.arange(c)
    return (images[:, :shots].flatten(0, 1), y.repeat_interleave(shots),
            images[:, -held_out:].flatten(0, 1), y.repeat_interleave(held_out))


def split_overlap(images, shots, held_out, generator):
    c = images.shape[0]
    y = torch.arange(c)
    return (images[:, :shots].flatten(0, 1), y.repeat_interleave(shots),
            images[:, :held_out].flatten(0, 1), y.repeat_interleave(held_out))


def split_global(images, shots, held_out, generator):  # shuffles the whole pile: classes unbalanced
    flat = images.flatten(0, 1)
    y = torch.arange(images.shape[0]).repeat_interleave(images.shape[1])
    p = torch.randperm(len(flat), generator=generator)
    n, m = images.shape[0] * shots, images.shape[0] * held_out
    return flat[p[:n]], y[p[:n]], flat[p[-m:]], y[p[-m:]]


def split_bad_labels(images, shots, held_out, generator):
    xtr, ytr, xte, yte = split_first_k(images, shots, held_out, generator)
    return xtr, torch.arange(shots).repeat(images.shape[0]), xte, yte


@pytest.mark.parametrize("fn", [split_ok, split_first_k])
def test_check_split_accepts(fn):
    check_passes(check_split, fn)


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda *a: None, "returned None"),
        (split_overlap, "in both sets"),
        (split_global, "drawings per class"),
        (split_bad_labels, "labels do not belong"),
    ],
)
def test_check_split_explains(fn, match):
    with pytest.raises(CheckFailed, match=match):
        check_split(fn, strict=True)


def test_check_split_prints_not_yet(capsys):
    assert check_split(split_overlap) is None
    assert capsys.readouterr().out.startswith("Not yet:")


def test_check_random_labels():
    check_passes(check_random_labels, lambda y, g: y[torch.randperm(len(y), generator=g)])
    cases = [
        (lambda y, g: y, "unchanged"),
        (lambda y, g: torch.randint(0, 10, y.shape, generator=g), "counts"),
        (lambda y, g: y[torch.randperm(len(y))], "same generator seed"),
        (lambda y, g: y.flip(0), "two different generator seeds"),
    ]
    for fn, match in cases:
        with pytest.raises(CheckFailed, match=match):
            check_random_labels(fn, strict=True)


def test_capacity_explorer_trains_each_setting_once(chars, monkeypatch):
    explorer = CapacityExplorer(chars, held_out=2, steps=4)
    curves = learning_curves(chars, shots=[1, 3], seeds=[0, 1], cnn_steps=4, held_out=2, explorer=explorer)
    # the learning curve's CNN fits are the widget's default settings: kept, not trained again
    assert explorer.seen(1) and explorer.seen(3, seed=1) and not explorer.seen(3, width=8)
    assert 1 - curves["small CNN (Conv-4, 32 filters)"]["test"][0, 0] == pytest.approx(explorer.fit(1).test_acc)
    calls = []
    import metalearn_lite.lessons.lesson01 as scarcity

    real = scarcity.fit_cnn
    monkeypatch.setattr(scarcity, "fit_cnn", lambda *a, **k: calls.append(k) or real(*a, **k))
    first = explorer.fit(2, width=8, weight_decay=1e-3, augment=True)
    assert explorer.fit(2, 8, 0.001, True) is first and len(calls) == 1  # same setting: answered from memory
    assert calls[0] == dict(width=8, weight_decay=1e-3, augment=True, steps=4, seed=0)
    explorer.fit(1)  # trained by the learning curve
    explorer.fit(2, width=4)
    assert len(calls) == 2
    # a fit equals a fresh training of the same setting (seeded, deterministic)
    again = real(split_drawings(chars, 2, 2, seed=0), width=8, weight_decay=1e-3, augment=True, steps=4)
    assert (again.train_acc, again.test_acc) == (first.train_acc, first.test_acc)
    with pytest.raises(ValueError, match="same images, held_out and cnn_steps"):
        learning_curves(chars, shots=[1], seeds=[0], cnn_steps=5, held_out=2, explorer=explorer)


def test_check_weight_decay_penalty():
    check_passes(check_weight_decay_penalty, lambda ws, wd: wd / 2 * sum((w ** 2).sum() for w in ws))
    check_passes(check_weight_decay_penalty, lambda ws, wd: 0.5 * wd * sum(w.pow(2).sum() for w in ws) + 3.0)
    cases = [
        (lambda ws, wd: wd * sum((w ** 2).sum() for w in ws), "2\\*wd\\*w, twice"),  # the factor of 2
        (lambda ws, wd: wd * sum(w.abs().sum() for w in ws), "not wd \\* w"),       # L1
        (lambda ws, wd: torch.tensor(wd), "no gradient"),
        (lambda ws, wd: [w.pow(2).sum() for w in ws], "one number"),
    ]
    for fn, match in cases:
        with pytest.raises(CheckFailed, match=match):
            check_weight_decay_penalty(fn, strict=True)


def test_check_random_label_prediction(capsys):
    check_passes(check_random_label_prediction, 5, 6.0, 20)
    for guess, match in [(None, "set predicted_random_labels"), (48, "measured 6 %"), (150, "between 0 and 100")]:
        with pytest.raises(CheckFailed, match=match):
            check_random_label_prediction(guess, 6.0, 20, strict=True)
    assert check_random_label_prediction(None, 6.0, 20) is None
    assert capsys.readouterr().out.startswith("Not yet:")


def test_argmax_loss_has_zero_gradient_almost_everywhere(chars):
    s = split_drawings(chars, 2, held_out=2)
    model = small_cnn(5, width=4)
    assert "does not require grad" in argmax_has_no_gradient(model, s.x_train, s.y_train)
    curves = loss_along_direction(model, s.x_train, s.y_train, [i * 1e-4 for i in range(-5, 6)])
    assert len(set(curves["0-1 error"].tolist())) == 1          # flat: zero slope around the weights
    assert len(set(curves["cross-entropy"].round(8).tolist())) > 5  # smooth: a slope to follow
    assert plot_loss_along_direction(curves) is not None
