"""Neural Turing Machine: addressing maths against hand-computed weightings, memory gradients, copy task."""

from __future__ import annotations

import math

import pytest
import torch

from metalearn_lite.algorithms import METHODS
from metalearn_lite.algorithms.ntm import (
    NTM,
    NTMCopy,
    address,
    bit_errors,
    content_weighting,
    interpolate,
    read,
    sharpen,
    shift,
    write,
)
from metalearn_lite.checkpoints import load_checkpoint, read_checkpoint
from metalearn_lite.datasets.copy_task import CopyTasks, copy_batch
from metalearn_lite.recipes import RECIPES
from metalearn_lite.recipes.memory import copy_report
from metalearn_lite.training import train


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


# ----------------------------------------------------------------------------- addressing by hand


def test_content_weighting_matches_hand_computation():
    memory = t([1.0, 0.0], [0.0, 1.0], [1.0, 1.0]).unsqueeze(0)  # (1, 3, 2)
    key = t([2.0, 0.0])  # cosines: 1, 0, 1/sqrt(2) (the key's length does not matter)
    e = [math.exp(2 * c) for c in (1.0, 0.0, 1 / math.sqrt(2))]
    want = t([x / sum(e) for x in e])
    torch.testing.assert_close(content_weighting(key, memory, t([2.0])), want)
    # beta = 0: uniform; a huge beta: all weight on the most similar slot
    torch.testing.assert_close(content_weighting(key, memory, t([0.0])), t([1 / 3, 1 / 3, 1 / 3]))
    torch.testing.assert_close(content_weighting(key, memory, t([1000.0])), t([1.0, 0.0, 0.0]))


def test_interpolate_matches_hand_computation():
    wc, wp = t([1.0, 0.0, 0.0]), t([0.0, 0.5, 0.5])
    torch.testing.assert_close(interpolate(wc, wp, t([0.25])), t([0.25, 0.375, 0.375]))
    torch.testing.assert_close(interpolate(wc, wp, t([1.0])), wc)
    torch.testing.assert_close(interpolate(wc, wp, t([0.0])), wp)


def test_shift_moves_forward_wraps_around_and_blurs():
    w = t([0.0, 1.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(shift(w, t([0.0, 0.0, 1.0])), t([0.0, 0.0, 1.0, 0.0, 0.0]))  # +1
    torch.testing.assert_close(shift(w, t([1.0, 0.0, 0.0])), t([1.0, 0.0, 0.0, 0.0, 0.0]))  # -1
    torch.testing.assert_close(shift(t([0.0, 0.0, 0.0, 0.0, 1.0]), t([0.0, 0.0, 1.0])),
                               t([1.0, 0.0, 0.0, 0.0, 0.0]))  # slot 4 + 1 wraps to slot 0
    torch.testing.assert_close(shift(w, t([0.1, 0.8, 0.1])), t([0.1, 0.8, 0.1, 0.0, 0.0]))
    # two-slot offsets: s over -2..2
    torch.testing.assert_close(shift(w, t([0.0, 0.0, 0.0, 0.0, 1.0])), t([0.0, 0.0, 0.0, 1.0, 0.0]))


def test_sharpen_matches_hand_computation():
    torch.testing.assert_close(sharpen(t([0.5, 0.25, 0.25]), t([2.0])), t([2 / 3, 1 / 6, 1 / 6]))
    torch.testing.assert_close(sharpen(t([0.5, 0.25, 0.25]), t([1.0])), t([0.5, 0.25, 0.25]))


def test_address_chains_the_four_steps():
    memory = t([1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]).unsqueeze(0)
    key, beta, g = t([0.0, 3.0]), t([5.0]), t([0.5])
    s, gamma, prev = t([0.2, 0.6, 0.2]), t([3.0]), t([0.0, 0.0, 0.0, 1.0])
    cos = [0.0, 1.0, 1 / math.sqrt(2), 0.0]
    e = [math.exp(5 * c) for c in cos]
    wc = [x / sum(e) for x in e]
    wg = [0.5 * a + 0.5 * b for a, b in zip(wc, [0.0, 0.0, 0.0, 1.0])]
    ws = [0.2 * wg[(i + 1) % 4] + 0.6 * wg[i] + 0.2 * wg[(i - 1) % 4] for i in range(4)]
    p = [x**3 for x in ws]
    want = t([x / sum(p) for x in p])
    torch.testing.assert_close(address(memory, prev, key, beta, g, s, gamma), want)


def test_read_and_write_match_hand_computation():
    memory = t([1.0, 2.0], [3.0, 4.0]).unsqueeze(0)
    w = t([0.25, 0.75])
    torch.testing.assert_close(read(memory, w), t([0.25 * 1 + 0.75 * 3, 0.25 * 2 + 0.75 * 4]))
    erase, add = t([1.0, 0.0]), t([10.0, 20.0])
    # slot i: M_i * (1 - w_i e) + w_i a
    want = t([1 * 0.75 + 2.5, 2 + 5.0], [3 * 0.25 + 7.5, 4 + 15.0]).unsqueeze(0)
    torch.testing.assert_close(write(memory, w, erase, add), want)


def test_addressing_is_batched_row_by_row():
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(3, 6, 4, generator=g), torch.softmax(torch.randn(3, 6, generator=g), -1),
            torch.randn(3, 4, generator=g), torch.rand(3, 1, generator=g) * 5, torch.rand(3, 1, generator=g),
            torch.softmax(torch.randn(3, 3, generator=g), -1), 1 + torch.rand(3, 1, generator=g)]
    out = address(*args)
    assert out.shape == (3, 6) and out.dtype == torch.float32
    torch.testing.assert_close(out.sum(-1), torch.ones(3))
    for i in range(3):
        torch.testing.assert_close(address(*(a[i : i + 1] for a in args)), out[i : i + 1])


def test_sharpen_gradient_is_finite_at_zero_weights():
    w = t([1.0, 0.0, 0.0]).requires_grad_(True)
    gamma = t([2.0]).requires_grad_(True)
    sharpen(w, gamma)[0, 0].backward()
    assert torch.isfinite(gamma.grad).all() and torch.isfinite(w.grad).all()


# ----------------------------------------------------------------------------- the machine


def small_ntm(controller="lstm", **kw):
    torch.manual_seed(0)
    return NTM(input_size=5, output_size=3, controller_size=16, memory_size=10, memory_width=6,
               read_heads=2, write_heads=1, controller=controller, **kw)


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_ntm_shapes_and_weightings(controller):
    model = small_ntm(controller)
    x = torch.randn(4, 7, 5)
    out, info = model(x)
    assert out.shape == (4, 7, 3)
    assert info["read"].shape == (4, 7, 2, 10) and info["write"].shape == (4, 7, 1, 10)
    assert info["memory"].shape == (4, 10, 6)
    for key in ("read", "write"):
        torch.testing.assert_close(info[key].sum(-1), torch.ones(info[key].shape[:-1]))
        assert (info[key] >= 0).all()


def test_ntm_is_deterministic_and_sequences_are_independent():
    model = small_ntm()
    x = torch.randn(3, 6, 5)
    a, _ = model(x)
    b, _ = model(x)
    assert torch.equal(a, b)
    alone, _ = model(x[1:2])
    torch.testing.assert_close(alone[0], a[1], atol=1e-6, rtol=0)
    assert torch.equal(small_ntm().state_dict()["out.weight"], model.state_dict()["out.weight"])


def test_gradients_reach_the_controller_through_the_memory():
    # a feed-forward controller has no state of its own: step 3's output can depend on step 0's input
    # only through what was written to the memory and read back
    model = small_ntm("feedforward")
    x = torch.randn(2, 4, 5, requires_grad=True)
    out, info = model(x)
    out[:, 3].sum().backward(retain_graph=True)
    assert x.grad[:, 0].abs().sum() > 0
    model.zero_grad()
    info["memory"].sum().backward()
    first = model.controller[0].weight.grad
    assert first is not None and first.abs().sum() > 0
    assert model.write_heads[0].fc.weight.grad.abs().sum() > 0


def test_lstm_controller_gets_gradient_from_the_memory():
    model = small_ntm("lstm")
    _, info = model(torch.randn(2, 4, 5))
    info["memory"].sum().backward()
    assert model.controller.weight_ih.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(memory_size=4, shift_range=2), ["too small", "shift_range=2", "5 slots"]),
        (dict(controller="gru"), ["controller"]),
        (dict(read_heads=0), ["read_heads"]),
        (dict(shift_range=-1), ["shift_range"]),
    ],
)
def test_bad_configurations_fail_clearly(kwargs, words):
    base = dict(input_size=5, output_size=3, controller_size=8, memory_size=10, memory_width=4)
    with pytest.raises(ValueError) as err:
        NTM(**{**base, **kwargs})
    for w in words:
        assert w in str(err.value)


def test_wrong_input_width_and_shift_errors():
    model = small_ntm()
    with pytest.raises(ValueError, match=r"\(batch, time, 5\)"):
        model(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="batch dimension"):
        model(torch.randn(3, 5))
    with pytest.raises(ValueError, match="too small"):
        shift(torch.ones(1, 3) / 3, torch.ones(1, 5) / 5)
    with pytest.raises(ValueError, match="odd"):
        shift(torch.ones(1, 3) / 3, torch.ones(1, 2) / 2)


# ----------------------------------------------------------------------------- the copy task


def test_copy_batch_layout_and_determinism():
    x, y = copy_batch(4, 3, 8, torch.Generator().manual_seed(1))
    assert x.shape == (4, 7, 9) and y.shape == (4, 3, 8)
    assert torch.equal(x[:, :3, :8], y) and (x[:, :3, 8] == 0).all()
    assert (x[:, 3, 8] == 1).all() and (x[:, 3, :8] == 0).all() and (x[:, 4:] == 0).all()
    x2, _ = copy_batch(4, 3, 8, torch.Generator().manual_seed(1))
    assert torch.equal(x, x2)
    with pytest.raises(ValueError, match="length"):
        copy_batch(4, 0)


def test_bit_errors_counts_wrong_bits():
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [0.0, 0.0]]])
    logits = torch.tensor([[[3.0, -1.0], [2.0, 1.0]], [[-1.0, -1.0], [1.0, 1.0]]])
    assert bit_errors(logits, targets).tolist() == [1.0, 4.0]


def test_copy_model_errors():
    torch.manual_seed(0)
    model = NTMCopy(hidden=8, memory_size=16, memory_width=4)
    with pytest.raises(ValueError, match="longer than this NTM was built for"):
        model(copy_batch(1, 17)[0])
    with pytest.raises(ValueError, match="delimiter"):
        model(torch.zeros(1, 7, 8))
    with pytest.raises(ValueError, match="longer than this NTM was built for"):
        model.bit_error_by_length([20], sequences=2)
    out, info = model(copy_batch(2, 5)[0])
    assert out.shape == (2, 5, 8) and info["write"].shape == (2, 11, 1, 16)


def test_copy_training_through_the_trainer(tmp_path):
    assert METHODS["ntm_copy"] is NTMCopy
    torch.manual_seed(0)
    model = NTMCopy(hidden=8, memory_size=16, memory_width=4)
    recipe = RECIPES["ntm_copy"]
    cfg = recipe.run_config(steps=4, tasks_per_step=4, val_every=2, val_episodes=8, save_every=2)
    settings = recipe.settings(max_length=5)
    source = recipe.tasks(model, settings, torch.device("cpu"), cfg)
    result = train(model, source, source, cfg, out_dir=tmp_path / "run", task_config=vars(settings),
                   progress=False)
    assert [h["step"] for h in result.history] == [2, 4]
    assert all(0 <= h["val_bits"] <= 40 for h in result.history)
    assert result.best_val == -min(h["val_bits"] for h in result.history)
    loaded = load_pretrained_like(tmp_path / "run" / "best.pt")
    report = copy_report(loaded, episodes=4, seed=0)
    assert "lengths 1..5" in report
    assert "length  10" in report and "length  60" not in report  # 16 slots: longer sequences are refused


def load_pretrained_like(path):
    """A checkpoint loaded with the run's settings attached, as load_pretrained gives them."""
    model = load_checkpoint(path, method="ntm_copy")
    model.task_config = read_checkpoint(path)["task_config"]
    return model


def test_copy_source_is_seeded():
    a, b = CopyTasks(max_length=6, seed=3), CopyTasks(max_length=6, seed=3)
    for _ in range(3):
        xa, ya = a.sample(3)
        xb, yb = b.sample(3)
        assert torch.equal(xa, xb) and 1 <= ya.shape[1] <= 6
