"""Lesson 05's exercise checks and figures: right answers pass, typical wrong answers fail with a useful message."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from conftest import check_fails as _fails  # noqa: E402
from conftest import check_passes  # noqa: E402

from metalearn_lite.algorithms.mann import MANN, least_used  # noqa: E402
from metalearn_lite.algorithms.ntm import NTMCopy, content_weighting  # noqa: E402
from metalearn_lite.lessons import lesson05 as memory_plots  # noqa: E402
from metalearn_lite.lessons.exercises import CheckFailed  # noqa: E402
from metalearn_lite.lessons.lesson05 import (  # noqa: E402
    ABLATION_CLAIMS,
    LRU_QUESTION,
    check_content_weighting,
    check_lru_ablation,
    check_next_write_slot,
    check_presentation_prediction,
    check_topk_weighting,
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


# ----------------------------------------------------------------------------- LRU: the next write


def test_next_slot_question():
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


# ----------------------------------------------------------------------------- new exercises and demos


def _small_mann() -> MANN:
    torch.manual_seed(0)
    return MANN(hidden=8, memory_size=8, memory_width=4, read_heads=2, image_size=8)


def _episodes(t: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    labels = torch.stack([torch.randperm(6, generator=g) % 3 for _ in range(t)])
    return torch.rand(t, 6, 1, 8, 8, generator=g), labels


def _strict_fails(check, *args, words=()):
    with pytest.raises(CheckFailed) as err:
        check(*args, strict=True)
    for word in words:
        assert word in str(err.value), f"{word!r} not in: {err.value}"


def test_presentation_prediction_accepts_close_and_explains_chance():
    check_passes(check_presentation_prediction, (30.0, 80.0), (33.9, 78.1))
    _strict_fails(check_presentation_prediction, (20.0, 80.0), (33.9, 78.1), words=("above chance", "45.7"))
    _strict_fails(check_presentation_prediction, (35.0, 40.0), (33.9, 78.1), words=("2nd presentation",))
    _strict_fails(check_presentation_prediction, None, (33.9, 78.1), words=("my_prediction",))
    _strict_fails(check_presentation_prediction, (35.0, 140.0), (33.9, 78.1), words=("between 0 and 100",))


def test_lru_ablation_rejects_the_rule_itself_a_bad_shape_and_a_wrong_claim():
    model = _small_mann()
    images, labels = _episodes()

    def first_slots(usage, n):
        return F.one_hot(torch.arange(n), usage.shape[-1]).to(usage.dtype).expand(usage.shape[0], n, -1)

    _strict_fails(check_lru_ablation, least_used, "unchanged", model, images, labels, words=("least-used rule itself",))
    _strict_fails(check_lru_ablation, lambda u, n: u, "unchanged", model, images, labels, words=("(1, 2, 8)",))
    _strict_fails(check_lru_ablation, first_slots, "better", model, images, labels, words=("my_claim",))
    # an untrained model is at chance either way: any claim but the measured one fails, naming the numbers
    before = memory_plots.ablated_accuracy(None, model, images, labels)[1:].mean()
    after = memory_plots.ablated_accuracy(first_slots, model, images, labels)[1:].mean()
    found = ("unchanged" if abs(float(before - after)) < 3 else "about chance" if after < 30
             else "lower but above chance")
    check_passes(check_lru_ablation, first_slots, found, model, images, labels)
    wrong = next(c for c in ABLATION_CLAIMS if c != found)
    _strict_fails(check_lru_ablation, first_slots, wrong, model, images, labels, words=("went from",))
    from metalearn_lite.algorithms import mann

    assert mann.least_used is least_used  # the package's rule is restored after the ablation


def test_topk_weighting_check():
    def right(key, memory, beta, k):
        scores = beta * F.cosine_similarity(memory, key.unsqueeze(1), dim=-1)
        top = scores.topk(k, -1).indices
        return torch.softmax(torch.full_like(scores, float("-inf")).scatter(-1, top, scores.gather(-1, top)), -1)

    def not_renormalised(key, memory, beta, k):
        full = content_weighting(key, memory, beta)
        top = full.topk(k, -1).indices
        return torch.zeros_like(full).scatter(-1, top, full.gather(-1, top))

    check_passes(check_topk_weighting, right)
    _fails(check_topk_weighting, lambda key, memory, beta, k: content_weighting(key, memory, beta), "k=1")
    _fails(check_topk_weighting, not_renormalised, "sum to 1")


def test_memory_demos_show_no_weight_change_and_an_empty_start():
    model = _small_mann()
    images, labels = _episodes()
    demo = memory_plots.memory_without_updates(model, images[0], labels[0])
    assert demo["weights_changed"] is False and demo["memory_change"].shape == (6,)
    assert float(demo["memory_change"].sum()) > 0 and float(demo["memory_norm"][-1]) > 0
    between = memory_plots.memory_between_episodes(model, images, labels)
    assert torch.all(between["start_norm"] == 0)
    assert between["wiped"].shape == between["carried"].shape == (2,)
    with pytest.raises(ValueError, match="at least 2 episodes"):
        memory_plots.memory_between_episodes(model, images[:1], labels[:1])
