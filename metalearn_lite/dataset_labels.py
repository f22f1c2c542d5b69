"""The class label of every item of a map-style ``Dataset``, read as cheaply as the data set allows.

Episode samplers need every item's class before they draw a single episode.  Where the data set holds its
labels, they are read from there without loading any item: ``.targets`` (torchvision's ``ImageFolder``,
``MNIST``, ...), ``.labels`` (``SVHN``), the last tensor of a ``TensorDataset``, a ``Subset``'s indices into its
base data set's labels, and the parts of a ``ConcatDataset``.  Any other data set is read once, item by item,
with a progress bar (``dataset[i][1]`` for every ``i``), and the labels are kept on the data set object
(``_metalearn_labels``) so that the next sampler on it does not read them again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset, TensorDataset
from tqdm.auto import tqdm

CACHE_ATTRIBUTE = "_metalearn_labels"


def held_labels(dataset: Any) -> tuple[Any, str] | None:
    """``(labels, where they came from)`` if ``dataset`` holds them without loading its items, else ``None``."""
    for name in ("targets", "labels", CACHE_ATTRIBUTE):
        value = getattr(dataset, name, None)
        if value is not None and not callable(value):
            return value, f"dataset.{name}"
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return dataset.tensors[-1], "the TensorDataset's last tensor"
    if isinstance(dataset, Subset):
        base = held_labels(dataset.dataset)
        if base is not None:
            index = torch.as_tensor(list(dataset.indices), dtype=torch.long)
            return _as_long(base[0])[index], f"{base[1]} of the Subset's base data set, at its indices"
    if isinstance(dataset, ConcatDataset):
        parts = [held_labels(d) for d in dataset.datasets]
        if all(p is not None for p in parts):
            return torch.cat([_as_long(p[0]) for p in parts]), "the ConcatDataset's parts"  # type: ignore[index]
    return None


def _as_long(labels: Any) -> torch.Tensor:
    if isinstance(labels, torch.Tensor):
        return labels.detach().cpu().long()
    return torch.as_tensor(np.asarray(labels)).long()


def read_labels(dataset: Dataset, progress: bool = True) -> tuple[Any, str]:
    """``(labels, where they came from)``: :func:`held_labels`, else every item's label read once (cached)."""
    held = held_labels(dataset)
    if held is not None:
        return held
    size = len(dataset)  # type: ignore[arg-type]
    labels = []
    for i in tqdm(range(size), desc=f"reading the labels of {type(dataset).__name__} (once)", disable=not progress,
                  dynamic_ncols=True, leave=False):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"dataset[{i}] should be an (x, label) pair to read its label; got {type(item).__name__}"
                             ": wrap the data set so that each item is (x, label), or pass labels=")
        label = item[1]
        labels.append(int(label.reshape(())) if isinstance(label, torch.Tensor) and label.numel() == 1 else label)
    try:
        setattr(dataset, CACHE_ATTRIBUTE, labels)
    except AttributeError:  # a data set that refuses new attributes is read again next time
        pass
    return labels, f"the labels read from every item of {type(dataset).__name__}"
