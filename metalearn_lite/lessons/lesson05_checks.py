"""Checks for lesson 05's exercises: NTM content addressing, the circular shift, and LRU writes.

Each check runs the reader's function on small cases with known answers and, when it is wrong,
says *how* (a dot product instead of a cosine, a forgotten key strength, a shift in the wrong
direction or without wrap-around, the gate on the wrong term, the most- instead of least-used slot).
``check_x(fn)`` prints "Correct! ..." or "Not yet: ..." and returns a bool; ``strict=True`` raises
:class:`CheckFailed` instead (as in :mod:`metalearn_lite.lessons.exercises`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .exercises import CheckFailed, answer_tensor, close, report

__all__ = [
    "CheckFailed",
    "LRU_QUESTION",
    "check_content_weighting",
    "check_lru_write",
    "check_next_write_slot",
    "check_shift",
]


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


# ---------------------------------------------------------------------------------------------
# shift(w (B, N), s (B, 2r+1)) -> (B, N)
# ---------------------------------------------------------------------------------------------


def _shift_ref(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    n, r = w.shape[1], s.shape[1] // 2
    out = torch.zeros(w.shape, dtype=torch.float64)
    for b in range(w.shape[0]):
        for i in range(n):
            for k in range(-r, r + 1):
                out[b, i] += w[b, (i - k) % n] * s[b, k + r]
    return out


def _shift(fn: Callable[..., torch.Tensor]) -> str:
    cases = [
        ("a step forward", torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0]])),
        ("a step forward from the last slot", torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0]]),
         torch.tensor([[0.0, 0.0, 1.0]])),
        ("a blur", torch.tensor([[0.1, 0.6, 0.3, 0.0, 0.0, 0.0]]), torch.tensor([[0.2, 0.5, 0.3]])),
        ("two-slot offsets", torch.tensor([[0.7, 0.0, 0.0, 0.1, 0.2, 0.0, 0.0]]),
         torch.tensor([[0.1, 0.0, 0.2, 0.3, 0.4]])),
    ]
    for name, w, s in cases:
        got = answer_tensor(fn(w.clone(), s.clone()), f"{tuple(w.shape)} shifted weighting", tuple(w.shape)).detach()
        want = _shift_ref(w, s)
        if close(got, want):
            continue
        if close(got, _shift_ref(w, s.flip(-1))):
            raise CheckFailed(f"in the case '{name}' your weighting moves the wrong way: s[r + k] is the weight of "
                              "moving by +k slots, so w~[i] = sum_k s[r + k] * w[i - k] "
                              "(torch.roll(w, k) moves forward)")
        no_wrap = torch.zeros_like(want)
        r = s.shape[1] // 2
        for k in range(-r, r + 1):
            rolled = torch.zeros_like(w.double())
            if k >= 0:
                rolled[:, k:] = w[:, : w.shape[1] - k]
            else:
                rolled[:, :k] = w[:, -k:]
            no_wrap += s[:, k + r : k + r + 1] * rolled
        if close(got, no_wrap):
            raise CheckFailed(f"in the case '{name}' weight falls off the end of the memory: the shift is *circular*, "
                              "slot N-1 moved by +1 lands on slot 0 (indices modulo N, or torch.roll)")
        raise CheckFailed(f"for w={w[0].tolist()} and s={s[0].tolist()} ({name}) the result is "
                          f"{[round(v, 4) for v in want[0].tolist()]}; you returned "
                          f"{[round(v, 4) for v in got[0].tolist()]}")
    return "the shift is a circular convolution of the weighting with the offset distribution."


def check_shift(fn: Callable[..., torch.Tensor], strict: bool = False) -> None:
    """Lesson 05: ``fn(w (B, N), s (B, 2r+1)) -> (B, N)`` (offsets ``-r..r``)."""
    return report(_shift, fn, strict)


# ---------------------------------------------------------------------------------------------
# MANN write weights: lru_write(usage (N,), prev_read (N,), g) -> (N,)
# ---------------------------------------------------------------------------------------------


def _lru_ref(usage: torch.Tensor, prev_read: torch.Tensor, g: float) -> torch.Tensor:
    lu = torch.zeros(len(usage), dtype=torch.float64)
    lu[int(torch.argmin(usage))] = 1.0
    return g * prev_read.double() + (1 - g) * lu


def _lru(fn: Callable[..., torch.Tensor]) -> str:
    cases = [
        (torch.tensor([0.9, 0.2, 1.4, 0.6]), torch.tensor([0.0, 0.0, 0.0, 1.0]), 0.25),
        (torch.tensor([0.9, 0.2, 1.4, 0.6]), torch.tensor([0.1, 0.0, 0.8, 0.1]), 0.3),
        (torch.tensor([2.0, 1.1, 0.4, 3.0, 0.7]), torch.tensor([0.0, 0.9, 0.0, 0.1, 0.0]), 0.8),
    ]
    for usage, read, g in cases:
        got = fn(usage.clone(), read.clone(), g)
        got = answer_tensor(got, f"({len(usage)},) write weighting", (len(usage),)).detach()
        want = _lru_ref(usage, read, g)
        if close(got, want):
            continue
        most = torch.zeros(len(usage), dtype=torch.float64)
        most[int(torch.argmax(usage))] = 1.0
        if close(got, g * read.double() + (1 - g) * most):
            raise CheckFailed("you write to the *most* used slot; LRU writes to the least used one (argmin of usage), "
                              "where nothing valuable is stored")
        if close(got, (1 - g) * read.double() + g * _lru_ref(usage, read, 0.0)):
            raise CheckFailed("the gate is on the wrong term: "
                              "w^w = g * (previous read weights) + (1 - g) * (least used)")
        lu_from_read = torch.zeros(len(usage), dtype=torch.float64)
        lu_from_read[int(torch.argmin(read))] = 1.0
        if close(got, g * read.double() + (1 - g) * lu_from_read):
            raise CheckFailed("the least-used slot comes from the usage weights, not from the previous read weights")
        if close(got, _lru_ref(usage, read, 0.0)) and g > 0:
            raise CheckFailed(f"with g = {g} part of the write goes to the slot(s) read at the previous step: "
                              "interpolate g * prev_read + (1 - g) * least_used")
        raise CheckFailed(f"for usage={usage.tolist()}, prev_read={read.tolist()} and g={g} the write weighting is "
                          f"{[round(v, 3) for v in want.tolist()]}; you returned {[round(v, 3) for v in got.tolist()]}")
    return "the MANN writes to the least-used slot, or (by its gate) back to where it just read."


def check_lru_write(fn: Callable[..., torch.Tensor], strict: bool = False) -> None:
    """Lesson 05: ``fn(usage (N,), prev_read (N,), g: float) -> (N,)`` write weighting of one head."""
    return report(_lru, fn, strict)


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
