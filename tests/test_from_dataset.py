"""EpisodeSampler.from_dataset: the tensor sampler's episodes, loading only the sampled items."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset

from metalearn_lite.episodes import DatasetEpisodeSampler, EpisodeSampler


class Counting(Dataset):
    """Items ``(x[i], y[i])`` (``x`` through ``convert``); records every index asked for."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, convert=lambda v: v, item_label=None) -> None:
        self.x, self.y, self.convert = x, y, convert
        self.item_label = item_label or (lambda i: int(self.y[i]))
        self.accessed: list[int] = []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        self.accessed.append(i)
        return self.convert(self.x[i]), self.item_label(i)


class WithTargets(Counting):
    @property
    def targets(self) -> list[int]:  # as torchvision's ImageFolder: a list of ints
        return self.y.tolist()


class WithLabels(Counting):
    @property
    def labels(self) -> np.ndarray:  # as torchvision's SVHN: a numpy array
        return self.y.numpy()


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels 3, 10, 42, 7, 99, 5 with 8, 5, 12, 2, 6, 7 examples, interleaved; images (1, 4, 4)."""
    sizes = {3: 8, 10: 5, 42: 12, 7: 2, 99: 6, 5: 7}
    g = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.full((n,), label) for label, n in sizes.items()])
    y = y[torch.randperm(len(y), generator=g)]
    return torch.rand(len(y), 1, 4, 4, generator=g), y


def _assert_same(a, b) -> None:
    for name in ("support_x", "support_y", "query_x", "query_y", "classes"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("shots, queries", [(1, 3), (2, 2), (4, 0)])
def test_same_episodes_as_the_tensor_sampler(shots, queries):
    x, y = _data()
    tensors = EpisodeSampler(x, y, ways=3, shots=shots, queries=queries, seed=7)
    data = WithTargets(x, y)
    sampler = EpisodeSampler.from_dataset(data, ways=3, shots=shots, queries=queries, seed=7)
    assert isinstance(sampler, DatasetEpisodeSampler) and sampler.num_classes == tensors.num_classes
    assert data.accessed == []  # building the sampler reads no item
    for tasks in (4, 1, 3):  # successive draws stay in step
        _assert_same(sampler.sample(tasks), tensors.sample(tasks))


def test_loads_only_the_sampled_items_once_each():
    x, y = _data()
    data = WithTargets(x, y)
    sampler = EpisodeSampler.from_dataset(data, ways=3, shots=2, queries=1, seed=3)
    idx, _ = EpisodeSampler(x, y, ways=3, shots=2, queries=1, seed=3).sample_indices(5)
    sampler.sample(5)
    assert sorted(data.accessed) == sorted(set(idx.flatten().tolist()))  # each drawn index loaded once
    assert len(data.accessed) < len(x)
    assert all(type(i) is int for i in data.accessed)


def test_labels_argument_and_dot_labels():
    x, y = _data()
    expected = EpisodeSampler(x, y, ways=4, shots=1, queries=1, seed=2).sample(3)
    plain = Counting(x, y)  # no targets: labels= says what the classes are
    _assert_same(EpisodeSampler.from_dataset(plain, ways=4, shots=1, queries=1, seed=2, labels=y).sample(3), expected)
    numpy_items = WithLabels(x, y, convert=lambda v: v.numpy(), item_label=lambda i: np.int64(y[i]))
    got = EpisodeSampler.from_dataset(numpy_items, ways=4, shots=1, queries=1, seed=2).sample(3)
    _assert_same(got, expected)
    assert got.support_x.dtype == torch.float32
    tensor_labels = Counting(x, y, item_label=lambda i: y[i])  # 0-d tensor labels, as some datasets return
    assert EpisodeSampler.from_dataset(tensor_labels, ways=4, seed=2, shots=1, queries=1, labels=y.numpy()).sample(1)


def test_label_sources_in_order():
    class Both(WithTargets):
        labels = "class names, say"  # .targets comes first

    class WrongTargets(Counting):
        targets = [0, 1]  # labels= comes before .targets

    x, y = _data()
    expected = EpisodeSampler(x, y, ways=4, shots=1, queries=1, seed=2).sample(2)
    _assert_same(EpisodeSampler.from_dataset(Both(x, y), ways=4, shots=1, queries=1, seed=2).sample(2), expected)
    got = EpisodeSampler.from_dataset(WrongTargets(x, y), ways=4, shots=1, queries=1, seed=2, labels=y.tolist())
    _assert_same(got.sample(2), expected)
    assert got.label_source == "labels"


def test_device_and_iteration():
    x, y = _data()
    sampler = EpisodeSampler.from_dataset(WithTargets(x, y), ways=2, shots=1, queries=1, device="cpu")
    ep = next(iter(sampler))
    assert sampler.device == torch.device("cpu") and ep.support_x.device.type == "cpu"
    assert ep.support_x.shape == (1, 2, 1, 4, 4) and ep.query_y.tolist() == [[0, 1]]


def test_no_labels_anywhere_reads_every_item_once():
    x, y = _data()
    data = Counting(x, y)
    sampler = EpisodeSampler.from_dataset(data, ways=2, shots=1, queries=1)
    assert sorted(data.accessed) == list(range(40)) and torch.equal(sampler.labels, y)


@pytest.mark.parametrize("labels, match", [
    (torch.zeros(39, dtype=torch.long), r"the dataset has 40 items, labels has shape \(39,\)"),
    (torch.zeros(40), "labels must hold integer class ids; got dtype torch.float32"),
    (["cat"] * 40, "labels must hold one integer class id per item; could not read it"),
])
def test_bad_labels(labels, match):
    x, y = _data()
    with pytest.raises(ValueError, match=match):
        EpisodeSampler.from_dataset(Counting(x, y), labels=labels)


def test_item_label_disagrees_with_targets():
    x, y = _data()
    wrong = WithTargets(x, y, item_label=lambda i: int(y[i]) + 1000)
    sampler = EpisodeSampler.from_dataset(wrong, ways=2, shots=1, queries=1)
    with pytest.raises(ValueError, match=r"dataset\[\d+\] has label 10\d\d but dataset.targets\[\d+\] is \d+"):
        sampler.sample(1)


@pytest.mark.parametrize("label", [1.0, True, torch.tensor([0.0, 1.0]), "cat"])
def test_item_label_not_an_integer(label):
    x, y = _data()
    data = WithTargets(x, y, item_label=lambda i: label)
    with pytest.raises(ValueError, match="not an integer class id; remove any target_transform"):
        EpisodeSampler.from_dataset(data, ways=2, shots=1, queries=1).sample(1)


def test_pil_items_ask_for_a_transform():
    x, y = _data()
    data = WithTargets(x, y, convert=lambda v: Image.fromarray((v[0].numpy() * 255).astype(np.uint8)))
    with pytest.raises(ValueError, match=r"is a PIL image.*transforms.ToTensor\(\)"):
        EpisodeSampler.from_dataset(data, ways=2, shots=1, queries=1).sample(1)


@pytest.mark.parametrize("convert, match", [
    (lambda v: v.tolist(), "x is list; from_dataset needs a tensor or a numeric numpy array"),
    (lambda v: np.array(["a"]), "x is a numpy array of dtype <U1"),
])
def test_other_item_types(convert, match):
    x, y = _data()
    with pytest.raises(ValueError, match=match):
        EpisodeSampler.from_dataset(WithTargets(x, y, convert=convert), ways=2, shots=1, queries=1).sample(1)


def test_items_of_different_shapes():
    x, y = _data()
    data = WithTargets(x, y, convert=lambda v: v[:, : 1 + int(v.sum() * 100) % 4])
    with pytest.raises(ValueError, match=r"every item must have the same shape; add a transform that resizes"):
        EpisodeSampler.from_dataset(data, ways=6, shots=2, queries=0).sample(4)


def test_items_that_are_not_pairs():
    class Triples(WithTargets):
        def __getitem__(self, i):
            return self.x[i], int(self.y[i]), "extra"

    x, y = _data()
    with pytest.raises(ValueError, match=r"should be an \(x, label\) pair; got tuple of length 3"):
        EpisodeSampler.from_dataset(Triples(x, y), ways=2, shots=1, queries=1).sample(1)


def test_not_a_map_style_dataset():
    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.zeros(1), 0

    with pytest.raises(ValueError, match="needs a map-style dataset"):
        EpisodeSampler.from_dataset(Stream(), labels=[0])

    class NoLength(Dataset):
        targets = [0, 1]

        def __getitem__(self, i):
            return torch.zeros(1), i

    with pytest.raises(ValueError, match="has no __len__"):
        EpisodeSampler.from_dataset(NoLength())


def test_shared_argument_checks():
    x, y = _data()
    with pytest.raises(ValueError, match="shots must be an int >= 1"):
        EpisodeSampler.from_dataset(WithTargets(x, y), shots=0)
    with pytest.raises(ValueError, match="ways=7 is larger than the 6 classes available"):
        EpisodeSampler.from_dataset(WithTargets(x, y), ways=7)
    with pytest.raises(ValueError, match=r"lower shots or queries so that shots \+ queries <= 6"):
        EpisodeSampler.from_dataset(WithTargets(x, y), ways=4, shots=3, queries=4)
