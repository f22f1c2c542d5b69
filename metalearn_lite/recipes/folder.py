"""Training on the reader's own image folder (``--data DIR``): a seeded split of its classes, episodes from
the training classes, few-shot validation on the held-out ones."""

from __future__ import annotations

import math

import torch

from ..datasets.image_folder import image_folder
from ..episodes import EpisodeSampler
from .omniglot import FewShotValidation, augment_episode, no_alphabets
from .settings import TaskSettings


def split_classes(y: torch.Tensor, share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded split of the class ids in ``y`` ``(N,)``: ``(train_classes, val_classes)``, ``share`` of them
    (rounded up, at least one) held out."""
    classes = torch.unique(y)
    order = classes[torch.randperm(len(classes), generator=torch.Generator().manual_seed(seed))]
    n_val = max(1, math.ceil(share * len(classes)))
    return order[n_val:].sort().values, order[:n_val].sort().values


class FolderEpisodes(FewShotValidation):
    """Episodes from an image folder's training classes; validation on its held-out classes.

    ``class_names`` lists the folder's classes; ``train_classes`` / ``val_classes`` their ids in each part.
    """

    def __init__(self, settings: TaskSettings, device: torch.device, val_episodes: int = 200,
                 queries: int | None = None) -> None:
        if settings.data is None:
            raise ValueError("FolderEpisodes needs settings.data: the path of an image folder")
        no_alphabets(settings, "an image folder's classes")
        if settings.rotations or settings.mirrors:
            raise ValueError("rotations and mirrors add Omniglot classes; an image folder trains on its own classes "
                             "(leave them off: --no-rotations)")
        x, y, self.class_names = image_folder(settings.data, size=settings.image_size, grayscale=settings.grayscale)
        self.train_classes, self.val_classes = split_classes(y, settings.val_classes, settings.seed)
        n_train, n_val = len(self.train_classes), len(self.val_classes)
        if n_train < settings.ways or n_val < settings.val_ways:
            raise ValueError(
                f"{settings.data} has {n_train + n_val} classes, split into {n_train} for training and {n_val} for "
                f"validation (val_classes={settings.val_classes}); {settings.ways}-way training and "
                f"{settings.val_ways}-way validation need at least {settings.ways} and {settings.val_ways}: "
                "add classes, lower --ways / val_ways, or change --val-classes"
            )
        train = torch.isin(y, self.train_classes)
        val = ~train
        # up to 15 queries per class, as on Omniglot, but no more than the smallest held-out class has
        smallest = int(torch.bincount(y[val], minlength=len(self.class_names))[self.val_classes].min())
        if smallest <= settings.val_shots:
            raise ValueError(f"the held-out classes of {settings.data} have as few as {smallest} images; "
                             f"{settings.val_shots}-shot validation needs at least {settings.val_shots + 1} per class")
        super().__init__((x[val].to(device), y[val].to(device)), settings, val_episodes,
                         queries=min(15, smallest - settings.val_shots))
        self.queries = settings.queries if queries is None else queries
        self.sampler = EpisodeSampler(x[train].to(device), y[train], ways=settings.ways, shots=settings.shots,
                                      queries=self.queries, seed=settings.seed)
        self.channels = x.shape[1]
        self.augment_generator = torch.Generator().manual_seed(settings.seed + 1)

    def generators(self) -> dict[str, torch.Generator]:
        return {"sampler": self.sampler.generator, "augment": self.augment_generator}

    def sample(self, tasks: int = 1):
        ep = self.sampler.sample(tasks)
        return augment_episode(ep, self.augment_generator) if self.settings.augment else ep
