"""Flat, class-labelled mini-batches for ordinary (non-episodic) pretraining.

Transfer learning pretrains a network on *all* the meta-train classes at once with cross-entropy.
The trainer still sees a :class:`~metalearn_lite.task_sources.TaskSource`: each ``sample()`` draws
``config.ways`` classes and ``config.shots`` drawings of each (a class-balanced batch of
``ways * shots`` images) and labels every image with its *global* class id in
``0 .. classes-1``, not with an episode label.  With ``config.rotations`` the rotated characters
are extra classes (156 x 4 = 624); with ``config.augment`` every image gets its own random affine
distortion.

Validation is few-shot, like every other method's: ``config.val_ways``-way ``config.val_shots``-shot
accuracy on the meta-val alphabet through :func:`~metalearn_lite.evaluate`, where the model
classifies by its cheap adaptation (nearest class mean of the frozen features).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .augment import random_affine
from .episodes import EpisodeSampler
from .evaluation import evaluate
from .task_sources import TaskSource, alphabet_groups, config_split

if TYPE_CHECKING:
    from .training import TrainConfig


@dataclass(frozen=True)
class ClassBatch:
    """``images`` ``(B, C, H, W)`` and their global class ids ``labels`` ``(B,)``."""

    images: torch.Tensor
    labels: torch.Tensor


class ClassBatches(TaskSource):
    """Class-balanced batches of ``ways * shots`` meta-train images with global labels.

    Args:
        config: the run's :class:`~metalearn_lite.training.TrainConfig` (``ways``, ``shots``,
            ``rotations``, ``augment``, ``by``, ``image_size``, ``seed``, ``val_*``).
        device: where batches go.
        classes: the size of the model's classification head; it must equal the number of
            training classes (a mismatch is a ``ValueError`` naming both).
    """

    def __init__(self, config: TrainConfig, device: torch.device, classes: int) -> None:
        cfg = self.config = config
        train = config_split(cfg, "train")
        self.num_classes = train.images.shape[0]
        if classes != self.num_classes:
            raise ValueError(
                f"the model's head has {classes} classes but the training split has {self.num_classes} "
                f"(rotations={cfg.rotations}, mirrors={cfg.mirrors}); build it with classes={self.num_classes} "
                f"(CLI: --classes {self.num_classes}) or change --rotations / --mirrors"
            )
        self.val_images = config_split(cfg, "val").images.to(device)
        self.sampler = EpisodeSampler(train.images.to(device), ways=cfg.ways, shots=cfg.shots, queries=0,
                                      seed=cfg.seed, **alphabet_groups(train, cfg))
        self.augment_generator = torch.Generator().manual_seed(cfg.seed + 1)

    def generators(self) -> dict[str, torch.Generator]:
        return {"sampler": self.sampler.generator, "augment": self.augment_generator}

    def sample(self) -> ClassBatch:
        ep = self.sampler.sample(1)
        x = ep.support_x[0]
        labels = ep.classes[0].to(x.device)[ep.support_y[0]]  # episode label -> global class id
        if self.config.augment:
            x = random_affine(x, self.augment_generator)
        return ClassBatch(x, labels)

    def validate(self, method: torch.nn.Module) -> tuple[float, dict[str, float]]:
        cfg = self.config
        result = evaluate(method, self.val_images, ways=cfg.val_ways, shots=cfg.val_shots, queries=15,
                          episodes=cfg.val_episodes, seed=12345)
        return result.mean, {"val_acc": result.mean}
