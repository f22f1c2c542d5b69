"""Episodes through PyTorch's own ``DataLoader``: a batch sampler of episode indices and a collate function.

::

    sampler = ml.EpisodeBatchSampler(dataset, ways=5, shots=1, queries=15, tasks=4, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=sampler.collate, num_workers=2)
    for episode in loader:                     # an Episode: support_x (4, 5, ...), query_x (4, 75, ...)
        ...
    ml.train(method, loader, steps=500)        # the trainer draws from the loader (see LoaderTasks)

The batch sampler draws each batch's indices exactly as :class:`~metalearn_lite.EpisodeSampler` draws an
episode (the same code, on its own seeded generator), so with the same labels and seed the loader yields the
same episodes as ``EpisodeSampler(x, y, seed=...).sample(tasks)``, and the workers only load the items.  A
batch holds ``tasks * ways * (shots + queries)`` dataset indices, task-major, then class-major (the ``K + Q``
examples of class 0 of task 0, then of class 1, ...); :class:`EpisodeCollate` stacks the items back into an
:class:`~metalearn_lite.Episode` with labels ``0..N-1``.

Resuming: the ``DataLoader`` iterates the batch sampler ahead of what was consumed (each worker holds batches
in advance), so the sampler's generator is ahead too.  The sampler remembers the generator's state before each
batch it hands out, and :class:`LoaderTasks` (what the trainer wraps a loader in) reports the state before the
first batch *not yet consumed*: a resumed run draws exactly the episodes an uninterrupted one would have.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .episodes import Episode, EpisodeSampler, _class_table, _dataset_labels
from .validation import int_at_least


class _IndexDrawer(EpisodeSampler):
    """An :class:`EpisodeSampler` that holds only the labels: it draws indices, never examples."""

    def __init__(self, labels: torch.Tensor, ways: int, shots: int, queries: int, seed: int) -> None:
        self._set_sizes(ways, shots, queries)
        self._set_classes(*_class_table(labels), groups=None, same_group=0.0)
        self.generator = torch.Generator().manual_seed(seed)


class EpisodeBatchSampler(Sampler[list[int]]):
    """Seeded batches of episode indices for ``DataLoader(dataset, batch_sampler=..., collate_fn=...)``.

    Args:
        dataset: the map-style data set of ``(x, label)`` items the loader reads; its labels are read as
            :func:`~metalearn_lite.dataset_labels.read_labels` says (without loading items where it can).
        ways, shots, queries: ``N``, ``K`` and ``Q`` of every episode.
        tasks: episodes per batch (the meta-batch ``T``).
        batches: batches per pass over the sampler (``len(loader)``); the trainer starts a new pass when one
            ends, and the episodes go on from the same generator.
        seed: the generator's seed: the same seed gives the same episodes as ``EpisodeSampler``'s.
        labels: one integer class per item, instead of reading them from ``dataset``.
    """

    def __init__(self, dataset: Dataset, ways: int = 5, shots: int = 1, queries: int = 15, tasks: int = 1,
                 batches: int = 1000, seed: int = 0,
                 labels: Sequence[int] | np.ndarray | torch.Tensor | None = None) -> None:
        for name, value in (("tasks", tasks), ("batches", batches)):
            int_at_least(name, value, 1)
        y, self.label_source = _dataset_labels(dataset, labels)
        self.drawer = _IndexDrawer(y, ways, shots, queries, seed)
        self.ways, self.shots, self.queries = self.drawer.ways, self.drawer.shots, self.drawer.queries
        self.tasks, self.batches = tasks, batches
        self.collate = EpisodeCollate(self.ways, self.shots, self.queries, tasks)
        self._before: deque[torch.Tensor] = deque(maxlen=1024)  # generator states before the batches handed out

    @property
    def generator(self) -> torch.Generator:
        return self.drawer.generator

    def __len__(self) -> int:
        return self.batches

    def draw(self) -> list[int]:
        """The next batch's dataset indices (``tasks * ways * (shots + queries)`` of them)."""
        self._before.append(self.generator.get_state())
        idx, _ = self.drawer.sample_indices(self.tasks)
        return idx.reshape(-1).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.batches):
            yield self.draw()

    def state_before_next(self) -> torch.Tensor:
        """The generator state before the oldest batch handed out and not yet marked consumed (see
        :meth:`consumed`), or the current state when none is outstanding."""
        return self._before[0].clone() if self._before else self.generator.get_state()

    def consumed(self) -> None:
        """Mark the oldest outstanding batch as consumed."""
        if self._before:
            self._before.popleft()

    def restart_at(self, state: torch.Tensor) -> None:
        """Forget the outstanding batches and continue from generator ``state``."""
        self._before.clear()
        self.generator.set_state(state)


class EpisodeCollate:
    """``collate_fn`` that stacks a batch of ``(x, label)`` items, in :class:`EpisodeBatchSampler` order, into an
    :class:`~metalearn_lite.Episode` (picklable, so it runs in the loader's workers)."""

    def __init__(self, ways: int, shots: int, queries: int, tasks: int = 1) -> None:
        self.ways, self.shots, self.queries, self.tasks = ways, shots, queries, tasks

    def __call__(self, items: list[Any]) -> Episode:
        t, n, k, q = self.tasks, self.ways, self.shots, self.queries
        if len(items) != t * n * (k + q):
            raise ValueError(f"a batch of {len(items)} items is not {t} task(s) of {n} ways x ({k} + {q}) examples: "
                             "pass the EpisodeBatchSampler's own collate (sampler.collate) with it")
        xs = [torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x for x, _ in items]
        shapes = {tuple(x.shape) for x in xs}
        if len(shapes) != 1:
            raise ValueError(f"the items of one episode have shapes {sorted(shapes)[:3]}: episodes stack their "
                             "examples, so give every item the same shape (e.g. a Resize transform)")
        x = torch.stack(xs).reshape(t, n, k + q, *xs[0].shape)
        classes = torch.as_tensor([int(torch.as_tensor(label)) for _, label in items]).reshape(t, n, k + q)
        if not bool((classes == classes[..., :1]).all()):
            raise ValueError("the items drawn for one class carry different labels: the labels the sampler drew "
                             "from disagree with the items' own labels; pass labels= the items' true labels")
        labels = torch.arange(n).view(1, n, 1)
        return Episode(
            x[:, :, :k].reshape(t, n * k, *x.shape[3:]),
            labels.expand(t, n, k).reshape(t, n * k),
            x[:, :, k:].reshape(t, n * q, *x.shape[3:]),
            labels.expand(t, n, q).reshape(t, n * q),
            classes[..., 0],
        )


def episode_loader(dataset: Dataset, ways: int = 5, shots: int = 1, queries: int = 15, tasks: int = 1,
                   batches: int = 1000, seed: int = 0, num_workers: int = 0,
                   labels: Sequence[int] | np.ndarray | torch.Tensor | None = None, **loader_args: Any) -> DataLoader:
    """``DataLoader(dataset, batch_sampler=EpisodeBatchSampler(...), collate_fn=..., num_workers=...)`` in one call;
    ``loader_args`` go to the ``DataLoader`` (``pin_memory=``, ``persistent_workers=``, ...)."""
    sampler = EpisodeBatchSampler(dataset, ways, shots, queries, tasks, batches, seed, labels)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=sampler.collate, num_workers=num_workers,
                      **loader_args)


class _LoaderState:
    """The random state of a :class:`LoaderTasks`, as the trainer reads and restores generators."""

    def __init__(self, tasks: LoaderTasks) -> None:
        self.tasks = tasks

    def get_state(self) -> torch.Tensor:
        return self.tasks.sampler.state_before_next()

    def set_state(self, state: torch.Tensor) -> None:
        self.tasks.restart(state)

    def manual_seed(self, seed: int) -> _LoaderState:
        self.tasks.restart(torch.Generator().manual_seed(seed).get_state())
        return self


class LoaderTasks:
    """A ``DataLoader`` over an :class:`EpisodeBatchSampler` as a task source: ``sample(n)`` returns the next
    ``n`` tasks (``n`` a multiple of the sampler's ``tasks``) on ``device``, starting a new pass when one ends;
    ``generators()`` gives the state before the first batch not yet returned (exact resume)."""

    def __init__(self, loader: DataLoader, device: str | torch.device | None = None) -> None:
        if not isinstance(getattr(loader, "batch_sampler", None), EpisodeBatchSampler):
            raise ValueError("a DataLoader is a task source when its batch_sampler is an ml.EpisodeBatchSampler "
                             "(DataLoader(dataset, batch_sampler=sampler, collate_fn=sampler.collate))")
        self.loader, self.sampler = loader, loader.batch_sampler
        self.device = None if device is None else torch.device(device)
        self._it: Iterator[Episode] | None = None

    def _next(self) -> Episode:
        if self._it is None:
            self._it = iter(self.loader)
        try:
            episode = next(self._it)
        except StopIteration:
            self._it = iter(self.loader)
            episode = next(self._it)
        self.sampler.consumed()
        if not isinstance(episode, Episode):
            raise ValueError(f"the loader yielded a {type(episode).__name__}, not an Episode: pass "
                             "collate_fn=sampler.collate to the DataLoader")
        return episode

    def sample(self, tasks: int = 1) -> Episode:
        per = self.sampler.tasks
        if tasks % per:
            raise ValueError(f"{tasks} tasks per step is not a multiple of the loader's {per} tasks per batch: "
                             f"build the EpisodeBatchSampler with tasks={tasks} (or tasks_per_step={per})")
        parts = [self._next() for _ in range(tasks // per)]
        ep = parts[0] if len(parts) == 1 else Episode(*(torch.cat([getattr(p, f) for p in parts]) for f in (
            "support_x", "support_y", "query_x", "query_y", "classes")))
        return ep if self.device is None else ep.to(self.device)

    def restart(self, state: torch.Tensor) -> None:
        """Drop the running pass (its workers stop) and continue from generator ``state``."""
        self._it = None
        self.sampler.restart_at(state)

    def generators(self) -> dict[str, Any]:
        return {"episode_batch_sampler": _LoaderState(self)}

    def __iter__(self) -> Iterator[Episode]:
        while True:
            yield self.sample(self.sampler.tasks)


def as_task_source(tasks: Any, device: str | torch.device | None = None) -> Any:
    """``tasks`` as the trainer and ``evaluate`` draw from it: a ``DataLoader`` over an
    :class:`EpisodeBatchSampler` becomes :class:`LoaderTasks`; anything else is returned as it is."""
    if isinstance(tasks, DataLoader):
        return LoaderTasks(tasks, device)
    return tasks


def evaluation_tasks(data: Any, ways: int, shots: int, queries: int, seed: int,
                     device: str | torch.device | None) -> tuple[Iterator[Episode], tuple[int, int, int]]:
    """Single tasks for ``evaluate`` from ``data``, and their ``(ways, shots, queries)``.

    ``data`` is a ``DataLoader`` over an :class:`EpisodeBatchSampler` (its own task shape and seed), a map-style
    ``Dataset`` (sampled with :meth:`EpisodeSampler.from_dataset`), grouped examples, or a pair ``(x, y)``.
    """
    if isinstance(data, DataLoader):
        source: Any = LoaderTasks(data, device)
        s = source.sampler
        shape = (s.ways, s.shots, s.queries)
    else:
        if isinstance(data, Dataset):
            source = EpisodeSampler.from_dataset(data, ways, shots, queries, seed, device=device)
        else:
            x, y = data if isinstance(data, (tuple, list)) else (data, None)
            if isinstance(data, (tuple, list)) and len(data) != 2:
                raise ValueError(f"data must be grouped examples (classes, per_class, ...), a pair (x, y), a "
                                 f"Dataset or a DataLoader; got {len(data)} items")
            source = EpisodeSampler(x, y, ways=ways, shots=shots, queries=queries, seed=seed, device=device)
        shape = (ways, shots, queries)

    def one_by_one() -> Iterator[Episode]:
        per = source.sampler.tasks if isinstance(source, LoaderTasks) else 1
        while True:
            batch = source.sample(per)
            for t in range(batch.num_tasks):
                yield batch.task(t) if batch.num_tasks > 1 else batch

    return one_by_one(), shape


__all__ = ["EpisodeBatchSampler", "EpisodeCollate", "LoaderTasks", "as_task_source", "episode_loader",
           "evaluation_tasks"]
