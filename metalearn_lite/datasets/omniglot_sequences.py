"""The one-shot sequence task of Santoro et al. (2016) on Omniglot.

An episode draws ``ways`` characters and ``shots`` drawings of each, gives the characters the labels
``0..ways-1`` in a random order (a new assignment every episode), and shows the ``ways * shots``
drawings in a random order.  At step ``t`` the model sees drawing ``x_t`` together with the *previous*
step's label ``y_{t-1}`` (one-hot; zeros at ``t = 0``) and must output ``y_t``.  The first drawing of a
class can only be guessed; from the second presentation on, the label was shown a few steps before::

    images  (T, L, 1, H, W)      L = ways * shots, in presentation order
    labels  (T, L)               0..ways-1
"""

from __future__ import annotations

import torch

from ..episodes import EpisodeSampler


def shuffle_episodes(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Put each of ``T`` class-major episodes ``(T, L, ...)``, ``(T, L)`` in its own random order."""
    t, length = labels.shape
    order = torch.rand(t, length, generator=generator).argsort(1).to(labels.device)
    return images[torch.arange(t, device=labels.device).unsqueeze(1), order], labels.gather(1, order)


class SequenceEpisodes:
    """Seeded episode sequences from grouped images ``(classes, drawings, 1, H, W)`` (module docstring)."""

    def __init__(self, images: torch.Tensor, ways: int = 5, shots: int = 10, seed: int = 0,
                 device: str | torch.device | None = None, groups: torch.Tensor | None = None,
                 same_group: float = 1.0) -> None:
        self.sampler = EpisodeSampler(images, ways=ways, shots=shots, queries=0, seed=seed, device=device,
                                      groups=groups, same_group=same_group)
        self.ways, self.shots = ways, shots
        self.order_generator = torch.Generator().manual_seed(seed + 7)

    def generators(self) -> dict[str, torch.Generator]:
        return {"sampler": self.sampler.generator, "order": self.order_generator}

    def sample(self, tasks: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``tasks`` episodes: images ``(T, L, 1, H, W)`` and labels ``(T, L)``."""
        ep = self.sampler.sample(tasks)  # classes come in a random order: labels are shuffled per episode
        return shuffle_episodes(ep.support_x, ep.support_y, self.order_generator)
