"""Lesson 05's exercise checks and figures: right answers pass, typical wrong answers fail with a useful message."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from conftest import check_fails as _fails  # noqa: E402
from conftest import check_passes  # noqa: E402

from metalearn_lite.algorithms.mann import MANN  # noqa: E402
from metalearn_lite.algorithms.ntm import NTMCopy, content_weighting, shift  # noqa: E402
from metalearn_lite.lessons import lesson05 as memory_plots  # noqa: E402
from metalearn_lite.lessons.lesson05 import (  # noqa: E402
    LRU_QUESTION,
    check_content_weighting,
    check_lru_write,
    check_next_write_slot,
    check_shift,
)

# ----------------------------------------------------------------------------- content addressing


def content_f_cosine(key, memory, beta):
    cos = F.cosine_similarity(memory, key.unsqueeze(1), dim=-1, eps=1e-8)
    return torch.softmax(beta * cos, dim=-1)


def content_loop(key, memory, beta):
    rows = []
    for b in range(memory.shape[0]):
        cos = torch.stack([key[b] @ m / (key[b].norm() * m.norm()) for m in memory[b]])
        rows.append(torch.softmax(beta[b] * cos, 0))
    return torch.stack(rows)


@pytest.mark.parametrize("fn", [content_weighting, content_f_cosine, content_loop])
def test_content_accepts_right_answers(fn):
    check_passes(check_content_weighting, fn)


def _dot(key, memory):
    return (memory @ key.unsqueeze(-1)).squeeze(-1)


def _cos(key, memory):
    return _dot(key, memory) / (key.norm(dim=-1, keepdim=True) * memory.norm(dim=-1))


@pytest.mark.parametrize(
    "fn, words",
    [
        (lambda k, m, b: torch.softmax(b * _dot(k, m), -1), ["dot product", "|k| |M_i|"]),
        (lambda k, m, b: torch.softmax(b * _dot(k, m) / k.norm(dim=-1, keepdim=True), -1), ["key's length only"]),
        (lambda k, m, b: torch.softmax(_cos(k, m), -1), ["beta is missing"]),
        (lambda k, m, b: b * _cos(k, m), ["softmax over the N slots"]),
        (lambda k, m, b: torch.softmax(b * _cos(k, m), 0), ["over the batch"]),
        (lambda k, m, b: None, ["returned None"]),
        (lambda k, m, b: torch.softmax(b * _cos(k, m), -1)[0], ["shape"]),
    ],
)
def test_content_rejects_wrong_answers(fn, words):
    _fails(check_content_weighting, fn, *words)


def test_content_prints_not_yet_without_strict(capsys):
    assert check_content_weighting(lambda k, m, b: None) is None
    assert capsys.readouterr().out.startswith("Not yet:")


# ----------------------------------------------------------------------------- shift


def shift_loop(w, s):
    n, r = w.shape[1], s.shape[1] // 2
    out = torch.zeros_like(w)
    for i in range(n):
        for k in range(-r, r + 1):
            out[:, i] += w[:, (i - k) % n] * s[:, k + r]
    return out


def shift_wrong_way(w, s):
    return shift(w, s.flip(-1))


def shift_no_wrap(w, s):
    r = s.shape[1] // 2
    padded = F.pad(w, (r, r))
    return F.conv1d(padded.unsqueeze(0), s.flip(-1).unsqueeze(0)).squeeze(0)


@pytest.mark.parametrize("fn", [shift, shift_loop])
def test_shift_accepts_right_answers(fn):
    check_passes(check_shift, fn)


def test_shift_rejects_wrong_direction_and_missing_wraparound():
    _fails(check_shift, shift_wrong_way, "wrong way", "torch.roll")
    _fails(check_shift, shift_no_wrap, "circular", "slot 0")
    _fails(check_shift, lambda w, s: w, "the result is")


# ----------------------------------------------------------------------------- LRU write


def lru_right(usage, prev_read, g):
    return g * prev_read + (1 - g) * F.one_hot(usage.argmin(), len(usage)).float()


@pytest.mark.parametrize(
    "fn, words",
    [
        (lambda u, r, g: g * r + (1 - g) * F.one_hot(u.argmax(), len(u)).float(), ["most", "least used"]),
        (lambda u, r, g: (1 - g) * r + g * F.one_hot(u.argmin(), len(u)).float(), ["wrong term"]),
        (lambda u, r, g: g * r + (1 - g) * F.one_hot(r.argmin(), len(u)).float(), ["usage weights"]),
        (lambda u, r, g: F.one_hot(u.argmin(), len(u)).float(), ["interpolate"]),
        (lambda u, r, g: r, ["write weighting is"]),
    ],
)
def test_lru_rejects_wrong_answers(fn, words):
    _fails(check_lru_write, fn, *words)


def test_lru_accepts_right_answer_and_next_slot_question():
    check_passes(check_lru_write, lru_right)
    usage = LRU_QUESTION["usage"]
    check_passes(check_next_write_slot, usage.index(min(usage)))
    _fails(check_next_write_slot, usage.index(max(usage)), "most used")
    _fails(check_next_write_slot, 2, "read last")
    _fails(check_next_write_slot, "4", "slot number")


# ----------------------------------------------------------------------------- figures


def test_addressing_steps_use_the_package():
    memory = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, -1.0], [0.0, 0.0]])
    steps = memory_plots.addressing_steps(memory, torch.tensor([1.0, 0, 0, 0, 0]), torch.tensor([1.0, 0.0]),
                                          beta=3.0, gate=1.0, s=torch.tensor([0.0, 1.0, 0.0]), gamma=1.0)
    torch.testing.assert_close(steps["4 sharpen"], steps["1 content"])  # no move, no sharpening
    fig = memory_plots.plot_addressing(steps)
    assert len(fig.axes) == 5


def test_copy_and_episode_figures_run_on_small_models():
    torch.manual_seed(0)
    run = memory_plots.copy_run(NTMCopy(hidden=8, memory_size=16, memory_width=4), length=4)
    assert run["read"].shape == (9, 16) and run["outputs"].shape == (4, 8)
    memory_plots.plot_copy(run)
    memory_plots.plot_bits_by_length({5: torch.tensor([0.0, 1.0]), 10: torch.tensor([2.0, 3.0])}, trained_max=5)
    model = MANN(hidden=8, memory_size=8, memory_width=4, read_heads=2, image_size=8)
    labels = torch.tensor([0, 1, 0, 2, 1, 2])
    rec = memory_plots.record_episode(model, torch.rand(6, 1, 8, 8), labels)
    assert rec.presentation.tolist() == [1, 1, 2, 1, 2, 2] and rec.read.shape == (6, 2, 8)
    memory_plots.plot_episode_step(rec, 3, slots=8)
    ours = {"MANN": ([30.0, 70.0, 80.0, 85.0, 90.0], [1.0] * 5)}
    memory_plots.plot_presentations(ours)
    import matplotlib.pyplot as plt

    plt.close("all")
