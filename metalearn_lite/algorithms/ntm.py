"""Neural Turing Machine (Graves, Wayne & Danihelka, 2014).

A controller network (an LSTM or a feed-forward layer) reads from and writes to an ``N x M`` memory
matrix through *heads*.  Each head emits, at every step, the parameters of an addressing pipeline
that turns the previous weighting ``w_{t-1}`` over the ``N`` slots into a new one:

1. content:      ``w^c_i = softmax_i( beta * cos(k, M_i) )``            (key ``k``, strength ``beta >= 0``)
2. interpolate:  ``w^g = g * w^c + (1 - g) * w_{t-1}``                 (gate ``g`` in ``[0, 1]``)
3. shift:        ``w~_i = sum_j w^g_j * s_{(i - j) mod N}``              (circular convolution with
                 a distribution ``s`` over the offsets ``-r .. r``)
4. sharpen:      ``w_i = w~_i^gamma / sum_j w~_j^gamma``                  (``gamma >= 1``)

A read head returns ``r = sum_i w_i M_i``.  A write head with erase vector ``e`` (in ``[0, 1]^M``) and
add vector ``a`` changes every slot as ``M_i <- M_i * (1 - w_i e) + w_i a``.

Every function below is batched over a leading dimension ``B`` and follows the device of its inputs.
:class:`NTM` is the whole machine on a sequence; :class:`NTMCopy` trains it on the copy task
(:mod:`metalearn_lite.datasets.copy_task`) through the package's one trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..datasets.copy_task import copy_batch
from ..distances import cosine_similarity
from ..validation import non_negative_int, positive_int
from .base import EpisodicMethod

EPS = 1e-8


def flush_denormals() -> None:
    """Flush denormal floats (below ~1e-38 in float32) to zero, on CPUs that support it.

    Softmax and sharpened weightings produce values like ``0.01 ** 20``; on a CPU each operation on
    such a *denormal* number can cost up to ~100 times a normal one.  Treating them as zero changes no
    result that matters.  The setting is process-wide (``torch.set_flush_denormal``), so the models
    never call this themselves: the command line calls it for its own training and evaluation
    processes, and you may call it in yours.
    """
    torch.set_flush_denormal(True)


# ---------------------------------------------------------------------------------------------
# Addressing: four small pure functions
# ---------------------------------------------------------------------------------------------


def content_weighting(key: torch.Tensor, memory: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Content addressing ``w^c_i = exp(beta cos(k, M_i)) / sum_j exp(beta cos(k, M_j))``.

    Args:
        key: ``(B, M)``.
        memory: ``(B, N, M)``.
        beta: key strength ``(B, 1)`` (or ``(B,)``), ``>= 0``: 0 gives the uniform weighting, a large
            value puts all the weight on the most similar slot.

    Returns ``(B, N)``, each row summing to 1.
    """
    return torch.softmax(beta.reshape(-1, 1) * cosine_similarity(key.unsqueeze(1), memory, EPS).squeeze(1), dim=-1)


def interpolate(w_content: torch.Tensor, w_prev: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """``w^g = g w^c + (1 - g) w_{t-1}``: ``(B, N)``, ``(B, N)``, gate ``(B, 1)`` in ``[0, 1]`` -> ``(B, N)``.

    ``g = 1`` addresses by content alone; ``g = 0`` ignores the content and keeps the previous
    weighting (to be moved by the shift: location-based addressing).
    """
    g = gate.reshape(-1, 1)
    return g * w_content + (1 - g) * w_prev


def shift(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Circular convolution ``w~_i = sum_j w_j s_{(i - j) mod N}``.

    Args:
        w: ``(B, N)``.
        s: ``(B, 2r + 1)``, a distribution over the offsets ``-r, ..., 0, ..., r`` (entry ``r + k``
            is the weight of moving by ``+k`` slots; index ``N - 1`` wraps around to ``0``).

    Returns ``(B, N)``.  ``ValueError`` if ``2r + 1 > N`` (the offsets would overlap).
    """
    n, width = w.shape[-1], s.shape[-1]
    if width % 2 != 1:
        raise ValueError(f"the shift distribution needs an odd length 2r+1 (offsets -r..r); got {width}")
    r = width // 2
    if width > n:
        raise ValueError(
            f"a memory of {n} slots is too small for shifts of -{r}..{r} ({width} offsets): "
            f"use at least {width} memory slots or a smaller shift range"
        )
    # torch.roll(w, k)[i] = w[i - k]: moving the weighting forward by k slots
    rolled = torch.stack([torch.roll(w, k, dims=-1) for k in range(-r, r + 1)], dim=-1)  # (B, N, 2r+1)
    return (rolled * s.unsqueeze(-2)).sum(-1)


def sharpen(w: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``w_i = w~_i^gamma / sum_j w~_j^gamma``: ``(B, N)``, ``gamma`` ``(B, 1)`` ``>= 1`` -> ``(B, N)``.

    Undoes the blur of a fractional shift.  Zero weights are floored at 1e-12 so the gradient with
    respect to ``gamma`` (which involves ``log w``) stays finite.
    """
    p = w.clamp_min(1e-12) ** gamma.reshape(-1, 1)
    return p / p.sum(-1, keepdim=True)


def address(
    memory: torch.Tensor,
    w_prev: torch.Tensor,
    key: torch.Tensor,
    beta: torch.Tensor,
    gate: torch.Tensor,
    s: torch.Tensor,
    gamma: torch.Tensor,
) -> torch.Tensor:
    """The four steps in order (module docstring); shapes as in each step.  Returns ``(B, N)``."""
    w = content_weighting(key, memory, beta)
    w = interpolate(w, w_prev, gate)
    w = shift(w, s)
    return sharpen(w, gamma)


def read(memory: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``r = sum_i w_i M_i``: memory ``(B, N, M)``, weighting ``(B, N)`` -> ``(B, M)``."""
    return (w.unsqueeze(1) @ memory).squeeze(1)


def write(memory: torch.Tensor, w: torch.Tensor, erase: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """``M_i <- M_i * (1 - w_i e) + w_i a``: memory ``(B, N, M)``, ``w`` ``(B, N)``, ``e``, ``a`` ``(B, M)``."""
    w = w.unsqueeze(-1)
    return memory * (1 - w * erase.unsqueeze(1)) + w * add.unsqueeze(1)


# ---------------------------------------------------------------------------------------------
# Heads, the cell and the machine
# ---------------------------------------------------------------------------------------------


class Head(nn.Module):
    """Maps the controller output to one head's addressing parameters (and, to write, ``e`` and ``a``).

    ``key`` is ``tanh``-bounded (memory contents are), ``beta = softplus``, ``g = sigmoid``,
    ``s = softmax`` over the ``2r + 1`` offsets and ``gamma = 1 + softplus``.
    """

    def __init__(self, controller_size: int, memory_width: int, shift_range: int, writes: bool) -> None:
        super().__init__()
        self.m, self.shifts, self.writes = memory_width, 2 * shift_range + 1, writes
        sizes = [memory_width, 1, 1, self.shifts, 1] + ([memory_width, memory_width] if writes else [])
        self.sizes = sizes
        self.fc = nn.Linear(controller_size, sum(sizes))

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(self.fc(h), self.sizes, dim=-1)
        out = {
            "key": torch.tanh(parts[0]),
            "beta": F.softplus(parts[1]),
            "gate": torch.sigmoid(parts[2]),
            "s": torch.softmax(parts[3], dim=-1),
            "gamma": 1 + F.softplus(parts[4]),
        }
        if self.writes:
            out["erase"] = torch.sigmoid(parts[5])
            out["add"] = torch.tanh(parts[6])
        return out


@dataclass
class NTMState:
    """What the machine carries from one step to the next (``B`` sequences)."""

    memory: torch.Tensor  # (B, N, M)
    reads: torch.Tensor  # (B, R, M): last read vectors
    read_w: torch.Tensor  # (B, R, N)
    write_w: torch.Tensor  # (B, W, N)
    controller: tuple[torch.Tensor, torch.Tensor] | None  # LSTM (h, c), each (B, H); None for feed-forward


class NTM(nn.Module):
    """A Neural Turing Machine on sequences ``(B, T, input_size) -> (B, T, output_size)`` (logits).

    Args:
        input_size: width of each input vector.
        output_size: width of each output (raw scores: apply a sigmoid for bits).
        controller_size: LSTM (or feed-forward) units.
        memory_size: ``N``, the number of memory slots.
        memory_width: ``M``, the width of each slot.
        read_heads, write_heads: number of heads of each kind.
        shift_range: ``r``: heads may move by ``-r .. r`` slots per step.
        controller: ``"lstm"`` or ``"feedforward"``.

    Each step: the controller sees the input and the previous reads; the write heads address and
    change the memory; the read heads address the changed memory; the output is a linear function of
    the controller output and the new reads.  The memory starts at a small constant (1e-6, every
    slot alike, so the first content weightings are uniform), the weightings start on slot 0 and the
    first reads are learned vectors.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        controller_size: int = 100,
        memory_size: int = 128,
        memory_width: int = 20,
        read_heads: int = 1,
        write_heads: int = 1,
        shift_range: int = 1,
        controller: str = "lstm",
    ) -> None:
        super().__init__()
        for name, v in (("input_size", input_size), ("output_size", output_size), ("controller_size",
                        controller_size), ("memory_size", memory_size), ("memory_width", memory_width),
                        ("read_heads", read_heads), ("write_heads", write_heads)):
            positive_int(name, v)
        non_negative_int("shift_range", shift_range)
        if 2 * shift_range + 1 > memory_size:
            raise ValueError(
                f"memory_size={memory_size} is too small for shift_range={shift_range}: a head's shifts "
                f"-{shift_range}..{shift_range} need at least {2 * shift_range + 1} slots; enlarge the memory "
                "or lower shift_range"
            )
        if controller not in ("lstm", "feedforward"):
            raise ValueError(f"controller must be 'lstm' or 'feedforward'; got {controller!r}")
        self.input_size, self.output_size = input_size, output_size
        self.n, self.m, self.kind = memory_size, memory_width, controller
        self.num_reads, self.num_writes = read_heads, write_heads
        ctrl_in = input_size + read_heads * memory_width
        if controller == "lstm":
            self.controller = nn.LSTMCell(ctrl_in, controller_size)
        else:
            self.controller = nn.Sequential(nn.Linear(ctrl_in, controller_size), nn.ReLU())
        self.read_heads = nn.ModuleList(Head(controller_size, memory_width, shift_range, False)
                                        for _ in range(read_heads))
        self.write_heads = nn.ModuleList(Head(controller_size, memory_width, shift_range, True)
                                         for _ in range(write_heads))
        self.out = nn.Linear(controller_size + read_heads * memory_width, output_size)
        self.read0 = nn.Parameter(torch.randn(read_heads, memory_width) * 0.01)
        self.controller_size = controller_size

    def initial_state(self, batch: int) -> NTMState:
        """The state before the first step, on the model's device."""
        p = self.read0
        w0 = torch.zeros(self.n, device=p.device, dtype=p.dtype)
        w0[0] = 1.0
        ctrl = None
        if self.kind == "lstm":
            z = p.new_zeros(batch, self.controller_size)
            ctrl = (z, z)
        return NTMState(
            memory=p.new_full((batch, self.n, self.m), 1e-6),
            reads=p.unsqueeze(0).expand(batch, -1, -1),
            read_w=w0.expand(batch, self.num_reads, -1),
            write_w=w0.expand(batch, self.num_writes, -1),
            controller=ctrl,
        )

    def step(self, x: torch.Tensor, state: NTMState) -> tuple[torch.Tensor, NTMState]:
        """One time step: ``x`` ``(B, input_size)`` -> output ``(B, output_size)`` and the new state."""
        inp = torch.cat([x, state.reads.flatten(1)], dim=-1)
        if self.kind == "lstm":
            h, c = self.controller(inp, state.controller)
            ctrl = (h, c)
        else:
            h, ctrl = self.controller(inp), None
        memory, write_ws = state.memory, []
        for i, head in enumerate(self.write_heads):
            p = head(h)
            w = address(memory, state.write_w[:, i], p["key"], p["beta"], p["gate"], p["s"], p["gamma"])
            memory = write(memory, w, p["erase"], p["add"])
            write_ws.append(w)
        reads, read_ws = [], []
        for i, head in enumerate(self.read_heads):
            p = head(h)
            w = address(memory, state.read_w[:, i], p["key"], p["beta"], p["gate"], p["s"], p["gamma"])
            reads.append(read(memory, w))
            read_ws.append(w)
        reads_t = torch.stack(reads, 1)
        y = self.out(torch.cat([h, reads_t.flatten(1)], dim=-1))
        return y, NTMState(memory, reads_t, torch.stack(read_ws, 1), torch.stack(write_ws, 1), ctrl)

    def forward(
        self, x: torch.Tensor, state: NTMState | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run a batch of sequences.

        Args:
            x: ``(B, T, input_size)``.
            state: where to start (default :meth:`initial_state`).

        Returns:
            ``outputs`` ``(B, T, output_size)`` and a dict with the per-step weightings
            ``"read"`` ``(B, T, read_heads, N)`` and ``"write"`` ``(B, T, write_heads, N)``, the final
            ``"memory"`` ``(B, N, M)`` and ``"state"`` (an :class:`NTMState`).
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.input_size:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"NTM input must be (batch, time, {self.input_size}); got {shape}. "
                "A single sequence needs a batch dimension: x.unsqueeze(0)"
            )
        state = state or self.initial_state(x.shape[0])
        outputs, reads, writes = [], [], []
        for t in range(x.shape[1]):
            y, state = self.step(x[:, t], state)
            outputs.append(y)
            reads.append(state.read_w)
            writes.append(state.write_w)
        return torch.stack(outputs, 1), {
            "read": torch.stack(reads, 1),
            "write": torch.stack(writes, 1),
            "memory": state.memory,
            "state": state,
        }


# ---------------------------------------------------------------------------------------------
# The copy task, trained by the package's trainer
# ---------------------------------------------------------------------------------------------


class NTMCopy(EpisodicMethod):
    """An NTM trained to copy sequences of random bit vectors (Graves et al. 2014, section 4.1).

    The input is the sequence, then a delimiter flag on its own channel, then blanks while the
    model writes the sequence back (:func:`~metalearn_lite.datasets.copy_task.copy_batch`).  The loss
    is the binary cross-entropy of the output phase; the metric is the number of wrong bits per
    sequence (outputs thresholded at 0.5).

    Args:
        bits: width of each vector (8 in the paper).
        hidden: controller units (``controller_size`` of :class:`NTM`).
        memory_size, memory_width, shift_range, controller: see :class:`NTM`
            (one read and one write head, as in the paper's copy experiments).
    """

    name = "ntm_copy"

    def __init__(
        self,
        bits: int = 8,
        hidden: int = 100,
        memory_size: int = 128,
        memory_width: int = 20,
        shift_range: int = 1,
        controller: str = "lstm",
    ) -> None:
        super().__init__(bits=bits, hidden=hidden, memory_size=memory_size,
                         memory_width=memory_width, shift_range=shift_range, controller=controller)
        self.bits = bits
        self.ntm = NTM(bits + 1, bits, hidden, memory_size, memory_width, 1, 1, shift_range, controller)

    def check_length(self, length: int) -> None:
        """``ValueError`` unless a sequence of ``length`` vectors fits in the memory (one slot each)."""
        if length > self.ntm.n:
            raise ValueError(
                f"a sequence of {length} vectors is longer than this NTM was built for: its memory holds "
                f"{self.ntm.n} slots, one per vector; copy at most {self.ntm.n} vectors, or build it with "
                f"memory_size >= {length}"
            )

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Copy-task inputs ``(B, 2L + 1, bits + 1)`` -> output logits ``(B, L, bits)`` and the weightings."""
        if inputs.dim() != 3 or inputs.shape[-1] != self.bits + 1:
            raise ValueError(
                f"copy-task inputs must be (batch, 2*length+1, {self.bits + 1}): {self.bits} bits plus the "
                f"delimiter channel; got {tuple(inputs.shape)}"
            )
        if inputs.shape[1] % 2 != 1:
            raise ValueError(f"copy-task inputs have 2*length+1 steps; got {inputs.shape[1]}")
        length = inputs.shape[1] // 2
        self.check_length(length)
        out, info = self.ntm(inputs)
        return out[:, length + 1 :], info

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = batch
        logits, _ = self(inputs)
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        return loss, bit_errors(logits, targets).mean()

    @torch.no_grad()
    def bit_error_by_length(self, lengths: list[int], sequences: int = 200, seed: int = 0) -> dict[int, torch.Tensor]:
        """Wrong bits of every one of ``sequences`` fresh random sequences, for each length."""
        was = self.training
        self.eval()
        g = torch.Generator().manual_seed(seed)
        device = next(self.parameters()).device
        out = {}
        try:
            for length in lengths:
                self.check_length(length)
                inputs, targets = copy_batch(sequences, length, self.bits, g)
                logits, _ = self(inputs.to(device))
                out[length] = bit_errors(logits, targets.to(device)).cpu()
        finally:
            self.train(was)
        return out

    def validation_score(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, dict[str, float]]:
        """Minus the mean wrong bits per sequence of a fixed copy-task batch ``(inputs, targets)``."""
        with torch.no_grad():
            logits, _ = self(batch[0])
            bits = float(bit_errors(logits, batch[1]).mean())
        return -bits, {"val_bits": bits}


def bit_errors(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Wrong bits per sequence: ``(B, L, bits)`` logits and 0/1 targets -> ``(B,)`` float counts."""
    return ((logits > 0).to(targets.dtype) != targets).flatten(1).sum(-1).to(torch.float32)
