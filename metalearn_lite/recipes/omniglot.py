"""The course's Omniglot task sources: what each recipe trains on and validates with.

Each source has ``sample(n)`` (the next training meta-batch), ``generators()`` (its random state, saved in
``last.pt``) and ``validate(method) -> (score, metrics)`` on the meta-val alphabet, so one object serves
:func:`~metalearn_lite.train` as ``tasks`` and ``val_tasks``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..augment import random_affine
from ..datasets import omniglot_split
from ..datasets.omniglot import Omniglot
from ..datasets.omniglot_sequences import SequenceEpisodes
from ..episodes import Episode, EpisodeSampler
from ..evaluation import evaluate
from .settings import TaskSettings

VAL_SEED = 12345


def config_split(settings: TaskSettings, split: str) -> Omniglot:
    """The Omniglot split a run uses: its image size and kind of split, and for the meta-train split its extra
    classes (``rotations``, ``mirrors``)."""
    extra = {"rotations": settings.rotations, "mirrors": settings.mirrors} if split == "train" else {}
    return omniglot_split(split, size=settings.image_size, by=settings.by, seed=settings.seed, **extra)


def alphabet_groups(train: Omniglot, settings: TaskSettings) -> dict[str, Any]:
    """:class:`~metalearn_lite.EpisodeSampler` arguments for ``same_alphabet``: the alphabet (rotated or
    mirrored: its own) of each of ``train``'s characters, and the fraction of episodes drawn within one.
    Empty when the fraction is 0, so that the episodes stay those of earlier runs."""
    if not settings.same_alphabet:
        return {}
    if settings.by != "alphabet":
        raise ValueError(f"same_alphabet={settings.same_alphabet} draws episodes within one meta-train alphabet, "
                         f"which needs the split by alphabet; this run splits by {settings.by!r} (use by=alphabet "
                         "or same_alphabet=0)")
    names = train.alphabet_versions
    ids = {a: i for i, a in enumerate(dict.fromkeys(names))}
    return {"groups": torch.tensor([ids[a] for a in names]), "same_group": settings.same_alphabet}


def no_alphabets(settings: TaskSettings, what: str) -> None:
    """Refuse ``same_alphabet`` in a task source without alphabets (``what`` names its tasks)."""
    if settings.same_alphabet:
        raise ValueError(f"same_alphabet={settings.same_alphabet} chooses Omniglot episodes within one alphabet, but "
                         f"this method trains on {what}, which have no alphabets; leave same_alphabet at 0")


def augment_episode(ep: Episode, generator: torch.Generator) -> Episode:
    """One random affine distortion per image: support and query drawings of a class distorted independently."""
    sx = random_affine(ep.support_x.flatten(0, 1), generator).view_as(ep.support_x)
    qx = ep.query_x if ep.query_x.shape[1] == 0 else random_affine(ep.query_x.flatten(0, 1), generator).view_as(
        ep.query_x)
    return Episode(sx, ep.support_y, qx, ep.query_y, ep.classes)


class FewShotValidation:
    """``val_ways``-way ``val_shots``-shot accuracy over ``episodes`` fixed episodes (``queries`` per class, 15 by
    default) of ``images`` ``(classes, per_class, ...)`` or ``(x, y)``, through :func:`~metalearn_lite.evaluate`."""

    def __init__(self, images: Any, settings: TaskSettings, episodes: int, queries: int = 15) -> None:
        self.images, self.settings, self.episodes, self.val_queries = images, settings, episodes, queries

    def validate(self, method: torch.nn.Module) -> tuple[float, dict[str, float]]:
        s = self.settings
        result = evaluate(method, self.images, ways=s.val_ways, shots=s.val_shots, queries=self.val_queries,
                          episodes=self.episodes, seed=VAL_SEED)
        return result.mean, {"val_acc": result.mean}


class OmniglotEpisodes(FewShotValidation):
    """N-way K-shot episodes of the meta-train split (``queries=0`` for pair and triplet batches), validated by
    few-shot accuracy on the meta-val alphabet."""

    def __init__(self, settings: TaskSettings, device: torch.device, val_episodes: int = 200,
                 queries: int | None = None) -> None:
        train = config_split(settings, "train")
        super().__init__(config_split(settings, "val").images.to(device), settings, val_episodes)
        self.queries = settings.queries if queries is None else queries
        self.sampler = EpisodeSampler(train.images.to(device), ways=settings.ways, shots=settings.shots,
                                      queries=self.queries, seed=settings.seed, **alphabet_groups(train, settings))
        self.augment_generator = torch.Generator().manual_seed(settings.seed + 1)

    def generators(self) -> dict[str, torch.Generator]:
        return {"sampler": self.sampler.generator, "augment": self.augment_generator}

    def sample(self, tasks: int = 1) -> Episode:
        ep = self.sampler.sample(tasks)
        return augment_episode(ep, self.augment_generator) if self.settings.augment else ep


@dataclass(frozen=True)
class ClassBatch:
    """``images`` ``(B, C, H, W)`` and their global class ids ``labels`` ``(B,)``."""

    images: torch.Tensor
    labels: torch.Tensor


class ClassBatches(FewShotValidation):
    """Class-balanced batches of ``ways * shots`` meta-train images labelled with their *global* class ids
    (ordinary pretraining over all classes); ``sample(n)`` draws one batch whatever ``n``.  With ``rotations``
    the rotated characters are extra classes (156 x 4 = 624).  Validation: few-shot accuracy on meta-val.

    Args:
        classes: the size of the model's head; it must equal the number of training classes.
    """

    def __init__(self, settings: TaskSettings, device: torch.device, classes: int, val_episodes: int = 200) -> None:
        train = config_split(settings, "train")
        self.num_classes = train.images.shape[0]
        if classes != self.num_classes:
            raise ValueError(
                f"the model's head has {classes} classes but the training split has {self.num_classes} "
                f"(rotations={settings.rotations}, mirrors={settings.mirrors}); build it with classes="
                f"{self.num_classes} or change rotations / mirrors"
            )
        super().__init__(config_split(settings, "val").images.to(device), settings, val_episodes)
        self.sampler = EpisodeSampler(train.images.to(device), ways=settings.ways, shots=settings.shots, queries=0,
                                      seed=settings.seed, **alphabet_groups(train, settings))
        self.augment_generator = torch.Generator().manual_seed(settings.seed + 1)

    def generators(self) -> dict[str, torch.Generator]:
        return {"sampler": self.sampler.generator, "augment": self.augment_generator}

    def sample(self, tasks: int = 1) -> ClassBatch:
        ep = self.sampler.sample(1)
        x = ep.support_x[0]
        labels = ep.classes[0].to(x.device)[ep.support_y[0]]  # episode label -> global class id
        if self.settings.augment:
            x = random_affine(x, self.augment_generator)
        return ClassBatch(x, labels)


class OmniglotSequences:
    """Meta-batches of one-shot sequences (Santoro et al.) of ``ways`` x ``shots`` meta-train drawings.

    ``encode`` (a frozen encoder's :meth:`~metalearn_lite.algorithms.mann.SequenceClassifier.encode_drawings`)
    turns every drawing into its features once, and episodes are drawn from the features.  With ``augment``
    it then encodes :attr:`ENCODED_COPIES` versions of every drawing (the drawing itself and random affine
    distortions of it) and each episode shows one of them, drawn at random.

    Validation: ``val_episodes`` fixed episodes of the meta-val alphabet, scored by the mean accuracy over
    presentations 2..shots (metrics: that mean and the 1st, 2nd, 5th, 10th).
    """

    #: versions of each drawing encoded ahead of training when a frozen encoder trains with ``augment``
    ENCODED_COPIES = 8

    def __init__(self, settings: TaskSettings, device: torch.device, val_episodes: int = 200,
                 encode: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.settings = s = settings
        train = config_split(s, "train")
        images = train.images.to(device)
        self.augment_generator = torch.Generator().manual_seed(s.seed + 1)
        self.copies = 0  # encoded versions of each drawing (0: the drawings themselves are sampled)
        if encode is not None:
            self.copies = self.ENCODED_COPIES if s.augment else 1
            versions = [images] + [random_affine(images.flatten(0, 1), self.augment_generator).view_as(images)
                                   for _ in range(self.copies - 1)]
            images = torch.cat([encode(v) for v in versions], -1)  # (C, D, copies * F)
        self.episodes = SequenceEpisodes(images, s.ways, s.shots, seed=s.seed, **alphabet_groups(train, s))
        val = config_split(s, "val").images.to(device)
        if encode is not None:
            val = encode(val)
        self.val = SequenceEpisodes(val, s.ways, s.shots, seed=VAL_SEED).sample(val_episodes)

    def generators(self) -> dict[str, torch.Generator]:
        return {**self.episodes.generators(), "augment": self.augment_generator}

    def sample(self, tasks: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.episodes.sample(tasks)
        if self.copies > 1:  # one encoded version of every drawing shown
            x = x.unflatten(-1, (self.copies, -1))
            pick = torch.randint(self.copies, x.shape[:2], generator=self.augment_generator).to(x.device)
            x = x.gather(2, pick[..., None, None].expand(-1, -1, 1, x.shape[-1])).squeeze(2)
        elif self.settings.augment:
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
