"""Where the trainer gets its training batches and how it validates.

The one trainer (:mod:`metalearn_lite.training`) does not know what a task is.  It asks the method
for a :class:`TaskSource` (``method.task_source(config, device)``) and then only calls

* ``sample()``: the next training meta-batch, passed as is to ``method.loss``;
* ``validate(method)``: ``(score, metrics)``, where a higher ``score`` is better (the trainer keeps
  the best weights by it) and ``metrics`` is what the history records, e.g. ``{"val_acc": 0.93}``;
* ``generators()``: the named random generators behind ``sample()``, saved in ``last.pt`` so a
  resumed run draws exactly the batches an uninterrupted one would have.

:class:`OmniglotEpisodes` is the default (N-way K-shot episodes from the meta-train alphabets,
validated by 5-way 1-shot accuracy on the meta-val alphabet).  Other families bring their own:
sinusoid regression tasks, copy-task sequences, MANN episode sequences, flat pretraining batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .augment import random_affine
from .datasets import omniglot_split
from .episodes import Episode, EpisodeSampler
from .evaluation import evaluate

if TYPE_CHECKING:
    from .datasets.omniglot import Omniglot
    from .training import TrainConfig


def config_split(config: TrainConfig, split: str) -> Omniglot:
    """The Omniglot split a training run uses: ``config``'s image size and kind of split, and for the
    meta-train split its extra classes (``rotations``, ``mirrors``)."""
    extra = {"rotations": config.rotations, "mirrors": config.mirrors} if split == "train" else {}
    return omniglot_split(split, size=config.image_size, by=config.by, seed=config.seed, **extra)


def alphabet_groups(train: Omniglot, config: TrainConfig) -> dict[str, Any]:
    """:class:`~metalearn_lite.episodes.EpisodeSampler` arguments for ``config.same_alphabet``: the alphabet
    (rotated or mirrored: its own) of each of ``train``'s characters, and the fraction of episodes drawn
    within one.  Empty when the fraction is 0, so that the episodes stay those of earlier runs."""
    if not config.same_alphabet:
        return {}
    if config.by != "alphabet":
        raise ValueError(f"same_alphabet={config.same_alphabet} draws episodes within one meta-train alphabet, "
                         f"which needs the split by alphabet; this run splits by {config.by!r} (use --by alphabet "
                         f"or --same-alphabet 0)")
    names = train.alphabet_versions
    ids = {a: i for i, a in enumerate(dict.fromkeys(names))}
    return {"groups": torch.tensor([ids[a] for a in names]), "same_group": config.same_alphabet}


def no_alphabets(config: TrainConfig, what: str) -> None:
    """Refuse ``config.same_alphabet`` in a task source without alphabets (``what`` names its tasks)."""
    if config.same_alphabet:
        raise ValueError(f"same_alphabet={config.same_alphabet} chooses Omniglot episodes within one alphabet, but "
                         f"this method trains on {what}, which have no alphabets; leave --same-alphabet at 0")


class TaskSource:
    """Base of the training-data sources (see the module docstring)."""

    def sample(self) -> Any:
        raise NotImplementedError

    def validate(self, method: torch.nn.Module) -> tuple[float, dict[str, float]]:
        raise NotImplementedError

    def generators(self) -> dict[str, torch.Generator]:
        raise NotImplementedError


class OmniglotEpisodes(TaskSource):
    """Meta-batches of ``config.tasks`` N-way K-shot episodes from the meta-train split.

    Validation: accuracy over ``config.val_episodes`` fixed ``val_ways``-way ``val_shots``-shot
    episodes (15 queries) of the meta-val split, through :func:`~metalearn_lite.evaluate`.
    """

    def __init__(self, config: TrainConfig, device: torch.device, queries: int | None = None) -> None:
        cfg = self.config = config
        self.queries = cfg.queries if queries is None else queries
        train = config_split(cfg, "train")
        self.val_images = config_split(cfg, "val").images.to(device)
        self.sampler = EpisodeSampler(train.images.to(device), ways=cfg.ways, shots=cfg.shots,
                                      queries=self.queries, seed=cfg.seed, **alphabet_groups(train, cfg))
        self.augment_generator = torch.Generator().manual_seed(cfg.seed + 1)

    def generators(self) -> dict[str, torch.Generator]:
        return {"sampler": self.sampler.generator, "augment": self.augment_generator}

    def sample(self) -> Episode:
        ep = self.sampler.sample(self.config.tasks)
        if not self.config.augment:
            return ep
        # one distortion per image: support and query drawings of a class are distorted independently
        g = self.augment_generator
        sx = random_affine(ep.support_x.flatten(0, 1), g).view_as(ep.support_x)
        qx = ep.query_x if self.queries == 0 else random_affine(ep.query_x.flatten(0, 1), g).view_as(ep.query_x)
        return Episode(sx, ep.support_y, qx, ep.query_y, ep.classes)

    def validate(self, method: torch.nn.Module) -> tuple[float, dict[str, float]]:
        cfg = self.config
        result = evaluate(method, self.val_images, ways=cfg.val_ways, shots=cfg.val_shots, queries=15,
                          episodes=cfg.val_episodes, seed=12345)
        return result.mean, {"val_acc": result.mean}
