"""N-way K-shot Q-query episodes, sampled as stacked tensors.

An *episode* (or task) draws ``N`` classes, then ``K`` support and ``Q`` query examples of each.
Labels are relabelled ``0..N-1`` in the order the classes were drawn, so a model can never rely
on a class's global identity.  A meta-batch of ``T`` tasks is one set of stacked tensors::

    support_x  (T, N*K, ...)     support_y  (T, N*K)     class-major: K of class 0, K of class 1, ...
    query_x    (T, N*Q, ...)     query_y    (T, N*Q)

so algorithms can ``vmap`` over tasks or fold ``T`` into the batch dimension.  All index drawing
happens in a handful of vectorised tensor operations on a seeded CPU generator: the same seed gives
the same episodes on every device, and there is no per-image Python work.  For a ``torch.utils.data.Dataset``
(e.g. one too large to hold in memory), :meth:`EpisodeSampler.from_dataset` draws the same indices and loads
only the items drawn.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset

from .dataset_labels import read_labels
from .devices import resolve_device
from .validation import int_at_least, probability


@dataclass(frozen=True)
class Episode:
    """A meta-batch of ``T`` tasks (see the module docstring for shapes).

    ``classes`` ``(T, N)`` holds the original class ids behind labels ``0..N-1``; for regression
    tasks ``info`` carries the task parameters (for the sinusoid: ``amplitude`` and ``phase``).
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    classes: torch.Tensor | None = None
    info: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def num_tasks(self) -> int:
        return self.support_x.shape[0]

    def task(self, i: int) -> Episode:
        """Task ``i`` alone, keeping a leading task dimension of 1."""
        sl = slice(i, i + 1)
        return Episode(
            self.support_x[sl],
            self.support_y[sl],
            self.query_x[sl],
            self.query_y[sl],
            None if self.classes is None else self.classes[sl],
            {k: v[sl] for k, v in self.info.items()},
        )

    def unbatched(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(support_x, support_y, query_x, query_y)`` of a single-task episode, without ``T``."""
        if self.num_tasks != 1:
            raise ValueError(f"unbatched() needs a single task; this episode holds {self.num_tasks}: use task(i)")
        return self.support_x[0], self.support_y[0], self.query_x[0], self.query_y[0]

    def to(self, device: str | torch.device) -> Episode:
        move = {k: v.to(device) for k, v in self.info.items()}
        return replace(
            self,
            support_x=self.support_x.to(device),
            support_y=self.support_y.to(device),
            query_x=self.query_x.to(device),
            query_y=self.query_y.to(device),
            classes=None if self.classes is None else self.classes.to(device),
            info=move,
        )


def _class_table(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer labels ``(num_samples,)`` -> ``(table (C, max_count), counts (C,), class_ids (C,))``.

    Row ``c`` of ``table`` holds the indices of class ``class_ids[c]`` (sorted ids), padded after ``counts[c]``.
    """
    class_ids, inverse, counts = torch.unique(y.cpu(), return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    per = int(counts.max()) if len(counts) else 0
    starts = torch.cumsum(counts, 0) - counts
    col = torch.arange(len(order)) - starts[inverse[order]]
    table = torch.zeros(len(counts), per, dtype=torch.long)
    table[inverse[order], col] = order
    return table, counts, class_ids


class EpisodeSampler:
    """Seeded N-way K-shot Q-query sampler over a labelled tensor dataset.

    Args:
        x: ``(num_samples, ...)`` examples (any trailing shape), or ``(classes, per_class, ...)``
            when ``y`` is ``None``.
        y: ``(num_samples,)`` integer class labels, or ``None`` for the grouped form above.
        ways, shots, queries: ``N``, ``K`` and ``Q``.
        seed: seed of the sampler's own generator: the same seed gives the same episodes.
        device: where episodes are returned (default: the device of ``x``).
        groups: one group id per class (``(classes,)`` integers, in the order of ``x``'s classes or of
            the sorted labels ``y``), e.g. the alphabet of each character; with it, a fraction
            ``same_group`` of the episodes draw all their classes from one group (chosen with
            probability proportional to its classes), the others from all classes.  Groups with
            fewer than ``N`` drawable classes are never chosen.
        same_group: that fraction, in ``[0, 1]`` (only with ``groups``).

    Classes may have different numbers of examples; a class with fewer than ``K + Q`` is never
    drawn.  Example::

        sampler = EpisodeSampler(omniglot_split("test").images, ways=5, shots=1, queries=15)
        episode = sampler.sample(tasks=32)          # support_x: (32, 5, 1, 28, 28)
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        ways: int = 5,
        shots: int = 1,
        queries: int = 15,
        seed: int = 0,
        device: str | torch.device | None = None,
        groups: torch.Tensor | None = None,
        same_group: float = 1.0,
    ) -> None:
        self._set_sizes(ways, shots, queries)
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x must be a torch.Tensor; got {type(x).__name__}")
        if y is None:
            if x.dim() < 2:
                raise ValueError(
                    f"without labels, x must be grouped as (classes, per_class, ...); got shape {tuple(x.shape)}"
                )
            n_cls, per = x.shape[:2]
            self.data = x.reshape(n_cls * per, *x.shape[2:])
            table = torch.arange(n_cls * per).reshape(n_cls, per)
            counts = torch.full((n_cls,), per)
            class_ids = torch.arange(n_cls)
        else:
            y = torch.as_tensor(y)
            if y.dim() != 1 or y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"y must be 1-D with one label per example: x has {x.shape[0]} examples, "
                    f"y has shape {tuple(y.shape)}"
                )
            if y.dtype.is_floating_point or y.dtype == torch.bool:
                raise ValueError(f"y must hold integer class labels; got dtype {y.dtype}")
            self.data = x
            table, counts, class_ids = _class_table(y)
        self._set_classes(table, counts, class_ids, groups, same_group)
        self.device = resolve_device(device, self.data)
        self.generator = torch.Generator().manual_seed(seed)

    @classmethod
    def from_dataset(
        cls,
        dataset: Dataset,
        ways: int = 5,
        shots: int = 1,
        queries: int = 15,
        seed: int = 0,
        labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
        device: str | torch.device | None = None,
    ) -> DatasetEpisodeSampler:
        """A sampler over a map-style ``Dataset`` of ``(x, label)`` items that loads only the items it draws.

        Classes are read from ``labels`` (one integer class id per item) if given, else from where the data set
        holds them without loading an item (``dataset.targets`` as in torchvision's ``ImageFolder``,
        ``dataset.labels``, a ``TensorDataset``'s last tensor, a ``Subset`` or ``ConcatDataset`` of those), else
        from every item once, with a progress bar (:mod:`metalearn_lite.dataset_labels`).
        Each ``x`` must be a tensor or a numpy array
        of one shape (add a transform such as ``torchvision.transforms.ToTensor()`` to datasets of PIL
        images).  The same data and seed give exactly the episodes of ``EpisodeSampler(x_all, labels)``;
        episodes are returned on ``device`` (default: the CPU).  Example::

            to_tensor = T.Compose([T.Resize((84, 84)), T.ToTensor()])  # torchvision.transforms as T
            data = torchvision.datasets.ImageFolder("my_photos", transform=to_tensor)
            episode = EpisodeSampler.from_dataset(data, ways=5, shots=1).sample(4)  # support_x (4, 5, 3, 84, 84)
        """
        return DatasetEpisodeSampler(dataset, ways, shots, queries, seed, labels, device)

    def _set_sizes(self, ways: int, shots: int, queries: int) -> None:
        self.ways = int_at_least("ways", ways, 1)
        self.shots = int_at_least("shots", shots, 1)
        self.queries = int_at_least("queries", queries, 0)

    def _set_classes(
        self,
        table: torch.Tensor,
        counts: torch.Tensor,
        class_ids: torch.Tensor,
        groups: torch.Tensor | None,
        same_group: float,
    ) -> None:
        """Keep the classes with at least ``shots + queries`` examples (see :func:`_class_table`)."""
        self.class_ids = class_ids
        need = self.shots + self.queries
        eligible = counts >= need
        n_classes = len(counts)
        if self.ways > n_classes:
            raise ValueError(
                f"ways={self.ways} is larger than the {n_classes} classes available; "
                f"use ways <= {n_classes} or a dataset with more classes"
            )
        if int(eligible.sum()) < self.ways:
            # the largest K + Q that still leaves `ways` classes to draw from
            bound = int(counts.sort(descending=True).values[self.ways - 1])
            raise ValueError(
                f"shots + queries = {self.shots} + {self.queries} = {need} is more than the samples per class: "
                f"only {int(eligible.sum())} of {n_classes} classes have {need} examples, and {self.ways}-way "
                f"episodes need {self.ways} such classes; lower shots or queries so that shots + queries <= {bound}"
            )
        self._table = table[eligible]
        self._counts = counts[eligible]
        self._classes = class_ids[eligible]
        self._groups, self.same_group = None, 0.0
        if groups is not None:
            self._set_groups(groups, same_group, eligible)

    def _set_groups(self, groups: torch.Tensor, same_group: float, eligible: torch.Tensor) -> None:
        groups = torch.as_tensor(groups)
        if groups.dim() != 1 or len(groups) != len(eligible) or groups.dtype.is_floating_point:
            raise ValueError(f"groups must hold one integer group id per class ({len(eligible)} classes); got "
                             f"{groups.dtype} of shape {tuple(groups.shape)}")
        probability("same_group", same_group, "the fraction of episodes drawn within one group")
        _, groups = torch.unique(groups[eligible], return_inverse=True)  # ids 0..G-1 of the drawable classes
        sizes = torch.bincount(groups)
        if same_group > 0 and int(sizes.max()) < self.ways:
            raise ValueError(f"no group has {self.ways} classes to draw {self.ways}-way episodes from (the largest "
                             f"has {int(sizes.max())}); lower ways, or draw no episodes within one group")
        # a group is chosen in proportion to its classes, among the groups big enough for an episode
        self._group_weights = (sizes * (sizes >= self.ways)).double()
        self._groups, self.same_group = groups, float(same_group)

    @property
    def num_classes(self) -> int:
        """Classes with at least ``shots + queries`` examples."""
        return len(self._counts)

    def sample_indices(self, tasks: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``tasks`` episodes' indices into ``x``: ``((T, N, K+Q), classes (T, N))``."""
        int_at_least("tasks", tasks, 1)
        g = self.generator
        n, need = self.ways, self.shots + self.queries
        scores = torch.rand(tasks, self.num_classes, generator=g)
        if self._groups is not None and self.same_group > 0:
            within = torch.rand(tasks, generator=g) < self.same_group  # (T,) episodes drawn within one group
            group = torch.multinomial(self._group_weights, tasks, replacement=True, generator=g)  # (T,)
            # classes of other groups sort after all of the chosen group's (scores lie in [0, 1))
            scores = scores + 2.0 * (within.unsqueeze(1) & (self._groups != group.unsqueeze(1)))
        cls = scores.argsort(dim=1)[:, :n]
        counts = self._counts[cls]  # (T, N)
        keys = torch.rand(tasks, n, self._table.shape[1], generator=g)
        keys[torch.arange(self._table.shape[1]) >= counts.unsqueeze(-1)] = 2.0  # never pick padding
        pick = keys.argsort(dim=-1)[..., :need]  # (T, N, K+Q), distinct within a class
        return self._table[cls.unsqueeze(-1), pick], self._classes[cls]

    def _gather(self, idx: torch.Tensor) -> torch.Tensor:
        """The examples at ``idx``: ``(M,)`` CPU indices -> ``(M, ...)``.  Override to load them another way."""
        if self.data.device != torch.device("cpu"):
            idx = idx.to(self.data.device)
        return self.data[idx]

    def sample(self, tasks: int = 1) -> Episode:
        """A meta-batch of ``tasks`` episodes on ``self.device``."""
        idx, classes = self.sample_indices(tasks)
        t, n, k = tasks, self.ways, self.shots
        flat = self._gather(idx.reshape(-1))
        x = flat.reshape(t, n, k + self.queries, *flat.shape[1:])
        labels = torch.arange(n, device=x.device).view(1, n, 1)
        sy = labels.expand(t, n, k).reshape(t, n * k)
        qy = labels.expand(t, n, self.queries).reshape(t, n * self.queries)
        ep = Episode(
            x[:, :, :k].reshape(t, n * k, *x.shape[3:]),
            sy,
            x[:, :, k:].reshape(t, n * self.queries, *x.shape[3:]),
            qy,
            classes,
        )
        return ep if ep.support_x.device == self.device else ep.to(self.device)

    def __iter__(self) -> Iterator[Episode]:
        """Endless single-task episodes."""
        while True:
            yield self.sample(1)


class DatasetEpisodeSampler(EpisodeSampler):
    """:class:`EpisodeSampler` over a map-style ``Dataset``, made by :meth:`EpisodeSampler.from_dataset`.

    Draws indices exactly as the tensor sampler does, then calls ``dataset[i]`` once for each distinct
    sampled index, checking that the item's label is the one the classes were drawn from.
    """

    def __init__(
        self,
        dataset: Dataset,
        ways: int = 5,
        shots: int = 1,
        queries: int = 15,
        seed: int = 0,
        labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self._set_sizes(ways, shots, queries)
        self.dataset = dataset
        self.labels, self.label_source = _dataset_labels(dataset, labels)
        self._set_classes(*_class_table(self.labels), groups=None, same_group=0.0)
        self.device = resolve_device(device)
        self.generator = torch.Generator().manual_seed(seed)

    def _gather(self, idx: torch.Tensor) -> torch.Tensor:
        """Load ``dataset[i]`` for each distinct ``i`` of ``idx`` ``(M,)`` and stack: ``(M, ...)``."""
        unique, inverse = torch.unique(idx, return_inverse=True)
        positions = unique.tolist()
        items = [self._load(i) for i in positions]
        for i, x in zip(positions, items):
            if x.shape != items[0].shape:
                raise ValueError(
                    f"dataset[{positions[0]}] is {tuple(items[0].shape)} but dataset[{i}] is {tuple(x.shape)}: "
                    "episodes stack their examples, so every item must have the same shape; add a transform "
                    "that resizes them (e.g. torchvision.transforms.Resize((84, 84)) before ToTensor())"
                )
        stacked = torch.stack(items)
        return stacked[inverse.to(stacked.device)]

    def _load(self, i: int) -> torch.Tensor:
        """``dataset[i]``'s ``x`` as a tensor, after checking its label against ``self.labels[i]``."""
        item = self.dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(
                f"dataset[{i}] should be an (x, label) pair; got {type(item).__name__}"
                + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
                + ": wrap the dataset so that each item is (x, label)"
            )
        x, label = item
        found, expected = _as_label(label), int(self.labels[i])
        if found is None:
            raise ValueError(f"dataset[{i}] has label {label!r}, not an integer class id; remove any "
                             "target_transform, or wrap the dataset so that each item is (x, integer label)")
        if found != expected:
            raise ValueError(
                f"dataset[{i}] has label {found} but {self.label_source}[{i}] is {expected}: the classes are drawn "
                f"from {self.label_source}, so it must hold every item's own label; pass labels= the items' true "
                "labels (in item order)"
            )
        return _as_tensor(x, i)


def _dataset_labels(
    dataset: Dataset, labels: Sequence[int] | np.ndarray | torch.Tensor | None
) -> tuple[torch.Tensor, str]:
    """``(labels (len(dataset),) int64 on the CPU, where they came from)``."""
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__getitem__"):
        raise ValueError(f"from_dataset needs a map-style dataset (dataset[i] -> (x, label)); got "
                         f"{type(dataset).__name__}: stack its examples into tensors and use EpisodeSampler(x, y)")
    try:
        size = len(dataset)
    except TypeError as err:
        raise ValueError(f"from_dataset needs a dataset with a length; {type(dataset).__name__} has no __len__: "
                         "define one, or stack its examples into tensors and use EpisodeSampler(x, y)") from err
    source = "labels"
    if labels is None:  # held by the data set (no item loaded), else read once from the items (a progress bar)
        labels, source = read_labels(dataset)
    try:
        y = torch.as_tensor(labels.detach().cpu() if isinstance(labels, torch.Tensor) else np.asarray(labels))
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{source} must hold one integer class id per item; could not read it as integers "
                         f"({err}): map class names to ids 0, 1, ... first") from err
    if y.dim() != 1 or len(y) != size:
        raise ValueError(f"{source} must hold one integer class id per item: the dataset has {size} items, "
                         f"{source} has shape {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise ValueError(f"{source} must hold integer class ids; got dtype {y.dtype}: map them to ids 0, 1, ... first")
    return y.long(), source


def _as_label(label: object) -> int | None:
    """``label`` as an int if it is a single integer (python, numpy or tensor), else ``None``."""
    if isinstance(label, bool):
        return None
    if isinstance(label, (int, np.integer)):
        return int(label)
    if isinstance(label, np.ndarray):
        label = torch.from_numpy(np.array(label)) if label.dtype.kind in "biu" else None
    if isinstance(label, torch.Tensor) and label.numel() == 1:
        if not (label.dtype.is_floating_point or label.dtype.is_complex or label.dtype == torch.bool):
            return int(label.reshape(()))
    return None


def _as_tensor(x: object, i: int) -> torch.Tensor:
    """An item's ``x`` (a tensor or a numeric numpy array) as a tensor."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":
        return torch.from_numpy(np.array(x))  # a writable, contiguous copy
    if isinstance(x, Image.Image):
        raise ValueError(f"dataset[{i}] is a PIL image; episodes are tensors: add a transform that makes tensors, "
                         "e.g. transform=torchvision.transforms.ToTensor() when creating the dataset")
    what = f"a numpy array of dtype {x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__
    raise ValueError(f"dataset[{i}]'s x is {what}; from_dataset needs a tensor or a numeric numpy array: add a "
                     "transform that makes tensors (e.g. torchvision.transforms.ToTensor())")
