"""The sinusoid regression task family of Finn et al. (2017).

Each task is ``y = A sin(x - phi)`` with amplitude ``A ~ U[0.1, 5]``, phase ``phi ~ U[0, pi]`` and
inputs ``x ~ U[-5, 5]``.  Tasks come as the same :class:`~metalearn_lite.episodes.Episode` the
classification sampler returns, with ``info`` holding each task's amplitude and phase.
"""

from __future__ import annotations

import math

import torch

from ..devices import resolve_device
from ..episodes import Episode
from ..validation import int_at_least


class SinusoidTasks:
    """Seeded sampler of sinusoid regression tasks.

    Args:
        amplitude, phase, x_range: ``(low, high)`` of the uniform distributions.
        seed: the same seed gives the same tasks.
        device: where episodes are returned (default CPU).

    ``sample(tasks, shots, queries)`` returns support ``(T, K, 1)`` and query ``(T, Q, 1)``
    inputs and targets.
    """

    def __init__(
        self,
        amplitude: tuple[float, float] = (0.1, 5.0),
        phase: tuple[float, float] = (0.0, math.pi),
        x_range: tuple[float, float] = (-5.0, 5.0),
        seed: int = 0,
        device: str | torch.device | None = None,
    ) -> None:
        for name, (lo, hi) in {"amplitude": amplitude, "phase": phase, "x_range": x_range}.items():
            if not lo <= hi:
                raise ValueError(f"{name} must be (low, high) with low <= high; got {(lo, hi)}")
        self.amplitude, self.phase, self.x_range = amplitude, phase, x_range
        self.device = resolve_device(device)
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, shape: tuple[int, ...], bounds: tuple[float, float]) -> torch.Tensor:
        lo, hi = bounds
        return lo + (hi - lo) * torch.rand(shape, generator=self.generator)

    def sample(self, tasks: int = 1, shots: int = 10, queries: int = 10) -> Episode:
        """``tasks`` tasks with ``shots`` support and ``queries`` query points each."""
        int_at_least("tasks", tasks, 1)
        int_at_least("shots", shots, 1)
        int_at_least("queries", queries, 0)
        amp = self._uniform((tasks, 1, 1), self.amplitude)
        phase = self._uniform((tasks, 1, 1), self.phase)
        x = self._uniform((tasks, shots + queries, 1), self.x_range)
        y = amp * torch.sin(x - phase)
        ep = Episode(
            x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:],
            info={"amplitude": amp.view(tasks), "phase": phase.view(tasks)},
        )
        return ep.to(self.device)

    @staticmethod
    def curve(info: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The true functions of the tasks in ``info`` at inputs ``x`` ``(T, P, 1)`` or ``(P, 1)``."""
        amp = info["amplitude"].view(-1, 1, 1).to(x.device)
        phase = info["phase"].view(-1, 1, 1).to(x.device)
        return amp * torch.sin(x - phase)
