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

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ..augment import random_affine
from ..episodes import EpisodeSampler
from ..task_sources import TaskSource, alphabet_groups, config_split

if TYPE_CHECKING:
    from ..training import TrainConfig


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


class OmniglotSequences(TaskSource):
    """Training meta-batches of ``config.tasks`` episodes of ``config.ways`` x ``config.shots`` drawings.

    ``encode`` (a frozen encoder's :meth:`~metalearn_lite.algorithms.mann.SequenceClassifier.encode_drawings`)
    turns every drawing into its features once, and episodes are drawn from the features.  With
    ``config.augment`` it then encodes :attr:`ENCODED_COPIES` versions of every drawing (the drawing
    itself and random affine distortions of it) and each episode shows one of them, drawn at random.

    Data: the meta-train alphabets at ``config.image_size`` pixels (with rotations as extra classes
    when ``config.rotations``; a random affine distortion of every drawing when ``config.augment``).
    Validation: ``config.val_episodes`` fixed episodes of the meta-val alphabet, scored by the mean
    accuracy over presentations 2..shots (metrics: that mean and the 1st, 2nd, 5th, 10th).
    """

    #: versions of each drawing encoded ahead of training when a frozen encoder trains with ``--augment``
    ENCODED_COPIES = 8

    def __init__(self, config: TrainConfig, device: torch.device,
                 encode: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        cfg = self.config = config
        train = config_split(cfg, "train")
        images = train.images.to(device)
        self.augment_generator = torch.Generator().manual_seed(cfg.seed + 1)
        self.copies = 0  # encoded versions of each drawing (0: the drawings themselves are sampled)
        if encode is not None:
            self.copies = self.ENCODED_COPIES if cfg.augment else 1
            versions = [images] + [random_affine(images.flatten(0, 1), self.augment_generator).view_as(images)
                                   for _ in range(self.copies - 1)]
            images = torch.cat([encode(v) for v in versions], -1)  # (C, D, copies * F)
        self.episodes = SequenceEpisodes(images, cfg.ways, cfg.shots, seed=cfg.seed, **alphabet_groups(train, cfg))
        val = config_split(cfg, "val").images.to(device)
        if encode is not None:
            val = encode(val)
        self.val = SequenceEpisodes(val, cfg.ways, cfg.shots, seed=12345).sample(cfg.val_episodes)

    def generators(self) -> dict[str, torch.Generator]:
        return {**self.episodes.generators(), "augment": self.augment_generator}

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.episodes.sample(self.config.tasks)
        if self.copies > 1:  # one encoded version of every drawing shown
            x = x.unflatten(-1, (self.copies, -1))
            pick = torch.randint(self.copies, x.shape[:2], generator=self.augment_generator).to(x.device)
            x = x.gather(2, pick[..., None, None].expand(-1, -1, 1, x.shape[-1])).squeeze(2)
        elif self.config.augment:
            x = random_affine(x.flatten(0, 1), self.augment_generator).view_as(x)
        return x, y

    @torch.no_grad()
    def validate(self, method: torch.nn.Module) -> tuple[float, dict[str, float]]:
        method.eval()
        acc = method.presentation_accuracy(*self.val).nanmean(0)  # (shots,)
        score = float(acc[1:].mean())
        metrics = {"val_acc": score}
        metrics.update({f"val_acc{k}": float(acc[k - 1]) for k in (1, 2, 5, 10) if k <= len(acc)})
        return score, metrics
