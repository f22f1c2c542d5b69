"""Lesson 05 (memory-augmented networks): figures, widgets' drawing code, checks and demos in one place.

* Figures: the NTM addressing steps, the copy task's weightings, the MANN's episodes and accuracy by
  presentation.  Every function draws with the package's own code (:mod:`metalearn_lite.algorithms.ntm`,
  :mod:`metalearn_lite.algorithms.mann`).
* Demos for the misconception boxes: :func:`memory_without_updates` (the memory changes within an episode
  while no weight does) and :func:`memory_between_episodes` (every episode starts from the same memory).
* Exercise checks: ``check_x(answer)`` prints "Correct! ..." or "Not yet: ..." and returns ``None``;
  ``strict=True`` raises :class:`CheckFailed` instead (as in :mod:`metalearn_lite.lessons.exercises`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import torch

from ..algorithms.ntm import content_weighting, interpolate, sharpen, shift
from ..datasets.copy_task import copy_batch
from .exercises import CheckFailed, answer_tensor, close, report

#: Santoro et al. (2016), Table 1 (5-class Omniglot episodes; 1,200 background characters with
#: rotations and translations, 100,000 training episodes): accuracy (%) at the 1st, 2nd, 3rd, 5th and
#: 10th presentation of a class (the table also has the 4th: MANN 92.6, LSTM 61.0, human 71.8).
PAPER_PRESENTATIONS = (1, 2, 3, 5, 10)
PAPER_ACCURACY = {
    "MANN (LRU)": (36.4, 82.8, 91.0, 94.9, 98.1),
    "LSTM": (24.4, 49.5, 55.3, 63.6, 62.5),
    "Human": (34.5, 57.3, 70.1, 81.4, 92.4),
}


def addressing_steps(memory: torch.Tensor, w_prev: torch.Tensor, key: torch.Tensor, beta: float, gate: float,
                     s: torch.Tensor, gamma: float) -> dict[str, torch.Tensor]:
    """The weighting after each addressing step for one head: unbatched ``(N, M)``, ``(N,)``, ``(M,)``."""
    b = torch.tensor([[float(beta)]])
    wc = content_weighting(key[None], memory[None], b)
    wg = interpolate(wc, w_prev[None], torch.tensor([[float(gate)]]))
    ws = shift(wg, s[None])
    w = sharpen(ws, torch.tensor([[float(gamma)]]))
    return {"previous": w_prev, "1 content": wc[0], "2 interpolate": wg[0], "3 shift": ws[0], "4 sharpen": w[0]}


def plot_addressing(steps: dict[str, torch.Tensor], title: str = "") -> plt.Figure:
    """Bar charts of the weightings of :func:`addressing_steps`, one panel per step."""
    fig, axes = plt.subplots(1, len(steps), figsize=(2.6 * len(steps), 2.4), sharey=True)
    for ax, (name, w) in zip(axes, steps.items()):
        n = len(w)
        ax.bar(range(n), w.detach().numpy(), color="tab:gray" if name == "previous" else "tab:blue")
        ax.set_title(name, fontsize=10)
        ax.set_xticks(range(n))
        ax.set_xlabel("slot")
        ax.set_ylim(0, 1.05)
        for i, v in enumerate(w.tolist()):
            ax.text(i, v + 0.02, f"{v:.2f}", ha="center", fontsize=7)
    axes[0].set_ylabel("weight")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


@torch.no_grad()
def copy_run(model, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """One copy-task sequence through an :class:`~metalearn_lite.algorithms.ntm.NTMCopy` model.

    Returns ``inputs (2L+1, bits+1)``, ``targets (L, bits)``, ``outputs`` (probabilities ``(L, bits)``),
    ``read`` / ``write`` weightings ``(2L+1, N)`` and ``errors`` (wrong bits).
    """
    inputs, targets = copy_batch(1, length, model.bits, torch.Generator().manual_seed(seed))
    model.eval()
    logits, info = model(inputs)
    return {
        "inputs": inputs[0],
        "targets": targets[0],
        "outputs": torch.sigmoid(logits[0]),
        "read": info["read"][0, :, 0],
        "write": info["write"][0, :, 0],
        "errors": ((logits[0] > 0).float() != targets[0]).sum(),
    }


def plot_copy(run: dict[str, torch.Tensor], slots: int | None = None) -> plt.Figure:
    """Input, target, output and the write/read weightings over time of :func:`copy_run`."""
    length = run["targets"].shape[0]
    used = int(max(run["write"].argmax(-1).max(), run["read"].argmax(-1).max())) + 3
    slots = slots or min(run["write"].shape[1], max(used, length + 3))
    fig = plt.figure(figsize=(11, 5.2))
    grid = fig.add_gridspec(2, 3, height_ratios=[1, 1.6])
    panels = [("input (bits + delimiter)", run["inputs"].T), ("target", run["targets"].T),
              (f"output ({int(run['errors'])} wrong bits)", run["outputs"].T)]
    for i, (name, img) in enumerate(panels):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(img.numpy(), cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("time step")
        ax.set_yticks([])
    for i, key in enumerate(("write", "read")):
        ax = fig.add_subplot(grid[1, i])
        ax.imshow(run[key][:, :slots].T.numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto",
                  interpolation="nearest", origin="lower")
        ax.axvline(length, color="w", lw=0.8, ls="--")
        ax.set_title(f"{key} weighting", fontsize=10)
        ax.set_xlabel("time step (dashed: delimiter)")
        ax.set_ylabel("memory slot")
    ax = fig.add_subplot(grid[1, 2])
    t = torch.arange(run["write"].shape[0])
    ax.plot(t, run["write"].argmax(-1), "o-", ms=3, label="write focus")
    ax.plot(t, run["read"].argmax(-1), "s-", ms=3, label="read focus")
    ax.axvline(length, color="k", lw=0.8, ls="--")
    ax.set_xlabel("time step")
    ax.set_ylabel("slot with the most weight")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_bits_by_length(errors: dict[int, torch.Tensor], trained_max: int) -> plt.Figure:
    """Mean wrong bits per sequence (± 95 % CI) against the sequence length."""
    from ..evaluation import mean_ci

    lengths = sorted(errors)
    stats = [mean_ci(errors[n]) for n in lengths]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.errorbar(lengths, [m for m, _ in stats], yerr=[c if c < float("inf") else 0 for _, c in stats],
                fmt="o-", capsize=3)
    ax.axvspan(0, trained_max, color="tab:green", alpha=0.1, label=f"trained lengths 1..{trained_max}")
    ax.axhline(1.0, color="k", lw=0.8, ls=":", label="1 bit per sequence")
    ax.set_xlabel("sequence length")
    ax.set_ylabel("wrong bits per sequence")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_presentations(ours: dict[str, tuple[list[float], list[float]]], paper: bool = True) -> plt.Figure:
    """Accuracy by presentation: ``ours[name] = (means %, ci %)`` at :data:`PAPER_PRESENTATIONS`."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    x = list(PAPER_PRESENTATIONS)
    for i, (name, (mean, ci)) in enumerate(ours.items()):
        ax.errorbar(x, mean, yerr=ci, fmt="o-", capsize=3, color=f"C{i}", label=f"{name} (ours)")
    if paper:
        for i, name in enumerate(("MANN (LRU)", "LSTM")):
            ax.plot(x, PAPER_ACCURACY[name], "x--", color=f"C{i}", alpha=0.6, label=f"{name} (Santoro et al.)")
    ax.axhline(20, color="k", lw=0.6, ls=":", label="chance (5 classes)")
    ax.set_xticks(x)
    ax.set_xlabel("presentation of the class in the episode")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


@dataclass
class EpisodeRecord:
    """Everything the MANN did on one episode (``L`` steps, ``R`` heads, ``N`` slots)."""

    images: torch.Tensor  # (L, 1, H, W)
    labels: torch.Tensor  # (L,)
    probs: torch.Tensor  # (L, classes)
    read: torch.Tensor  # (L, R, N)
    write: torch.Tensor  # (L, R, N)
    usage: torch.Tensor  # (L, N)
    presentation: torch.Tensor  # (L,)


@torch.no_grad()
def record_episode(model, images: torch.Tensor, labels: torch.Tensor) -> EpisodeRecord:
    """Run a MANN on one episode ``(L, 1, H, W)``, ``(L,)`` and keep its outputs and weightings."""
    from ..evaluation import presentation_index

    model.eval()
    logits, info = model(images[None], labels[None])
    return EpisodeRecord(images, labels, logits[0].softmax(-1), info["read"][0], info["write"][0],
                         info["usage"][0], presentation_index(labels[None])[0])


def plot_episode_step(rec: EpisodeRecord, t: int, slots: int = 64) -> plt.Figure:
    """Step ``t`` of a recorded episode: the drawing, the label input, the answer, and the memory traffic."""
    fig = plt.figure(figsize=(11, 3.6))
    grid = fig.add_gridspec(2, 4, width_ratios=[1, 1.2, 3, 3])
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(rec.images[t, 0].numpy(), cmap="Greys")
    prev = "none" if t == 0 else str(int(rec.labels[t - 1]))
    ax.set_title(f"step {t}: label {int(rec.labels[t])}\n(presentation {int(rec.presentation[t])})", fontsize=9)
    ax.set_xlabel(f"label input (y of step {t - 1}): {prev}", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax = fig.add_subplot(grid[:, 1])
    p = rec.probs[t]
    colors = ["tab:green" if c == int(rec.labels[t]) else "tab:gray" for c in range(len(p))]
    ax.barh(range(len(p)), p.numpy(), color=colors)
    ax.set_yticks(range(len(p)))
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_title("answer (green: right)", fontsize=9)
    for row, (key, data) in enumerate((("write", rec.write), ("read", rec.read))):
        ax = fig.add_subplot(grid[row, 2])
        ax.imshow(data[t, :, :slots].numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_ylabel("head", fontsize=8)
        ax.set_title(f"{key} weights, step {t} (first {slots} slots)", fontsize=9)
        ax.set_yticks(range(data.shape[1]))
    ax.set_xlabel("memory slot")
    ax = fig.add_subplot(grid[:, 3])
    # which earlier steps wrote to the slots this step reads (read weights x write weights)
    overlap = (rec.read[t].sum(0) @ rec.write[: t + 1].sum(1).T).numpy()
    same = (rec.labels[: t + 1] == rec.labels[t]).numpy()
    steps = range(t + 1)
    ax.bar(steps, overlap, color=["tab:orange" if s else "tab:gray" for s in same])
    ax.set_xlim(-0.5, len(rec.labels) - 0.5)
    ax.set_xlabel("earlier step (orange: same class)")
    ax.set_title("how much this read draws on each write so far", fontsize=9)
    fig.tight_layout()
    return fig


def plot_episode_strip(rec: EpisodeRecord, steps: int = 16) -> plt.Figure:
    """The first ``steps`` steps of a recorded episode: drawing, true label, answer (green right, red wrong)."""
    steps = min(steps, len(rec.labels))
    fig, axes = plt.subplots(1, steps, figsize=(0.8 * steps, 1.5))
    for t, ax in enumerate(axes):
        ax.imshow(rec.images[t, 0].numpy(), cmap="Greys")
        guess, true = int(rec.probs[t].argmax()), int(rec.labels[t])
        ax.set_title(f"{true}→{guess}", fontsize=8, color="tab:green" if guess == true else "tab:red")
        ax.set_xlabel(f"#{int(rec.presentation[t])}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("label → the model's answer; #k: k-th presentation of that class", fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# content_weighting(key (B, M), memory (B, N, M), beta (B, 1)) -> (B, N)
# ---------------------------------------------------------------------------------------------


def _cos(key: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """Cosine by an explicit loop over batch and slots (independent of the package)."""
    out = torch.zeros(memory.shape[:2], dtype=torch.float64)
    for b in range(memory.shape[0]):
        for i in range(memory.shape[1]):
            k, m = key[b].double(), memory[b, i].double()
            out[b, i] = k @ m / (k.norm() * m.norm() + 1e-8)
    return out


def _content_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(5)
    memory = torch.randn(3, 6, 4, generator=g) * torch.tensor([0.5, 3.0, 1.0, 0.2, 2.0, 1.0]).view(1, 6, 1)
    key = torch.randn(3, 4, generator=g) * 2.5
    beta = torch.tensor([[2.0], [7.0], [0.5]])
    hand = (torch.tensor([[2.0, 0.0]]), torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]), torch.tensor([[2.0]]))
    return [hand, (key, memory, beta)]


def _content(fn: Callable[..., torch.Tensor]) -> str:
    for key, memory, beta in _content_cases():
        b, n = memory.shape[:2]
        got = fn(key.clone(), memory.clone(), beta.clone())
        got = answer_tensor(got, f"({b}, {n}) content weighting", (b, n)).detach()
        cos = _cos(key, memory)
        want = torch.softmax(beta.double() * cos, -1)
        if close(got, want):
            continue
        dot = (memory.double() @ key.double().unsqueeze(-1)).squeeze(-1)
        if close(got, torch.softmax(beta.double() * dot, -1)):
            raise CheckFailed("you used the dot product k . M_i; divide it by |k| |M_i| to get the cosine "
                              "similarity, so that a slot does not win just by holding a long vector")
        if close(got, torch.softmax(beta.double() * dot / key.double().norm(dim=-1, keepdim=True), -1)):
            raise CheckFailed("you divided by the key's length only; the cosine also divides by each slot's "
                              "length |M_i|")
        if close(got, torch.softmax(cos, -1)):
            raise CheckFailed("the key strength beta is missing: multiply the cosines by beta before the softmax "
                              "(beta sharpens or flattens the focus)")
        if close(got, beta.double() * cos) or close(got, cos):
            raise CheckFailed("these are scores, not weights: apply a softmax over the N slots so that each row "
                              "is positive and sums to 1")
        if close(got, torch.softmax(beta.double() * cos, 0)):
            raise CheckFailed("the softmax runs over the batch; it must run over the slots (dim=-1)")
        if close(got, beta.double() * cos / (beta.double() * cos).sum(-1, keepdim=True)):
            raise CheckFailed("dividing by the sum is not a softmax: cosines can be negative; use "
                              "torch.softmax(beta * cos, dim=-1)")
        raise CheckFailed(f"for key={key[0].tolist()} and the memory rows {memory[0].tolist()} with beta="
                          f"{float(beta[0])}, the weighting is {[round(v, 4) for v in want[0].tolist()]}; you returned "
                          f"{[round(v, 4) for v in got[0].tolist()]}. Hint: softmax over slots of beta * cos(k, M_i)")
    return "content addressing is a softmax over slots of beta times the cosine similarity."


def check_content_weighting(fn: Callable[..., torch.Tensor], strict: bool = False) -> None:
    """Lesson 05: ``fn(key (B, M), memory (B, N, M), beta (B, 1)) -> (B, N)``."""
    return report(_content, fn, strict)


#: The "predict the next write" question: usage after some steps, the previous read weights, a gate.
LRU_QUESTION = {
    "usage": [1.7, 0.4, 1.2, 0.9, 0.1, 2.3],
    "prev_read": [0.0, 0.0, 0.9, 0.0, 0.0, 0.1],
    "g": 0.0,
}


def _next_slot(answer: Any) -> str:
    if not isinstance(answer, int) or isinstance(answer, bool):
        raise CheckFailed(f"answer with a slot number (an int from 0 to {len(LRU_QUESTION['usage']) - 1})")
    usage = LRU_QUESTION["usage"]
    want = min(range(len(usage)), key=usage.__getitem__)
    if answer == want:
        return f"slot {want} has the lowest usage ({usage[want]}), and with g = 0 the whole write goes there."
    if answer == max(range(len(usage)), key=usage.__getitem__):
        raise CheckFailed("that is the most used slot; LRU access writes where usage is lowest")
    if answer == 2:
        raise CheckFailed("slot 2 was read last, but the gate g = 0 sends the write to the least-used slot instead")
    raise CheckFailed(f"slot {answer} has usage {usage[answer]}; look for the smallest usage")


def check_next_write_slot(answer: int, strict: bool = False) -> None:
    """Lesson 05: which slot receives the next write for :data:`LRU_QUESTION`?"""
    return report(_next_slot, answer, strict)


# ---------------------------------------------------------------------------------------------
# Misconception demos: what changes inside an episode (the memory), what does not (the weights)
# ---------------------------------------------------------------------------------------------


def _episode_inputs(model, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if images.dim() == 4:  # one episode (L, 1, H, W)
        images, labels = images[None], labels[None]
    return model.inputs(images, labels)


@torch.no_grad()
def memory_without_updates(model, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Run a MANN through one episode ``(L, 1, H, W)``, ``(L,)`` step by step, with gradients switched off.

    Returns ``"memory_change"`` ``(L,)``: ``||M_t - M_{t-1}||`` at each step (the Frobenius norm);
    ``"memory_norm"`` ``(L,)``: ``||M_t||`` after step ``t``; ``"weights_changed"``: whether any
    parameter differs bit for bit after the episode; ``"parameters"``: how many numbers the weights hold.
    No optimiser exists and no gradient is computed, so whatever the episode teaches lives in the memory.
    """
    model.eval()
    before = [p.detach().clone() for p in model.parameters()]
    inputs = _episode_inputs(model, images, labels)
    state = model.initial_state(1)
    change, norm = [], []
    for t in range(inputs.shape[1]):
        _, new, _ = model.forward_step(inputs[:, t], state)
        change.append(float((new.memory - state.memory).norm()))
        norm.append(float(new.memory.norm()))
        state = new
    changed = any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    return {"memory_change": torch.tensor(change), "memory_norm": torch.tensor(norm), "weights_changed": changed,
            "parameters": sum(p.numel() for p in model.parameters())}


def _slice_state(state, index: slice):
    return type(state)(*(tuple(x[index] for x in v) if isinstance(v, tuple) else v[index]
                         for v in (state.memory, state.reads, state.read_w, state.usage, state.controller)))


@torch.no_grad()
def memory_between_episodes(model, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a MANN's memory carries from one episode to the next: ``(T, L, 1, H, W)``, ``(T, L)`` episodes.

    Returns ``"start_norm"`` ``(T,)``: the norm of the memory each episode starts from (the model's
    ``initial_state``, all zeros); and the accuracy (%) by presentation ``(P,)`` over episodes ``1..T-1``
    run two ways: ``"wiped"`` (as the model always runs: a fresh memory) and ``"carried"`` (the memory,
    usage and controller state left by the previous episode, whose labels meant other characters).
    """
    from ..evaluation import presentation_accuracy

    model.eval()
    if images.shape[0] < 2:
        raise ValueError(f"need at least 2 episodes to carry a memory from one to the next; got {images.shape[0]}")
    inputs = _episode_inputs(model, images, labels)
    start = model.initial_state(inputs.shape[0])
    wiped, info = model.run_inputs(inputs, start)
    carried, _ = model.run_inputs(inputs[1:], _slice_state(info["state"], slice(0, -1)))
    presentations = int(torch.nn.functional.one_hot(labels.long(), model.classes).sum(1).max())

    def by_presentation(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 100 * presentation_accuracy((logits.argmax(-1) == y).cpu(), y.cpu(), presentations).nanmean(0)

    return {"start_norm": start.memory.flatten(1).norm(dim=1), "wiped": by_presentation(wiped[1:], labels[1:]),
            "carried": by_presentation(carried, labels[1:])}


# ---------------------------------------------------------------------------------------------
# Predict: accuracy at a class's 1st and 2nd presentation
# ---------------------------------------------------------------------------------------------

#: With 5 classes, a model that only knows which labels it has already been told belong to other
#: characters, and guesses uniformly among the rest, is right at the k-th new class with probability
#: 1 / (5 - k + 1); averaged over the five first presentations: (1 + 1/2 + 1/3 + 1/4 + 1/5) / 5.
EXCLUSION_FIRST = 100 * sum(1 / k for k in range(1, 6)) / 5


def _presentations(args: tuple[Any, tuple[float, float]]) -> str:
    answer, measured = args
    if answer is None or (isinstance(answer, tuple) and None in answer):
        raise CheckFailed("set my_prediction = (first, second): your accuracies (%) at a class's 1st and 2nd "
                          "presentation, before you run the cell that measures them")
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise CheckFailed("answer with a pair of percentages (first, second), e.g. (25, 60)")
    first, second = (float(a) for a in answer)
    if not (0 <= first <= 100 and 0 <= second <= 100):
        raise CheckFailed(f"accuracies are percentages between 0 and 100; you wrote {answer}")
    m1, m2 = (float(m) for m in measured)
    if first <= 22 and m1 > 25:
        raise CheckFailed(f"the model is right {m1:.1f} % of the time at a first presentation, above chance (20 %): "
                          "it cannot know the new class's label, but it knows which labels it has already been "
                          "told belong to other drawings. Excluding those alone would give "
                          f"{EXCLUSION_FIRST:.1f} % (1/5, 1/4, ..., 1/1 for the 1st to 5th new class, averaged)")
    if abs(first - m1) > 10:
        raise CheckFailed(f"you predicted {first:.0f} % at the 1st presentation; the run measured {m1:.1f} %. "
                          f"Hint: chance is 20 %, excluding labels already used gives {EXCLUSION_FIRST:.1f} %")
    if abs(second - m2) > 10:
        raise CheckFailed(f"you predicted {second:.0f} % at the 2nd presentation; the run measured {m2:.1f} %. Hint: "
                          "one earlier drawing of the class, with its label, sits in memory; how often does the "
                          "most similar stored drawing belong to the same character?")
    return (f"measured {m1:.1f} % and {m2:.1f} %: above chance before any drawing of the class was seen (labels "
            "already used are excluded), and far above it after one, with no weight changed.")


def check_presentation_prediction(answer: tuple[float, float] | None, measured: tuple[float, float],
                                  strict: bool = False) -> None:
    """Lesson 05: ``answer = (first, second)``, the predicted accuracies (%) at a class's 1st and 2nd
    presentation, against the ``measured`` pair.  Within 10 points each passes.  Returns ``None``."""
    return report(_presentations, (answer, measured), strict)


# ---------------------------------------------------------------------------------------------
# Ablate: writes that ignore the usage weights
# ---------------------------------------------------------------------------------------------

#: The claims a reader can make about the ablation, checked against the measurement.
ABLATION_CLAIMS = ("unchanged", "lower but above chance", "about chance")


@torch.no_grad()
def ablated_accuracy(rule: Callable[[torch.Tensor, int], torch.Tensor] | None, model, images: torch.Tensor,
                     labels: torch.Tensor) -> torch.Tensor:
    """Accuracy (%) by presentation of ``model`` on episodes ``(T, L, 1, H, W)``, ``(T, L)`` with its
    least-used rule ``least_used(usage (B, N), n) -> (B, n, N)`` replaced by ``rule`` (``None``: unchanged)."""
    from ..algorithms import mann
    from ..evaluation import presentation_accuracy

    original = mann.least_used
    try:
        if rule is not None:
            mann.least_used = rule
        model.eval()
        logits, _ = model(images, labels)
    finally:
        mann.least_used = original
    presentations = int(torch.nn.functional.one_hot(labels.long(), model.classes).sum(1).max())
    return 100 * presentation_accuracy((logits.argmax(-1) == labels).cpu(), labels.cpu(), presentations).nanmean(0)


def _ablation(args: tuple[Any, Any, Any, torch.Tensor, torch.Tensor]) -> str:
    rule, claim, model, images, labels = args
    if rule is None:
        raise CheckFailed("write my_write_rule(usage, n): the slots to write to, chosen without looking at usage")
    usage = torch.tensor([[0.5, 0.1, 2.0, 0.3, 1.0, 0.0, 4.0, 0.2]])
    other = usage.flip(-1)
    out = rule(usage, 2)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, 2, 8):
        raise CheckFailed(f"for usage of shape (1, 8) and n=2 return one-hot rows of shape (1, 2, 8); got "
                          f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    if not (torch.all((out == 0) | (out == 1)) and torch.all(out.sum(-1) == 1)):
        raise CheckFailed("each row must be one-hot: a 1 on the slot that head j writes to, 0 elsewhere")
    if torch.equal(out, _package_least_used(usage, 2)) and torch.equal(rule(other, 2), _package_least_used(other, 2)):
        raise CheckFailed("this is the least-used rule itself: the ablation must choose its slots without usage "
                          "(e.g. always the first n slots, or n random ones)")
    if claim not in ABLATION_CLAIMS:
        raise CheckFailed(f"set my_claim to one of {ABLATION_CLAIMS}: what happens to the accuracy from the 2nd "
                          "presentation on")
    base = ablated_accuracy(None, model, images, labels)[1:].mean()
    ablated = ablated_accuracy(rule, model, images, labels)[1:].mean()
    found = ("unchanged" if abs(float(base - ablated)) < 3 else "about chance" if ablated < 30
             else "lower but above chance")
    if claim != found:
        raise CheckFailed(f"with your rule the accuracy over presentations 2-10 went from {base:.1f} % to "
                          f"{ablated:.1f} %: that is '{found}', not '{claim}'. Hint: the chosen slot is zeroed "
                          "before the write; which drawings survive in memory under your rule?")
    return (f"presentations 2-10: {base:.1f} % with least-used writes, {ablated:.1f} % with yours ({found}). "
            "Usage is what keeps each new drawing in a slot nothing else will overwrite soon.")


def _package_least_used(usage: torch.Tensor, n: int) -> torch.Tensor:
    from ..algorithms.mann import least_used

    return least_used(usage, n)


def check_lru_ablation(rule: Callable[[torch.Tensor, int], torch.Tensor] | None, claim: str | None, model,
                       images: torch.Tensor, labels: torch.Tensor, strict: bool = False) -> None:
    """Lesson 05: ``rule(usage (B, N), n) -> (B, n, N)`` one-hot write slots chosen without usage, and
    ``claim`` (one of :data:`ABLATION_CLAIMS`), checked by running ``model`` on the episodes with the rule
    in place of the least-used one.  Returns ``None``."""
    return report(_ablation, (rule, claim, model, images, labels), strict)


# ---------------------------------------------------------------------------------------------
# Extend: sparse (top-k) content addressing
# ---------------------------------------------------------------------------------------------


def _topk(fn: Callable[..., torch.Tensor]) -> str:
    g = torch.Generator().manual_seed(11)
    memory = torch.randn(3, 10, 5, generator=g)
    key = torch.randn(3, 5, generator=g)
    beta = torch.tensor([[1.0], [4.0], [0.3]])
    for k in (1, 3, 10):
        got = answer_tensor(fn(key.clone(), memory.clone(), beta.clone(), k), "(3, 10) weighting", (3, 10)).detach()
        got = got.double()
        if torch.any(got < -1e-9) or not torch.allclose(got.sum(-1), torch.ones(3, dtype=torch.float64), atol=1e-5):
            raise CheckFailed(f"with k={k} each row must be non-negative and sum to 1 (a weighting over slots); "
                              f"your rows sum to {[round(v, 4) for v in got.sum(-1).tolist()]}")
        nonzero = (got > 1e-9).sum(-1)
        if torch.any(nonzero > k):
            raise CheckFailed(f"with k={k} a row has {int(nonzero.max())} slots with weight: keep only the k slots "
                              "with the highest cosine and set the others to exactly 0")
        scores = beta.double() * _cos(key, memory)
        top = scores.topk(k, dim=-1).indices
        want = torch.zeros_like(scores).scatter(-1, top, torch.softmax(scores.gather(-1, top), -1))
        if close(got, want):
            continue
        full = torch.softmax(scores, -1)
        kept = torch.zeros_like(full).scatter(-1, top, full.gather(-1, top))
        if close(got, kept):
            raise CheckFailed(f"with k={k} you kept the top-k weights of the full softmax without renormalising: "
                              "the rows must sum to 1 again (a softmax over the kept scores only)")
        raise CheckFailed(f"with k={k} the weights on the kept slots are not softmax(beta * cos) over those slots: "
                          f"expected {[round(v, 3) for v in want[0].tolist()]}, "
                          f"got {[round(v, 3) for v in got[0].tolist()]}")
    return ("top-k addressing reads from at most k slots; with k = N it is plain content addressing "
            "(sparse reads are what lets a memory grow large, as in Rae et al. 2016).")


def check_topk_weighting(fn: Callable[..., torch.Tensor], strict: bool = False) -> None:
    """Lesson 05: ``fn(key (B, M), memory (B, N, M), beta (B, 1), k) -> (B, N)``, the softmax of
    ``beta * cos(k, M_i)`` over the ``k`` most similar slots, 0 elsewhere.  Returns ``None``."""
    return report(_topk, fn, strict)
