"""The copy task of Graves et al. (2014): read a sequence of random bit vectors, then write it back.

A sequence of ``L`` vectors of ``bits`` random bits is shown one vector per step, followed by a
delimiter (a 1 on an extra input channel) and ``L`` blank steps during which the target output is
the sequence again::

    inputs   (B, 2L + 1, bits + 1)     steps 0..L-1: the bits; step L: the delimiter; then zeros
    targets  (B, L, bits)              the bits, to be produced at steps L+1 .. 2L

All sequences of one batch share their length, so a batch is one stacked tensor (no padding).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..task_sources import TaskSource, no_alphabets

if TYPE_CHECKING:
    from ..training import TrainConfig


def copy_batch(batch: int, length: int, bits: int = 8, generator: torch.Generator | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` copy-task sequences of ``length`` random ``bits``-bit vectors (module docstring).

    Returns ``(inputs (B, 2L+1, bits+1), targets (B, L, bits))`` on the CPU, float32.
    """
    for name, v in (("batch", batch), ("length", length), ("bits", bits)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int; got {v!r}")
    seq = torch.randint(0, 2, (batch, length, bits), generator=generator).float()
    inputs = torch.zeros(batch, 2 * length + 1, bits + 1)
    inputs[:, :length, :bits] = seq
    inputs[:, length, bits] = 1.0
    return inputs, seq


class CopyTasks(TaskSource):
    """Training batches of ``config.tasks`` sequences, one length per batch drawn from ``1..max_length``.

    Validation: mean wrong bits per sequence on ``config.val_episodes`` fixed sequences of length
    ``max_length``; the score is its negative (higher is better).
    """

    def __init__(self, config: TrainConfig, device: torch.device, bits: int = 8) -> None:
        if config.max_length < 1:
            raise ValueError(f"max_length must be >= 1; got {config.max_length}")
        no_alphabets(config, "copy-task sequences")
        self.config, self.device, self.bits = config, device, bits
        self.generator = torch.Generator().manual_seed(config.seed)
        val_gen = torch.Generator().manual_seed(12345)
        self.val = [t.to(device) for t in copy_batch(config.val_episodes, config.max_length, bits, val_gen)]

    def generators(self) -> dict[str, torch.Generator]:
        return {"copy": self.generator}

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.generator
        length = int(torch.randint(1, self.config.max_length + 1, (1,), generator=g))
        inputs, targets = copy_batch(self.config.tasks, length, self.bits, g)
        return inputs.to(self.device), targets.to(self.device)

    @torch.no_grad()
    def validate(self, method: torch.nn.Module) -> tuple[float, dict[str, float]]:
        from ..algorithms.ntm import bit_errors

        method.eval()
        logits, _ = method(self.val[0])
        bits = float(bit_errors(logits, self.val[1]).mean())
        return -bits, {"val_bits": bits}
