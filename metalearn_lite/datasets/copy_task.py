"""The copy task of Graves et al. (2014): read a sequence of random bit vectors, then write it back.

A sequence of ``L`` vectors of ``bits`` random bits is shown one vector per step, followed by a
delimiter (a 1 on an extra input channel) and ``L`` blank steps during which the target output is
the sequence again::

    inputs   (B, 2L + 1, bits + 1)     steps 0..L-1: the bits; step L: the delimiter; then zeros
    targets  (B, L, bits)              the bits, to be produced at steps L+1 .. 2L

All sequences of one batch share their length, so a batch is one stacked tensor (no padding).
"""

from __future__ import annotations

import torch

from ..devices import resolve_device
from ..validation import positive_int


def copy_batch(batch: int, length: int, bits: int = 8, generator: torch.Generator | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` copy-task sequences of ``length`` random ``bits``-bit vectors (module docstring).

    Returns ``(inputs (B, 2L+1, bits+1), targets (B, L, bits))`` on the CPU, float32.
    """
    for name, v in (("batch", batch), ("length", length), ("bits", bits)):
        positive_int(name, v)
    seq = torch.randint(0, 2, (batch, length, bits), generator=generator).float()
    inputs = torch.zeros(batch, 2 * length + 1, bits + 1)
    inputs[:, :length, :bits] = seq
    inputs[:, length, bits] = 1.0
    return inputs, seq


class CopyTasks:
    """Seeded copy-task batches: ``sample(n)`` gives ``n`` sequences of one length drawn from ``1..max_length``.

    A task source for :func:`~metalearn_lite.train` (its ``generator`` is saved with a resumable run).
    """

    def __init__(self, max_length: int = 20, bits: int = 8, seed: int = 0,
                 device: str | torch.device | None = None) -> None:
        for name, v in (("max_length", max_length), ("bits", bits)):
            positive_int(name, v)
        self.max_length, self.bits, self.device = max_length, bits, resolve_device(device)
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, tasks: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs (T, 2L+1, bits+1), targets (T, L, bits))`` for one random length ``L``."""
        g = self.generator
        length = int(torch.randint(1, self.max_length + 1, (1,), generator=g))
        inputs, targets = copy_batch(tasks, length, self.bits, g)
        return inputs.to(self.device), targets.to(self.device)
